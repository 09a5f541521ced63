"""Write docs/benchmarks.md from the two JSONL result files (ours, Graflow's).

Usage: report.py OURS.jsonl GRAFLOW.jsonl [NOTES.md] > benchmarks.md

Every figure in the output comes from the two files, the machine and
measured.txt (beside OURS.jsonl, written by bench/run.sh before the run). The
notes (bench/notes.md by default) are printed under the table with their
placeholders replaced by this run's figures, so that they never quote another
run:

  {ours:NAME}     graflow-host's figure of row NAME, with its unit
  {graflow:NAME}  Graflow's figure of row NAME, with its unit
  {ratio:NAME}    Graflow / ours, as in the table
  {bound:NAME}    the target's bound, computed from this run, with its unit
  {target:NAME}   the target as the table states it
  {met:NAME}      "met", "missed", or why it was not evaluated
  {label:NAME}    the row's label in the table

A row absent from the run reads "not measured"; a placeholder
naming no known row is left visible and reported on stderr.
"""
import datetime
import json
import os
import platform
import re
import subprocess
import sys


def load(path):
    """The rows of a JSONL file, by name; lines that are not JSON objects (a
    tool's stray output) are skipped."""
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                print(f"report.py: {path}: not JSON, skipped: {line[:120]}", file=sys.stderr)
                continue
            if isinstance(r, dict) and "name" in r:
                rows[r["name"]] = r
    return rows


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem / 1048576:.0f} GiB RAM, Linux {platform.release()}"


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def ours_of(name):
    return lambda o, g: o.get(name)


def graflow_of(name):
    return lambda o, g: g.get(name)


def scaled(of, factor):
    """A bound computed from this run: `of`'s figure times `factor`."""
    def bound(o, g):
        v = of(o, g)
        return None if v is None else v * factor
    return bound


# One row of the table: name, label, target text, bound, comparison, ratio.
# bound: None (no target evaluated), a number (a fixed goal), or a function
# (ours, graflow) -> number or None computed from this run's figures (the
# table shows it after "=").
# ratio: whether "Graflow / ours" means anything (the same work on both sides).
ROWS = []


def row(name, label, target="", bound=None, op="<=", ratio=True):
    ROWS.append(dict(name=name, label=label, target=target, bound=bound, op=op, ratio=ratio))


def at_most(limit, of):
    """A bound computed from this run: the smaller of `limit` and `of`'s."""
    def bound(o, g):
        v = of(o, g)
        return limit if v is None else min(limit, v)
    return bound


