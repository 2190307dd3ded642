"""Benchmark symmetric EP training batches of the issues' nets, and the same batches on baseline commits.

Run from the repository root (``benchmarks/run.py`` runs it with 2 BLAS threads)::

    python benchmarks/bench_network.py                    # every net, A/B against 9374924 (and fbe01e1)
    python benchmarks/bench_network.py --quick            # tiny batches: a smoke run (seconds)
    python benchmarks/bench_network.py --nets quickstart-snn,laborieux-5x5 --baseline none

For every net of ``nets.py`` (float32, random inputs in [0, 1), the active backend), through the
library only (``ep_gradients`` + ``optim.SGD(...).step``):

* **time**: ms per batch (T_free + 2 T_nudge steps and the weight update) and ms per step, the
  marginal cost of a step: (batch - short batch) / (steps - short steps), the short batch having
  half the steps. Best of ``--repeats`` batches of each, interleaved (the median is in the JSON
  too; the A/B uses medians). 2C2FC runs 8 + 2x4 steps and is
  *extrapolated* to T 250 + 2x50 (fixed cost + T x step; the JSON says ``extrapolated``).
* **FLOPs** per batch and step, counted from ``net.layers`` (``flops.py``), the achieved GFLOP/s
  and the fraction of the float32 GEMM peak measured in the same run.
* **where the time goes**: one batch under cProfile, its time split into GEMM, layout, pooling,
  element-wise dynamics and the rest (``breakdown.py``; NumPy only, GPU work is asynchronous).
* **A/B** (``ab.py``): the same batch of every net for each ``--baseline`` commit (default 9374924
  for every net, fbe01e1 for the Laborieux nets) and for this checkout, interleaved in child
  processes; medians and per-pair speedups.

The in-process measurements use this process's BLAS threads; ``--threads`` sets the A/B children's
(default: the same as this process, or 2). Results: ``results/benchmarks/network.json`` (``--out``).
"""
import statistics
import sys

from benchmarks.benchlib import common
from benchmarks.benchlib import nets as netlib
from benchmarks.benchlib.ab import resolve_commit, run_ab
from benchmarks.benchlib.breakdown import profile_batch
from benchmarks.benchlib.common import Parser, positive_int
from benchmarks.benchlib.flops import batch_flops, is_fast

from minimal_ep import backend, ep_gradients, optim


def measure(net, xp, repeats, profile=True):
    """Times, FLOPs and (NumPy) the time breakdown of one net's EP batch; the JSON row."""
    model = netlib.make_net(net)
    x, y = netlib.make_batch(net)
    opt = optim.SGD(model.params, netlib.LR)

    def batch(T_free, T_nudge):
        return lambda: opt.step(ep_gradients(model, x, y, netlib.BETA, T_free, T_nudge))

    batch(2, 1)()                                       # warm-up: allocations, scratch buffers
    (T_free, T_nudge), (t_free, t_nudge) = net.measured(), net.short()
    n_long, n_short = T_free + 2 * T_nudge, t_free + 2 * t_nudge
    long_s, short_s = [], []
    for _ in range(repeats):                            # interleaved: a drift hits both alike
        long_s += common.time_call(batch(T_free, T_nudge), xp, 1, warmup=0)
        short_s += common.time_call(batch(t_free, t_nudge), xp, 1, warmup=0)
    long_best, short_best = min(long_s), min(short_s)   # best of the repeats: the least disturbed
    step_s = (long_best - short_best) / (n_long - n_short) if n_long > n_short else 0.0
    fit_ok = step_s > 0
    if not fit_ok:                                      # noise swamped the difference
        step_s = long_best / n_long
    fixed_s = max(long_best - n_long * step_s, 0.0)
    batch_s = fixed_s + net.steps * step_s if net.extrapolate else long_best
    count = batch_flops(model, net.batch, net.T_free, net.T_nudge)
    row = {**netlib.as_json(net), "spiking": model.spiking, "pool": net.build.get("pool", "avg"),
           "measured": {"T_free": T_free, "T_nudge": T_nudge, "batch_s": long_s,
                        "short_T_free": t_free, "short_T_nudge": t_nudge, "short_batch_s": short_s},
           "extrapolated": bool(net.extrapolate), "fit_ok": fit_ok,
           "batch_s": batch_s, "batch_median_s": None if net.extrapolate else statistics.median(long_s),
           "step_s": step_s, "fixed_s": fixed_s,
           "samples_per_s": net.batch / batch_s, "flops": count,
           "gflops": count["batch"] / batch_s / 1e9, "fraction_of_peak": None,
           "fast_path": any(is_fast(layer) for layer in model.layers[1:]), "breakdown": None}
    if profile and backend.get_backend() == "numpy":
        row["breakdown"] = profile_batch(batch(T_free, T_nudge))
        row["breakdown"]["T_free"], row["breakdown"]["T_nudge"] = T_free, T_nudge
    return row


