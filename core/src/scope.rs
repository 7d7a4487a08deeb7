//! The scope algebra (specification: `spec/02-scopes.md`).
//!
//! A scope is `resource:action[:qualifier]`; segments are lower-case
//! `[a-z0-9][a-z0-9._-]*`. The qualifier is a name, `*` (any), or a limit
//! `under-N` (an amount strictly less than the decimal N). A qualifier that
//! starts with `under-` must be a well-formed limit: `under-abc` is refused
//! rather than read as a name, so that no one mistakes a name for a limit.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::error::{Error, Result};

/// Longest scope accepted, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;
/// Most scopes in one request or token.
pub const MAX_SCOPES: usize = 64;
/// The OIDC scope standard clients send; accepted and ignored (agents always
/// get a refresh token).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// The qualifier of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Qualifier {
    /// No qualifier: every object of the action.
    None,
    /// `*`: every object, said explicitly.
    Any,
    /// A named object, e.g. `my-project`.
    Name(String),
    /// `under-N`: amounts strictly less than N. The text is kept as written.
    Limit {
        /// The bound N.
        bound: Decimal,
        /// The qualifier as written (`under-100`).
        text: String,
    },
}

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    resource: String,
    action: String,
    qualifier: Qualifier,
}

fn valid_segment(s: &str) -> bool {
    let b = s.as_bytes();
    match b.first() {
        Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit() => {}
        _ => return false,
    }
    b.iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'))
}

fn parse_limit(text: &str) -> Option<Decimal> {
    let n = text.strip_prefix("under-")?;
    let (int, frac) = match n.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (n, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(int) || frac.is_some_and(|f| !digits(f)) {
        return None;
    }
    // Exactly or not at all: a bound with more digits than a decimal holds
    // (about 28) would be rounded, and could round up, widening the limit.
    Decimal::from_str_exact(n).ok()
}

impl Scope {
    /// Parse one scope; the error names it.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            let shown: String = text.chars().take(MAX_SCOPE_LEN).collect();
            Error::InvalidScope(format!("{shown:?}: {why}"))
        };
        if text.len() > MAX_SCOPE_LEN {
            return Err(bad("longer than 128 bytes"));
        }
        let mut parts = text.split(':');
        let (Some(resource), Some(action), qualifier, None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected resource:action or resource:action:qualifier"));
        };
        if !valid_segment(resource) || !valid_segment(action) {
            return Err(bad(
                "resource and action are lower-case letters, digits, '.', '_' or '-'",
            ));
        }
        let qualifier = match qualifier {
            None => Qualifier::None,
            Some("*") => Qualifier::Any,
            Some(q) if q.starts_with("under-") => match parse_limit(q) {
                Some(bound) => Qualifier::Limit {
                    bound,
                    text: q.to_owned(),
                },
                None => return Err(bad("a limit is under-N with N a decimal number")),
            },
            Some(q) if valid_segment(q) => Qualifier::Name(q.to_owned()),
            Some(_) => {
                return Err(bad(
                    "the qualifier is a name (lower-case letters, digits, '.', '_', '-'), '*' or under-N",
                ));
            }
        };
        Ok(Scope {
            resource: resource.to_owned(),
            action: action.to_owned(),
            qualifier,
        })
    }

    /// The resource segment.
    pub fn resource(&self) -> &str {
        &self.resource
    }
    /// The action segment.
    pub fn action(&self) -> &str {
        &self.action
    }
    /// The qualifier.
    pub fn qualifier(&self) -> &Qualifier {
        &self.qualifier
    }

    /// Is `self` covered by `other` (does holding `other` allow `self`)?
    pub fn is_covered_by(&self, other: &Scope) -> bool {
        if self.resource != other.resource || self.action != other.action {
            return false;
        }
        match (&self.qualifier, &other.qualifier) {
            (_, Qualifier::None | Qualifier::Any) => true,
            (Qualifier::Name(a), Qualifier::Name(b)) => a == b,
            (Qualifier::Limit { bound: a, .. }, Qualifier::Limit { bound: b, .. }) => a <= b,
            _ => false,
        }
    }

    fn same_kind_limit(&self, other: &Scope) -> Option<(Decimal, Decimal)> {
        if self.resource != other.resource || self.action != other.action {
            return None;
        }
        match (&self.qualifier, &other.qualifier) {
            (Qualifier::Limit { bound: a, .. }, Qualifier::Limit { bound: b, .. }) => {
                Some((*a, *b))
            }
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)?;
        match &self.qualifier {
            Qualifier::None => Ok(()),
            Qualifier::Any => f.write_str(":*"),
            Qualifier::Name(n) => write!(f, ":{n}"),
            Qualifier::Limit { text, .. } => write!(f, ":{text}"),
        }
    }
}

