//! The rules file of an upstream (specification: `spec/10-gateway-rules.md`):
//! where requests go, which credential is injected and how, and which scope
//! each method and path needs. Parsing is pure and strict: an unknown key, a
//! base URL that is not `https` (unless private networks are allowed), a path
//! pattern or scope template that cannot be read is refused with its line.

use std::ops::Range;

use protonpass_agent::Scope;
use serde::Deserialize;
use toml::Spanned;

pub use super::credential::Credential;
use super::credential::{RawCredential, credential, valid_token};
pub use super::oauth_config::{ClientAuth, OAuth2};
use crate::scope_catalog::{self, LineError, RawScope, ScopeCatalog};

/// Largest rules file, bytes.
pub const MAX_FILE: usize = 64 * 1024;
/// Most rules in one file.
pub const MAX_RULES: usize = 256;
/// Longest response wait the rules may set, seconds.
pub const MAX_TIMEOUT: u64 = 300;
/// The response wait when the rules set none, seconds.
pub const DEFAULT_TIMEOUT: u64 = 30;
/// Longest upstream name.
pub const MAX_NAME: usize = 64;

/// Why a rules file was refused: the line (1-based, 0 when unknown) and the reason.
pub type RulesError = LineError;

/// How a rules file's errors name it.
const RULES: &str = "rules file";

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Var(String),
    Rest,
}

/// One rule: these methods on paths matching this pattern need this scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Upper-case methods.
    pub methods: Vec<String>,
    /// The pattern as written.
    pub path: String,
    segs: Vec<Seg>,
    /// The scope template (`repo:read:{repo}`).
    pub scope: String,
    /// Plain-language description for the owner.
    pub description: Option<String>,
    /// Spend from the owner's budget before forwarding (`spend = {..}`).
    pub spend: Option<super::spend_rule::SpendRule>,
}

/// A parsed rules file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The upstream's name (the gateway URL's last segment).
    pub name: String,
    /// Where requests go: scheme, host, port and a path prefix (no trailing slash).
    pub base_url: url::Url,
    /// The token audience agents ask for.
    pub audience: String,
    /// How the secret is injected.
    pub credential: Credential,
    /// Whether the base URL may be loopback or a private range.
    pub allow_private_network: bool,
    /// Plain-language description.
    pub description: Option<String>,
    /// Scopes the owner is suggested to grant.
    pub suggested_scopes: Vec<String>,
    /// Suggested grant lifetime (`1h` to `30d`).
    pub suggested_ttl: Option<String>,
    /// How long to wait for the upstream's response headers, seconds.
    pub timeout_secs: u64,
    /// The rules, in file order.
    pub rules: Vec<Rule>,
    /// The OAuth client when the credential is `[credential.oauth2]` (the
    /// access token is then the `{secret}` of `credential`).
    pub oauth2: Option<OAuth2>,
    /// The `[[scope]]` catalog: each rule scope in plain words, with its risk.
    pub scopes: ScopeCatalog,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    name: Spanned<String>,
    base_url: Spanned<String>,
    audience: Option<Spanned<String>>,
    description: Option<String>,
    credential: Spanned<RawCredential>,
    #[serde(default)]
    allow_private_network: bool,
    #[serde(default)]
    suggested_scopes: Vec<Spanned<String>>,
    suggested_ttl: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
    #[serde(default)]
    scope: Vec<RawScope>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    methods: Vec<String>,
    path: Spanned<String>,
    scope: Spanned<String>,
    description: Option<String>,
    spend: Option<Spanned<super::spend_rule::RawSpend>>,
}

/// A name: lower-case letters, digits, '-', '_', starting with a letter or digit.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

fn pattern(p: &str) -> Result<Vec<Seg>, String> {
    let Some(rest) = p.strip_prefix('/') else {
        return Err("a path pattern starts with '/'".into());
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segs = Vec::with_capacity(parts.len());
    let mut vars: Vec<&str> = Vec::new();
    for (i, s) in parts.iter().enumerate() {
        if *s == "**" {
            if i + 1 != parts.len() {
                return Err("'**' may only be the last segment".into());
            }
            segs.push(Seg::Rest);
        } else if let Some(v) = s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
            if !valid_var(v) {
                return Err(format!(
                    "{{{v}}}: a variable is lower-case letters, digits, '_'"
                ));
            }
            if vars.contains(&v) {
                return Err(format!("{{{v}}} appears twice"));
            }
            vars.push(v);
            segs.push(Seg::Var(v.to_owned()));
        } else if s.contains('*') {
            return Err(format!(
                "{s:?}: '*' is not a wildcard here; {{name}} matches one segment, a last ** the rest"
            ));
        } else if s.is_empty() || *s == "." || *s == ".." {
            return Err("a path pattern has no empty, '.' or '..' segment".into());
        } else if s.bytes().all(|c| super::path::is_pchar(c) && c != b'%') {
            segs.push(Seg::Lit((*s).to_owned()));
        } else {
            return Err(format!(
                "{s:?}: a literal segment is unreserved characters, sub-delims, ':' or '@' \
                 (a variable is the whole segment, as {{name}})"
            ));
        }
    }
    Ok(segs)
}

