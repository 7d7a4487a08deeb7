//! The dashboard's resources page: the owner's resource servers with their
//! scope catalogs in words, and the import of a catalog (the TOML of
//! `resource add --scopes FILE`) that requests keep to from then on; a bad
//! file, a form without its token and another owner's resource change nothing.

use serde_json::Value;

use crate::catalog::{CALENDAR, add_with_catalog};
use crate::dashboard::{Page, Web, signed_in};
use protonpass_e2e::{Broker, Reply, audit_records};

const BOBS: &str = "https://bob.example";

/// The calendar's catalog that the owner imports: `calendar:read` in other
/// words, `calendar:delete` instead of `calendar:write`. Its second `risk`
/// is on line 10.
const NEW_CATALOG: &str = include_str!("../fixtures/catalogs/calendar-import.toml");

/// Post the import form: `catalog` for resource `resource`.
async fn import(w: &mut Web, csrf: &str, resource: &str, catalog: &str) -> Page {
    let form = [("csrf", csrf), ("resource", resource), ("catalog", catalog)];
    w.post("/resources/scopes", &form).await
}

fn add(b: &Broker, owner: &str, audience: &str) -> String {
    let v = add_with_catalog(b, audience, Some(owner));
    v["client_id"].as_str().unwrap().to_owned()
}

fn scope_names(b: &Broker, owner: &str, audience: &str) -> Vec<String> {
    let v = b.cli_ok(&["resource", "show", audience, "--owner", owner]);
    v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn device(b: &Broker, scope: &str) -> Reply {
    b.device_authorization("cal-bot", scope, CALENDAR).await
}

#[tokio::test]
async fn the_owner_sees_and_imports_scope_catalogs_in_the_dashboard() {
    let b = Broker::start(&[("PROTONPASS_BROKER_DEVICE_INTERVAL", "0")]);
    b.add_owners(&["bob"]);
    let mine = add(&b, "default", CALENDAR);
    add(&b, "bob", BOBS);
    let (mut w, csrf) = signed_in(&b).await;
    let before = vec!["calendar:read".to_owned(), "calendar:write".to_owned()];

    // The list: the CLI-registered catalog in words, grouped, risk marked.
    let p = w.get("/resources").await;
    assert_eq!(p.status, 200, "{}", p.body);
    for want in [
        "href=\"/resources\"",
        CALENDAR,
        &mine,
        "only DPoP-bound tokens",
        "<p class=\"group\">calendar</p>",
        "Read your calendar <code class=\"raw\">calendar:read</code>",
        "Add and change events <span class=\"risk medium\">changes your data</span>",
        "action=\"/resources/scopes\"",
    ] {
        assert!(p.body.contains(want), "{want} missing from {}", p.body);
    }
    assert!(!p.body.contains(BOBS), "another owner's resource is listed");
    p.assert_hides("<script");
    assert_eq!(device(&b, "calendar:write").await.status, 200);

    // A bad file: the parser's line and reason on the page, nothing changed.
    let bad = "[[scope]]\nname = \"calendar:read\"\ndescription = \"Read\nrisk = \"low\"\n";
    let p = import(&mut w, &csrf, &mine, bad).await;
    assert_eq!(p.status, 400, "{}", p.body);
    p.assert_shows("nothing was changed: scope catalog, line 3:");
    // The text comes back in the form to fix it (escaped).
    p.assert_shows("description = &quot;Read");
    let unknown_risk = NEW_CATALOG.replace("\"high\"", "\"extreme\"");
    let p = import(&mut w, &csrf, CALENDAR, &unknown_risk).await;
    assert_eq!(p.status, 400, "{}", p.body);
    p.assert_shows("scope catalog, line 10: risk &quot;extreme&quot;");
    let p = import(&mut w, &csrf, &mine, "# nothing\n").await;
    assert_eq!(p.status, 400, "{}", p.body);
    p.assert_shows("defines no scope");
    assert_eq!(scope_names(&b, "default", CALENDAR), before);

    // Without the form token: refused, nothing changed.
    for form in [
        vec![("resource", mine.as_str()), ("catalog", NEW_CATALOG)],
        vec![
            ("csrf", "not-the-token"),
            ("resource", mine.as_str()),
            ("catalog", NEW_CATALOG),
        ],
    ] {
        let p = w.post("/resources/scopes", &form).await;
        assert_eq!(p.status, 403, "{}", p.body);
    }
    assert_eq!(scope_names(&b, "default", CALENDAR), before);

    // Signed out: the page sends to the sign-in page, the form changes nothing.
    let mut anon = Web::new(&b);
    let p = anon.get("/resources").await;
    p.assert_redirect("/login?next=%2Fresources");
    let p = import(&mut anon, &csrf, &mine, NEW_CATALOG).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(scope_names(&b, "default", CALENDAR), before);

    // Another owner's resource answers as an unknown one, and is untouched.
    for id in [BOBS, "rs_nope"] {
        let p = import(&mut w, &csrf, id, NEW_CATALOG).await;
        assert_eq!(p.status, 404, "{id}: {}", p.body);
    }
    assert_eq!(scope_names(&b, "bob", BOBS), before);

    // An import replaces the catalog; the page shows the new one.
    let p = import(&mut w, &csrf, &mine, NEW_CATALOG).await;
    assert_eq!(p.status, 303, "{}", p.body);
    assert_eq!(
        p.location(),
        format!("/resources?done=imported#resource-{mine}")
    );
    assert_eq!(
        scope_names(&b, "default", CALENDAR),
        ["calendar:read", "calendar:delete"]
    );
    let p = w.get("/resources?done=imported").await;
    p.assert_shows("The scope catalog was replaced");
    p.assert_shows("Delete events <strong class=\"risk high\">high risk</strong>");
    p.assert_hides("Add and change events");

    // Requests keep to the new catalog: the dropped scope is refused before
    // any owner sees it; the new one reaches the approval page in its words.
    let r = device(&b, "calendar:write").await;
    assert_eq!((r.status, r.error()), (400, "invalid_scope"), "{}", r.body);
    let ok = device(&b, "calendar:delete").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let uc = ok.s("user_code");
    let p = w.lookup(&csrf, &uc).await;
    p.assert_shows("Delete events <strong class=\"risk high\">high risk</strong>");

    // Audited like the other catalog changes, with the scope names only.
    let updates: Vec<Value> = audit_records(&b)
        .into_iter()
        .filter(|r| r["event"] == "resource_update")
        .collect();
    assert_eq!(updates.len(), 1, "{updates:?}");
    let d = &updates[0]["detail"];
    assert_eq!(d["by"], "dashboard");
    assert_eq!(d["audience"], CALENDAR);
    assert_eq!(
        d["scopes"],
        serde_json::json!(["calendar:read", "calendar:delete"])
    );
}
