#!/usr/bin/env python3
"""Check the layer rules that ARCHITECTURE.md states, so that they cannot rot.

Prints each violation as `file:line: rule: detail` and exits 1 if there is any.
Standard library only (Python 3.11+); works from any directory.

    python3 scripts/check-layers.py            # check
    python3 scripts/check-layers.py --write    # also regenerate the graphs in ARCHITECTURE.md

What is read: the Rust sources of core/src, broker/src and the bindings (comments,
string literals and `#[cfg(test)]` modules removed: the rules are about shipped
code), the bindings' Python and JavaScript modules, and the crates' Cargo.toml.
A path is matched by its segments after `use` groups are expanded and `crate::`,
`super::` and `self::` are resolved, so `use std::{fs, io}` counts as `std::fs`.
"""

from __future__ import annotations

import ast
import os
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCH = ROOT / "ARCHITECTURE.md"

# Imports that close a cycle today and are accepted until a change removes
# them: (graph, importer, imported). The cycle check ignores exactly these
# edges; an entry whose import is gone, or no longer closes a cycle, is itself
# reported, so that the list only shrinks. None today: the optional adapters
# take a session or a verifier through the protocols of `_protocols.py`.
ALLOWED_BACK_EDGES: dict[tuple[str, str, str], str] = {}


# Crates that would mean protocol logic (cryptography, encodings, HTTP) in a binding.
BINDING_FORBIDDEN_CRATES = {
    "sha2", "ed25519-dalek", "p256", "base64", "subtle", "getrandom", "aws-lc-rs",
    "hmac", "chacha20poly1305", "argon2", "reqwest", "url", "jsonwebtoken", "zeroize",
}
PY_FORBIDDEN = {"hashlib", "hmac", "base64", "secrets", "cryptography", "jwt", "joserfc",
                "jose", "nacl", "authlib"}
JS_FORBIDDEN = {"crypto", "node:crypto", "jose", "dpop", "jsonwebtoken", "tweetnacl"}


@dataclass
class Rule:
    name: str
    include: list[str]            # glob patterns relative to ROOT
    forbidden: list[str]          # path prefixes (`std::fs`), or `..::X` for X anywhere in a path
    exclude: list[str] = field(default_factory=list)


RULES = [
    Rule("core protocol modules do no I/O and do not use `net`",
         ["core/src/*.rs"],
         ["crate::net", "reqwest", "tokio", "axum", "hyper", "std::fs", "std::net", "std::env",
          "std::process", "std::io", "tracing"],
         exclude=["core/src/lib.rs"]),
    Rule("the core's agent client and resource-server verifier are independent",
         ["core/src/net/client.rs", "core/src/net/client/**/*.rs"],
         ["crate::net::verifier", "crate::net::axum_layer"]),
    Rule("the core's resource-server verifier is independent of the agent client",
         ["core/src/net/verifier.rs", "core/src/net/verifier/**/*.rs"],
         ["crate::net::client", "crate::net::store", "crate::net::discovery"]),
    Rule("core is free of binding frameworks", ["core/src/**/*.rs"], ["pyo3", "napi", "napi_derive"]),
    Rule("broker service layer does not know HTTP, SQL or files",
         ["broker/src/service/**/*.rs"],
         ["axum", "hyper", "rusqlite", "crate::http", "crate::dashboard", "crate::cli",
          "std::fs", "std::net", "tokio::fs", "tokio::net"]),
    Rule("broker store knows neither HTTP nor the flows above it",
         ["broker/src/store/**/*.rs"],
         ["axum", "hyper", "crate::http", "crate::dashboard", "crate::service", "crate::cli"]),
    Rule("pure broker modules (protocol/, model, audit) do no I/O",
         ["broker/src/protocol/**/*.rs", "broker/src/model.rs", "broker/src/audit.rs"],
         ["axum", "rusqlite", "crate::store", "crate::http", "crate::dashboard", "std::fs",
          "std::net", "tokio"]),
    Rule("SQL only in broker/src/store", ["broker/src/**/*.rs"],
         ["rusqlite", "tokio_postgres", "deadpool_postgres"],
         exclude=["broker/src/store/**"]),
    Rule("the store backends are chosen only at the composition root (cli.rs)",
         ["broker/src/**/*.rs"], ["crate::store::sqlite", "crate::store::postgres"],
         exclude=["broker/src/store/**", "broker/src/cli/**"]),
    Rule("real time only through Clock (core/src/clock.rs)",
         ["core/src/**/*.rs", "broker/src/**/*.rs", "bindings-*/src/**/*.rs",
          "examples/*/src/**/*.rs"],
         ["..::SystemTime::now"],
         exclude=["core/src/clock.rs"]),
    Rule("real clock and OS randomness only at the edges (core net, broker cli, bindings)",
         ["core/src/**/*.rs", "broker/src/**/*.rs"],
         ["..::SystemClock", "..::OsRandom", "getrandom"],
         exclude=["core/src/clock.rs", "core/src/lib.rs", "core/src/net/**",
                  "broker/src/cli/**"]),
]

