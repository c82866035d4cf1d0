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

## Benchmarks on a local real API server (a table, no pass/fail): the whole migration, adoption
## of N ServiceMappings, and what the server takes from a minimal client. See the Performance section of README.md.
.PHONY: bench
bench: deps testenv
	cargo build --release
	@# `cargo bench` relinks target/release/cp-mod-migrator with the dev-dependencies' features:
	@# measure a copy of the binary exactly as `cargo build --release` ships it.
	cp target/release/cp-mod-migrator target/cp-mod-migrator.bench
	CP_BENCH_TOOL=$(CURDIR)/target/cp-mod-migrator.bench cargo bench --bench performance

## Container images: one static binary (musl), one FROM-scratch image per step (cp-mod-migrator,
## cp-mod-backup, cp-mod-cleaner), built offline with buildah, no Docker daemon. See scripts/images.
.PHONY: images images-deps
images: images-deps
	scripts/images build

## What the images (and their test in `make test`) need: the musl target, musl-gcc, buildah.
images-deps:
	@scripts/images deps
deps: images-deps