fn valid_var(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 32
        && v.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
        && v.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Fill a scope template; `None` when a variable is unknown or a value is not
/// a plain scope segment (a value must never change the scope's structure).
fn fill(template: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("an unclosed '{' in the scope".into());
        };
        let var = &after[..close];
        let value =
            lookup(var).ok_or_else(|| format!("{{{var}}} is not a variable of the path"))?;
        out.push_str(&value);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a '}' without '{' in the scope".into());
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `v` can stand in a scope as one segment: lower-case letters,
/// digits, '.', '_', '-', not starting with a punctuation mark, and not a limit
/// (`under-N`), which would read as an amount.
pub fn valid_scope_value(v: &str) -> bool {
    let b = v.as_bytes();
    b.first()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(c))
        && !v.starts_with("under-")
}

fn rule(r: RawRule, text: &str) -> Result<Rule, RulesError> {
    let at = |span: &Range<usize>, message: String| LineError::at(RULES, text, span, message);
    let pspan = r.path.span();
    let path = r.path.into_inner();
    let segs = pattern(&path).map_err(|m| at(&pspan, m))?;
    if r.methods.is_empty() {
        return Err(at(&pspan, "a rule names at least one method".into()));
    }
    let mut methods = Vec::new();
    for m in &r.methods {
        let up = m.to_ascii_uppercase();
        if !valid_token(m) || m != &up || m == "CONNECT" || m == "TRACE" {
            return Err(at(
                &pspan,
                format!("{m:?} is not an accepted method (upper-case; not CONNECT or TRACE)"),
            ));
        }
        methods.push(up);
    }
    let sspan = r.scope.span();
    let scope = r.scope.into_inner();
    let vars: Vec<&str> = segs
        .iter()
        .filter_map(|s| match s {
            Seg::Var(v) => Some(v.as_str()),
            _ => None,
        })
        .collect();
    let sample =
        fill(&scope, &|v| vars.contains(&v).then(|| "x".to_owned())).map_err(|m| at(&sspan, m))?;
    Scope::parse(&sample)
        .map_err(|e| at(&sspan, format!("scope template: {}", e.description())))?;
    let spend = match r.spend {
        Some(sp) => {
            let span = sp.span();
            Some(super::spend_rule::parse(sp.into_inner(), &scope).map_err(|m| at(&span, m))?)
        }
        None => None,
    };
    Ok(Rule {
        methods,
        path,
        segs,
        scope,
        description: r.description,
        spend,
    })
}

