//! `Pools::reconcile`: what a reload keeps, replaces and removes. No server is contacted:
//! pools connect only on checkout.

use std::sync::Arc;

use super::{ClusterChange, Pools};
use crate::config::{Config, parse};

const BASE: &str = r#"
[pool]
size = 4

[[users]]
name = "app"
password = "secret"

[[users]]
name = "bob"
password = "bobpw"

[[databases]]
name = "appdb"
primary = "postgres://127.0.0.1:5432/appdb"
replicas = ["postgres://127.0.0.1:5433/appdb", "postgres://127.0.0.1:5434/appdb"]
"#;

fn config(text: &str) -> Config {
    parse(text).unwrap_or_else(|p| panic!("test config invalid: {p:#?}"))
}

/// Pools for (appdb, app) and (appdb, bob), as two logins would create them.
fn pools(c: &Config) -> Pools {
    let pools = Pools::default();
    let db = c.database("appdb").expect("appdb");
    for user in &c.users {
        pools.get_or_create(c, db, user);
    }
    pools
}

#[test]
fn the_same_config_changes_nothing() {
    let c = config(BASE);
    let p = pools(&c);
    let before = p.current("appdb", "app").expect("cluster");
    assert!(p.reconcile(&c).is_empty());
    assert_eq!(p.generation(), 0);
    assert!(Arc::ptr_eq(
        &before,
        &p.current("appdb", "app").expect("cluster")
    ));
}

#[test]
fn sizes_change_in_place() {
    let c = config(BASE);
    let p = pools(&c);
    let before = p.current("appdb", "app").expect("cluster");
    let changes = p.reconcile(&config(&BASE.replace("size = 4", "size = 2")));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(p.generation(), 0, "no cluster was replaced");
    let now = p.current("appdb", "app").expect("cluster");
    assert!(Arc::ptr_eq(&before, &now));
    for pool in now.pools() {
        assert_eq!(pool.settings().size, 2);
    }
}

#[test]
fn a_removed_replica_replaces_the_cluster_and_keeps_unchanged_members() {
    let c = config(BASE);
    let p = pools(&c);
    let before = p.current("appdb", "app").expect("cluster");
    let new = config(&BASE.replace(", \"postgres://127.0.0.1:5434/appdb\"", ""));
    let mut changes = p.reconcile(&new);
    changes.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    assert_eq!(
        changes,
        [
            ClusterChange::Replaced {
                database: "appdb".into(),
                user: "app".into()
            },
            ClusterChange::Replaced {
                database: "appdb".into(),
                user: "bob".into()
            },
        ]
    );
    assert!(p.generation() > 0);
    let now = p.current("appdb", "app").expect("cluster");
    assert_eq!(now.replicas.len(), 1);
    // The primary and replica1 did not change: same pools, warm connections kept.
    assert!(Arc::ptr_eq(&before.primary, &now.primary));
    assert!(Arc::ptr_eq(&before.replicas[0], &now.replicas[0]));
    assert_eq!(p.all().len(), 4);
}

#[test]
fn a_removed_user_or_database_loses_its_clusters() {
    let c = config(BASE);
    let p = pools(&c);
    let bob = p.current("appdb", "bob").expect("cluster");
    let new = config(&BASE.replace("[[users]]\nname = \"bob\"\npassword = \"bobpw\"\n", ""));
    let changes = p.reconcile(&new);
    assert_eq!(
        changes,
        [ClusterChange::Removed {
            database: "appdb".into(),
            user: "bob".into()
        }]
    );
    assert!(p.current("appdb", "bob").is_none());
    assert!(p.current("appdb", "app").is_some());
    let g = p.generation();
    assert!(g > 0);
    // A session holding it still has a usable cluster (retired pools still check out).
    assert_eq!(bob.primary.settings().size, 4);

    let no_db = config("[[users]]\nname = \"app\"\npassword = \"secret\"\n");
    assert_eq!(p.reconcile(&no_db).len(), 1);
    assert!(p.current("appdb", "app").is_none());
    assert!(p.generation() > g);
}

#[test]
fn a_changed_server_password_replaces_the_pools() {
    let c = config(BASE);
    let p = pools(&c);
    let bob = p.current("appdb", "bob").expect("cluster");
    let app = p.current("appdb", "app").expect("cluster");
    // bob's password is also his server login: every member's pool changes; app's do not.
    p.reconcile(&config(&BASE.replace("bobpw", "newpw")));
    let bob_now = p.current("appdb", "bob").expect("cluster");
    for (old, new) in bob.pools().zip(bob_now.pools()) {
        assert!(!Arc::ptr_eq(old, new), "{}", old.member);
    }
    assert!(Arc::ptr_eq(
        &app,
        &p.current("appdb", "app").expect("cluster")
    ));
}
