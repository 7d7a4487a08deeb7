//! An upstream's real URLs, sent through the broker's gateway.
//!
//! The broker's metadata lists the audiences it serves through its
//! credential-injecting gateway and their gateway URLs
//! (`protonpass_gateways`, `spec/10-gateway-rules.md`). A session holding a
//! token for such an audience sends a request for a URL under the audience
//! to the same path under the gateway URL instead
//! (`https://api.code-host.example/repos/me/p` becomes
//! `{issuer}/gateway/code-host/repos/me/p`), with its proof for the gateway
//! URL, so that code written for the upstream's URLs works unchanged.
//!
//! The token never goes to the upstream itself (it does not accept it, and it
//! is a third party): a URL under a gateway audience gets headers only once
//! routed. URLs under no audience of the session are neither rewritten nor
//! signed. Gateway URLs are accepted from the metadata only under the
//! issuer's own `{issuer}/gateway/`, so metadata cannot send tokens elsewhere.

use std::sync::RwLock;

use super::audience;
use super::http;
use crate::clock::Random;
use crate::error::{Error, Result};
use crate::wire::ServerMetadata;

/// The gateway URLs of one audience the session holds.
struct Route {
    audience: String,
    /// More than one when several owners of the broker serve the same
    /// audience: then a real URL cannot be routed (which is this agent's
    /// owner's is not public), and the agent names its gateway URL.
    gateways: Vec<String>,
}

/// The routes of a session's audiences.
#[derive(Default)]
pub(crate) struct Routes(RwLock<Vec<Route>>);

/// The metadata's gateway URLs for `audience` that lie under the issuer's
/// `/gateway/`.
fn listed(meta: &ServerMetadata, audience: &str) -> Vec<String> {
    let base = format!("{}/gateway/", meta.issuer.trim_end_matches('/'));
    let want = audience.trim_end_matches('/');
    meta.protonpass_gateways
        .iter()
        .filter(|e| e.audience.trim_end_matches('/') == want)
        .map(|e| e.gateway_url.trim_end_matches('/').to_owned())
        .filter(|g| {
            let ok = audience::covers(&base, g)
                && url::Url::parse(g).is_ok_and(|u| u.query().is_none() && u.fragment().is_none());
            if !ok {
                tracing::warn!("ignoring a gateway URL of the broker's metadata that is not under its issuer's /gateway/");
            }
            ok
        })
        .collect()
}

/// How the broker serves `audience`: its gateway URLs from the metadata at
/// hand, or, when that lists none for it and was not `fetched_now`, from the
/// broker's metadata fetched again (an upstream may have been put behind the
/// gateway since it was cached). Empty: the audience is called directly.
pub(crate) async fn gateways_of(
    broker: &str,
    meta: &ServerMetadata,
    fetched_now: bool,
    audience: &str,
    rng: &dyn Random,
) -> Result<Vec<String>> {
    let gateways = listed(meta, audience);
    if gateways.is_empty() && !fetched_now {
        return Ok(listed(&*http::rediscover(broker, rng).await?, audience));
    }
    Ok(gateways)
}

impl Routes {
    /// Learn how the broker serves `audience` ([`gateways_of`]) and route it so.
    pub(crate) async fn learn(
        &self,
        broker: &str,
        meta: &ServerMetadata,
        fetched_now: bool,
        audience: &str,
        rng: &dyn Random,
    ) -> Result<()> {
        let gateways = gateways_of(broker, meta, fetched_now, audience, rng).await?;
        self.set(audience, gateways)
    }

    /// Route `audience` through `gateways` (none: straight to it).
    pub(crate) fn set(&self, audience: &str, gateways: Vec<String>) -> Result<()> {
        let mut routes = self
            .0
            .write()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        routes.retain(|r| r.audience != audience);
        if !gateways.is_empty() {
            routes.push(Route {
                audience: audience.to_owned(),
                gateways,
            });
        }
        Ok(())
    }