def run(args):
    """Every measurement of the run, as the dict written to JSON (UsageError before any, on bad input)."""
    xp = backend.get_xp()
    chosen = netlib.select(args.nets, args.quick)
    refs = netlib.parse_baselines(args.baseline)
    for ref in refs:
        resolve_commit(ref)                             # bad input: before anything runs
    threads = args.threads or [common.blas_threads() or netlib.DEFAULT_THREADS]
    start = common.usage()
    peak_n, peak_r = (512, 2) if args.quick else (2048, 10)
    peak = common.gemm_peak(xp, peak_n, peak_r)
    repeats = args.repeats or (1 if args.quick else 3)
    rows = []
    for net in chosen:
        print(f"  {net.name} ...", flush=True)
        rows.append(measure(net, xp, repeats, profile=not args.no_profile))
    peak_end = common.gemm_peak(xp, peak_n, peak_r)
    best = max(peak["gflops"], peak_end["gflops"])      # the machine's limit: the better of the two
    for row in rows:
        row["fraction_of_peak"] = row["gflops"] / best
    ab = None
    if refs:
        print(f"  A/B against {', '.join(refs)}, {'/'.join(map(str, threads))} BLAS thread(s) ...", flush=True)
        ab = run_ab(netlib.ab_plan(chosen, refs), args.ab_repeats or (2 if args.quick else 5), threads,
                    one_child_per_net=not args.quick)
    load = common.load_record(start, max(threads))
    return {"created": common.now(), "machine": common.machine_info(xp), "quick": args.quick,
            "dtype": "float32", "beta": netlib.BETA, "estimator": "symmetric",
            "threads": common.blas_threads(), "gemm_peak": peak, "gemm_peak_end": peak_end,
            "gemm_peak_gflops": best,
            "load": load, "nets": rows, "ab": ab}


def print_table(result, out=sys.stdout):
    peak = result["gemm_peak"]
    print(f"float32 GEMM peak {peak['gflops']:.1f} GFLOP/s at the start, {result['gemm_peak_end']['gflops']:.1f} "
          "at the end (fractions: of the better), "
          f"BLAS threads {result['threads']}" + ("   [--quick: not a measurement]" if result["quick"] else ""),
          file=out)
    print(f"{'net':<20} {'N':>4} {'T':>11} {'ms/batch':>9} {'ms/step':>8} {'MFLOP/step':>10} "
          f"{'GFLOP/s':>8} {'%peak':>6} {'GEMM%':>6}", file=out)
    for r in result["nets"]:
        bd = r["breakdown"]
        gemm = f"{100 * bd['fraction']['gemm']:5.1f}%" if bd else f"{'-':>6}"
        print(f"{r['name']:<20} {r['batch']:>4} {r['T_free']:>4}+2x{r['T_nudge']:<4} {1e3 * r['batch_s']:9.1f} "
              f"{1e3 * r['step_s']:8.2f} {r['flops']['per_step'] / 1e6:10.1f} {r['gflops']:8.1f} "
              f"{100 * r['fraction_of_peak']:5.1f}% {gemm}" + (" *" if r["extrapolated"] else ""), file=out)
    ab = result["ab"]
    for base in (ab or {}).get("comparisons", []):
        print(f"A/B vs {base['ref']} ({base['threads']} thread(s), {ab['repeats']} pairs): "
              "median batch s baseline / current, speedup (range)", file=out)
        for r in base["nets"]:
            print(f"  {r['net']:<20} {r['baseline_median_s']:8.3f} / {r['current_median_s']:8.3f}  "
                  f"{r['speedup_median']:5.2f}x ({min(r['speedups']):.2f}-{max(r['speedups']):.2f})", file=out)
    common.warn_if_busy(result["load"], out)


def build_parser():
    p = Parser(prog="bench_network.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny batches, a few steps: a smoke run")
    p.add_argument("--out", help="JSON output (default results/benchmarks/network.json; --quick: "
                                 "results/benchmarks/quick/)")
    p.add_argument("--nets", type=lambda s: [n.strip() for n in s.split(",") if n.strip()],
                   help="comma-separated subset of: " + ", ".join(netlib.BY_NAME))
    p.add_argument("--repeats", type=positive_int, help="timed batches per net (default 3, --quick 1)")
    p.add_argument("--baseline", default=",".join(netlib.DEFAULT_BASELINES),
                   help="commits to A/B against, comma-separated: the first on every net, the others on the "
                        f"nets compared with them (default {','.join(netlib.DEFAULT_BASELINES)}); 'none' skips the A/B")
    p.add_argument("--ab-repeats", type=positive_int, help="A/B pairs per net (default 5, --quick 2)")
    p.add_argument("--threads", type=common.thread_counts,
                   help="BLAS threads of the A/B children, comma-separated for several (2,1: each repetition "
                        "runs both; default: this process's, else 2)")
    p.add_argument("--no-profile", action="store_true", help="skip the cProfile breakdown")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out = args.out or common.default_out("network.json", args.quick)
    result = run(args)
    common.write_json(result, out)
    print_table(result)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    common.run_cli(main, None, "bench_network.py")
