//! Page layout, the stylesheet, and plain-language wording of scopes and times.
//! Templates are `maud` macros: every interpolated value is HTML-escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use protonpass_agent::budget::{civil_from_days, days_from_civil};

use crate::store::WebSession;

const CSS: &str = include_str!("dashboard.css");

pub(super) async fn stylesheet() -> Response {
    let mut r = ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    r
}

/// A whole page: header with navigation (when signed in), then `body`.
pub(super) fn page(
    status: StatusCode,
    title: &str,
    s: Option<&WebSession>,
    body: Markup,
) -> Response {
    let doc = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Agent access" }
                link rel="stylesheet" href="/dashboard.css";
            }
            body {
                header.top {
                    a.brand href="/" { "Agent access" }
                    @if let Some(s) = s {
                        nav {
                            a href="/device" { "Approve" }
                            a href="/pending" { "Waiting" }
                            a href="/stepup" { "Step-ups" }
                            a href="/agents" { "Agents" }
                            a href="/apps" { "Apps" }
                            a href="/usage" { "Usage" }
                            a href="/resources" { "Resources" }
                            a href="/upstreams" { "APIs" }
                            a href="/audit" { "Activity" }
                            a href="/account" { "Account" }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button.link type="submit" { "Sign out " (s.owner) }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    };
    (status, Html(doc.into_string())).into_response()
}

/// A short page with one message and a way back.
pub(super) fn message(
    status: StatusCode,
    title: &str,
    text: &str,
    s: Option<&WebSession>,
) -> Response {
    page(
        status,
        title,
        s,
        html! {
            p.notice.error { (text) }
            p { a href="/" { "Back to the start" } }
        },
    )
}

fn verb(action: &str) -> String {
    match action {
        "read" | "view" | "get" => "See".into(),
        "write" | "update" | "edit" => "Change".into(),
        "create" => "Create".into(),
        "delete" => "Delete".into(),
        "list" => "List".into(),
        "search" => "Search".into(),
        "book" => "Book".into(),
        "send" => "Send".into(),
        "execute" | "run" | "use" => "Use".into(),
        "admin" | "manage" => "Manage".into(),
        "*" => "Do anything with".into(),
        other => {
            let mut c = other.chars();
            match c.next() {
                Some(f) => f
                    .to_uppercase()
                    .chain(c)
                    .collect::<String>()
                    .replace(['_', '-'], " "),
                None => String::new(),
            }
        }
    }
}

/// A form page's error line, when there is one.
pub(super) fn alert(error: Option<&str>) -> Markup {
    html! { @if let Some(e) = error { p.notice.error role="alert" { (e) } } }
}

/// The hidden fields of a sign-in step's form: its CSRF token and the page
/// to go to once signed in.
pub(super) fn sign_in_fields(csrf: &str, next: &str) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="next" value=(next);
    }
}

/// A grant's scopes (space-separated), each in plain words and as written.
pub(super) fn scope_list(scope: &str, audience: Option<&str>) -> Markup {
    html! {
        ul.scopes {
            @for sc in scope.split(' ').filter(|x| !x.is_empty()) {
                li { (describe_scope(sc, audience)) " " code.raw { (sc) } }
            }
        }
    }
}

/// A scope in plain words: `travel:book` on `travel.example` is "Book travel on
/// travel.example"; `payment:execute:under-100` is "Pay under 100".
pub(super) fn describe_scope(scope: &str, audience: Option<&str>) -> String {
    let parts: Vec<&str> = scope.split(':').collect();
    let (resource, action, qualifier) = match parts.as_slice() {
        [r, a] => (*r, *a, None),
        [r, a, q] => (*r, *a, Some(*q)),
        _ => return scope.to_owned(),
    };
    let payment = matches!(resource, "payment" | "payments" | "pay");
    let mut s = if payment && matches!(action, "execute" | "make" | "send" | "pay" | "create") {
        "Pay".to_owned()
    } else {
        format!("{} {}", verb(action), resource.replace(['_', '-'], " "))
    };
    match qualifier {
        Some("*") => s.push_str(" (all of them)"),
        Some(q) => match q.strip_prefix("under-") {
            Some(n) => {
                s.push_str(" under ");
                s.push_str(n);
            }
            None => {
                s.push_str(" in ");
                s.push_str(q);
            }
        },
        None => {}
    }
    if let Some(a) = audience {
        s.push_str(" on ");
        s.push_str(a.trim_start_matches("https://"));
    }
    s
}

/// A Unix time as `2026-11-29 05:12 UTC`.
pub(crate) fn when(ts: i64) -> String {
    let secs = ts.rem_euclid(86400);
    let (y, m, d) = civil_from_days(ts.div_euclid(86400));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date, as Unix seconds at midnight UTC.
pub(super) fn parse_date(s: &str) -> Option<i64> {
    let mut it = s.trim().splitn(3, '-');
    let y: i64 = it.next()?.parse().ok()?;
    let m: u32 = it.next()?.parse().ok()?;
    let d: u32 = it.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d) * 86400)
}

/// A duration in words: "1 hour", "8 hours", "1 day", "30 days".
pub(super) fn duration(secs: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if secs >= 86400 && secs % 86400 == 0 {
        plural(secs / 86400, "day")
    } else if secs >= 3600 && secs % 3600 == 0 {
        plural(secs / 3600, "hour")
    } else if secs >= 60 {
        plural(secs / 60, "minute")
    } else {
        plural(secs, "second")
    }
}

/// The lifetimes an owner can choose, seconds; the first is the default.
pub(super) const LIFETIMES: [i64; 5] = [3600, 8 * 3600, 86400, 7 * 86400, 30 * 86400];

/// A short form of a key thumbprint, for recognising a key at a glance.
pub(super) fn short_thumbprint(jkt: &str) -> String {
    let s: String = jkt.chars().take(12).collect();
    if jkt.len() > 12 { format!("{s}…") } else { s }
}

/// A one-button form: posts `field`'s value with the session's form token to
/// `action`; the button has class `class` and says `label`.
pub(super) fn button_form(
    s: &WebSession,
    action: &str,
    (field, value): (&str, &str),
    class: &str,
    label: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf" value=(s.csrf);
            input type="hidden" name=(field) value=(value);
            button class=(class) type="submit" { (label) }
        }
    }
}

/// Radio buttons for the grant lifetime (1 hour preselected).
pub(super) fn lifetime_choice() -> Markup {
    html! {
        fieldset.lifetimes {
            legend { "For how long?" }
            @for (i, t) in LIFETIMES.iter().enumerate() {
                label.choice {
                    input type="radio" name="ttl" value=(t) checked[i == 0];
                    span { (duration(*t)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_in_plain_words() {
        assert_eq!(
            describe_scope("travel:book", Some("travel.example")),
            "Book travel on travel.example"
        );
        assert_eq!(
            describe_scope("payment:execute:under-100", None),
            "Pay under 100"
        );
        assert_eq!(
            describe_scope("calendar:read", Some("https://cal.example")),
            "See calendar on cal.example"
        );
        assert_eq!(
            describe_scope("repo:write:my-project", None),
            "Change repo in my-project"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_796_000_000), "2026-11-30 00:53 UTC");
        assert_eq!(parse_date("2026-11-29"), Some(1_795_910_400));
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(duration(86400), "1 day");
        assert_eq!(duration(8 * 3600), "8 hours");
    }
}
