//! Trusted reverse proxies: `X-Forwarded-For` names the client only when the
//! peer is a configured proxy (`--trusted-proxy`, the environment or the file);
//! the audit log's `source` shows which address the broker believed.

use serde_json::Value;

use protonpass_e2e::{Broker, PRE_AUTHORIZED_CODE, audit_records};

fn rejections(b: &Broker) -> Vec<Value> {
    audit_records(b)
        .into_iter()
        .filter(|r| r["event"] == "rejected")
        .collect()
}

/// Send a refused token request (no DPoP proof) with these `X-Forwarded-For`
/// headers; returns the `source` of the rejection it left in the audit log.
async fn source_seen(b: &Broker, xff: &[&str]) -> String {
    let before = rejections(b).len();
    let headers: Vec<(&str, String)> = xff
        .iter()
        .map(|v| ("x-forwarded-for", (*v).to_owned()))
        .collect();
    let r = b
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", PRE_AUTHORIZED_CODE),
                ("pre-authorized_code", "ec_unknown"),
            ],
            &headers,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Rejections are recorded off the request path.
    for _ in 0..100 {
        let all = rejections(b);
        if all.len() > before {
            let last = &all[all.len() - 1]["detail"];
            assert_eq!(last["request"], "token", "{last}");
            return last["source"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no rejection was recorded for {xff:?}");
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::launch(
        dir.path(),
        "127.0.0.1:0",
        &["--trusted-proxy", "127.0.0.1"],
        &[],
    );
    for (xff, want) in [
        (&[][..], "127.0.0.1"),
        (&["203.0.113.7"][..], "203.0.113.7"),
        (&["2001:db8::7"][..], "2001:db8::7"),
        // The nearest hop the proxies did not add is the client; what the
        // client wrote before it proves nothing.
        (&["198.51.100.1, 203.0.113.7"][..], "203.0.113.7"),
        (&["198.51.100.1", "203.0.113.7"][..], "203.0.113.7"),
        // Hops added by trusted proxies are walked past.
        (&["203.0.113.7, 127.0.0.1"][..], "203.0.113.7"),
        // A hop that is no address stops the walk at the proxy itself.
        (&["203.0.113.7, not-an-address"][..], "127.0.0.1"),
    ] {
        assert_eq!(source_seen(&b, xff).await, want, "{xff:?}");
    }
}

#[tokio::test]
async fn an_untrusted_peer_is_its_own_address() {
    // No proxy configured, or another one: the header is the client's word.
    let b = Broker::start(&[]);
    assert_eq!(source_seen(&b, &["203.0.113.7"]).await, "127.0.0.1");
    let b = Broker::start(&[("PROTONPASS_BROKER_TRUSTED_PROXIES", "10.0.0.1,10.0.0.2")]);
    assert_eq!(source_seen(&b, &["203.0.113.7"]).await, "127.0.0.1");
}

#[tokio::test]
async fn the_environment_replaces_the_files_proxies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("broker.toml"),
        "trusted_proxies = [\"127.0.0.1\"]\n",
    )
    .unwrap();
    let from_file = Broker::start_in(dir.path(), &[]);
    assert_eq!(
        source_seen(&from_file, &["203.0.113.7"]).await,
        "203.0.113.7"
    );
    drop(from_file);
    let replaced = Broker::start_in(
        dir.path(),
        &[("PROTONPASS_BROKER_TRUSTED_PROXIES", "10.0.0.1")],
    );
    assert_eq!(source_seen(&replaced, &["203.0.113.7"]).await, "127.0.0.1");
}
