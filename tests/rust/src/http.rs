//! The kit's HTTP side: form posts, token requests with DPoP proofs (and the
//! nonce round), grants redeemed, introspection and the revocation feed.

use protonpass_agent::{AgentKey, Clock, OsRandom, ProofInput, SystemClock, create_proof};
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::Broker;

/// The grant type of a pre-authorized code (an enrollment code).
pub const PRE_AUTHORIZED_CODE: &str = "urn:ietf:params:oauth:grant-type:pre-authorized_code";

/// A DPoP proof by `key` for `method url`, signed now: `token` is the access
/// token it goes with (hashed into `ath`), `nonce` the server's when it asked
/// for one.
pub fn dpop(
    key: &AgentKey,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    proof_now(key, method, url, token, nonce, None)
}

/// [`dpop`], with the agent's `reason` signed into the proof.
pub fn dpop_why(
    key: &AgentKey,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
    reason: &str,
) -> String {
    proof_now(key, method, url, token, nonce, Some(reason))
}

fn proof_now(
    key: &AgentKey,
    method: &str,
    url: &str,
    access_token: Option<&str>,
    nonce: Option<&str>,
    reason: Option<&str>,
) -> String {
    let input = ProofInput {
        method,
        url,
        access_token,
        nonce,
        reason,
    };
    create_proof(key, &input, SystemClock.now(), &OsRandom).unwrap()
}

/// An HTTP answer: status, body (JSON, else the text as a string) and headers.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Reply {
    /// The OAuth `error` code, or "".
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
    /// The string member `k` of the body, or "".
    pub fn s(&self, k: &str) -> String {
        self.body[k].as_str().unwrap_or_default().to_owned()
    }
}

/// Read a response into a `Reply`.
pub async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        body,
        headers,
    }
}

impl Broker {
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.url)
    }

    /// A DPoP proof by `key` for a POST to `url`.
    pub fn proof(&self, key: &AgentKey, url: &str, nonce: Option<&str>) -> String {
        dpop(key, "POST", url, None, nonce)
    }

    pub async fn post_form(
        &self,
        path: &str,
        params: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Reply {
        self.post_form_to(&self.url, path, params, headers).await
    }

    /// `post_form` to another base URL than the issuer (a replica's own address).
    pub async fn post_form_to(
        &self,
        base: &str,
        path: &str,
        params: &[(&str, &str)],
        headers: &[(&str, String)],
    ) -> Reply {
        let mut req = self
            .http
            .post(format!("{base}{path}"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let r = req.body(body).send().await.unwrap();
        reply(r).await
    }

    /// A token request with a fresh proof by `key`, fetching a nonce when asked.
    pub async fn token(&self, key: &AgentKey, params: &[(&str, &str)]) -> Reply {
        for _ in 0..2 {
            let nonce = self.nonce.lock().unwrap().clone();
            let proof = self.proof(key, &self.token_url(), nonce.as_deref());
            let r = self
                .post_form("/oauth/token", params, &[("DPoP", proof)])
                .await;
            if let Some(n) = r.headers.get("dpop-nonce") {
                *self.nonce.lock().unwrap() = Some(n.to_str().unwrap().to_owned());
            }
            if r.error() != "use_dpop_nonce" {
                return r;
            }
        }
        panic!("the nonce round did not settle");
    }

    /// A refresh of `refresh_token` (RFC 6749 section 6), proved by `key`.
    pub async fn refresh(&self, key: &AgentKey, refresh_token: &str) -> Reply {
        self.token(
            key,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    /// A token exchange (RFC 8693) of `subject`, of type `ty`, with `extra`
    /// parameters, proved by `key`.
    pub async fn exchange(
        &self,
        key: &AgentKey,
        subject: &str,
        ty: &str,
        extra: &[(&str, &str)],
    ) -> Reply {
        let mut p = vec![
            ("grant_type", protonpass_agent::wire::GRANT_TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ty),
        ];
        p.extend_from_slice(extra);
        self.token(key, &p).await
    }

    /// An unsigned device authorization request (RFC 8628) by `client_id`
    /// for `scope` on `resource`, whatever its answer.
    pub async fn device_authorization(
        &self,
        client_id: &str,
        scope: &str,
        resource: &str,
    ) -> Reply {
        self.post_form(
            "/oauth/device_authorization",
            &[
                ("client_id", client_id),
                ("scope", scope),
                ("resource", resource),
            ],
            &[],
        )
        .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(
            self.http
                .get(format!("{}{path}", self.url))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Redeem the enrollment code `code` of a pre-authorized grant with `key`,
    /// whatever the answer.
    pub async fn redeem(&self, key: &AgentKey, code: &str) -> Reply {
        self.token(
            key,
            &[
                ("grant_type", PRE_AUTHORIZED_CODE),
                ("pre-authorized_code", code),
            ],
        )
        .await
    }

    /// Create a pre-authorized grant with the CLI and redeem it with `key`.
    pub async fn enroll(&self, key: &AgentKey, agent: &str, scope: &str, extra: &[&str]) -> Reply {
        let g = self.create_grant(agent, scope, extra);
        let r = self
            .redeem(key, g["enrollment_code"].as_str().unwrap())
            .await;
        assert_eq!(r.status, 200, "enroll: {}", r.body);
        r
    }

    pub async fn introspect(&self, rs: &(String, String), token: &str) -> Reply {
        self.post_form(
            "/oauth/introspect",
            &[
                ("token", token),
                ("client_id", &rs.0),
                ("client_secret", &rs.1),
            ],
            &[],
        )
        .await
    }

    /// The whole revocation feed, page by page.
    pub async fn whole_feed(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let r = self
                .get(&format!("/revocations?after={after}&limit=1000"))
                .await;
            assert_eq!(r.status, 200, "{}", r.body);
            let page = r.body["revocations"].as_array().unwrap().clone();
            let Some(last) = page.last() else { break };
            after = last["seq"].as_i64().unwrap();
            out.extend(page);
        }
        out
    }

    /// The `kid`s the broker publishes in its JWKS, sorted.
    pub async fn published_kids(&self) -> Vec<String> {
        let jwks = self.get("/jwks.json").await.body;
        let mut kids: Vec<String> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect();
        kids.sort();
        kids
    }

    /// The revocation feed after `after`.
    pub async fn feed(&self, after: i64) -> Vec<Value> {
        let r = self.get(&format!("/revocations?after={after}")).await;
        assert_eq!(r.status, 200);
        r.body["revocations"].as_array().unwrap().clone()
    }

    /// RFC 7009 revocation of `token` by the public client `client_id`.
    pub async fn revoke_token(&self, token: &str, client_id: &str) -> Reply {
        let form = [("token", token), ("client_id", client_id)];
        self.post_form("/oauth/revoke", &form, &[]).await
    }

    /// The revocation stream (server-sent events), opened; resumed after the
    /// event `last_event_id` when given.
    pub async fn revocation_stream(&self, last_event_id: Option<i64>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}/revocations/stream", self.url));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        r
    }
}
