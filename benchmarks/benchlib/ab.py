"""A/B: the same EP batch of every net, timed for baseline commits and for this checkout, interleaved.

The issues' targets are speedups over earlier commits measured in the same run (issue 25: the head
before it, ``9374924``, for every net; ``fbe01e1``, the code before the fast path, for the nets
compared with Laborieux et al.'s PyTorch code). :func:`run_ab` exports each baseline's
``minimal_ep/`` with ``git archive`` into a temporary directory, then times each net in child
processes (``ab_child.py``) with PYTHONPATH set to one version or another, the order reversed
every repetition (baselines, current, then current, baselines reversed, ...) so that slow drifts
of a shared machine hit every version alike. Each child builds the net, warms up, times one batch
and exits. The result per baseline and net: the times of both versions, their medians, and the
speedup of every pair (baseline time / current time of the same repetition) with its median, which
is what the targets are checked against.
"""
import io
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tarfile
import tempfile

from .common import HERE, REPO, UsageError, load_record, thread_env, usage

CHILD = HERE / "ab_child.py"


def _git(*args, binary=False):
    """Output of ``git -C REPO args`` (bytes with ``binary``); UsageError when git fails."""
    try:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, check=True,
                              text=not binary)
    except FileNotFoundError:
        raise UsageError("git is not installed: the A/B against a baseline commit needs it "
                         "(--baseline none skips it)") from None
    except subprocess.CalledProcessError as err:
        msg = err.stderr if isinstance(err.stderr, str) else err.stderr.decode(errors="replace")
        last = msg.strip().splitlines()[-1] if msg.strip() else str(err)
        raise UsageError(f"git {' '.join(args[:2])} failed: {last}") from None
    return done.stdout


def resolve_commit(ref):
    """The full SHA of ``ref`` in this repository; UsageError when it is not a commit here."""
    try:
        return _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").strip()
    except UsageError:
        raise UsageError(f"--baseline {ref!r} is not a commit of {REPO} (a shallow clone? "
                         "git fetch --unshallow, or --baseline none)") from None


def export_package(sha, dest):
    """Write ``minimal_ep/`` of commit ``sha`` under ``dest`` (no work tree, no git state changed)."""
    archive = _git("archive", "--format=tar", sha, "minimal_ep", binary=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:                                              # Python without extraction filters
            tar.extractall(dest)


def current_version():
    """``{"commit", "dirty"}`` of this checkout (dirty: minimal_ep/ differs from the commit)."""
    try:
        sha = _git("rev-parse", "HEAD").strip()
        dirty = bool(_git("status", "--porcelain", "--", "minimal_ep").strip())
    except UsageError:
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty}


def child_case(net, repeats=1):
    """What ab_child.py needs to time ``net`` (its measured batch: the extrapolated nets' short one)."""
    T_free, T_nudge = net.measured()
    build = {k: list(v) if isinstance(v, tuple) else v for k, v in net.build.items()}
    return {"name": net.name, "build": build, "batch": net.batch, "T_free": T_free, "T_nudge": T_nudge,
            "repeats": repeats}


def run_child(root, cases, threads, timeout=1800):
    """Run ab_child.py with ``root`` first on PYTHONPATH; its ``{"minimal_ep", "times"}``.

    RuntimeError if the child fails or imported minimal_ep from anywhere but ``root``.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIMAL_EP_FAST")}
    env.update(thread_env(threads), PYTHONPATH=str(root), MINIMAL_EP_BACKEND="numpy")
    with tempfile.TemporaryDirectory() as cwd:          # nothing importable in the working directory
        done = subprocess.run([sys.executable, str(CHILD), json.dumps({"cases": cases})], env=env,
                              cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"A/B child for {root} failed (status {done.returncode}): {last}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if not pathlib.Path(out["minimal_ep"]).resolve().is_relative_to(pathlib.Path(root).resolve()):
        raise RuntimeError(f"A/B child imported {out['minimal_ep']}, not the package under {root}")
    return out


def summarise(name, baseline, current):
    """Medians and per-pair speedups of one net's times, {version: [seconds]} paired by index."""
    speedups = [b / c for b, c in zip(baseline, current)]
    return {"net": name, "baseline_s": baseline, "current_s": current,
            "baseline_median_s": statistics.median(baseline), "current_median_s": statistics.median(current),
            "speedups": speedups, "speedup_median": statistics.median(speedups),
            "ratio_of_medians": statistics.median(baseline) / statistics.median(current)}


