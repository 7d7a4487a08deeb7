//! The grant store's unit tests.

#[test]
fn a_permission_problem_says_so_and_how_to_fix_it() {
    let e = io(
        "cannot write",
        Path::new("/srv/agent/grants"),
        std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    );
    let Error::Storage(m) = &e else {
        panic!("{e:?}")
    };
    assert!(m.contains("/srv/agent/grants: permission denied"), "{m}");
    assert!(m.contains("PROTONPASS_HOME"), "{m}");
}

use super::*;
use crate::clock::OsRandom;

fn grant() -> StoredGrant {
    StoredGrant {
        key: AgentKey::generate(&OsRandom).unwrap(),
        refresh_token: Zeroizing::new("rt-secret-value".into()),
        scope: "travel:search".into(),
        expires_at: Some(10),
    }
}

#[test]
fn file_store_round_trip_is_private() {
    let dir = tempfile_dir();
    let s = GrantStore::new(StoreKind::File(dir.clone()));
    let g = grant();
    s.save("http://b/", "default", "bot", &g).unwrap();
    let back = s.load("http://b", "default", "bot").unwrap().unwrap();
    assert_eq!(back.key.thumbprint(), g.key.thumbprint());
    assert_eq!(back.refresh_token.as_str(), "rt-secret-value");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.join("default.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(s.load("http://b", "default", "other").unwrap().is_none());
    s.remove("http://b", "default", "bot").unwrap();
    assert!(s.load("http://b", "default", "bot").unwrap().is_none());
    assert!(!format!("{back:?}").contains("rt-secret"));
}

#[test]
fn sealed_entries_need_the_passphrase() {
    let dir = tempfile_dir();
    let pass = |p: &str| Some(Zeroizing::new(p.to_owned()));
    let s = GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("correct horse"));
    let g = grant();
    s.save("http://b", "p1", "bot", &g).unwrap();
    let text = fs::read_to_string(dir.join("p1.json")).unwrap();
    assert!(!text.contains("rt-secret-value") && text.contains(SEALED));
    let back = s.load("http://b", "p1", "bot").unwrap().unwrap();
    assert_eq!(back.refresh_token.as_str(), "rt-secret-value");
    let wrong = GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("wrong"));
    assert_eq!(
        wrong.load("http://b", "p1", "bot").unwrap_err().code(),
        "storage_error"
    );
    let none = GrantStore::new(StoreKind::File(dir));
    assert_eq!(
        none.load("http://b", "p1", "bot").unwrap_err().code(),
        "storage_error"
    );
}

#[test]
fn a_sealed_store_is_never_written_in_plaintext_and_its_values_stay_in_place() {
    let dir = tempfile_dir();
    let pass = |p: &str| Some(Zeroizing::new(p.to_owned()));
    let sealed =
        GrantStore::new(StoreKind::File(dir.clone())).with_passphrase(pass("correct horse"));
    let plain = GrantStore::new(StoreKind::File(dir.clone()));
    // A plaintext entry written first is sealed along with the first sealed one.
    plain.save("http://b", "p", "old", &grant()).unwrap();
    sealed.save("http://b", "p", "bot", &grant()).unwrap();
    let text = fs::read_to_string(dir.join("p.json")).unwrap();
    assert!(!text.contains("rt-secret-value"), "{text}");
    assert!(sealed.load("http://b", "p", "old").unwrap().is_some());
    // Without the passphrase, nothing is written into a sealed store.
    let e = plain.save("http://b", "p", "new", &grant()).unwrap_err();
    assert_eq!(e.code(), "storage_error");
    assert_eq!(fs::read_to_string(dir.join("p.json")).unwrap(), text);
    // A plaintext value planted in a sealed store is refused.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rt = v["grants"][entry_key("http://b", "bot")]["refresh_token"].clone();
    v["grants"][entry_key("http://b", "bot")]["refresh_token"] = "rt-planted".into();
    fs::write(dir.join("p.json"), v.to_string()).unwrap();
    let e = sealed.load("http://b", "p", "bot").unwrap_err();
    assert!(e.to_string().contains("not"), "{e}");
    // A sealed value moved to another field or entry does not open.
    let key = v["grants"][entry_key("http://b", "bot")]["key"].clone();
    v["grants"][entry_key("http://b", "bot")]["refresh_token"] = key;
    fs::write(dir.join("p.json"), v.to_string()).unwrap();
    assert!(sealed.load("http://b", "p", "bot").is_err());
    v["grants"][entry_key("http://b", "bot")]["refresh_token"] = rt.clone();
    v["grants"][entry_key("http://b", "old")]["refresh_token"] = rt;
    fs::write(dir.join("p.json"), v.to_string()).unwrap();
    assert!(sealed.load("http://b", "p", "bot").is_ok());
    assert!(sealed.load("http://b", "p", "old").is_err());
}

