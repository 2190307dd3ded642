"""Benchmark whole networks: dynamics steps, EP training batches, BPTT, and the share of GEMMs.

Run from the repository root::

    python benchmarks/bench_network.py            # full run (a few minutes on 2 cores)
    python benchmarks/bench_network.py --quick    # smoke run: tiny batches, a few steps (seconds)

Four parts, every one in float32 on the active backend (``MINIMAL_EP_BACKEND``):

``ep``
    One symmetric EP training batch (free phase, nudged phase +beta, nudged phase -beta, then the
    weight update: dPhi/dtheta at both nudged states, their difference, the readout gradient of the
    CE loss, and an SGD step), timed phase by phase, for the quickstart net (batch 50, T_free 40,
    T_nudge 15: measured whole) and the paper's 2C2FC (batch 125, T_free 250, T_nudge 50:
    *extrapolated*, see below), each as a CRNN (loss "ce") and as an SNN (loss "mse").
``gemm``
    For every EP case, the fraction of the batch's time spent in matrix products. cProfile cannot
    see ``@``, so it is measured by *replay*: the matrix products one step, one phase and one weight
    update perform are enumerated from the architecture (the same shapes, memory layouts and
    one-product-per-sample or one-product-per-batch choice as ``minimal_ep.conv``), each is timed
    alone on random float32 arrays (best of several calls), multiplied by how often the batch runs
    it, and divided by the measured time of the batch.
``bptt``
    One BPTT training batch (T_free steps unrolled, the reverse pass, an SGD step) of the
    quickstart net, CRNN and SNN.
``scaling``
    Time of one EP training batch of the quickstart SNN against the batch size and against the
    channel widths of its two conv layers.

Per-step times, and the 2C2FC phases, come from a straight-line fit: every phase is run through
the real API (``free_phase``/``nudged_phase``) with 1 and 1 + k steps; the difference is k steps
(``step_s`` each), the rest of the 1-step run is the phase's one-off cost (the state copy and, in a CRNN, layer 1's
forward route of the static image, computed once per phase). A phase of T steps is then
``one_off_s + T * step_s``. NumPy does the same dense work at every step whatever the state holds,
so this is exact up to timing noise; the quickstart cases report both the measured and the
extrapolated batch, a check of the method.

The results go to ``benchmarks/results/network.json`` (``--out`` to change; with ``--quick`` the
default is ``benchmarks/results/quick/network.json``).
"""
import argparse
import datetime
import os
import pathlib
import statistics
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_ops  # noqa: E402  (machine_info, gemm_peak, time_call, write_json, _sync)

from minimal_ep import backend  # noqa: E402
from minimal_ep.bptt import bptt_gradients  # noqa: E402
from minimal_ep.fast import _per_sample  # noqa: E402  (the product layout conv2d chooses)
from minimal_ep.ep import ep_gradients  # noqa: E402
from minimal_ep import build_network  # noqa: E402
from minimal_ep.optim import SGD  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "network.json"
QUICK_OUT = RESULTS / "quick" / "network.json"

BETA = 0.2
LR = 1e-3            # the SGD step is timed; its size does not change the cost

# The quickstart net (configs/quickstart.toml) and the paper's 2C2FC (configs/mnist_2c2fc_*_ep.toml).
QUICKSTART = dict(input_shape=(1, 28, 28), conv_channels=(16, 32), kernel_size=3, padding=0,
                  pool="avg", hidden=(128,), n_classes=10, eps=0.3, lam=0.3)
PAPER_2C2FC = dict(input_shape=(1, 28, 28), conv_channels=(128, 256), kernel_size=3, padding=0,
                   pool="avg", hidden=(512,), n_classes=10, eps=0.9, lam=0.6)
KINDS = (("CRNN", False, "ce"), ("SNN", True, "mse"))
PHASES = ("free", "nudged_plus", "nudged_minus", "weight_update")


