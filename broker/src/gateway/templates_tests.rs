//! Every template in `templates/` loads and maps sample requests to the
//! scopes an owner would expect (and refuses what no rule allows).

use super::super::path::normalise;
use super::*;
use crate::scope_catalog::Risk;

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
    assert!(names.len() >= 20, "{names:?}");
    // Every file is built into the broker, and nothing else is.
    let built: Vec<&str> = super::super::templates::TEMPLATES
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(names, built, "templates/ and TEMPLATES differ");
    for (n, text) in super::super::templates::TEMPLATES {
        assert_eq!(
            parse(text).unwrap(),
            load(n),
            "{n}: the built-in copy is the file"
        );
    }
    let mut oauth = 0;
    for n in &names {
        let u = load(n);
        // Every rule's scope and every suggested scope is in plain words.
        for r in &u.rules {
            assert!(describes(&u.scopes, &r.scope), "{n}: {}", r.scope);
        }
        for s in &u.suggested_scopes {
            let scope = protonpass_agent::Scope::parse(s).unwrap();
            assert!(u.scopes.defines(&scope), "{n}: suggested {s}");
        }
        if let Some(o) = &u.oauth2 {
            oauth += 1;
            assert_eq!(o.token_url.scheme(), "https", "{n}");
            assert!(!o.scopes.is_empty(), "{n}");
        }
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
    assert!(oauth >= 3, "a calendar, a mailbox and more over OAuth");
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
        ("gmail", "GET", "/users/me/messages", Some("mail:read")),
        (
            "gmail",
            "GET",
            "/users/me/messages/18c2f",
            Some("mail:read"),
        ),
        (
            "gmail",
            "POST",
            "/users/me/messages/send",
            Some("mail:send"),
        ),
        ("gmail", "POST", "/users/me/drafts", Some("drafts:write")),
        ("gmail", "DELETE", "/users/me/messages/18c2f", None),
        ("gmail", "GET", "/users/other/messages", None),
        (
            "google-calendar",
            "GET",
            "/calendars/primary/events",
            Some("calendar:read"),
        ),
        (
            "google-calendar",
            "POST",
            "/calendars/primary/events",
            Some("events:write"),
        ),
        (
            "google-calendar",
            "DELETE",
            "/calendars/primary/events/abc",
            Some("events:delete"),
        ),
        (
            "google-calendar",
            "POST",
            "/freeBusy",
            Some("calendar:freebusy"),
        ),
        ("google-calendar", "DELETE", "/calendars/primary", None),
        (
            "microsoft-outlook",
            "GET",
            "/me/messages/AAMk=",
            Some("mail:read"),
        ),
        (
            "microsoft-outlook",
            "POST",
            "/me/sendMail",
            Some("mail:send"),
        ),
        ("microsoft-outlook", "DELETE", "/me/messages/AAMk", None),
        ("microsoft-outlook", "GET", "/users/someone", None),
        (
            "google-drive",
            "GET",
            "/drive/v3/files/1abc/export",
            Some("files:read"),
        ),
        (
            "google-drive",
            "POST",
            "/upload/drive/v3/files",
            Some("files:write"),
        ),
        (
            "google-drive",
            "DELETE",
            "/drive/v3/files/1abc",
            Some("files:delete"),
        ),
        ("google-drive", "GET", "/gmail/v1/users/me/messages", None),
        ("dropbox", "POST", "/files/list_folder", Some("files:read")),
        ("dropbox", "POST", "/files/delete_v2", Some("files:delete")),
        ("dropbox", "POST", "/files/permanently_delete", None),
        (
            "google-cloud-storage",
            "GET",
            "/my-bucket/reports/q1.pdf",
            Some("objects:read:my-bucket"),
        ),
        (
            "google-cloud-storage",
            "GET",
            "/my-bucket",
            Some("objects:read:my-bucket"),
        ),
        (
            "google-cloud-storage",
            "PUT",
            "/my-bucket/a/b.txt",
            Some("objects:write:my-bucket"),
        ),
        ("google-cloud-storage", "PUT", "/my-bucket", None),
        ("google-cloud-storage", "GET", "/My-Bucket/x", None),
        (
            "slack",
            "GET",
            "/conversations.history",
            Some("messages:read"),
        ),
        ("slack", "POST", "/chat.postMessage", Some("chat:write")),
        ("slack", "POST", "/chat.delete", None),
        ("slack", "POST", "/admin.users.remove", None),
        (
            "gitlab",
            "GET",
            "/projects/1234/issues",
            Some("repo:read:1234"),
        ),
        (
            "gitlab",
            "POST",
            "/projects/1234/issues/7/notes",
            Some("issues:write:1234"),
        ),
        (
            "gitlab",
            "POST",
            "/projects/1234/merge_requests",
            Some("mrs:write:1234"),
        ),
        ("gitlab", "DELETE", "/projects/1234", None),
        ("gitlab", "POST", "/projects/1234/repository/commits", None),
        ("notion", "POST", "/search", Some("pages:read")),
        ("notion", "GET", "/blocks/abc/children", Some("pages:read")),
        ("notion", "PATCH", "/pages/abc", Some("pages:write")),
        ("notion", "DELETE", "/blocks/abc", None),
        ("mistral", "POST", "/v1/chat/completions", Some("llm:chat")),
        ("mistral", "POST", "/v1/files", None),
        (
            "gemini",
            "POST",
            "/v1beta/models/gemini-2.0-flash:generateContent",
            Some("llm:chat"),
        ),
        ("gemini", "GET", "/v1beta/models", Some("models:read")),
        ("gemini", "POST", "/v1beta/tunedModels", None),
        ("sendgrid", "POST", "/v3/mail/send", Some("mail:send")),
        (
            "sendgrid",
            "GET",
            "/v3/templates/d-1",
            Some("templates:read"),
        ),
        ("sendgrid", "DELETE", "/v3/templates/d-1", None),
        ("sendgrid", "POST", "/v3/api_keys", None),
        (
            "twilio",
            "POST",
            "/Accounts/AC123/Messages.json",
            Some("sms:send"),
        ),
        (
            "twilio",
            "GET",
            "/Accounts/AC123/Messages.json",
            Some("sms:read"),
        ),
        ("twilio", "POST", "/Accounts/AC123/Calls.json", None),
        (
            "hubspot",
            "POST",
            "/crm/v3/objects/contacts/search",
            Some("contacts:read"),
        ),
        (
            "hubspot",
            "PATCH",
            "/crm/v3/objects/contacts/51",
            Some("contacts:write"),
        ),
        ("hubspot", "DELETE", "/crm/v3/objects/contacts/51", None),
        ("asana", "GET", "/tasks/1201", Some("tasks:read")),
        (
            "asana",
            "POST",
            "/tasks/1201/stories",
            Some("tasks:comment"),
        ),
        ("asana", "DELETE", "/tasks/1201", None),
        ("cloudflare", "GET", "/zones", Some("zones:read")),
        (
            "cloudflare",
            "PATCH",
            "/zones/023e105f4ecef8ad9ca31a8372d0c353/dns_records/r1",
            Some("dns:write:023e105f4ecef8ad9ca31a8372d0c353"),
        ),
        (
            "cloudflare",
            "DELETE",
            "/zones/023e105f4ecef8ad9ca31a8372d0c353",
            None,
        ),
    ];
    for (t, method, raw, want) in cases {
        let u = load(t);
        let path = normalise(raw).unwrap();
        let got = match_request(&u.rules, method, &path);
        assert_eq!(got.as_deref(), *want, "{t}: {method} {raw}");
    }
}

#[test]
fn the_catalog_lists_searches_and_instantiates() {
    use super::super::templates::{Overrides, instantiate, list, show};
    let all = list(None);
    assert!(all.len() >= 20);
    assert!(
        all.iter()
            .any(|t| t.name == "gmail" && t.credential == "oauth2")
    );
    assert!(
        all.iter()
            .any(|t| t.name == "stripe" && t.credential == "header")
    );
    let cal = list(Some(" Calendar"));
    assert!(cal.iter().any(|t| t.name == "google-calendar"));
    assert!(cal.iter().any(|t| t.name == "microsoft-outlook"));
    assert!(!cal.iter().any(|t| t.name == "stripe"));
    assert!(list(Some("no-such-thing-anywhere")).is_empty());
    assert!(
        show("gmail")
            .unwrap()
            .scopes
            .iter()
            .any(|s| s.name == "mail:send")
    );
    assert!(show("nope").is_err());
    let text = instantiate(
        "gmail",
        &Overrides {
            name: Some("my-mail".into()),
            base_url: None,
            client_id: Some("123.apps.googleusercontent.com".into()),
        },
    )
    .unwrap();
    let u = parse(&text).unwrap();
    assert_eq!(u.name, "my-mail");
    assert_eq!(
        u.oauth2.unwrap().client_id,
        "123.apps.googleusercontent.com"
    );
    let jira = instantiate(
        "jira",
        &Overrides {
            base_url: Some("https://acme.atlassian.net".into()),
            ..Overrides::default()
        },
    )
    .unwrap();
    assert_eq!(
        parse(&jira).unwrap().base_url.as_str(),
        "https://acme.atlassian.net/"
    );
    assert!(
        instantiate(
            "stripe",
            &Overrides {
                client_id: Some("x".into()),
                ..Overrides::default()
            }
        )
        .is_err()
    );
}

#[test]
fn any_upstream_exports_as_a_template() {
    use super::super::templates::as_template;
    let plain = "name = \"api\"\nbase_url = \"https://api.example\"\n\
                 credential = { header = \"X-Key\", value = \"{secret}\" }\n\
                 [[rule]]\nmethods = [\"GET\"]\npath = \"/repos/{repo}/**\"\nscope = \"repo:read:{repo}\"\n\
                 description = \"Read \\\"a\\\" repository\"\n\
                 [[rule]]\nmethods = [\"POST\", \"DELETE\"]\npath = \"/repos/{repo}\"\nscope = \"repo:admin:{repo}\"\n\
                 [[rule]]\nmethods = [\"PATCH\"]\npath = \"/repos/{repo}/x\"\nscope = \"repo:read:{repo}\"\n";
    let t = as_template(plain);
    let u = parse(&t).unwrap();
    let names: Vec<(&str, Risk)> = u
        .scopes
        .scopes
        .iter()
        .map(|s| (s.name.as_str(), s.risk))
        .collect();
    assert_eq!(
        names,
        [
            ("repo:read:{repo}", Risk::Medium),
            ("repo:admin:{repo}", Risk::High)
        ]
    );
    assert_eq!(u.scopes.scopes[0].description, "Read \"a\" repository");
    assert_eq!(u.scopes.scopes[1].description, "POST, DELETE /repos/{repo}");
    // A file with a catalog (every built-in template) is kept as written.
    let gmail = super::super::templates::text("gmail").unwrap();
    assert_eq!(as_template(gmail), gmail);
}