impl FromStr for Scope {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Scope::parse(s)
    }
}

/// A set of scopes, in the order first given, without exact duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// Parse a space-separated scope string (RFC 6749 section 3.3). Runs of
    /// spaces are tolerated; any other white space is part of a (bad) scope.
    /// `offline_access` is accepted and ignored. A string that holds no scope is
    /// `invalid_scope`.
    pub fn parse(text: &str) -> Result<Self> {
        Self::from_iter_checked(text.split(' ').filter(|s| !s.is_empty()))
    }

    /// Parse a list of scope strings, as the SDKs take them.
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Result<Self> {
        Self::from_iter_checked(items.iter().map(AsRef::as_ref))
    }

    fn from_iter_checked<'a>(items: impl Iterator<Item = &'a str>) -> Result<Self> {
        let mut out = ScopeSet::default();
        let mut seen = 0usize;
        for item in items {
            seen += 1;
            if seen > MAX_SCOPES {
                return Err(Error::InvalidScope(format!(
                    "more than {MAX_SCOPES} scopes"
                )));
            }
            if item == OFFLINE_ACCESS {
                continue;
            }
            out.insert(Scope::parse(item)?);
        }
        if out.is_empty() {
            return Err(Error::InvalidScope("no scope was given".into()));
        }
        Ok(out)
    }

    /// Add a scope unless an identical one is there.
    pub fn insert(&mut self, s: Scope) {
        if !self.0.contains(&s) {
            self.0.push(s);
        }
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }
    /// How many.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Is `s` covered by some scope of this set?
    pub fn covers(&self, s: &Scope) -> bool {
        self.0.iter().any(|g| s.is_covered_by(g))
    }

    /// Is every scope of `other` covered by this set?
    pub fn covers_all(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.covers(s))
    }

    /// Negotiate `requested` against this (granted) set: keep each requested
    /// scope that some granted scope covers; narrow a requested limit to the
    /// largest granted limit of the same resource and action where that is
    /// smaller; drop the rest. The result is covered by both sets and never
    /// wider than either. It may be empty: the broker answers `invalid_scope`.
    pub fn negotiate(&self, requested: &ScopeSet) -> ScopeSet {
        let mut out = ScopeSet::default();
        for r in &requested.0 {
            if self.covers(r) {
                out.insert(r.clone());
                continue;
            }
            let best = self
                .0
                .iter()
                .filter_map(|g| r.same_kind_limit(g).map(|(req, gr)| (g, req, gr)))
                .filter(|(_, req, gr)| gr.cmp(req) == Ordering::Less)
                .max_by(|a, b| a.2.cmp(&b.2));
            if let Some((g, _, _)) = best {
                out.insert(g.clone());
            }
        }
        out
    }

    /// The scopes of `other` this set does not cover.
    pub fn missing(&self, other: &ScopeSet) -> ScopeSet {
        ScopeSet(
            other
                .0
                .iter()
                .filter(|s| !self.covers(s))
                .cloned()
                .collect(),
        )
    }

    /// Resource-server check: does this set allow `required` (a scope string)?
    /// `Err(InsufficientScope)` names the scope when it does not.
    pub fn require(&self, required: &str) -> Result<()> {
        let s = Scope::parse(required)?;
        if self.covers(&s) {
            Ok(())
        } else {
            Err(Error::InsufficientScope(format!(
                "this request needs the scope {required}"
            )))
        }
    }

    /// Resource-server check for amounts: does this set allow `resource:action`
    /// for `amount`? A limit `under-N` allows amounts strictly less than N; no
    /// qualifier or `*` allows any amount; a named qualifier allows none.
    pub fn allows_amount(&self, resource_action: &str, amount: Decimal) -> bool {
        let Ok(base) = Scope::parse(resource_action) else {
            return false;
        };
        if amount.is_sign_negative() || !matches!(base.qualifier, Qualifier::None) {
            return false;
        }
        self.0.iter().any(|g| {
            g.resource == base.resource
                && g.action == base.action
                && match &g.qualifier {
                    Qualifier::None | Qualifier::Any => true,
                    Qualifier::Limit { bound, .. } => amount < *bound,
                    Qualifier::Name(_) => false,
                }
        })
    }

    /// [`ScopeSet::allows_amount`] as a `Result` naming what is needed.
    pub fn require_amount(&self, resource_action: &str, amount: Decimal) -> Result<()> {
        if self.allows_amount(resource_action, amount) {
            Ok(())
        } else {
            Err(Error::InsufficientScope(format!(
                "this request needs {resource_action} for an amount of {amount}"
            )))
        }
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl FromStr for ScopeSet {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ScopeSet::parse(s)
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
#[path = "scope_tests.rs"]
mod tests;
