//! The owner's dashboard: server-rendered pages (no script but the passkey
//! helper, `/static/passkey.js`) to set a password,
//! sign in, approve or deny agents (`/device`, the RFC 8628 verification URI),
//! see and revoke grants and tokens, and read the audit log.
//!
//! Every page carries a strict Content-Security-Policy and refuses framing;
//! every state-changing form carries a synchronizer token tied to the session
//! (or, before sign-in, to a short-lived cookie), compared in constant time.

/// The value of a service call's result, or else (returned from the page's
/// handler) the page saying that it failed, for the session `$s`.
macro_rules! or_error_page {
    ($r:expr, $s:expr) => {
        match $r {
            Ok(v) => v,
            Err(e) => return service_error(&e, $s),
        }
    };
}

mod account;
mod agents;
mod apps;
mod audit_page;
pub mod auth;
mod authorize;
mod catalog;
mod connections;
mod device;
pub(crate) mod device_cookie;
mod mfa;
mod passkey;
mod passkey_pages;
pub mod password;
mod pending;
mod resources;
mod scope_view;
mod second_factor;
mod signed_in;
mod stepup;
mod upstreams;
mod usage;
pub(crate) mod view;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use protonpass_agent::Error;
use subtle::ConstantTimeEq;

use crate::audit::secret_hash;
use crate::service::Broker;
use crate::store::{self, WebSession};
use signed_in::{BackTo, Page};

pub use account::reset as mfa_reset;
pub use password::{first_run_link, owner_add};

type B = axum::extract::State<Arc<Broker>>;

/// Most fields in one dashboard form.
const MAX_FIELDS: usize = 64;
/// Longest field value, bytes.
const MAX_FIELD: usize = 4096;

/// The dashboard's routes (merged into the broker's router).
pub fn router() -> Router<Arc<Broker>> {
    Router::new()
        .route("/", get(auth::home))
        .route("/dashboard.css", get(view::stylesheet))
        .route(
            "/setup",
            get(password::setup_page).post(password::setup_submit),
        )
        .route("/login", get(auth::login_page).post(auth::login_submit))
        .route("/logout", axum::routing::post(auth::logout))
        .route("/login/code", get(mfa::code_page).post(mfa::code_submit))
        .route("/account", get(account::account_page))
        .route("/account/mfa/start", axum::routing::post(account::start))
        .route(
            "/account/mfa/confirm",
            axum::routing::post(account::confirm),
        )
        .route(
            "/account/mfa/disable",
            axum::routing::post(account::disable),
        )
        // Passkeys beside the authenticator app (the dashboard's only script).
        .route("/static/passkey.js", get(passkey::script))
        .route(
            "/account/passkey/new",
            axum::routing::post(passkey_pages::new),
        )
        .route(
            "/account/passkey/add",
            axum::routing::post(passkey_pages::add),
        )
        .route(
            "/account/passkey/remove",
            axum::routing::post(passkey_pages::remove),
        )
        .route(
            "/device",
            get(device::device_page).post(device::device_submit),
        )
        .route(
            "/oauth/authorize",
            get(authorize::authorize_page).post(authorize::authorize_submit),
        )
        .route("/apps", get(apps::apps_page))
        .route("/apps/disconnect", axum::routing::post(apps::disconnect))
        .route("/agents", get(agents::agents_page))
        .route("/agents/revoke", axum::routing::post(agents::revoke))
        .route(
            "/agents/revoke-agent",
            axum::routing::post(agents::revoke_agent),
        )
        .route("/agents/grant", axum::routing::post(agents::create_grant))
        .route("/agents/budget", axum::routing::post(agents::set_budget))
        .route("/pending", get(pending::pending_page))
        .route("/pending/deny", axum::routing::post(pending::deny))
        .route("/stepup", get(stepup::stepup_page))
        .route("/stepup/decide", axum::routing::post(stepup::decide))
        .route("/usage", get(usage::usage_page))
        .route("/audit", get(audit_page::audit_page))
        .route(
            "/audit/export",
            get(audit_page::export).layer(Extension(BackTo("/audit"))),
        )
        // Upstream APIs served through the gateway (issue 17).
        .route("/upstreams", get(upstreams::upstreams_page))
        .route(
            "/upstreams/remove",
            get(upstreams::remove_page)
                .post(upstreams::remove)
                .layer(Extension(BackTo("/upstreams"))),
        )
        .route("/upstreams/rotate", axum::routing::post(upstreams::rotate))
        // Resource servers and their scope catalogs (issue 19).
        .route("/resources", get(resources::resources_page))
        .route("/resources/scopes", axum::routing::post(resources::import))
        // Upstream templates and OAuth connections.
        .merge(catalog::routes())
        .merge(connections::routes())
        .layer(middleware::from_fn(security_headers))
}

