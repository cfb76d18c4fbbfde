//! Where a request runs: the primary or a replica. `classify` says what a SQL text does (read
//! or write, by the real Postgres grammar, cached per statement shape), `request` folds that
//! over a whole buffered request, `select` picks a replica from the health view, `rw` keeps a
//! client's own writes visible to its later reads. Sans-IO: the session (`client::route`)
//! calls these and does the checkouts; `health` measures the members.

pub mod classify;
pub mod request;
pub mod route_setting;
pub mod rw;
pub mod select;
