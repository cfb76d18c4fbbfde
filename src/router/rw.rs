//! Read-your-writes: after a client's write commits, its reads go only to members that have
//! replayed past it.
//!
//! The commit's own LSN is never asked for (that would cost every write transaction a round
//! trip). Instead the proxy notes *when* the commit was acknowledged, and takes the primary's
//! insert LSN from the first health probe that started after that instant: the commit record
//! was inserted before its acknowledgement, so that LSN is at or past it. Until such a probe
//! has landed (at most one probe interval), the client's reads go to the primary. A client
//! that never writes never touches any of this: the check is one branch on the read path.

use std::time::Instant;

/// One client's read-your-writes state.
#[derive(Debug, Default, Clone)]
pub struct ReadYourWrites {
    /// A write committed at this instant and its LSN is not known yet.
    pending_since: Option<Instant>,
    /// Reads must go to members whose LSN is at least this.
    min_lsn: Option<u64>,
}

/// What a read of this client needs from the member serving it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any member will do.
    Any,
    /// A member that has replayed at least this LSN.
    AtLeast(u64),
    /// Only the primary is known to have the client's last write.
    Primary,
}

impl ReadYourWrites {
    /// A transaction that may have written was acknowledged just now.
    pub fn committed(&mut self, now: Instant) {
        self.pending_since = Some(now);
    }

    /// What the next read needs. `primary_lsn_since(t)` is the primary's LSN from a probe that
    /// started at or after `t`, if one has landed.
    pub fn need(&mut self, primary_lsn_since: impl FnOnce(Instant) -> Option<u64>) -> Need {
        if let Some(since) = self.pending_since {
            match primary_lsn_since(since) {
                Some(lsn) => {
                    self.pending_since = None;
                    self.min_lsn = Some(self.min_lsn.map_or(lsn, |m| m.max(lsn)));
                }
                None => return Need::Primary,
            }
        }
        match self.min_lsn {
            Some(lsn) => Need::AtLeast(lsn),
            None => Need::Any,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_client_that_never_wrote_needs_nothing() {
        let mut rw = ReadYourWrites::default();
        assert_eq!(rw.need(|_| panic!("not asked")), Need::Any);
    }

    #[test]
    fn reads_go_to_the_primary_until_a_probe_after_the_commit_lands() {
        let mut rw = ReadYourWrites::default();
        let t = Instant::now();
        rw.committed(t);
        assert_eq!(rw.need(|_| None), Need::Primary);
        assert_eq!(
            rw.need(|since| {
                assert_eq!(since, t);
                Some(500)
            }),
            Need::AtLeast(500)
        );
        // The LSN is kept: later reads need the same without asking again.
        assert_eq!(rw.need(|_| panic!("not asked")), Need::AtLeast(500));
    }

    #[test]
    fn a_later_commit_raises_the_bar_and_never_lowers_it() {
        let mut rw = ReadYourWrites::default();
        let t = Instant::now();
        rw.committed(t);
        assert_eq!(rw.need(|_| Some(900)), Need::AtLeast(900));
        rw.committed(t + Duration::from_millis(5));
        assert_eq!(rw.need(|_| None), Need::Primary);
        // A stale-looking answer cannot lower the requirement.
        assert_eq!(rw.need(|_| Some(800)), Need::AtLeast(900));
    }
}
