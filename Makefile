# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo demo-stop test lint deps testenv

DEMO_DIR ?= $(CURDIR)/.demo

## Run the migration on a local cluster and show the state before and after.
demo: deps
	DEMO_DIR=$(DEMO_DIR) scripts/demo.sh

demo-stop:
	testenv/cluster stop $(DEMO_DIR)

## Everything CI checks: formatting, lints, unit and integration tests on a real API server.
test: deps lint testenv
	cargo test --all-targets

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	cd testenv && test -z "$$(gofmt -l .)" && go vet ./...

## The test API server (built once, then cached outside the repository).
testenv:
	testenv/cluster build >/dev/null

## Tools the project needs beyond a stock machine of its kind (Rust and Go come with it).
deps:
	@command -v cargo >/dev/null || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
	@command -v go >/dev/null || { echo "Go is required to build the test API server" >&2; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
