use super::*;

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");
const PRE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Apre-authorized_code";
const XCHG: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
    &subject_token=rt_secret&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Arefresh_token";

fn parse(body: &str) -> std::result::Result<TokenRequest, Refused> {
    TokenRequest::parse(FORM, body.as_bytes())
}

/// The wire code and when it is answered.
fn refused(ct: Option<&str>, body: &str) -> (&'static str, &'static str) {
    match TokenRequest::parse(ct, body.as_bytes()) {
        Ok(r) => panic!("accepted {body:?}: {r:?}"),
        Err(Refused::Form(e)) => (e.code(), "form"),
        Err(Refused::Request { error, .. }) => (error.code(), "request"),
        Err(Refused::Grant { error, .. }) => (error.code(), "grant"),
    }
}

#[test]
fn each_grant_parses_to_its_variant() {
    let r = parse(&format!(
        "{PRE}&pre-authorized_code=pc_abc&scope=calendar%3Aread+offline_access&resource=https%3A%2F%2Fapi&client_id=bot"
    ))
    .unwrap();
    assert_eq!(
        r,
        TokenRequest::PreAuthorized {
            code: Secret("pc_abc".into()),
            scope: Some("calendar:read offline_access".into()),
            audience: Some("https://api".into()),
            client_id: Some("bot".into()),
        }
    );
    let r = TokenRequest::parse(
        Some("Application/X-WWW-Form-URLEncoded; charset=UTF-8"),
        b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc_1&scope=offline_access",
    )
    .unwrap();
    assert_eq!(
        r,
        TokenRequest::DeviceCode {
            device_code: Secret("dc_1".into()),
            client_id: None
        }
    );
    let r = parse("grant_type=refresh_token&refresh_token=rt_1&audience=x:a&resource=x:a").unwrap();
    assert_eq!(r.grant_type(), GRANT_REFRESH_TOKEN);
    assert!(
        matches!(r, TokenRequest::Refresh { audience: Some(ref a), scope: None, .. } if a == "x:a")
    );
    let r = parse(&format!(
        "{XCHG}&requested_token_type={}",
        TOKEN_TYPE_ACCESS
    ))
    .unwrap();
    assert!(matches!(
        r,
        TokenRequest::Exchange {
            subject_kind: SubjectKind::Refresh,
            ..
        }
    ));
}

#[test]
fn expires_in_is_capped_at_30_days_not_refused() {
    let lifetime = |v: &str| match parse(&format!("{XCHG}&expires_in={v}")).unwrap() {
        TokenRequest::Exchange { lifetime, .. } => lifetime,
        other => panic!("{other:?}"),
    };
    let max = crate::protocol::MAX_TTL;
    assert_eq!(lifetime("60"), Some(60));
    assert_eq!(lifetime(&max.to_string()), Some(max));
    assert_eq!(lifetime(&(max + 1).to_string()), Some(max));
    assert_eq!(lifetime("99999999999999999999999"), Some(max));
    assert_eq!(
        refused(FORM, &format!("{XCHG}&expires_in=0")),
        ("invalid_request", "grant")
    );
}

#[test]
fn each_refused_shape_has_its_code() {
    let form = "application/x-www-form-urlencoded";
    let long = "x".repeat(8193);
    let many: String = (0..33).map(|i| format!("p{i}=1&")).collect();
    let cases: Vec<(Option<&str>, String, (&str, &str))> = vec![
        (
            None,
            "grant_type=refresh_token".into(),
            ("invalid_request", "form"),
        ),
        (
            Some("application/json"),
            r#"{"grant_type":"refresh_token"}"#.into(),
            ("invalid_request", "form"),
        ),
        (
            Some(form),
            "grant_type=refresh_token&grant_type=refresh_token".into(),
            ("invalid_request", "form"),
        ),
        (
            Some(form),
            format!("grant_type=refresh_token&refresh_token={long}"),
            ("invalid_request", "form"),
        ),
        (Some(form), many, ("invalid_request", "form")),
        (
            Some(form),
            "refresh_token=rt".into(),
            ("invalid_request", "request"),
        ),
        (
            Some(form),
            "grant_type=&refresh_token=rt".into(),
            ("invalid_request", "request"),
        ),
        (
            Some(form),
            "grant_type=password&username=a".into(),
            ("unsupported_grant_type", "request"),
        ),
        (
            Some(form),
            "grant_type=Refresh_Token".into(),
            ("unsupported_grant_type", "request"),
        ),
        (
            Some(form),
            "grant_type=refresh_token&scope=".into(),
            ("invalid_scope", "request"),
        ),
        (
            Some(form),
            "grant_type=refresh_token&scope=nocolon".into(),
            ("invalid_scope", "request"),
        ),
        (
            Some(form),
            "grant_type=refresh_token".into(),
            ("invalid_request", "grant"),
        ),
        (
            Some(form),
            "grant_type=refresh_token&refresh_token=rt&resource=x:a&audience=x:b".into(),
            ("invalid_target", "grant"),
        ),
        (Some(form), PRE.into(), ("invalid_request", "grant")),
        (
            Some(form),
            format!("{PRE}&pre-authorized_code=c&resource=x:a&audience=x:b"),
            ("invalid_target", "grant"),
        ),
        (
            Some(form),
            "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code".into(),
            ("invalid_request", "grant"),
        ),
        (
            Some(form),
            "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba".into(),
            ("invalid_request", "grant"),
        ),
        (
            Some(form),
            format!(
                "{XCHG}&requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aid_token"
            ),
            ("invalid_request", "grant"),
        ),
        (
            Some(form),
            format!("{XCHG}&actor_token=x"),
            ("invalid_request", "grant"),
        ),
        (
            Some(form),
            format!("{XCHG}&resource=x:a&audience=x:b"),
            ("invalid_target", "grant"),
        ),
        (
            Some(form),
            XCHG.replace("refresh_token", "id_token"),
            ("unsupported_token_type", "grant"),
        ),
        (
            Some(form),
            XCHG.replace("&subject_token=rt_secret", ""),
            ("invalid_request", "grant"),
        ),
    ];
    for (ct, body, want) in cases {
        assert_eq!(refused(ct, &body), want, "{ct:?} {body:?}");
    }
    // The audit record keeps the grant type as sent.
    let e = parse("grant_type=password").unwrap_err();
    assert_eq!(e.grant_type(), Some("password"));
}

