#!/usr/bin/env python3
"""Python baselines for workloads that ../shared/bench/python/bench_mp.py
does not have yet, in its schema and with its helpers (imported from the
copy beside this file).

Usage is bench_mp.py's:
    python3 bench/python/bench_extra.py [--list] [--reps N] [WORKLOAD...]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_mp  # noqa: E402
from bench_mp import emit, per_s, repeat  # noqa: E402

mp = bench_mp.mp


def wl_manager_batch():
    """One call that carries 10,000 items: dict.update and list.extend on
    Manager() proxies, from the process that made the manager."""
    n = 10_000
    ctx = mp.get_context("fork")
    with ctx.Manager() as mgr:
        d = mgr.dict()
        items = {i: i for i in range(n)}

        def update():
            d.clear()
            t0 = time.perf_counter()
            d.update(items)
            t1 = time.perf_counter()
            assert len(d) == n
            return t1 - t0

        emit("manager_batch",
             {"call": "dict.update", "items": n, "types": "int -> int",
              "start_method": "fork"},
             repeat(update), per_s(n), "items/s")

        lst = mgr.list()
        values = list(range(n))

        def extend():
            del lst[:]
            t0 = time.perf_counter()
            lst.extend(values)
            t1 = time.perf_counter()
            assert len(lst) == n
            return t1 - t0

        emit("manager_batch",
             {"call": "list.extend", "items": n, "types": "int",
              "start_method": "fork"},
             repeat(extend), per_s(n), "items/s")


WORKLOADS = {
    "manager_batch": wl_manager_batch,
}


def main(argv):
    # bench_mp's command line, over these workloads.
    bench_mp.WORKLOADS.clear()
    bench_mp.WORKLOADS.update(WORKLOADS)
    return bench_mp.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
