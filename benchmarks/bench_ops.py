"""Benchmark the convolution and pooling ops at the layer shapes of the paper's 2C2FC network.

Run from the repository root::

    python benchmarks/bench_ops.py            # full run, batch 125
    python benchmarks/bench_ops.py --quick    # smoke run: batch 25, few repeats

For every op it reports the median wall time over the repeats, the achieved GFLOP/s and that
rate as a fraction of the machine's float32 GEMM peak, measured in the same run as the best of
several ``a @ b`` products of two 2048 x 2048 float32 matrices. The FLOPs of a convolution (and
of its two adjoints, which do the same multiply-adds) are ``2*N*F*C*KH*KW*OH*OW``. Pooling does
no multiply-adds worth counting: for it the table gives the effective memory bandwidth instead
(bytes of the arrays read and written, divided by the time).

The results go to ``benchmarks/results/ops.json`` (``--out`` to change), together with a
description of the machine. The backend is the active one (``MINIMAL_EP_BACKEND``).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy

from minimal_ep import backend
from minimal_ep.conv import conv2d, conv2d_weight, conv_transpose2d
from minimal_ep.pooling import avg_pool2d, avg_unpool2d, max_pool2d, max_unpool2d

QUICK_OUT = pathlib.Path(__file__).resolve().parent / "results" / "quick" / "ops.json"
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "ops.json"

# The two convolutional layers of 2C2FC (28x28 input): conv 3x3, stride 1, no padding, 2x2 pool.
LAYERS = {
    "conv1": dict(C=1, H=28, W=28, F=128, K=3, pool=2),      # 28x28 -> 26x26 -> pool 13x13
    "conv2": dict(C=128, H=13, W=13, F=256, K=3, pool=2),    # 13x13 -> 11x11 -> pool 5x5
}


def _sync(xp):
    """Wait for the GPU (CuPy launches kernels asynchronously); nothing to do on NumPy."""
    if xp is not numpy:
        xp.cuda.Stream.null.synchronize()


def time_call(fn, xp, repeats, warmup=1):
    """Wall times in seconds of ``repeats`` calls of ``fn()``, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    _sync(xp)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(xp)
        times.append(time.perf_counter() - t0)
    return times


def gemm_peak(xp, n, repeats):
    """Best float32 GEMM rate in GFLOP/s: one n x n times n x n product, best of ``repeats``."""
    rng = backend.default_rng(0)
    a = xp.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
    b = xp.asarray(rng.standard_normal((n, n), dtype=numpy.float32))
    times = time_call(lambda: a @ b, xp, repeats, warmup=2)
    return {"n": n, "repeats": repeats, "best_s": min(times), "gflops": 2 * n ** 3 / min(times) / 1e9}


