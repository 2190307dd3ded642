"""Run every benchmark in sequence and summarise them in Markdown (``make bench`` calls this).

Run from the repository root::

    python benchmarks/run.py                  # ops, network, memory; then results/summary.md
    python benchmarks/run.py --quick          # smoke run into benchmarks/results/quick/ (seconds)
    python benchmarks/run.py --summary-only   # only rewrite summary.md from the JSON files there
    python benchmarks/run.py --only ops,memory --out-dir /tmp/bench

Each benchmark writes its JSON (``ops.json``, ``network.json``, ``memory.json``) into the output
directory; ``summary.md`` beside them holds the tables for the README and says which of the
performance targets the numbers meet. Every verdict is computed from the JSON files.
"""
import argparse
import datetime
import json
import math
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_memory  # noqa: E402
import bench_network  # noqa: E402
import bench_ops  # noqa: E402

BENCHMARKS = {"ops": bench_ops, "network": bench_network, "memory": bench_memory}
DEFAULT_DIR = HERE / "results"
QUICK_DIR = HERE / "results" / "quick"

# The targets (from the issue). The thresholds live here; whether they are met is read off the JSON.
CONV_TARGET = 0.50         # conv2d and conv_transpose2d at 2C2FC conv-2: fraction of the GEMM peak
GEMM_TARGET = 0.70         # an EP training batch: fraction of its time in matrix products


# ----------------------------------------------------------------------------- targets
def _load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _verdict(ok):
    return "not measured" if ok is None else ("**met**" if ok else "**not met**")


def targets(ops, network, memory):
    """[{"target", "measured", "threshold", "met"}]; ``met`` is None when the JSON is missing."""
    out = []
    for op in ("conv2d", "conv_transpose2d"):
        row = None
        if ops is not None:
            row = next((r for r in ops["ops"] if r["layer"] == "conv2" and r["op"] == op), None)
        frac = None if row is None else row["fraction_of_peak"]
        out.append({"target": f"`{op}` at the 2C2FC conv-2 shape, share of the GEMM peak",
                    "measured": "-" if frac is None else
                    f"{100 * frac:.1f}% ({row['gflops']:.1f} of {ops['gemm_peak']['gflops']:.1f} GFLOP/s)",
                    "threshold": f">= {100 * CONV_TARGET:.0f}%",
                    "met": None if frac is None else frac >= CONV_TARGET})
    cases = [("quickstart", "CRNN"), ("quickstart", "SNN"), ("2c2fc", "CRNN"), ("2c2fc", "SNN")]
    for net, kind in cases:
        r = None
        if network is not None:
            r = next((e for e in network["ep"] if e["net"] == net and e["kind"] == kind), None)
        out.append({"target": f"EP batch time in GEMMs, {net} {kind}",
                    "measured": "-" if r is None else f"{100 * r['gemm_fraction']:.1f}%"
                    + (" (extrapolated batch)" if r["extrapolated"] else ""),
                    "threshold": f">= {100 * GEMM_TARGET:.0f}%",
                    "met": None if r is None else r["gemm_fraction"] >= GEMM_TARGET})
    sweep = None if memory is None else memory["sweep"]
    for mode in ("SNN EP", "CRNN EP"):
        m = None if sweep is None else sweep["modes"][mode]
        out.append({"target": f"{mode} peak memory flat in T",
                    "measured": "-" if m is None else
                    f"spread {100 * m['spread']:.1f}% over T = {sweep['Ts'][0]}..{sweep['Ts'][-1]}",
                    "threshold": "-" if sweep is None else
                    f"spread <= {100 * sweep['flat_tolerance']:.0f}%",
                    "met": None if m is None else m["flat"]})
    for mode in ("SNN BPTT", "CRNN BPTT"):
        m = None if sweep is None else sweep["modes"][mode]
        out.append({"target": f"{mode} peak memory linear in T",
                    "measured": "-" if m is None else
                    f"{m['slope_mb_per_step']:.3f} MB/step, R^2 = {m['r2']:.4f} "
                    f"(tape model {m['tape_model_mb_per_step']:.3f} MB/step)",
                    "threshold": "-" if sweep is None else f"slope > 0, R^2 >= {sweep['linear_r2']}",
                    "met": None if m is None else m["linear"]})
    return out