# Files that may opt out of clippy's `disallowed_methods` (the real clock).
DISALLOWED_METHODS_ALLOWED = ["core/src/clock.rs", "broker/examples/bench.rs", "broker/examples/gateway_bench.rs"]


# ---------------------------------------------------------------- Rust text

CHAR_LIT = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'\n])'")
RAW_STR = re.compile(r'b?r(#*)"')
TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
TEST_MOD_FILE = re.compile(r'#\[cfg\(test\)\]\s*(?:#\[path\s*=\s*"([^"]+)"\]\s*)?mod\s+(\w+)\s*;')
USE = re.compile(r"\buse\s+([^;]+);")
PATH = re.compile(r"(?<![\w:.])(?:::)?[A-Za-z_]\w*(?:\s*::\s*[A-Za-z_]\w*)*")


def blank(s: str) -> str:
    return "".join(c if c == "\n" else " " for c in s)


def strip_rust(text: str) -> str:
    """Comments and literal contents replaced by spaces; offsets and lines kept."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := RAW_STR.match(text, i)) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('"' + blank(text[i + 1:j]) + '"')
            i = j + 1
        elif c == "'" and (m := CHAR_LIT.match(text, i)):
            out.append(blank(m.group(0)))
            i = m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(code: str) -> str:
    while m := TEST_MOD.search(code):
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[:m.start()] + blank(code[m.start():j]) + code[j:]
    return code


def expand_use(tree: str) -> list[tuple[list[str], str | None]]:
    """`a::{b, c::{d as e}}` -> [(['a','b'], None), (['a','c','d'], 'e')]."""
    tree = re.sub(r"\s+", " ", re.sub(r"\s*(::|\{|\}|,)\s*", r"\1", tree.strip()))
    tree = tree.removeprefix("::")
    brace = tree.find("{")
    if brace < 0:
        m = re.fullmatch(r"(.*?)(?: as (\w+))?", tree)
        path, alias = (m.group(1), m.group(2)) if m else (tree, None)
        return [([s for s in path.split("::") if s], alias)]
    prefix = [s for s in tree[:brace].split("::") if s]
    inner, items, depth, cur = tree[brace + 1:tree.rfind("}")], [], 0, ""
    for ch in inner + ",":
        if ch == "," and depth == 0:
            if cur:
                items.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    out = []
    for item in items:
        for segs, alias in expand_use(item):
            out.append((prefix + (segs if segs != ["self"] else []), alias))
    return out


@dataclass
class RustFile:
    rel: str
    module: list[str]                   # module path inside its crate
    paths: list[tuple[int, list[str], str | None]]  # (line, absolute segments, alias)


def module_path(src_dir: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src_dir).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def resolve(segs: list[str], module: list[str]) -> list[str]:
    """Make `super::`/`self::` paths absolute (`crate::...`): in `a/b.rs` (module
    a::b) `self` is a::b and `super` is a; `a/mod.rs` is module a."""
    if not segs or segs[0] not in ("super", "self"):
        return segs
    base = list(module)
    rest = list(segs)
    while rest and rest[0] in ("super", "self"):
        if rest.pop(0) == "super" and base:
            base.pop()
    return ["crate", *base, *rest]


def read_rust(src_dir: Path, file: Path) -> RustFile:
    return parse_rust(str(file.relative_to(ROOT)), module_path(src_dir, file),
                      file.read_text(encoding="utf-8"))


def parse_rust(rel: str, module: list[str], text: str) -> RustFile:
    code = drop_test_modules(strip_rust(text))
    line_of = lambda off: code.count("\n", 0, off) + 1  # noqa: E731
    paths: list[tuple[int, list[str], str | None]] = []
    for m in USE.finditer(code):
        for segs, alias in expand_use(m.group(1)):
            paths.append((line_of(m.start()), resolve(segs, module), alias))
    rest = USE.sub(lambda m: blank(m.group(0)), code)
    for m in PATH.finditer(rest):
        segs = [s for s in re.split(r"\s*::\s*", m.group(0).lstrip(":")) if s]
        paths.append((line_of(m.start()), resolve(segs, module), None))
    return RustFile(rel, module, paths)


def rust_files(crate_src: str) -> list[RustFile]:
    """The crate's shipped files: test-only module files (`#[cfg(test)] mod x;`) left out."""
    src = ROOT / crate_src
    files = sorted(p.resolve() for p in src.rglob("*.rs"))
    test_only: set[Path] = set()
    for f in files:
        for m in TEST_MOD_FILE.finditer(f.read_text(encoding="utf-8")):
            own_dir = m.group(1) or f.stem in ("mod", "lib", "main")
            base = f.parent if own_dir else f.with_suffix("")
            test_only.add((base / (m.group(1) or f"{m.group(2)}.rs")).resolve())
    return [read_rust(src, f) for f in files if f not in test_only]