    fn with<T>(&self, f: impl FnOnce(&[Route]) -> T) -> Result<T> {
        let routes = self
            .0
            .read()
            .map_err(|_| Error::Server("session state poisoned".into()))?;
        Ok(f(&routes))
    }

    /// Where a request for `url` goes: the same path and query under the
    /// gateway URL when `url` lies under a gateway audience of the session
    /// (`held` are the audiences it holds tokens for), else `url` itself.
    pub(crate) fn route(&self, held: &[&String], url: &str) -> Result<String> {
        let Ok(aud) = audience::pick(held.iter().copied(), url) else {
            return Ok(url.to_owned());
        };
        self.with(|routes| {
            match routes.iter().find(|r| &r.audience == aud) {
                None => Ok(url.to_owned()),
                Some(r) => match r.gateways.as_slice() {
                    [g] => rewrite(aud, g, url),
                    _ => Err(Error::InvalidRequest(format!(
                        "{aud} is served by several upstreams of the broker's gateway: send the request to your upstream's gateway URL (`protonpass-broker upstream show NAME`)"
                    ))),
                },
            }
        })?
    }

    /// Refuse to attach the token for `aud` to a URL under `aud` itself when
    /// the broker serves `aud` through its gateway (the request must be
    /// routed first, [`Routes::route`]).
    pub(crate) fn check_direct(&self, aud: &str) -> Result<()> {
        let gatewayed = self.with(|routes| routes.iter().any(|r| r.audience == aud))?;
        if gatewayed {
            return Err(Error::InvalidRequest(format!(
                "{aud} is served through the broker's gateway: the session's token goes to the gateway URL, never to the upstream (send the request with the session, or route its URL first)"
            )));
        }
        Ok(())
    }

    /// The held audience whose gateway URL `url` lies under, if any.
    pub(crate) fn audience_of_gateway_url<'a>(
        &self,
        held: &[&'a String],
        url: &str,
    ) -> Option<&'a String> {
        self.with(|routes| {
            routes
                .iter()
                .find(|r| r.gateways.iter().any(|g| audience::covers(g, url)))
                .and_then(|r| held.iter().copied().find(|a| **a == r.audience))
        })
        .ok()
        .flatten()
    }
}

