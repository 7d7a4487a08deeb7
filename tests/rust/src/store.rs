//! The kit's store side: with `PROTONPASS_TEST_STORE` each broker gets a fresh
//! PostgreSQL database (dropped with it), else SQLite in its data directory.
//! The broker's store conformance suite makes its databases here too.

use std::path::Path;

use protonpass_agent::OsRandom;

/// Where the kit records a data directory's database.
const STORE_FILE: &str = "test-store";

/// The PostgreSQL server the suite runs against (`PROTONPASS_TEST_STORE`, a
/// postgres:// URL of a database the tests may create databases from), or
/// `None`: SQLite in each broker's data directory, and PostgreSQL-only tests
/// return early.
///
/// Every test decides here whether it runs on PostgreSQL: with
/// `PROTONPASS_REQUIRE_TEST_STORE=1` (`make test-postgres` sets it) a missing
/// URL panics instead, so that a run meant for PostgreSQL cannot pass by
/// skipping its PostgreSQL tests or falling back to SQLite.
pub fn test_store() -> Option<String> {
    let url = std::env::var("PROTONPASS_TEST_STORE")
        .ok()
        .filter(|s| !s.trim().is_empty());
    if url.is_none() && std::env::var_os("PROTONPASS_REQUIRE_TEST_STORE").is_some_and(|v| v == "1")
    {
        panic!(
            "PROTONPASS_REQUIRE_TEST_STORE=1 but PROTONPASS_TEST_STORE is unset or empty: \
             set PROTONPASS_TEST_STORE to a postgres:// URL (`make test-postgres` starts a \
             cluster and sets both), or unset PROTONPASS_REQUIRE_TEST_STORE to run on SQLite"
        );
    }
    url
}

/// Whether the suite runs against PostgreSQL (tests that look into SQLite's
/// files are skipped then).
pub fn on_postgres() -> bool {
    test_store().is_some()
}

/// Run `sql` on the store of the broker of `data`: its PostgreSQL database
/// with `PROTONPASS_TEST_STORE`, else its SQLite file (no broker running).
pub fn store_sql(data: &Path, sql: &str) {
    if on_postgres() {
        let url = std::fs::read_to_string(data.join(STORE_FILE)).unwrap();
        pg_admin(url.trim(), sql);
    } else {
        let db = rusqlite::Connection::open(data.join("broker.db")).unwrap();
        db.execute_batch(sql).unwrap();
    }
}

/// Run statements on the PostgreSQL database of `url` (on a thread of its
/// own: callers may be inside a runtime or not).
fn pg_admin(url: &str, sql: &str) {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            c.batch_execute(&sql).await.unwrap();
        });
    })
    .join()
    .unwrap();
}

/// Create a database with a random name (`{prefix}_` and 32 hex digits) on
/// the server of `base` (a postgres:// URL of a database others can be created
/// from) and return its URL.
pub fn fresh_database(base: &str, prefix: &str) -> String {
    let mut raw = [0u8; 16];
    protonpass_agent::Random::fill(&OsRandom, &mut raw).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let name = format!("{prefix}_{hex}");
    pg_admin(base, &format!("CREATE DATABASE {name}"));
    let (server, _) = base.rsplit_once('/').unwrap();
    format!("{server}/{name}")
}

/// Drop the database `prepare_store` made for the data directory `data`, if any.
pub(crate) fn drop_database(data: &Path) {
    if let Some(url) = std::fs::read_to_string(data.join(STORE_FILE))
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        && let Some(base) = test_store()
        && let Some((_, name)) = url.rsplit_once('/')
    {
        pg_admin(
            &base,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
}

/// With PostgreSQL, give the broker on `data` a fresh database (made on the
/// first start on `data`, kept for restarts) and a vault key file, through
/// `broker.toml` in the data directory: every command run with `--data`
/// (the CLI, tests' own commands) then uses the same store, as replicas and
/// operators do with the configuration file.
pub(crate) fn prepare_store(data: &Path) {
    if let Some(base) = test_store() {
        prepare_store_on(data, &base);
    }
}

/// `prepare_store` on the PostgreSQL server `base` (a postgres:// URL of a
/// database from which others can be created).
pub fn prepare_store_on(data: &Path, base: &str) {
    let file = data.join(STORE_FILE);
    if file.exists() {
        return;
    }
    let url = fresh_database(base, "t");
    let mut key = [0u8; 32];
    protonpass_agent::Random::fill(&OsRandom, &mut key).unwrap();
    let key_file = data.join("test-vault.key");
    std::fs::write(&key_file, protonpass_agent::b64::encode(key)).unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::fs::write(&file, format!("{url}\n")).unwrap();
    // Before the test's own settings, if it wrote a file already.
    let own = std::fs::read_to_string(data.join("broker.toml")).unwrap_or_default();
    std::fs::write(
        data.join("broker.toml"),
        format!(
            "store = {url:?}\nvault_key_file = {:?}\n{own}",
            key_file.display().to_string()
        ),
    )
    .unwrap();
}
