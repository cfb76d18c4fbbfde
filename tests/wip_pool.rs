#[path = "integration/harness.rs"]
mod harness;
#[path = "integration/pool.rs"]
mod pool;
