"""Benchmark the convolution and pooling ops, and whole conv-layer routes, at the layer shapes of the nets.

Run from the repository root::

    python benchmarks/bench_ops.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_ops.py --quick    # smoke run: batch 4, 2 calls per op

Shapes: the two conv layers of the paper's 2C2FC (3x3, batch 125) and of Laborieux et al.'s MNIST
net (5x5, 1 -> 32 -> 64 channels on 28x28 and 12x12 maps, batch 100). For each:

* the ops ``conv2d``, ``conv_transpose2d``, ``conv2d_weight`` on both paths (``fast``: those of
  :mod:`minimal_ep.fast.ops`; ``readable``: the im2col of :mod:`minimal_ep.conv`), with GFLOP/s
  (2 N C_out C KH KW OH OW each) and the fraction of the float32 GEMM peak of the same run; the
  pooling ops of :mod:`minimal_ep.pooling` (``readable``) and of the fast path (``fast``: max pooling
  with its offsets and max-unpooling, on the layout the fast layers keep the map in) with the
  bandwidth of the bytes they must read and write.
* a conv layer's three routes (forward, backward, dPhi/dw) in two forms: ``fused`` (the fast path's
  layer, ``minimal_ep.fast.fast_layer(layer)``: ``ConvAvgPool``, one stride-F convolution, or
  ``ConvMaxPool``) and ``readable`` (``layers.ConvPool``: convolution then pooling, the readable
  ops), for average and for max pooling.

Median of the timed calls after one warm-up call; scratch buffers are cleared before each shape.
Results: ``results/benchmarks/ops.json`` (``--out``). The backend is the active one
(``MINIMAL_EP_BACKEND``).
"""
import statistics
import sys

import numpy

from benchmarks.benchlib import common
from benchmarks.benchlib.common import Parser, positive_int
from benchmarks.benchlib.flops import layer_routes

from minimal_ep import backend, conv, fast
from minimal_ep.fast import ops as fast_ops
from minimal_ep.layers import ConvPool
from minimal_ep.pooling import AvgPool, MaxPool, avg_pool2d, avg_unpool2d, max_pool2d, max_unpool2d

# name: input channels C, map H = W, output channels, kernel K, padding, batch; 2x2 pooling after.
LAYERS = {
    "2c2fc conv1": dict(C=1, H=28, C_out=128, K=3, pad=0, N=125),       # 28 -> 26 -> 13
    "2c2fc conv2": dict(C=128, H=13, C_out=256, K=3, pad=0, N=125),     # 13 -> 11 -> 5
    "laborieux conv1": dict(C=1, H=28, C_out=32, K=5, pad=0, N=100),    # 28 -> 24 -> 12
    "laborieux conv2": dict(C=32, H=12, C_out=64, K=5, pad=0, N=100),   # 12 -> 8 -> 4
}
PATHS = ("fast", "readable")
FORMS = ("fused", "readable")            # fast.fast_layer(layer), layer


def _timed(fn, xp, repeats):
    times = common.time_call(fn, xp, repeats)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def op_rows(name, spec, N, xp, repeats):
    """The conv ops on both paths and the pooling ops, at one layer shape."""
    rng = backend.default_rng(1)
    C, H, C_out, K, pad = (spec[k] for k in ("C", "H", "C_out", "K", "pad"))
    OH = H + 2 * pad - K + 1
    draw = lambda *shape: xp.asarray(rng.random(shape, dtype=numpy.float32))  # noqa: E731
    x, w, gy = draw(N, C, H, H), draw(C_out, C, K, K), draw(N, C_out, OH, OH)
    flops = 2 * N * C_out * C * K * K * OH * OH
    rows = []
    ops = {"readable": {"conv2d": lambda: conv.conv2d(x, w, padding=pad),
                        "conv_transpose2d": lambda: conv.conv_transpose2d(gy, w, padding=pad, output_size=(H, H)),
                        "conv2d_weight": lambda: conv.conv2d_weight(x, gy, K, padding=pad)},
           "fast": {"conv2d": lambda: fast_ops.conv2d(x, w, 1, pad),
                    "conv_transpose2d": lambda: fast_ops.conv_transpose2d(gy, w, x.shape, 1, pad),
                    "conv2d_weight": lambda: fast_ops.conv2d_weight(x, gy, K, K, 1, pad)}}
    for path in PATHS:
        for op, fn in ops[path].items():
            rows.append(dict(layer=name, op=op, path=path, flops=flops, **_timed(fn, xp, repeats)))
    for path, op, fn, nbytes in pooling_ops(gy, 2):
        t = _timed(fn, xp, repeats)
        rows.append(dict(layer=name, op=op, path=path, bytes=nbytes, gbytes_per_s=nbytes / t["median_s"] / 1e9,
                         **t))
    return rows


