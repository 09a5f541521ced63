"""Write docs/benchmarks.md from the two JSONL result files (ours, Graflow's)."""
import datetime
import json
import os
import platform
import subprocess
import sys


def load(path):
    with open(path) as f:
        return {r["name"]: r for r in map(json.loads, f) if r}


def machine():
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    mem = next((int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return f"{os.cpu_count()} cores ({cpu}), {mem / 1048576:.0f} GiB RAM, Linux {platform.release()}"


def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


# name, label, target description, check(ours, graflow, all_ours) -> bool or None
TARGETS = [
    ("chain_1000", "chain of 1,000 no-op tasks, fresh sandbox per task", "<= 1/4 of Graflow", lambda o, g, a: o <= g / 4),
    ("chain_10000", "chain of 10,000", "flat", None),
    ("chain_30000", "chain of 30,000 (Graflow only)", "", None),
    ("chain_100000", "chain of 100,000", "same per-task cost as 1,000 (within 20%)", lambda o, g, a: o <= a["chain_1000"]["value"] * 1.2),
    ("chain_reuse_1000", "chain of 1,000, opt-in instance reuse", "<= 1/20 of Graflow's chain of 1,000", None),
    ("chain_reuse_100000", "chain of 100,000, opt-in instance reuse", "", None),
    ("fan_out_100", "src >> (100 parallel no-ops) >> sink", "", None),
    ("next_iteration_1000", "one task, 1,000 next_iteration runs", "<= 1/4 of Graflow", lambda o, g, a: o <= g / 4),
    ("checkpoint_create_1mb", "checkpoint create, 1 MB channel (ours fsync'd)", "", None),
    ("checkpoint_resume_1mb", "checkpoint resume, 1 MB", "", None),
    ("checkpoint_create_100mb", "checkpoint create, 100 MB channel (ours fsync'd)", "<= Graflow (non-durable)", lambda o, g, a: o <= g),
    ("checkpoint_resume_100mb", "checkpoint resume, 100 MB", "<= 1/2 of Graflow", lambda o, g, a: o <= g / 2),
    ("checkpoint_resume_finish_100mb", "resume + finish, 100 MB", "", None),
    ("checkpoint_after_1kb_100mb", "checkpoint after a task that wrote 1 KB, 100 MB channel (ours: fsync'd increment)", "<= 5 ms", lambda o, g, a: o <= 5),
    ("chain_1000_100mb_no_checkpoints", "chain of 1,000 writing 1 KB each, 100 MB channel, no checkpoints", "", None),
    ("chain_1000_100mb_every_1", "the same, --checkpoint-every 1 (each durable before the next task)", "", None),
    ("chain_1000_100mb_every_1_ratio", "--checkpoint-every 1 over no checkpoints", "< 2x", lambda o, g, a: o < 2),
    ("chain_1000_100mb_write_behind", "the same, --checkpoint-every 1 --write-behind", "", None),
    ("chain_1000_100mb_write_behind_ratio", "--checkpoint-every 1 --write-behind over no checkpoints", "< 2x", lambda o, g, a: o < 2),
    ("chain_1000_100mb_resumed_no_checkpoints", "the chain resumed from a checkpoint holding the 100 MB, no checkpoints", "", None),
    ("chain_1000_100mb_resumed_every_1", "the same resumed, --checkpoint-every 1", "", None),
    ("chain_1000_100mb_resumed_every_1_ratio", "resumed: --checkpoint-every 1 over no checkpoints", "< 2x", lambda o, g, a: o < 2),
    ("chain_1000_100mb_resumed_write_behind", "the same resumed, --checkpoint-every 1 --write-behind", "", None),
    ("chain_1000_100mb_resumed_write_behind_ratio", "resumed: --checkpoint-every 1 --write-behind over no checkpoints", "< 2x", lambda o, g, a: o < 2),
    ("first_task_rust_cold", "first task, Rust component, cold cache", "", None),
    ("first_task_rust_warm", "first task, Rust component, warm cache", "", None),
    ("first_task_python_cold", "first task, 18 MB Python component, cold cache", "", None),
    ("first_task_python_warm", "first task, 18 MB Python component, warm cache", "<= 100 ms", lambda o, g, a: o <= 100),
    ("per_task_rust", "per task, Rust guest", "", None),
    ("per_task_python", "per task, Python guest", "<= 700 us (half of the naive 1.4 ms)", lambda o, g, a: o <= 700),
    ("per_task_javascript", "per task, JavaScript guest", "<= 375 us (half of the naive 0.75 ms)", lambda o, g, a: o <= 375),
    ("per_task_rust_reuse", "per task, Rust guest, instance reuse", "", None),
    ("per_task_python_reuse", "per task, Python guest, instance reuse", "", None),
    ("per_task_javascript_reuse", "per task, JavaScript guest, instance reuse", "", None),
    ("cpu_pair_parallel", "two CPU-bound tasks, parallel group", "", None),
    ("cpu_pair_sequence", "the same two, in sequence", "", None),
    ("cpu_pair_speedup", "parallel speed-up", ">= 1.7x", lambda o, g, a: o >= 1.7),
    ("rss_chain_10000", "peak RSS, 10,000-task chain", "< 100 MiB", lambda o, g, a: o < 100),
    ("chain_1000_channel_1mb", "chain of 1,000 over a 1 MB channel", "flat with the channel", None),
    ("chain_1000_channel_100mb", "chain of 1,000 over a 100 MB channel", "same per-task cost as 1 MB (within 20%)", lambda o, g, a: "chain_1000_channel_1mb" in a and o <= a["chain_1000_channel_1mb"]["value"] * 1.2),
    ("group_1000", "src >> (1,000 parallel no-ops) >> sink", "", None),
    ("next_iteration_10000", "one task, 10,000 next_iteration runs", "", None),
    ("flow_file_10000", "load and validate a 10,000-task flow", "", None),
    ("redis_noop_1w", "through Redis: 2,000-task fan-out of no-ops, 1 worker", "<= 1/4 of Graflow", lambda o, g, a: g is not None and o <= g / 4),
    ("redis_noop_2w", "through Redis: the same, 2 workers", "<= 1/4 of Graflow", lambda o, g, a: g is not None and o <= g / 4),
    ("redis_cpu_1w", "through Redis: 16 CPU-bound tasks, 1 worker", "", None),
    ("redis_cpu_2w", "through Redis: the same, 2 workers", "", None),
    ("redis_cpu_speedup", "through Redis: 2 workers / 1 worker, CPU-bound", ">= 1.7x", lambda o, g, a: o >= 1.7),
]


def fmt(v):
    return "-" if v is None else (f"{v:,.1f}" if v >= 10 else f"{v:.2f}")


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    if "chain_reuse_1000" in ours and "chain_1000" in theirs:
        check = ours["chain_reuse_1000"]["value"] <= theirs["chain_1000"]["value"] / 20
    out = []
    out.append("# Benchmarks\n")
    out.append("Generated by `make bench` (bench/run.sh): graflow-host's workloads (`cargo bench --bench workloads`,")
    out.append("host/benches/workloads.rs, through the library and the real sandbox) and Graflow 0.2.0's own engine on the")
    out.append("same shapes (bench/graflow_bench.py, graflow==0.2.0 from PyPI in bench/.venv), in the same run.\n")
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
    out.append("| workload | graflow-host | Graflow 0.2.0 | Graflow / ours | unit | target | met |")
    out.append("|---|---|---|---|---|---|---|")
    for name, label, target, test in TARGETS:
        o = ours.get(name, {}).get("value")
        g = theirs.get(name, {}).get("value")
        unit = (ours.get(name) or theirs.get(name) or {}).get("unit", "")
        same_work = not name.startswith(("cpu_pair", "redis_cpu"))
        ratio = f"{g / o:.1f}x" if o and g and unit != "x" and same_work else "-"
        if name == "chain_reuse_1000":
            met = "yes" if o is not None and "chain_1000" in theirs and o <= theirs["chain_1000"]["value"] / 20 else "no"
        elif test is None or o is None or (g is None and "Graflow" in target and "naive" not in target):
            met = ""
        else:
            met = "yes" if test(o, g, ours) else "**no**"
        out.append(f"| {label} | {fmt(o)} | {fmt(g)} | {ratio} | {unit} | {target} | {met} |")
    out.append("\nThe Redis rows run on one redis-server started by bench/run.sh on loopback, ours through")
    out.append("`graflow-host worker` processes, Graflow's through its own `python -m graflow.worker.main` workers and")
    out.append("`backend=REDIS` groups, each with its defaults but the concurrency named in the details.")
    out.append("\nThe CPU-bound pair runs different work in each system (a loop in a wasm guest, a loop in Python):")
    out.append("compare their speed-ups, not their times.")
    out.append("\nDetails of each measurement (what is timed, how many runs):\n")
    for name, _, _, _ in TARGETS:
        for who, res in (("graflow-host", ours), ("Graflow", theirs)):
            if name in res:
                out.append(f"- `{name}` ({who}): {res[name]['detail']}")
    notes = os.path.join(os.path.dirname(__file__), "notes.md")
    if os.path.exists(notes):
        out.append("\n" + open(notes).read())
    print("\n".join(out))


if __name__ == "__main__":
    main()
