//! An agent withdraws its own device request (spec 4.4.1): its user stopped
//! waiting (an error in its prompt, Ctrl-C, a cancelled task), so the request
//! leaves the owner's list of waiting requests at once, and an approval it
//! can no longer collect never becomes a live grant.

use protonpass_agent::{Error, Result};
use serde_json::json;

use super::token::eq_ct;
use super::{Broker, Params, revoke_grant};
use crate::audit::secret_hash;
use crate::model::DeviceStatus;
use crate::store;

/// The path of the endpoint, under the issuer.
pub const DEVICE_CANCEL_PATH: &str = "/oauth/device_authorization/cancel";

impl Broker {
    /// `POST /oauth/device_authorization/cancel`: `device_code` (and
    /// optionally `client_id`), with a DPoP proof by the key the request was
    /// made with. A request already answered is withdrawn too: a denial
    /// stays one, an approval is cancelled, a grant already issued for it is
    /// revoked.
    pub async fn device_cancel(&self, p: &Params, dpop: &[String], source: &str) -> Result<()> {
        let r = self.device_cancel_inner(p, dpop, source).await;
        if let Err(e) = &r {
            self.metrics.error(e.code());
            self.audit_rejected("-", "device_cancel", e, json!({}));
        }
        r
    }

    async fn device_cancel_inner(&self, p: &Params, dpop: &[String], source: &str) -> Result<()> {
        let now = self.clock.now();
        if dpop.is_empty() {
            return Err(Error::InvalidRequest(
                "a DPoP proof by the key of the request is required".into(),
            ));
        }
        let proof = {
            let url = format!("{}{DEVICE_CANCEL_PATH}", self.issuer);
            let check = protonpass_agent::ProofCheck {
                method: "POST",
                url: &url,
                ..Default::default()
            };
            self.proofs.verify(dpop, &check, now, Some(source))?
        };
        let jkt = proof.once(self, now).await?.jkt;
        let hash = secret_hash(p.req("device_code")?);
        let client_id = p.get("client_id").map(str::to_owned);
        let seq = store::write(&self.store, move |tx| {
            let Some(mut d) = tx.device_by_device_hash(&hash)? else {
                return Ok(Err(Error::InvalidGrant("unknown device code".into())));
            };
            let bound = d.jkt.as_deref().is_some_and(|k| eq_ct(k, &jkt));
            if !bound || client_id.as_ref().is_some_and(|c| *c != d.client_id) {
                return Ok(Err(Error::InvalidGrant(
                    "only the key that made the device request can withdraw it".into(),
                )));
            }
            let mut seq = 0;
            let before = d.status;
            match d.status {
                DeviceStatus::Used => {
                    if let Some(gid) = &d.gid
                        && let Some(mut g) = tx.grant_get(gid)?
                        && g.status != crate::model::GrantStatus::Revoked
                    {
                        seq = revoke_grant(tx, &mut g, now, "agent")?;
                    }
                }
                DeviceStatus::Denied => {}
                DeviceStatus::Pending | DeviceStatus::Approved => {
                    d.status = DeviceStatus::Denied;
                    d.expires_at = d.expires_at.min(now);
                    tx.device_put(&d)?;
                }
            }
            tx.audit_append(
                now,
                d.owner.as_deref().unwrap_or("-"),
                "device_cancelled",
                &json!({"request": d.id, "agent": d.client_id, "status": format!("{before:?}").to_lowercase(),
                        "gid": d.gid})
                .to_string(),
            )?;
            Ok(Ok(seq))
        })
        .await??;
        self.feed_advanced(seq);
        Ok(())
    }
}