def settings(quick):
    """Every size the run uses: the full benchmark, or a smoke run of a few seconds."""
    if quick:
        return dict(
            nets={"quickstart": dict(arch=QUICKSTART, batch=8, T_free=4, T_nudge=2, fit_k=2,
                                     repeats=2, measure_whole=True),
                  "2c2fc": dict(arch=PAPER_2C2FC, batch=4, T_free=250, T_nudge=50, fit_k=2,
                                repeats=1, measure_whole=False)},
            bptt=dict(batch=8, T=4, repeats=2),
            scaling=dict(T_free=4, T_nudge=2, batches=(4, 8), batch=8,
                         widths=((4, 8), (8, 16)), repeats=1),
            gemm_repeats=2, gemm_peak_n=1024, gemm_peak_repeats=2)
    return dict(
        nets={"quickstart": dict(arch=QUICKSTART, batch=50, T_free=40, T_nudge=15, fit_k=10,
                                 repeats=5, measure_whole=True),
              "2c2fc": dict(arch=PAPER_2C2FC, batch=125, T_free=250, T_nudge=50, fit_k=6,
                            repeats=3, measure_whole=False)},
        bptt=dict(batch=50, T=40, repeats=3),
        scaling=dict(T_free=40, T_nudge=15, batches=(10, 25, 50, 100), batch=50,
                     widths=((8, 16), (16, 32), (32, 64), (64, 128)), repeats=3),
        gemm_repeats=10, gemm_peak_n=2048, gemm_peak_repeats=10)


# ----------------------------------------------------------------------------- helpers
def make_net(arch, spiking, loss, **over):
    return build_network(spiking=spiking, loss=loss, dtype="float32", seed=0, **{**arch, **over})


def make_batch(net, N, seed=0):
    """Random images in [0, 1) and random labels (the cost of dense NumPy does not depend on them)."""
    rng = numpy.random.default_rng(seed)
    x = backend.to_device(rng.random((N,) + net.input_shape), net.dtype)
    y = backend.to_device(rng.integers(0, net.n_classes, N))
    return x, y


class Clock:
    """Wall time of a block, synchronising the GPU (nothing to do on NumPy) before reading it."""

    def __init__(self, xp):
        self.xp = xp

    def __call__(self, fn):
        bench_ops._sync(self.xp)
        t0 = time.perf_counter()
        out = fn()
        bench_ops._sync(self.xp)
        return out, time.perf_counter() - t0


def weight_update(net, opt, plus, minus, y, beta):
    """What ``ep_gradients`` does after its phases (symmetric estimator, Eq. 5), then an SGD step."""
    d_plus, d_minus = net.dphi_dtheta(plus), net.dphi_dtheta(minus)
    grads = {k: (d_plus[k] - d_minus[k]) * (-1.0 / (2.0 * beta)) for k in d_plus}
    if net.readout:
        for st in (plus, minus):
            _, _, g_out = net.loss_gradient(st.xi[net.n_layers], y)
            for k, g in g_out.items():
                grads[k] = grads.get(k, 0.0) + g / 2
    opt.step(grads)
    return grads


def timed_batch(net, opt, x, y, beta, T_free, T_nudge, clock):
    """One EP training batch, phase by phase: {phase: seconds}."""
    free, t_free = clock(lambda: net.free_phase(x, T_free))
    plus, t_plus = clock(lambda: net.nudged_phase(free, y, beta, T_nudge))
    minus, t_minus = clock(lambda: net.nudged_phase(free, y, -beta, T_nudge))
    _, t_upd = clock(lambda: weight_update(net, opt, plus, minus, y, beta))
    return {"free": t_free, "nudged_plus": t_plus, "nudged_minus": t_minus, "weight_update": t_upd}


def summary_times(samples):
    return {"median_s": statistics.median(samples), "min_s": min(samples), "n": len(samples)}


def phase_fit(net, x, y, beta, k, repeats, clock):
    """Per phase, the one-off cost and the cost per step, from runs of 1 and 1 + k steps.

    Each run is the best of ``repeats``; the difference of the two is k steps. Returns
    {phase: {"T_short", "T_long", "t_short_s", "t_long_s", "step_s", "one_off_s"}}.
    """
    start = net.free_phase(x, 1)                        # a start for the nudged phases
    runs = {
        "free": lambda T: net.free_phase(x, T),
        "nudged_plus": lambda T: net.nudged_phase(start, y, beta, T),
        "nudged_minus": lambda T: net.nudged_phase(start, y, -beta, T),
    }
    out = {}
    for phase, run in runs.items():
        run(1)                                          # warm-up
        t1 = min(clock(lambda: run(1))[1] for _ in range(repeats))
        t2 = min(clock(lambda: run(1 + k))[1] for _ in range(repeats))
        step = max((t2 - t1) / k, 1e-12)
        out[phase] = {"T_short": 1, "T_long": 1 + k, "t_short_s": t1, "t_long_s": t2,
                      "step_s": step, "one_off_s": max(t1 - step, 0.0)}
    return out


