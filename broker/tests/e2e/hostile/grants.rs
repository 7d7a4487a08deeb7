//! Grant and scope abuse through token exchange (RFC 8693) and refresh:
//! each refused with its code, changing nothing.

use super::*;

/// A hostile exchange: name, subject token, its type, extra parameters, and
/// the expected error code.
type ExchangeCase = (
    &'static str,
    String,
    &'static str,
    Vec<(&'static str, String)>,
    &'static str,
);

#[tokio::test]
async fn grant_and_scope_abuse_is_refused_and_changes_nothing() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    let b = Broker::start(&[]);
    let agent = key();
    let thief = key();
    let r = b
        .enroll(
            &agent,
            "bot",
            "calendar:read repo:write:my-project payment:execute:under-100",
            &[],
        )
        .await;
    let (at, rt) = (r.s("access_token"), r.s("refresh_token"));
    let exp = claims(&at)["exp"].as_i64().unwrap();
    // A narrower access token to exchange from.
    let narrow = b
        .exchange(&agent, &rt, TT_REFRESH, &[("scope", "calendar:read")])
        .await;
    assert_eq!(narrow.status, 200, "{}", narrow.body);
    // The exchange spent the refresh token and returned its successor.
    let rt = narrow.s("refresh_token");
    let narrow = narrow.s("access_token");

    let mut cases: Vec<ExchangeCase> = Vec::new();
    for (name, scope) in [
        ("only scopes outside the grant", "calendar:write admin:all"),
        ("prefix trick", "repo:write:my-project-evil"),
        ("another project", "repo:write:other"),
        ("wildcard qualifier", "repo:write:*"),
        ("unbounded payment", "payment:execute"),
        ("homoglyph (Cyrillic o)", "rep\u{43e}:write:my-project"),
        ("full-width colon", "calendar\u{ff1a}read"),
        ("upper case", "Calendar:read"),
        ("quotes", "\"calendar:read\""),
        ("backslash", "calendar:read\\"),
        ("tab inside", "calendar:read\tcalendar:write"),
        ("star", "*"),
        ("only spaces", "   "),
        ("NUL", "calendar:read\0"),
        ("four parts", "repo:write:my-project:x"),
        ("limit with exponent", "payment:execute:under-1e2"),
    ] {
        cases.push((
            name,
            rt.clone(),
            TT_REFRESH,
            vec![("scope", scope.into())],
            "invalid_scope",
        ));
    }
    cases.push((
        "wider than the subject access token",
        narrow.clone(),
        TT_ACCESS,
        vec![("scope", "repo:write:my-project".into())],
        "invalid_scope",
    ));
    for (name, extra) in [
        (
            "another audience",
            vec![("audience", "https://bank.example".to_owned())],
        ),
        ("another resource", vec![("resource", format!("{API}/"))]),
        (
            "resource and audience disagree",
            vec![
                ("resource", API.to_owned()),
                ("audience", "https://bank.example".to_owned()),
            ],
        ),
    ] {
        cases.push((name, rt.clone(), TT_REFRESH, extra, "invalid_target"));
    }
    cases.push((
        "a refresh token is not an access token",
        rt.clone(),
        TT_ACCESS,
        vec![],
        "invalid_grant",
    ));
    cases.push((
        "an access token is not a refresh token",
        at.clone(),
        TT_REFRESH,
        vec![],
        "invalid_grant",
    ));
    cases.push((
        "asking for a refresh token",
        rt.clone(),
        TT_REFRESH,
        vec![("requested_token_type", TT_REFRESH.into())],
        "invalid_request",
    ));
    for bad in ["0", "000", "-1", "1e3", "60.5", " 60", "abc", "+60"] {
        cases.push((
            "a malformed expires_in",
            rt.clone(),
            TT_REFRESH,
            vec![("expires_in", bad.into())],
            "invalid_request",
        ));
    }
    cases.push((
        "an actor token",
        rt.clone(),
        TT_REFRESH,
        vec![
            ("actor_token", at.clone()),
            ("actor_token_type", TT_ACCESS.into()),
        ],
        "invalid_request",
    ));

    let before = state(&b);
    for (name, subject, ty, extra, code) in &cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = b.exchange(&agent, subject, ty, &extra).await;
        assert_refused(&r, 400, code, name);
    }
    // Another key holding the agent's tokens.
    for (name, subject, ty) in [
        ("stolen refresh token", &rt, TT_REFRESH),
        ("stolen access token", &at, TT_ACCESS),
    ] {
        let r = b.exchange(&thief, subject, ty, &[]).await;
        assert_refused(&r, 400, "invalid_grant", name);
    }
    let r = b.refresh(&thief, &rt).await;
    assert_refused(&r, 400, "invalid_grant", "stolen refresh token at refresh");
    assert_eq!(
        state(&b),
        before,
        "a refused exchange changed the broker's state"
    );

    // Wider requests are narrowed to what the grant allows (scopes outside
    // the bound are dropped, limits lowered); the response says so. Each
    // exchange of a refresh token spends it: the next uses its successor.
    let mut rt = rt;
    for (refresh, asked, granted) in [
        (true, "calendar:read calendar:write", "calendar:read"),
        (
            true,
            "payment:execute:under-1000",
            "payment:execute:under-100",
        ),
        (
            false,
            "calendar:read repo:write:my-project",
            "calendar:read",
        ),
    ] {
        let (subject, ty) = if refresh {
            (&rt, TT_REFRESH)
        } else {
            (&narrow, TT_ACCESS)
        };
        let r = b.exchange(&agent, subject, ty, &[("scope", asked)]).await;
        if refresh {
            rt = r.s("refresh_token");
        }
        assert_eq!(
            (r.status, r.s("scope").as_str()),
            (200, granted),
            "{asked}: {}",
            r.body
        );
        assert_eq!(claims(&r.s("access_token"))["scope"], granted);
    }

    // A longer life cannot be had: expires_in only shortens, and an
    // exchanged token never outlives its subject. A shorter one is honoured.
    let r = b
        .exchange(
            &agent,
            &rt,
            TT_REFRESH,
            &[("expires_in", "60"), ("scope", "calendar:read")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = claims(&r.s("access_token"));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 60);
    assert_eq!(r.body["expires_in"], 60);
    let r = b
        .exchange(
            &agent,
            &at,
            TT_ACCESS,
            &[
                ("expires_in", "99999999999999999999"),
                ("scope", "calendar:read"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(claims(&r.s("access_token"))["exp"].as_i64().unwrap() <= exp);
    assert!(r.body["expires_in"].as_i64().unwrap() <= 3600);

    // A revoked subject token.
    let v = b
        .post_form(
            "/oauth/revoke",
            &[("token", &narrow), ("client_id", "bot")],
            &[],
        )
        .await;
    assert_eq!(v.status, 200);
    let before = state(&b);
    let r = b.exchange(&agent, &narrow, TT_ACCESS, &[]).await;
    assert_refused(&r, 400, "invalid_grant", "revoked subject");
    assert_eq!(state(&b), before);
    assert_eq!(b.cli_ok(&["audit", "verify"])["ok"], true);
}
