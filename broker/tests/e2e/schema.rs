//! Schema versions: a data directory made before versioning opens (as
//! version 1, then migrated to the current version), and a database that a newer broker migrated is refused with a
//! message that says so, by `serve` and by the commands alike.

use protonpass_e2e::{Broker, on_postgres, serve_refused, store_sql};

#[tokio::test]
async fn a_data_directory_from_before_schema_versions_opens_and_is_migrated() {
    if on_postgres() {
        return; // a SQLite data directory
    }
    let mut b = Broker::start(&[]);
    let v = b.create_grant("a", "x:y", &[]);
    let gid = v["grant_id"].as_str().unwrap().to_owned();
    let dir = b.take_dir();
    b.kill();
    // What a broker of before versioning left: the same tables, no version.
    let db = rusqlite::Connection::open(dir.path().join("broker.db")).unwrap();
    db.execute_batch("DROP TABLE schema_version").unwrap();
    drop(db);
    let b = Broker::start_in(dir.path(), &[]);
    let list = b.cli_ok(&["grant", "list"]);
    assert!(list.to_string().contains(&gid), "{list}");
    let db = rusqlite::Connection::open(dir.path().join("broker.db")).unwrap();
    let version: i64 = db
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    // Version 1 is the schema of before versioning; version 2 adds tables,
    // version 3 a column; version 4 is PostgreSQL's alone (nothing here);
    // version 5 the budgets' running totals.
    assert_eq!(version, 5);
}

#[tokio::test]
async fn a_database_migrated_by_a_newer_broker_is_refused() {
    let mut b = Broker::start(&[]);
    b.cli_ok(&["grant", "list"]);
    let dir = b.take_dir();
    b.kill();
    store_sql(dir.path(), "UPDATE schema_version SET version = 999");
    let e = serve_refused(dir.path(), &[], &[]);
    let m = e["error_description"].as_str().unwrap_or_default();
    assert_eq!(e["error"], "invalid_request", "{e}");
    assert!(
        m.contains("schema version 999, newer than this protonpass-broker knows (5)"),
        "{m}"
    );
    // The commands refuse it too, and change nothing.
    let out = std::process::Command::new(protonpass_e2e::broker_bin())
        .args(["--data", dir.path().to_str().unwrap(), "grant", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("newer than this protonpass-broker"));
}
