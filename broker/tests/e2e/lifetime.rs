//! The 30-day cap on every path that makes a grant or a token: device approval
//! (CLI and dashboard), pre-created grants (CLI and dashboard), the broker's
//! `access_ttl`, token exchange (`expires_in` only shortens) and refresh (never
//! extends the grant). Each at exactly 30 days (accepted, and the grant or
//! token lives exactly that long) and at 30 days and one second.

use protonpass_agent::wire::{TOKEN_TYPE_ACCESS, TOKEN_TYPE_REFRESH};
use serde_json::Value;

use crate::dashboard::signed_in;
use crate::device::{poll, start_device};
use protonpass_e2e::{API, Broker, Reply, claims, key, serve_refused};

/// 30 days, in seconds.
const MAX: i64 = 30 * 86_400;
const MAX_S: &str = "2592000";
const OVER_S: &str = "2592001";

/// A broker whose access tokens may live as long as their grant (30 days).
fn broker() -> Broker {
    Broker::start(&[
        ("PROTONPASS_BROKER_DEVICE_INTERVAL", "0"),
        ("PROTONPASS_BROKER_ACCESS_TTL", "30d"),
    ])
}

fn num(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A token response whose grant and access token both live exactly 30 days.
fn assert_thirty_days(r: &Reply) {
    assert_eq!(r.status, 200, "{}", r.body);
    let c = claims(&r.s("access_token"));
    let iat = num(&c["iat"]);
    assert_eq!(num(&r.body["grant_expires_at"]) - iat, MAX, "{}", r.body);
    assert_eq!(num(&c["exp"]) - iat, MAX, "{c}");
    assert_eq!(num(&r.body["expires_in"]), MAX);
}

/// The grants the CLI lists for the default owner.
fn grants(b: &Broker) -> Vec<Value> {
    b.cli_ok(&["grant", "list"]).as_array().unwrap().clone()
}

#[tokio::test]
async fn cli_device_approval_is_capped_at_30_days() {
    let b = broker();
    let d = start_device(&b, "travel:book", Some(API)).await;
    let (uc, dc) = (d.s("user_code"), d.s("device_code"));
    let k = key();
    let (code, v) = b.cli(&["approve", &uc, "--ttl", OVER_S]);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_request", "{v}");
    // Nothing was decided: the request still waits for the owner.
    assert_eq!(poll(&b, &k, &dc).await.error(), "authorization_pending");
    assert!(grants(&b).is_empty());
    let v = b.cli_ok(&["approve", &uc, "--ttl", "30d"]);
    assert_eq!(v["ttl"], MAX);
    assert_thirty_days(&poll(&b, &k, &dc).await);
}

#[tokio::test]
async fn dashboard_device_approval_is_capped_at_30_days() {
    let b = broker();
    let d = start_device(&b, "travel:book", Some(API)).await;
    let (uc, dc) = (d.s("user_code"), d.s("device_code"));
    let (mut w, csrf) = signed_in(&b).await;
    let decide = |ttl: &'static str| {
        [
            ("csrf", csrf.as_str()),
            ("step", "decide"),
            ("user_code", uc.as_str()),
            ("scope", "travel:book"),
            ("ttl", ttl),
            ("action", "approve"),
        ]
    };
    let p = w.post("/device", &decide(OVER_S)).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("Choose one of the lifetimes offered"));
    let k = key();
    assert_eq!(poll(&b, &k, &dc).await.error(), "authorization_pending");
    let p = w.post("/device", &decide(MAX_S)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    assert_thirty_days(&poll(&b, &k, &dc).await);
}

#[tokio::test]
async fn cli_grant_is_capped_at_30_days() {
    let b = broker();
    let create = |ttl| {
        b.cli(&[
            "grant",
            "create",
            "--agent",
            "bot",
            "--scope",
            "calendar:read",
            "--audience",
            API,
            "--ttl",
            ttl,
        ])
    };
    let (code, v) = create(OVER_S);
    assert_ne!(code, 0);
    assert_eq!(v["error"], "invalid_request", "{v}");
    assert!(grants(&b).is_empty(), "a refused grant leaves nothing");
    let (code, v) = create("30d");
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ttl"], MAX);
    let code = v["enrollment_code"].as_str().unwrap();
    assert_thirty_days(&b.redeem(&key(), code).await);
}

