//! Criterion benches for `sql::scan`, which runs on every simple Query and every Parse: a
//! typical short SELECT with literals, a 2 KB ORM-style query, and a SET (the one that finds
//! something).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lagoon::sql::scan;

/// About 120 bytes: literals, a comment-free WHERE, a parameter.
const SELECT: &[u8] = b"SELECT id, name, email FROM users WHERE status = 'active' \
AND created_at > '2024-01-01' AND org_id = $1 ORDER BY id LIMIT 50";

/// About 2 KB, the shape ORMs emit: quoted aliases, joins, IN lists, casts, a comment.
fn orm_query() -> Vec<u8> {
    let mut q = b"/* app: orders, controller: list */ SELECT \"orders\".\"id\" AS \"orders_id\", \
\"orders\".\"total\" AS \"orders_total\", \"orders\".\"created_at\" AS \"orders_created_at\", \
\"customers\".\"id\" AS \"customers_id\", \"customers\".\"name\" AS \"customers_name\" \
FROM \"public\".\"orders\" AS \"orders\" LEFT OUTER JOIN \"public\".\"customers\" AS \
\"customers\" ON \"customers\".\"id\" = \"orders\".\"customer_id\" WHERE \"orders\".\"status\" \
IN ("
        .to_vec();
    let mut i = 0;
    while q.len() < 1900 {
        q.extend_from_slice(format!("'status_{i}'::text, ").as_bytes());
        i += 1;
    }
    q.extend_from_slice(
        b"'done') AND \"orders\".\"total\" > 10.50 ORDER BY \"orders\".\"created_at\" DESC \
LIMIT 100 OFFSET 0",
    );
    q
}

fn bench(c: &mut Criterion) {
    let orm = orm_query();
    let cases: [(&str, &[u8]); 3] = [
        ("select_120b", SELECT),
        ("orm_2kb", &orm),
        ("set_search_path", b"SET search_path TO a, b"),
    ];
    let mut g = c.benchmark_group("sql_scan");
    for (name, sql) in cases {
        g.throughput(Throughput::Bytes(sql.len() as u64));
        g.bench_function(name, |b| b.iter(|| scan(black_box(sql))));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
