//! `/oauth/authorize`: the consent page of the authorization code grant for
//! third-party clients (MCP clients). The signed-in owner sees the
//! application, where its answer goes, the resource and the scopes in the
//! catalog's plain words, narrows them, picks a lifetime, and approves or
//! denies; the browser then goes back to the client's registered redirect
//! URI with a code or `access_denied` (`service::authcode`).
//!
//! The form carries the authorization request as it came (a hidden field,
//! checked again on submit) and the session's form token. A request the
//! client got wrong is never answered by sending the browser to the client
//! unseen (RFC 9700 section 4.11.2): the owner signs in, sees the error, and
//! may follow a link back to the application.

use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use maud::{Markup, html};

use super::device::registration_note;
use super::scope_view::{any_high_risk, scope_choices};
use super::view::{self, lifetime_choice};
use super::{B, Decided, Form, redirect, service_error, session, signed_form, to_login};
use crate::service::authcode::{AuthRequest, AuthorizeError};
use crate::store::WebSession;

/// The Content-Security-Policy of the consent page: the dashboard's, with
/// the client's redirect origin allowed as a form target (browsers apply
/// `form-action` to the redirect that answers the form).
fn consent_csp(redirect_uri: &str) -> Option<HeaderValue> {
    let origin = url::Url::parse(redirect_uri)
        .ok()?
        .origin()
        .ascii_serialization();
    if origin == "null" || origin.contains([';', ',', ' ', '\'']) {
        return None;
    }
    HeaderValue::from_str(&super::CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {origin}"),
    ))
    .ok()
}

fn pairs(f: &Form) -> Vec<(String, String)> {
    f.0.clone()
}

/// A request the client got wrong, for an owner who has signed in. RFC 9700
/// section 4.11.2: anyone can register a client, so its redirect URI is not
/// trusted enough to send the browser there on an error by itself (a phishing
/// site would get the broker's name on its link); the owner sees the error
/// and where the answer would go, and decides whether to follow it.
fn refused_request(location: &str, s: &WebSession) -> Response {
    let u = url::Url::parse(location).ok();
    let get = |k: &str| {
        u.as_ref()
            .and_then(|u| {
                u.query_pairs()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.into_owned())
            })
            .unwrap_or_default()
    };
    let host = u
        .as_ref()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    view::page(
        StatusCode::BAD_REQUEST,
        "This request was refused",
        Some(s),
        html! {
            p.notice.error role="alert" {
                "The application's request is not valid (" code { (get("error")) } "): " (get("error_description")) "."
            }
            section.card {
                p { "Nothing was approved. The application can be told, at " code { (host) } ", that its request was refused." }
                p.hint { "Follow this link only if you just asked this application to connect: an address that only pretends to be the application could use a refused request to send you to its own site." }
                div.actions {
                    a.button href=(location) rel="noreferrer" { "Return to " (host) }
                    a href="/" { "Back to the start" }
                }
            }
        },
    )
}

/// Check the request. An error that would go back to the client is shown to
/// the signed-in owner first (`refused_request`); one signed out signs in.
async fn check(b: &B, raw: &str, s: Option<&WebSession>) -> Result<AuthRequest, Response> {
    let Some(f) = Form::from_query(raw.as_bytes()) else {
        return Err(view::message(
            StatusCode::BAD_REQUEST,
            "This request was refused",
            "The authorization request is too large.",
            None,
        ));
    };
    match b.authorize_request(&pairs(&f)).await {
        Ok(r) => Ok(r),
        Err(AuthorizeError::Page(m)) => Err(view::message(
            StatusCode::BAD_REQUEST,
            "This request was refused",
            &m,
            None,
        )),
        Err(AuthorizeError::Redirect(to)) => Err(match s {
            Some(s) => refused_request(&to, s),
            None => to_login(&format!("/oauth/authorize?{raw}")),
        }),
    }
}

