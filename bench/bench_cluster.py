"""`cluster up`: cold (nothing running, binaries cached) vs warm (already running).

Uses its own state directory so the user's cluster is left alone. The one-off cold
*build* of the binaries is not repeated here (it takes tens of minutes); CI's first run
on a machine reports it, and `mme-rep cluster build` times it.
"""

from __future__ import annotations

import time

from testkit.private_cluster import private_cluster


def run() -> list[dict[str, object]]:
    from mmerep.cluster import local

    with private_cluster("mmerep-bench-"):
        start = time.perf_counter()
        local.up()
        cold = time.perf_counter() - start
        start = time.perf_counter()
        info = local.up()
        warm = time.perf_counter() - start
        assert info.already_running
        start = time.perf_counter()
        local.down()
        down = time.perf_counter() - start
    return [
        {"case": "cluster up (stopped -> running)", "seconds": round(cold, 2), "ratio": 1.0},
        {"case": "cluster up (already running)", "seconds": round(warm, 2),
         "ratio": round(warm / cold, 3)},
        {"case": "cluster down", "seconds": round(down, 2), "ratio": round(down / cold, 3)},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