# ----------------------------------------------------------------------------- GEMM replay
def _layer_geometry(net, n):
    """Conv layer n: (C_in, C_out, KH*KW, OH*OW)."""
    C_in = net.shapes[n - 1][0]
    C_out = net.shapes[n][0]
    OH, OW = net.layers[n].conv_size
    return C_in, C_out, net.kernel_size ** 2, OH * OW


def _dense_width(net, n):
    return int(numpy.prod(net.shapes[n]))


def gemm_products(net, N):
    """The matrix products of an EP batch, grouped by how often they run.

    Returns a dict of lists of products; a product is a dict with the operand shapes, whether each
    operand is a transposed view of a C-ordered array (``T``) or C-ordered itself (``C``), the call
    (``matmul`` for ``@``, ``dot`` for the ``tensordot`` of the weight gradient) and its FLOPs:

    ``once``    once per phase: the CRNN's layer-1 forward route of the static image
    ``step``    every step of every phase: forward routes (and layer 1's, in an SNN), backward routes
    ``nudge``   every nudged step in addition: the CE readout's logits and its transpose
    ``update``  once per batch: dPhi/dtheta at both nudged states and the CE readout's gradient
    """
    L, spiking = net.n_layers, net.spiking
    groups = {"once": [], "step": [], "nudge": [], "update": []}

    def prod(group, name, a, b, batch=1, call="matmul", times=1):
        """a, b: (shape, layout). batch > 1: ``a @ b`` with b stacked (one product per sample)."""
        M, K = a[0][-2], a[0][-1]
        Nn = b[0][-1]
        groups[group].append(dict(name=name, a=list(a[0]), a_layout=a[1], b=list(b[0]),
                                  b_layout=b[1], call=call, flops=2 * M * K * Nn * batch,
                                  count=times))

    def conv_forward(group, n, times=1):
        C_in, C_out, KK, P = _layer_geometry(net, n)
        K = C_in * KK
        if _per_sample(*net.layers[n].conv_size):
            prod(group, f"conv{n} forward (per sample)", ((C_out, K), "C"), ((N, K, P), "C"), batch=N,
                 times=times)
        else:
            prod(group, f"conv{n} forward", ((C_out, K), "C"), ((K, N * P), "C"), times=times)

    def conv_backward(group, n):            # conv_transpose2d with w_n, into layer n-1
        C_in, C_out, KK, P = _layer_geometry(net, n)
        K = C_in * KK
        if _per_sample(*net.layers[n].conv_size):
            prod(group, f"conv{n} backward (per sample)", ((K, C_out), "T"), ((N, C_out, P), "C"),
                 batch=N)
        else:
            prod(group, f"conv{n} backward", ((K, C_out), "T"), ((C_out, N * P), "C"))

    def conv_weight(group, n, times):       # conv2d_weight: tensordot -> one dot
        C_in, C_out, KK, P = _layer_geometry(net, n)
        K = C_in * KK
        b_layout = "C" if _per_sample(*net.layers[n].conv_size) else "T"
        prod(group, f"conv{n} weight gradient", ((C_out, N * P), "C"), ((N * P, K), b_layout),
             call="dot", times=times)

    # dynamics: total_inputs, Eq. 9
    for n in range(1, L + 1):
        if net.is_conv(n):
            conv_forward("step" if (n > 1 or spiking) else "once", n)
        else:
            D_prev, D = _dense_width(net, n - 1), _dense_width(net, n)
            prod("step", f"dense{n} forward", ((N, D_prev), "C"), ((D_prev, D), "T"))
    for n in range(1, L):                    # backward route of layer n+1 into layer n
        if net.is_conv(n + 1):
            conv_backward("step", n + 1)
        else:
            D, D_next = _dense_width(net, n), _dense_width(net, n + 1)
            prod("step", f"dense{n + 1} backward", ((N, D_next), "C"), ((D_next, D), "C"))
    K_out = L + 1
    if net.readout:                          # nudge(): logits and w_out^T (y - o)
        D_top, C = _dense_width(net, L), net.n_classes
        prod("nudge", "readout logits", ((N, D_top), "C"), ((D_top, C), "T"))
        prod("nudge", "readout backward", ((N, C), "C"), ((C, D_top), "C"))
    # weight update: dphi_dtheta at the two nudged states (+ readout gradient at both)
    for n in range(1, L + 1):
        if net.is_conv(n):
            if net.pool == "max":                # the forward route only for its pooling indices
                conv_forward("update", n, times=2)
            conv_weight("update", n, times=2)
        else:
            D_prev, D = _dense_width(net, n - 1), _dense_width(net, n)
            prod("update", f"dense{n} weight gradient", ((D, N), "T"), ((N, D_prev), "C"), times=2)
    if net.readout:
        D_top, C = _dense_width(net, L), net.n_classes
        prod("update", "readout logits", ((N, D_top), "C"), ((D_top, C), "T"), times=2)
        prod("update", f"readout w{K_out} gradient (g_top)", ((N, C), "C"), ((C, D_top), "C"), times=2)
        prod("update", f"readout w{K_out} gradient", ((C, N), "T"), ((N, D_top), "C"), times=2)
    return groups