fn consent(
    s: &WebSession,
    r: &AuthRequest,
    raw: &str,
    reg: &str,
    catalog: Option<&crate::scope_catalog::ScopeCatalog>,
    error: Option<&str>,
    ask_code: bool,
) -> Markup {
    let scopes: Vec<&str> = r.scope.split(' ').filter(|x| !x.is_empty()).collect();
    let name = r
        .client
        .metadata
        .client_name
        .as_deref()
        .unwrap_or("An application");
    let dest = url::Url::parse(&r.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    html! {
        (view::alert(error))
        section.card {
            p.lead { "Allow " strong.agent { (name) } " to act for you?" }
            p.hint { "This name was given by the application itself and is not verified. Approve only if you just asked this application to connect." }
            dl.facts {
                dt { "Application" }
                dd { code { (r.client.client_id) } }
                dt { "Your answer goes to" }
                dd { code { (dest) } }
                dt { "Service it will use" }
                dd { code { (r.resource) } " — " (reg) }
            }
        }
        form.card method="post" action="/oauth/authorize" {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name="request" value=(raw);
            fieldset {
                legend { "What it may do (untick anything you do not want to allow)" }
                (scope_choices(&scopes, Some(&r.resource), catalog))
            }
            (lifetime_choice())
            @if ask_code {
                label { "Code from your authenticator app, or a recovery code (a high-risk permission is asked for: approving it needs your second factor again)"
                    input type="text" name="code" autocomplete="one-time-code" inputmode="numeric" maxlength="64"; }
            }
            div.actions {
                button.primary type="submit" name="action" value="approve" { "Approve" }
                button.danger type="submit" name="action" value="deny" { "Deny" }
            }
        }
    }
}

async fn render(
    b: &B,
    s: &WebSession,
    r: &AuthRequest,
    raw: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let reg = registration_note(&b.audience_status_of(&s.owner, &r.resource).await);
    let catalog = b.catalog_of(&r.resource).await.ok();
    let scopes: Vec<&str> = r.scope.split(' ').filter(|x| !x.is_empty()).collect();
    let ask_code = any_high_risk(&scopes, catalog.as_ref())
        && super::mfa::required(b, &s.owner).await.unwrap_or(true);
    let mut resp = view::page(
        status,
        "Connect an application",
        Some(s),
        consent(s, r, raw, reg, catalog.as_ref(), error, ask_code),
    );
    if let Some(v) = consent_csp(&r.redirect_uri) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, v);
    }
    resp
}

pub(super) async fn authorize_page(b: B, headers: HeaderMap, RawQuery(raw): RawQuery) -> Response {
    let raw = raw.unwrap_or_default();
    let s = session(&b, &headers).await;
    let r = match check(&b, &raw, s.as_ref()).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Some(s) = s else {
        return to_login(&format!("/oauth/authorize?{raw}"));
    };
    render(&b, &s, &r, &raw, None, StatusCode::OK).await
}

pub(super) async fn authorize_submit(
    b: B,
    peer: axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/agents").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let raw = f.get("request").unwrap_or("").to_owned();
    let r = match check(&b, &raw, Some(&s)).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let Decided {
        approve,
        ticked,
        ttl,
    } = match f.decision("application") {
        Ok(d) => d,
        Err(msg) => {
            return render(&b, &s, &r, &raw, Some(&msg), StatusCode::BAD_REQUEST).await;
        }
    };
    // A high-risk permission (as the resource's catalog marks it) asks for
    // the second factor again, as on the device approval page.
    if approve {
        let catalog = b.catalog_of(&r.resource).await.ok();
        if any_high_risk(&ticked, catalog.as_ref())
            && let Err(e) =
                super::second_factor::confirm(&b, &s, &headers, &peer, &f, "authorize").await
        {
            return render(&b, &s, &r, &raw, Some(&e.message), e.status).await;
        }
    }
    match b
        .authorize_decide(
            &s.owner,
            &r,
            approve,
            approve.then(|| ticked.join(" ")),
            ttl,
        )
        .await
    {
        Ok(to) => redirect(&to),
        Err(e) => service_error(&e, Some(&s)),
    }
}
