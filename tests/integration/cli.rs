//! The `lagoon` binary's command line: `check` on good and bad configs, `--help`.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const LAGOON: &str = env!("CARGO_BIN_EXE_lagoon");

/// Runs the binary from the package root, bounded in time.
async fn lagoon(args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(LAGOON);
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("LAGOON_LOG")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("lagoon {args:?} did not finish in 60 s"))
        .unwrap_or_else(|e| panic!("cannot run {LAGOON}: {e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A config file in the temp dir, removed on drop.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, contents: &str) -> TempConfig {
        let path = std::env::temp_dir().join(format!(
            "lagoon-cli-test-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("write temp config");
        TempConfig(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn check_accepts_the_shipped_config() {
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("config/lagoon.toml")
            .exists()
    );
    let out = lagoon(&["check", "--config", "config/lagoon.toml"]).await;
    assert!(out.status.success(), "lagoon check failed:\n{}", text(&out));
    // `--config` also works before the subcommand.
    let out = lagoon(&["--config", "config/lagoon.toml", "check"]).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// The 1-based line number of the first line of `contents` containing `needle`.
fn line_of(contents: &str, needle: &str) -> usize {
    contents
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

#[tokio::test]
async fn check_prints_every_problem_and_fails() {
    let contents = r#"# A config with three unrelated mistakes.
[server]
listen = "127.0.0.1:6432"
max_client_con = 100

[pool]
size = 0

[[users]]
name = "app"
password = "secret"

[[users]]
name = "app"
password = "other"

[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
"#;
    let file = TempConfig::new("problems", contents);
    let out = lagoon(&["check", "--config", file.path()]).await;
    let all = text(&out);
    assert!(
        !out.status.success(),
        "check passed a broken config:\n{all}"
    );

    // The unknown key, with its line.
    let unknown_line = line_of(contents, "max_client_con");
    assert!(
        all.lines()
            .any(|l| l.contains("max_client_con") && l.contains(&format!("line {unknown_line}"))),
        "unknown key not reported with line {unknown_line}:\n{all}"
    );
    // The bad size.
    assert!(
        all.lines().any(|l| l.contains("pool.size")
            && l.contains(&format!("line {}", line_of(contents, "size = 0")))),
        "pool.size = 0 not reported with its line:\n{all}"
    );
    // The duplicate user.
    assert!(
        all.lines()
            .any(|l| l.to_lowercase().contains("duplicate") && l.contains("app")),
        "duplicate user not reported:\n{all}"
    );
    // Three separate problems, not one line holding them all.
    let problem_lines = all
        .lines()
        .filter(|l| {
            l.contains("max_client_con") || l.contains("pool.size") || l.contains("duplicate")
        })
        .count();
    assert!(problem_lines >= 3, "{all}");
}

#[tokio::test]
async fn check_reports_type_errors_and_unknown_sections_too() {
    let contents = r#"[server]
max_client_conn = "many"

[pooll]
size = 3

[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
bogus = 1
"#;
    let file = TempConfig::new("types", contents);
    let out = lagoon(&["check", "--config", file.path()]).await;
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    for (needle, line) in [("max_client_conn", 2), ("pooll", 4), ("bogus", 10)] {
        assert!(
            all.lines()
                .any(|l| l.contains(needle) && l.contains(&format!("line {line}"))),
            "{needle} not reported at line {line}:\n{all}"
        );
    }
}

#[tokio::test]
async fn check_fails_on_a_missing_file_and_a_syntax_error() {
    let out = lagoon(&["check", "--config", "/nonexistent/lagoon-test.toml"]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("/nonexistent/lagoon-test.toml"),
        "{}",
        text(&out)
    );

    let file = TempConfig::new("syntax", "[server\nlisten = 1\n");
    let out = lagoon(&["check", "--config", file.path()]).await;
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("line 1"), "{}", text(&out));
}

#[tokio::test]
async fn help_mentions_check_and_demo() {
    let out = lagoon(&["--help"]).await;
    assert!(out.status.success(), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["check", "demo", "--config"] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    // Each subcommand has its own help.
    for sub in ["check", "demo"] {
        let out = lagoon(&[sub, "--help"]).await;
        assert!(out.status.success(), "{sub} --help: {}", text(&out));
    }
}

/// The config docker/compose.yml mounts into the Lagoon container passes `lagoon check`, is the
/// file the compose file mounts at the image's config path, listens on every interface (the
/// container's loopback is unreachable from the other services), and serves metrics on the
/// port docker/prometheus.yml scrapes. No Docker engine needed: the files are read as text.
#[tokio::test]
async fn docker_compose_config_passes_check_and_matches_compose_and_prometheus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = lagoon(&["check", "--config", "docker/lagoon.toml"]).await;
    assert!(out.status.success(), "lagoon check failed:\n{}", text(&out));

    let read =
        |p: &str| std::fs::read_to_string(root.join(p)).unwrap_or_else(|e| panic!("read {p}: {e}"));
    let compose = read("docker/compose.yml");
    let dockerfile = read("docker/Dockerfile");
    let prometheus = read("docker/prometheus.yml");

    // compose.yml (in docker/) mounts docker/lagoon.toml where the image's CMD reads it.
    let image_config = "/etc/lagoon/lagoon.toml";
    assert!(
        compose.contains(&format!("./lagoon.toml:{image_config}")),
        "compose.yml does not mount ./lagoon.toml at {image_config}:\n{compose}"
    );
    assert!(
        dockerfile.contains(&format!(r#"CMD ["--config", "{image_config}"]"#)),
        "the Dockerfile's CMD does not read {image_config}:\n{dockerfile}"
    );
    assert!(
        compose.contains("./prometheus.yml:/etc/prometheus/prometheus.yml"),
        "compose.yml does not mount prometheus.yml:\n{compose}"
    );

    let config = lagoon::config::load(&root.join("docker/lagoon.toml"))
        .unwrap_or_else(|p| panic!("docker/lagoon.toml: {p:?}"));
    let metrics = config
        .server
        .metrics_listen
        .as_deref()
        .expect("docker/lagoon.toml must set server.metrics_listen for Prometheus");
    for (key, addr) in [
        ("listen", config.server.listen.as_str()),
        ("metrics_listen", metrics),
    ] {
        assert!(
            addr.starts_with("0.0.0.0:"),
            "server.{key} = {addr:?}: a container must listen on 0.0.0.0"
        );
    }
    let port = metrics.rsplit(':').next().unwrap_or_default();
    assert!(
        prometheus.contains(&format!("\"lagoon:{port}\"")),
        "prometheus.yml does not scrape lagoon:{port} (server.metrics_listen):\n{prometheus}"
    );
    // The compose file publishes the same ports the config listens on.
    let listen_port = config.server.listen.rsplit(':').next().unwrap_or_default();
    for p in [listen_port, port] {
        assert!(
            compose.contains(&format!("\"{p}:{p}\"")),
            "compose.yml does not publish port {p}:\n{compose}"
        );
    }
}