# ----------------------------------------------------------------------------- Markdown
def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _ms(s):
    return f"{1e3 * s:.1f}"


def _s(s):
    return f"{s:.3f}" if s < 10 else f"{s:.1f}"


def _pct(v):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{100 * v:.1f}%"


def _machine_section(results):
    first = next(r for r in results.values() if r is not None)
    m = first["machine"]
    blas = m.get("blas") or {}
    blas_s = f"{blas.get('name', '?')} {blas.get('version', '')}".strip() if "name" in blas else "?"
    rows = [("CPU", f"{m['cpu_model']}, {m['cpu_count']} cores ({m.get('cpus_usable')} usable)"),
            ("Python / NumPy / BLAS", f"{m['python']} / {m['numpy']} / {blas_s}"),
            ("backend", m["backend"] + (f" ({m['gpu']})" if "gpu" in m else "")),
            ("thread variables", ", ".join(f"{k}={v}" for k, v in m["thread_env"].items()) or "none set")]
    for name, r in results.items():
        if r is None:
            continue
        load = r.get("loadavg_1min", {})
        peak = r.get("gemm_peak")
        desc = f"created {r['created']}, 1-min load {load.get('before', float('nan')):.2f} -> " \
               f"{load.get('after', float('nan')):.2f}"
        if peak:
            desc += f", GEMM peak {peak['gflops']:.1f} -> {r['gemm_peak_end']['gflops']:.1f} GFLOP/s " \
                    f"({peak['n']}x{peak['n']})"
        if r.get("quick"):
            desc += ", **--quick**"
        rows.append((f"{name}.json", desc))
    return "## Machine\n\n" + _table(("", ""), rows)


def _ops_section(ops):
    rows = []
    for r in ops["ops"]:
        rows.append((r["layer"], f"`{r['op']}`", f"{1e3 * r['median_s']:.2f}",
                     "-" if r["gflops"] is None else f"{r['gflops']:.1f}",
                     _pct(r["fraction_of_peak"]),
                     "-" if r["gbytes_per_s"] is None else f"{r['gbytes_per_s']:.2f}"))
    return (f"## Ops at the 2C2FC layer shapes (batch {ops['batch']}, float32)\n\n"
            f"GEMM peak {ops['gemm_peak']['gflops']:.1f} GFLOP/s.\n\n"
            + _table(("layer", "op", "median ms", "GFLOP/s", "% GEMM peak", "GB/s"), rows))


