# Agent access tokens: everyday commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Build for the host triple explicitly so that cargo, maturin and napi share
# one target directory (BUILD-NOTES: napi builds into target/<triple>/).
export CARGO_TERM_COLOR ?= never
FUZZ_SECONDS ?= 20

.PHONY: help
help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

.PHONY: demo
demo: ## Run the main job on the embedded defaults
	cargo run --quiet -p protonpass-agent --example demo

.PHONY: test
test: lint test-rust test-interop fuzz-smoke ## Every check and every test suite
	@echo "make test: all suites passed"

.PHONY: lint
lint: ## Formatting and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test-rust
test-rust: ## Rust unit and integration tests
	cargo test --workspace --locked

.PHONY: test-interop
test-interop: ## Cross-implementation tests (Python joserfc/PyJWT, Node jose/dpop)
	bash tests/interop/run.sh

.PHONY: fuzz-smoke
fuzz-smoke: ## Each fuzz target for a short period (FUZZ_SECONDS, default 20)
	bash fuzz/smoke.sh $(FUZZ_SECONDS)

.PHONY: fuzz
fuzz: ## Each fuzz target for 10 minutes
	bash fuzz/smoke.sh 600

.PHONY: bench
bench: ## Benchmarks, figures printed
	cargo bench -p protonpass-agent --bench core
