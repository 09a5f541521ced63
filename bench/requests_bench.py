#!/usr/bin/env python3
"""The Graflow side of the outbound row: a plain `requests.get` in Python to
the same local server as ours (BENCH_HTTP_PORT), a new connection per call
(no Session), 200 calls, median of 3 after one untimed round."""
import json
import os
import statistics
import time

import requests

url = f"http://127.0.0.1:{os.environ['BENCH_HTTP_PORT']}/ok"
n = 200


def once():
    started = time.perf_counter()
    for _ in range(n):
        r = requests.get(url)
        if r.status_code != 200:
            raise SystemExit(f"status {r.status_code}")
    return (time.perf_counter() - started) * 1e6 / n


once()
us = statistics.median([once() for _ in range(3)])
print(json.dumps({"name": "http_get_per_task", "value": us, "unit": "us/task",
                  "detail": f"{n} plain requests.get calls to the same local server (new connection each), median of 3"}))
