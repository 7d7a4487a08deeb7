//! The template catalog: the rules files of `templates/`, built into the
//! broker (specification: `spec/11-templates.md`). `upstream templates`
//! lists them, `upstream add --template NAME` adds an upstream from one, and
//! the dashboard's catalog page shows their scopes in plain words.

use protonpass_agent::{Error, Result};
use serde::Serialize;

use super::rules::{self, Credential, Upstream};
use crate::scope_catalog::ScopeInfo;

/// Every built-in template: its name and its rules file.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "anthropic",
        include_str!("../../../templates/anthropic.toml"),
    ),
    ("asana", include_str!("../../../templates/asana.toml")),
    (
        "cloudflare",
        include_str!("../../../templates/cloudflare.toml"),
    ),
    ("dropbox", include_str!("../../../templates/dropbox.toml")),
    ("gemini", include_str!("../../../templates/gemini.toml")),
    ("github", include_str!("../../../templates/github.toml")),
    ("gitlab", include_str!("../../../templates/gitlab.toml")),
    ("gmail", include_str!("../../../templates/gmail.toml")),
    (
        "google-calendar",
        include_str!("../../../templates/google-calendar.toml"),
    ),
    (
        "google-cloud-storage",
        include_str!("../../../templates/google-cloud-storage.toml"),
    ),
    (
        "google-drive",
        include_str!("../../../templates/google-drive.toml"),
    ),
    ("hubspot", include_str!("../../../templates/hubspot.toml")),
    ("jira", include_str!("../../../templates/jira.toml")),
    (
        "microsoft-outlook",
        include_str!("../../../templates/microsoft-outlook.toml"),
    ),
    ("mistral", include_str!("../../../templates/mistral.toml")),
    ("notion", include_str!("../../../templates/notion.toml")),
    ("openai", include_str!("../../../templates/openai.toml")),
    ("sendgrid", include_str!("../../../templates/sendgrid.toml")),
    ("slack", include_str!("../../../templates/slack.toml")),
    ("stripe", include_str!("../../../templates/stripe.toml")),
    ("twilio", include_str!("../../../templates/twilio.toml")),
];

/// What the catalog shows of a template.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateView {
    /// The template's (and the default upstream's) name.
    pub name: String,
    /// What the API is and what agents can do with it.
    pub description: String,
    /// The credential kind: `oauth2`, `header`, `query` or `basic`.
    pub credential: &'static str,
    /// Where requests go (the owner may choose another base URL).
    pub base_url: String,
    /// The scopes its rules use, in plain words with their risk.
    pub scopes: Vec<ScopeInfo>,
    /// Scopes suggested to grant.
    pub suggested_scopes: Vec<String>,
    /// Suggested grant lifetime.
    pub suggested_ttl: Option<String>,
}

/// The credential kind of a parsed upstream, as one word.
pub fn credential_kind(u: &Upstream) -> &'static str {
    if u.oauth2.is_some() {
        return "oauth2";
    }
    match u.credential {
        Credential::Header { .. } => "header",
        Credential::Query { .. } => "query",
        Credential::Basic { .. } => "basic",
    }
}

fn view(u: &Upstream) -> TemplateView {
    TemplateView {
        name: u.name.clone(),
        description: u.description.clone().unwrap_or_default(),
        credential: credential_kind(u),
        base_url: u.base_url.as_str().trim_end_matches('/').to_owned(),
        scopes: u.scopes.scopes.clone(),
        suggested_scopes: u.suggested_scopes.clone(),
        suggested_ttl: u.suggested_ttl.clone(),
    }
}

/// The catalog, by name; with `query`, only the templates whose name,
/// description or scope descriptions contain it (case-insensitive).
pub fn list(query: Option<&str>) -> Vec<TemplateView> {
    let q = query.map(str::trim).unwrap_or_default().to_lowercase();
    TEMPLATES
        .iter()
        .filter_map(|(_, text)| rules::parse(text).ok())
        .map(|u| view(&u))
        .filter(|t| {
            q.is_empty()
                || t.name.contains(&q)
                || t.description.to_lowercase().contains(&q)
                || t.scopes
                    .iter()
                    .any(|s| s.description.to_lowercase().contains(&q) || s.name.contains(&q))
        })
        .collect()
}

