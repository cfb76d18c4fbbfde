//! The scenarios the issue asks for, as data: what pgbench runs (or the idle-client memory
//! probe), with how many clients, and against which targets.

use crate::args::Settings;

/// Something clients connect to in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// Postgres itself (the primary), no proxy.
    Direct,
    /// Lagoon in front of the primary, read/write split off.
    Lagoon,
    /// Lagoon with read/write split on, in front of the primary and two replicas.
    LagoonSplit,
    /// PgBouncer in front of the primary.
    PgBouncer,
}

impl TargetKind {
    pub fn label(self) -> &'static str {
        match self {
            TargetKind::Direct => "direct",
            TargetKind::Lagoon => "lagoon",
            TargetKind::LagoonSplit => "lagoon rw-split",
            TargetKind::PgBouncer => "pgbouncer",
        }
    }
}

/// How clients prove who they are, end to end (client -> proxy; the proxies' pooled server
/// logins are rare and use what Postgres stores for the role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// The comparison's default, as in PgBouncer setups with an md5 userlist.
    Md5,
    /// SCRAM-SHA-256, what `-C` measures: a full SCRAM exchange per transaction.
    Scram,
}

/// What a scenario measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A pgbench run: builtin script (`-b`), query mode (`-M`), `-C` or not.
    Pgbench {
        builtin: &'static str,
        mode: &'static str,
        connect_per_tx: bool,
    },
    /// This many logged-in idle clients: proxy RSS with them minus RSS without.
    IdleMemory,
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub about: &'static str,
    pub work: Work,
    pub clients: usize,
    pub auth: Auth,
    pub tls: bool,
    pub targets: Vec<TargetKind>,
}

impl Scenario {
    /// Whether any target needs the two replicas.
    pub fn needs_replicas(&self) -> bool {
        self.targets.contains(&TargetKind::LagoonSplit)
    }
}

/// All scenarios in run order; `--quick` shrinks the client counts.
pub fn all(s: &Settings) -> Vec<Scenario> {
    use TargetKind::*;
    let three = vec![Direct, Lagoon, PgBouncer];
    let proxies = vec![Lagoon, PgBouncer];
    let select = |mode| Work::Pgbench {
        builtin: "select-only",
        mode,
        connect_per_tx: false,
    };
    let scale = |full: usize, quick: usize| if s.quick { quick } else { full };
    vec![
        Scenario {
            name: "select-simple",
            about: "pgbench -S -M simple, 50 clients",
            work: select("simple"),
            clients: 50,
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "select-extended",
            about: "pgbench -S -M extended, 50 clients",
            work: select("extended"),
            clients: 50,
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "select-prepared",
            about: "pgbench -S -M prepared, 50 clients",
            work: select("prepared"),
            clients: 50,
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "tpcb",
            about: "pgbench tpcb-like (-M simple), 50 clients",
            work: Work::Pgbench {
                builtin: "tpcb-like",
                mode: "simple",
                connect_per_tx: false,
            },
            clients: 50,
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "one-client",
            about: "pgbench -S -M simple, 1 client",
            work: select("simple"),
            clients: 1,
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "connect-scram",
            about: "pgbench -S -C (a new SCRAM login per transaction), 10 clients",
            work: Work::Pgbench {
                builtin: "select-only",
                mode: "simple",
                connect_per_tx: true,
            },
            clients: 10,
            auth: Auth::Scram,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "clients-1000",
            about: "pgbench -S -M simple, 1,000 clients",
            work: select("simple"),
            clients: scale(1000, 200),
            auth: Auth::Md5,
            tls: false,
            targets: three.clone(),
        },
        Scenario {
            name: "clients-10000",
            about: "pgbench -S -M simple, 10,000 clients through a pool of 20",
            work: select("simple"),
            clients: scale(10_000, 500),
            auth: Auth::Md5,
            tls: false,
            targets: proxies.clone(),
        },
        Scenario {
            name: "rw-split",
            about: "pgbench -S -M simple, 50 clients; Lagoon with read/write split over 2 replicas",
            work: select("simple"),
            clients: 50,
            auth: Auth::Md5,
            tls: false,
            targets: vec![Lagoon, LagoonSplit, PgBouncer],
        },
        Scenario {
            name: "idle-memory",
            about: "RSS per idle client: 2,000 logged-in clients that ran one query",
            work: Work::IdleMemory,
            clients: scale(2000, 200),
            auth: Auth::Md5,
            tls: false,
            targets: proxies,
        },
        // Last: it turns TLS on in the primary, which later plain runs must not see.
        Scenario {
            name: "tls",
            about: "pgbench -S -M simple over TLS (PGSSLMODE=require), 50 clients",
            work: select("simple"),
            clients: 50,
            auth: Auth::Md5,
            tls: true,
            targets: three,
        },
    ]
}
