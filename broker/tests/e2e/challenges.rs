//! The broker's own protected endpoints answer as RFC 6750 section 3 and
//! RFC 9449 section 7.1 say: a request without credentials gets a challenge
//! without an error code, a bad credential the error; neither endpoint needs
//! a particular scope, so no challenge names one.

use protonpass_e2e::Broker;

fn www(r: &protonpass_e2e::Reply) -> String {
    r.headers
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn challenges_carry_an_error_only_when_a_credential_came() {
    let b = Broker::start(&[]);
    let details = r#"[{"type":"payment_initiation"}]"#;
    let none = b
        .post_form(
            "/oauth/bc-authorize",
            &[("authorization_details", details)],
            &[],
        )
        .await;
    assert_eq!((none.status, none.error()), (401, "invalid_token"));
    assert_eq!(www(&none), r#"DPoP algs="EdDSA ES256""#);
    let forged = b
        .post_form(
            "/oauth/bc-authorize",
            &[("authorization_details", details)],
            &[(
                "authorization",
                "DPoP eyJhbGciOiJFZERTQSJ9.e30.AAAA".to_owned(),
            )],
        )
        .await;
    assert_eq!((forged.status, forged.error()), (401, "invalid_token"));
    assert_eq!(
        www(&forged),
        r#"DPoP error="invalid_token", algs="EdDSA ES256""#
    );

    for (token, want) in [
        (None, r#"Bearer realm="protonpass-broker""#),
        (Some("rri_wrong"), r#"Bearer error="invalid_token""#),
    ] {
        let mut req = b
            .http
            .post(format!("{}/resource/register", b.url))
            .header("content-type", "application/json")
            .body(r#"{"resource":"https://api.example"}"#);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
        assert!(v.starts_with(want), "{v}");
        assert!(!v.contains("scope="), "{v}");
    }
}
