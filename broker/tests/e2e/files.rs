//! The data directory on disk: owner-only, checked at start, and never
//! created by a command that only reads.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use protonpass_e2e::{Broker, broker_bin};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn what_the_broker_creates_is_owner_only() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let mut b = Broker::start(&[]);
    b.create_grant_on("a", "x:read", "https://a.example", &[]);
    b.kill();
    let data = b.data.clone();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("keys")), 0o700);
    for f in std::fs::read_dir(data.join("keys")).unwrap() {
        assert_eq!(mode(&f.unwrap().path()), 0o600);
    }
    assert!(
        data.join("vault.key").exists(),
        "serve creates the vault key"
    );
    for name in ["broker.db", "broker.db-wal", "broker.db-shm", "vault.key"] {
        let p = data.join(name);
        if p.exists() {
            assert_eq!(mode(&p), 0o600, "{name}");
        }
    }
}

#[test]
fn a_readable_data_directory_is_refused_with_the_fix() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let mut b = Broker::start(&[]);
    b.kill();
    let data = b.data.clone();
    for (path, open, fix) in [
        (data.clone(), 0o755, "chmod 700"),
        (data.join("broker.db"), 0o644, "chmod 600"),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(open)).unwrap();
        for args in [
            &["serve", "--addr", "127.0.0.1:0"][..],
            &["grant", "list"][..],
        ] {
            let out = Command::new(broker_bin())
                .arg("--data")
                .arg(&data)
                .args(args)
                .output()
                .unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} started on mode {open:o}");
            assert!(
                err.contains(&format!("{fix} {}", path.display())),
                "{args:?}: {err}"
            );
        }
        let back = if open == 0o755 { 0o700 } else { 0o600 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(back)).unwrap();
    }
}

#[test]
fn read_only_commands_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    for args in [
        &["grant", "list"][..],
        &["audit", "tail"][..],
        &["audit", "verify"][..],
    ] {
        let out = Command::new(broker_bin())
            .arg("--data")
            .arg(&missing)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no broker data at"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created {}", missing.display());
    }
}
