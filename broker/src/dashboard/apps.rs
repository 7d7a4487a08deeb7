//! `/apps`: the third-party applications (MCP clients) connected through the
//! authorization code flow: which application, what it may do on which
//! service, until when, whether its tokens are DPoP-bound or bearer tokens;
//! and disconnecting one (every grant of that client revoked and put in the
//! revocation feed, as on the agents page).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::view::{self, scope_list, when};
use super::{B, Page, redirect, service_error, signed_form};
use crate::model::{ClientRec, Grant, GrantStatus};
use crate::service::authcode::ORIGIN;
use crate::store;

pub(super) async fn apps_page(b: B, Page { s, q }: Page) -> Response {
    let now = b.clock.now();
    let owner = s.owner.clone();
    let rows = store::read(&b.store, move |tx| {
        let mut out: BTreeMap<String, (Option<ClientRec>, Vec<Grant>)> = BTreeMap::new();
        for g in tx.grants_of(&owner, None)? {
            if g.origin != ORIGIN || g.status != GrantStatus::Active || g.expires_at <= now {
                continue;
            }
            if !out.contains_key(&g.agent) {
                let c = tx.client_get(&g.agent)?;
                out.insert(g.agent.clone(), (c, Vec::new()));
            }
            if let Some((_, list)) = out.get_mut(&g.agent) {
                list.push(g);
            }
        }
        Ok(out)
    })
    .await;
    let rows = or_error_page!(rows, Some(&s));
    let body = html! {
        @if q.get("done").is_some() {
            p.notice.ok role="status" { "The application was disconnected: its tokens no longer work where services follow the revocation feed." }
        }
        @if rows.is_empty() {
            p.empty { "No application is connected. Applications (assistants, editors) connect when you approve them on the page they send you to." }
        }
        @for (client_id, (client, grants)) in &rows {
            @let name = client.as_ref().and_then(|c| c.metadata.client_name.as_deref()).unwrap_or("An application");
            section.card.agent-card {
                div.card-head {
                    h2 { span.agent { (name) } " " span.hint { "(name given by the application)" } }
                    (view::button_form(&s, "/apps/disconnect", ("client_id", client_id), "danger", "Disconnect"))
                }
                dl.facts {
                    dt { "Application id" } dd { code { (client_id) } }
                    @if let Some(c) = client {
                        dt { "Answers go to" }
                        dd { @for u in &c.metadata.redirect_uris { code { (u) } " " } }
                    }
                }
                @for g in grants {
                    @let aud = g.audiences.first().map(String::as_str);
                    div.grant {
                        (scope_list(&g.scope, aud))
                        dl.facts {
                            dt { "Service" } dd { @for a in &g.audiences { code { (a) } " " } }
                            dt { "Connected" } dd { (when(g.created_at)) }
                            dt { "Allowed until" } dd { (when(g.expires_at)) }
                            dt { "Tokens" }
                            dd { @if g.jkt.as_deref().unwrap_or("").is_empty() {
                                "bearer tokens (the application cannot prove a key), 10 minutes each"
                            } @else { "bound to the application's key (DPoP)" } }
                        }
                    }
                }
            }
        }
    };
    view::page(StatusCode::OK, "Connected applications", Some(&s), body)
}

pub(super) async fn disconnect(b: B, headers: HeaderMap, body: Bytes) -> Response {
    let (s, f) = match signed_form(&b, &headers, &body, "/apps").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let client_id = f.get("client_id").unwrap_or("");
    match b.revoke_agent(&s.owner, client_id).await {
        Ok(_) => redirect("/apps?done=1"),
        Err(e) => service_error(&e, Some(&s)),
    }
}
