//! Scope catalogs: the scopes a resource (or an upstream template) defines,
//! each with a short description in plain words and a risk level, so that an
//! owner approves "Search flights" rather than `travel:search`.
//!
//! The format (TOML, part of the public interface, `spec/`): one `[[scope]]`
//! table per scope with `name`, `description` and `risk` (`low`, `medium`,
//! `high`). A name is a scope (`travel:search`, `payment:execute:under-500`)
//! or a scope template whose qualifier is a `{variable}` (`repo:read:{repo}`),
//! which stands for any qualifier. Parsing is pure and strict: an unknown key,
//! a duplicate name, an empty or overlong description is refused with its line.
//!
//! A requested scope is *defined* by a catalog when some entry covers it in
//! the core's scope algebra: `calendar:read` defines `calendar:read` and
//! `calendar:read:primary`, never `calendar:read-evil`; `payment:execute:under-500`
//! defines `payment:execute:under-100` but not `payment:execute:under-900`.

use std::fmt;
use std::ops::Range;

use protonpass_agent::Scope;
use serde::{Deserialize, Serialize};
use toml::Spanned;

/// Largest catalog file, bytes.
pub const MAX_FILE: usize = 64 * 1024;
/// Most scopes in one catalog.
pub const MAX_SCOPES: usize = 256;
/// Longest description, characters.
pub const MAX_DESCRIPTION: usize = 200;

/// How much harm a scope can do in the wrong hands, as the owner is shown it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Reading, searching.
    Low,
    /// Changing the owner's data.
    Medium,
    /// Spending money, deleting, acting in the owner's name towards others.
    High,
}

impl Risk {
    /// The word used in files and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// One scope of a catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeInfo {
    /// The scope or scope template as written.
    pub name: String,
    /// Plain words for the owner ("Book flights").
    pub description: String,
    /// Risk level.
    pub risk: Risk,
}

/// A parsed catalog, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeCatalog {
    /// The scopes, in file order.
    pub scopes: Vec<ScopeInfo>,
}

/// Why a text file (a scope catalog, an upstream's rules) was refused: the
/// line (1-based, 0 when unknown) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file's kind, as messages name it (`scope catalog`).
    pub file: &'static str,
    /// The line of the offending text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a catalog was refused.
pub type CatalogError = LineError;

/// How a catalog's errors name it.
const CATALOG: &str = "scope catalog";

impl LineError {
    /// At `line` of a `file`.
    pub fn new(file: &'static str, line: usize, message: String) -> Self {
        Self {
            file,
            line,
            message,
        }
    }

    /// At the byte span `span` of `text`.
    pub fn at(file: &'static str, text: &str, span: &Range<usize>, message: String) -> Self {
        Self::new(file, line_of(text, span), message)
    }

    /// `text` is not TOML of the expected shape.
    pub fn toml(file: &'static str, text: &str, e: &toml::de::Error) -> Self {
        let line = e.span().map_or(0, |s| line_of(text, &s));
        Self::new(file, line, e.message().trim().to_owned())
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}, line {}: {}", self.file, self.line, self.message)
        }
    }
}

/// One `[[scope]]` table as read, for files that embed a catalog (upstream
/// templates) and check it with [`from_raw`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScope {
    name: Spanned<String>,
    description: Spanned<String>,
    risk: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    scope: Vec<RawScope>,
}

/// The 1-based line of a byte span in `text`.
pub fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The scope a catalog name stands for: a `{variable}` qualifier reads as `*`.
fn as_scope(name: &str) -> Result<Scope, String> {
    let mut parts = name.splitn(3, ':');
    let (r, a, q) = (parts.next(), parts.next(), parts.next());
    let text = match (r, a, q) {
        (Some(r), Some(a), Some(q)) if q.starts_with('{') => {
            let var = q.strip_prefix('{').and_then(|v| v.strip_suffix('}'));
            let ok = var.is_some_and(|v| {
                !v.is_empty()
                    && v.len() <= 32
                    && v.bytes().next().is_some_and(|c| c.is_ascii_lowercase())
                    && v.bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            });
            if !ok {
                return Err(format!(
                    "{name:?}: a template qualifier is one {{variable}} of lower-case letters, digits, '_'"
                ));
            }
            format!("{r}:{a}:*")
        }
        _ => name.to_owned(),
    };
    Scope::parse(&text).map_err(|e| e.description())
}

