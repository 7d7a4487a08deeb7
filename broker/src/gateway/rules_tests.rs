use super::super::path::normalise;
use super::*;

/// The code host: its settings, the repository rules the end-to-end tests
/// share, and one more rule.
const CODE_HOST: &str = concat!(
    r#"
name = "code-host"
base_url = "https://api.code-host.example"
credential = { header = "Authorization", value = "Bearer {secret}" }
"#,
    include_str!("../../tests/fixtures/gateway/repo-rules.toml"),
    r#"
[[rule]]
methods = ["GET"]
path = "/user"
scope = "user:read"
"#
);

fn err(text: &str) -> RulesError {
    parse(text).expect_err("accepted")
}

fn m(u: &Upstream, method: &str, raw: &str) -> Option<String> {
    let p = normalise(raw).ok()?;
    match_request(&u.rules, method, &p)
}

#[test]
fn the_issue_example_parses_with_defaults() {
    let u = parse(CODE_HOST).unwrap();
    assert_eq!(u.name, "code-host");
    assert_eq!(u.audience, "https://api.code-host.example");
    assert_eq!(u.base_url.as_str(), "https://api.code-host.example/");
    assert!(!u.allow_private_network);
    assert_eq!(
        u.credential,
        Credential::Header {
            name: "authorization".into(),
            template: "Bearer {secret}".into()
        }
    );
    assert_eq!(u.rules.len(), 3);
}

#[test]
fn requests_map_to_the_scope_with_the_segments_values() {
    let u = parse(CODE_HOST).unwrap();
    assert_eq!(
        m(&u, "GET", "/repos/me/proj/commits").as_deref(),
        Some("repo:read:proj")
    );
    // `**` takes nothing too.
    assert_eq!(
        m(&u, "GET", "/repos/me/proj").as_deref(),
        Some("repo:read:proj")
    );
    assert_eq!(
        m(&u, "POST", "/repos/me/proj/issues").as_deref(),
        Some("repo:write:proj")
    );
    assert_eq!(m(&u, "GET", "/user").as_deref(), Some("user:read"));
    // No rule: refused.
    assert_eq!(m(&u, "DELETE", "/repos/me/proj"), None);
    assert_eq!(m(&u, "GET", "/user/keys"), None);
    assert_eq!(m(&u, "GET", "/users"), None);
    assert_eq!(m(&u, "GET", "/repos/me"), None);
    assert_eq!(m(&u, "get", "/user"), None);
}

#[test]
fn rule_edges_are_exact() {
    let u = parse(CODE_HOST).unwrap();
    // The scope follows the segment, never a prefix of it.
    assert_eq!(
        m(&u, "POST", "/repos/me/proj-evil/issues").as_deref(),
        Some("repo:write:proj-evil")
    );
    assert_eq!(
        m(&u, "POST", "/repos/me/proj/../proj-evil/issues").as_deref(),
        Some("repo:write:proj-evil")
    );
    assert_eq!(
        m(&u, "POST", "/repos/me/proj/issues/../../proj-evil/issues").as_deref(),
        Some("repo:write:proj-evil")
    );
    // Encoded traversal is refused before matching.
    assert_eq!(m(&u, "POST", "/repos/me/proj/issues/%2e%2e/%2e%2e/x"), None);
    assert_eq!(m(&u, "POST", "/repos/me/proj%2f..%2fevil/issues"), None);
    // A value that is not a scope segment never becomes part of a scope.
    for raw in [
        "/repos/me/Proj/issues",
        "/repos/me/a:b/issues",
        "/repos/me/under-5/issues",
        "/repos/me/%2A/issues",
        "/repos/me/-x/issues",
        "/repos/me/a%20b/issues",
    ] {
        assert_eq!(m(&u, "POST", raw), None, "{raw}");
    }
    // An empty segment is collapsed, never an empty variable.
    assert_eq!(m(&u, "POST", "/repos/me//issues"), None);
}