def glob_re(pattern: str) -> re.Pattern[str]:
    """`**/` is any number of folders, `*` any name part (no `/`)."""
    out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*")
    return re.compile(out.replace(r"\*", "[^/]*") + "$")


def matches(rel: str, patterns: list[str]) -> bool:
    return any(glob_re(p).match(rel) for p in patterns)


def hit(segs: list[str], pattern: list[str]) -> bool:
    """`pattern` starts `segs`, or with a leading `..`, occurs anywhere in it."""
    if pattern[0] != "..":
        return segs[:len(pattern)] == pattern
    pattern = pattern[1:]
    return any(segs[i:i + len(pattern)] == pattern for i in range(len(segs)))


# ---------------------------------------------------------------- checks

def check_rules(files: list[RustFile], errors: list[str]) -> None:
    for rule in RULES:
        prefixes = [p.split("::") for p in rule.forbidden]
        # A rule whose files moved away would hold vacuously: each of its
        # patterns must still name at least one file.
        for pattern in rule.include:
            if not any(glob_re(pattern).match(f.rel) for f in files):
                errors.append(f"scripts/check-layers.py:0: {rule.name}: `{pattern}` matches no file")
        for f in files:
            if not matches(f.rel, rule.include) or matches(f.rel, rule.exclude):
                continue
            seen = set()
            for line, segs, _ in f.paths:
                for p in prefixes:
                    if hit(segs, p) and (line, tuple(p)) not in seen:
                        seen.add((line, tuple(p)))
                        what = "::".join(p).removeprefix("..::")
                        errors.append(f"{f.rel}:{line}: {rule.name}: uses `{what}`")


def all_rust_sources() -> list[Path]:
    out = []
    for d, dirs, files in os.walk(ROOT):
        dirs[:] = sorted(x for x in dirs if x not in ("target", "node_modules", ".git", "tests",
                                                      "benches") and not x.startswith("."))
        out += [Path(d) / f for f in sorted(files) if f.endswith(".rs")]
    return out


def check_allow_attr(errors: list[str]) -> None:
    for f in all_rust_sources():
        rel = str(f.relative_to(ROOT))
        if matches(rel, DISALLOWED_METHODS_ALLOWED):
            continue
        code = strip_rust(f.read_text(encoding="utf-8"))
        for m in re.finditer(r"clippy::disallowed_methods", code):
            line = code.count("\n", 0, m.start()) + 1
            errors.append(f"{rel}:{line}: real time only through Clock: opts out of "
                          "clippy's disallowed_methods (allowed only in core/src/clock.rs)")


