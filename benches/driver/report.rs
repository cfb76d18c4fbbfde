//! Results: per (scenario, target) the samples of every round, their medians, the table of
//! medians and ratios, and the bar as met / not met lines.

use crate::scenario::TargetKind;

/// One round's figures for one target.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Proxy CPU per transaction (µs); `None` for direct Postgres.
    pub cpu_us_per_tx: Option<f64>,
    /// Proxy RSS per idle client (bytes), for the idle-memory scenario.
    pub bytes_per_client: Option<f64>,
    pub clients_served: usize,
    pub clients: usize,
    pub failed: u64,
    pub error: Option<String>,
}

/// Everything measured for one target in one scenario.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub target: TargetKind,
    pub samples: Vec<Sample>,
    /// Why the target did not run in this scenario.
    pub skipped: Option<String>,
}

/// Medians of a row's samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Medians {
    pub tps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub cpu: Option<f64>,
    pub bytes_per_client: Option<f64>,
    /// The fewest clients served in any round, and the clients asked for.
    pub served: (usize, usize),
}

impl Row {
    pub fn medians(&self) -> Option<Medians> {
        if self.samples.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&Sample) -> Option<f64>| -> Option<f64> {
            median(self.samples.iter().filter_map(f).collect())
        };
        Some(Medians {
            tps: m(&|s| Some(s.tps)).unwrap_or(0.0),
            p50_ms: m(&|s| Some(s.p50_ms)).unwrap_or(0.0),
            p99_ms: m(&|s| Some(s.p99_ms)).unwrap_or(0.0),
            cpu: m(&|s| s.cpu_us_per_tx),
            bytes_per_client: m(&|s| s.bytes_per_client),
            served: (
                self.samples
                    .iter()
                    .map(|s| s.clients_served)
                    .min()
                    .unwrap_or(0),
                self.samples.first().map_or(0, |s| s.clients),
            ),
        })
    }

    fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .samples
            .iter()
            .filter_map(|s| s.error.clone())
            .collect();
        let failed: u64 = self.samples.iter().map(|s| s.failed).sum();
        if failed > 0 {
            out.push(format!("{failed} failed transactions"));
        }
        out.dedup();
        out
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The medians of `target` in `scenario`, if it ran.
pub fn find(rows: &[Row], scenario: &str, target: TargetKind) -> Option<Medians> {
    rows.iter()
        .find(|r| r.scenario == scenario && r.target == target)
        .and_then(Row::medians)
}

/// A table cell: one line, no `|`, at most 160 characters.
fn one_line(text: &str) -> String {
    let flat: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "/");
    match flat.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &flat[..i]),
        None => flat,
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a > 0.0 && b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        String::new()
    }
}

/// The table: one line per (scenario, target), medians and ratios against PgBouncer and
/// direct Postgres in the same scenario. Markdown, so the README can take it as printed.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | target | TPS | p50 ms | p99 ms | proxy CPU µs/tx | B/idle client | \
         TPS vs PgBouncer | TPS vs direct | CPU vs PgBouncer | notes |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for row in rows {
        let Some(m) = row.medians() else {
            out.push_str(&format!(
                "| {} | {} | | | | | | | | | skipped: {} |\n",
                row.scenario,
                row.target.label(),
                one_line(row.skipped.as_deref().unwrap_or("no samples"))
            ));
            continue;
        };
        let pgb = find(rows, row.scenario, TargetKind::PgBouncer);
        let direct = find(rows, row.scenario, TargetKind::Direct);
        let is_pgb = row.target == TargetKind::PgBouncer;
        let is_direct = row.target == TargetKind::Direct;
        let num = |v: f64, digits: usize| {
            if v > 0.0 {
                format!("{v:.digits$}")
            } else {
                String::new()
            }
        };
        let mut notes = row.errors();
        if m.served.1 > 0 && m.served.0 < m.served.1 && m.tps > 0.0 {
            notes.push(format!("served {}/{} clients", m.served.0, m.served.1));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.target.label(),
            num(m.tps, 0),
            num(m.p50_ms, 3),
            num(m.p99_ms, 3),
            m.cpu.map_or(String::new(), |c| num(c, 1)),
            m.bytes_per_client
                .map_or(String::new(), |b| format!("{b:.0}")),
            match pgb {
                Some(p) if !is_pgb => ratio(m.tps, p.tps),
                _ => String::new(),
            },
            match direct {
                Some(d) if !is_direct => ratio(m.tps, d.tps),
                _ => String::new(),
            },
            match (pgb.and_then(|p| p.cpu), m.cpu) {
                (Some(p), Some(c)) if !is_pgb => ratio(c, p),
                _ => String::new(),
            },
            one_line(&notes.join("; "))
        ));
    }
    out
}

