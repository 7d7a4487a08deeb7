//! The scope catalogs of registered resources, applied to requests: a scope a
//! resource's catalog never defined is `invalid_scope` before any owner sees
//! it, and tokens carry only scopes their audience defines.
//!
//! A resource without a catalog keeps the old rule: any well-formed scope.
//! Protocol scopes (`offline_access`) are not resource scopes; the scope
//! parser drops them before these checks.

use protonpass_agent::{Error, Result, Scope, ScopeSet};

use super::Broker;
use crate::model::Resource;
use crate::scope_catalog::ScopeCatalog;
use crate::store::{self, Tx};

/// The catalogs registered for `aud` (several owners may have registered a
/// shared audience; usually one). Empty: no catalog applies.
pub fn catalogs_for(tx: &mut dyn Tx, aud: &str) -> Result<Vec<ScopeCatalog>> {
    Ok(tx
        .resources_for_audience(aud)?
        .into_iter()
        .map(|r| r.scopes)
        .filter(|c| !c.is_empty())
        .collect())
}

/// Whether `s` is defined for an audience with these catalogs (none: yes).
fn defined(cats: &[ScopeCatalog], s: &Scope) -> bool {
    cats.is_empty() || cats.iter().any(|c| c.defines(s))
}

fn undefined(aud: &str, s: &Scope) -> Error {
    Error::InvalidScope(format!("the resource {aud} does not define the scope {s}"))
}

/// Refuse a request naming a scope that none of `auds` defines. A scope is
/// acceptable when some audience of the request defines it or has no catalog
/// (a grant for several APIs carries the scopes of each).
pub fn check(tx: &mut dyn Tx, auds: &[String], scope: &str) -> Result<()> {
    let set = ScopeSet::parse(scope)?;
    let mut cats = Vec::with_capacity(auds.len());
    for a in auds {
        cats.push(catalogs_for(tx, a)?);
    }
    for s in set.iter() {
        if !cats.iter().any(|c| defined(c, s)) {
            let aud = auds.first().map_or("", String::as_str);
            return Err(undefined(aud, s));
        }
    }
    Ok(())
}

/// The scope to issue for `aud`: an explicitly `requested` scope the audience
/// does not define is `invalid_scope`; of the negotiated `scope`, only what
/// the audience defines is kept (a grant for several APIs holds the others'
/// scopes too). Nothing left is `invalid_scope`.
pub fn narrow(tx: &mut dyn Tx, aud: &str, scope: &str, requested: Option<&str>) -> Result<String> {
    let cats = catalogs_for(tx, aud)?;
    if cats.is_empty() {
        return Ok(scope.to_owned());
    }
    if let Some(r) = requested {
        for s in ScopeSet::parse(r)?.iter() {
            if !defined(&cats, s) {
                return Err(undefined(aud, s));
            }
        }
    }
    let kept: Vec<String> = ScopeSet::parse(scope)?
        .iter()
        .filter(|s| defined(&cats, s))
        .map(ToString::to_string)
        .collect();
    if kept.is_empty() {
        return Err(Error::InvalidScope(format!(
            "none of the granted scopes is defined by the resource {aud}"
        )));
    }
    Ok(kept.join(" "))
}

impl Broker {
    /// The catalog an owner approves `aud`'s scopes with: the first registered
    /// one (empty when the audience has none).
    pub async fn catalog_of(&self, aud: &str) -> Result<ScopeCatalog> {
        let aud = aud.to_owned();
        store::read(&self.store, move |tx| {
            Ok(catalogs_for(tx, &aud)?
                .into_iter()
                .next()
                .unwrap_or_default())
        })
        .await
    }

    /// Replace the scope catalog of one of `owner`'s resource servers (by
    /// client id or audience), as the dashboard's import does: the same
    /// catalog `resource add --scopes FILE` registers, applied to requests from
    /// now on. Its credential and sharing stay. Audited as `resource_update`
    /// with `"by": "dashboard"`; another owner's resource answers as unknown.
    pub async fn resource_set_catalog(
        &self,
        owner: &str,
        id: &str,
        scopes: ScopeCatalog,
    ) -> Result<Resource> {
        let now = self.clock.now();
        let (owner, id) = (owner.to_owned(), id.to_owned());
        store::write(&self.store, move |tx| {
            let mut r = tx
                .resources_of(&owner)?
                .into_iter()
                .find(|r| r.client_id == id || r.audience == id)
                .ok_or_else(|| {
                    Error::InvalidRequest(format!("no resource server of this owner is {id}"))
                })?;
            r.scopes = scopes;
            tx.resource_replace(&r)?;
            super::audit_resource(tx, now, "resource_update", &r, Some("dashboard"))?;
            Ok(r)
        })
        .await
    }
}