#[test]
fn authorization_code_needs_its_redirect_uri_client_and_a_well_formed_verifier() {
    let v = "a".repeat(43);
    let base = format!(
        "grant_type=authorization_code&code=ac_1&redirect_uri=https%3A%2F%2Fa.example%2Fcb&client_id=mcp_1&code_verifier={v}"
    );
    let r = parse(&format!("{base}&resource=https%3A%2F%2Fapi.example%2Fmcp")).unwrap();
    assert_eq!(r.grant_type(), GRANT_AUTHORIZATION_CODE);
    assert!(matches!(
        r,
        TokenRequest::AuthorizationCode { audience: Some(ref a), ref client_id, .. }
            if a == "https://api.example/mcp" && client_id == "mcp_1"
    ));
    for (body, want) in [
        (base.replace("&code=ac_1", ""), "invalid_request"),
        (
            base.replace("&redirect_uri=https%3A%2F%2Fa.example%2Fcb", ""),
            "invalid_request",
        ),
        (base.replace("&client_id=mcp_1", ""), "invalid_request"),
        (
            base.replace(&format!("&code_verifier={v}"), ""),
            "invalid_request",
        ),
        (base.replace(&v, &"a".repeat(42)), "invalid_request"),
        (base.replace(&v, &"a".repeat(129)), "invalid_request"),
        (
            base.replace(&v, &format!("{}%2B", "a".repeat(43))),
            "invalid_request",
        ),
        (format!("{base}&resource=x%23frag"), "invalid_target"),
    ] {
        assert_eq!(refused(FORM, &body), (want, "grant"), "{body}");
    }
}

#[test]
fn secrets_stay_out_of_debug() {
    for body in [
        format!("{PRE}&pre-authorized_code=pc_topsecret"),
        "grant_type=refresh_token&refresh_token=rt_topsecret".into(),
        XCHG.replace("rt_secret", "rt_topsecret"),
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc_topsecret".into(),
        format!("grant_type=authorization_code&code=ac_topsecret&redirect_uri=https%3A%2F%2Fa%2Fcb&client_id=c&code_verifier={}", "v".repeat(43)),
        "grant_type=urn%3Aopenid%3Aparams%3Agrant-type%3Aciba&auth_req_id=ar_topsecret".into(),
    ] {
        let r = parse(&body).unwrap();
        assert!(!format!("{r:?}").contains("topsecret"), "{r:?}");
    }
    let e = parse(&format!("{XCHG}&actor_token=at_topsecret")).unwrap_err();
    assert!(!format!("{e:?}").contains("topsecret"));
}

#[test]
fn an_audience_with_a_control_character_is_an_invalid_target() {
    for body in [
        "audience=https%3A%2F%2Fx%00",
        "audience=api%0Aother",
        "resource=https%3A%2F%2Fx%2Fa%00b",
    ] {
        let p = Params::parse(body.as_bytes()).unwrap();
        let e = requested_audience(&p).unwrap_err();
        assert_eq!(e.code(), "invalid_target", "{body}");
    }
    let p = Params::parse(b"audience=https%3A%2F%2Fapi.example").unwrap();
    assert_eq!(
        requested_audience(&p).unwrap().as_deref(),
        Some("https://api.example")
    );
}
