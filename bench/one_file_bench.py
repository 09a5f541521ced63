"""One command from a shell to the printed result, for the README's one-file
workflow: `graflow-host run examples/one-file/app.py` (its build cached, and
once after an edit, which builds again) and `python3
bench/graflow_one_file.py` (Graflow 0.2.0, the same tasks and flow). Wall
time of the whole process, the median of RUNS runs, each checked to print the
expected result.

Usage: one_file_bench.py ours BIN | graflow PYTHON
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RUNS = 15
WANT = {"doubled": [20, 40, 60], "stats": {"count": 3, "sum": 60}}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def emit(name, value, unit, detail):
    print(json.dumps({"name": name, "value": value, "unit": unit, "detail": detail}), flush=True)


def timed(cmd, cwd):
    started = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env={**os.environ, "GRAFLOW_LOG": "warn"})
    took = time.perf_counter() - started
    lines = out.stdout.strip().splitlines()
    got = json.loads(lines[-1]) if out.returncode == 0 and lines else None
    if got != WANT:
        raise SystemExit(f"{cmd}: exit {out.returncode}, printed {out.stdout!r}; {out.stderr[-2000:]}")
    return took * 1000


def ours(binary):
    work = tempfile.mkdtemp(prefix="one-file-")
    app = os.path.join(work, "app.py")
    shutil.copy(os.path.join(ROOT, "examples/one-file/app.py"), app)
    cmd = [binary, "run", "app.py", "--input", '{"day": "2026-11-27"}']
    timed(cmd, work)  # the first build (and compile) of this copy
    ms = statistics.median(timed(cmd, work) for _ in range(RUNS))
    emit("one_file_run_cached", ms, "ms", f"graflow-host run app.py, build cached, whole process, median of {RUNS}")
    rebuilds = []
    for i in range(3):
        with open(app, "a") as f:
            f.write(f"\n# edit {i}\n")
        rebuilds.append(timed(cmd, work))
    emit("one_file_run_after_edit", statistics.median(rebuilds), "ms",
         "graflow-host run app.py after an edit: componentize-py build, compile, run; median of 3")
    shutil.rmtree(work, ignore_errors=True)


def graflow(python):
    cmd = [python, os.path.join(ROOT, "bench/graflow_one_file.py")]
    work = tempfile.mkdtemp(prefix="graflow-one-file-")
    timed(cmd, work)
    ms = statistics.median(timed(cmd, work) for _ in range(RUNS))
    emit("one_file_run_cached", ms, "ms", f"python3 graflow_one_file.py, whole process, median of {RUNS}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    {"ours": ours, "graflow": graflow}[sys.argv[1]](sys.argv[2])
