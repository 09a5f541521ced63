"""The Python step of the mixed example: statistics over the readings."""
from graflow import task, channel, log, WitWorld  # noqa: F401  (WitWorld is the component's export)


@task
def stats(ingest: list) -> dict:
    """Mean, min and max of the readings (Python)."""
    mean = sum(ingest) / len(ingest) if ingest else None
    log.info(f"python saw {len(ingest)} readings")
    channel.set("stats_by", "python")
    return {"count": len(ingest), "mean": mean, "min": min(ingest, default=None), "max": max(ingest, default=None)}
