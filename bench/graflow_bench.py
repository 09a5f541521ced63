"""Graflow 0.2.0's own engine on the workload shapes of docs/benchmarks.md.

Prints one JSON object per measurement (same names as graflow-host's
benchmarks). Tasks are no-op TaskWrappers added to a TaskGraph directly, run
with WorkflowEngine().execute; the default (Noop) tracer; logging disabled.
Usage: graflow_bench.py [all|rss]
"""
import json
import logging
import os
import resource
import statistics
import sys
import tempfile
import time

logging.disable(logging.CRITICAL)

from graflow.core.checkpoint import CheckpointManager  # noqa: E402
from graflow.core.context import ExecutionContext  # noqa: E402
from graflow.core.engine import WorkflowEngine  # noqa: E402
from graflow.core.graph import TaskGraph  # noqa: E402
from graflow.core.task import ParallelGroup, TaskWrapper  # noqa: E402
from graflow.core.workflow import workflow  # noqa: E402


def emit(name, value, unit, detail):
    print(json.dumps({"name": name, "value": value, "unit": unit, "detail": detail}), flush=True)


def noop():
    return None


def chain_graph(n):
    g = TaskGraph()
    prev = None
    for i in range(n):
        g.add_node(TaskWrapper(f"t{i}", noop, register_to_context=False), f"t{i}")
        if prev is not None:
            g.add_edge(prev, f"t{i}")
        prev = f"t{i}"
    return g


def run_chain(n):
    ctx = ExecutionContext.create(chain_graph(n), "t0", max_steps=n + 10)
    started = time.perf_counter()
    WorkflowEngine().execute(ctx)
    return time.perf_counter() - started


def chains():
    for n, runs in [(1000, 9), (10000, 3), (30000, 1)]:
        us = statistics.median(run_chain(n) * 1e6 / n for _ in range(runs))
        emit(f"chain_{n}", us, "us/task", f"{n} no-op tasks, median of {runs}")


def fan_out():
    samples = []
    for r in range(15):
        with workflow(f"fan{r}") as wf:
            src = TaskWrapper("src", noop)
            members = [TaskWrapper(f"p{i}", noop) for i in range(100)]
            sink = TaskWrapper("sink", noop)
            src >> ParallelGroup(members) >> sink
            started = time.perf_counter()
            wf.execute("src", max_steps=1000)
            samples.append(time.perf_counter() - started)
    ms = statistics.median(samples) * 1e3
    emit("fan_out_100", ms * 1000 / 102, "us/task", f"src >> (100 parallel no-ops, THREADING) >> sink: {ms:.2f} ms per run, median of 15")


def loop(ctx, data=None):
    n = data or 0
    if n + 1 < 1000:
        ctx.next_iteration(n + 1)
    return n


def iterations():
    samples = []
    for _ in range(9):
        g = TaskGraph()
        g.add_node(TaskWrapper("loop", loop, inject_context=True, register_to_context=False), "loop")
        ctx = ExecutionContext.create(g, "loop", max_steps=5000, default_max_cycles=2000)
        started = time.perf_counter()
        WorkflowEngine().execute(ctx)
        samples.append(time.perf_counter() - started)
    emit("next_iteration_1000", statistics.median(samples) * 1e6 / 1000, "us/iteration", "one task, 1,000 runs through next_iteration, median of 9")


def checkpoints():
    os.sync()  # as ours: earlier writes are not written back during the measurement
    for mb in (1, 100):
        tmp = tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"))
        creates, resumes, finishes = [], [], []
        for i in range(7):
            ctx = ExecutionContext.create(chain_graph(2), "t0", max_steps=100)
            ctx.channel.set("blob", b"x" * (mb << 20))
            path = os.path.join(tmp, f"cp{i}.pkl")
            started = time.perf_counter()
            CheckpointManager.create_checkpoint(ctx, path=path)
            creates.append(time.perf_counter() - started)
            started = time.perf_counter()
            restored, _ = CheckpointManager.resume_from_checkpoint(path)
            resumes.append(time.perf_counter() - started)
            WorkflowEngine().execute(restored)
            finishes.append(time.perf_counter() - started)
        emit(f"checkpoint_create_{mb}mb", statistics.median(creates) * 1e3, "ms", "create_checkpoint (pickle, no fsync), median of 7")
        emit(f"checkpoint_resume_{mb}mb", statistics.median(resumes) * 1e3, "ms", "resume_from_checkpoint, median of 7")
        emit(f"checkpoint_resume_finish_{mb}mb", statistics.median(finishes) * 1e3, "ms", "resume plus running the remaining tasks, median of 7")
    # The same checkpoint after a task that wrote 1 KB: Graflow writes the whole context again.
    os.sync()
    tmp = tempfile.mkdtemp(dir=os.environ.get("BENCH_TMP"))
    ctx = ExecutionContext.create(chain_graph(2), "t0", max_steps=100)
    ctx.channel.set("blob", b"x" * (100 << 20))
    CheckpointManager.create_checkpoint(ctx, path=os.path.join(tmp, "base.pkl"))
    samples = []
    for i in range(7):
        ctx.channel.set(f"k{i}", b"y" * 1024)
        path = os.path.join(tmp, f"after{i}.pkl")
        started = time.perf_counter()
        CheckpointManager.create_checkpoint(ctx, path=path)
        samples.append(time.perf_counter() - started)
        os.remove(path)
    emit("checkpoint_after_1kb_100mb", statistics.median(samples) * 1e3, "ms", "create_checkpoint after a 1 KB write over a 100 MB channel (the whole context again, no fsync), median of 7")