row("chain_1000", "chain of 1,000 no-op tasks, fresh sandbox per task", "<= 4 us and <= 1/4 of Graflow", at_most(4, scaled(graflow_of("chain_1000"), 1 / 4)))
row("chain_1000_tracing_off", "chain of 1,000, tracing off (no endpoint; interleaved with the next row)", ratio=False)
row("chain_1000_tracing_on", "the same, spans exported over OTLP/HTTP to a local collector", ratio=False)
row("chain_1000_tracing_ratio", "tracing on over off", ratio=False)
row("chain_10000", "chain of 10,000", "flat")
row("chain_30000", "chain of 30,000 (Graflow only)")
row("chain_100000", "chain of 100,000", "same per-task cost as 1,000 (within 20%)", scaled(ours_of("chain_1000"), 1.2))
row("chain_reuse_1000", "chain of 1,000, opt-in instance reuse", "<= 1/20 of Graflow's chain of 1,000", scaled(graflow_of("chain_1000"), 1 / 20))
row("chain_reuse_100000", "chain of 100,000, opt-in instance reuse")
row("fan_out_100", "src >> (100 parallel no-ops) >> sink; ours: parallelism = 4, Graflow: THREADING (a thread per core)")
row("next_iteration_1000", "one task, 1,000 next_iteration runs", "<= 1/4 of Graflow", scaled(graflow_of("next_iteration_1000"), 1 / 4))
row("checkpoint_create_1mb", "checkpoint create, 1 MB channel (ours fsync'd)")
row("checkpoint_resume_1mb", "checkpoint resume, 1 MB")
row("checkpoint_create_100mb", "checkpoint create, 100 MB channel (ours fsync'd)", "<= Graflow (non-durable)", graflow_of("checkpoint_create_100mb"))
row("checkpoint_resume_100mb", "checkpoint resume, 100 MB", "<= 1/2 of Graflow", scaled(graflow_of("checkpoint_resume_100mb"), 1 / 2))
row("long_loop_10k_per_iteration", "long loop, 10,000 iterations, --checkpoint-every 1000: per iteration", ratio=False)
row("long_loop_100k_per_iteration", "the same, 100,000 iterations", "within 20% of 10,000", scaled(ours_of("long_loop_10k_per_iteration"), 1.2), ratio=False)
row("long_loop_1m_per_iteration", "the same, 1,000,000 iterations", "within 20% of 10,000", scaled(ours_of("long_loop_10k_per_iteration"), 1.2), ratio=False)
row("long_loop_10k_rss", "long loop, 10,000 iterations: peak RSS", ratio=False)
row("long_loop_100k_rss", "100,000 iterations: peak RSS", "within 20% of 10,000", scaled(ours_of("long_loop_10k_rss"), 1.2), ratio=False)
row("long_loop_1m_rss", "1,000,000 iterations: peak RSS", "within 20% of 10,000", scaled(ours_of("long_loop_10k_rss"), 1.2), ratio=False)
row("long_loop_10k_checkpoint_kb", "long loop, 10,000 iterations: the last checkpoint's size", ratio=False)
row("long_loop_100k_checkpoint_kb", "100,000 iterations: the last checkpoint's size", "within 20% of 10,000", scaled(ours_of("long_loop_10k_checkpoint_kb"), 1.2), ratio=False)
row("long_loop_1m_checkpoint_kb", "1,000,000 iterations: the last checkpoint's size", "within 20% of 10,000", scaled(ours_of("long_loop_10k_checkpoint_kb"), 1.2), ratio=False)
row("wasmtime_instantiate_floor", "wasmtime alone: instantiate the Rust bench component and drop the store (the floor under a fresh Rust task)", ratio=False)
row("checkpoint_create_100mb_s3", "checkpoint create, 100 MB, published to a local S3-compatible server (Graflow has no S3 backend)", ratio=False)
row("checkpoint_resume_100mb_s3", "checkpoint resume, 100 MB, fetched from it into a fresh working copy", ratio=False)
row("checkpoint_resume_finish_1mb", "resume + finish, 1 MB")
row("checkpoint_resume_finish_100mb", "resume + finish, 100 MB")
row("checkpoint_after_1kb_100mb", "checkpoint after a task that wrote 1 KB, 100 MB channel (ours: fsync'd increment)", "<= 5 ms", 5)
row("durable_append_floor", "the durability floor: one 200-byte append and fdatasync", ratio=False)
row("durable_per_task", "chain of 1,000 no-ops, --checkpoint-every 1 over none, per task", "<= 2 floors", scaled(ours_of("durable_append_floor"), 2), ratio=False)
row("durable_per_task_floors", "the same in floors", ratio=False)
row("durable_record_per_task", "the same with --write-behind: a durable record per task, checkpoints behind", "<= 2 floors", scaled(ours_of("durable_append_floor"), 2), ratio=False)
row("durable_record_per_task_floors", "the same in floors", ratio=False)
row("durable_group_16", "one 16-member parallel group, --checkpoint-every 1 over none, the whole group", "<= 4 floors", scaled(ours_of("durable_append_floor"), 4), ratio=False)
row("durable_group_16_floors", "the same in floors", ratio=False)
row("durable_record_group_16", "the same group with --write-behind", "<= 4 floors", scaled(ours_of("durable_append_floor"), 4), ratio=False)
row("chain_1000_100mb_no_checkpoints", "chain of 1,000 writing 1 KB each, 100 MB channel, no checkpoints")
row("chain_1000_100mb_every_1", "the same, --checkpoint-every 1 (each durable before the next task)")
row("chain_1000_100mb_every_1_ratio", "--checkpoint-every 1 over no checkpoints", "< 2x", 2, "<")
row("chain_1000_100mb_write_behind", "the same, --checkpoint-every 1 --write-behind")
row("chain_1000_100mb_write_behind_ratio", "--checkpoint-every 1 --write-behind over no checkpoints", "< 2x", 2, "<")
row("chain_1000_100mb_resumed_no_checkpoints", "the chain resumed from a checkpoint holding the 100 MB, no checkpoints")
row("chain_1000_100mb_resumed_every_1", "the same resumed, --checkpoint-every 1")
row("chain_1000_100mb_resumed_every_1_ratio", "resumed: --checkpoint-every 1 over no checkpoints", "< 2x", 2, "<")
row("chain_1000_100mb_resumed_write_behind", "the same resumed, --checkpoint-every 1 --write-behind")
row("chain_1000_100mb_resumed_write_behind_ratio", "resumed: --checkpoint-every 1 --write-behind over no checkpoints", "< 2x", 2, "<")
row("one_file_run_cached", "one-file workflow (4 tasks, examples/one-file/app.py), one command from a shell to the printed result; ours: the build cached (not rebuilt)")
row("one_file_run_after_edit", "the same after an edit of app.py: build, compile, run", ratio=False)
row("first_task_rust_cold", "first task, Rust component, cold cache")
row("first_task_rust_warm", "first task, Rust component, warm cache")
row("first_task_python_cold", "first task, 18 MB Python component, cold cache")
row("first_task_python_warm", "first task, 18 MB Python component, warm cache", "<= 100 ms", 100)
row("per_task_rust", "per task, Rust guest")
row("per_task_python", "per task, Python guest", "<= 300 us", 300)
row("per_task_javascript", "per task, JavaScript guest", "<= 100 us", 100)
row("per_task_rust_reuse", "per task, Rust guest, instance reuse")
row("per_task_python_reuse", "per task, Python guest, instance reuse")
row("per_task_javascript_reuse", "per task, JavaScript guest, instance reuse")
row("cpu_pair_parallel", "two CPU-bound tasks, parallel group", ratio=False)
row("cpu_pair_sequence", "the same two, in sequence", ratio=False)
row("cpu_pair_speedup", "parallel speed-up", ">= 1.7x", 1.7, ">=", ratio=False)
row("rss_chain_10000", "peak RSS, 10,000-task chain", "< 100 MiB", 100, "<")
row("chain_1000_channel_1mb", "chain of 1,000 over a 1 MB channel", "flat with the channel")
row("chain_1000_channel_100mb", "chain of 1,000 over a 100 MB channel", "same per-task cost as 1 MB (within 20%)", scaled(ours_of("chain_1000_channel_1mb"), 1.2))
row("group_1000", "src >> (1,000 parallel no-ops) >> sink; ours: parallelism = 4, Graflow: THREADING (a thread per core)")
row("next_iteration_10000", "one task, 10,000 next_iteration runs")
row("flow_file_10000", "a 10,000-task chain made ready to run; ours: a workflow file loaded and validated, Graflow: built with >> in Python (different work, no ratio)", ratio=False)
row("http_get_per_task", "one allowed GET per task to a local server; Graflow side: a plain requests.get in Python to the same server (both a new connection per request)")
row("redis_noop_1w", "through Redis: src >> (2,000 no-ops) >> sink, 1 worker of 4 slots (ours: parallelism = 16)", "<= 1/4 of Graflow", scaled(graflow_of("redis_noop_1w"), 1 / 4))
row("redis_noop_2w", "through Redis: the same, 2 workers of 4 slots", "<= 1/4 of Graflow", scaled(graflow_of("redis_noop_2w"), 1 / 4))
row("redis_noop_500_1w", "through Redis: src >> (500 no-ops) >> sink, 1 worker (Graflow's fallback when its 2,000-task run failed)", ratio=False)
row("redis_noop_500_2w", "through Redis: the same 500, 2 workers (Graflow's fallback when its 2,000-task run failed)", ratio=False)
row("redis_cpu_1w", "through Redis: 16 CPU-bound tasks, 1 worker", ratio=False)
row("redis_cpu_2w", "through Redis: the same, 2 workers", ratio=False)
row("redis_cpu_speedup", "through Redis: 2 workers / 1 worker, CPU-bound", ">= 1.7x", 1.7, ">=", ratio=False)