/// Check `[[scope]]` tables read from `text` (for the lines of errors).
pub fn from_raw(text: &str, raw: Vec<RawScope>) -> Result<ScopeCatalog, CatalogError> {
    let at = |span: &Range<usize>, message: String| LineError::at(CATALOG, text, span, message);
    if raw.len() > MAX_SCOPES {
        return Err(LineError::new(
            CATALOG,
            0,
            format!("more than {MAX_SCOPES} scopes"),
        ));
    }
    let mut scopes: Vec<ScopeInfo> = Vec::with_capacity(raw.len());
    for r in raw {
        let spans = [r.name.span(), r.description.span(), r.risk.span()];
        let info = entry(
            &scopes,
            r.name.into_inner(),
            r.description.into_inner(),
            r.risk.get_ref(),
        )
        .map_err(|(field, m)| at(&spans[field], m))?;
        scopes.push(info);
    }
    Ok(ScopeCatalog { scopes })
}

/// Check one entry against those before it; an error names the field
/// (0 name, 1 description, 2 risk).
fn entry(
    before: &[ScopeInfo],
    name: String,
    description: String,
    risk: &str,
) -> Result<ScopeInfo, (usize, String)> {
    as_scope(&name).map_err(|m| (0, m))?;
    if before.iter().any(|s| s.name == name) {
        return Err((0, format!("{name:?} is defined twice")));
    }
    let description = description.trim().to_owned();
    let count = description.chars().count();
    if count == 0 || count > MAX_DESCRIPTION {
        return Err((
            1,
            format!("a description is 1 to {MAX_DESCRIPTION} characters"),
        ));
    }
    if description.chars().any(char::is_control) {
        return Err((1, "a description is one line of text".into()));
    }
    let risk = match risk {
        "low" => Risk::Low,
        "medium" => Risk::Medium,
        "high" => Risk::High,
        other => {
            return Err((
                2,
                format!("risk {other:?}: one of \"low\", \"medium\", \"high\""),
            ));
        }
    };
    Ok(ScopeInfo {
        name,
        description,
        risk,
    })
}

/// One scope as sent in JSON (`POST /resource/register`): the same fields
/// as a `[[scope]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonScope {
    /// The scope or scope template.
    pub name: String,
    /// Plain words.
    pub description: String,
    /// `low`, `medium` or `high`.
    pub risk: String,
}

/// Check a catalog sent as JSON entries, with the limits of a file; an error
/// names the entry (1-based, in the `line` field).
pub fn from_json(list: Vec<JsonScope>) -> Result<ScopeCatalog, CatalogError> {
    if list.len() > MAX_SCOPES {
        return Err(LineError::new(
            CATALOG,
            0,
            format!("more than {MAX_SCOPES} scopes"),
        ));
    }
    let mut scopes: Vec<ScopeInfo> = Vec::with_capacity(list.len());
    for (i, j) in list.into_iter().enumerate() {
        let info = entry(&scopes, j.name, j.description, &j.risk)
            .map_err(|(_, m)| LineError::new(CATALOG, i + 1, m))?;
        scopes.push(info);
    }
    Ok(ScopeCatalog { scopes })
}

