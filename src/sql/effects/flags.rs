//! `Flags`, the bitset of effect kinds that `scan` returns: one `u16`, so the common "nothing
//! found" answer is a compare with zero.

use std::ops::{BitOr, BitOrAssign};

/// The kinds of effect found: a small bitset.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u16);

impl Flags {
    /// `SET` (not `LOCAL`, `TRANSACTION`, `CONSTRAINTS`), `RESET`, or a `set_config(` call.
    pub const SETTINGS: Flags = Flags(1 << 0);
    /// `DISCARD ALL`.
    pub const DISCARD_ALL: Flags = Flags(1 << 1);
    /// `DISCARD PLANS | SEQUENCES | TEMP | TEMPORARY`.
    pub const DISCARD_OTHER: Flags = Flags(1 << 2);
    /// SQL `DEALLOCATE`.
    pub const DEALLOCATE: Flags = Flags(1 << 3);
    /// SQL `PREPARE name AS ...` (not `PREPARE TRANSACTION`).
    pub const PREPARE: Flags = Flags(1 << 4);
    /// SQL `EXECUTE name` (also under `EXPLAIN` and in `CREATE TABLE ... AS EXECUTE`).
    pub const EXECUTE: Flags = Flags(1 << 5);
    pub const LISTEN: Flags = Flags(1 << 6);
    pub const UNLISTEN: Flags = Flags(1 << 7);
    /// A temporary table, view or sequence (or anything created in `pg_temp`).
    pub const TEMP: Flags = Flags(1 << 8);
    /// `DECLARE ... CURSOR WITH HOLD`.
    pub const HOLD_CURSOR: Flags = Flags(1 << 9);
    /// `CLOSE name | ALL`.
    pub const CLOSE_CURSOR: Flags = Flags(1 << 10);
    /// A session-level advisory lock call (`pg_advisory_lock`, `pg_try_advisory_lock`, ...).
    pub const ADVISORY_LOCK: Flags = Flags(1 << 11);
    /// `pg_advisory_unlock`, `pg_advisory_unlock_shared`, `pg_advisory_unlock_all`.
    pub const ADVISORY_UNLOCK: Flags = Flags(1 << 12);
    /// A statement starting with `DROP`.
    pub const DROP: Flags = Flags(1 << 13);
    /// `DO` or `CALL`: could change anything.
    pub const OPAQUE: Flags = Flags(1 << 14);

    const NAMES: [(Flags, &'static str); 15] = [
        (Self::SETTINGS, "SETTINGS"),
        (Self::DISCARD_ALL, "DISCARD_ALL"),
        (Self::DISCARD_OTHER, "DISCARD_OTHER"),
        (Self::DEALLOCATE, "DEALLOCATE"),
        (Self::PREPARE, "PREPARE"),
        (Self::EXECUTE, "EXECUTE"),
        (Self::LISTEN, "LISTEN"),
        (Self::UNLISTEN, "UNLISTEN"),
        (Self::TEMP, "TEMP"),
        (Self::HOLD_CURSOR, "HOLD_CURSOR"),
        (Self::CLOSE_CURSOR, "CLOSE_CURSOR"),
        (Self::ADVISORY_LOCK, "ADVISORY_LOCK"),
        (Self::ADVISORY_UNLOCK, "ADVISORY_UNLOCK"),
        (Self::DROP, "DROP"),
        (Self::OPAQUE, "OPAQUE"),
    ];

    pub const fn empty() -> Flags {
        Flags(0)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn union(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Some flag of `other` is set.
    pub const fn intersects(self, other: Flags) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = Self::NAMES.iter().filter(|(fl, _)| self.contains(*fl));
        match names.next() {
            None => f.write_str("(empty)"),
            Some((_, first)) => {
                f.write_str(first)?;
                names.try_for_each(|(_, n)| write!(f, " | {n}"))
            }
        }
    }
}
