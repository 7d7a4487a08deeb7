#!/usr/bin/env bash
# The package as it travels: `npm pack`, then install the tarball into an
# unrelated project outside the repository (the install builds the addon from
# the packed sources), and install the folder itself from another project.
# Each install is used from CommonJS and ESM.
#
#   bash bindings-node/scripts/pack-test.sh
# CARGO_TARGET_DIR defaults to the workspace's target/ so that the build
# reuses compiled dependencies; PROTONPASS_NODE_PROFILE defaults to debug.
set -euo pipefail
pkg="$(cd "$(dirname "$0")/.." && pwd)"
repo="$(cd "$pkg/.." && pwd)"
export CARGO_BUILD_TARGET="${CARGO_BUILD_TARGET:-$(rustc -vV | sed -n 's/^host: //p')}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
export PROTONPASS_NODE_PROFILE="${PROTONPASS_NODE_PROFILE:-debug}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

smoke() {
  local dir="$1"
  (cd "$dir" && node -e '
    const p = require("protonpass-agent");
    const v = new p.Verifier({ issuer: "http://127.0.0.1:9", audience: "https://api.example" });
    p.authenticateWithProton({ scope: ["a:b"], audience: "https://api.example", store: "memory", broker: "http://127.0.0.1:9" })
      .then(() => { throw new Error("expected broker_unavailable") }, (e) => {
        if (e.code !== "broker_unavailable") throw e;
        console.log("cjs ok", p.version(), typeof v.check, require.resolve("protonpass-agent"));
      });')
  (cd "$dir" && node --input-type=module -e '
    import { version, Session, ProtonPassError } from "protonpass-agent";
    import { createProtonPassTool } from "protonpass-agent/langchain";
    import { protect, requireScope } from "protonpass-agent/mcp";
    if (typeof Session.prototype.fetch !== "function" || typeof createProtonPassTool !== "function") throw new Error("missing exports");
    if (typeof protect !== "function" || typeof requireScope !== "function") throw new Error("missing protonpass-agent/mcp");
    console.log("esm ok", version(), ProtonPassError.name);')
}

# 1. The tarball, into a project that knows nothing of the repository.
(cd "$pkg" && npm pack --pack-destination "$tmp" --silent >/dev/null)
tarball="$(ls "$tmp"/protonpass-agent-*.tgz)"
tar tzf "$tarball" >"$tmp/files.txt"
echo "packed $(basename "$tarball"): $(wc -l <"$tmp/files.txt") files"
grep -qx 'package/standalone/core/src/lib.rs' "$tmp/files.txt"
grep -qx 'package/standalone/Cargo.toml' "$tmp/files.txt"
if grep -q '\.node$' "$tmp/files.txt"; then echo "the tarball carries a built addon" >&2; exit 1; fi
mkdir "$tmp/app" && cd "$tmp/app"
npm init -y >/dev/null
npm pkg set allowScripts.protonpass-agent=true --json
nice -n 10 npm install --no-audit --no-fund "$tarball"
smoke "$tmp/app"

# 2. The folder, from another project (npm links it).
mkdir "$tmp/app2" && cd "$tmp/app2"
npm init -y >/dev/null
nice -n 10 npm install --no-audit --no-fund "$pkg"
smoke "$tmp/app2"
echo "pack-test: tarball and folder installs work"
