//! Where a query goes: primary or which replica (`select`).
pub mod select;
