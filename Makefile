# graflow-host: `make demo` sets everything up and runs the examples (with a
# checkpoint, an interruption and a resume); `make test` sets up and runs every
# test. Guests build in their own target directory so host and guest builds
# never invalidate each other.

CARGO        ?= cargo
GUEST_TARGET := $(CURDIR)/target/guests
WASM_OUT     := $(GUEST_TARGET)/wasm32-wasip2/release
BIN          := target/release/graflow-host
EXAMPLES     := hello etl shared-state agent-loop optimizer router flaky best-effort order

.PHONY: all setup guests host test demo bench clean-checkpoints

all: host guests

# The only toolchain piece beyond cargo: the wasm32-wasip2 standard library.
setup:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests: setup
	cd examples && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --target wasm32-wasip2 --release --quiet
	cd tests/guests && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --target wasm32-wasip2 --release --quiet
	@for ex in $(EXAMPLES); do cp $(WASM_OUT)/$$(echo $$ex | tr - _).wasm examples/$$ex/; done
	@cp $(WASM_OUT)/testkit.wasm tests/guests/testkit.wasm
	@echo "guests built: examples/*/*.wasm tests/guests/testkit.wasm"

host:
	$(CARGO) build --release --quiet

test: guests
	$(CARGO) test --release --workspace

demo: guests host
	@bash scripts/demo.sh $(BIN)

bench: guests host
	@bash bench/run.sh

clean-checkpoints:
	rm -rf checkpoints target/demo