def scaling():
    for mb in (1, 100):
        samples = []
        for _ in range(5):
            ctx = ExecutionContext.create(chain_graph(1000), "t0", max_steps=1010)
            ctx.channel.set("blob", "x" * (mb << 20))
            started = time.perf_counter()
            WorkflowEngine().execute(ctx)
            samples.append(time.perf_counter() - started)
        emit(f"chain_1000_channel_{mb}mb", statistics.median(samples) * 1e6 / 1000, "us/task",
             f"1,000 no-op tasks over a channel holding a {mb} MB value, median of 5")
    samples = []
    for r in range(5):
        with workflow(f"group1000_{r}") as wf:
            src = TaskWrapper("src", noop)
            members = [TaskWrapper(f"p{i}", noop) for i in range(1000)]
            sink = TaskWrapper("sink", noop)
            src >> ParallelGroup(members) >> sink
            started = time.perf_counter()
            wf.execute("src", max_steps=5000)
            samples.append(time.perf_counter() - started)
    ms = statistics.median(samples) * 1e3
    emit("group_1000", ms * 1000 / 1002, "us/task", f"src >> (1,000 parallel no-ops, THREADING) >> sink: {ms:.1f} ms per run, median of 5")

    def loop10k(ctx, data=None):
        n = data or 0
        if n + 1 < 10000:
            ctx.next_iteration(n + 1)
        return n

    samples = []
    for _ in range(3):
        g = TaskGraph()
        g.add_node(TaskWrapper("loop", loop10k, inject_context=True, register_to_context=False), "loop")
        ctx = ExecutionContext.create(g, "loop", max_steps=50000, default_max_cycles=20000)
        started = time.perf_counter()
        WorkflowEngine().execute(ctx)
        samples.append(time.perf_counter() - started)
    emit("next_iteration_10000", statistics.median(samples) * 1e6 / 10000, "us/iteration", "one task, 10,000 runs through next_iteration, median of 3")
    samples = []
    for r in range(5):
        started = time.perf_counter()
        with workflow(f"flow10k_{r}"):
            tasks = [TaskWrapper(f"t{i}", noop) for i in range(10000)]
            prev = tasks[0]
            for t in tasks[1:]:
                prev >> t
                prev = t
        samples.append(time.perf_counter() - started)
    emit("flow_file_10000", statistics.median(samples) * 1e3, "ms",
         "building a 10,000-task chain with >> in Python (Graflow's flow is code, not a file), median of 5")


def cpu(rounds=3_000_000):
    h = 0xCBF29CE484222325
    for i in range(rounds):
        h = ((h ^ i) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def parallel_cpu():
    def once(parallel, r):
        with workflow(f"cpu{r}{parallel}") as wf:
            a, b = TaskWrapper("a", cpu), TaskWrapper("b", cpu)
            if parallel:
                ParallelGroup([a, b], name="g")
                start = "g"
            else:
                a >> b
                start = "a"
            started = time.perf_counter()
            wf.execute(start, max_steps=100)
            return time.perf_counter() - started

    par = statistics.median(once(True, r) for r in range(5)) * 1e3
    ser = statistics.median(once(False, r) for r in range(5)) * 1e3
    emit("cpu_pair_parallel", par, "ms", "two CPU-bound Python tasks in a parallel group (threads), median of 5")
    emit("cpu_pair_sequence", ser, "ms", "the same two in sequence, median of 5")
    emit("cpu_pair_speedup", ser / par, "x", "sequence time / parallel time")


def rss():
    run_chain(10000)
    emit("rss_chain_10000", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "MiB", "peak RSS (ru_maxrss) of a process that built and ran the 10,000-task chain")


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "rss":
        rss()
    else:
        for f in (chains, fan_out, iterations, checkpoints, parallel_cpu, scaling):
            f()
