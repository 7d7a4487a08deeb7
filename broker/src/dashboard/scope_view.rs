//! The scopes an agent asks for, as the approval page shows them: in plain
//! words from the resource's scope catalog where it has one, grouped by the
//! scope's resource part (`travel`, `payment`), the risky ones marked, the raw
//! scope string only as secondary text.

use maud::{Markup, html};
use protonpass_agent::Scope;

use super::view::describe_scope;
use crate::scope_catalog::{Risk, ScopeCatalog, ScopeInfo};

/// One scope to show.
struct Shown<'a> {
    raw: &'a str,
    words: String,
    risk: Option<Risk>,
}

/// The scopes in groups, in the order of first appearance.
fn groups<'a>(
    scopes: &[&'a str],
    aud: Option<&str>,
    catalog: Option<&ScopeCatalog>,
) -> Vec<(String, Vec<Shown<'a>>)> {
    let mut out: Vec<(String, Vec<Shown<'a>>)> = Vec::new();
    for raw in scopes {
        let parsed = Scope::parse(raw).ok();
        let entry = match (catalog, &parsed) {
            (Some(c), Some(s)) => c.entry_for(s),
            _ => None,
        };
        let shown = Shown {
            raw,
            words: entry.map_or_else(|| describe_scope(raw, aud), |e| e.description.clone()),
            risk: entry.map(|e| e.risk),
        };
        let group = parsed.map_or_else(|| (*raw).to_owned(), |s| s.resource().to_owned());
        match out.iter_mut().find(|(g, _)| *g == group) {
            Some((_, list)) => list.push(shown),
            None => out.push((group, vec![shown])),
        }
    }
    out
}

/// Whether any of `scopes` is one the resource's catalog marks high-risk:
/// approving it asks for the owner's second factor again.
pub(super) fn any_high_risk(scopes: &[&str], catalog: Option<&ScopeCatalog>) -> bool {
    let Some(c) = catalog else {
        return false;
    };
    scopes.iter().any(|raw| {
        Scope::parse(raw)
            .ok()
            .and_then(|s| c.entry_for(&s).map(|e| e.risk == Risk::High))
            .unwrap_or(false)
    })
}

/// The checkboxes of the approval form, one per scope (all ticked).
pub(super) fn scope_choices(
    scopes: &[&str],
    aud: Option<&str>,
    catalog: Option<&ScopeCatalog>,
) -> Markup {
    html! {
        @for (group, list) in groups(scopes, aud, catalog) {
            p.group { (group.replace(['_', '-'], " ")) }
            @for s in list {
                label.choice {
                    input type="checkbox" name="scope" value=(s.raw) checked;
                    span {
                        (s.words) (risk_mark(s.risk))
                        " " code.raw { (s.raw) }
                    }
                }
            }
        }
    }
}

/// The marker after a scope's words: high risk, or changes the owner's data.
fn risk_mark(risk: Option<Risk>) -> Markup {
    html! {
        @if risk == Some(Risk::High) {
            " " strong.risk.high { "high risk" }
        } @else if risk == Some(Risk::Medium) {
            " " span.risk.medium { "changes your data" }
        }
    }
}

/// A whole catalog, read-only (the resources page): each scope in its
/// catalog's words, grouped by its resource part, the risky ones marked.
pub(super) fn catalog_list(catalog: &ScopeCatalog) -> Markup {
    let mut groups: Vec<(&str, Vec<&ScopeInfo>)> = Vec::new();
    for e in &catalog.scopes {
        let g = e.name.split(':').next().unwrap_or(&e.name);
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, list)) => list.push(e),
            None => groups.push((g, vec![e])),
        }
    }
    html! {
        @for (group, list) in groups {
            p.group { (group.replace(['_', '-'], " ")) }
            ul.catalog {
                @for e in list {
                    li { (e.description) (risk_mark(Some(e.risk))) " " code.raw { (e.name) } }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::scope_catalog::parse;

    #[test]
    fn catalog_words_grouped_with_risk() {
        let c = parse(
            "[[scope]]\nname = \"travel:book\"\ndescription = \"Book flights\"\nrisk = \"medium\"\n\
             [[scope]]\nname = \"payment:execute:under-500\"\ndescription = \"Pay up to 500 EUR per payment\"\nrisk = \"high\"\n",
        )
        .unwrap();
        let html = scope_choices(
            &["travel:book", "payment:execute:under-100", "travel:search"],
            Some("https://travel.example"),
            Some(&c),
        )
        .into_string();
        let travel = html.find(">travel<").unwrap();
        let payment = html.find(">payment<").unwrap();
        assert!(travel < payment, "{html}");
        assert!(html.contains("Book flights"), "{html}");
        assert!(
            html.contains(
                "Pay up to 500 EUR per payment <strong class=\"risk high\">high risk</strong>"
            ),
            "{html}"
        );
        // Both travel scopes sit under the one travel heading.
        assert_eq!(html.matches("class=\"group\"").count(), 2, "{html}");
        assert!(html.find("travel:search").unwrap() < payment, "{html}");
    }
}
