"""Benchmark the peak memory of one training step, EP against BPTT, as the number of steps grows.

Run from the repository root::

    python benchmarks/bench_memory.py            # full run (about a minute or two on 2 cores)
    python benchmarks/bench_memory.py --quick    # smoke run: the quickstart net, tiny T

Every number is ``minimal_ep.run.memory.training_step_peak_mb``: one whole training step (network
built, batch moved, gradient, SGD update) with its peak traced by ``tracemalloc`` on NumPy (the
peak of the arrays alive at once) or the CuPy memory pool's total on a GPU. Spiking networks use the
MSE loss, CRNNs cross-entropy, as in the paper.

``sweep``
    The quickstart net (batch 50) at T = 25, 50, 100, 150, 200 steps per training step. For EP,
    T = T_free + 2 T_nudge with the Table II split (T_nudge = T / 6, rounded; T_free the rest); BPTT
    unrolls T steps. EP keeps only the current state of each phase, so its peak should be flat in T;
    BPTT keeps every step's tape, so its peak should grow linearly. The JSON gives, per mode, the
    spread of the peaks ((max - min) / min), a least-squares line (MB per step, intercept, R^2), and
    for BPTT the size of one step's tape predicted from the layer shapes.
``paths``
    EP peak memory of the quickstart net, the figure campaign's five-layer max-pooling net (batch 25)
    and Laborieux et al.'s 5x5 net on the fast path and on the readable one (``build_network(...,
    fast=False)``): what the fast path's scratch buffers cost.
``table2``
    Paper Table II's protocol: batch 10, 2C2FC (128-256 channels, 512 hidden), EP T = 100+25+25,
    BPTT T = 150, next to the paper's numbers. The paper's are GPU totals with framework overhead
    (PyTorch, CUDA context, caching allocator); ours are the NumPy arrays alone: compare the ratios
    BPTT / EP, not the megabytes. Not run with ``--quick``.

The results go to ``results/benchmarks/memory.json`` (``--out`` to change; with ``--quick`` the
default is ``results/benchmarks/quick/memory.json``).
"""
import time

from benchmarks.benchlib import common, nets

from minimal_ep import backend, build_network
from minimal_ep.run.memory import MODES, training_step_peak_mb

# The architectures alone: training_step_peak_mb chooses spiking, the loss (MSE for SNNs, CE for
# CRNNs, as in the paper) and the seed itself.
QUICKSTART = {k: v for k, v in nets.QUICKSTART.items() if k not in ("spiking", "loss", "seed")}
PAPER_2C2FC = {k: v for k, v in nets.PAPER_2C2FC.items() if k not in ("spiking", "loss", "seed")}
LABORIEUX_5X5 = {k: v for k, v in nets.LABORIEUX_5X5.items() if k not in ("spiking", "loss", "seed")}
FIGURE_MAX = {k: v for k, v in nets.figure_recipe("snn_max")[0].items() if k not in ("spiking", "loss", "seed")}

# Paper Table II, MEM column (MB): GPU totals of the paper's PyTorch code.
PAPER_TABLE2_MB = {"SNN EP": 321.0, "SNN BPTT": 2171.0, "CRNN EP": 309.0, "CRNN BPTT": 3018.0}
FLAT_TOLERANCE = 0.10          # EP: (max - min) / min of the sweep's peaks
LINEAR_R2 = 0.99               # BPTT: R^2 of the straight line through the sweep's peaks


def settings(quick):
    paths = dict(nets={"quickstart": QUICKSTART, "figure-max": FIGURE_MAX, "laborieux-5x5": LABORIEUX_5X5},
                 batch=4 if quick else 50, T_free=2 if quick else 10, T_nudge=1 if quick else 3)
    if quick:
        return dict(sweep=dict(arch=QUICKSTART, batch=20, Ts=(6, 12, 18)), table2=None, paths=paths)
    return dict(sweep=dict(arch=QUICKSTART, batch=50, Ts=(25, 50, 100, 150, 200)),
                table2=dict(arch=PAPER_2C2FC, batch=10, T_free=100, T_nudge=25, T_bptt=150), paths=paths)


def split_ep(T):
    """T steps of EP as (T_free, T_nudge) with Table II's 100 : 25 : 25 split."""
    T_nudge = max(1, round(T / 6))
    return T - 2 * T_nudge, T_nudge


