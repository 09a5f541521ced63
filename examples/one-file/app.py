"""A workflow in one file: the tasks and their flow.

    graflow-host run examples/one-file/app.py --input '{"day": "2026-11-27"}'

The first run builds the component (and installs the pinned toolchain into
the per-user cache); later runs reuse the build until this file changes."""
from graflow import task, workflow, channel


@task(max_retries=2)
def fetch(day: str) -> list:
    return [10, 20, 30]


@task
def double(fetch: list) -> list:          # declared input: fetch's result
    return [v * 2 for v in fetch]


@task
def stats(fetch: list) -> dict:
    return {"count": len(fetch), "sum": sum(fetch)}


@task
def store(double: list, stats: dict) -> dict:
    channel.set("rows", len(double))
    return {"doubled": double, "stats": stats}


workflow(flow="fetch >> (double | stats) >> store")
