"""What every benchmark shares: the clock, the GEMM peak, the machine, the load, atomic JSON.

Nothing here knows about networks; ``nets.py`` holds the nets, the ``bench_*.py`` scripts measure.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import sys
import time

import numpy

from minimal_ep import backend
from minimal_ep.run import cli
from minimal_ep.run.runs import atomic_write

HERE = pathlib.Path(__file__).resolve().parents[1]      # benchmarks/
REPO = HERE.parent
RESULTS = REPO / "results" / "benchmarks"               # the committed measurements
QUICK_RESULTS = RESULTS / "quick"                       # --quick smoke runs (git-ignored)
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
BUSY_CORES = 0.25        # other processes using more than this many cores on average: a busy machine
BUSY_LOAD = 0.5          # the same judged from the 1-min load average (where /proc/stat is missing)


class UsageError(ValueError):
    """Bad command-line input: the script prints it on one line and exits with status 2."""


Parser = cli.Parser                     # the scripts' parser: one-line errors, exit status 2
positive_int = cli.int_at_least(1)      # an argparse type: an integer >= 1


def thread_counts(text):
    """An argparse type: BLAS thread counts, comma-separated integers >= 1 ("2,1"), without repeats."""
    counts = [positive_int(v.strip()) for v in text.split(",") if v.strip()]
    if not counts:
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more thread counts, e.g. 2 or 2,1")
    return list(dict.fromkeys(counts))


def now():
    """The current UTC time, ISO 8601 to the second (the ``created`` key of every JSON file)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def sync(xp):
    """Wait for the GPU (CuPy launches kernels asynchronously); nothing to do on NumPy."""
    if xp is not numpy:
        xp.cuda.Stream.null.synchronize()


def time_call(fn, xp, repeats, warmup=1):
    """Wall times in seconds of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(xp)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(xp)
        times.append(time.perf_counter() - t0)
    return times


def gemm_peak(xp, n=2048, repeats=10):
    """Best float32 GEMM rate: one n x n times n x n product (2 n^3 FLOPs), best of ``repeats``.

    Returns
    -------
    dict
        ``n``, ``repeats``, ``best_s``, ``gflops``.
    """
    rng = backend.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
    best = min(time_call(lambda: a @ b, xp, repeats, warmup=2))
    return {"n": n, "repeats": repeats, "best_s": best, "gflops": 2 * n ** 3 / best / 1e9}


def thread_env(threads):
    """The environment variables that pin the BLAS libraries to ``threads`` threads."""
    return {var: str(threads) for var in THREAD_VARS}


def blas_threads():
    """The BLAS threads this process was started with (OPENBLAS_NUM_THREADS, else OMP_NUM_THREADS)."""
    for var in THREAD_VARS[:2]:
        if os.environ.get(var, "").strip().isdigit():
            return int(os.environ[var])
    return None


def machine_info(xp):
    """CPU model, core counts, Python, NumPy and BLAS, thread variables: what was measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception as err:                     # older NumPy: no mode="dicts"
        blas = {"error": repr(err)}
    info = {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "blas": {k: blas.get(k) for k in ("name", "version") if k in blas} or blas,
        "thread_env": {k: os.environ[k] for k in THREAD_VARS if k in os.environ},
        "backend": backend.get_backend(),
    }
    if xp is not numpy:
        info["cupy"] = xp.__version__
        info["gpu"] = xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return info


def load_average():
    """The 1-minute load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def _machine_cpu_seconds():
    """CPU seconds every process of the machine has run (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")      # all but idle and iowait


def _own_cpu_seconds():
    """CPU seconds of this process and of its children that have finished."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def usage():
    """Where the machine's CPU time stands now; :func:`load_record` compares two of these."""
    return {"loadavg": load_average(), "machine_cpu_s": _machine_cpu_seconds(), "own_cpu_s": _own_cpu_seconds(),
            "wall_s": time.perf_counter()}


def load_record(start, threads=None):
    """What else ran on the machine since ``start`` (a :func:`usage`): ``{"before", "after", "other_cores",
    "busy"}``.

    ``other_cores`` is the CPU time of every other process (the machine's total minus this process's and
    its children's) over the wall time: the cores someone else used, on average. Busy above BUSY_CORES.
    Without /proc/stat it is None, and busy is judged from the 1-minute load average instead (above
    BUSY_LOAD before, or above the run's own ``threads`` + 1 after; it lags by about a minute).
    """
    end = usage()
    record = {"before": start["loadavg"], "after": end["loadavg"], "other_cores": None}
    if start["machine_cpu_s"] is not None and end["machine_cpu_s"] is not None:
        others = (end["machine_cpu_s"] - start["machine_cpu_s"]) - (end["own_cpu_s"] - start["own_cpu_s"])
        record["other_cores"] = max(others, 0.0) / max(end["wall_s"] - start["wall_s"], 1e-9)
        record["busy"] = bool(record["other_cores"] > BUSY_CORES)
    else:
        record["busy"] = bool(start["loadavg"] > BUSY_LOAD or end["loadavg"] > (threads or 1) + 1.0)
    return record


def describe_load(load):
    """One line: the load average before/after and the cores other processes used."""
    text = f"1-min load average before/after: {load['before']:.2f} / {load['after']:.2f}"
    if load.get("other_cores") is not None:
        text += f"; other processes used {load['other_cores']:.2f} cores on average"
    return text


def warn_if_busy(load, out=sys.stderr):
    """Print :func:`describe_load`, and a warning when the machine was busy."""
    print(describe_load(load), file=out)
    if load["busy"]:
        print("WARNING: the machine was busy (other work was running): every time is suspect; "
              "measure again on an idle machine", file=out)


def write_text(text, path):
    """Write ``text`` atomically (:func:`minimal_ep.run.runs.atomic_write`), creating the folder."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(text.encode()))


def write_json(result, path):
    """``result`` as indented JSON, written atomically (:func:`write_text`)."""
    write_text(json.dumps(result, indent=2) + "\n", path)


def results_dir(quick):
    """Where a run's JSON and summary.md go: ``results/benchmarks`` (``quick``: its ``quick/``)."""
    return QUICK_RESULTS if quick else RESULTS


def default_out(name, quick):
    """``results/benchmarks/<name>`` or, for a --quick run, ``results/benchmarks/quick/<name>`` (git-ignored)."""
    return (QUICK_RESULTS if quick else RESULTS) / name


def run_cli(main, argv, prog):
    """Call ``main(argv)``; a :class:`UsageError` becomes one line on stderr and exit status 2."""
    try:
        return main(argv)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