def peak(mode, batch, arch, T_free=1, T_nudge=1, T_bptt=1):
    """(MB, seconds) of one training step."""
    t0 = time.perf_counter()
    mb = training_step_peak_mb(mode, batch=batch, T_free=T_free, T_nudge=T_nudge, T_bptt=T_bptt, **arch)
    return mb, time.perf_counter() - t0


def line_fit(xs, ys):
    """Least squares y = intercept + slope * x, and R^2."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
    return {"slope_mb_per_step": slope, "intercept_mb": intercept,
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0}


def tape_mb_per_step(mode, batch, arch):
    """What BPTT's tape keeps per step, from the layer shapes (float32 states or spikes, bool masks).

    CRNN: the states the step started from (4 bytes per neuron) and the clip mask (1 byte).
    SNN: the spikes the step read, input spikes included (4 bytes), the clip mask (1 byte) and the
    surrogate derivative (4 bytes). Average pooling: no pooling indices.
    """
    spiking = mode.startswith("SNN")
    net = build_network(spiking=spiking, loss="mse" if spiking else "ce", **arch)
    neurons = sum(int(_prod(s)) for s in net.shapes[1:net.n_layers + 1])
    per_sample = 4 * _prod(net.input_shape) + 9 * neurons if spiking else 5 * neurons
    return batch * per_sample / 2 ** 20


def _prod(shape):
    out = 1
    for v in shape:
        out *= int(v)
    return out


def run_sweep(cfg):
    rows, modes = [], {}
    for mode in MODES:
        algo = mode.split()[1]
        ys = []
        for T in cfg["Ts"]:
            if algo == "EP":
                T_free, T_nudge = split_ep(T)
                mb, secs = peak(mode, cfg["batch"], cfg["arch"], T_free=T_free, T_nudge=T_nudge)
                row = dict(mode=mode, T=T, T_free=T_free, T_nudge=T_nudge, peak_mb=mb, wall_s=secs)
            else:
                mb, secs = peak(mode, cfg["batch"], cfg["arch"], T_bptt=T)
                row = dict(mode=mode, T=T, T_bptt=T, peak_mb=mb, wall_s=secs)
            rows.append(row)
            ys.append(mb)
        fit = line_fit(list(cfg["Ts"]), ys)
        spread = (max(ys) - min(ys)) / min(ys)
        info = dict(fit, min_mb=min(ys), max_mb=max(ys), spread=spread,
                    growth=ys[-1] / ys[0])
        if algo == "EP":
            info["flat"] = spread <= FLAT_TOLERANCE
        else:
            info["tape_model_mb_per_step"] = tape_mb_per_step(mode, cfg["batch"], cfg["arch"])
            info["linear"] = fit["r2"] >= LINEAR_R2 and fit["slope_mb_per_step"] > 0
        modes[mode] = info
    return {"net": "quickstart", "batch": cfg["batch"], "Ts": list(cfg["Ts"]),
            "architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg["arch"].items()},
            "ep_split": "T_nudge = round(T / 6), T_free = T - 2 T_nudge (Table II's 100:25:25)",
            "flat_tolerance": FLAT_TOLERANCE, "linear_r2": LINEAR_R2,
            "rows": rows, "modes": modes}


def run_table2(cfg):
    rows = []
    for mode in MODES:
        mb, secs = peak(mode, cfg["batch"], cfg["arch"], T_free=cfg["T_free"], T_nudge=cfg["T_nudge"],
                        T_bptt=cfg["T_bptt"])
        rows.append(dict(mode=mode, peak_mb=mb, paper_mb=PAPER_TABLE2_MB[mode], wall_s=secs))
    by = {r["mode"]: r["peak_mb"] for r in rows}
    return {"net": "2c2fc", "batch": cfg["batch"], "T_free": cfg["T_free"], "T_nudge": cfg["T_nudge"],
            "T_bptt": cfg["T_bptt"],
            "architecture": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg["arch"].items()},
            "rows": rows,
            "bptt_over_ep": {"SNN": by["SNN BPTT"] / by["SNN EP"], "CRNN": by["CRNN BPTT"] / by["CRNN EP"]},
            "paper_bptt_over_ep": {"SNN": PAPER_TABLE2_MB["SNN BPTT"] / PAPER_TABLE2_MB["SNN EP"],
                                   "CRNN": PAPER_TABLE2_MB["CRNN BPTT"] / PAPER_TABLE2_MB["CRNN EP"]},
            "note": ("ours: peak of the NumPy arrays alone (tracemalloc; CuPy: memory pool total); "
                     "paper: GPU totals of PyTorch code, with the CUDA context and the caching "
                     "allocator's overhead. Compare the BPTT / EP ratios, not the megabytes.")}


def run_paths(cfg):
    """EP peak memory on the fast path and on the readable one (the fast path keeps scratch buffers)."""
    rows = []
    for name, arch in cfg["nets"].items():
        for mode in ("SNN EP", "CRNN EP"):
            for path, fast in (("fast", True), ("readable", False)):
                mb, secs = peak(mode, cfg["batch"], dict(arch, fast=fast), T_free=cfg["T_free"],
                                T_nudge=cfg["T_nudge"])
                rows.append(dict(net=name, mode=mode, path=path, peak_mb=mb, wall_s=secs))
    return dict(cfg, nets=list(cfg["nets"]), rows=rows)


def run(quick):
    s = settings(quick)
    start = common.usage()
    xp = backend.get_xp()
    result = {
        "created": common.now(),
        "machine": common.machine_info(xp),
        "threads": common.blas_threads(),
        "quick": quick,
        "dtype": "float32",
        "method": ("tracemalloc peak of one training step (NumPy)" if backend.get_backend() == "numpy"
                   else "CuPy memory pool total after one training step"),
        "sweep": run_sweep(s["sweep"]),
    }
    if s["table2"] is not None:
        result["table2"] = run_table2(s["table2"])
    result["paths"] = run_paths(s["paths"])
    result["load"] = common.load_record(start, common.blas_threads())
    return result


def print_table(result):
    sw = result["sweep"]
    print(f"peak MB of one training step, quickstart net, batch {sw['batch']} ({result['method']})"
          + ("   [--quick]" if result["quick"] else ""))
    print(f"{'mode':<10} " + " ".join(f"{'T=' + str(T):>9}" for T in sw["Ts"])
          + f" {'MB/step':>9} {'R^2':>6} {'spread':>7}")
    for mode in MODES:
        ys = [r["peak_mb"] for r in sw["rows"] if r["mode"] == mode]
        m = sw["modes"][mode]
        print(f"{mode:<10} " + " ".join(f"{y:9.1f}" for y in ys)
              + f" {m['slope_mb_per_step']:9.3f} {m['r2']:6.3f} {100 * m['spread']:6.1f}%")
    for mode in MODES:
        m = sw["modes"][mode]
        if "tape_model_mb_per_step" in m:
            print(f"{mode}: {m['slope_mb_per_step']:.3f} MB/step measured, "
                  f"{m['tape_model_mb_per_step']:.3f} MB/step predicted from the tape's arrays")
    t2 = result.get("table2")
    if t2:
        print(f"Table II protocol (batch {t2['batch']}, 2C2FC, EP {t2['T_free']}+{t2['T_nudge']}+"
              f"{t2['T_nudge']}, BPTT {t2['T_bptt']}):")
        for r in t2["rows"]:
            print(f"  {r['mode']:<10} {r['peak_mb']:9.1f} MB   (paper {r['paper_mb']:.0f} MB)")
    p = result["paths"]
    print(f"EP peak MB, fast path vs readable path (batch {p['batch']}, T {p['T_free']} + 2x{p['T_nudge']}):")
    for r in p["rows"]:
        print(f"  {r['net']:<14} {r['mode']:<8} {r['path']:<9} {r['peak_mb']:9.1f} MB")


def build_parser():
    p = common.Parser(prog="bench_memory.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="quickstart net, tiny T, no Table II: a smoke run")
    p.add_argument("--out", help="JSON output (default results/benchmarks/memory.json; --quick: "
                                 "results/benchmarks/quick/)")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out or common.default_out("memory.json", args.quick)
    result = run(args.quick)
    common.write_json(result, out)
    print_table(result)
    common.warn_if_busy(result["load"])
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    common.run_cli(main, None, "bench_memory.py")
