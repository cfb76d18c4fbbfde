//! WAL positions (LSNs): parsing Postgres's `X/Y` text, printing it back, and the one rule for
//! "has a server replayed up to this position" that lag, read-your-writes and replica choice
//! all share.
//!
//! Sans-IO: plain functions on `u64`, unit-tested. Parsing never panics: the text comes from
//! a server and a confused one must not take the monitor down.

/// Bytes in a WAL page (`XLOG_BLCKSZ`). 8192 in every stock build; only [`reached`] uses it.
const WAL_PAGE: u64 = 8192;

/// Header sizes Postgres puts at the start of a WAL page: short (24) and, at a segment start,
/// long (40). See [`reached`].
const PAGE_HEADERS: [u64; 2] = [24, 40];

/// Parses an LSN as Postgres prints it (`pg_lsn` text: two hex halves, `16/B374D848`).
/// `None` for anything else (empty, missing slash, non-hex, halves over 32 bits).
pub fn parse(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let half = |s: &str| -> Option<u64> {
        if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(s, 16).ok()
    };
    Some((half(hi)? << 32) | half(lo)?)
}

/// Prints an LSN the way Postgres does (`16/B374D848`), for SHOW REPLICAS and logs.
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Whether a server that replayed up to `replayed` has everything up to `target` (a primary's
/// insert position): `replayed >= target`, except that a target just past a page header
/// counts as reached from the page boundary.
///
/// Why the exception: the primary's `pg_current_wal_insert_lsn()` names where the *next*
/// record will go, and when the last record ended exactly at a page end that is past the new
/// page's header (boundary + 24, or + 40 at a segment start), while a replica's
/// `pg_last_wal_replay_lsn()` is the *end* of the last record, i.e. the boundary itself. On an
/// idle primary that gap would never close, so a caught-up replica would look behind forever
/// (lag time growing without bound, read-your-writes never satisfied). Nothing but a header
/// can sit in that gap: the smallest WAL record is 24 bytes and would have to start at the
/// boundary + header, so no data is skipped.
pub fn reached(replayed: u64, target: u64) -> bool {
    replayed >= target || (replayed % WAL_PAGE == 0 && PAGE_HEADERS.contains(&(target - replayed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_text() {
        assert_eq!(parse("0/0"), Some(0));
        assert_eq!(parse("0/3000148"), Some(0x300_0148));
        assert_eq!(parse("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse("16/b374d848"), Some(0x16_B374_D848));
        assert_eq!(parse(" 1/0\n"), Some(1 << 32));
        assert_eq!(parse("FFFFFFFF/FFFFFFFF"), Some(u64::MAX));
    }

    #[test]
    fn refuses_junk_without_panicking() {
        for junk in [
            "",
            "/",
            "0/",
            "/0",
            "0",
            "1:2",
            "g/0",
            "0/x",
            "1/2/3",
            "-1/0",
            "+1/0",
            "100000000/0",
            "0/100000000",
            "0x1/0",
            "１/0",
            "0/ 1",
        ] {
            assert_eq!(parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn format_round_trips() {
        for lsn in [0, 1, 0x300_0148, 0x16_B374_D848, u64::MAX] {
            assert_eq!(parse(&format(lsn)), Some(lsn));
        }
        assert_eq!(format(0x16_B374_D848), "16/B374D848");
    }

    #[test]
    fn reached_is_at_or_past() {
        assert!(reached(100, 100));
        assert!(reached(101, 100));
        assert!(!reached(99, 100));
        assert!(reached(u64::MAX, 0));
    }

    #[test]
    fn reached_skips_only_a_page_header_after_a_boundary() {
        let boundary = 5 * WAL_PAGE;
        assert!(reached(boundary, boundary + 24));
        assert!(reached(boundary, boundary + 40));
        assert!(
            !reached(boundary, boundary + 48),
            "a real record lies in between"
        );
        assert!(!reached(boundary, boundary + 8));
        assert!(!reached(boundary - 8, boundary + 16), "not on a boundary");
        assert!(!reached(boundary + 8, boundary + 32));
    }
}
