//! Settings through the real binary: the TOML file (`broker.toml` in the data
//! directory, or `--config`), `PROTONPASS_BROKER_*` variables and flags, with
//! flag over environment over file over default, as an agent observes them in
//! what the broker issues.

use crate::device::start_device;
use protonpass_e2e::{API, Broker, claims, key, serve_refused};

/// A broker on a fresh data directory holding `toml` as its `broker.toml`
/// (the directory lives as long as the returned guard).
fn start(toml: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    if let Some(t) = toml {
        std::fs::write(dir.path().join("broker.toml"), t).unwrap();
    }
    (Broker::launch(dir.path(), "127.0.0.1:0", args, env), dir)
}

/// What an agent sees of two settings: the access token lifetime
/// (`access_ttl`, under a day-long grant) and the device polling interval.
async fn observed(b: &Broker) -> (i64, i64) {
    let r = b
        .enroll(&key(), "bot", "calendar:read", &["--ttl", "1d"])
        .await;
    let c = claims(&r.s("access_token"));
    let ttl = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    let d = start_device(b, "travel:book", Some(API)).await;
    (ttl, d.body["interval"].as_i64().unwrap())
}

const FILE: &str = "access_ttl = \"2h\"\ndevice_interval = 7\n";
const ENV: [(&str, &str); 2] = [
    ("PROTONPASS_BROKER_ACCESS_TTL", "3h"),
    ("PROTONPASS_BROKER_DEVICE_INTERVAL", "8"),
];
const FLAGS: [&str; 4] = ["--access-ttl", "4h", "--device-interval", "9"];

#[tokio::test]
async fn flag_beats_environment_beats_file_beats_default() {
    if protonpass_e2e::on_postgres() {
        return; // writes its own broker.toml over the kit's store settings
    }
    for (what, toml, args, env, want) in [
        ("defaults", None, &[][..], &[][..], (3600, 5)),
        ("file", Some(FILE), &[][..], &[][..], (7200, 7)),
        (
            "environment over file",
            Some(FILE),
            &[][..],
            &ENV[..],
            (10800, 8),
        ),
        (
            "flag over environment",
            Some(FILE),
            &FLAGS[..],
            &ENV[..],
            (14400, 9),
        ),
        (
            "flag over file",
            Some(FILE),
            &FLAGS[..],
            &[][..],
            (14400, 9),
        ),
    ] {
        let (b, _dir) = start(toml, args, env);
        assert_eq!(observed(&b).await, want, "{what}");
    }
}

#[tokio::test]
async fn an_explicit_config_file_replaces_the_data_directorys() {
    if protonpass_e2e::on_postgres() {
        return; // writes its own broker.toml over the kit's store settings
    }
    let other = tempfile::tempdir().unwrap();
    let path = other.path().join("other.toml");
    std::fs::write(&path, "access_ttl = \"5h\"\n").unwrap();
    let path = path.to_str().unwrap();
    // By flag and by variable; the data directory's file is not read at all
    // (its device_interval does not apply either).
    for (args, env) in [
        (vec!["--config", path], vec![]),
        (vec![], vec![("PROTONPASS_BROKER_CONFIG", path)]),
    ] {
        let (b, _dir) = start(Some(FILE), &args, &env);
        assert_eq!(observed(&b).await, (18000, 5), "{args:?} {env:?}");
    }
}

#[tokio::test]
async fn bad_settings_stop_the_broker_with_a_typed_error() {
    for (toml, args, env) in [
        // An unknown key is a typo, not something to ignore.
        ("acces_ttl = \"1h\"\n", vec![], vec![]),
        ("access_ttl = \"soon\"\n", vec![], vec![]),
        // A bad value from the environment as much as from the file.
        (
            "access_ttl = \"1h\"\n",
            vec![],
            vec![("PROTONPASS_BROKER_ACCESS_TTL", "1y")],
        ),
        ("", vec!["--device-max-pending", "6"], vec![]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("broker.toml"), toml).unwrap();
        let v = serve_refused(dir.path(), &args, &env);
        assert_eq!(
            v["error"], "invalid_request",
            "{toml:?} {args:?} {env:?}: {v}"
        );
    }
}