def pooling_ops(z, F):
    """[(path, op, call, bytes it must read and write)] of the pooling ops on the conv output z (N, C, H, W)."""
    OH = z.shape[2]
    pooled, idx = max_pool2d(z, F)
    big, small, ib = z.nbytes, pooled.nbytes, idx.nbytes
    rows = [("readable", "max_pool2d", lambda: max_pool2d(z, F), big + small + ib),
            ("readable", "max_unpool2d", lambda: max_unpool2d(pooled, idx, F, (OH, OH)), big + small + ib),
            ("readable", "avg_pool2d", lambda: avg_pool2d(z, F), big + small),
            ("readable", "avg_unpool2d", lambda: avg_unpool2d(pooled, F, output_size=(OH, OH)), big + small)]
    z_fast = fast_ops.to_batch_last(z, role="bench_z").copy()          # the layout the fast layers pool in
    p_fast, i_fast = fast_ops.max_pool_bl(z_fast, F)
    rows += [("fast", "max_pool2d", lambda: fast_ops.max_pool_bl(z_fast, F), big + small + ib),
             ("fast", "max_unpool2d", lambda: fast_ops.max_unpool_bl(p_fast, i_fast, F, (OH, OH)),
              big + small + ib)]
    return rows


def route_rows(name, spec, N, xp, repeats):
    """A conv layer's forward, backward and dPhi/dw in the fused, two-step and readable forms."""
    rng = backend.default_rng(2)
    C, H, C_out, K, pad = (spec[k] for k in ("C", "H", "C_out", "K", "pad"))
    rows = []
    for pool in (AvgPool(2), MaxPool(2)):
        plain = ConvPool((C, H, H), C_out, K, pad, pool)
        x = xp.asarray(rng.random((N, C, H, H), dtype=numpy.float32))
        w = xp.asarray(rng.random(plain.weight_shape, dtype=numpy.float32) * 0.1)
        s = xp.asarray(rng.random((N,) + plain.shape, dtype=numpy.float32))
        for form in FORMS:
            layer = fast.fast_layer(plain) if form == "fused" else plain
            idx = layer.forward(w, x)[1]
            counts = {r: sum(f for _, f, _ in p) for r, p in layer_routes(layer, N).items()}
            calls = {"forward": lambda: layer.forward(w, x), "backward": lambda: layer.backward(w, s, idx),
                     "dphi_dw": lambda: layer.dphi_dw(w, x, s)}
            for route, fn in calls.items():
                rows.append(dict(layer=name, op=f"{type(pool).__name__} {route}", path=form,
                                 flops=counts[route], **_timed(fn, xp, repeats)))
        fast.clear_scratch()
    return rows


def run(batch, repeats, quick):
    xp = backend.get_xp()
    start = common.usage()
    peak_n, peak_r = (512, 2) if quick else (2048, 10)
    peak = common.gemm_peak(xp, peak_n, peak_r)
    rows = []
    for name, spec in LAYERS.items():
        fast.clear_scratch()
        N = batch or spec["N"]
        rows += op_rows(name, spec, N, xp, repeats) + route_rows(name, spec, N, xp, repeats)
    peak_end = common.gemm_peak(xp, peak_n, peak_r)
    best = max(peak["gflops"], peak_end["gflops"])      # the machine's limit: the better of the two
    for row in rows:
        if "flops" in row:
            row["gflops"] = row["flops"] / row["median_s"] / 1e9
            row["fraction_of_peak"] = row["gflops"] / best
    load = common.load_record(start, common.blas_threads())
    return {"created": common.now(), "machine": common.machine_info(xp), "quick": quick,
            "threads": common.blas_threads(), "gemm_peak": peak, "gemm_peak_end": peak_end,
            "gemm_peak_gflops": best,
            "load": load, "layers": {k: dict(v, N=batch or v["N"]) for k, v in LAYERS.items()},
            "ops": rows}


def print_table(result, out=sys.stdout):
    print(f"float32 GEMM peak {result['gemm_peak']['gflops']:.1f} GFLOP/s "
          f"(end {result['gemm_peak_end']['gflops']:.1f})" + ("   [--quick]" if result["quick"] else ""), file=out)
    print(f"{'layer':<16} {'op':<22} {'path':<9} {'median ms':>10} {'GFLOP/s':>8} {'% peak':>7} {'GB/s':>6}",
          file=out)
    for r in result["ops"]:
        gf = f"{r['gflops']:8.1f} {100 * r['fraction_of_peak']:6.1f}%" if "gflops" in r else f"{'-':>8} {'-':>7}"
        gb = f"{r['gbytes_per_s']:6.2f}" if "gbytes_per_s" in r else f"{'-':>6}"
        print(f"{r['layer']:<16} {r['op']:<22} {r['path']:<9} {1e3 * r['median_s']:10.3f} {gf} {gb}", file=out)
    common.warn_if_busy(result["load"], out)


def build_parser():
    p = Parser(prog="bench_ops.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="batch 4, 2 calls per op: a smoke run")
    p.add_argument("--out", help="JSON output (default results/benchmarks/ops.json; --quick: "
                                 "results/benchmarks/quick/)")
    p.add_argument("--batch", type=positive_int, help="batch of every shape (default 125 / 100, --quick 4)")
    p.add_argument("--repeats", type=positive_int, help="timed calls per op (default 10, --quick 2)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    result = run(args.batch or (4 if args.quick else None), args.repeats or (2 if args.quick else 10),
                 args.quick)
    out = args.out or common.default_out("ops.json", args.quick)
    common.write_json(result, out)
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    common.run_cli(main, None, "bench_ops.py")
