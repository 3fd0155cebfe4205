#!/usr/bin/env python3
"""Runs multiproc's benchmark for two builds side by side, in one run:
the working tree against an earlier revision, for a change that must not
move (or claims to move) a figure.

Usage:
    python3 bench/ab.py BASE_REV [--rounds N] [--reps N] [WORKLOAD...]

BASE_REV is checked out in a temporary git worktree and its bench built in
a target directory of its own (kept in $TMPDIR between runs, so a second
comparison against the same revision skips the build). Then, workload by
workload, the old and the new bench run alternately (the order flips each
round, so neither always runs on a warmer machine), and each row prints
the median over the rounds of each build's figure, and new/old oriented so
that > 1 means the new build is better. Only multiproc's rows are compared:
the raw limits are the same code in both.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOWER_IS_BETTER = ("us", "ms")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def lower_is_better(unit):
    return unit in LOWER_IS_BETTER or unit.startswith(tuple(u + "/" for u in LOWER_IS_BETTER))


def build(cwd, target_dir):
    """Builds the bench in `cwd` and returns its executable."""
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir) if target_dir else None
    out = subprocess.run(["cargo", "bench", "--bench", "mp", "--no-run", "--message-format=json"],
                         cwd=cwd, env=env, stdout=subprocess.PIPE, check=True, text=True)
    for line in out.stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "mp":
            return msg["executable"]
    sys.exit("ab.py: cargo did not report the mp bench executable")


def base_build(rev):
    """Checks `rev` out in a worktree and builds its bench."""
    sha = subprocess.run(["git", "rev-parse", "--verify", rev + "^{commit}"], cwd=ROOT, stdout=subprocess.PIPE,
                         check=True, text=True).stdout.strip()
    place = os.path.join(tempfile.gettempdir(), f"multiproc-ab-{sha[:12]}")
    tree, target = os.path.join(place, "tree"), os.path.join(place, "target")
    if not os.path.isdir(tree):
        subprocess.run(["git", "worktree", "add", "--detach", "-f", tree, sha], cwd=ROOT, check=True)
    return build(tree, target)


def rows(binary, reps, workload):
    out = subprocess.run([binary, "--reps", str(reps), workload], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    if out.returncode != 0:
        sys.exit(f"ab.py: {binary} {workload} failed with {out.returncode}")
    for line in out.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if row.get("impl") == "multiproc":
            yield (row["workload"], json.dumps(row["params"], sort_keys=True), row["unit"]), row["unit_value"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("workloads", nargs="*")
    args = ap.parse_intermixed_args()
    log(f"building {args.base} ...")
    old = base_build(args.base)
    log("building the working tree ...")
    new = build(ROOT, None)
    workloads = args.workloads or [
        w for w in subprocess.run([new, "--list"], stdout=subprocess.PIPE, text=True).stdout.split()
        if w != "manager_dict"
    ]
    results = {}
    for w in workloads:
        for i in range(args.rounds):
            order = [("old", old), ("new", new)] if i % 2 == 0 else [("new", new), ("old", old)]
            for tag, binary in order:
                for key, value in rows(binary, args.reps, w):
                    results.setdefault(key, {"old": [], "new": []})[tag].append(value)
        log(f"{w}: done")
    print(f"{'workload':22} {'params':60} {'unit':14} {'old':>11} {'new':>11} {'new/old':>8}")
    for (w, params, unit), got in results.items():
        if not got["old"] or not got["new"]:
            continue
        o, n = statistics.median(got["old"]), statistics.median(got["new"])
        r = o / n if lower_is_better(unit) else n / o
        print(f"{w:22} {params[:60]:60} {unit:14} {o:11.4g} {n:11.4g} {r:8.3f}")


if __name__ == "__main__":
    main()