#[test]
fn a_linked_or_readable_grant_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile_dir();
    let s = GrantStore::new(StoreKind::File(dir.clone()));
    s.save("http://b", "p", "bot", &grant()).unwrap();
    // A symbolic link in place of the file (say, to a file the attacker reads).
    let elsewhere = tempfile_dir().join("planted.json");
    fs::rename(dir.join("p.json"), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("p.json")).unwrap();
    assert_eq!(
        s.load("http://b", "p", "bot").unwrap_err().code(),
        "storage_error"
    );
    assert_eq!(
        s.save("http://b", "p", "bot", &grant()).unwrap_err().code(),
        "storage_error"
    );
    fs::remove_file(dir.join("p.json")).unwrap();
    // A file others can read.
    s.save("http://b", "p", "bot", &grant()).unwrap();
    fs::set_permissions(dir.join("p.json"), fs::Permissions::from_mode(0o644)).unwrap();
    let e = s.load("http://b", "p", "bot").unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
}

#[test]
fn profile_names_cannot_escape_the_directory() {
    let s = GrantStore::new(StoreKind::File(tempfile_dir()));
    for bad in ["../x", "a/b", "", ".hidden", &"x".repeat(65)] {
        assert_eq!(
            s.load("b", bad, "a").unwrap_err().code(),
            "invalid_request",
            "{bad}"
        );
    }
}

#[test]
#[cfg(unix)]
fn a_directory_others_can_write_is_refused_and_left_alone() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile_dir();
    for mode in [0o777, 0o1777, 0o770, 0o720] {
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        let s = GrantStore::new(StoreKind::File(d.clone()));
        let e = s.save("b", "default", "a", &grant()).unwrap_err();
        assert_eq!(e.code(), "storage_error", "{mode:o}");
        assert!(e.to_string().contains("writable by other users"), "{e}");
        assert!(s.lock("default").is_err());
        // Nothing was written, and the directory's mode is untouched.
        assert_eq!(fs::read_dir(&d).unwrap().count(), 0);
        let now = fs::metadata(&d).unwrap().permissions().mode() & 0o7777;
        assert_eq!(now, mode);
    }
    // A private one (and one only its owner can write) works.
    for mode in [0o700, 0o755] {
        fs::set_permissions(&d, fs::Permissions::from_mode(mode)).unwrap();
        let s = GrantStore::new(StoreKind::File(d.clone()));
        s.save("b", "default", "a", &grant()).unwrap();
        assert!(s.load("b", "default", "a").unwrap().is_some());
    }
    // A new directory is created private.
    let nested = d.join("x").join("y");
    let s = GrantStore::new(StoreKind::File(nested.clone()));
    s.save("b", "default", "a", &grant()).unwrap();
    let mode = fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    fs::remove_dir_all(&d).unwrap();
}

#[test]
fn the_memory_store_lock_excludes_other_holders_of_the_profile() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let s = GrantStore::new(StoreKind::Memory);
    let first = s.lock("mem-lock-test").unwrap();
    // Another profile is not held up.
    drop(s.lock("mem-lock-other").unwrap());
    let got = Arc::new(AtomicBool::new(false));
    let (s2, got2) = (s.clone(), got.clone());
    let t = std::thread::spawn(move || {
        let _second = s2.lock("mem-lock-test").unwrap();
        got2.store(true, Ordering::SeqCst);
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !got.load(Ordering::SeqCst),
        "a second holder took the profile lock while the first held it"
    );
    drop(first);
    t.join().unwrap();
    assert!(got.load(Ordering::SeqCst));
}

fn tempfile_dir() -> PathBuf {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let d = std::env::temp_dir().join(format!("pp-store-{}", crate::b64::encode(b)));
    fs::create_dir_all(&d).unwrap();
    d
}
