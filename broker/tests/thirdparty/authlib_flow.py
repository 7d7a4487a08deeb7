"""Drive the broker with third-party libraries only: authlib (OAuth 2.0 client)
for the device grant, refresh and revocation; joserfc for the DPoP proofs and
for verifying the access token against the broker's JWKS.

Usage: python authlib_flow.py PATH_TO_protonpass-broker
Exits non-zero on the first failed check.
"""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import warnings

os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # loopback HTTP only

import requests  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.integrations.base_client.errors import OAuthError  # noqa: E402
from joserfc import jwt  # noqa: E402
from joserfc.jwk import KeySet, OKPKey  # noqa: E402

DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
API = "https://api.example"


def check(cond, what):
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


class Dpop:
    """DPoP proofs (RFC 9449) made with joserfc, with the server's nonce."""

    def __init__(self):
        self.key = OKPKey.generate_key("Ed25519")
        self.nonce = None

    def proof(self, url, method="POST"):
        # RFC 9864's name for Ed25519, as current libraries send it.
        header = {"typ": "dpop+jwt", "alg": "Ed25519", "jwk": self.key.as_dict(private=False)}
        claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url, "iat": int(time.time())}
        if self.nonce:
            claims["nonce"] = self.nonce
        return jwt.encode(header, claims, self.key, algorithms=["Ed25519"])

    def capture(self, resp, *args, **kwargs):
        if "DPoP-Nonce" in resp.headers:
            self.nonce = resp.headers["DPoP-Nonce"]
        return resp


def with_nonce(dpop, url, call):
    """Run an authlib call with a proof, retrying once when the server asks for a nonce."""
    for _ in range(2):
        try:
            return call({"DPoP": dpop.proof(url)})
        except OAuthError as e:
            if e.error != "use_dpop_nonce":
                raise
    raise SystemExit("FAILED: nonce round did not settle")


def main(binary):
    data = tempfile.mkdtemp()
    env = dict(os.environ, PROTONPASS_BROKER_DEVICE_INTERVAL="0")
    server = subprocess.Popen(
        [binary, "--data", data, "serve", "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
    )
    try:
        issuer = json.loads(server.stdout.readline())["issuer"]
        meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server").json()
        check(DEVICE in meta["grant_types_supported"], "metadata lists the device grant")
        check("EdDSA" in meta["dpop_signing_alg_values_supported"], "metadata lists EdDSA proofs")

        dpop = Dpop()
        session = OAuth2Session(client_id="authlib-agent", token_endpoint_auth_method="none")
        session.hooks["response"].append(dpop.capture)

        # RFC 8628: device authorization (plain form POST; authlib has no helper for it).
        dev = session.post(meta["device_authorization_endpoint"], withhold_token=True, data={
            "client_id": "authlib-agent", "scope": "calendar:read calendar:write", "resource": API,
        }).json()
        check(len(dev["user_code"]) == 9, "device authorization answered a user code")

        token_url = meta["token_endpoint"]
        try:
            with_nonce(dpop, token_url, lambda h: session.fetch_token(
                token_url, grant_type=DEVICE, device_code=dev["device_code"], headers=h))
            check(False, "poll before approval is pending")
        except OAuthError as e:
            check(e.error == "authorization_pending", "poll before approval is pending")

        subprocess.run([binary, "--data", data, "approve", dev["user_code"].lower(), "--scope", "calendar:read"],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        tok = with_nonce(dpop, token_url, lambda h: session.fetch_token(
            token_url, grant_type=DEVICE, device_code=dev["device_code"], headers=h))
        check(tok["token_type"] == "DPoP", "token_type is DPoP")
        check(tok["scope"] == "calendar:read", "the owner's narrowing holds")

        jwks = KeySet.import_key_set(requests.get(meta["jwks_uri"]).json())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tokens are signed under the name EdDSA (RFC 9068 practice)
            at = jwt.decode(tok["access_token"], jwks, algorithms=["EdDSA"])
        check(at.header["typ"] == "at+jwt", "access token is an RFC 9068 JWT")
        check(at.claims["cnf"]["jkt"] == dpop.key.thumbprint(), "access token is bound to the proof key")
        check(at.claims["aud"] == API and at.claims["iss"] == issuer, "iss and aud")

        # Refresh (rotates).
        new = with_nonce(dpop, token_url, lambda h: session.refresh_token(
            token_url, refresh_token=tok["refresh_token"], headers=h))
        check(new["refresh_token"] != tok["refresh_token"], "refresh rotates the refresh token")

        # RFC 7009 revocation by the public client, then the feed shows the grant.
        resp = session.revoke_token(meta["revocation_endpoint"], new["refresh_token"],
                                    token_type_hint="refresh_token")
        check(resp.status_code == 200, "revocation answers 200")
        feed = requests.get(f"{issuer}/revocations?after=0").json()["revocations"]
        check(any(e.get("gid") == at.claims["gid"] for e in feed), "the revoked grant is in the feed")
        try:
            with_nonce(dpop, token_url, lambda h: session.refresh_token(
                token_url, refresh_token=new["refresh_token"], headers=h))
            check(False, "a revoked grant cannot refresh")
        except OAuthError as e:
            check(e.error == "invalid_grant", "a revoked grant cannot refresh")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/debug/protonpass-broker")