BY_NAME = {r["name"]: r for r in ROWS}
COMPARE = {"<=": lambda a, b: a <= b, "<": lambda a, b: a < b, ">=": lambda a, b: a >= b}


def fmt(v):
    return "-" if v is None else (f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}")


def with_unit(v, unit):
    if v is None:
        return "not measured"
    return f"{fmt(v)}x" if unit == "x" else f"{fmt(v)} {unit}".rstrip()


class Run:
    def __init__(self, ours, theirs):
        self.ours, self.theirs = ours, theirs
        self.o = {k: r.get("value") for k, r in ours.items() if r.get("unit") != "error"}
        self.g = {k: r.get("value") for k, r in theirs.items() if r.get("unit") != "error"}

    def unit(self, name):
        return (self.ours.get(name) or self.theirs.get(name) or {}).get("unit", "")

    def bound(self, name):
        b = BY_NAME[name]["bound"]
        return b(self.o, self.g) if callable(b) else b

    def met(self, name):
        """True, False, or None with the reason it was not evaluated."""
        spec = BY_NAME[name]
        if spec["bound"] is None:
            return None, "no target"
        o, b = self.o.get(name), self.bound(name)
        if o is None:
            return None, "not evaluated (not measured)"
        if b is None:
            return None, "not evaluated (the figure its bound is computed from was not measured)"
        return COMPARE[spec["op"]](o, b), ""

    def ratio(self, name):
        o, g = self.o.get(name), self.g.get(name)
        if not BY_NAME[name]["ratio"] or self.unit(name) == "x" or not o or g is None:
            return None
        return g / o

    def target_cell(self, name):
        spec = BY_NAME[name]
        if callable(spec["bound"]):
            b = self.bound(name)
            return f"{spec['target']} = {fmt(b)}" if b is not None else spec["target"]
        return spec["target"]


