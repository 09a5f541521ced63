#!/usr/bin/env bash
# The demo behind `make demo`: every example, then the order state machine run,
# interrupted with SIGINT and resumed to completion.
set -euo pipefail
BIN=${1:-target/release/graflow-host}
DEMO=target/demo
rm -rf "$DEMO" && mkdir -p "$DEMO"
export GRAFLOW_LOG=${GRAFLOW_LOG:-warn}

step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "$2"; }
show() { step "$1" "$2"; eval "$2"; }

show "one file is a workflow: tasks and flow in app.py, built on the first run only" \
  "$BIN run examples/one-file/app.py --input '{\"day\":\"2026-11-27\"}' --checkpoint-dir $DEMO/cp"
show "the same in JavaScript" \
  "$BIN run examples/one-file/app.js --input '{\"day\":\"2026-11-27\"}' --checkpoint-dir $DEMO/cp"
show "hello: a >> b >> c, with automatic data flow" \
  "$BIN run examples/hello/workflow.toml --input '{\"name\":\"graflow\"}' --checkpoint-dir $DEMO/cp"
show "etl: fetch >> (transform_a | transform_b) >> store" \
  "$BIN run examples/etl/workflow.toml --input '{\"day\":\"2026-11-27\"}' --checkpoint-dir $DEMO/cp"
show "shared-state: tasks share a list and a counter through the channel" \
  "$BIN run examples/shared-state/workflow.toml --input '{\"text\":\"Graflow runs tasks in a sandbox and resumes them later\"}' --checkpoint-dir $DEMO/cp"
show "agent-loop: agent >> tool >> agent, ended by terminate-workflow" \
  "$BIN run examples/agent-loop/workflow.toml --checkpoint-dir $DEMO/cp"
show "optimizer: next_iteration until it converges" \
  "$BIN run examples/optimizer/workflow.toml --input '{\"target\":2}' --checkpoint-dir $DEMO/cp"
show "router: next_task picks a branch" \
  "$BIN run examples/router/workflow.toml --input '{\"kind\":\"refund\",\"amount\":12}' --checkpoint-dir $DEMO/cp"
show "router: goto jumps to the error handler" \
  "$BIN run examples/router/workflow.toml --input '{\"kind\":\"purchase\",\"amount\":-5}' --checkpoint-dir $DEMO/cp"
show "flaky: a retryable error, retried with back-off, succeeds on the third attempt" \
  "GRAFLOW_LOG=warn $BIN run examples/flaky/workflow.toml --checkpoint-dir $DEMO/cp"
show "best-effort: a parallel group with one failing member" \
  "$BIN run examples/best-effort/workflow.toml --checkpoint-dir $DEMO/cp"

HITL=$DEMO/approval
show "approval: unattended, the deploy pipeline pauses for a person (exit code 6)" \
  "$BIN run examples/approval/workflow.toml --input '{\"version\":\"2.1.0\",\"wait_secs\":0}' --checkpoint-dir $HITL --no-prompt || true"
show "approval: the request waiting" "$BIN feedback list $HITL"
ID=$("$BIN" feedback list "$HITL" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
show "approval: answered" "$BIN feedback answer $ID --approve --reason 'tests are green' --dir $HITL"
show "approval: resumed, it deploys" "$BIN resume --latest $HITL --no-prompt"
WEB=$DEMO/approval-web
show "approval through the web page: paused again" \
  "$BIN run examples/approval/workflow.toml --input '{\"version\":\"2.2.0\",\"wait_secs\":0}' --checkpoint-dir $WEB --no-prompt || true"
step "approval: graflow-host serve, and the page's form posted (as a browser does)" "$BIN serve $WEB --listen 127.0.0.1:<free port> &"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" serve "$WEB" --listen "127.0.0.1:$PORT" &
SERVE=$!
sleep 0.5
python3 - "$PORT" <<'PY'
import json, sys, urllib.parse, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
req = json.load(urllib.request.urlopen(base + "/api/requests"))[0]
print(f"page shows: {req['prompt']} (request {req['id']})")
form = urllib.parse.urlencode({"decision": "approve", "reason": "via the page"}).encode()
urllib.request.urlopen(base + "/answer/" + req["id"], data=form)
print("form posted: approved")
PY
kill $SERVE
show "approval: resumed after the web answer" "$BIN resume --latest $WEB --no-prompt"

MIX=$DEMO/mixed
show "mixed: Rust >> (Python | JavaScript) >> Rust, stopped after the Rust task (a checkpoint)" \
  "$BIN run examples/mixed/workflow.toml --input '{\"readings\":[21.5,-1,23.25,22]}' --checkpoint-dir $MIX --max-steps 1 || true"
show "mixed: resumed into the Python and JavaScript tasks" "$BIN resume --latest $MIX"
show "mixed: a second run loads every component from the compiled-module cache" \
  "GRAFLOW_LOG=graflow_host=debug $BIN run examples/mixed/workflow.toml --input '{\"readings\":[1,2]}' --checkpoint-dir $MIX 2>&1 | grep -E 'module|^\\{'"

AG=$DEMO/research
step "research-agent: a scripted OpenAI-compatible model and a knowledge base on loopback" \
  "python3 examples/research-agent/fake_openai.py --key demo-key &"
python3 examples/research-agent/fake_openai.py --key demo-key &
FAKE=$!
trap 'kill $FAKE 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  python3 -c 'import socket; socket.create_connection(("127.0.0.1", 18431), 0.2)' 2>/dev/null && break
  sleep 0.05
done
export DEMO_LLM_KEY=demo-key
show "research-agent: an agent loop (model call, HTTP tool, checkpoint each round), stopped after 2 rounds" \
  "GRAFLOW_LOG=info $BIN run examples/research-agent/workflow.toml --input '{\"question\":\"How does graflow-host keep long agent runs safe?\",\"kb_url\":\"http://127.0.0.1:18432\"}' --checkpoint-dir $AG --max-steps 2 || true"
show "research-agent: resumed from its last round, it answers (the key stayed in the host)" \
  "$BIN resume --latest $AG"
show "research-agent: the requests it made, from the run's journal" \
  "grep -h '\"event\":\"request\"' $AG/*/events.jsonl | python3 -c 'import json,sys; [print(e[\"kind\"], e[\"method\"], e[\"origin\"] + e[\"path\"], e[\"status\"], e.get(\"tokens\", \"\")) for e in map(json.loads, sys.stdin)]'"
kill $FAKE 2>/dev/null || true
unset DEMO_LLM_KEY

CP=$DEMO/orders
step "order: a state machine that checkpoints after every stage; interrupted with SIGINT" \
  "$BIN run examples/order/workflow.toml --input '{\"order_id\":\"A-1001\"}' --checkpoint-dir $CP &  # then kill -INT"
set +e
GRAFLOW_LOG=info "$BIN" run examples/order/workflow.toml --input '{"order_id":"A-1001"}' --checkpoint-dir "$CP" &
pid=$!
for _ in $(seq 1 400); do
  compgen -G "$CP/*/*.meta.json" >/dev/null && break
  sleep 0.01
done
kill -INT "$pid"
wait "$pid"
code=$?
set -e
echo "(exit code $code: 5 means interrupted, resumable)"
show "the checkpoints written so far" "$BIN checkpoints list $CP"
show "resume from the newest checkpoint: completed stages are not run again" \
  "GRAFLOW_LOG=info $BIN resume --latest $CP"
show "the same order, uninterrupted, for comparison" \
  "$BIN run examples/order/workflow.toml --input '{\"order_id\":\"A-1001\"}' --checkpoint-dir $DEMO/cp2"
