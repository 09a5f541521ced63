"""Graflow 0.2.0's own Redis workers on the distributed shapes of
docs/benchmarks.md: a fan-out `src >> (N members, backend=REDIS) >> sink`
run by `python -m graflow.worker.main` processes on the same Redis as
graflow-host's rows.

Measured as graflow-host's rows are: one untimed warm-up run, then the
median of 3 runs, each timing the run only (the workflow and its
ExecutionContext are made before the clock starts).

Usage: graflow_redis_bench.py PORT
Prints one JSON object per measurement (same names as graflow-host's); a run
that fails prints a row `<name>_failed` with unit "error".
"""
import json
import logging
import os
import statistics
import subprocess
import sys
import time

logging.disable(logging.CRITICAL)

import redis  # noqa: E402
from graflow.coordination.coordinator import CoordinationBackend  # noqa: E402
from graflow.core.context import ExecutionContext  # noqa: E402
from graflow.core.engine import WorkflowEngine  # noqa: E402
from graflow.core.task import ParallelGroup, TaskWrapper  # noqa: E402
from graflow.core.workflow import workflow  # noqa: E402

PORT = int(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))


def emit(name, value, unit, detail):
    print(json.dumps({"name": name, "value": value, "unit": unit, "detail": detail}), flush=True)


def noop():
    return None


def cpu():
    h = 0xCBF29CE484222325
    for i in range(CPU_ROUNDS):
        h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


CPU_ROUNDS = 1_000_000


def workers(n, concurrency):
    env = {**os.environ, "PYTHONPATH": HERE}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "graflow.worker.main", "--redis-host", "127.0.0.1", "--redis-port", str(PORT),
             "--max-concurrent-tasks", str(concurrency), "--log-level", "ERROR"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(n)
    ]
    time.sleep(1.5)
    return procs


def stop(procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=40)
        except subprocess.TimeoutExpired:
            p.kill()


def fan_run(n, fn, tag):
    """One run of `src >> (n members, backend=REDIS) >> sink`: the seconds of
    `WorkflowEngine.execute` (as ours times `Session::run`), and the seconds
    with the setup (building the workflow, `ExecutionContext.create`)."""
    setup_started = time.perf_counter()
    with workflow(f"redis_fan_{tag}_{n}_{time.time_ns()}") as wf:
        src = TaskWrapper("src", noop)
        members = [TaskWrapper(f"p{i}", fn) for i in range(n)]
        sink = TaskWrapper("sink", noop)
        group = ParallelGroup(members).with_execution(
            backend=CoordinationBackend.REDIS, backend_config={"host": "127.0.0.1", "port": PORT})
        src >> group >> sink
        # What `wf.execute("src", max_steps=...)` does, with the context made
        # before the clock starts. (The group makes its Redis client inside
        # the run: that stays timed.)
        ctx = ExecutionContext.create(wf.graph, "src", max_steps=n + 10, tracer=wf._tracer,
                                      prompt_manager=wf._prompt_manager)
        wf._attach_llm_agents(ctx)
        started = time.perf_counter()
        WorkflowEngine().execute(ctx)
        ended = time.perf_counter()
    return ended - started, ended - setup_started


def measure(n, fn, tag, runs=3):
    """As ours: one untimed warm-up run, then the median of `runs` runs.
    Returns (median seconds, the warm-up's seconds with setup included), or
    raises the run's error (Graflow's 30 s barrier)."""
    _, cold = fan_run(n, fn, tag)
    return statistics.median(fan_run(n, fn, tag)[0] for _ in range(runs)), cold


def failed(name, err):
    emit(name, 0, "error", f"{type(err).__name__}: {err}"[:300])
    # Whatever the failed run left queued must not reach the next one.
    redis.Redis(host="127.0.0.1", port=PORT).flushall()


def main():
    redis.Redis(host="127.0.0.1", port=PORT).flushall()
    cpu_ms = {}
    for n_workers in (1, 2):
        procs = workers(n_workers, 4)
        try:
            # 2,000 members as ours; when Graflow cannot run them (its 30 s
            # barrier), 500, as a row of its own.
            for n, name in ((2000, f"redis_noop_{n_workers}w"), (500, f"redis_noop_500_{n_workers}w")):
                try:
                    secs, cold = measure(n, noop, "noop")
                except Exception as e:
                    failed(f"{name}_failed", e)
                    continue
                emit(name, secs * 1e6 / (n + 2), "us/task",
                     f"src >> ({n} no-op members, backend=REDIS) >> sink on {n_workers} graflow.worker.main "
                     f"(--max-concurrent-tasks 4, default poll 0.1 s): {secs:.2f} s, median of 3 after a warm-up "
                     f"run (the warm-up, cold, with the workflow built and ExecutionContext.create: {cold:.2f} s)")
                break
        finally:
            stop(procs)
    for n_workers in (1, 2):
        procs = workers(n_workers, 1)
        try:
            secs, _ = measure(16, cpu, "cpu")
        except Exception as e:
            failed(f"redis_cpu_{n_workers}w_failed", e)
        else:
            cpu_ms[n_workers] = secs * 1e3
            emit(f"redis_cpu_{n_workers}w", secs * 1e3, "ms",
                 f"src >> (16 CPU-bound members, {CPU_ROUNDS} rounds each) >> sink on {n_workers} workers "
                 f"(--max-concurrent-tasks 1), median of 3 after a warm-up run")
        finally:
            stop(procs)
    if len(cpu_ms) == 2:
        emit("redis_cpu_speedup", cpu_ms[1] / cpu_ms[2], "x", "1 worker time / 2 workers time")


if __name__ == "__main__":
    main()
