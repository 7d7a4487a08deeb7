//! The resources page: the owner's resource servers (the APIs that accept
//! its agents' tokens), each with its scope catalog in plain words, grouped,
//! the risky scopes marked, and a form to import a catalog. The import takes
//! the same TOML as `protonpass-broker resource add --scopes FILE`, parsed by
//! the same function ([`scope_catalog::parse`]); a refused file shows the
//! parser's line and reason and changes nothing. Applied with
//! [`Broker::resource_set_catalog`](crate::service::Broker::resource_set_catalog)
//! and audited there; another owner's resource answers as an unknown one.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::{Markup, html};
use protonpass_agent::Error;

use super::scope_view::catalog_list;
use super::view::{self, when};
use super::{B, Form, Page, redirect, service_error, signed_form_with};
// What the tests below build their forms with.
use crate::model::Resource;
use crate::scope_catalog;
use crate::store::WebSession;
#[cfg(test)]
use {super::MAX_FIELD, axum::http::header};

/// Longest catalog text the form takes: the parser refuses anything over
/// [`scope_catalog::MAX_FILE`] with its own message; far larger is no form.
const MAX_TEXT: usize = 2 * scope_catalog::MAX_FILE;

/// What went wrong with an import, shown on the resource's card.
struct Refused<'a> {
    client_id: &'a str,
    message: String,
    text: &'a str,
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    Some(match code? {
        "imported" => {
            "The scope catalog was replaced. Requests for scopes it does not define are refused from now on; tokens already issued keep their scopes until they expire or are revoked."
        }
        _ => return None,
    })
}

const EXAMPLE: &str =
    "[[scope]]\nname = \"calendar:read\"\ndescription = \"Read your calendar\"\nrisk = \"low\"";

fn resource_card(s: &WebSession, r: &Resource, refused: Option<&Refused<'_>>) -> Markup {
    let refused = refused.filter(|f| f.client_id == r.client_id);
    html! {
        section.card id=(format!("resource-{}", r.client_id)) {
            div.card-head { h2 { code { (r.audience) } } }
            dl.facts {
                dt { "Client id" } dd { code { (r.client_id) } }
                dt { "Other owners" } dd {
                    @if r.shared { "may grant their agents access to it too (shared)" }
                    @else { "cannot grant access to it" }
                }
                dt { "Bearer tokens" } dd {
                    @if r.accept_bearer { "accepted from clients that cannot do DPoP (10 minutes at most)" }
                    @else { "not issued: only DPoP-bound tokens" }
                }
                dt { "Registered" } dd { (when(r.created_at)) }
            }
            h3 { "What agents may ask for" }
            @if r.scopes.is_empty() {
                p.empty { "It has no scope catalog: agents may ask for any well-formed scope, and the approval page can only guess what each one means." }
            } @else {
                (catalog_list(&r.scopes))
            }
            @if let Some(f) = refused {
                p.notice.error role="alert" { "The catalog was not imported, nothing was changed: " (f.message) }
            }
            form method="post" action="/resources/scopes" {
                input type="hidden" name="csrf" value=(s.csrf);
                input type="hidden" name="resource" value=(r.client_id);
                label { "Import a scope catalog (TOML, as for " code { "resource add --scopes FILE" } "); it replaces the one above"
                    textarea name="catalog" rows="10" required spellcheck="false" placeholder=(EXAMPLE) {
                        @if let Some(f) = refused { (f.text) }
                    }
                }
                button.primary type="submit" { "Import the catalog" }
            }
        }
    }
}

fn render(
    status: StatusCode,
    s: &WebSession,
    list: &[Resource],
    done: Option<&str>,
    refused: Option<&Refused<'_>>,
) -> Response {
    let body = html! {
        @if let Some(n) = notice(done) { p.notice.ok role="status" { (n) } }
        p { "The APIs that accept your agents' tokens, and the scopes each one defines. An agent asking for a scope its API does not define is refused before you are asked; the approval page shows the rest in these words." }
        @if list.is_empty() {
            p.empty { "You have no resource servers yet. Register one with " code { "protonpass-broker resource add URL --scopes FILE" } " or an invitation (" code { "resource invite" } ")." }
        }
        @for r in list { (resource_card(s, r, refused)) }
    };
    view::page(status, "Resource servers", Some(s), body)
}

fn not_found(e: &Error, s: &WebSession) -> Response {
    view::message(StatusCode::NOT_FOUND, "Not found", &e.to_string(), Some(s))
}

pub(super) async fn resources_page(State(b): B, Page { s, q }: Page) -> Response {
    match b.resource_list(&s.owner).await {
        Ok(list) => render(StatusCode::OK, &s, &list, q.get("done"), None),
        Err(e) => service_error(&e, Some(&s)),
    }
}

/// The import form: like [`Form::parse`], but the `catalog` field may be as
/// long as a catalog file.
fn import_form(headers: &HeaderMap, body: &Bytes) -> Option<Form> {
    Form::parse_with(headers, body, Some(("catalog", MAX_TEXT)))
}

pub(super) async fn import(State(b): B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form_with(&b, &headers, &body, "/resources", import_form).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let id = f.text("resource").unwrap_or("");
    // Unknown, or another owner's: one answer for both, before the file is read.
    let r = match b.resource_find(&s.owner, id).await {
        Ok(r) => r,
        Err(e @ Error::InvalidRequest(_)) => return not_found(&e, &s),
        Err(e) => return service_error(&e, Some(&s)),
    };
    let text = f.get("catalog").unwrap_or("");
    let parsed = scope_catalog::parse(text).map_err(|e| e.to_string());
    let parsed = parsed.and_then(|c| {
        if c.is_empty() {
            Err("the file defines no scope (a catalog with no [[scope]] table would let agents ask for anything)".to_owned())
        } else {
            Ok(c)
        }
    });
    let catalog = match parsed {
        Ok(c) => c,
        Err(message) => {
            let list = or_error_page!(b.resource_list(&s.owner).await, Some(&s));
            let refused = Refused {
                client_id: &r.client_id,
                message,
                text,
            };
            return render(StatusCode::BAD_REQUEST, &s, &list, None, Some(&refused));
        }
    };
    match b
        .resource_set_catalog(&s.owner, &r.client_id, catalog)
        .await
    {
        Ok(r) => redirect(&format!(
            "/resources?done=imported#resource-{}",
            r.client_id
        )),
        Err(e @ Error::InvalidRequest(_)) => not_found(&e, &s),
        Err(e) => service_error(&e, Some(&s)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn form(body: &str) -> Option<Form> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        import_form(&h, &Bytes::from(body.to_owned()))
    }

    #[test]
    fn a_catalog_may_be_longer_than_other_fields() {
        let long = "x".repeat(MAX_FIELD + 1);
        let f = form(&format!("catalog={long}&resource=rs_1")).unwrap();
        assert_eq!(f.get("catalog").map(str::len), Some(MAX_FIELD + 1));
        assert!(form(&format!("resource={long}")).is_none());
        assert!(form(&format!("catalog={}", "x".repeat(MAX_TEXT + 1))).is_none());
        assert!(import_form(&HeaderMap::new(), &Bytes::from_static(b"catalog=x")).is_none());
    }
}
