//! The examples of tokens, DPoP proofs and scopes (`spec/01-tokens.md`,
//! `spec/02-scopes.md`, `spec/03-dpop.md`), from the core alone.

use super::*;

pub(super) fn tokens(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // The token verifies as a resource server would check it.
    let v = TokenValidation::new(ISSUER, AUDIENCE);
    let got = verify_access_token(&w.token, &w.keys(), &v, NOW).unwrap();
    assert_eq!(got, w.claims);
    let (header, claims) = decode_jws(&w.token);
    out.insert("access-token", fence("text", &wrap(&w.token, 76)));
    out.insert("access-token-header", pretty(&header));
    out.insert("access-token-claims", pretty(&claims));
    let jwks = serde_json::json!({ "keys": [Value::Object(w.broker.public_jwk_json())] });
    out.insert("jwks", pretty(&jwks));
}

pub(super) fn dpop(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // The request passes the whole check (token, proof, binding, replay).
    let ok = verify_request(
        "POST",
        w.url,
        &[format!("DPoP {}", w.token)],
        std::slice::from_ref(&w.proof),
        &w.keys(),
        &TokenValidation::new(ISSUER, AUDIENCE),
        &ProofVerifier::default(),
        None,
        NOW,
    )
    .unwrap();
    assert_eq!(ok.proof.jkt, w.agent.thumbprint());
    let (header, claims) = decode_jws(&w.proof);
    out.insert("dpop-proof", fence("text", &wrap(&w.proof, 76)));
    out.insert("dpop-proof-header", pretty(&header));
    out.insert("dpop-proof-claims", pretty(&claims));
    out.insert(
        "resource-request",
        fence(
            "http",
            &format!(
                "POST /bookings?trip=42 HTTP/1.1\nHost: api.example.com\n\
                 Authorization: DPoP {}\nDPoP: {}",
                w.token, w.proof
            ),
        ),
    );

    // A token-endpoint proof: no `ath`, a server nonce. The nonce has the
    // broker's shape (8-byte minute bucket, 16-byte keyed hash); its hash
    // part here is a placeholder.
    let mut raw = [0u8; 24];
    raw[..8].copy_from_slice(&NOW.div_euclid(60).to_be_bytes());
    w.rng.fill(&mut raw[8..]).unwrap();
    let nonce = b64::encode(raw);
    let input = ProofInput {
        method: "POST",
        url: &format!("{ISSUER}/oauth/token"),
        access_token: None,
        nonce: Some(&nonce),
        reason: None,
    };
    let p = create_proof(&w.agent, &input, NOW, &w.rng).unwrap();
    out.insert(
        "dpop-proof-token-endpoint-claims",
        pretty(&decode_jws(&p).1),
    );

    let jwk = w.agent.public_jwk();
    out.insert(
        "jkt",
        fence(
            "text",
            &format!(
                "public JWK      {}\ncanonical JSON  {}\nSHA-256 (hex)   {}\njkt             {}",
                serde_json::to_string(&jwk.to_json()).unwrap(),
                jwk.canonical_json(),
                hex(&Sha256::digest(jwk.canonical_json())),
                jwk.thumbprint()
            ),
        ),
    );
    out.insert(
        "ath",
        fence(
            "text",
            &format!(
                "ath = BASE64URL(SHA-256(ASCII(access token))) = {}",
                protonpass_agent::access_token_hash(&w.token)
            ),
        ),
    );

    let mut t = String::from("| URL as sent | `htu` compared as |\n|---|---|\n");
    #[rustfmt::skip]
    let htu_cases = [
        "https://api.example.com/bookings", "HTTPS://API.Example.COM/bookings",
        "https://api.example.com:443/bookings", "http://api.example.com:80/",
        "https://api.example.com:8443/bookings", "https://api.example.com",
        "https://api.example.com/a/./b/../c", "https://api.example.com/bookings?trip=42#top",
        "https://api.example.com/%7Euser/%41%2fx", "https://api.example.com/%e2%82%ac",
        "https://api.example.com/caf\u{e9}", "https://xn--caf-dma.example/",
        "https://caf\u{e9}.example/", "https://user:pw@api.example.com/",
        "ftp://api.example.com/", "/bookings",
    ];
    for input in htu_cases {
        let got = normalize_htu(input).map_or("refused".to_owned(), |n| format!("`{n}`"));
        let _ = writeln!(t, "| `{input}` | {got} |");
    }
    out.insert("htu-normalization", t.trim_end().to_owned());
}