#[tokio::test]
async fn dashboard_grant_is_capped_at_30_days() {
    let b = broker();
    let (mut w, csrf) = signed_in(&b).await;
    let create = |ttl: &'static str| {
        [
            ("csrf", csrf.as_str()),
            ("agent", "bot"),
            ("scope", "calendar:read"),
            ("audience", API),
            ("ttl", ttl),
        ]
    };
    let p = w.post("/agents/grant", &create(OVER_S)).await;
    assert_eq!(p.status, 400, "{}", p.body);
    assert!(p.body.contains("30 days"), "{}", p.body);
    assert!(grants(&b).is_empty());
    let p = w.post("/agents/grant", &create(MAX_S)).await;
    assert_eq!(p.status, 200, "{}", p.body);
    let start = p.body.find("ec_").expect("the page shows the code");
    let code: String = p.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
        .collect();
    assert_thirty_days(&b.redeem(&key(), &code).await);
}

#[tokio::test]
async fn access_ttl_is_at_most_30_days() {
    let dir = tempfile::tempdir().unwrap();
    for (args, env) in [
        (vec!["--access-ttl", OVER_S], vec![]),
        (vec![], vec![("PROTONPASS_BROKER_ACCESS_TTL", OVER_S)]),
        (vec!["--access-ttl", "31d"], vec![]),
        (vec!["--access-ttl", "0"], vec![]),
    ] {
        let v = serve_refused(dir.path(), &args, &env);
        assert_eq!(v["error"], "invalid_request", "{args:?} {env:?}: {v}");
        assert!(
            v["error_description"].as_str().unwrap().contains("30 days"),
            "{v}"
        );
    }
    // Exactly 30 days is accepted, and a 30-day grant's token lives that long.
    let b = Broker::start(&[("PROTONPASS_BROKER_ACCESS_TTL", MAX_S)]);
    let r = b
        .enroll(&key(), "bot", "calendar:read", &["--ttl", "30d"])
        .await;
    assert_thirty_days(&r);
}

#[tokio::test]
async fn exchange_only_shortens_and_refresh_never_extends() {
    let b = broker();
    let k = key();
    let first = b
        .enroll(&k, "bot", "calendar:read", &["--ttl", "30d"])
        .await;
    assert_thirty_days(&first);
    let grant_exp = num(&first.body["grant_expires_at"]);
    let mut rt = first.s("refresh_token");
    // Exactly 30 days, and one second more (capped, not refused): the token
    // lives as long as allowed and never past its grant. Each exchange of the
    // refresh token spends it: the next uses its successor.
    for (asked, refresh) in [(MAX_S, true), (OVER_S, true), (OVER_S, false)] {
        let (ty, subject) = if refresh {
            (TOKEN_TYPE_REFRESH, rt.clone())
        } else {
            (TOKEN_TYPE_ACCESS, first.s("access_token"))
        };
        let r = b.exchange(&k, &subject, ty, &[("expires_in", asked)]).await;
        assert_eq!(r.status, 200, "{asked}: {}", r.body);
        if refresh {
            rt = r.s("refresh_token");
        }
        let c = claims(&r.s("access_token"));
        let (iat, exp) = (num(&c["iat"]), num(&c["exp"]));
        assert_eq!(exp, grant_exp.min(iat + MAX), "{asked}: {c}");
        assert!(exp - iat <= MAX);
        assert_eq!(num(&r.body["expires_in"]), exp - iat);
        assert_eq!(num(&r.body["grant_expires_at"]), grant_exp);
    }
    // Refresh takes no lifetime (an `expires_in` is ignored) and rotates
    // within the grant: the new token ends with the grant, which stays put.
    let r = b
        .token(
            &k,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &rt),
                ("expires_in", OVER_S),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(num(&r.body["grant_expires_at"]), grant_exp);
    let c = claims(&r.s("access_token"));
    assert_eq!(num(&c["exp"]), grant_exp.min(num(&c["iat"]) + MAX));
    let listed = grants(&b);
    assert_eq!(listed.len(), 1);
    assert_eq!(num(&listed[0]["expires_at"]), grant_exp);
}
