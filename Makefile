# wren: `make run` starts the server on embedded defaults, `make test` runs
# every test. Everything a fresh machine needs beyond the Rust toolchain is
# installed by the scripts these targets call.

CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/wren
# The same static build with the PostgreSQL store, for bench's scale-out
# figures, in a target folder of its own so that neither build undoes the
# other's.
STATIC_PG_BIN := target/postgres/$(TARGET)/release/wren
# Every test build: the test-only routes, and the PostgreSQL store (off in
# the default build until it fits the static binary's 8 MiB budget). One
# set everywhere, so tests, tools and lint share one build.
TEST_FEATURES := test-routes,postgres
# Extra arguments for `make run`, e.g. make run ARGS='--port 8080'
ARGS ?=

.PHONY: run test unit lint static static-postgres image image-postgres image-check bench bench-instructions venv venv-api api-check parity sales-model chaos chaos-check fuzz soak soak-check

run: static
	$(STATIC_BIN) $(ARGS)

test: lint unit image-check parity api-check chaos-check soak-check

# Unit tests beside the code and socket-level tests in tests/, with the
# test-only routes compiled in; the PostgreSQL half runs against a
# throwaway server (Debian's package, installed when missing, started by
# scripts/with-postgres.sh); the S3 half runs against a throwaway Garage
# node (built once into ~/.cache/garage, about 20 minutes the first time),
# the ACME half against Pebble (Debian's package, installed when missing;
# each test starts its own), and /docs in headless Chromium with a local
# swagger-ui-dist (both installed when missing by scripts/browser.sh);
# tests/metrics.rs reads /metrics with prometheus_client from the venv.
unit: venv
	scripts/pebble.sh install >/dev/null
	WREN_TEST_DOCS_ASSETS=$$(scripts/browser.sh install) WREN_TEST_BROWSER=required \
		scripts/with-postgres.sh scripts/with-garage.sh $(CARGO) test --features $(TEST_FEATURES)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features $(TEST_FEATURES) -- -D warnings

# A static-pie release binary: runs in a FROM scratch image or on any
# x86_64 Linux host. (The musl target cannot be installed here.)
static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target $(TARGET)
	@if command -v file >/dev/null; then file $(STATIC_BIN); fi
	@ls -l $(STATIC_BIN)

static-postgres:
	CARGO_TARGET_DIR=target/postgres RUSTFLAGS='-C target-feature=+crt-static' \
		$(CARGO) build --release --target $(TARGET) --features postgres
	@ls -l $(STATIC_PG_BIN)

image: static
	scripts/image.sh build

# wren:postgres, the image for several instances sharing PostgreSQL
# (deploy/compose.yaml).
image-postgres: static-postgres
	WREN_IMAGE_BINARY=$(STATIC_PG_BIN) WREN_IMAGE=wren:postgres scripts/image.sh build

# Builds the image, exports it and serves /status from its contents under
# chroot (containers cannot be started on these machines).
image-check: static
	scripts/image.sh check

# wren beside tiny_http, nginx and the seeds' Flask stack, its large-file
# throughput and footprint; writes BENCHMARKS.md and bench/report.svg
# (BENCH_SECONDS, BENCH_ONLY, BENCH_NOTE: see bench/README.md).
bench: static static-postgres
	WREN_PG_BIN=$(STATIC_PG_BIN) bench/run.sh $(STATIC_BIN)

# What metrics and rate limits cost, in instructions per request (callgrind):
# exact where bench's CPU figures are noisy.
bench-instructions: static
	bench/instructions.sh $(STATIC_BIN)

# Python side of model serving (tools/): a virtualenv with the pinned
# packages, rebuilt only when tools/requirements.txt changes.
PYTHON3 ?= python3
VENV := .venv
VENV_PYTHON := $(VENV)/bin/python

venv: $(VENV)/.installed

$(VENV)/.installed: tools/requirements.txt
	$(PYTHON3) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	touch $@

# Regenerates the synthetic data models/sales.csv and the model trained on
# it, models/sales.json.
sales-model: venv
	$(VENV_PYTHON) tools/gen_sales_data.py
	$(VENV_PYTHON) tools/train_sales_model.py

# Every exportable scikit-learn model, served by the debug binary (built as
# `make unit` builds it, so nothing recompiles), must predict what
# scikit-learn predicts.
parity: venv
	$(CARGO) build --features $(TEST_FEATURES)
	$(VENV_PYTHON) tools/check_parity.py target/debug/wren

# The tools of the API conformance check in their own virtualenv.
VENV_API := .venv-api

venv-api: $(VENV_API)/.installed

$(VENV_API)/.installed: tools/api-requirements.txt
	$(PYTHON3) -m venv $(VENV_API)
	$(VENV_API)/bin/python -m pip install --quiet --disable-pip-version-check -r tools/api-requirements.txt
	touch $@

# schemathesis (every operation, with an admin token and with an API key:
# no 5xx, every answer as the document says) and REDbot (every GET route, no
# WARN or BAD note) against the debug binary `make unit` built, with /docs
# served from the local Swagger UI.
api-check: venv-api
	$(CARGO) build --features $(TEST_FEATURES)
	$(VENV_API)/bin/python tools/check_api.py target/debug/wren "$$(scripts/browser.sh install)"

# The crash-proof check (issue 15): clients send events, sign-ups and
# uploads (small and multi-megabyte) to the debug binary `make unit` built,
# which is killed with SIGKILL at random moments and restarted on its data
# folder, CHAOS_ROUNDS times; every acknowledged write must come back whole
# and nothing unacknowledged be half there. Rounds alternate between local
# storage and S3 on a throwaway Garage node, as the S3 tests have it.
CHAOS_ROUNDS ?= 20

chaos: venv
	$(CARGO) build --features $(TEST_FEATURES)
	scripts/with-garage.sh $(VENV_PYTHON) tools/chaos.py target/debug/wren --rounds $(CHAOS_ROUNDS)

# `make test`'s share of it: three rounds (local, S3, local).
chaos-check:
	$(MAKE) --no-print-directory chaos CHAOS_ROUNDS=3

# The soak (issue 16): steady well-behaved load on the debug binary while
# hostile clients drip heads, stall bodies, fill both connection caps, flood
# sign-ups and send garbage (and half TLS handshakes with --tls), for
# SOAK_SECONDS; it fails on any error a well-behaved client sees or on RSS
# or descriptor growth over 10% (see tools/soak.py).
SOAK_SECONDS ?= 600

soak: venv
	$(CARGO) build --features $(TEST_FEATURES)
	$(VENV_PYTHON) tools/soak.py target/debug/wren --seconds $(SOAK_SECONDS)

# `make test`'s share: 30 seconds over plain HTTP, 30 over HTTPS.
soak-check: venv
	$(CARGO) build --features $(TEST_FEATURES)
	$(VENV_PYTHON) tools/soak.py target/debug/wren --seconds 30
	$(VENV_PYTHON) tools/soak.py target/debug/wren --seconds 30 --tls

# Fuzzing (issue 16): each cargo-fuzz target in fuzz/ for FUZZ_SECONDS
# each, one after another (scripts/fuzz.sh installs cargo-fuzz and finds a
# nightly compiler). `make unit` replays the committed seeds and every
# fixed crash through the same invariants (src/fuzz.rs).
FUZZ_SECONDS ?= 60

fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh
