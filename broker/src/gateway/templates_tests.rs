//! Every template in `templates/` loads and maps sample requests to the
//! scopes an owner would expect (and refuses what no rule allows).

use super::super::path::normalise;
use super::*;

fn load(name: &str) -> Upstream {
    let path = format!("{}/../templates/{name}.toml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    parse(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn every_template_loads_and_explains_itself() {
    let dir = format!("{}/../templates", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().into_string().ok()?;
            n.strip_suffix(".toml").map(str::to_owned)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 5, "{names:?}");
    for n in &names {
        let u = load(n);
        assert_eq!(&u.name, n, "a template's name is its file name");
        assert!(
            u.base_url.scheme() == "https" && !u.allow_private_network,
            "{n}"
        );
        assert!(
            u.description.as_deref().is_some_and(|d| d.len() > 20),
            "{n}"
        );
        assert!(
            !u.suggested_scopes.is_empty() && u.suggested_ttl.is_some(),
            "{n}"
        );
        assert!(u.rules.iter().all(|r| r.description.is_some()), "{n}");
    }
}

#[test]
fn templates_map_sample_requests() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "github",
            "GET",
            "/repos/me/my-project/commits",
            Some("repo:read:my-project"),
        ),
        (
            "github",
            "POST",
            "/repos/me/my-project/issues",
            Some("issues:write:my-project"),
        ),
        (
            "github",
            "PATCH",
            "/repos/me/my-project/pulls/3",
            Some("pulls:write:my-project"),
        ),
        ("github", "GET", "/user", Some("user:read")),
        ("github", "DELETE", "/repos/me/my-project", None),
        ("github", "PUT", "/repos/me/my-project/contents/x", None),
        ("github", "GET", "/repos/me/MyRepo/commits", None),
        (
            "stripe",
            "GET",
            "/v1/customers/cus_123",
            Some("customers:read"),
        ),
        ("stripe", "POST", "/v1/refunds", Some("refunds:create")),
        (
            "stripe",
            "POST",
            "/v1/payment_intents",
            Some("payments:create"),
        ),
        ("stripe", "POST", "/v1/customers/cus_123", None),
        ("stripe", "DELETE", "/v1/customers/cus_123", None),
        ("stripe", "POST", "/v1/payouts", None),
        ("openai", "POST", "/v1/chat/completions", Some("llm:chat")),
        ("openai", "POST", "/v1/embeddings", Some("llm:embed")),
        ("openai", "GET", "/v1/models", Some("models:read")),
        ("openai", "POST", "/v1/files", None),
        ("openai", "DELETE", "/v1/models/ft-x", None),
        ("anthropic", "POST", "/v1/messages", Some("llm:chat")),
        ("anthropic", "GET", "/v1/models/claude", Some("models:read")),
        ("anthropic", "POST", "/v1/messages/batches", None),
        (
            "jira",
            "GET",
            "/rest/api/3/issue/PROJ-1",
            Some("issues:read"),
        ),
        (
            "jira",
            "POST",
            "/rest/api/3/issue/PROJ-1/comment",
            Some("issues:comment"),
        ),
        ("jira", "POST", "/rest/api/3/issue", Some("issues:create")),
        ("jira", "DELETE", "/rest/api/3/issue/PROJ-1", None),
        ("jira", "PUT", "/rest/api/3/issue/PROJ-1", None),
    ];
    for (t, method, raw, want) in cases {
        let u = load(t);
        let path = normalise(raw).unwrap();
        let got = match_request(&u.rules, method, &path);
        assert_eq!(got.as_deref(), *want, "{t}: {method} {raw}");
    }
}
