# wsedge: see README.md. Every target is safe to run on a fresh machine.
SHELL := /bin/bash
CARGO ?= cargo
VENV ?= .venv
AUTOBAHN_DIR ?= ../shared/autobahn
AUTOBAHN_RUN ?= $(AUTOBAHN_DIR)/run
CONFORMANCE_PORT ?= 9001
FUZZ_SECS ?= 60

.PHONY: all build release run test test-rust test-python e2e screenshots lint fmt conformance bench fuzz fuzz-smoke clean

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release --bins

## Start the server on 127.0.0.1:8080 from the embedded default config.
run: release
	./target/release/wsedge

## Every test: unit, integration, property, Python interop, the browser
## pages in headless Chromium, lint.
test: lint test-rust test-python e2e

test-rust:
	$(CARGO) test --all-targets

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q 'websockets>=12,<16'

test-python: $(VENV)/bin/python release
	$(VENV)/bin/python tests/interop_python.py ./target/release/wsedge ./target/release/wsedge-client

E2E_DIR := tests/e2e
$(E2E_DIR)/node_modules/playwright-core/package.json: $(E2E_DIR)/package.json $(E2E_DIR)/package-lock.json
	cd $(E2E_DIR) && npm ci --no-audit --no-fund --silent

## The demo chat and the dashboard in headless Chromium (Debian `chromium`;
## .ci/run installs it). Drives the release binary.
e2e: release $(E2E_DIR)/node_modules/playwright-core/package.json
	cd $(E2E_DIR) && WSEDGE_BIN=$(CURDIR)/target/release/wsedge node --test --test-concurrency=1 browser.test.mjs

## Regenerates the README's screenshots of both pages (docs/*.png).
screenshots: release $(E2E_DIR)/node_modules/playwright-core/package.json
	mkdir -p docs
	cd $(E2E_DIR) && SCREENSHOT_DIR=$(CURDIR)/docs WSEDGE_BIN=$(CURDIR)/target/release/wsedge node --test --test-concurrency=1 browser.test.mjs

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## RFC 6455 conformance: Autobahn fuzzingclient against /echo (needs ../shared/autobahn).
conformance: release
	@test -x $(AUTOBAHN_RUN) || { echo "conformance: $(AUTOBAHN_RUN) not found"; exit 2; }
	@[ "$(AUTOBAHN_RUN)" != "$(AUTOBAHN_DIR)/run" ] || $(AUTOBAHN_DIR)/setup
	@set -u; ./target/release/wsedge --config tests/conformance.toml --listen 127.0.0.1:$(CONFORMANCE_PORT) >/tmp/wsedge-conformance.log 2>&1 & pid=$$!; \
	  trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	  for i in $$(seq 50); do (echo > /dev/tcp/127.0.0.1/$(CONFORMANCE_PORT)) 2>/dev/null && break; sleep 0.1; done; \
	  $(AUTOBAHN_RUN) ws://127.0.0.1:$(CONFORMANCE_PORT)/echo

## Criterion benches, the 1M-connection simulation, then wsedge against its peers
## (pinned: server on core 0, load on core 1). BENCH_QUICK=1 for a short pass,
## BENCH_SECS / BENCH_REPS to size it; see scripts/bench.sh and BENCHMARKS.md.
bench:
	CARGO=$(CARGO) ./scripts/bench.sh

## cargo-fuzz targets (see FUZZING.md), one after another, FUZZ_SECS seconds each.
fuzz:
	RUSTC_BOOTSTRAP=1 fuzz/run.sh $(FUZZ_SECS)

## CI: every fuzz target for 10 s (installs cargo-fuzz if missing).
fuzz-smoke:
	RUSTC_BOOTSTRAP=1 fuzz/run.sh 10

clean:
	$(CARGO) clean
