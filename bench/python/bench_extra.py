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


WORKLOADS = {
    "manager_batch": wl_manager_batch,
    "mpi_pool": wl_mpi_pool,
}


def main(argv):
    # bench_mp's command line, over these workloads.
    bench_mp.WORKLOADS.clear()
    bench_mp.WORKLOADS.update(WORKLOADS)
    return bench_mp.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