/// The Content-Security-Policy of every dashboard response: scripts and
/// styles only from the broker (one script, `/static/passkey.js`, for
/// passkeys; no inline script, no eval), forms only to the broker, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    // A page may widen `form-action` for itself (the consent page's answer
    // goes to the client's redirect URI); everything else gets the default.
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    // Pages may show codes and token ids: never cache them. The stylesheet may be.
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    let headers = [
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    (headers, r).into_response()
}

/// Whether the broker is reached over https (cookies get `Secure`).
fn https(b: &Broker) -> bool {
    b.issuer.starts_with("https://")
}

/// The session cookie's name (`__Host-` prefixed when served over https).
fn session_cookie(b: &Broker) -> &'static str {
    if https(b) {
        "__Host-pp_session"
    } else {
        "pp_session"
    }
}

/// The known-device cookie's name (see [`device_cookie`]).
fn device_cookie_name(b: &Broker) -> &'static str {
    if https(b) {
        "__Host-pp_device"
    } else {
        "pp_device"
    }
}

/// The pre-sign-in form cookie's name.
fn pre_cookie(b: &Broker) -> &'static str {
    if https(b) {
        "__Host-pp_form"
    } else {
        "pp_form"
    }
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Secure over https.
fn set_cookie(b: &Broker, name: &str, value: &str, max_age: i64) -> String {
    cookie_line(https(b), name, value, max_age)
}

fn cookie_line(secure: bool, name: &str, value: &str, max_age: i64) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The value of cookie `name`, if sent (bounded).
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    crate::cookies::pairs(headers)
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The signed-in owner's session, if the request carries a live one.
async fn session(b: &Arc<Broker>, headers: &HeaderMap) -> Option<WebSession> {
    let id = cookie(headers, session_cookie(b))?;
    let hash = secret_hash(id);
    let now = b.clock.now();
    store::read(&b.store, move |tx| tx.session_get(&hash, now))
        .await
        .ok()
        .flatten()
}

/// Constant-time comparison of a form token with the expected one.
fn token_matches(expected: &str, got: Option<&str>) -> bool {
    match got {
        Some(g) if !expected.is_empty() => bool::from(expected.as_bytes().ct_eq(g.as_bytes())),
        _ => false,
    }
}

/// A parsed form: repeated fields are kept (checkbox lists), sizes bounded.
#[derive(Default)]
struct Form(Vec<(String, String)>);

impl std::fmt::Debug for Form {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

/// What an approval form decided: approve or deny, the permissions ticked
/// and the lifetime chosen.
struct Decided<'a> {
    approve: bool,
    ticked: Vec<&'a str>,
    ttl: i64,
}

impl Form {
    fn parse(headers: &HeaderMap, body: &Bytes) -> Option<Form> {
        Self::parse_with(headers, body, None)
    }

    /// [`Form::parse`], where the field named by `long` may be as long as its
    /// limit (a whole file pasted in).
    fn parse_with(headers: &HeaderMap, body: &Bytes, long: Option<(&str, usize)>) -> Option<Form> {
        let ct = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !ct
            .to_ascii_lowercase()
            .starts_with("application/x-www-form-urlencoded")
        {
            return None;
        }
        Self::fields(body, long)
    }

    fn from_query(raw: &[u8]) -> Option<Form> {
        Self::fields(raw, None)
    }