def _operand(xp, rng, shape, layout):
    if layout == "T":                        # a transposed view of a C-ordered array
        return xp.asarray(rng.standard_normal(tuple(shape[::-1]), dtype=numpy.float32)).T
    return xp.asarray(rng.standard_normal(tuple(shape), dtype=numpy.float32))


def time_products(groups, xp, repeats, cache):
    """Fill in ``best_s`` (best of ``repeats`` calls) and ``gflops`` of every product, in place."""
    rng = numpy.random.default_rng(2)
    for plist in groups.values():
        for p in plist:
            key = (tuple(p["a"]), p["a_layout"], tuple(p["b"]), p["b_layout"], p["call"])
            if key not in cache:
                a = _operand(xp, rng, p["a"], p["a_layout"])
                b = _operand(xp, rng, p["b"], p["b_layout"])
                fn = (lambda: a @ b) if p["call"] == "matmul" else (lambda: xp.dot(a, b))
                cache[key] = min(bench_ops.time_call(fn, xp, repeats, warmup=1))
                del a, b
            p["best_s"] = cache[key]
            p["gflops"] = p["flops"] / p["best_s"] / 1e9


def gemm_per_phase(groups, T_free, T_nudge):
    """{phase: (GEMM seconds, FLOPs)} for an EP batch, from the timed products."""
    def total(names, mult):
        s = sum(p["best_s"] * p["count"] for g in names for p in groups[g]) * mult
        f = sum(p["flops"] * p["count"] for g in names for p in groups[g]) * mult
        return s, f

    once = total(["once"], 1)
    step, nudge = total(["step"], 1), total(["step", "nudge"], 1)
    free = (once[0] + T_free * step[0], once[1] + T_free * step[1])
    nudged = (once[0] + T_nudge * nudge[0], once[1] + T_nudge * nudge[1])
    return {"free": free, "nudged_plus": nudged, "nudged_minus": nudged,
            "weight_update": total(["update"], 1),
            "step_free": step, "step_nudged": nudge}


