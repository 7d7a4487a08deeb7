//! What the core's examples share: the broker they pretend to be, and the
//! token it issues to the travel agent.

use protonpass_agent::{AccessTokenClaims, Random, Result, random_id};

/// The issuer of the examples' tokens.
pub const ISSUER: &str = "https://broker.example";

/// The claims of a one-hour access token for `aud`, issued at `now` to the
/// agent `travel-bot` on owner `owner-alice`'s grant: `scope`, bound to the
/// key whose thumbprint is `jkt`.
pub fn travel_bot_claims(
    rng: &dyn Random,
    now: i64,
    aud: &str,
    scope: &str,
    jkt: &str,
) -> Result<AccessTokenClaims> {
    Ok(AccessTokenClaims {
        iss: ISSUER.into(),
        sub: "owner-alice".into(),
        aud: aud.into(),
        client_id: "travel-bot".into(),
        iat: now,
        exp: now + 3600,
        jti: random_id(rng, 16)?,
        scope: scope.into(),
        jkt: jkt.into(),
        gid: "grant-1".into(),
        act_sub: "travel-bot".into(),
    })
}
