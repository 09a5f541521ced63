#!/usr/bin/env bash
# `make bench`: graflow-host's workloads and Graflow 0.2.0's, in the same run,
# side by side in docs/benchmarks.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
OUT=target/bench
mkdir -p "$OUT"
if [ ! -x bench/.venv/bin/python ] || ! bench/.venv/bin/python -c 'import graflow' 2>/dev/null; then
  echo "installing graflow==0.2.0 into bench/.venv" >&2
  python3 -m venv bench/.venv
  bench/.venv/bin/pip install --quiet --disable-pip-version-check graflow==0.2.0 "redis==5.2.1"
fi
# One redis-server on a free loopback port for the distributed rows of both.
if ! bench/.venv/bin/python -c 'import redis' 2>/dev/null; then
  bench/.venv/bin/pip install --quiet --disable-pip-version-check "redis==5.2.1"
fi
REDIS_PID=
if command -v redis-server >/dev/null; then
  export BENCH_REDIS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  redis-server --port "$BENCH_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  REDIS_PID=$!
  trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
  sleep 0.5
else
  echo "redis-server is not installed: the distributed rows are skipped (apt-get install redis-server)" >&2
fi
# A local S3-compatible server (moto_server) for the bucket rows.
S3_PID=
if command -v moto_server >/dev/null; then
  export BENCH_S3_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$BENCH_S3_PORT" >/dev/null 2>&1 &
  S3_PID=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $BENCH_S3_PORT), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
else
  echo "moto_server is not installed: the bucket rows are skipped (pip install 'moto[server]')" >&2
fi
# The local HTTP server of the outbound row (ours and a plain requests.get).
bench/.venv/bin/python -c 'import requests' 2>/dev/null || bench/.venv/bin/pip install --quiet --disable-pip-version-check "requests==2.32.3"
exec 3< <(python3 bench/http_server.py)
HTTP_PID=$!
read -r BENCH_HTTP_PORT <&3
export BENCH_HTTP_PORT
trap 'kill $HTTP_PID 2>/dev/null || true; [ -n "$REDIS_PID" ] && kill $REDIS_PID 2>/dev/null || true; [ -n "$S3_PID" ] && kill $S3_PID 2>/dev/null || true' EXIT
# What is measured: the report names this commit and time, not the ones it is
# written at (notes may be added to bench/notes.md after the run).
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit=$(git rev-parse --short HEAD)$([ -n "$(git status --porcelain)" ] && echo ' (with uncommitted changes)')"
} > "$OUT/measured.txt"
# A measurement that could not be made is a row of unit "error": the report
# lists it under "Failures" instead of leaving a silent gap.
failed() { # file name detail
  python3 -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "value": 0, "unit": "error", "detail": sys.argv[2]}))' \
    "$2" "$3" | tee -a "$1" >&2
}
echo "== graflow-host workloads (cargo bench --bench workloads)" >&2
cargo bench --quiet --bench workloads 2>/dev/null | grep '^{' | tee "$OUT/ours.jsonl" >&2
cargo bench --quiet --bench workloads -- rss_10k 2>/dev/null | grep '^{' | tee -a "$OUT/ours.jsonl" >&2
for size in 10k 100k 1m; do
  cargo bench --quiet --bench workloads -- "long_loop_$size" 2>/dev/null | grep '^{' | tee -a "$OUT/ours.jsonl" >&2
done
echo "== one file is a workflow (bench/one_file_bench.py)" >&2
if ! python3 bench/one_file_bench.py ours "$ROOT/target/release/graflow-host" | tee -a "$OUT/ours.jsonl" >&2; then
  failed "$OUT/ours.jsonl" one_file_bench_failed "bench/one_file_bench.py ours stopped with an error (printed by make bench)"
fi
if [ -z "$S3_PID" ]; then
  failed "$OUT/ours.jsonl" bucket_not_run "moto_server is not installed: the bucket rows were not measured (pip install 'moto[server]')"
fi
if [ -z "$REDIS_PID" ]; then
  failed "$OUT/ours.jsonl" distributed_not_run "redis-server is not installed: no Redis row was measured, ours or Graflow's (apt-get install redis-server)"
fi
echo "== Graflow 0.2.0 workloads (bench/graflow_bench.py)" >&2
# Graflow makes a feedback_data/ folder in the working directory of every run:
# its runs work in target/bench-graflow.
mkdir -p target/bench-graflow
PY="$ROOT/bench/.venv/bin/python"
: > "$OUT/graflow.jsonl"
if ! (cd target/bench-graflow && BENCH_TMP="$ROOT/target" "$PY" "$ROOT/bench/graflow_bench.py") | tee -a "$OUT/graflow.jsonl" >&2; then
  failed "$OUT/graflow.jsonl" graflow_bench_failed "bench/graflow_bench.py stopped with an error (printed by make bench): the Graflow rows after the last one it printed are missing"
fi
if ! (cd target/bench-graflow && "$PY" "$ROOT/bench/graflow_bench.py" rss) | tee -a "$OUT/graflow.jsonl" >&2; then
  failed "$OUT/graflow.jsonl" graflow_bench_rss_failed "bench/graflow_bench.py rss stopped with an error (printed by make bench)"
fi
if ! "$PY" bench/one_file_bench.py graflow "$PY" | tee -a "$OUT/graflow.jsonl" >&2; then
  failed "$OUT/graflow.jsonl" graflow_one_file_failed "bench/one_file_bench.py graflow stopped with an error (printed by make bench)"
fi
echo "== a plain requests.get to the same local server (bench/requests_bench.py)" >&2
if ! "$PY" bench/requests_bench.py | tee -a "$OUT/graflow.jsonl" >&2; then
  failed "$OUT/graflow.jsonl" requests_bench_failed "bench/requests_bench.py stopped with an error (printed by make bench)"
fi
if [ -n "$REDIS_PID" ]; then
  echo "== Graflow 0.2.0 Redis workers (bench/graflow_redis_bench.py)" >&2
  if ! (cd target/bench-graflow && "$PY" "$ROOT/bench/graflow_redis_bench.py" "$BENCH_REDIS_PORT") | tee -a "$OUT/graflow.jsonl" >&2; then
    failed "$OUT/graflow.jsonl" graflow_redis_bench_failed "bench/graflow_redis_bench.py stopped with an error (printed by make bench): the Graflow Redis rows after the last one it printed are missing"
  fi
fi
# Written aside first: the report names the commit and whether the tree is clean.
python3 bench/report.py "$OUT/ours.jsonl" "$OUT/graflow.jsonl" > "$OUT/benchmarks.md"
mv "$OUT/benchmarks.md" docs/benchmarks.md
echo "wrote docs/benchmarks.md" >&2