# ----------------------------------------------------------------------------- the parts
def bench_ep(name, cfg, kind, spiking, loss, xp, gemm_repeats, peak, cache):
    """One EP case: per-phase times, per-step times, samples/s and the GEMM fraction."""
    clock = Clock(xp)
    net = make_net(cfg["arch"], spiking, loss)
    N, T_free, T_nudge, R = cfg["batch"], cfg["T_free"], cfg["T_nudge"], cfg["repeats"]
    x, y = make_batch(net, N)
    opt = SGD(net.params, LR)
    fit = phase_fit(net, x, y, BETA, cfg["fit_k"], R, clock)
    steps = {"free": T_free, "nudged_plus": T_nudge, "nudged_minus": T_nudge}
    extrapolated = {ph: fit[ph]["one_off_s"] + steps[ph] * fit[ph]["step_s"] for ph in steps}

    phases, whole = {}, None
    if cfg["measure_whole"]:
        samples = {ph: [] for ph in PHASES}
        timed_batch(net, opt, x, y, BETA, T_free, T_nudge, clock)          # warm-up
        for _ in range(R):
            for ph, t in timed_batch(net, opt, x, y, BETA, T_free, T_nudge, clock).items():
                samples[ph].append(t)
        for ph in PHASES:
            phases[ph] = summary_times(samples[ph])
        # the same batch through the package's own entry point, end to end
        whole = summary_times([clock(lambda: opt.step(ep_gradients(net, x, y, BETA, T_free, T_nudge)))[1]
                               for _ in range(R)])
    else:
        for ph in steps:
            phases[ph] = {"median_s": extrapolated[ph], "min_s": extrapolated[ph], "n": 0,
                          "extrapolated": True}
        # the weight update is measured, on the states of short phases (its cost does not depend on T)
        free_k = net.free_phase(x, 1)
        plus_k = net.nudged_phase(free_k, y, BETA, 1)
        minus_k = net.nudged_phase(free_k, y, -BETA, 1)
        clock(lambda: weight_update(net, opt, plus_k, minus_k, y, BETA))          # warm-up
        phases["weight_update"] = summary_times(
            [clock(lambda: weight_update(net, opt, plus_k, minus_k, y, BETA))[1] for _ in range(R)])

    groups = gemm_products(net, N)
    time_products(groups, xp, gemm_repeats, cache)
    g = gemm_per_phase(groups, T_free, T_nudge)
    batch_min = sum(phases[ph]["min_s"] for ph in PHASES)
    batch_med = sum(phases[ph]["median_s"] for ph in PHASES)
    gemm_s = sum(g[ph][0] for ph in PHASES)
    gemm_flops = sum(g[ph][1] for ph in PHASES)
    per_phase = {}
    for ph in PHASES:
        per_phase[ph] = dict(phases[ph], gemm_s=g[ph][0], gemm_flops=g[ph][1],
                             gemm_fraction=g[ph][0] / phases[ph]["min_s"],
                             steps=steps.get(ph, 0))
    step_s = {"free": fit["free"]["step_s"],
              "nudged": (fit["nudged_plus"]["step_s"] + fit["nudged_minus"]["step_s"]) / 2}
    out = {
        "net": name, "kind": kind, "loss": loss, "spiking": spiking, "batch": N,
        "T_free": T_free, "T_nudge": T_nudge, "beta": BETA, "estimator": "symmetric",
        "architecture": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg["arch"].items()},
        "layer_shapes": [list(s) for s in net.shapes],
        "n_params": int(sum(v.size for v in net.params.values())),
        "extrapolated": not cfg["measure_whole"],
        "method": ("phases measured whole through free_phase/nudged_phase, best and median of "
                   f"{R} batches after a warm-up" if cfg["measure_whole"] else
                   f"phases extrapolated: one_off_s + T * step_s from runs of 1 and "
                   f"{1 + cfg['fit_k']} steps (best of {R}); the weight update measured"),
        "phases": per_phase,
        "batch_s": batch_min, "batch_median_s": batch_med,
        "samples_per_s": N / batch_min,
        "step_s": step_s,
        "step_gemm_fraction": {"free": g["step_free"][0] / step_s["free"],
                               "nudged": g["step_nudged"][0] / step_s["nudged"]},
        "fit": fit,
        "gemm_s": gemm_s, "gemm_flops": gemm_flops,
        "gemm_fraction": gemm_s / batch_min,
        "gemm_gflops": gemm_flops / gemm_s / 1e9,
        "gemm_fraction_of_peak": gemm_flops / gemm_s / 1e9 / peak["gflops"],
        "gemm_products": groups,
    }
    if whole is not None:
        out["ep_gradients_whole"] = whole
        extrap_batch = sum(extrapolated.values()) + phases["weight_update"]["min_s"]
        out["extrapolation_check"] = {"measured_s": batch_min, "extrapolated_s": extrap_batch,
                                      "ratio": extrap_batch / batch_min}
    return out


def bench_bptt(cfg, xp):
    """One BPTT training batch of the quickstart net (T_free steps unrolled), CRNN and SNN."""
    clock, rows = Clock(xp), []
    for kind, spiking, loss in KINDS:
        net = make_net(QUICKSTART, spiking, loss)
        x, y = make_batch(net, cfg["batch"])
        opt = SGD(net.params, LR)
        run = lambda: opt.step(bptt_gradients(net, x, y, cfg["T"]))  # noqa: E731
        clock(run)                                                    # warm-up
        t = summary_times([clock(run)[1] for _ in range(cfg["repeats"])])
        rows.append(dict(net="quickstart", kind=kind, loss=loss, batch=cfg["batch"], T=cfg["T"], **t,
                         batch_s=t["min_s"], samples_per_s=cfg["batch"] / t["min_s"]))
    return rows


