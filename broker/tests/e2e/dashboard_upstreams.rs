//! The dashboard's upstream pages: the owner's upstreams with their rules in
//! plain words, rotation of the secret (which the next gateway call uses) and
//! confirmed removal, behind the session and its form token; another owner's
//! upstream answers as an unknown one, and the secret is never on a page.

use super::{Page, signed_in};
use crate::gateway::{SCOPES, SECRET, add_upstream, agent, call, rules, setup};

fn assert_no_secret(p: &Page, secrets: &[&str]) {
    for s in secrets {
        assert!(!p.body.contains(s), "a secret is on the page");
    }
}

#[tokio::test]
async fn the_owner_sees_rotates_and_removes_upstreams_in_the_dashboard() {
    let (b, up) = setup().await;
    b.add_owners(&["bob"]);
    let (code, v) = add_upstream(
        &b,
        &rules("bobs-api", "https://api.bob.example", false)
            .replace("https://api.code-host.example", "https://api.bob.example"),
        "bob",
    );
    assert_eq!(code, 0, "{v}");
    let a = agent(&b, "default", SCOPES).await;
    let (mut w, csrf) = signed_in(&b).await;
    let new_secret = "sk_rotated-in-the-dashboard-0123";

    // The list: where agents go, the rules in words, a link to the catalog.
    let p = w.get("/upstreams").await;
    assert_eq!(p.status, 200, "{}", p.body);
    for want in [
        "code-host",
        &format!("{}/gateway/code-host", b.url),
        "https://api.code-host.example",
        "header x-api-key",
        "GET</strong> requests to <code>/repos/‹owner›/‹repo›/ and anything below it</code>",
        "repo:read:{repo}",
        "POST or PATCH",
        "href=\"/upstreams/catalog\"",
        "action=\"/upstreams/rotate\"",
        "href=\"/upstreams/remove?name=code-host\"",
    ] {
        assert!(p.body.contains(want), "{want} missing from {}", p.body);
    }
    assert!(
        !p.body.contains("bobs-api"),
        "another owner's upstream is listed"
    );
    assert_no_secret(&p, &[SECRET]);

    // Rotation needs the form token; with it, the next call carries the new
    // secret (the test upstream accepts only the old one, so it says 401).
    let p = w
        .post(
            "/upstreams/rotate",
            &[("name", "code-host"), ("secret", new_secret)],
        )
        .await;
    assert_eq!(p.status, 403);
    assert_eq!(
        call(&b, &a, "GET", "/repos/me/proj", None, &[])
            .await
            .status(),
        200
    );
    let p = w
        .submit(
            "/upstreams/rotate",
            &csrf,
            &[("name", "code-host"), ("secret", new_secret)],
        )
        .await;
    p.assert_redirect("/upstreams?done=rotated");
    assert_eq!(
        call(&b, &a, "GET", "/repos/me/proj", None, &[])
            .await
            .status(),
        401
    );
    assert_eq!(
        up.last().header("x-api-key"),
        Some(format!("Key {new_secret}").as_str())
    );
    let p = w.get("/upstreams?done=rotated").await;
    p.assert_shows("The secret was replaced");
    assert_no_secret(&p, &[SECRET, new_secret]);
    // A secret that could change the request's structure is refused.
    let p = w
        .submit(
            "/upstreams/rotate",
            &csrf,
            &[("name", "code-host"), ("secret", "a\r\nX-Evil: 1")],
        )
        .await;
    assert_eq!(p.status, 400);
    let p = w
        .submit(
            "/upstreams/rotate",
            &csrf,
            &[("name", "code-host"), ("secret", SECRET)],
        )
        .await;
    assert_eq!(p.status, 303);
    assert_eq!(
        call(&b, &a, "GET", "/repos/me/proj", None, &[])
            .await
            .status(),
        200
    );

    // Another owner's upstream answers as an unknown one, and is untouched.
    for (path, form) in [
        (
            "/upstreams/rotate",
            vec![
                ("csrf", csrf.as_str()),
                ("name", "bobs-api"),
                ("secret", "x"),
            ],
        ),
        (
            "/upstreams/remove",
            vec![
                ("csrf", csrf.as_str()),
                ("name", "bobs-api"),
                ("confirm", "yes"),
            ],
        ),
        (
            "/upstreams/remove",
            vec![
                ("csrf", csrf.as_str()),
                ("name", "nope"),
                ("confirm", "yes"),
            ],
        ),
    ] {
        let p = w.post(path, &form).await;
        assert_eq!(p.status, 404, "{path} {form:?}: {}", p.body);
    }
    assert_eq!(w.get("/upstreams/remove?name=bobs-api").await.status, 404);
    let v = b.cli_ok(&["--owner", "bob", "upstream", "list"]);
    assert_eq!(v[0]["name"], "bobs-api");

    // Removal: a confirmation page first; a form without the confirmation
    // goes back to it; then the upstream is gone and the gateway refuses.
    let p = w.get("/upstreams/remove?name=code-host").await;
    assert_eq!(p.status, 200);
    p.assert_shows("name=\"confirm\" value=\"yes\"");
    let p = w
        .submit("/upstreams/remove", &csrf, &[("name", "code-host")])
        .await;
    p.assert_redirect("/upstreams/remove?name=code-host");
    let p = w
        .post(
            "/upstreams/remove",
            &[("name", "code-host"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(p.status, 403);
    let p = w
        .submit(
            "/upstreams/remove",
            &csrf,
            &[("name", "code-host"), ("confirm", "yes")],
        )
        .await;
    p.assert_redirect("/upstreams?done=removed");
    assert_eq!(b.cli_ok(&["upstream", "list"]), serde_json::json!([]));
    let before = up.calls();
    assert_eq!(
        call(&b, &a, "GET", "/repos/me/proj", None, &[])
            .await
            .status(),
        404
    );
    assert_eq!(up.calls(), before);
    let p = w.get("/upstreams").await;
    p.assert_shows("no upstream APIs yet");

    // Signed out: the pages send to the sign-in page, then back to the page
    // (its query left out); from a removal's confirmation or the activity
    // export, back to the page they are reached from.
    let mut anon = super::Web::new(&b);
    for (page, next) in [
        ("/upstreams", "%2Fupstreams"),
        ("/upstreams?done=removed", "%2Fupstreams"),
        ("/upstreams/catalog?q=git", "%2Fupstreams%2Fcatalog"),
        ("/upstreams/remove?name=github", "%2Fupstreams"),
        ("/audit/export", "%2Faudit"),
    ] {
        let p = anon.get(page).await;
        p.assert_redirect(&format!("/login?next={next}"));
    }
}
