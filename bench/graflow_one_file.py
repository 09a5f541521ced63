"""The README's one-file workflow written for Graflow 0.2.0 (the same four
tasks, flow and input as examples/one-file/app.py): what `python3
graflow_one_file.py` does is what `graflow-host run app.py` does, one command
from a shell to the printed result."""
import json
import logging

logging.disable(logging.CRITICAL)

from graflow.core.decorators import task  # noqa: E402
from graflow.core.workflow import workflow  # noqa: E402

with workflow("one-file") as wf:

    @task(max_retries=2)
    def fetch(day: str) -> list:
        return [10, 20, 30]

    @task
    def double(fetch: list) -> list:
        return [v * 2 for v in fetch]

    @task
    def stats(fetch: list) -> dict:
        return {"count": len(fetch), "sum": sum(fetch)}

    @task
    def store(double: list, stats: dict) -> dict:
        return {"doubled": double, "stats": stats}

    fetch >> (double | stats) >> store
    result = wf.execute("fetch", initial_channel={"day": "2026-11-27"})
    print(json.dumps(result))