    fn fields(raw: &[u8], long: Option<(&str, usize)>) -> Option<Form> {
        let mut out = Vec::new();
        for (k, v) in url::form_urlencoded::parse(raw) {
            let max = match long {
                Some((name, max)) if k == name => max,
                _ => MAX_FIELD,
            };
            if out.len() >= MAX_FIELDS || v.len() > max || k.len() > 64 {
                return None;
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Some(Form(out))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A field with surrounding space removed; `None` when empty.
    fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The decision an approval form (a device's or an application's)
    /// posted, or the sentence telling the owner what to fix; `who` names
    /// the party ("agent", "application"). The lifetime matters only to an
    /// approval.
    fn decision(&self, who: &str) -> std::result::Result<Decided<'_>, String> {
        let approve = match self.get("action") {
            Some("approve") => true,
            Some("deny") => false,
            _ => return Err("Choose Approve or Deny.".into()),
        };
        let ticked = self.all("scope");
        if approve && ticked.is_empty() {
            return Err(format!(
                "Tick at least one thing the {who} may do, or deny it."
            ));
        }
        let ttl = self
            .get("ttl")
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(view::LIFETIMES[0]);
        if approve && !view::LIFETIMES.contains(&ttl) {
            return Err("Choose one of the lifetimes offered.".into());
        }
        Ok(Decided {
            approve,
            ticked,
            ttl,
        })
    }
}

/// The query string of a request as a form.
fn query(q: Option<&str>) -> Form {
    Form::from_query(q.unwrap_or("").as_bytes()).unwrap_or_default()
}

/// The client's address (trusting X-Forwarded-For only from configured proxies).
fn source(b: &Broker, peer: &ConnectInfo<SocketAddr>, headers: &HeaderMap) -> String {
    crate::http::source(b, peer.0, headers)
}

/// A 303 redirect.
fn redirect(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Send a signed-out visitor to the sign-in page, then back to `here`.
fn to_login(here: &str) -> Response {
    let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
    redirect(&format!("/login?next={next}"))
}

/// A form the signed-in owner posted: the session and the form, when the
/// form carries the session's CSRF token; otherwise the answer to send
/// (sign in first, then back to `here`; or the refused form).
async fn signed_form(
    b: &Arc<Broker>,
    headers: &HeaderMap,
    body: &Bytes,
    here: &str,
) -> std::result::Result<(WebSession, Form), Response> {
    signed_form_with(b, headers, body, here, Form::parse).await
}

/// [`signed_form`] with another parser of the form.
async fn signed_form_with(
    b: &Arc<Broker>,
    headers: &HeaderMap,
    body: &Bytes,
    here: &str,
    parse: fn(&HeaderMap, &Bytes) -> Option<Form>,
) -> std::result::Result<(WebSession, Form), Response> {
    let Some(s) = session(b, headers).await else {
        return Err(to_login(here));
    };
    let Some(f) = parse(headers, body) else {
        return Err(csrf_refused());
    };
    if !token_matches(&s.csrf, f.get("csrf")) {
        return Err(csrf_refused());
    }
    Ok((s, f))
}

/// A local path to return to after sign-in, or `None` if it could lead elsewhere.
fn safe_next(next: Option<&str>) -> Option<&str> {
    next.filter(|n| {
        n.starts_with('/')
            && !n.starts_with("//")
            && n.len() <= 2048
            && !n.contains('\\')
            && !n.chars().any(char::is_control)
    })
}

/// The page for a refused form (missing or wrong form token).
fn csrf_refused() -> Response {
    view::message(
        StatusCode::FORBIDDEN,
        "This form was refused",
        "It did not carry this page's security token, so it may not have come from this dashboard. Go back, reload the page and try again.",
        None,
    )
}

/// The page for an error from the broker's services.
fn service_error(e: &Error, s: Option<&WebSession>) -> Response {
    let status = match e {
        Error::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    if let Error::Server(m) = e {
        tracing::error!(error = %m, "dashboard: server error");
    }
    view::message(status, "That did not work", &e.to_string(), s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_http_only_strict_and_secure_over_https() {
        let c = cookie_line(true, "__Host-pp_session", "v", 60);
        assert_eq!(
            c,
            "__Host-pp_session=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure"
        );
        assert!(!cookie_line(false, "pp_session", "v", 60).contains("Secure"));
    }

    #[test]
    fn cookies_and_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; pp_session=abc; b=2"),
        );
        assert_eq!(cookie(&h, "pp_session"), Some("abc"));
        assert_eq!(cookie(&h, "pp"), None);
        assert!(token_matches("abc", Some("abc")));
        assert!(!token_matches("abc", Some("abd")));
        assert!(!token_matches("abc", Some("ab")));
        assert!(!token_matches("", Some("")));
        assert!(!token_matches("abc", None));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(
            safe_next(Some("/device?user_code=X")),
            Some("/device?user_code=X")
        );
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), None, "{bad}");
        }
    }
}
