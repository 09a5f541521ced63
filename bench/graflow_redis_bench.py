"""Graflow 0.2.0's own Redis workers on the distributed shapes of
docs/benchmarks.md: a fan-out `src >> (N members, backend=REDIS) >> sink`
run by `python -m graflow.worker.main` processes on the same Redis as
graflow-host's rows.

Usage: graflow_redis_bench.py PORT
Prints one JSON object per measurement (same names as graflow-host's).
"""
import json
import logging
import os
import subprocess
import sys
import time

logging.disable(logging.CRITICAL)

import redis  # noqa: E402
from graflow.coordination.coordinator import CoordinationBackend  # noqa: E402
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


def fan(n, fn, tag):
    with workflow(f"redis_fan_{tag}_{n}_{time.time_ns()}") as wf:
        src = TaskWrapper("src", noop)
        members = [TaskWrapper(f"p{i}", fn) for i in range(n)]
        sink = TaskWrapper("sink", noop)
        group = ParallelGroup(members).with_execution(
            backend=CoordinationBackend.REDIS, backend_config={"host": "127.0.0.1", "port": PORT})
        src >> group >> sink
        started = time.perf_counter()
        try:
            wf.execute("src", max_steps=n + 10)
        except Exception as e:  # Graflow's 30 s barrier
            return None, f"{type(e).__name__}: {e}"
        return time.perf_counter() - started, None


def main():
    redis.Redis(host="127.0.0.1", port=PORT).flushall()
    cpu_ms = {}
    for n_workers in (1, 2):
        procs = workers(n_workers, 4)
        try:
            for n in (2000, 500):
                secs, err = fan(n, noop, "noop")
                if secs is not None:
                    emit(f"redis_noop_{n_workers}w", secs * 1e6 / (n + 2), "us/task",
                         f"src >> ({n} no-op members, backend=REDIS) >> sink on {n_workers} graflow.worker.main "
                         f"(--max-concurrent-tasks 4, default poll 0.1 s): {secs:.2f} s")
                    break
                emit(f"redis_noop_{n_workers}w_failed_{n}", 0, "error", err[:300])
        finally:
            stop(procs)
    for n_workers in (1, 2):
        procs = workers(n_workers, 1)
        try:
            secs, err = fan(16, cpu, "cpu")
            if secs is None:
                emit(f"redis_cpu_{n_workers}w_failed", 0, "error", err[:300])
            else:
                cpu_ms[n_workers] = secs * 1e3
                emit(f"redis_cpu_{n_workers}w", secs * 1e3, "ms",
                     f"src >> (16 CPU-bound members, {CPU_ROUNDS} rounds each) >> sink on {n_workers} workers "
                     f"(--max-concurrent-tasks 1)")
        finally:
            stop(procs)
    if len(cpu_ms) == 2:
        emit("redis_cpu_speedup", cpu_ms[1] / cpu_ms[2], "x", "1 worker time / 2 workers time")


if __name__ == "__main__":
    main()