/// Parse a rules file. The error names the line and the reason.
pub fn parse(text: &str) -> Result<Upstream, RulesError> {
    let whole = |message: String| LineError::new(RULES, 0, message);
    if text.len() > MAX_FILE {
        return Err(whole(format!("larger than {MAX_FILE} bytes")));
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| LineError::toml(RULES, text, &e))?;
    let at = |span: &Range<usize>, message: String| LineError::at(RULES, text, span, message);
    let name = raw.name.get_ref();
    if !valid_name(name) {
        return Err(at(
            &raw.name.span(),
            format!(
                "the name is 1 to {MAX_NAME} lower-case letters, digits, '-' or '_' (it is part of the gateway URL)"
            ),
        ));
    }
    let bspan = raw.base_url.span();
    let base_url = url::Url::parse(raw.base_url.get_ref())
        .map_err(|e| at(&bspan, format!("base_url: {e}")))?;
    let ok_scheme =
        base_url.scheme() == "https" || (base_url.scheme() == "http" && raw.allow_private_network);
    if !ok_scheme {
        return Err(at(
            &bspan,
            "base_url must be https (http only with allow_private_network = true)".into(),
        ));
    }
    if !base_url.has_host()
        || !base_url.username().is_empty()
        || base_url.password().is_some()
        || base_url.query().is_some()
        || base_url.fragment().is_some()
    {
        return Err(at(
            &bspan,
            "base_url is scheme://host[:port][/prefix], without user, query or fragment".into(),
        ));
    }
    if base_url.path().contains('%') || base_url.path().contains("/.") {
        return Err(at(&bspan, "base_url's path must be plain".into()));
    }
    let literal = match base_url.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if literal.is_some_and(|ip| !super::forward::is_public(ip)) && !raw.allow_private_network {
        return Err(at(
            &bspan,
            "base_url is a private or loopback address: set allow_private_network = true if you mean it".into(),
        ));
    }
    let timeout_secs = match raw.timeout_secs {
        Some(t) if (1..=MAX_TIMEOUT).contains(t.get_ref()) => *t.get_ref(),
        Some(t) => {
            return Err(at(&t.span(), format!("timeout_secs is 1 to {MAX_TIMEOUT}")));
        }
        None => DEFAULT_TIMEOUT,
    };
    let audience = match raw.audience {
        Some(a) => {
            let span = a.span();
            let a = a.into_inner();
            match url::Url::parse(&a) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && a.len() <= 256 => a,
                _ => return Err(at(&span, "audience must be an http(s) URL".into())),
            }
        }
        None => raw.base_url.get_ref().trim_end_matches('/').to_owned(),
    };
    let cspan = raw.credential.span();
    let (credential, oauth2) = credential(raw.credential.into_inner(), raw.allow_private_network)
        .map_err(|m| at(&cspan, m))?;
    if raw.rule.len() > MAX_RULES {
        return Err(whole(format!("more than {MAX_RULES} rules")));
    }
    if raw.rule.is_empty() {
        return Err(whole(
            "no [[rule]]: an upstream without rules allows nothing".into(),
        ));
    }
    let mut suggested_scopes = Vec::new();
    for s in raw.suggested_scopes {
        Scope::parse(s.get_ref()).map_err(|e| at(&s.span(), e.description()))?;
        suggested_scopes.push(s.into_inner());
    }
    let suggested_ttl = match raw.suggested_ttl {
        Some(t) => {
            let ok = t.get_ref().len() > 1
                && t.get_ref().len() <= 8
                && t.get_ref().ends_with(['m', 'h', 'd'])
                && t.get_ref()[..t.get_ref().len() - 1]
                    .bytes()
                    .all(|c| c.is_ascii_digit());
            if !ok {
                return Err(at(&t.span(), "suggested_ttl is like 1h, 8h or 7d".into()));
            }
            Some(t.into_inner())
        }
        None => None,
    };
    let scopes =
        scope_catalog::from_raw(text, raw.scope).map_err(|e| LineError { file: RULES, ..e })?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    for r in raw.rule {
        let span = r.span();
        let r = rule(r.into_inner(), text)?;
        // With a catalog, every rule's scope is in it (what the owner is shown).
        if !scopes.is_empty() && !describes(&scopes, &r.scope) {
            return Err(at(
                &span,
                format!("the scope {} has no [[scope]] entry", r.scope),
            ));
        }
        rules.push(r);
    }
    let mut base_url = base_url;
    let trimmed = base_url.path().trim_end_matches('/').to_owned();
    base_url.set_path(&trimmed);
    Ok(Upstream {
        name: raw.name.into_inner(),
        base_url,
        audience,
        credential,
        allow_private_network: raw.allow_private_network,
        description: raw.description,
        suggested_scopes,
        suggested_ttl,
        timeout_secs,
        rules,
        oauth2,
        scopes,
    })
}

/// Whether `catalog` defines a rule's scope template: its variables stand for
/// any value, so the template's name itself (or a broader entry) must be there.
pub fn describes(catalog: &ScopeCatalog, template: &str) -> bool {
    if catalog.scopes.iter().any(|s| s.name == template) {
        return true;
    }
    fill(template, &|_| Some("x".to_owned()))
        .ok()
        .and_then(|s| Scope::parse(&s).ok())
        .is_some_and(|s| catalog.defines(&s))
}

impl Rule {
    /// The scope this rule needs for `path` (normalised), if the path matches
    /// and every variable's value can stand in a scope.
    pub(super) fn scope_for(&self, path: &str) -> Option<String> {
        let rest = path.strip_prefix('/')?;
        let parts: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split('/').collect()
        };
        let mut values: Vec<(&str, &str)> = Vec::new();
        let mut i = 0;
        for seg in &self.segs {
            match seg {
                Seg::Rest => {
                    i = parts.len();
                    break;
                }
                Seg::Lit(l) => {
                    if parts.get(i) != Some(&l.as_str()) {
                        return None;
                    }
                }
                Seg::Var(v) => {
                    let p = parts.get(i).filter(|p| !p.is_empty())?;
                    values.push((v.as_str(), p));
                }
            }
            i += 1;
        }
        if i != parts.len() {
            return None;
        }
        let lookup = |v: &str| {
            values
                .iter()
                .find(|(k, _)| *k == v)
                .map(|(_, val)| (*val).to_owned())
                .filter(|val| valid_scope_value(val))
        };
        let s = fill(&self.scope, &lookup).ok()?;
        Scope::parse(&s).ok().map(|_| s)
    }
}

/// Every scope that would allow `method` on `path` (normalised by
/// [`super::path::normalise`]), one per matching rule, in file order.
pub fn matching_scopes(rules: &[Rule], method: &str, path: &str) -> Vec<String> {
    rules
        .iter()
        .filter(|r| r.methods.iter().any(|m| m == method))
        .filter_map(|r| r.scope_for(path))
        .collect()
}

/// The scope of the first rule matching `method` and `path`, if any.
pub fn match_request(rules: &[Rule], method: &str, path: &str) -> Option<String> {
    matching_scopes(rules, method, path).into_iter().next()
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "templates_tests.rs"]
mod templates_tests;
