//! A result the console computed: column names and types, rows of text values (NULL
//! allowed), encoded as RowDescription, DataRows and CommandComplete `SHOW` (PgBouncer's tag).
//! Also how values are spelled in results: timestamps, milliseconds, wait split into seconds
//! and microseconds.
//!
//! Sans-IO. It does not gather the figures (each `SHOW` command does).

use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;

use crate::protocol::messages::encode::{self, ColumnType};

/// One value; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell(pub Option<String>);

impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell(Some(v.to_owned()))
    }
}

impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell(Some(v))
    }
}

impl From<&String> for Cell {
    fn from(v: &String) -> Self {
        Cell(Some(v.clone()))
    }
}

macro_rules! int_cells {
    ($($t:ty),*) => {$(
        impl From<$t> for Cell {
            fn from(v: $t) -> Self {
                Cell(Some(v.to_string()))
            }
        }
    )*};
}
int_cells!(u64, i64, u32, i32, u16, usize);

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Self {
        v.map_or(Cell(None), Into::into)
    }
}

/// A whole result. Build with [`ResultSet::new`] and [`ResultSet::push`], then
/// [`ResultSet::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultSet {
    columns: Vec<(&'static str, ColumnType)>,
    rows: Vec<Vec<Cell>>,
}

/// Shorthands for column lists.
pub const TEXT: ColumnType = ColumnType::Text;
pub const INT: ColumnType = ColumnType::Int8;

impl ResultSet {
    pub fn new(columns: &[(&'static str, ColumnType)]) -> Self {
        ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row. A row shorter than the columns is padded with NULL, a longer one cut: a
    /// mismatch is a bug here, but must not make the client misread the stream.
    pub fn push(&mut self, mut row: Vec<Cell>) {
        debug_assert_eq!(row.len(), self.columns.len(), "row width");
        row.resize(self.columns.len(), Cell(None));
        self.rows.push(row);
    }

    pub fn columns(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.columns.iter().map(|(n, _)| *n)
    }

    pub fn rows(&self) -> &[Vec<Cell>] {
        &self.rows
    }

    /// RowDescription, one DataRow per row, CommandComplete `SHOW`.
    pub fn encode(&self, out: &mut BytesMut) {
        encode::row_description(out, self.columns.iter().copied());
        for row in &self.rows {
            encode::data_row(out, row.iter().map(|c| c.0.as_deref()));
        }
        encode::command_complete(out, "SHOW");
    }
}

/// `2024-05-01 12:34:56 UTC`: the timestamp columns (`connect_time`, `request_time`).
pub fn timestamp(t: SystemTime) -> String {
    let s = crate::stats::slow_log::rfc3339(t);
    // rfc3339 is `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    match (s.get(..10), s.get(11..19)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => s,
    }
}

/// `2024-05-01 12:34:56.789 UTC`: when milliseconds matter (`SHOW SLOW`).
pub fn timestamp_ms(t: SystemTime) -> String {
    let s = crate::stats::slow_log::rfc3339(t);
    match (s.get(..10), s.get(11..23)) {
        (Some(date), Some(time)) => format!("{date} {time} UTC"),
        _ => s,
    }
}

/// The wall-clock time of a monotonic instant in the past (now minus its age).
pub fn wall(at: Instant) -> SystemTime {
    let now = SystemTime::now();
    now.checked_sub(at.elapsed()).unwrap_or(now)
}

/// Milliseconds with three decimals (`12.345`).
pub fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

/// PgBouncer's split of a wait: whole seconds, and the microseconds past them.
pub fn wait_split(d: Duration) -> (u64, u32) {
    (d.as_secs(), d.subsec_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_description_rows_and_tag() {
        let mut rs = ResultSet::new(&[("name", TEXT), ("n", INT)]);
        rs.push(vec!["a".into(), 7u64.into()]);
        rs.push(vec![Cell(None), Option::<u64>::None.into()]);
        let mut out = BytesMut::new();
        rs.encode(&mut out);
        let tags: Vec<u8> = {
            let mut v = Vec::new();
            let _ = crate::protocol::codec::walk_messages(&out, 0, 1 << 20, |t, _| {
                v.push(t);
                true
            });
            v
        };
        assert_eq!(tags, b"TDDC");
        assert!(out.ends_with(b"C\0\0\0\x09SHOW\0"));
        assert_eq!(rs.columns().collect::<Vec<_>>(), vec!["name", "n"]);
    }

    #[test]
    fn value_spellings() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14 22:13:20 UTC");
        assert_eq!(timestamp_ms(t), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(millis(Duration::from_micros(12_345)), "12.345");
        assert_eq!(millis(Duration::ZERO), "0.000");
        assert_eq!(wait_split(Duration::from_micros(2_000_017)), (2, 17));
    }
}
