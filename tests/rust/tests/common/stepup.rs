//! Step-up from a Rust agent: a session whose prompt lets the owner decide
//! (through the CLI, on a thread, as the owner acting elsewhere would), the
//! payment it asks for, and the one-time token's requests.

use std::path::Path;
use std::sync::{Arc, Mutex};

use protonpass_agent::{
    AuthOptions, DevicePrompt, OneTimeToken, Payment, PromptFn, Session, StepUpAsk, StoreKind,
    authenticate_with_proton,
};
use protonpass_e2e::{Broker, cli_on};

/// The challenge of an API that wants `payment:execute` for more.
pub const PAYMENT_CHALLENGE: &str = "DPoP error=\"insufficient_scope\", scope=\"payment:execute\"";

/// What the owner does once the prompt shows: run on a thread with the
/// broker's data directory and the grant's id.
pub type OnPrompt = fn(&Path, &str);

/// The owner approves the first waiting request.
pub fn approve(data: &Path, _gid: &str) {
    decide_first(data, "approve");
}

/// The owner denies the first waiting request.
pub fn deny(data: &Path, _gid: &str) {
    decide_first(data, "deny");
}

fn decide_first(data: &Path, decision: &str) {
    let id = cli_on(data, &["stepup", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli_on(data, &["stepup", decision, &id]);
}

/// The grant a step-up session is enrolled with.
pub struct Grant<'a> {
    pub agent: &'a str,
    pub scopes: &'a [&'a str],
    /// More `grant create` options (a budget, say).
    pub extra: &'a [&'a str],
}

/// The prompts a session showed.
pub type Prompts = Arc<Mutex<Vec<DevicePrompt>>>;

/// A session of a fresh `grant` on `aud`, its grant kept under `home`,
/// allowed to step up or not; its prompt runs `on_prompt(data, grant id)`
/// on a thread. Returns the session and the prompts seen.
pub async fn session(
    broker: &Broker,
    aud: &str,
    home: &Path,
    grant: Grant<'_>,
    allow_step_up: bool,
    on_prompt: OnPrompt,
) -> (Session, Prompts) {
    let v = broker.create_grant_on(grant.agent, &grant.scopes.join(" "), aud, grant.extra);
    let gid = v["grant_id"].as_str().unwrap().to_owned();
    let seen: Prompts = Arc::new(Mutex::new(Vec::new()));
    let (seen2, data) = (seen.clone(), broker.data.clone());
    let prompt: PromptFn = Arc::new(move |p: &DevicePrompt| {
        seen2.lock().unwrap().push(p.clone());
        let (data, gid) = (data.clone(), gid.clone());
        std::thread::spawn(move || on_prompt(&data, &gid));
    });
    let s = authenticate_with_proton(
        grant.scopes,
        aud,
        AuthOptions {
            broker: Some(broker.url.clone()),
            agent_name: Some(grant.agent.into()),
            enrollment_code: Some(v["enrollment_code"].as_str().unwrap().to_owned()),
            store: Some(StoreKind::File(home.to_path_buf())),
            prompt: Some(prompt),
            allow_step_up,
            ..AuthOptions::default()
        },
    )
    .await
    .unwrap();
    (s, seen)
}

/// A payment of 250 EUR to Air Example.
pub fn payment() -> Payment {
    Payment {
        amount: "250".into(),
        currency: "EUR".into(),
        payee: "Air Example".into(),
    }
}

/// The step-up [`payment`] asks for after the API's challenge, with the
/// owner's `message`.
pub fn payment_ask(message: Option<&str>) -> StepUpAsk {
    StepUpAsk::from_challenge(PAYMENT_CHALLENGE, Some(&payment()), message).unwrap()
}

/// A POST to `url` with the one-time token and a fresh proof, ready to send.
pub fn one_time_post(s: &Session, t: &OneTimeToken, url: &str) -> reqwest::RequestBuilder {
    let mut r = reqwest::Client::new().post(url);
    for (k, v) in s.one_time_headers(t, "POST", url).unwrap() {
        r = r.header(k, v);
    }
    r
}

/// POST `url` with the one-time token: (status, WWW-Authenticate).
pub async fn send_once(s: &Session, t: &OneTimeToken, url: &str) -> (u16, String) {
    super::answer(one_time_post(s, t, url)).await
}
