//! The examples that only the running broker binary can give: its metadata
//! document and the order of the token endpoint's checks.

use super::*;

/// One HTTP/1.1 exchange with the broker: the status line, the headers
/// (lower-case names) and the body.
fn http(addr: &str, head: &str, body: &str) -> (String, BTreeMap<String, String>, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, body.to_owned())
}

/// A token request and the real broker's answer, as text. The nonce changes
/// every minute and with every broker process, so it is shown as a name.
fn token_round_trip(addr: &str, dpop: Option<&str>, form: &str, shown: &str) -> String {
    let mut head = String::from(
        "POST /oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
    );
    if let Some(p) = dpop {
        head.push_str(&format!("\r\nDPoP: {p}"));
    }
    let (status, headers, body) = http(addr, &head, form);
    let mut out = format!(
        "POST /oauth/token HTTP/1.1\nHost: auth.example.com\nContent-Type: application/x-www-form-urlencoded\n{shown}\n{form}\n\n{status}\n"
    );
    for name in ["cache-control", "content-type", "dpop-nonce"] {
        let v = headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"));
        let v = if name == "dpop-nonce" {
            assert_eq!(b64::decode(v).map(|b| b.len()), Some(24), "{v}");
            "<NONCE>"
        } else {
            v.as_str()
        };
        let _ = writeln!(out, "{name}: {v}");
    }
    out.push('\n');
    out.push_str(&body);
    out
}

/// What the real broker binary serves: the metadata document, and the
/// order of the token endpoint's checks (proof, then nonce, then grant).
pub(super) fn from_the_binary(w: &World, out: &mut BTreeMap<&'static str, String>) {
    // Owner-only: the broker refuses a data directory others can read.
    let dir = tempfile::Builder::new()
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .unwrap();
    // One upstream served through the gateway, which the metadata lists.
    let rules = dir.path().join("code-host.toml");
    std::fs::write(
        &rules,
        "name = \"code-host\"\nbase_url = \"https://api.code-host.example\"\n\
         credential = { header = \"Authorization\", value = \"Bearer {secret}\" }\n\
         [[rule]]\nmethods = [\"GET\"]\npath = \"/repos/{owner}/{repo}/**\"\nscope = \"repo:read:{repo}\"\n",
    )
    .unwrap();
    let mut add = Command::new(env!("CARGO_BIN_EXE_protonpass-broker"))
        .args(["--data", dir.path().to_str().unwrap()])
        .args(["upstream", "add", rules.to_str().unwrap(), "--secret-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"example-secret\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let mut child = Running(
        Command::new(env!("CARGO_BIN_EXE_protonpass-broker"))
            .args(["--data", dir.path().to_str().unwrap(), "serve"])
            .args(["--addr", "127.0.0.1:0", "--issuer", ISSUER])
            .env("PROTONPASS_BROKER_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    let addr = v["addr"].as_str().unwrap().to_owned();

    let (status, _, body) = http(
        &addr,
        "GET /.well-known/oauth-authorization-server HTTP/1.1",
        "",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let meta: ServerMetadata = serde_json::from_str(&body).unwrap();
    out.insert("metadata", pretty(&meta));

    // The broker reads the real clock, so these proofs do too; what is shown
    // does not depend on it.
    let now = protonpass_agent::SystemClock.now();
    let form = "grant_type=refresh_token&refresh_token=rt_unknown";
    let proof = |nonce: Option<&str>| {
        let input = ProofInput {
            method: "POST",
            url: &meta.token_endpoint,
            nonce,
            ..Default::default()
        };
        create_proof(&w.agent, &input, now, &w.rng).unwrap()
    };
    let mut t = token_round_trip(&addr, None, form, "");
    t.push_str("\n\n");
    let (_, headers, _) = http(
        &addr,
        "POST /oauth/token HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded",
        form,
    );
    let nonce = headers["dpop-nonce"].clone();
    t.push_str(&token_round_trip(
        &addr,
        Some(&proof(None)),
        form,
        "DPoP: <proof without nonce>\n",
    ));
    t.push_str("\n\n");
    t.push_str(&token_round_trip(
        &addr,
        Some(&proof(Some(&nonce))),
        form,
        "DPoP: <proof with nonce: NONCE>\n",
    ));
    out.insert("token-endpoint-checks", fence("http", &t));
}

/// The broker process, stopped when dropped (also when a check fails).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
