#!/usr/bin/env python3
"""Runs Python's multiprocessing benchmark and multiproc's side by side, in
one invocation, interleaved workload by workload, and prints how they
compare, with the physical limit (or rayon) measured in the same run.

Usage:
    python3 bench/compare.py [--reps N] [--json] [--plot FILE.png]
                             [--python-bench PATH] [WORKLOAD...]

Workloads that the shared baseline does not have yet take their Python
rows from bench/python/bench_extra.py (same schema).

Every row of Python's baseline (impl "python-multiprocessing", or
"python-mpi4py" for mpi_pool) is matched
with multiproc's row of the same workload and params, and with the
limit: the "raw" row (or, where there is none, the "rayon" row) of the
same workload and params. Rows of ours that Python has no row for (a
timed map, scaling_spawn_join) follow, against their limit only. Every
workload of ours runs by default; Python's side runs where it has one.
Ratios are oriented so that > 1 means multiproc is better: for a time
(us/..., ms) it is other/multiproc, for a rate (.../s, GB/s, x) it is
multiproc/other.

--json prints one line per Python row instead of the table, with these
keys (stable, for tools):
    workload, params, unit, python, multiproc, limit, limit_impl,
    ratio_vs_python, ratio_vs_limit
(missing values are null).

--plot FILE.png draws both ratios as a bar chart, and the scaling_*
workloads as curves in FILE-scaling.png (needs matplotlib: `pip install
matplotlib`, or Debian's python3-matplotlib).
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_BENCH = os.path.join(ROOT, "..", "shared", "bench", "python", "bench_mp.py")
VENDORED_BENCH = os.path.join(ROOT, "bench", "python", "bench_mp.py")
# Python baselines for workloads the shared script does not have yet.
EXTRA_BENCH = os.path.join(ROOT, "bench", "python", "bench_extra.py")
LOWER_IS_BETTER = ("us", "ms", "KiB")
# The Python rows: multiprocessing's, and mpi4py.futures' for mpi_pool.
PYTHON_IMPLS = ("python-multiprocessing", "python-mpi4py")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def lower_is_better(unit):
    # "msgs/s" is a rate: match whole time units, not prefixes.
    return unit in LOWER_IS_BETTER or unit.startswith(tuple(u + "/" for u in LOWER_IS_BETTER))


def ratio(unit, ours, other):
    if ours is None or other is None or ours == 0 or other == 0:
        return None
    return other / ours if lower_is_better(unit) else ours / other


def key(row):
    return (row["workload"], json.dumps(row["params"], sort_keys=True))


def build_ours():
    """Builds the bench and returns the path of its executable."""
    # The MPI rows need Open MPI (mpicc: libopenmpi-dev) to build.
    features = ["--features", "mpi"] if shutil.which("mpicc") else []
    out = subprocess.run(
        ["cargo", "bench", "--bench", "mp", "--no-run", "--message-format=json", *features],
        cwd=ROOT, stdout=subprocess.PIPE, check=True, text=True)
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "mp":
            return msg["executable"]
    sys.exit("compare.py: cargo did not report the mp bench executable")


def run_lines(cmd):
    """Runs cmd, streaming its stderr through, and returns its JSON lines."""
    out = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if out.returncode != 0:
        sys.exit(f"compare.py: {' '.join(cmd)} failed with {out.returncode}")
    rows = []
    for line in out.stdout.splitlines():
        line = line.strip()
        if line.startswith("{"):
            rows.append(json.loads(line))
    return rows


def list_workloads(cmd):
    out = subprocess.run(cmd + ["--list"], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True, check=True)
    return [w for w in out.stdout.split() if w]


def fmt_num(x):
    if x is None:
        return "—"
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if mag >= 5:
        return f"{x:,.0f}"
    digits = max(0, 2 - mag)
    return f"{x:,.{digits}f}"


def fmt_ratio(r):
    return "—" if r is None else f"{r:.2f}×"


def fmt_params(params):
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def match(python_rows, our_rows):
    ours = {}
    limits = {}
    for r in our_rows:
        if r["impl"] == "multiproc":
            ours[key(r)] = r
        elif r["impl"] == "raw":
            # The two-process floor is the fair limit; rayon's
            # in-process figure stands only where no raw row exists.
            limits[key(r)] = r
        elif r["impl"] == "rayon":
            limits.setdefault(key(r), r)
    matched = []
    seen = set()

    def row(base, pv):
        k = key(base)
        seen.add(k)
        m = ours.get(k)
        lim = limits.get(k)
        unit = base["unit"]
        mv = m["unit_value"] if m else None
        lv = lim["unit_value"] if lim else None
        matched.append({
            "workload": base["workload"],
            "params": base["params"],
            "unit": unit,
            "python": pv,
            "multiproc": mv,
            "limit": lv,
            "limit_impl": lim["impl"] if lim else None,
            "ratio_vs_python": ratio(unit, mv, pv),
            "ratio_vs_limit": ratio(unit, mv, lv),
        })

    for p in python_rows:
        if p["impl"] in PYTHON_IMPLS:
            row(p, p["unit_value"])
    # Our rows that Python has no row for (a timed map, a scaling point
    # Python would take minutes over): against the limit only.
    for k, m in ours.items():
        if k not in seen:
            row(m, None)
    return matched


def print_table(rows):
    header = ["workload", "params", "unit", "Python", "multiproc", "limit",
              "vs Python", "vs limit"]
    body = []
    for r in rows:
        limit = fmt_num(r["limit"])
        if r["limit_impl"] and r["limit"] is not None:
            limit += f" ({r['limit_impl']})"
        body.append([r["workload"], fmt_params(r["params"]), r["unit"],
                     fmt_num(r["python"]), fmt_num(r["multiproc"]), limit,
                     fmt_ratio(r["ratio_vs_python"]),
                     fmt_ratio(r["ratio_vs_limit"])])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    line = lambda cells: "| " + " | ".join(
        c.ljust(w) for c, w in zip(cells, widths)) + " |"
    print(line(header))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        print(line(b))


def plot(rows, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("compare.py: --plot needs matplotlib (pip install matplotlib)")
    everything = rows
    rows = [r for r in rows if r["ratio_vs_python"] is not None]
    if not rows:
        sys.exit("compare.py: nothing to plot: no row has a multiproc figure")
    labels = [f"{r['workload']}\n{fmt_params(r['params'])[:60]}" for r in rows]
    vs_py = [r["ratio_vs_python"] for r in rows]
    vs_lim = [r["ratio_vs_limit"] or 0 for r in rows]
    fig, ax = plt.subplots(figsize=(11, 0.55 * len(rows) + 1.5))
    ys = range(len(rows))
    ax.barh([y + 0.2 for y in ys], vs_py, height=0.4, label="multiproc vs Python")
    ax.barh([y - 0.2 for y in ys], vs_lim, height=0.4, label="multiproc vs limit")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yticks(list(ys))
    ax.set_yticklabels(labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (> 1: multiproc is better)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    log(f"# wrote {path}")
    plot_scaling(plt, everything, path)


# The x axis of each scaling workload, and its axis label.
SCALING_X = {
    "scaling_spawn_join": ("n", "processes started and joined in sequence"),
    "scaling_queue_producers": ("producers", "producer processes"),
    "scaling_pool_workers": ("processes", "pool workers (2 cores)"),
    "scaling_worker_memory": ("start_method", "start method"),
}


def plot_scaling(plt, rows, path):
    """Draws the scaling_* rows as curves, one panel per workload, beside
    the ratio chart: FILE-scaling.png."""
    rows = [r for r in rows if r["workload"] in SCALING_X]
    if not rows:
        return
    workloads = [w for w in SCALING_X if any(r["workload"] == w for r in rows)]
    fig, axes = plt.subplots(1, len(workloads), figsize=(5 * len(workloads), 4.2), squeeze=False)
    for ax, w in zip(axes[0], workloads):
        xname, xlabel = SCALING_X[w]
        mine = [r for r in rows if r["workload"] == w]
        # One line per (who, the params other than x that vary).
        varying = {k for r in mine for k, v in r["params"].items()
                   if k != xname and any(o["params"].get(k) != v for o in mine)}
        lines = {}
        for r in mine:
            rest = fmt_params({k: v for k, v in r["params"].items() if k in varying})
            for who in ("python", "multiproc", "limit"):
                if r[who] is not None:
                    label = who if who != "limit" else (r["limit_impl"] or "limit")
                    lines.setdefault(f"{label} {rest}".strip(), []).append((r["params"][xname], r[who]))
        categorical = w == "scaling_worker_memory"
        for label, pts in sorted(lines.items()):
            pts.sort(key=lambda p: str(p[0]) if categorical else p[0])
            xs, ys = zip(*pts)
            ax.plot([str(x) for x in xs] if categorical else xs, ys, marker="o", label=label)
        if not categorical:
            ax.set_xscale("log")
            ticks = sorted({p[0] for pts in lines.values() for p in pts})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{t:,}" for t in ticks])
            ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(mine[0]["unit"])
        ax.set_title(w, fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    base, ext = os.path.splitext(path)
    out = f"{base}-scaling{ext or '.png'}"
    fig.savefig(out, dpi=120)
    log(f"# wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--plot", metavar="FILE.png")
    ap.add_argument("--python-bench", metavar="PATH",
                    help="bench_mp.py to run (default: ../shared/bench/python, "
                         "else the vendored copy in bench/python)")
    ap.add_argument("workloads", nargs="*")
    args = ap.parse_args()
    if args.reps < 1:
        sys.exit("compare.py: --reps must be at least 1")

    py_bench = args.python_bench or (
        SHARED_BENCH if os.path.exists(SHARED_BENCH) else VENDORED_BENCH)
    py_cmd = [sys.executable, py_bench]
    extra_cmd = [sys.executable, EXTRA_BENCH]
    log(f"# Python baseline: {py_bench} (and {EXTRA_BENCH})")
    ours = build_ours()
    our_cmd = [ours]
    shared_names = list_workloads(py_cmd)
    extra_names = [w for w in list_workloads(extra_cmd) if w not in shared_names]
    py_names = shared_names + extra_names
    our_names = list_workloads(our_cmd)
    # Every workload of ours; Python runs those it has too (the others,
    # such as scaling_spawn_join, stand against their limit only).
    names = args.workloads or our_names
    unknown = [w for w in names if w not in our_names]
    if unknown:
        sys.exit(f"compare.py: unknown workload(s) {unknown}; ours are "
                 f"{our_names}")

    python_rows, our_rows = [], []
    for i, name in enumerate(names):
        runs = [("multiproc", our_cmd)]
        if name in py_names:
            runs.insert(0, ("python", extra_cmd if name in extra_names else py_cmd))
        if i % 2:
            runs.reverse()  # alternate who goes first
        for who, cmd in runs:
            log(f"# {name}: {who} ...")
            rows = run_lines(cmd + ["--reps", str(args.reps), name])
            (python_rows if who == "python" else our_rows).extend(rows)

    rows = match(python_rows, our_rows)
    if args.json:
        for r in rows:
            print(json.dumps(r))
    else:
        print_table(rows)
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