#[test]
fn several_rules_may_match() {
    let u = parse(
        r#"
name = "x"
base_url = "https://x.example"
credential = { query = "api_key" }
[[rule]]
methods = ["GET"]
path = "/v1/**"
scope = "v1:read"
[[rule]]
methods = ["GET"]
path = "/v1/files/{id}"
scope = "files:read:{id}"
"#,
    )
    .unwrap();
    assert_eq!(
        matching_scopes(&u.rules, "GET", "/v1/files/f1"),
        vec!["v1:read".to_owned(), "files:read:f1".to_owned()]
    );
    assert_eq!(matching_scopes(&u.rules, "GET", "/"), Vec::<String>::new());
}

#[test]
fn invalid_files_are_refused_with_the_line_and_reason() {
    let e = err(
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\nbogus = 1\n[[rule]]\nmethods=[\"GET\"]\npath=\"/\"\nscope=\"a:b\"\n",
    );
    assert_eq!(e.line, 4, "{e}");
    assert!(e.message.contains("bogus"), "{e}");

    let e = err(
        "name = \"x\"\nbase_url = \"http://x.example\"\ncredential = { query = \"k\" }\n[[rule]]\nmethods=[\"GET\"]\npath=\"/\"\nscope=\"a:b\"\n",
    );
    assert_eq!(e.line, 2, "{e}");
    assert!(e.message.contains("https"), "{e}");

    let e = err(
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n[[rule]]\nmethods=[\"GET\"]\npath=\"/r/{repo}\"\nscope=\"repo:read:{owner}\"\n",
    );
    assert_eq!(e.line, 7, "{e}");
    assert!(e.message.contains("{owner}"), "{e}");

    let e = err(
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n[[rule]]\nmethods=[\"GET\"]\npath=\"/a/**/b\"\nscope=\"a:b\"\n",
    );
    assert_eq!(e.line, 6, "{e}");

    let e = err(
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n[[rule]]\nmethods=[\"GET\"]\npath=\"/\"\nscope=\"a:b\"\nextra = 1\n",
    );
    assert_eq!(e.line, 8, "{e}");

    let e = err(
        "name = \"x\"\nbase_url = \"https://x.example\"\n[[rule]]\nmethods=[\"GET\"]\npath=\"/\"\nscope=\"a:b\"\n",
    );
    assert!(e.message.contains("credential"), "{e}");

    let e = err("name = [1\n");
    assert_eq!(e.line, 1, "{e}");
}

#[test]
fn hostile_definitions_are_refused() {
    let base = |cred: &str, rule: &str| {
        format!(
            "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = {cred}\n[[rule]]\n{rule}\n"
        )
    };
    let good_rule = "methods = [\"GET\"]\npath = \"/a\"\nscope = \"a:read\"";
    let bad_creds = [
        "{ header = \"Host\", value = \"{secret}\" }",
        "{ header = \"Content-Length\", value = \"{secret}\" }",
        "{ header = \"X-Key\", value = \"no secret here\" }",
        "{ header = \"X-Key\", value = \"{secret}{secret}\" }",
        "{ header = \"X-Key\", value = \"{secret}\\r\\nX-Evil: 1\" }",
        "{ header = \"X Key\", value = \"{secret}\" }",
        "{ header = \"X-Key\" }",
        "{ query = \"a&b\" }",
        "{ query = \"\" }",
        "{ basic = \"user\" }",
        "{ query = \"k\", basic = \"{secret}\" }",
        "{ cookie = \"{secret}\" }",
    ];
    for c in bad_creds {
        assert!(parse(&base(c, good_rule)).is_err(), "accepted {c}");
    }
    let cred = "{ header = \"X-Key\", value = \"{secret}\" }";
    let bad_rules = [
        "methods = []\npath = \"/a\"\nscope = \"a:read\"",
        "methods = [\"get\"]\npath = \"/a\"\nscope = \"a:read\"",
        "methods = [\"CONNECT\"]\npath = \"/a\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"a\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a/../b\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a//b\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a/%2e\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a/x{id}\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a/*/b\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a/***\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/{id}/{id}\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/{ID}\"\nscope = \"a:read\"",
        "methods = [\"GET\"]\npath = \"/a\"\nscope = \"a\"",
        "methods = [\"GET\"]\npath = \"/a\"\nscope = \"a:read:{x\"",
        "methods = [\"GET\"]\npath = \"/a/**\"\nscope = \"a:read:{**}\"",
        "methods = [\"GET\"]\npath = \"/a\"\nscope = \"A:read\"",
    ];
    for r in bad_rules {
        assert!(parse(&base(cred, r)).is_err(), "accepted {r}");
    }
    // Private networks only when asked, and then http is allowed too.
    let private = "name = \"x\"\nbase_url = \"http://127.0.0.1:8080/api/\"\nallow_private_network = true\ncredential = { basic = \"me:{secret}\" }\n[[rule]]\nmethods=[\"GET\"]\npath=\"/**\"\nscope=\"a:read\"\n";
    let u = parse(private).unwrap();
    assert_eq!(u.base_url.as_str(), "http://127.0.0.1:8080/api");
    for bad_base in [
        "https://user:pw@x.example",
        "https://x.example/?q=1",
        "https://x.example/#f",
        "ftp://x.example",
        "https://x.example:99999",
        "https://127.0.0.1",
        "https://[::1]:8443",
        "https://169.254.169.254/latest",
        "data:text/plain,x",
        "https://x.example/a%2e",
    ] {
        let t = format!(
            "name = \"x\"\nbase_url = \"{bad_base}\"\ncredential = {{ query = \"k\" }}\n[[rule]]\n{good_rule}\n"
        );
        assert!(parse(&t).is_err(), "accepted {bad_base}");
    }
    for extra in [
        "timeout_secs = 0",
        "timeout_secs = 301",
        "timeout_secs = -1",
        "suggested_ttl = \"forever\"",
        "suggested_scopes = [\"Not A Scope\"]",
        "audience = \"not a url\"",
    ] {
        let t = format!(
            "name = \"x\"\nbase_url = \"https://x.example\"\n{extra}\ncredential = {{ query = \"k\" }}\n[[rule]]\n{good_rule}\n"
        );
        let e = err(&t);
        assert_eq!(e.line, 3, "{extra}: {e}");
    }
    let t = format!(
        "name = \"x\"\nbase_url = \"https://x.example\"\ntimeout_secs = 5\ncredential = {{ query = \"k\" }}\n[[rule]]\n{good_rule}\n"
    );
    assert_eq!(parse(&t).unwrap().timeout_secs, 5);
    for bad_name in ["", "X", "a/b", "a b", "..", &"a".repeat(65)] {
        let t = format!(
            "name = \"{bad_name}\"\nbase_url = \"https://x.example\"\ncredential = {{ query = \"k\" }}\n[[rule]]\n{good_rule}\n"
        );
        assert!(parse(&t).is_err(), "accepted name {bad_name:?}");
    }
}

#[test]
fn size_limits() {
    let mut t = String::from(
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n",
    );
    for i in 0..=MAX_RULES {
        t.push_str(&format!(
            "[[rule]]\nmethods=[\"GET\"]\npath=\"/r{i}\"\nscope=\"a:b\"\n"
        ));
    }
    let e = err(&t);
    assert!(e.message.contains("rules"), "{e}");
    assert!(err(&" ".repeat(MAX_FILE + 1)).message.contains("larger"));
    let no_rules =
        "name = \"x\"\nbase_url = \"https://x.example\"\ncredential = { query = \"k\" }\n";
    assert!(err(no_rules).message.contains("no [[rule]]"));
}