def _network_sections(net):
    ep = net["ep"]
    rows = []
    for r in ep:
        ph = r["phases"]
        rows.append((r["net"], r["kind"], r["loss"], r["batch"],
                     f"{r['T_free']} + 2x{r['T_nudge']}",
                     *(_s(ph[p]["min_s"]) for p in bench_network.PHASES),
                     _s(r["batch_s"]) + (" *" if r["extrapolated"] else ""),
                     f"{r['samples_per_s']:.1f}",
                     f"{_ms(r['step_s']['free'])} / {_ms(r['step_s']['nudged'])}"))
    parts = ["## EP training batch (symmetric EP, float32)\n\n"
             "Seconds per phase, best of the repeats; the weight update is dPhi/dtheta at both "
             "nudged states, the readout gradient (CE) and an SGD step. * extrapolated from short "
             "phases: one-off cost + T x time per step (see benchmarks/README.md).\n\n"
             + _table(("net", "kind", "loss", "batch", "T", "free s", "nudged +beta s",
                       "nudged -beta s", "weight update s", "batch s", "samples/s",
                       "ms per step (free / nudged)"), rows)]
    checks = [r for r in ep if "extrapolation_check" in r]
    if checks:
        parts.append("Check of the extrapolation on the quickstart net (measured whole): "
                     + "; ".join(f"{r['kind']} {r['extrapolation_check']['extrapolated_s']:.3f} s "
                                 f"extrapolated vs {r['extrapolation_check']['measured_s']:.3f} s measured"
                                 for r in checks) + ".")
    rows = []
    for r in ep:
        ph = r["phases"]
        rows.append((r["net"], r["kind"], *(_pct(ph[p]["gemm_fraction"]) for p in bench_network.PHASES),
                     _pct(r["gemm_fraction"]), f"{r['gemm_gflops']:.1f}", _pct(r["gemm_fraction_of_peak"]),
                     f"{_pct(r['step_gemm_fraction']['free'])} / {_pct(r['step_gemm_fraction']['nudged'])}"))
    parts.append("## Share of the EP batch spent in matrix products (replay)\n\n"
                 "GEMM time (every product of the batch timed alone on random arrays of its shape, "
                 "best of several, times how often the batch runs it) divided by the measured time. "
                 f"GEMM peak {net['gemm_peak']['gflops']:.1f} GFLOP/s.\n\n"
                 + _table(("net", "kind", "free", "nudged +beta", "nudged -beta", "weight update",
                           "whole batch", "GEMM GFLOP/s", "% GEMM peak", "per step (free / nudged)"),
                          rows))
    for r in ep:
        if r["kind"] != "SNN":         # the SNN's step has every product (layer 1's too)
            continue
        g = r["gemm_products"]
        rows = [(grp, p["name"], " x ".join(map(str, p["a"])) + (" (T)" if p["a_layout"] == "T" else ""),
                 " x ".join(map(str, p["b"])) + (" (T)" if p["b_layout"] == "T" else ""),
                 p["count"], f"{1e3 * p['best_s']:.3f}", f"{p['gflops']:.1f}")
                for grp in ("step", "update") for p in g[grp]]
        parts.append(f"GEMMs of one step and of the weight update, {r['net']} SNN, batch {r['batch']} "
                     "(T: a transposed view):\n\n"
                     + _table(("when", "product", "a", "b", "calls", "ms each", "GFLOP/s"), rows))
    ep_by = {(r["net"], r["kind"]): r for r in ep}
    rows = []
    for r in net["bptt"]:
        e = ep_by.get((r["net"], r["kind"]))
        rows.append((r["net"], r["kind"], r["loss"], r["batch"], r["T"], _s(r["batch_s"]),
                     f"{r['samples_per_s']:.1f}",
                     "-" if e is None else f"{e['batch_s']:.3f} s ({e['T_free']} + 2x{e['T_nudge']})"))
    parts.append("## BPTT training batch (T_free steps unrolled)\n\n"
                 + _table(("net", "kind", "loss", "batch", "T", "batch s", "samples/s", "EP batch"),
                          rows))
    sc = net["scaling"]
    rows = [(r["batch"], " x ".join(map(str, r["conv_channels"])), _s(r["batch_s"]),
             f"{r['samples_per_s']:.1f}") for r in sc["batch"]]
    rows += [(r["batch"], " x ".join(map(str, r["conv_channels"])), _s(r["batch_s"]),
              f"{r['samples_per_s']:.1f}") for r in sc["width"]]
    parts.append(f"## Scaling: one EP batch of the quickstart {sc['kind']} (T = {sc['T_free']} + "
                 f"2x{sc['T_nudge']})\n\n"
                 + _table(("batch", "conv channels", "batch s", "samples/s"), rows))
    return parts