def run_ab(plan, repeats=5, threads=(2,), one_child_per_net=True, log=print):
    """Time every net's EP batch for each baseline commit and for this checkout, interleaved.

    Parameters
    ----------
    plan : dict
        ``{ref: [nets.Net, ...]}``: the commits of this repository to compare with, in order, and
        the nets each is timed on (the current version runs every net of any of them).
    repeats : int
        Repetitions; each times every version once per net and thread count, every batch in a
        fresh child process.
    threads : sequence of int
        BLAS threads of the children: every repetition runs each count in turn.
    one_child_per_net : bool
        False: one child per version, thread count and repetition times every net (the --quick
        mode: fewer process starts, pairs further apart in time).

    Returns
    -------
    dict
        ``current`` (commit, dirty), ``threads``, ``repeats``, ``load`` (of each repetition,
        :func:`~benchlib.common.load_record`), and ``comparisons``: per thread count and ref, in
        the order given, ``{"ref", "commit", "threads", "nets"}`` with one :func:`summarise` row per
        net (and the T run).
    """
    refs, threads = list(plan), list(threads)
    shas = {ref: resolve_commit(ref) for ref in refs}
    names = {ref: [net.name for net in plan[ref]] for ref in refs}
    cases, seen = [], set()
    for ref in refs:
        for net in plan[ref]:
            if net.name not in seen:
                seen.add(net.name)
                cases.append(child_case(net))
    groups = [[case] for case in cases] if one_child_per_net else [cases]
    times = {(version, t): {c["name"]: [] for c in cases} for version in ["current"] + refs for t in threads}
    loads = []
    with tempfile.TemporaryDirectory(prefix="minimal_ep_baselines_") as tmp:
        roots = {"current": REPO}
        for k, ref in enumerate(refs):
            roots[ref] = pathlib.Path(tmp) / f"{k}_{shas[ref][:10]}"
            roots[ref].mkdir()
            export_package(shas[ref], roots[ref])
        for r in range(repeats):
            start = usage()
            order = refs + ["current"] if r % 2 == 0 else ["current"] + refs[::-1]
            for group in groups:
                for t in (threads if r % 2 == 0 else threads[::-1]):
                    for version in order:
                        mine = [c for c in group if version == "current" or c["name"] in names[version]]
                        if not mine:
                            continue
                        for name, ts in run_child(roots[version], mine, t)["times"].items():
                            times[(version, t)][name] += ts
            loads.append(load_record(start, max(threads)))
            others = loads[-1]["other_cores"]
            log(f"  A/B repetition {r + 1}/{repeats} done, 1-min load {loads[-1]['after']:.2f}"
                + ("" if others is None else f", other processes {others:.2f} cores"))
    comparisons = []
    for t in threads:
        for ref in refs:
            rows = []
            for case in cases:
                if case["name"] in names[ref]:
                    row = summarise(case["name"], times[(ref, t)][case["name"]], times[("current", t)][case["name"]])
                    rows.append(dict(row, T_free=case["T_free"], T_nudge=case["T_nudge"], batch=case["batch"]))
            comparisons.append({"ref": ref, "commit": shas[ref], "threads": t, "nets": rows})
    return {"current": current_version(), "threads": threads, "repeats": repeats,
            "one_child_per_net": one_child_per_net, "load": loads, "comparisons": comparisons}