def machine_info(xp):
    """CPU model, core counts, Python, NumPy and BLAS: what the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
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
        "blas": blas,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS") if k in os.environ},
        "backend": backend.get_backend(),
    }
    if xp is not numpy:
        info["cupy"] = xp.__version__
        info["gpu"] = xp.cuda.runtime.getDeviceProperties(0)["name"].decode()
    return info


def layer_cases(name, spec, N, xp):
    """(op name, callable, FLOPs or None, bytes moved) for every op of one layer."""
    rng = backend.default_rng(1)
    C, H, W, F, K, P = (spec[k] for k in ("C", "H", "W", "F", "K", "pool"))
    OH, OW = H - K + 1, W - K + 1
    draw = lambda *shape: xp.asarray(rng.standard_normal(shape, dtype=numpy.float32))  # noqa: E731
    x, w, b, gy = draw(N, C, H, W), draw(F, C, K, K), draw(F), draw(N, F, OH, OW)
    flops = 2 * N * F * C * K * K * OH * OW
    s = gy                                    # the conv output, (N, F, OH, OW), is what is pooled
    pooled, idx = max_pool2d(s, P)
    item = 4
    big, small = s.size * item, pooled.size * item
    return [
        ("conv2d", lambda: conv2d(x, w, b), flops, None),
        ("conv_transpose2d", lambda: conv_transpose2d(gy, w, output_size=(H, W)), flops, None),
        ("conv2d_weight", lambda: conv2d_weight(x, gy, K), flops, None),
        ("max_pool2d", lambda: max_pool2d(s, P), None, big + small + idx.size * idx.itemsize),
        ("max_unpool2d", lambda: max_unpool2d(pooled, idx, P, (OH, OW)), None,
         big + small + idx.size * idx.itemsize),
        ("avg_pool2d", lambda: avg_pool2d(s, P), None, big + small),
        ("avg_unpool2d", lambda: avg_unpool2d(pooled, P, output_size=(OH, OW)), None, big + small),
    ], dict(N=N, C=C, H=H, W=W, F=F, KH=K, KW=K, OH=OH, OW=OW, pool=P)


def run(batch, repeats, gemm_n, gemm_repeats):
    """All measurements, as the dict that is written to JSON."""
    xp = backend.get_xp()
    load_before = os.getloadavg()
    peak = gemm_peak(xp, gemm_n, gemm_repeats)
    rows = []
    for name, spec in LAYERS.items():
        cases, shape = layer_cases(name, spec, batch, xp)
        for op, fn, flops, nbytes in cases:
            times = time_call(fn, xp, repeats)
            med = statistics.median(times)
            row = {"layer": name, "op": op, "shape": shape, "dtype": "float32",
                   "median_s": med, "min_s": min(times), "repeats": repeats,
                   "flops": flops, "gflops": None, "fraction_of_peak": None, "gbytes_per_s": None}
            if flops is not None:
                row["gflops"] = flops / med / 1e9
                row["fraction_of_peak"] = row["gflops"] / peak["gflops"]
            if nbytes is not None:
                row["gbytes_per_s"] = nbytes / med / 1e9
            rows.append(row)
    # the peak again at the end: if other work shared the machine, the two disagree
    peak_end = gemm_peak(xp, gemm_n, gemm_repeats)
    for row in rows:
        if row["gflops"] is not None:
            row["fraction_of_peak_end"] = row["gflops"] / peak_end["gflops"]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(xp),
        "gemm_peak": peak,
        "gemm_peak_end": peak_end,
        "loadavg_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "batch": batch,
        "ops": rows,
    }


def print_table(result):
    peak = result["gemm_peak"]
    print(f"float32 GEMM peak ({peak['n']}x{peak['n']}, best of {peak['repeats']}): "
          f"{peak['gflops']:.1f} GFLOP/s    batch {result['batch']}, "
          f"{result['machine']['cpu_model']}, {result['machine']['cpu_count']} cores")
    end, load = result["gemm_peak_end"]["gflops"], result["loadavg_1min"]
    print(f"GEMM peak again at the end: {end:.1f} GFLOP/s; 1-min load average before/after: "
          f"{load['before']:.2f}/{load['after']:.2f} (other work on the machine skews every number)")
    print(f"{'layer':<6} {'op':<17} {'median ms':>10} {'GFLOP/s':>9} {'% peak':>7} {'GB/s':>7}")
    for r in result["ops"]:
        gf = f"{r['gflops']:9.1f}" if r["gflops"] is not None else f"{'-':>9}"
        fr = f"{100 * r['fraction_of_peak']:6.1f}%" if r["fraction_of_peak"] is not None else f"{'-':>7}"
        gb = f"{r['gbytes_per_s']:7.2f}" if r["gbytes_per_s"] is not None else f"{'-':>7}"
        print(f"{r['layer']:<6} {r['op']:<17} {1e3 * r['median_s']:10.3f} {gf} {fr} {gb}")


def write_text(text, path):
    """Write atomically: a temporary file in the same directory, then a rename over ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes the file private (0600); results are not
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(result, path):
    """``result`` as indented JSON, written atomically (:func:`write_text`)."""
    write_text(json.dumps(result, indent=2) + "\n", path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="batch 25, 3 repeats: a smoke run, not a measurement")
    parser.add_argument("--out", default=None,
                        help=f"JSON output (default {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 125, 25 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per op (default 15, 3 with --quick)")
    args = parser.parse_args(argv)
    batch = args.batch or (25 if args.quick else 125)
    repeats = args.repeats or (3 if args.quick else 15)
    result = run(batch, repeats, gemm_n=2048, gemm_repeats=3 if args.quick else 10)
    result["quick"] = args.quick
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    write_json(result, out)
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