PLACEHOLDER = re.compile(r"\{(ours|graflow|ratio|bound|target|met|label):([A-Za-z0-9_]+)\}")


def fill(notes, run):
    """The notes with every placeholder replaced by this run's figure."""
    unknown = set()

    def one(m):
        kind, name = m.groups()
        if name not in BY_NAME:
            unknown.add(name)
            return f"[unknown row {name}]"
        unit = run.unit(name)
        if kind == "ours":
            return with_unit(run.o.get(name), unit)
        if kind == "graflow":
            return with_unit(run.g.get(name), unit)
        if kind == "ratio":
            r = run.ratio(name)
            return "no ratio" if r is None else f"{r:.1f}x"
        if kind == "bound":
            b = run.bound(name)
            return "no bound" if b is None else with_unit(b, unit)
        if kind == "target":
            return BY_NAME[name]["target"] or "no target"
        if kind == "label":
            return BY_NAME[name]["label"]
        ok, why = run.met(name)
        return why if ok is None else ("met" if ok else "missed")

    text = PLACEHOLDER.sub(one, notes)
    for name in sorted(unknown):
        print(f"report.py: the notes name a row the report does not have: {name}", file=sys.stderr)
    return text


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    notes_path = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    run = Run(ours, theirs)
    out = []
    out.append("# Benchmarks\n")
    out.append("Generated by `make bench` (bench/run.sh): graflow-host's workloads (`cargo bench --bench workloads`,")
    out.append("host/benches/workloads.rs, through the library and the real sandbox) and Graflow 0.2.0's own engine on the")
    out.append("same shapes (bench/graflow_bench.py and bench/graflow_redis_bench.py, graflow==0.2.0 from PyPI in")
    out.append("bench/.venv), in the same run. Every figure on this page, the notes' included, is from that run.\n")
    out.append(f"- machine: {machine()}")
    # The commit and time measured (bench/run.sh records them before the run).
    measured = {}
    record = os.path.join(os.path.dirname(os.path.abspath(sys.argv[1])), "measured.txt")
    if os.path.exists(record):
        measured = dict(line.split("=", 1) for line in open(record).read().splitlines() if "=" in line)
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    head = f"{git('rev-parse', '--short', 'HEAD')}{' (with uncommitted changes)' if git('status', '--porcelain') else ''}"
    out.append(f"- date: {measured.get('date', now)}")
    out.append(f"- commit: {measured.get('commit', head)}")
    out.append("- command: `make bench`\n")
    failures = [(who, r) for who, res in (("graflow-host", ours), ("Graflow", theirs))
                for r in res.values() if r.get("unit") == "error"]
    if failures:
        out.append(f"**{len(failures)} measurement(s) failed or were not run: see [Failures](#failures).**\n")
    out.append("| workload | graflow-host | Graflow 0.2.0 | Graflow / ours | unit | target | met |")
    out.append("|---|---|---|---|---|---|---|")
    for spec in ROWS:
        name = spec["name"]
        o, g = run.o.get(name), run.g.get(name)
        if o is None and g is None and name.startswith("redis_noop_500_"):
            continue  # a fallback row, only when a fallback ran
        r = run.ratio(name)
        ok, why = run.met(name)
        met = "" if why == "no target" else ("-" if ok is None else ("yes" if ok else "**no**"))
        out.append(f"| {spec['label']} | {fmt(o)} | {fmt(g)} | {'-' if r is None else f'{r:.1f}x'} | "
                   f"{run.unit(name)} | {run.target_cell(name)} | {met} |")
    out.append("\nTargets relative to Graflow or to another row are computed from this run's figures (the bound follows")
    out.append("`=`); targets in absolute units are fixed goals, set when the workloads were added. `met` is `-` when a")
    out.append("figure the target needs was not measured. \"Graflow / ours\" is given only where both sides do the same")
    out.append("work.")
    out.append("\nThe Redis rows run on one redis-server started by bench/run.sh on loopback, ours through")
    out.append("`graflow-host worker` processes, Graflow's through its own `python -m graflow.worker.main` workers and")
    out.append("`backend=REDIS` groups, each with its defaults but the concurrency named in the details. Both sides are")
    out.append("measured the same way: one untimed warm-up run, then the median of 3 runs, each timing the run only")
    out.append("(ours: `Session::run`, after the session is built and connected to Redis; Graflow's:")
    out.append("`WorkflowEngine.execute`, after `ExecutionContext.create`; Graflow's group makes its Redis client inside")
    out.append("the run, there is no other way to run it). Graflow's details also give its cold first run, setup")
    out.append("included, for information. When Graflow's 2,000-task fan-out fails, its 500-task fallback is a row of")
    out.append("its own, and the failure is listed below.")
    out.append("\nThe CPU-bound pair runs different work in each system (a loop in a wasm guest, a loop in Python):")
    out.append("compare their speed-ups, not their times.")
    if failures:
        out.append("\n## Failures\n")
        for who, r in failures:
            out.append(f"- `{r['name']}` ({who}): {r.get('detail', '')}")
    extra = [(who, r) for who, res in (("graflow-host", ours), ("Graflow", theirs))
             for r in res.values() if r["name"] not in BY_NAME and r.get("unit") != "error"]
    if extra:
        out.append("\nRows the table has no place for (add them to bench/report.py):\n")
        for who, r in extra:
            out.append(f"- `{r['name']}` ({who}): {fmt(r.get('value'))} {r.get('unit', '')}: {r.get('detail', '')}")
    out.append("\nDetails of each measurement (what is timed, how many runs):\n")
    for spec in ROWS:
        for who, res in (("graflow-host", ours), ("Graflow", theirs)):
            if spec["name"] in res and res[spec["name"]].get("unit") != "error":
                out.append(f"- `{spec['name']}` ({who}): {res[spec['name']].get('detail', '')}")
    if os.path.exists(notes_path):
        out.append("\n" + fill(open(notes_path).read(), run))
    print("\n".join(out))


if __name__ == "__main__":
    main()
