"""The console's environments page with 50 environments, in headless Chromium.

  first paint          first-contentful-paint of the page (the browser's performance API),
                       from the start of navigation; vs `mme-rep env list` as a process
                       (the terminal's way to the same table) and vs the 300 ms target
  interactive          domInteractive of the same navigation
  update delay         from a scale through the API to the table showing it (the watch,
                       the console, server-sent events, the page); vs the 1 s target

The 50 environments are their revision records and one executor Deployment each (what the
table reads), made directly: deploying 50 real ones would measure the deploy, not the page.
Uses its own cluster state directory, so the user's cluster is left alone.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import time
from typing import Any

from testkit.browser import headless_chromium
from testkit.private_cluster import private_cluster

NAMESPACE = "bench-console"
ENVIRONMENTS = 50


def _objects(i: int) -> list[dict[str, Any]]:
    from mmerep.environments import RECORD_LABEL

    env = f"env{i:02d}"
    labels = {"app.kubernetes.io/instance": env, "app.kubernetes.io/managed-by": "mme-rep"}
    record = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": f"{env}-revision-1", "namespace": NAMESPACE,
                           "labels": {**labels, RECORD_LABEL: "true"}},
              "data": {"revision": "1", "template": "htcondor-batch", "status": "deployed",
                       "image": f"localhost:5000/mme-rep/htcondor-batch/{env}:v1",
                       "time": "2026-12-01T22:00:00Z"}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": f"{env}-executor", "namespace": NAMESPACE,
                               "labels": {**labels, "app.kubernetes.io/component": "executor"}},
                  "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                           "template": {"metadata": {"labels": labels}, "spec": {
                               "containers": [{"name": "startd", "image": "bench/startd:1"}]}}}}
    return [record, deployment]


def _cell(browser: Any, env: str) -> str:
    return str(browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.textContent : '';",
        f'tr[data-env="{NAMESPACE}/{env}"] td.pods'))


def run(rounds: int = 7) -> list[dict[str, object]]:
    from mmerep.cluster import local
    from mmerep.console import Console, start_in_thread
    from mmerep.profiles import get_profile

    with private_cluster("mmerep-bench-console-") as _work:
        local.up()
        kube = local.connect()
        kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
        kube.apply_all([o for i in range(ENVIRONMENTS) for o in _objects(i)])
        profile = dataclasses.replace(get_profile("local"), namespace=NAMESPACE)
        env_list = [sys.executable, "-m", "mmerep", "env", "list", "-A", "-o", "json"]
        running = start_in_thread(Console(kube, NAMESPACE, profile=profile))
        try:
            with headless_chromium() as browser:
                browser.get(running.url)  # sets the cookie; the watches start
                paints, interactive, listing = [], [], []
                for _ in range(rounds):
                    browser.get(running.base + "/")
                    deadline = time.monotonic() + 30
                    while True:  # the paint entry is recorded a moment after the load
                        timing = browser.execute_script(
                            "const p = performance.getEntriesByType('paint')"
                            "  .filter(e => e.name === 'first-contentful-paint')[0];"
                            "const n = performance.getEntriesByType('navigation')[0];"
                            "return [p ? p.startTime : null, n.domInteractive,"
                            " document.querySelectorAll('#envs tbody tr').length];")
                        if timing[0] is not None or time.monotonic() > deadline:
                            break
                        time.sleep(0.05)
                    assert timing[0] is not None, "no first-contentful-paint entry"
                    assert timing[2] == ENVIRONMENTS, timing
                    paints.append(timing[0] / 1000)
                    interactive.append(timing[1] / 1000)
                    start = time.perf_counter()
                    subprocess.run(env_list, check=True, capture_output=True)
                    listing.append(time.perf_counter() - start)
                browser.get(running.base + "/")
                deadline = time.monotonic() + 60
                while browser.execute_script("return document.body.dataset.live") != "1":
                    assert time.monotonic() < deadline, "the page never went live"
                    time.sleep(0.02)
                delays = []
                for r in range(rounds):
                    env = f"env{r % ENVIRONMENTS:02d}"
                    replicas = 2 + r
                    start = time.perf_counter()
                    kube.scale("Deployment", f"{env}-executor", replicas, NAMESPACE)
                    while not _cell(browser, env).endswith(f"/{replicas}"):
                        assert time.perf_counter() - start < 60, "the page did not follow"
                        time.sleep(0.005)
                    delays.append(time.perf_counter() - start)
        finally:
            running.stop()
    paint, inter = statistics.median(paints), statistics.median(interactive)
    lst, delay = statistics.median(listing), statistics.median(delays)
    return [
        {"case": f"first paint, {ENVIRONMENTS} environments", "median_ms": round(paint * 1000),
         "vs_env_list_process": f"{paint / lst:.2f}x", "vs_target_300ms": f"{paint / 0.3:.2f}x"},
        {"case": "time to interactive (domInteractive)", "median_ms": round(inter * 1000)},
        {"case": "env list -A -o json (process, baseline)", "median_ms": round(lst * 1000)},
        {"case": "update delay: API scale -> table", "median_ms": round(delay * 1000),
         "max_ms": round(max(delays) * 1000), "vs_target_1s": f"{delay / 1.0:.2f}x"},
    ]


if __name__ == "__main__":
    for row in run():
        print("  ".join(f"{k}={v}" for k, v in row.items()))
