//! The audit store refuses writes; the rest of the database does not: the
//! broker issues and revokes nothing, then recovers without a restart.

use super::*;

/// Makes every audit insert fail, from outside the broker process. `ABORT`
/// fails the statement only; `ROLLBACK` also rolls back the whole database
/// transaction, as SQLite does on a full disk or an I/O error, so the writer's
/// batch is lost and must be reported as such.
fn refuse_audit(how: &str) -> String {
    format!(
        "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit \
         BEGIN SELECT RAISE({how}, 'audit store unwritable'); END;"
    )
}

fn unavailable(r: &protonpass_e2e::Reply, what: &str) {
    assert_eq!(
        (r.status, r.error()),
        (503, "temporarily_unavailable"),
        "{what}: {}",
        r.body
    );
    assert!(r.body.get("access_token").is_none(), "{what}");
}

#[tokio::test]
async fn nothing_is_issued_or_revoked_while_the_audit_store_refuses_writes() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    audit_refusal(&refuse_audit("ABORT")).await;
}

#[tokio::test]
async fn nothing_is_issued_or_revoked_when_an_audit_failure_rolls_back_the_transaction() {
    if protonpass_e2e::on_postgres() {
        return; // looks into SQLite's files or the data directory
    }
    audit_refusal(&refuse_audit("ROLLBACK")).await;
}

/// Every flow that issues or revokes answers 503 and changes nothing while
/// `trigger` refuses audit records; once it is dropped, the same requests
/// succeed without a restart.
async fn audit_refusal(trigger: &str) {
    let b = Broker::start(&[]);
    let rs = b.resource(API, None);
    let agent = key();
    let r = b
        .enroll(&agent, "bot", "calendar:read calendar:write", &[])
        .await;
    let (at, rt) = (r.s("access_token"), r.s("refresh_token"));
    // Two tokens to revoke: one by the agent (RFC 7009), one by the owner (CLI).
    let x1 = b.token(&agent, &exchange_params(&at)).await;
    let x2 = b.token(&agent, &exchange_params(&at)).await;
    assert_eq!((x1.status, x2.status), (200, 200));
    let (x1, x2) = (x1.s("access_token"), x2.s("access_token"));
    let jti2 = jti_of(&x2);
    // An enrollment code not redeemed yet.
    let g = b.create_grant("bot2", "calendar:read", &[]);
    let code = g["enrollment_code"].as_str().unwrap().to_owned();
    let enroll = [
        ("grant_type", PRE_AUTHORIZED_CODE),
        ("pre-authorized_code", code.as_str()),
    ];
    // A device request the owner approved and the agent has not collected.
    let d = b
        .device_authorization("dev-bot", "calendar:read", API)
        .await;
    assert_eq!(d.status, 200, "{}", d.body);
    b.cli_ok(&["approve", &d.s("user_code")]);
    let dc = d.s("device_code");
    let poll = [
        ("grant_type", DEVICE),
        ("device_code", dc.as_str()),
        ("client_id", "dev-bot"),
    ];
    let (enrollee, device_agent) = (key(), key());
    let feed_before = b.whole_feed().await.len();
    let records_before = audit_ok(&b);

    let db = rusqlite::Connection::open(b.data.join("broker.db")).unwrap();
    db.execute_batch(trigger).unwrap();

    unavailable(&b.token(&enrollee, &enroll).await, "enrollment");
    unavailable(&b.refresh(&agent, &rt).await, "refresh");
    unavailable(&b.token(&agent, &exchange_params(&at)).await, "exchange");
    unavailable(&b.token(&device_agent, &poll).await, "device poll");
    let revoked = b.revoke_token(&x1, "bot").await;
    unavailable(&revoked, "RFC 7009 revocation");
    let (status, v) = b.cli(&["revoke", &jti2]);
    assert_ne!(status, 0, "CLI revoke: {v}");
    assert_eq!(v["error"], "temporarily_unavailable", "{v}");
    // A request refused on its merits is still answered as such (its
    // rejection record is best-effort, not a condition of the answer).
    let wrong = b.redeem(&enrollee, "ec_unknown").await;
    assert_eq!((wrong.status, wrong.error()), (400, "invalid_grant"));

    // Nothing was issued or revoked: the code is unspent, the refresh token
    // not rotated, both tokens still active, the feed and the log unchanged.
    let grants = b.cli_ok(&["grant", "list"]);
    let pending = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["grant_id"] == g["grant_id"])
        .unwrap();
    assert_eq!(pending["status"], "enrolling");
    for t in [&rt, &x1, &x2] {
        assert_eq!(b.introspect(&rs, t).await.body["active"], true);
    }
    assert_eq!(b.whole_feed().await.len(), feed_before);
    assert_eq!(audit_ok(&b), records_before);

    // The audit store accepts writes again: the same requests succeed, with
    // no restart.
    db.execute_batch("DROP TRIGGER audit_refuses").unwrap();
    let e = b.token(&enrollee, &enroll).await;
    assert_eq!(e.status, 200, "enrollment: {}", e.body);
    let r2 = b.refresh(&agent, &rt).await;
    assert_eq!(r2.status, 200, "refresh: {}", r2.body);
    assert_eq!(b.introspect(&rs, &rt).await.body["active"], false);
    let x3 = b.token(&agent, &exchange_params(&at)).await;
    assert_eq!(x3.status, 200, "exchange: {}", x3.body);
    let dg = b.token(&device_agent, &poll).await;
    assert_eq!(dg.status, 200, "device poll: {}", dg.body);
    let revoked = b.revoke_token(&x1, "bot").await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    b.cli_ok(&["revoke", &jti2]);
    for t in [&x1, &x2] {
        assert_eq!(b.introspect(&rs, t).await.body["active"], false);
    }
    let feed: Vec<String> = b
        .whole_feed()
        .await
        .iter()
        .filter_map(|e| e["jti"].as_str().map(str::to_owned))
        .collect();
    assert!(feed.contains(&jti_of(&x1)) && feed.contains(&jti2));
    let records = audit_ok(&b);
    assert!(
        records >= records_before + 6,
        "{records_before} -> {records}"
    );
    let log = audit_records(&b);
    for (event, jti) in [
        ("enroll", jti_of(&e.s("access_token"))),
        ("refresh", jti_of(&r2.s("access_token"))),
        ("exchange", jti_of(&x3.s("access_token"))),
        ("device_grant", jti_of(&dg.s("access_token"))),
        ("revoke", jti_of(&x1)),
        ("revoke", jti2.clone()),
    ] {
        assert!(
            log.iter()
                .any(|r| r["event"] == event && r["detail"]["jti"] == jti.as_str()),
            "no {event} record for {jti}"
        );
    }
}