/// Parse a catalog file (`resource add --scopes FILE`, the dashboard's import).
pub fn parse(text: &str) -> Result<ScopeCatalog, CatalogError> {
    if text.len() > MAX_FILE {
        return Err(LineError::new(
            CATALOG,
            0,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    let raw: RawFile = toml::from_str(text).map_err(|e| LineError::toml(CATALOG, text, &e))?;
    from_raw(text, raw.scope)
}

impl ScopeCatalog {
    /// Whether the catalog defines no scope (a resource without a catalog).
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    /// The most specific entry that defines `requested`, if any.
    pub fn entry_for(&self, requested: &Scope) -> Option<&ScopeInfo> {
        self.scopes
            .iter()
            .filter_map(|s| as_scope(&s.name).ok().map(|sc| (s, sc)))
            .filter(|(_, sc)| requested.is_covered_by(sc))
            // An entry covered by another is the more specific one.
            .reduce(|best, cand| {
                if cand.1.is_covered_by(&best.1) {
                    cand
                } else {
                    best
                }
            })
            .map(|(s, _)| s)
    }

    /// Whether `requested` is a scope this catalog defines.
    pub fn defines(&self, requested: &Scope) -> bool {
        self.entry_for(requested).is_some()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const TRAVEL: &str = r#"
[[scope]]
name = "travel:search"
description = "Search flights"
risk = "low"

[[scope]]
name = "travel:book"
description = "Book flights"
risk = "medium"

[[scope]]
name = "payment:execute:under-500"
description = "Pay up to 500 EUR per payment"
risk = "high"

[[scope]]
name = "repo:read:{repo}"
description = "Read a repository"
risk = "low"
"#;

    fn s(x: &str) -> Scope {
        Scope::parse(x).unwrap()
    }

    #[test]
    fn defines_what_is_covered_and_nothing_else() {
        let c = parse(TRAVEL).unwrap();
        assert_eq!(c.scopes.len(), 4);
        assert_eq!(c.scopes[2].risk, Risk::High);
        assert!(c.defines(&s("travel:search")));
        assert!(c.defines(&s("travel:search:paris")));
        assert!(!c.defines(&s("travel:search-evil")));
        assert!(!c.defines(&s("calendar:read")));
        assert!(c.defines(&s("payment:execute:under-100")));
        assert!(!c.defines(&s("payment:execute:under-900")));
        assert!(!c.defines(&s("payment:execute")));
        assert_eq!(
            c.entry_for(&s("repo:read:proj")).unwrap().description,
            "Read a repository"
        );
    }

    #[test]
    fn the_most_specific_entry_describes() {
        let c = parse(
            "[[scope]]\nname = \"pay:go\"\ndescription = \"Any payment\"\nrisk = \"high\"\n\
             [[scope]]\nname = \"pay:go:under-50\"\ndescription = \"Small payments\"\nrisk = \"medium\"\n",
        )
        .unwrap();
        assert_eq!(
            c.entry_for(&s("pay:go:under-20")).unwrap().description,
            "Small payments"
        );
        assert_eq!(
            c.entry_for(&s("pay:go:under-80")).unwrap().description,
            "Any payment"
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        let cases = [
            (
                "[[scope]]\nname = \"x\"\ndescription = \"d\"\nrisk = \"low\"\n",
                2,
            ),
            (
                "[[scope]]\nname = \"a:b\"\ndescription = \"d\"\nrisk = \"severe\"\n",
                4,
            ),
            (
                "[[scope]]\nname = \"a:b\"\ndescription = \"\"\nrisk = \"low\"\n",
                3,
            ),
            (
                "[[scope]]\nname = \"a:b\"\ndescription = \"d\"\nrisk = \"low\"\n\
                 [[scope]]\nname = \"a:b\"\ndescription = \"e\"\nrisk = \"low\"\n",
                6,
            ),
            (
                "[[scope]]\nname = \"a:b:{Bad}\"\ndescription = \"d\"\nrisk = \"low\"\n",
                2,
            ),
            (
                "[[scope]]\nname = \"a:b\"\ndescription = \"d\"\nrisk = \"low\"\nextra = 1\n",
                5,
            ),
            (
                "[[scope]]\nname = \"a:b\"\ndescription = \"line\\nbreak\"\nrisk = \"low\"\n",
                3,
            ),
        ];
        for (text, line) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        assert!(parse(&"#".repeat(MAX_FILE + 1)).is_err());
        assert!(parse("").unwrap().is_empty());
    }
}
