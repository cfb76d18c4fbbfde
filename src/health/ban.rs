//! Up/down hysteresis of one member: `down_after_failures` failed probes in a row take it
//! out, `up_after_successes` good ones in a row bring it back, so one lost probe does not
//! flap traffic and one lucky answer does not send traffic to a server that is still sick.
//!
//! Sans-IO and single-owner: the monitor holds one [`Ban`] per member and publishes the
//! outcome to the member's atomics; the data path's "this server refused me" reaches it
//! through [`Ban::force_down`] (the monitor notices the member's published state was knocked
//! down, see `monitor`).
//!
//! Start state: a member starts [`State::Unknown`] (not used) and is up after its **first**
//! good probe, not after `up_after_successes`: at startup there is no history of trouble to
//! be careful about, and waiting `M` intervals would only delay the first reads (and send them
//! all to the primary). The full hysteresis applies once a member has been down. A member
//! that fails `down_after_failures` probes before ever answering goes from Unknown to Down,
//! so reports say "down", and then needs the full `up_after_successes` to come up.

/// A member's routing state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Never answered a probe yet: not used.
    Unknown,
    /// Serving.
    Up,
    /// Taken out; back after `up_after_successes` good probes in a row.
    Down,
}

/// The hysteresis counters of one member.
#[derive(Debug, Clone)]
pub struct Ban {
    state: State,
    /// Consecutive failures (while not Down) or consecutive successes (while Down).
    streak: u32,
    down_after: u32,
    up_after: u32,
}

impl Ban {
    /// A member in [`State::Unknown`]. Thresholds below 1 are treated as 1.
    pub fn new(down_after_failures: u32, up_after_successes: u32) -> Ban {
        Ban {
            state: State::Unknown,
            streak: 0,
            down_after: down_after_failures.max(1),
            up_after: up_after_successes.max(1),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// A good probe. Returns the new state if it changed.
    pub fn success(&mut self) -> Option<State> {
        match self.state {
            State::Unknown => self.enter(State::Up),
            State::Up => {
                self.streak = 0;
                None
            }
            State::Down => {
                self.streak += 1;
                if self.streak >= self.up_after {
                    self.enter(State::Up)
                } else {
                    None
                }
            }
        }
    }

    /// A failed probe (error, timeout, wrong role). Returns the new state if it changed.
    pub fn failure(&mut self) -> Option<State> {
        match self.state {
            State::Down => {
                self.streak = 0;
                None
            }
            State::Unknown | State::Up => {
                self.streak += 1;
                if self.streak >= self.down_after {
                    self.enter(State::Down)
                } else {
                    None
                }
            }
        }
    }

    /// Down now, whatever the counters say (a connection was refused, the server has the wrong
    /// role). Coming back takes `up_after_successes` good probes. Returns the new state if it
    /// changed; a member already Down restarts its count of successes.
    pub fn force_down(&mut self) -> Option<State> {
        if self.state == State::Down {
            self.streak = 0;
            return None;
        }
        self.enter(State::Down)
    }

    fn enter(&mut self, state: State) -> Option<State> {
        self.state = state;
        self.streak = 0;
        Some(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_after_the_first_success_at_start() {
        let mut b = Ban::new(2, 3);
        assert_eq!(b.state(), State::Unknown);
        assert_ne!(b.state(), State::Up);
        assert_eq!(b.success(), Some(State::Up));
        assert_eq!(b.state(), State::Up);
        assert_eq!(b.success(), None);
    }

    #[test]
    fn down_after_n_consecutive_failures_only() {
        let mut b = Ban::new(2, 3);
        b.success();
        assert_eq!(b.failure(), None);
        assert_eq!(b.success(), None, "a success resets the failure streak");
        assert_eq!(b.failure(), None);
        assert_eq!(b.failure(), Some(State::Down));
        assert_eq!(b.failure(), None);
        assert_eq!(b.state(), State::Down);
    }

    #[test]
    fn back_up_after_m_consecutive_successes_only() {
        let mut b = Ban::new(1, 3);
        b.success();
        assert_eq!(b.failure(), Some(State::Down));
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.failure(), None, "a failure restarts the count");
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), Some(State::Up));
    }

    #[test]
    fn never_answering_goes_from_unknown_to_down_then_needs_m() {
        let mut b = Ban::new(2, 3);
        assert_eq!(b.failure(), None);
        assert_eq!(b.state(), State::Unknown);
        assert_eq!(b.failure(), Some(State::Down));
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), Some(State::Up));
    }

    #[test]
    fn force_down_is_immediate_and_needs_m_to_return() {
        let mut b = Ban::new(5, 2);
        b.success();
        assert_eq!(b.force_down(), Some(State::Down));
        assert_eq!(b.success(), None);
        assert_eq!(b.force_down(), None, "already down: the count restarts");
        assert_eq!(b.success(), None);
        assert_eq!(b.success(), Some(State::Up));
        let mut unknown = Ban::new(5, 2);
        assert_eq!(unknown.force_down(), Some(State::Down));
    }

    #[test]
    fn zero_thresholds_act_as_one() {
        let mut b = Ban::new(0, 0);
        b.success();
        assert_eq!(b.failure(), Some(State::Down));
        assert_eq!(b.success(), Some(State::Up));
    }
}
