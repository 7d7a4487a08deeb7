//! A one-time token redeemed by a resource server's verification
//! (introspection, as the SDKs' verifiers do on its first use): no longer
//! accepted anywhere, while that resource server may still spend the
//! payment the owner approved with it, once.

use serde_json::Value;

use protonpass_e2e::audit_records;

use crate::stepup::{approved, jti, setup, spend};

#[tokio::test]
async fn a_verified_one_time_token_pays_its_approved_payment_once_by_that_resource() {
    let (b, k, at, gid, rs) = setup().await;
    let t = approved(&b, &k, &at, "250").await;
    let jti = jti(&t);

    // The verifier's redemption: active once, then never again.
    let first = b.introspect(&rs, &t).await;
    assert_eq!(first.body["active"], true, "{}", first.body);
    assert_eq!(b.introspect(&rs, &t).await.body["active"], false);
    // More than approved: refused, and the payment can still be made.
    let s = spend(&b, &rs, &gid, &jti, "250.01", "k0").await;
    assert_eq!(
        (s.status, s.error()),
        (403, "insufficient_scope"),
        "{}",
        s.body
    );
    // The approved payment, by the resource that verified it: once.
    let paid = spend(&b, &rs, &gid, &jti, "250", "k1").await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    let again = spend(&b, &rs, &gid, &jti, "250", "k1").await;
    assert_eq!((again.status, &again.body), (200, &paid.body));
    let s = spend(&b, &rs, &gid, &jti, "250", "k2").await;
    assert_eq!((s.status, s.error()), (400, "invalid_grant"), "{}", s.body);
    assert_eq!(
        s.body["error_description"],
        "this one-time token was already used"
    );
    assert_eq!(b.introspect(&rs, &t).await.body["active"], false);

    // One redemption record, by that resource; one spend.
    let recs = audit_records(&b);
    let redeemed: Vec<&Value> = recs
        .iter()
        .filter(|r| r["event"] == "stepup_redeemed")
        .collect();
    assert_eq!(redeemed.len(), 1, "{redeemed:?}");
    assert_eq!(redeemed[0]["detail"]["by"], rs.0.as_str());
    assert_eq!(recs.iter().filter(|r| r["event"] == "spend").count(), 1);
    let v = b.cli_ok(&["audit", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test]
async fn a_spent_one_time_token_is_not_redeemed_by_verification_again() {
    let (b, k, at, gid, rs) = setup().await;
    let t = approved(&b, &k, &at, "120").await;
    let s = spend(&b, &rs, &gid, &jti(&t), "120", "k1").await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(b.introspect(&rs, &t).await.body["active"], false);
}

#[tokio::test]
async fn concurrent_redemptions_of_one_token_succeed_once() {
    let (b, k, at, _gid, rs) = setup().await;
    let t = approved(&b, &k, &at, "150").await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, rs, t) = (b.http.clone(), b.url.clone(), rs.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(format!("{url}/oauth/introspect"))
                .basic_auth(&rs.0, Some(&rs.1))
                .form(&[("token", t.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
            r.json::<Value>().await.unwrap()["active"] == true
        }));
    }
    let mut active = 0;
    for t in tasks {
        active += usize::from(t.await.unwrap());
    }
    assert_eq!(active, 1);
}