pub(super) fn scopes(out: &mut BTreeMap<&'static str, String>) {
    let mut t = String::from("| scope | result |\n|---|---|\n");
    #[rustfmt::skip]
    let scope_cases = [
        "calendar:read", "repo:write:my-project",
        "repo:write:*", "payment:execute:under-100",
        "payment:execute:under-99.50", "payment:execute:under-99999999999999999999999999999",
        "payment:execute:under-0.00000000000000000000000000001", "payment:execute:under-1.99999999999999999999999999999",
        "files:read:underdog", "Calendar:read",
        "calendar:*", "calendar",
        "a:b:c:d", "payment:execute:under-abc",
        "payment:execute:under-1e3", "payment:execute:under-.5",
        "payment:execute:under--1", "c\u{430}lendar:read",
        "calendar\u{ff1a}read", "repo:write:my\u{2010}project",
        "calendar:read\u{200b}", "-calendar:read",
        "repo:write:a*",
    ];
    for s in scope_cases {
        let shown: String = s.escape_unicode_if_needed();
        let got = match Scope::parse(s) {
            Ok(p) => format!(
                "resource `{}`, action `{}`, qualifier {}",
                p.resource(),
                p.action(),
                match p.qualifier() {
                    protonpass_agent::Qualifier::None => "none".to_owned(),
                    protonpass_agent::Qualifier::Any => "`*` (any)".to_owned(),
                    protonpass_agent::Qualifier::Name(n) => format!("name `{n}`"),
                    protonpass_agent::Qualifier::Limit { bound, .. } =>
                        format!("limit: amounts < {bound}"),
                }
            ),
            Err(e) => format!("refused (`{}`)", e.code()),
        };
        let _ = writeln!(t, "| {shown} | {got} |");
    }
    out.insert("scope-parse", t.trim_end().to_owned());

    let mut t = String::from("| requested (needed) | held | covered |\n|---|---|---|\n");
    #[rustfmt::skip]
    let coverage_cases = [
        ("calendar:read", "calendar:read"),
        ("calendar:read", "calendar:write"),
        ("calendar:read", "calendars:read"),
        ("repo:write:my-project", "repo:write"),
        ("repo:write:my-project", "repo:write:*"),
        ("repo:write", "repo:write:*"),
        ("repo:write:*", "repo:write"),
        ("repo:write", "repo:write:my-project"),
        ("repo:write:*", "repo:write:my-project"),
        ("repo:write:my-project", "repo:write:other"),
        ("repo:write:my-project-evil", "repo:write:my-project"),
        ("repo:write:my-project", "repo:write:my"),
        ("payment:execute:under-50", "payment:execute:under-100"),
        ("payment:execute:under-100", "payment:execute:under-100.00"),
        ("payment:execute:under-100.5", "payment:execute:under-100"),
        ("payment:execute:under-100", "payment:execute"),
        ("payment:execute", "payment:execute:under-100"),
        ("payment:execute:*", "payment:execute:under-100"),
        ("payment:execute:card", "payment:execute:under-100"),
    ];
    for (a, b) in coverage_cases {
        let covered = ScopeSet::parse(b)
            .unwrap()
            .covers(&Scope::parse(a).unwrap());
        let _ = writeln!(
            t,
            "| `{a}` | `{b}` | {} |",
            if covered { "yes" } else { "no" }
        );
    }
    out.insert("scope-coverage", t.trim_end().to_owned());

    let grant = "payment:execute:under-100 calendar:read repo:write:my-project";
    let g = ScopeSet::parse(grant).unwrap();
    let mut t = format!("Bound (grant): `{grant}`\n\n| requested | issued |\n|---|---|\n");
    #[rustfmt::skip]
    let requests = [
        "calendar:read", "payment:execute:under-50",
        "payment:execute:under-500", "payment:execute",
        "repo:write", "repo:write:my-project-evil",
        "calendar:read calendar:write repo:write:my-project", "payment:execute:under-500 payment:execute:under-20",
        "admin:all",
    ];
    for r in requests {
        let got = g.negotiate(&ScopeSet::parse(r).unwrap());
        let shown = if got.is_empty() {
            "nothing: `invalid_scope`".to_owned()
        } else {
            format!("`{got}`")
        };
        let _ = writeln!(t, "| `{r}` | {shown} |");
    }
    out.insert("scope-negotiation", t.trim_end().to_owned());

    let held = ScopeSet::parse("payment:execute:under-100").unwrap();
    let mut t =
        String::from("Held: `payment:execute:under-100`\n\n| amount | allowed |\n|---|---|\n");
    for a in ["0", "99.99", "100", "100.00", "100.01", "-1"] {
        let ok = held.allows_amount("payment:execute", a.parse().unwrap());
        let _ = writeln!(t, "| {a} | {} |", if ok { "yes" } else { "no" });
    }
    out.insert("scope-amounts", t.trim_end().to_owned());
}

trait EscapeIfNeeded {
    fn escape_unicode_if_needed(&self) -> String;
}

impl EscapeIfNeeded for str {
    /// `code` for ASCII; the code points spelled out otherwise, so that a
    /// homoglyph is visible.
    fn escape_unicode_if_needed(&self) -> String {
        if self.is_ascii() {
            return format!("`{self}`");
        }
        let spelled: String = self
            .chars()
            .map(|c| {
                if c.is_ascii() {
                    c.to_string()
                } else {
                    format!("U+{:04X}", u32::from(c))
                }
            })
            .collect::<Vec<_>>()
            .join("");
        format!("`{spelled}` (non-ASCII)")
    }
}