def _memory_sections(mem):
    sw = mem["sweep"]
    header = ["mode"] + [f"T={T}" for T in sw["Ts"]] + ["MB per step", "R^2", "spread"]
    rows = []
    for mode, m in sw["modes"].items():
        ys = [r["peak_mb"] for r in sw["rows"] if r["mode"] == mode]
        rows.append([mode] + [f"{y:.1f}" for y in ys]
                    + [f"{m['slope_mb_per_step']:.3f}", f"{m['r2']:.4f}", _pct(m["spread"])])
    parts = [f"## Peak memory of one training step against T (quickstart net, batch {sw['batch']})\n\n"
             f"MB (2^20 bytes), {mem['method']}. EP: {sw['ep_split']}; BPTT unrolls T steps.\n\n"
             + _table(header, rows)]
    models = [f"{mode} {m['tape_model_mb_per_step']:.3f}" for mode, m in sw["modes"].items()
              if "tape_model_mb_per_step" in m]
    parts.append("BPTT tape predicted from the layer shapes, MB per step: " + ", ".join(models) + ".")
    t2 = mem.get("table2")
    if t2:
        rows = [(r["mode"], f"{r['peak_mb']:.1f}", f"{r['paper_mb']:.0f}") for r in t2["rows"]]
        rows.append(("BPTT / EP, SNN", f"{t2['bptt_over_ep']['SNN']:.1f}x",
                     f"{t2['paper_bptt_over_ep']['SNN']:.1f}x"))
        rows.append(("BPTT / EP, CRNN", f"{t2['bptt_over_ep']['CRNN']:.1f}x",
                     f"{t2['paper_bptt_over_ep']['CRNN']:.1f}x"))
        parts.append(f"## Table II protocol (batch {t2['batch']}, 2C2FC, EP T = {t2['T_free']} + "
                     f"{t2['T_nudge']} + {t2['T_nudge']}, BPTT T = {t2['T_bptt']})\n\n"
                     + _table(("mode", "ours MB", "paper MB"), rows) + "\n\n" + t2["note"])
    else:
        parts.append("Table II protocol: not run (--quick).")
    return parts


def summary_markdown(out_dir):
    """The Markdown summary of the JSON files in ``out_dir`` (any of them may be missing)."""
    out_dir = pathlib.Path(out_dir)
    results = {name: _load(out_dir / f"{name}.json") for name in BENCHMARKS}
    if all(r is None for r in results.values()):
        raise FileNotFoundError(f"no benchmark JSON in {out_dir}")
    ops, net, mem = results["ops"], results["network"], results["memory"]
    parts = ["# Benchmark summary",
             f"Written {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')} "
             f"by `benchmarks/run.py` from the JSON files in `{out_dir.name}/`."]
    if any(r is not None and r.get("quick") for r in results.values()):
        parts.append("> **--quick run**: tiny sizes, a smoke test of the benchmarks. These numbers "
                     "are not measurements and the verdicts below mean nothing.")
    parts.append(_machine_section(results))
    rows = [(t["target"], t["measured"], t["threshold"], _verdict(t["met"]))
            for t in targets(ops, net, mem)]
    parts.append("## Targets\n\n" + _table(("target", "measured", "threshold", "verdict"), rows))
    if ops is not None:
        parts.append(_ops_section(ops))
    if net is not None:
        parts += _network_sections(net)
    if mem is not None:
        parts += _memory_sections(mem)
    return "\n\n".join(parts) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark's smoke run (seconds)")
    parser.add_argument("--out-dir", default=None,
                        help=f"where the JSON files and summary.md go (default {DEFAULT_DIR}; "
                             f"with --quick {QUICK_DIR})")
    parser.add_argument("--only", default=",".join(BENCHMARKS),
                        help="comma-separated subset of " + ",".join(BENCHMARKS))
    parser.add_argument("--summary-only", action="store_true",
                        help="run nothing; rewrite summary.md from the JSON files in --out-dir")
    args = parser.parse_args(argv)
    out_dir = pathlib.Path(args.out_dir or (QUICK_DIR if args.quick else DEFAULT_DIR))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    if not args.summary_only:
        for name in names:
            print(f"== {name} ==", flush=True)
            BENCHMARKS[name].main((["--quick"] if args.quick else []) + ["--out", str(out_dir / f"{name}.json")])
            print(flush=True)
    text = summary_markdown(out_dir)
    bench_ops.write_text(text, out_dir / "summary.md")
    print("== targets ==")
    for t in targets(*(_load(out_dir / f"{n}.json") for n in BENCHMARKS)):
        print(f"  {_verdict(t['met']).strip('*'):<12} {t['target']}: {t['measured']} ({t['threshold']})")
    print(f"wrote {out_dir / 'summary.md'}")
    return text


if __name__ == "__main__":
    main()