def bench_scaling(cfg, xp):
    """EP batch of the quickstart SNN against the batch size and the conv widths."""
    clock = Clock(xp)

    def one(arch, N):
        net = make_net(arch, True, "mse")
        x, y = make_batch(net, N)
        opt = SGD(net.params, LR)
        run = lambda: opt.step(ep_gradients(net, x, y, BETA, cfg["T_free"], cfg["T_nudge"]))  # noqa: E731
        clock(run)
        t = summary_times([clock(run)[1] for _ in range(cfg["repeats"])])
        return dict(conv_channels=list(arch["conv_channels"]), batch=N, **t, batch_s=t["min_s"],
                    samples_per_s=N / t["min_s"])

    return {"kind": "SNN", "loss": "mse", "T_free": cfg["T_free"], "T_nudge": cfg["T_nudge"],
            "batch": [one(QUICKSTART, N) for N in cfg["batches"]],
            "width": [one(dict(QUICKSTART, conv_channels=w), cfg["batch"]) for w in cfg["widths"]]}


def run(quick):
    s = settings(quick)
    xp = backend.get_xp()
    load_before = os.getloadavg()
    peak = bench_ops.gemm_peak(xp, s["gemm_peak_n"], s["gemm_peak_repeats"])
    cache, ep = {}, []
    for name, cfg in s["nets"].items():
        for kind, spiking, loss in KINDS:
            ep.append(bench_ep(name, cfg, kind, spiking, loss, xp, s["gemm_repeats"], peak, cache))
    bptt = bench_bptt(s["bptt"], xp)
    scaling = bench_scaling(s["scaling"], xp)
    peak_end = bench_ops.gemm_peak(xp, s["gemm_peak_n"], s["gemm_peak_repeats"])
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": bench_ops.machine_info(xp),
        "quick": quick,
        "dtype": "float32",
        "gemm_peak": peak,
        "gemm_peak_end": peak_end,
        "loadavg_1min": {"before": load_before[0], "after": os.getloadavg()[0]},
        "ep": ep,
        "bptt": bptt,
        "scaling": scaling,
    }


def print_table(result):
    peak, load = result["gemm_peak"], result["loadavg_1min"]
    print(f"float32 GEMM peak ({peak['n']}x{peak['n']}): {peak['gflops']:.1f} GFLOP/s "
          f"(end {result['gemm_peak_end']['gflops']:.1f}); load average before/after "
          f"{load['before']:.2f}/{load['after']:.2f}" + ("   [--quick: not a measurement]"
                                                         if result["quick"] else ""))
    print(f"{'net':<11} {'kind':<5} {'N':>4} {'free s':>8} {'nudge+ s':>8} {'nudge- s':>8} "
          f"{'update s':>8} {'batch s':>8} {'smpl/s':>8} {'step ms':>8} {'GEMM %':>7} {'GFLOP/s':>8}")
    for r in result["ep"]:
        ph = r["phases"]
        print(f"{r['net']:<11} {r['kind']:<5} {r['batch']:>4} "
              + " ".join(f"{ph[p]['min_s']:8.3f}" for p in PHASES)
              + f" {r['batch_s']:8.3f} {r['samples_per_s']:8.1f} {1e3 * r['step_s']['free']:8.2f}"
              f" {100 * r['gemm_fraction']:6.1f}% {r['gemm_gflops']:8.1f}"
              + ("  (extrapolated)" if r["extrapolated"] else ""))
    for r in result["bptt"]:
        print(f"BPTT {r['net']} {r['kind']}: batch {r['batch']}, T {r['T']}: {r['batch_s']:.3f} s, "
              f"{r['samples_per_s']:.1f} samples/s")
    sc = result["scaling"]
    print("SNN EP batch vs batch size: " + ", ".join(
        f"N={r['batch']}: {r['samples_per_s']:.1f}/s" for r in sc["batch"]))
    print("SNN EP batch vs conv widths: " + ", ".join(
        f"{tuple(r['conv_channels'])}: {r['samples_per_s']:.1f}/s" for r in sc["width"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny batches, a few steps: a smoke run, not a measurement")
    parser.add_argument("--out", default=None,
                        help=f"JSON output (default {DEFAULT_OUT}; with --quick {QUICK_OUT})")
    args = parser.parse_args(argv)
    out = args.out or str(QUICK_OUT if args.quick else DEFAULT_OUT)
    result = run(args.quick)
    bench_ops.write_json(result, out)
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
