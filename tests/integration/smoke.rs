//! The basic path: a query through the proxy reaches Postgres and comes back.

use crate::harness::*;

#[tokio::test]
async fn select_through_the_proxy() {
    let proxy = start_proxy("size = 2", "").await;
    let client = proxy.connect().await;
    let row = client
        .query_one("SELECT 1 + $1::int", &[&41i32])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 42);
    let msgs = client.simple_query("SELECT 1; SELECT 2").await.unwrap();
    let values: Vec<_> = msgs
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(values, ["1", "2"]);
}
