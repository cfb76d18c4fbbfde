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

/// `BASE` with auth_query on.
fn with_auth_query(text: &str) -> String {
    format!("[auth_query]\nuser = \"lagoon_auth\"\npassword = \"apw\"\n{text}")
}

#[test]
fn an_auth_query_user_gets_one_slot_for_every_member() {
    let c = config(&with_auth_query(BASE));
    let p = Pools::default();
    let db = c.database("appdb").expect("appdb");
    let carol = p.get_or_create_fetched(&c, db, "carol");
    let slot = carol.credential.clone().expect("a credential slot");
    assert!(Arc::ptr_eq(
        &carol,
        &p.get_or_create_fetched(&c, db, "carol")
    ));
    assert_eq!(carol.pools().count(), 3);
    for pool in carol.pools() {
        let t = pool.target();
        assert_eq!((t.user.as_str(), t.password.as_deref()), ("carol", None));
        let s = t.credential.as_ref().expect("the member reads the slot");
        assert!(Arc::ptr_eq(s, &slot), "{}", pool.member);
        // Nothing to log in with before a client did.
        assert!(!t.has_credential());
    }
    slot.set(crate::auth::credential::ServerCredential::Md5Hash(
        crate::auth::md5::md5_hash("carol", "pw"),
    ));
    assert!(carol.pools().all(|p| p.target().has_credential()));
    // A configured user's cluster has no slot.
    let app = p.get_or_create(&c, db, c.user("app").expect("app"));
    assert!(app.credential.is_none());
    assert!(app.pools().all(|p| p.target().credential.is_none()));
}

#[test]
fn a_url_that_forces_a_server_user_keeps_it_for_auth_query_users() {
    let text = with_auth_query(&BASE.replace(
        "primary = \"postgres://127.0.0.1:5432/appdb\"",
        "primary = \"postgres://owner:opw@127.0.0.1:5432/appdb\"",
    ));
    let c = config(&text);
    let p = Pools::default();
    let carol = p.get_or_create_fetched(&c, c.database("appdb").expect("appdb"), "carol");
    let t = carol.primary.target();
    assert_eq!(
        (t.user.as_str(), t.password.as_deref()),
        ("owner", Some("opw"))
    );
    assert!(t.credential.is_none());
    // The replicas name no user: they log in as carol with the slot.
    assert!(carol.replicas[0].target().credential.is_some());
}

#[test]
fn reload_keeps_removes_or_replaces_auth_query_clusters() {
    let text = with_auth_query(BASE);
    let c = config(&text);
    let p = Pools::default();
    let carol = p.get_or_create_fetched(&c, c.database("appdb").expect("appdb"), "carol");
    // Same config, or new sizes: the cluster and its slot stay.
    assert!(p.reconcile(&c).is_empty());
    assert!(
        p.reconcile(&config(&text.replace("size = 4", "size = 2")))
            .is_empty()
    );
    let now = p.current("appdb", "carol").expect("cluster");
    assert!(Arc::ptr_eq(&carol, &now));
    assert_eq!(now.primary.settings().size, 2);
    // A new replica list: replaced, but the slot (and the credential in it) carries over.
    let fewer = text.replace(", \"postgres://127.0.0.1:5434/appdb\"", "");
    assert_eq!(p.reconcile(&config(&fewer)).len(), 1);
    let now = p.current("appdb", "carol").expect("cluster");
    assert!(Arc::ptr_eq(
        now.credential.as_ref().expect("slot"),
        carol.credential.as_ref().expect("slot")
    ));
    assert!(Arc::ptr_eq(&now.primary, &carol.primary));
    // carol gets a [[users]] entry: her pools now log in as the entry says.
    let listed = format!("{fewer}\n[[users]]\nname = \"carol\"\npassword = \"cpw\"\n");
    p.reconcile(&config(&listed));
    let now = p.current("appdb", "carol").expect("cluster");
    assert!(now.credential.is_none());
    assert_eq!(now.primary.target().password.as_deref(), Some("cpw"));
    // auth_query off: a fetched user's cluster goes.
    let p = Pools::default();
    p.get_or_create_fetched(&c, c.database("appdb").expect("appdb"), "carol");
    let changes = p.reconcile(&config(BASE));
    assert_eq!(
        changes,
        [ClusterChange::Removed {
            database: "appdb".into(),
            user: "carol".into()
        }]
    );
}
