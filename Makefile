# wren: `make run` starts the server on embedded defaults, `make test` runs
# every test. Everything a fresh machine needs beyond the Rust toolchain is
# installed by the scripts these targets call.

CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
STATIC_BIN := target/$(TARGET)/release/wren
# Extra arguments for `make run`, e.g. make run ARGS='--port 8080'
ARGS ?=

.PHONY: run test unit lint static image image-check bench

run: static
	$(STATIC_BIN) $(ARGS)

test: lint unit image-check

# Unit tests beside the code and socket-level tests in tests/, with the
# test-only routes compiled in.
unit:
	$(CARGO) test --features test-routes

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --features test-routes -- -D warnings

# A static-pie release binary: runs in a FROM scratch image or on any
# x86_64 Linux host. (The musl target cannot be installed here.)
static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release --target $(TARGET)
	@if command -v file >/dev/null; then file $(STATIC_BIN); fi
	@ls -l $(STATIC_BIN)

image: static
	scripts/image.sh build

# Builds the image, exports it and serves /status from its contents under
# chroot (containers cannot be started on these machines).
image-check: static
	scripts/image.sh check

bench: static
	bench/run.sh $(STATIC_BIN)