/// One template's rules file.
pub fn text(name: &str) -> Result<&'static str> {
    TEMPLATES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            Error::InvalidRequest(format!(
                "no template named {name:?}: `upstream templates` lists them"
            ))
        })
}

/// One template as the catalog shows it.
pub fn show(name: &str) -> Result<TemplateView> {
    let u = rules::parse(text(name)?).map_err(|e| Error::Server(e.to_string()))?;
    Ok(view(&u))
}

/// What the owner may change in a template before adding it.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// Another upstream name (two upstreams from one template).
    pub name: Option<String>,
    /// Another base URL (a self-hosted instance, your Jira site).
    pub base_url: Option<String>,
    /// The owner's OAuth client id (`[credential.oauth2] client_id`).
    pub client_id: Option<String>,
}

/// The rules file of an upstream made from template `name`: the template as
/// written, or with the overrides set (the result is parsed again by `add`).
pub fn instantiate(name: &str, o: &Overrides) -> Result<String> {
    let text = text(name)?;
    if o.name.is_none() && o.base_url.is_none() && o.client_id.is_none() {
        return Ok(text.to_owned());
    }
    let mut t: toml::Table =
        toml::from_str(text).map_err(|e| Error::Server(format!("template {name}: {e}")))?;
    if let Some(n) = &o.name {
        t.insert("name".into(), toml::Value::String(n.clone()));
    }
    if let Some(b) = &o.base_url {
        t.insert("base_url".into(), toml::Value::String(b.clone()));
    }
    if let Some(c) = &o.client_id {
        let oauth = t
            .get_mut("credential")
            .and_then(|c| c.get_mut("oauth2"))
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| {
                Error::InvalidRequest(format!(
                    "template {name} does not use OAuth: it has no client id to set"
                ))
            })?;
        oauth.insert("client_id".into(), toml::Value::String(c.clone()));
    }
    toml::to_string(&t).map_err(|e| Error::Server(format!("template {name}: {e}")))
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// An upstream's rules file as a template: as written when it has a scope
/// catalog; otherwise with a `[[scope]]` table added for each scope of its
/// rules, from the rules' descriptions, and a risk guessed from the methods
/// (reading is low, deleting high, anything else medium) for the author to
/// review. Falls back to the file as written if the result would not parse.
pub fn as_template(text: &str) -> String {
    let Ok(u) = rules::parse(text) else {
        return text.to_owned();
    };
    if !u.scopes.is_empty() {
        return text.to_owned();
    }
    let mut entries: Vec<(String, String, u8)> = Vec::new();
    for r in &u.rules {
        let risk = if r.methods.iter().all(|m| m == "GET" || m == "HEAD") {
            0
        } else if r.methods.iter().any(|m| m == "DELETE") {
            2
        } else {
            1
        };
        let words = r
            .description
            .clone()
            .unwrap_or_else(|| format!("{} {}", r.methods.join(", "), r.path));
        match entries.iter_mut().find(|(n, _, _)| *n == r.scope) {
            Some(e) => e.2 = e.2.max(risk),
            None => entries.push((r.scope.clone(), words, risk)),
        }
    }
    let mut out = text.trim_end().to_owned();
    out.push_str(
        "\n\n# The scopes in plain words (generated by `upstream export`: review them).\n",
    );
    for (name, words, risk) in entries {
        let words: String = words
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        out.push_str(&format!(
            "\n[[scope]]\nname = {}\ndescription = {}\nrisk = \"{}\"\n",
            quoted(&name),
            quoted(&words),
            ["low", "medium", "high"][usize::from(risk)]
        ));
    }
    if rules::parse(&out).is_ok() {
        out
    } else {
        text.to_owned()
    }
}
