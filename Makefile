# Agent access tokens: everyday commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Build for the host triple explicitly so that cargo, maturin and napi share
# one target directory (BUILD-NOTES: napi builds into target/<triple>/).
export CARGO_TERM_COLOR ?= never
FUZZ_SECONDS ?= 20
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# Every suite (Rust, Python, Node, browser) starts this broker binary.
export PROTONPASS_BROKER_BIN ?= $(TARGET_DIR)/debug/protonpass-broker

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-16s %s\n", $$1, $$2}'

.PHONY: demo
demo: setup-packages ## The travel case study: Python API, LangChain and AutoGPT-style agents, approval, refusal, step-up, budget, revocation, audit
	bash examples/travel/run.sh

.PHONY: demo-rust
demo-rust: ## The same journey in Rust alone (axum API, Rust agent)
	cargo build --quiet -p protonpass-broker -p protonpass-travel-demo
	$(TARGET_DIR)/debug/travel-demo

.PHONY: demo-mail
demo-mail: ## An agent reads the owner's mail through the gateway from an OAuth-protected API; refused to send; cut off on disconnect
	cargo build --quiet -p protonpass-broker -p protonpass-mail-demo
	$(TARGET_DIR)/debug/mail-demo

.PHONY: setup-packages
setup-packages: ## Build the broker and install the Python and Node packages (what the demo needs)
	bash scripts/setup-tools.sh demo
	cargo build --locked -p protonpass-broker
	PROTONPASS_PY_INSTALL_ONLY=1 bash bindings-python/run-tests.sh
	cd bindings-node && PROTONPASS_NODE_PROFILE=debug npm ci --no-audit --no-fund

.PHONY: demo-core
demo-core: ## The protocol core alone: key, token, proof, verification, refusals
	cargo run --quiet -p protonpass-agent --example demo

SUITES := check-repo check-layers lint deny test-rust test-postgres test-interop test-thirdparty test-python test-node test-cross test-mcp test-browser fuzz-smoke

.PHONY: test
test: ## Every check and every test suite (installs missing tools first), each timed
	bash scripts/setup-tools.sh
	bash scripts/run-suites.sh $(SUITES)

.PHONY: setup
setup: ## Install what the test suites need (cargo-fuzz, Node.js, Chromium), or say the command to run
	bash scripts/setup-tools.sh

.PHONY: check-repo
check-repo: ## No path outside the repository; one version, licence and repository URL everywhere; README code from tested files
	python3 scripts/check-repo.py
	python3 scripts/check-snippets.py

.PHONY: lint
lint: ## Formatting and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: deny
deny: ## Supply chain: cargo-deny on licences, bans and sources (deny.toml), and advisories when the RustSec database can be fetched
	bash scripts/deny.sh

.PHONY: check-layers
check-layers: ## The layer rules and dependency graphs of ARCHITECTURE.md hold
	python3 scripts/check-layers.py

.PHONY: test-rust
test-rust: ## Rust unit, integration and end-to-end tests, and the demo (cargo builds the broker for them)
	cargo test --workspace --locked

.PHONY: test-postgres
test-postgres: ## The broker's end-to-end suite and its store tests (the conformance suite, the writer's batches) against PostgreSQL (a throwaway cluster: scripts/pg-cluster.sh), with two replicas behind nginx
	bash scripts/setup-tools.sh postgres
	PG_CLUSTER_STATE=$(CURDIR)/target/pg-cluster-test bash scripts/pg-cluster.sh stop
	url="$$(PG_CLUSTER_STATE=$(CURDIR)/target/pg-cluster-test bash scripts/pg-cluster.sh start)" && \
	trap 'PG_CLUSTER_STATE=$(CURDIR)/target/pg-cluster-test bash scripts/pg-cluster.sh stop' EXIT && \
	PROTONPASS_REQUIRE_TEST_STORE=1 PROTONPASS_TEST_STORE="$$url" cargo test -p protonpass-broker --test e2e --locked && \
	PROTONPASS_REQUIRE_TEST_STORE=1 PROTONPASS_TEST_STORE="$$url" cargo test -p protonpass-broker --lib --locked store::

.PHONY: test-interop
test-interop: ## Cross-implementation tests (Python joserfc/PyJWT, Node jose/dpop)
	bash tests/interop/run.sh

.PHONY: test-thirdparty
test-thirdparty: ## A third-party OAuth client (authlib + joserfc) through device grant, DPoP, refresh, revocation
	sh broker/tests/thirdparty/run.sh

.PHONY: test-python
test-python: ## The Python package: pip install builds the wheel; ruff, mypy, stubtest, sdist, pytest
	bash bindings-python/run-tests.sh

.PHONY: test-node
test-node: ## The Node package: npm install builds the addon; node --test, tsc, npm pack
	bash bindings-node/run-tests.sh

.PHONY: test-cross
test-cross: ## Cross-language: SDK tokens across the Python, Node and Rust verifiers; the travel demo; the AutoGPT plugin; agents through the gateway
	bash tests/cross/run.sh
	bash examples/travel/run.sh
	bash examples/gateway/run.sh

.PHONY: test-mcp
test-mcp: ## MCP: the example MCP servers (Python mcp 1.x and 2.x, Node SDK) protected by the broker's tokens; agents through the SDKs and LangChain adapters
	bash tests/mcp/run.sh

.PHONY: test-browser
test-browser: ## The dashboard in headless Chromium (Playwright)
	bash broker/tests/browser/run.sh

.PHONY: fuzz-smoke
fuzz-smoke: ## Each fuzz target for a short period (FUZZ_SECONDS, default 20)
	bash fuzz/smoke.sh $(FUZZ_SECONDS)

.PHONY: fuzz
fuzz: ## Each fuzz target for 10 minutes
	bash fuzz/smoke.sh 600

.PHONY: bench
bench: ## Benchmarks, figures printed
	cargo bench -p protonpass-agent --bench core
	cargo build --release --locked -p protonpass-broker
	PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker cargo bench -p protonpass-e2e --bench client
	PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker cargo bench -p protonpass-e2e --bench load
	PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker cargo bench -p protonpass-e2e --bench spend
	PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker cargo bench -p protonpass-e2e --bench revocation_memory
	bash bindings-python/run-bench.sh
	cd bindings-node && npm run bench
# (after the Node bench: it builds the release addon that the Node MCP bench runs)
	MATURIN_PEP517_ARGS="--profile release" PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker bash tests/mcp/run.sh bench
	bash broker/bench/run.sh
	bash broker/bench/gateway.sh
	PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker PROTONPASS_AUDIT_RECORDS=1000000 cargo test --release --locked -p protonpass-broker --test e2e the_activity_page_with_a_million_records -- --nocapture
	bash scripts/setup-tools.sh postgres
	url="$$(PG_CLUSTER_STATE=$(TARGET_DIR)/bench-pg-revocation bash scripts/pg-cluster.sh start)" && \
	trap 'PG_CLUSTER_STATE=$(TARGET_DIR)/bench-pg-revocation bash scripts/pg-cluster.sh stop' EXIT && \
	PROTONPASS_REQUIRE_TEST_STORE=1 PROTONPASS_TEST_STORE="$$url" PROTONPASS_BROKER_BIN=$(TARGET_DIR)/release/protonpass-broker cargo test --release --locked -p protonpass-broker --test e2e a_revocation_through_one_replica_reaches_another_replicas_feed_promptly -- --nocapture