def facade() -> set[str]:
    """The core's crate-root facade: every name `lib.rs` re-exports or defines."""
    code = strip_rust((ROOT / "core/src/lib.rs").read_text(encoding="utf-8"))
    names = {alias or segs[-1] for m in re.finditer(r"\bpub\s+use\s+([^;]+);", code)
             for segs, alias in expand_use(m.group(1))}
    return names | set(re.findall(r"pub\s+(?:const|fn|struct|enum|type|static)\s+(\w+)", code))


def check_bindings(errors: list[str]) -> None:
    allowed = facade()
    lib = strip_rust((ROOT / "core/src/lib.rs").read_text(encoding="utf-8"))
    core_modules = set(re.findall(r"pub\s+mod\s+(\w+)", lib))
    for binding in ("bindings-python", "bindings-node"):
        for f in rust_files(f"{binding}/src"):
            aliases = {"protonpass_agent"} | {a for _, s, a in f.paths if s == ["protonpass_agent"] and a}
            for line, segs, _ in f.paths:
                if len(segs) < 2 or segs[0] not in aliases:
                    continue
                item = segs[1]
                if item in core_modules:
                    errors.append(f"{f.rel}:{line}: bindings call only the core's facade: reaches "
                                  f"into module `{item}` (protocol logic belongs in the core)")
                elif item not in allowed:
                    errors.append(f"{f.rel}:{line}: bindings call only the core's facade: "
                                  f"`{item}` is not re-exported at the core's crate root")
        cargo = tomllib.loads((ROOT / binding / "Cargo.toml").read_text(encoding="utf-8"))
        for dep in sorted(set(cargo.get("dependencies", {})) & BINDING_FORBIDDEN_CRATES):
            errors.append(f"{binding}/Cargo.toml:1: bindings hold no protocol logic: depends on {dep}")
    pkg = ROOT / "bindings-python/python/protonpass_agent"
    for f in sorted(pkg.glob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            for name in names:
                if name.split(".")[0] in PY_FORBIDDEN:
                    errors.append(f"{f.relative_to(ROOT)}:{node.lineno}: bindings hold no protocol "
                                  f"logic: imports {name}")
    for f in sorted((ROOT / "bindings-node").glob("*.*js")):
        for i, text in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            for m in re.finditer(r"""(?:require\(|from\s+|import\s*\()\s*['"]([^'"]+)['"]""", text):
                if m.group(1) in JS_FORBIDDEN:
                    errors.append(f"{f.relative_to(ROOT)}:{i}: bindings hold no protocol logic: "
                                  f"requires {m.group(1)}")


def check_core_manifest(errors: list[str]) -> None:
    text = (ROOT / "core/Cargo.toml").read_text(encoding="utf-8")
    deps = tomllib.loads(text).get("dependencies", {})
    lines = text.splitlines()
    for name, spec in deps.items():
        line = next((i for i, s in enumerate(lines, 1) if s.startswith(f"{name} ")), 1)
        if name in ("pyo3", "napi", "napi-derive"):
            errors.append(f"core/Cargo.toml:{line}: core is free of binding frameworks: depends on {name}")
        networked = {"reqwest", "tokio", "axum", "hyper", "eventsource-stream", "tracing", "dirs"}
        if name in networked and not (isinstance(spec, dict) and spec.get("optional")):
            errors.append(f"core/Cargo.toml:{line}: core protocol modules do no I/O: {name} "
                          "must be an optional dependency of feature `net`")


# ---------------------------------------------------------------- graphs

Graph = dict[str, dict[str, str]]  # module -> {target: "file:line" of the first use}


def rust_graph(crate_src: str) -> Graph:
    g: Graph = {}
    for f in rust_files(crate_src):
        if not f.module:
            continue
        top = f.module[0]
        g.setdefault(top, {})
        for line, segs, _ in f.paths:
            if len(segs) >= 2 and segs[0] == "crate" and segs[1] != top:
                g[top].setdefault(segs[1], f"{f.rel}:{line}")
    return {k: {t: w for t, w in v.items() if t in g} for k, v in g.items()}


def python_graph() -> Graph:
    pkg = ROOT / "bindings-python/python/protonpass_agent"
    g: Graph = {}
    for f in sorted(pkg.glob("*.py")):
        me = f.stem
        g.setdefault(me, {})
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level == 1:
                    targets = [mod.split(".")[0]] if mod else [a.name for a in node.names]
                elif mod.startswith("protonpass_agent."):
                    targets = [mod.split(".")[1]]
            elif isinstance(node, ast.Import):
                targets = [a.name.split(".")[1] for a in node.names
                           if a.name.startswith("protonpass_agent.")]
            for t in targets:
                if t != me:
                    g[me].setdefault(t, f"{f.relative_to(ROOT)}:{node.lineno}")
    return g


def cycles(g: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g.get(v, {})):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def check_cycles(name: str, g: Graph, errors: list[str]) -> None:
    allowed = {(a, b) for (graph, a, b) in ALLOWED_BACK_EDGES if graph == name}
    full = cycles(g)
    pruned = {a: {b: w for b, w in out.items() if (a, b) not in allowed} for a, out in g.items()}
    for comp in cycles(pruned):
        members = set(comp)
        for a in comp:
            for b, where in sorted(pruned[a].items()):
                if b in members:
                    errors.append(f"{where}: no import cycles ({name}): `{a}` uses `{b}`, "
                                  f"and {' / '.join(comp)} use each other")
    for a, b in sorted(allowed):
        if b not in g.get(a, {}) or not any(a in c and b in c for c in full):
            errors.append(f"scripts/check-layers.py:1: stale allow-list entry: {name} `{a}` -> "
                          f"`{b}` no longer closes a cycle; remove it from ALLOWED_BACK_EDGES")


def crate_graph() -> Graph:
    manifests = {}
    for toml in [ROOT / "Cargo.toml", *ROOT.glob("*/Cargo.toml"), *ROOT.glob("*/*/Cargo.toml"),
                 *ROOT.glob("tests/cross/*/Cargo.toml")]:
        data = tomllib.loads(toml.read_text(encoding="utf-8"))
        if "package" in data:
            manifests[data["package"]["name"]] = data
    g: Graph = {}
    for name, data in sorted(manifests.items()):
        g[name] = {}
        for section, kind in (("dependencies", ""), ("dev-dependencies", "dev")):
            for dep, spec in data.get(section, {}).items():
                if dep in manifests and dep not in g[name]:
                    feats = spec.get("features", []) if isinstance(spec, dict) else []
                    g[name][dep] = ", ".join(filter(None, [kind, " + ".join(feats)]))
    return g


def mermaid(g: Graph, direction: str, labels: bool = False) -> str:
    """A Mermaid flowchart; with `labels`, each edge carries its text (features)."""
    lines = ["```mermaid", f"graph {direction}"]
    node = lambda n: f"{n.replace('-', '_')}[{n}]" if labels else n  # noqa: E731
    for a in sorted(g):
        for b in sorted(g[a]):
            label = f"|{g[a][b]}|" if labels and g[a][b] else ""
            lines.append(f"  {node(a)} -->{label} {node(b)}")
    lines.append("```")
    return "\n".join(lines)


def check_graphs(graphs: dict[str, str], write: bool, errors: list[str]) -> None:
    """The graphs in ARCHITECTURE.md between `<!-- graph:NAME -->` and
    `<!-- /graph:NAME -->` must be what the code says."""
    if not ARCH.exists():
        errors.append("ARCHITECTURE.md:1: the architecture document is missing")
        return
    text = ARCH.read_text(encoding="utf-8")
    for name, body in graphs.items():
        pat = re.compile(rf"(<!-- graph:{name} -->\n)(.*?)(<!-- /graph:{name} -->)", re.S)
        m = pat.search(text)
        if not m:
            errors.append(f"ARCHITECTURE.md:1: no `<!-- graph:{name} -->` block")
            continue
        if m.group(2).strip() != body.strip():
            if write:
                text = text[:m.start(2)] + body + "\n" + text[m.end(2):]
            else:
                line = text.count("\n", 0, m.start()) + 1
                errors.append(f"ARCHITECTURE.md:{line}: the {name} graph no longer matches the "
                              "code; run `python3 scripts/check-layers.py --write` and review")
    if write:
        ARCH.write_text(text, encoding="utf-8")


# No Rust source file of the core, the broker or the bindings is longer than
# this many lines (tests included): past it, a file holds more than one concern.
MAX_LINES = 600

# Files over MAX_LINES, each waiting for its split (none today). An entry whose
# file is gone or back under the limit is itself reported. Add nothing here.
OVERSIZED_ALLOWED: set[str] = set()


def check_file_sizes(errors: list[str]) -> None:
    """No Rust source over MAX_LINES lines, but the allow-listed ones."""
    dirs = ["core/src", "broker/src"] + sorted(
        str(d.relative_to(ROOT)) for d in ROOT.glob("bindings-*/src"))
    seen = set()
    for d in dirs:
        for f in sorted((ROOT / d).rglob("*.rs")):
            rel = f.relative_to(ROOT).as_posix()
            n = len(f.read_text(encoding="utf-8").splitlines())
            if n <= MAX_LINES:
                continue
            seen.add(rel)
            if rel not in OVERSIZED_ALLOWED:
                errors.append(f"{rel}:{MAX_LINES + 1}: files stay under {MAX_LINES} lines: "
                              f"this one has {n}; split it by concern")
    for rel in sorted(OVERSIZED_ALLOWED - seen):
        errors.append(f"scripts/check-layers.py:1: {rel} is no longer over {MAX_LINES} lines "
                      "(or is gone): remove it from OVERSIZED_ALLOWED")


def self_test(errors: list[str]) -> None:
    """The reader must keep seeing what the rules are about (else every rule passes)."""
    text = """use std::{fs::File, io as sio};
// std::net in a comment
const S: &str = "std::env"; const C: char = '"'; fn f<'a>(x: &'a str) { super::b::g(); }
#[cfg(test)]
mod tests { use tokio::net; }
"""
    seen = {"::".join(p) for _, p, _ in parse_rust("t.rs", ["a", "x"], text).paths}
    expect = {"std::fs::File", "std::io", "crate::a::b::g"}
    absent = {"std::net", "std::env", "tokio::net"}
    if not expect <= seen or seen & absent:
        errors.append(f"scripts/check-layers.py:1: self-test: the Rust reader saw {sorted(seen)}")
    if cycles({"a": {"b": ""}, "b": {"a": ""}, "c": {"a": ""}}) != [["a", "b"]]:
        errors.append("scripts/check-layers.py:1: self-test: the cycle finder is broken")


def main() -> int:
    write = "--write" in sys.argv[1:]
    errors: list[str] = []
    self_test(errors)
    core = rust_files("core/src")
    broker = rust_files("broker/src")
    check_rules(core + broker + rust_files("bindings-python/src") + rust_files("bindings-node/src")
                + [f for d in sorted(ROOT.glob("examples/*/src")) for f in rust_files(str(d.relative_to(ROOT)))],
                errors)
    check_allow_attr(errors)
    check_file_sizes(errors)
    check_bindings(errors)
    check_core_manifest(errors)
    core_g, broker_g, py_g = rust_graph("core/src"), rust_graph("broker/src"), python_graph()
    check_cycles("core", core_g, errors)
    check_cycles("broker", broker_g, errors)
    check_cycles("python", py_g, errors)
    check_graphs({"crates": mermaid(crate_graph(), "LR", labels=True),
                  "core": mermaid(core_g, "TD"), "broker": mermaid(broker_g, "TD")}, write, errors)

    def key(e: str) -> tuple[str, int]:
        file, line, _ = e.split(":", 2)
        return (file, int(line) if line.isdigit() else 0)

    errors = sorted(dict.fromkeys(errors), key=key)
    for e in errors:
        print(e)
    sys.stdout.flush()
    if errors:
        print(f"check-layers: {len(errors)} violation(s); the rules are in ARCHITECTURE.md",
              file=sys.stderr)
        return 1
    print("check-layers: the layer rules of ARCHITECTURE.md hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
