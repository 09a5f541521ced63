# graflow-host: `make demo` sets everything up and runs the examples (with a
# checkpoint, an interruption and a resume); `make test` sets up and runs every
# test. Guests build in their own target directory so host and guest builds
# never invalidate each other.

CARGO        ?= cargo
GUEST_TARGET := $(CURDIR)/target/guests
WASM_OUT     := $(GUEST_TARGET)/wasm32-wasip2/release
BIN          := target/release/graflow-host
EXAMPLES     := hello etl shared-state agent-loop optimizer router flaky best-effort order approval

.PHONY: all setup guests rust-guests py-js-guests task host test demo bench clean-checkpoints

all: host guests

# The only toolchain piece beyond cargo: the wasm32-wasip2 standard library.
setup:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

guests: rust-guests py-js-guests

rust-guests: setup
	cd examples && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --target wasm32-wasip2 --release --quiet
	cd tests/guests && CARGO_TARGET_DIR=$(GUEST_TARGET) $(CARGO) build --target wasm32-wasip2 --release --quiet
	@for ex in $(EXAMPLES) mixed; do cp $(WASM_OUT)/$$(echo $$ex | tr - _).wasm examples/$$ex/; done
	@cp $(WASM_OUT)/testkit.wasm tests/guests/testkit.wasm
	@cp $(WASM_OUT)/parity.wasm tests/guests/parity_rust.wasm
	@cp $(WASM_OUT)/bench.wasm tests/guests/bench.wasm
	@for g in declares declares_bad declares_trap declares_huge legacy; do cp $(WASM_OUT)/$$g.wasm tests/guests/$$g.wasm; done
	@echo "rust guests built: examples/*/*.wasm tests/guests/*.wasm"

# Python and JavaScript components (toolchains installed on first use into
# target/toolchains). Rebuilt only when a source or the SDK changed.
PY_JS := examples/mixed/stats.wasm examples/mixed/format.wasm examples/research-agent/agent.wasm tests/guests/parity_py.wasm tests/guests/parity_js.wasm
py-js-guests: $(PY_JS)

%.wasm: %.py guest-sdk/python/graflow.py guest-sdk/python/requirements.txt wit/graflow.wit
	@bash scripts/build-task.sh $< $@

%.wasm: %.js guest-sdk/js/graflow.js guest-sdk/js/package-lock.json wit/graflow.wit
	@bash scripts/build-task.sh $< $@

tests/guests/parity_py.wasm: tests/guests/parity.py guest-sdk/python/graflow.py guest-sdk/python/requirements.txt wit/graflow.wit
	@bash scripts/build-task.sh $< $@

tests/guests/parity_js.wasm: tests/guests/parity.js guest-sdk/js/graflow.js guest-sdk/js/package-lock.json wit/graflow.wit
	@bash scripts/build-task.sh $< $@

# Build one task module (a thin wrapper over `graflow-host build`, which works
# from any folder): make task SRC=app.py OUT=app.wasm
task: host
	@test -n "$(SRC)" -a -n "$(OUT)" || { echo "usage: make task SRC=<app.py|app.js|crate/> OUT=<out.wasm>"; exit 2; }
	@$(BIN) build "$(abspath $(SRC))" -o "$(abspath $(OUT))"

host:
	$(CARGO) build --release

# libtest hides the stderr of passing tests, so a test that skips (a missing
# redis-server, chromium or `script`) also appends a line to SKIP_LOG
# (tests/e2e/support.rs, `skipped`): printed after the run. The exit status is
# cargo test's.
SKIP_LOG := $(CURDIR)/target/skipped-tests.txt
test: guests
	@mkdir -p target && rm -f "$(SKIP_LOG)"
	@echo "$(CARGO) test --release --workspace"
	@status=0; GRAFLOW_SKIP_LOG="$(SKIP_LOG)" $(CARGO) test --release --workspace || status=$$?; \
	if [ -s "$(SKIP_LOG)" ]; then cat "$(SKIP_LOG)"; else echo "no test skipped"; fi; \
	exit $$status

demo: guests host
	@bash scripts/demo.sh $(BIN)

bench: guests host
	@bash bench/run.sh

clean-checkpoints:
	rm -rf checkpoints target/demo