/// One bar line: what is compared, the figure, the limit, met or not (or not measured).
struct Bar {
    what: String,
    verdict: Option<bool>,
    figure: String,
}

/// The bar, each as a ratio from this run.
pub fn bar(rows: &[Row]) -> String {
    use TargetKind::*;
    let mut bars = Vec::new();
    let cpu_ratio = |sc: &str| {
        let l = find(rows, sc, Lagoon)?.cpu?;
        let p = find(rows, sc, PgBouncer)?.cpu?;
        Some(l / p)
    };
    for sc in ["select-simple", "select-extended"] {
        let r = cpu_ratio(sc);
        bars.push(Bar {
            what: format!("proxy CPU/tx, {sc}: Lagoon at most 0.8x PgBouncer"),
            verdict: r.map(|r| r <= 0.8),
            figure: r.map_or(String::new(), |r| format!("{r:.2}x")),
        });
    }
    let tps_ratio = |sc: &str, other: TargetKind| {
        let l = find(rows, sc, Lagoon)?.tps;
        let o = find(rows, sc, other)?.tps;
        (l > 0.0 && o > 0.0).then(|| l / o)
    };
    for (sc, label) in [("select-simple", "50"), ("clients-1000", "1,000")] {
        let r = tps_ratio(sc, PgBouncer);
        bars.push(Bar {
            what: format!("TPS at {label} clients ({sc}): Lagoon at least PgBouncer's"),
            verdict: r.map(|r| r >= 1.0),
            figure: r.map_or(String::new(), |r| format!("{r:.2}x")),
        });
    }
    let r = tps_ratio("clients-1000", Direct);
    bars.push(Bar {
        what: "TPS at 1,000 clients: Lagoon at least 1.5x direct Postgres".to_owned(),
        verdict: r.map(|r| r >= 1.5),
        figure: r.map_or(String::new(), |r| format!("{r:.2}x")),
    });
    let mem = find(rows, "idle-memory", Lagoon).and_then(|m| m.bytes_per_client);
    let pgb_mem = find(rows, "idle-memory", PgBouncer).and_then(|m| m.bytes_per_client);
    bars.push(Bar {
        what: "memory per idle client: Lagoon at most 4 KiB (PgBouncer ~1.3 KB)".to_owned(),
        verdict: mem.map(|b| b <= 4096.0),
        figure: mem.map_or(String::new(), |b| {
            format!(
                "{b:.0} B (PgBouncer {})",
                pgb_mem.map_or("n/a".to_owned(), |p| format!("{p:.0} B"))
            )
        }),
    });
    let big = find(rows, "clients-10000", Lagoon);
    bars.push(Bar {
        what: "10,000 clients through 20: all served, p99/p50 at most 2".to_owned(),
        verdict: big
            .map(|m| m.served.0 == m.served.1 && m.p50_ms > 0.0 && m.p99_ms / m.p50_ms <= 2.0),
        figure: big.map_or(String::new(), |m| {
            format!(
                "served {}/{}, p99/p50 {:.2} (PgBouncer {})",
                m.served.0,
                m.served.1,
                m.p99_ms / m.p50_ms.max(f64::MIN_POSITIVE),
                find(rows, "clients-10000", PgBouncer).map_or("n/a".to_owned(), |p| format!(
                    "{:.2}",
                    p.p99_ms / p.p50_ms.max(f64::MIN_POSITIVE)
                ))
            )
        }),
    });
    let prep = find(rows, "select-prepared", Lagoon).map(|m| m.tps);
    let ext = find(rows, "select-extended", Lagoon).map(|m| m.tps);
    let r = prep.zip(ext).and_then(|(p, e)| (e > 0.0).then(|| p / e));
    bars.push(Bar {
        what: "-M prepared through Lagoon faster than -M extended through Lagoon".to_owned(),
        verdict: r.map(|r| r > 1.0),
        figure: r.map_or(String::new(), |r| format!("{r:.2}x")),
    });
    let split = find(rows, "rw-split", LagoonSplit).and_then(|m| m.cpu);
    let plain = find(rows, "rw-split", Lagoon).and_then(|m| m.cpu);
    let r = split.zip(plain).map(|(s, p)| s / p);
    bars.push(Bar {
        what: "read/write split on, select-only: at most +10% proxy CPU".to_owned(),
        verdict: r.map(|r| r <= 1.10),
        figure: r.map_or(String::new(), |r| format!("{:+.0}%", (r - 1.0) * 100.0)),
    });

    let mut out = String::new();
    for b in bars {
        let mark = match b.verdict {
            Some(true) => "met        ",
            Some(false) => "NOT MET    ",
            None => "not measured",
        };
        out.push_str(&format!("- {mark} {}: {}\n", b.what, b.figure));
    }
    out
}
