# The two commands a newcomer needs: `make demo` and `make test`.
.PHONY: demo demo-stop test lint toolchain deps testenv operator-deps

DEMO_DIR ?= $(CURDIR)/.demo

## Run the migration on a local cluster and show the state before and after. It needs Rust and
## Go alone (Go builds the local API server and kubectl): nothing of the images' tools.
demo: toolchain
	DEMO_DIR=$(DEMO_DIR) scripts/demo.sh

demo-stop:
	testenv/cluster stop $(DEMO_DIR)

## Everything CI checks: formatting, lints, unit and integration tests on a real API server.
test: deps lint testenv
	cargo test --all-targets --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	scripts/module-cycles
	cd testenv && test -z "$$(gofmt -l .)" && go vet ./...

## The test API server, the controllers and the module's real operator that some tests run
## beside it (each built once, then cached outside the repository).
testenv: operator-deps
	testenv/cluster build >/dev/null
	testenv/cluster build-controllers >/dev/null
	testenv/cluster build-operator >/dev/null

## Rust and Go: they come with a stock machine of its kind; checked, not installed.
toolchain:
	@command -v cargo >/dev/null || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
	@command -v go >/dev/null || { echo "Go is required to build the test API server" >&2; exit 1; }

## What `make test` needs beyond the toolchain, installed when missing: clippy and rustfmt (lint),
## and what the image test builds and runs the images with.
deps: toolchain images-deps images-runtime-deps operator-deps
	@rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt

## What building the module's operator needs (its source is Java 17 built with Maven): Debian's
## OpenJDK 17 and Maven, installed when missing.
operator-deps:
	@command -v javac >/dev/null && command -v jar >/dev/null && command -v mvn >/dev/null || { \
	  apt-cache show openjdk-17-jdk-headless maven >/dev/null 2>&1 || apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven; }

## Benchmarks on a local real API server (a table, no pass/fail): the whole migration, adoption
## of N ServiceMappings, and what the server takes from a minimal client. See docs/performance.md.
.PHONY: bench
bench: toolchain testenv
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

## What building the images needs: the musl target, musl-gcc, buildah.
images-deps:
	@scripts/images deps

## What their test in `make test` runs them with, as a kubelet would: podman and runc.
.PHONY: images-runtime-deps
images-runtime-deps:
	@scripts/images runtime-deps
