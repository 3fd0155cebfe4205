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
from bench_mp import emit, log, per_s, repeat  # noqa: E402

mp = bench_mp.mp


def wl_manager_batch():
    """One call that carries 10,000 items: dict.update and list.extend on
    Manager() proxies, from the process that made the manager."""
    n = 10_000
    ctx = mp.get_context("fork")
    with ctx.Manager() as mgr:
        d = mgr.dict()
        items = {i: i for i in range(n)}
        timed_batch(d.clear, lambda: d.update(items), lambda: len(d) == n,
                    {"call": "dict.update", "items": n, "types": "int -> int"}, n)
        lst = mgr.list()
        values = list(range(n))

        def empty():
            del lst[:]
        timed_batch(empty, lambda: lst.extend(values), lambda: len(lst) == n,
                    {"call": "list.extend", "items": n, "types": "int"}, n)


def timed_batch(reset, call, check, params, n):
    """Emits a manager_batch row: `call` timed alone, after `reset`,
    checked by `check`."""
    def once():
        reset()
        t0 = time.perf_counter()
        call()
        t1 = time.perf_counter()
        assert check()
        return t1 - t0

    emit("manager_batch", dict(params, start_method="fork"),
         repeat(once), per_s(n), "items/s")

MPI_RANKS = 3
MPI_CASES = [(5_000, 1), (1_000_000, 1000)]


def mpirun_cmd(ranks, *argv):
    return ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np",
            str(ranks), *argv]


def mpi4py_python():
    """This Python if it has mpi4py, else Debian's (python3-mpi4py)."""
    import subprocess
    for python in (sys.executable, "/usr/bin/python3"):
        if os.path.exists(python) and subprocess.run(
                [python, "-c", "import mpi4py.futures"],
                stderr=subprocess.DEVNULL).returncode == 0:
            return python
    return None


def wl_mpi_pool():
    """mpi4py.futures' MPIPoolExecutor.map of squares over MPI_RANKS ranks
    (rank 0 submits, the others work), at chunksize 1 and 1000. Outside
    mpirun it starts itself under it (`python -m mpi4py.futures`, static
    mode) and passes the lines through."""
    import shutil
    import subprocess
    if "OMPI_COMM_WORLD_SIZE" not in os.environ:
        if shutil.which("mpirun") is None:
            log("# mpi_pool: mpirun is not installed (apt-get install "
                "openmpi-bin python3-mpi4py); no rows")
            return
        python = mpi4py_python()
        if python is None:
            log("# mpi_pool: no Python here has mpi4py (apt-get install "
                "python3-mpi4py); no rows")
            return
        cmd = mpirun_cmd(MPI_RANKS, python, "-m", "mpi4py.futures",
                         os.path.abspath(__file__), "--reps",
                         str(bench_mp.REPS), "mpi_pool")
        out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(out.stdout)
        if out.returncode != 0:
            log(f"# mpi_pool: mpirun exited with {out.returncode}")
        return
    from mpi4py.futures import MPIPoolExecutor
    with MPIPoolExecutor() as ex:
        list(ex.map(bench_mp.square, range(100)))  # workers up and warm
        for n, chunksize in MPI_CASES:
            def run():
                t0 = time.perf_counter()
                out = list(ex.map(bench_mp.square, range(n),
                                  chunksize=chunksize))
                t1 = time.perf_counter()
                assert out[-1] == (n - 1) ** 2
                return t1 - t0

            emit("mpi_pool",
                 {"api": "MPIPoolExecutor.map", "n": n,
                  "chunksize": chunksize, "ranks": MPI_RANKS},
                 repeat(run), per_s(n), "items/s",
                 impl="python-mpi4py")


def wl_scaling_queue_producers():
    """200,000 messages of 64 bytes through one Queue from 1, 2, 4 or 8
    producer processes, timed from "go" to the last get."""
    n = 200_000
    msg = os.urandom(64)
    ctx = mp.get_context("fork")
    for producers in (1, 2, 4, 8):
        def run():
            q = ctx.Queue()
            procs, ctrls = bench_mp._run_children(
                ctx, [(bench_mp._child_queue_producer, (q, n // producers, msg))
                      for _ in range(producers)])
            t0 = bench_mp._handshake_start(ctrls)
            get = q.get
            for _ in range(n):
                m = get()
            t1 = time.perf_counter()
            assert m == msg
            bench_mp._wait_done(ctrls)
            bench_mp._join_all(procs, ctrls)
            q.close()
            return t1 - t0

        emit("scaling_queue_producers",
             {"queue": "Queue", "start_method": "fork", "n": n,
              "msg": "bytes[64]", "producers": producers},
             repeat(run), per_s(n), "msgs/s")


def wl_scaling_pool_workers():
    """20,000 square tasks through imap_unordered with chunksize 1 on a
    pool of 1, 2, 4, 16 or 64 workers."""
    n = 20_000
    ctx = mp.get_context("fork")
    for workers in (1, 2, 4, 16, 64):
        with ctx.Pool(workers) as pool:
            pool.map(bench_mp.square, range(1000), chunksize=1)

            def run():
                t0 = time.perf_counter()
                count = sum(1 for _ in pool.imap_unordered(
                    bench_mp.square, range(n), chunksize=1))
                t1 = time.perf_counter()
                assert count == n
                return t1 - t0

            emit("scaling_pool_workers",
                 {"start_method": "fork", "processes": workers, "n": n,
                  "chunksize": 1},
                 repeat(run), bench_mp.us_per(n), "us/task")


def rss_pss_kib(pid):
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("Rss", "Pss"):
                fields[name] = float(rest.split()[0])
    return fields["Rss"], fields["Pss"]


def wl_scaling_worker_memory():
    """An idle, warm Pool(4)'s resident and proportional memory per worker
    (Rss and Pss of /proc/PID/smaps_rollup, KiB), per start method. The
    "seconds" fields of these rows hold KiB."""
    workers = 4
    for method in ("fork", "spawn", "forkserver"):
        ctx = mp.get_context(method)
        rss, pss = [], []
        for _ in range(bench_mp.REPS):
            with ctx.Pool(workers) as pool:
                pool.map(bench_mp.square, range(100), chunksize=1)
                pids = [p.pid for p in pool._pool]
                assert len(pids) == workers
                both = [rss_pss_kib(pid) for pid in pids]
                rss.append(sum(r for r, _ in both) / workers)
                pss.append(sum(p for _, p in both) / workers)
        for metric, values in (("RSS", rss), ("PSS", pss)):
            emit("scaling_worker_memory",
                 {"start_method": method, "processes": workers,
                  "metric": metric, "state": "idle after a map"},
                 values, lambda v: v, "KiB/worker")


WORKLOADS = {
    "manager_batch": wl_manager_batch,
    "mpi_pool": wl_mpi_pool,
    "scaling_queue_producers": wl_scaling_queue_producers,
    "scaling_pool_workers": wl_scaling_pool_workers,
    "scaling_worker_memory": wl_scaling_worker_memory,
}


def main(argv):
    # bench_mp's command line, over these workloads.
    bench_mp.WORKLOADS.clear()
    bench_mp.WORKLOADS.update(WORKLOADS)
    return bench_mp.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