/// `url` (under `aud`) with `aud` replaced by `gateway`: the rest of the path
/// as the `url` crate normalised it, and the query; no fragment.
fn rewrite(aud: &str, gateway: &str, url: &str) -> Result<String> {
    let refuse = || {
        Error::InvalidRequest(format!(
            "cannot route a URL under {aud} to the broker's gateway: its path does not start with the audience's path"
        ))
    };
    let a = url::Url::parse(aud).map_err(|_| refuse())?;
    let u = url::Url::parse(url).map_err(|_| refuse())?;
    let rest = u
        .path()
        .strip_prefix(a.path().trim_end_matches('/'))
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(refuse)?;
    let mut out = format!("{gateway}{rest}");
    if let Some(q) = u.query() {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::{Route, Routes, listed, rewrite};
    use crate::wire::{GatewayEntry, ServerMetadata};

    fn routes(entries: &[(&str, &[&str])]) -> Routes {
        let r = Routes::default();
        for (aud, gws) in entries {
            r.0.write().unwrap().push(Route {
                audience: (*aud).to_owned(),
                gateways: gws.iter().map(|g| (*g).to_owned()).collect(),
            });
        }
        r
    }

    const GW: &str = "https://broker.example/gateway/code-host";

    #[test]
    fn urls_under_a_gateway_audience_go_to_the_same_path_under_the_gateway() {
        let aud = "https://api.code-host.example".to_owned();
        let r = routes(&[(&aud, &[GW])]);
        let held = [&aud];
        for (url, want) in [
            (
                "https://api.code-host.example/repos/me/proj/commits",
                format!("{GW}/repos/me/proj/commits"),
            ),
            (
                "https://API.code-host.example:443/repos/me/p?per_page=2&q=a%20b#frag",
                format!("{GW}/repos/me/p?per_page=2&q=a%20b"),
            ),
            ("https://api.code-host.example", format!("{GW}/")),
            (
                "https://api.code-host.example/a/../repos/",
                format!("{GW}/repos/"),
            ),
        ] {
            assert_eq!(r.route(&held, url).unwrap(), want, "{url}");
        }
        // Outside the audience: unchanged (and the session will not sign it).
        for url in [
            "https://api.code-host.example.evil.com/repos",
            "https://evil.example/?https://api.code-host.example/",
            "https://api.code-host.example@evil.example/repos",
            "http://api.code-host.example/repos",
        ] {
            assert_eq!(r.route(&held, url).unwrap(), url);
        }
        assert!(r.check_direct(&aud).is_err());
        assert!(r.check_direct("https://api.other.example").is_ok());
        assert_eq!(
            r.audience_of_gateway_url(&held, &format!("{GW}/repos/x")),
            Some(&aud)
        );
        assert_eq!(
            r.audience_of_gateway_url(&held, &format!("{GW}x/repos")),
            None
        );
        assert_eq!(
            r.audience_of_gateway_url(&[], &format!("{GW}/repos/x")),
            None
        );
    }

    #[test]
    fn a_path_audience_keeps_the_rest_below_its_path() {
        assert_eq!(
            rewrite(
                "https://api.example/v3",
                GW,
                "https://api.example/v3/repos?x=1"
            )
            .unwrap(),
            format!("{GW}/repos?x=1")
        );
        assert_eq!(
            rewrite("https://api.example/v3/", GW, "https://api.example/v3").unwrap(),
            GW
        );
        assert!(rewrite("https://api.example/v3", GW, "https://api.example//v3/x").is_err());
    }

    #[test]
    fn an_audience_served_by_several_owners_upstreams_is_not_routed() {
        let aud = "https://api.code-host.example".to_owned();
        let other = "https://broker.example/gateway/theirs";
        let r = routes(&[(&aud, &[GW, other])]);
        let e = r
            .route(&[&aud], "https://api.code-host.example/repos")
            .unwrap_err();
        assert_eq!(e.code(), "invalid_request");
        assert!(!e.to_string().contains("/repos"), "{e}");
        assert_eq!(
            r.audience_of_gateway_url(&[&aud], &format!("{GW}/r")),
            Some(&aud)
        );
    }

    #[test]
    fn metadata_gateways_outside_the_issuer_gateway_are_ignored() {
        let meta: ServerMetadata = serde_json::from_value(serde_json::json!({
            "issuer": "https://broker.example",
            "token_endpoint": "https://broker.example/oauth/token",
            "device_authorization_endpoint": "https://broker.example/oauth/device_authorization",
            "revocation_endpoint": "https://broker.example/oauth/revoke",
            "introspection_endpoint": "https://broker.example/oauth/introspect",
            "jwks_uri": "https://broker.example/jwks.json",
            "grant_types_supported": [],
            "dpop_signing_alg_values_supported": ["EdDSA"],
            "revocation_feed_endpoint": "https://broker.example/revocations",
        }))
        .unwrap();
        let entry = |a: &str, g: &str| GatewayEntry {
            audience: a.to_owned(),
            gateway_url: g.to_owned(),
        };
        let aud = "https://api.code-host.example";
        let meta = ServerMetadata {
            protonpass_gateways: vec![
                entry(aud, "https://evil.example/gateway/code-host"),
                entry(aud, "https://broker.example/other/code-host"),
                entry(aud, "https://broker.example/gateway/x?y"),
                entry(&format!("{aud}/"), &format!("{GW}/")),
                entry(
                    "https://api.other.example",
                    "https://broker.example/gateway/o",
                ),
            ],
            ..meta
        };
        assert_eq!(listed(&meta, aud), vec![GW.to_owned()]);
    }
}
