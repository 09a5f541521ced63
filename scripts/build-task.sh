#!/usr/bin/env bash
# Build a Python or JavaScript task module into a WebAssembly component.
#
#   scripts/build-task.sh path/to/app.py  out.wasm    # componentize-py, with guest-sdk/python
#   scripts/build-task.sh path/to/app.js  out.wasm    # componentize-js, with guest-sdk/js
#
# The toolchains are installed on first use into target/toolchains (a Python
# venv with the pinned componentize-py; `npm ci` of guest-sdk/js's lock file).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SRC=${1:?usage: build-task.sh <app.py|app.js> <out.wasm>}
OUT=${2:?usage: build-task.sh <app.py|app.js> <out.wasm>}
TOOLS=$ROOT/target/toolchains
SRC_ABS=$(cd "$(dirname "$SRC")" && pwd)/$(basename "$SRC")
OUT_ABS=$(mkdir -p "$(dirname "$OUT")" && cd "$(dirname "$OUT")" && pwd)/$(basename "$OUT")

python_toolchain() {
  if [ ! -x "$TOOLS/py/bin/componentize-py" ]; then
    echo "installing componentize-py into $TOOLS/py" >&2
    python3 -m venv "$TOOLS/py"
    "$TOOLS/py/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/guest-sdk/python/requirements.txt"
  fi
}

js_toolchain() {
  if [ ! -x "$TOOLS/js/node_modules/.bin/componentize-js" ] || ! cmp -s "$ROOT/guest-sdk/js/package-lock.json" "$TOOLS/js/package-lock.json"; then
    echo "installing componentize-js into $TOOLS/js" >&2
    mkdir -p "$TOOLS/js"
    cp "$ROOT/guest-sdk/js/package.json" "$ROOT/guest-sdk/js/package-lock.json" "$TOOLS/js/"
    (cd "$TOOLS/js" && npm ci --silent --no-audit --no-fund)
  fi
}

# After a failed build: the first syntax error of the source (or a sibling
# module) as the language reports it, file and line, instead of the tool's
# backtrace or error count. Only then: the python3 on PATH may be older than
# the one componentize-py embeds.
python_syntax() {
  python3 -I "$ROOT/scripts/py_syntax_check.py" "$SRC_ABS" "$(dirname "$SRC_ABS")"/*.py >&2 || true
}

js_syntax() {
  command -v node >/dev/null || return 0
  local check
  check=$(mktemp -d)
  for f in "$SRC_ABS" "$(dirname "$SRC_ABS")"/*.js; do
    [ -f "$f" ] || continue
    cp "$f" "$check/check.mjs"
    if ! node --check "$check/check.mjs" 2>"$check/err"; then
      sed -e "s|$check/check.mjs|$f|" -e '/^    at /d' -e '/^Node.js /d' "$check/err" >&2
      break
    fi
  done
  rm -rf "$check"
}

case "$SRC" in
  *.py)
    python_toolchain
    module=$(basename "$SRC" .py)
    # The same generated entry module as `graflow-host build`: it imports the
    # task module and the SDK's WitWorld (world task-app, WIT 0.1.3).
    entry=$(mktemp -d)
    trap 'rm -rf "$entry"' EXIT
    printf 'import importlib\nimportlib.import_module("%s")\nfrom graflow import WitWorld  # noqa: F401\n' "$module" > "$entry/graflow_app_entry.py"
    if ! "$TOOLS/py/bin/componentize-py" -d "$ROOT/wit" -w task-app componentize \
      -p "$ROOT/guest-sdk/python" -p "$(dirname "$SRC_ABS")" -p "$entry" graflow_app_entry -o "$OUT_ABS" >/dev/null; then
      python_syntax
      exit 1
    fi
    ;;
  *.js)
    js_toolchain
    # componentize-js resolves imports next to the entry file: build in a
    # scratch directory holding the app's directory and the SDK.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    cp -r "$(dirname "$SRC_ABS")"/. "$work/"
    cp "$ROOT/guest-sdk/js/graflow.js" "$work/graflow.js"
    # The same generated entry module as `graflow-host build` (world task-app).
    printf "import './%s';\nexport { tasks, run, workflow_ as workflow } from './graflow.js';\n" "$(basename "$SRC")" > "$work/graflow_app_entry.js"
    if ! (cd "$work" && "$TOOLS/js/node_modules/.bin/componentize-js" graflow_app_entry.js \
      --wit "$ROOT/wit" -n task-app -d http fetch-event -o "$OUT_ABS" >/dev/null); then
      js_syntax
      exit 1
    fi
    ;;
  *)
    echo "build-task.sh: $SRC is neither a .py nor a .js file" >&2
    exit 2
    ;;
esac
echo "built $OUT ($(wc -c < "$OUT_ABS") bytes)" >&2
