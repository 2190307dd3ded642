"""``summary.md``: the benchmark JSON files as Markdown tables, and the issue's targets with a verdict each.

Every number and every verdict is read from the JSON files (any of them may be missing); the
thresholds are ``nets.TARGETS``.
"""
import json
import math
import pathlib

from . import common
from .nets import BY_NAME, TARGET_THREADS, TARGETS

FILES = ("ops", "network", "memory")


def load(out_dir, name):
    """The JSON of benchmark ``name`` in ``out_dir``, or None (also for a file of an older format)."""
    try:
        with open(pathlib.Path(out_dir) / f"{name}.json") as f:
            result = json.load(f)
    except FileNotFoundError:
        return None
    return result if "load" in result else None          # written before these benchmarks: ignored


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _pct(v):
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.1f}%"


def verdict(met):
    return "not measured" if met is None else ("**met**" if met else "**not met**")


def targets(network):
    """One row per target of ``nets.TARGETS``: ``net``, ``title``, ``target``, ``measured``, ``met``.

    ``met`` is None when ``network`` (network.json) has no measurement for it: no file, the net
    not run, or no A/B for a speedup target.
    """
    rows = []
    by_net = {r["name"]: r for r in network["nets"]} if network else {}
    by_ab = {r["net"]: r for r in network["ab"]["nets"]} if network and network.get("ab") else {}
    for name, kind, threshold in TARGETS:
        row = {"net": name, "title": BY_NAME[name].title, "kind": kind, "threshold": threshold,
               "measured": "-", "met": None}
        if kind == "speedup":
            row["target"] = f">= {threshold:g}x faster than the baseline"
            ab = by_ab.get(name)
            if ab is not None:
                row["measured"] = (f"{ab['speedup_median']:.2f}x ({ab['baseline_median_s']:.3f} s -> "
                                   f"{ab['current_median_s']:.3f} s, median of {len(ab['speedups'])} pairs)")
                row["met"] = ab["speedup_median"] >= threshold
        else:
            row["target"] = f"<= {threshold:g} ms per step at batch {BY_NAME[name].batch}"
            r = by_net.get(name)
            if r is not None:
                row["measured"] = f"{1e3 * r['step_s']:.1f} ms per step (batch {r['batch']})"
                if name in by_ab:
                    row["measured"] += f", {by_ab[name]['speedup_median']:.2f}x the baseline"
                row["met"] = 1e3 * r["step_s"] <= threshold
        rows.append(row)
    return rows


def _threads_note(network):
    threads = {network.get("threads"), (network.get("ab") or {}).get("threads", network.get("threads"))}
    if threads != {TARGET_THREADS}:
        return (f"> Measured with {', '.join(str(t) for t in threads)} BLAS thread(s): the targets are "
                f"set for {TARGET_THREADS}.")
    return None


def machine_section(results):
    first = next(r for r in results.values() if r is not None)
    m = first["machine"]
    rows = [("CPU", f"{m['cpu_model']}, {m['cpu_count']} cores ({m.get('cpus_usable')} usable)"),
            ("Python / NumPy / BLAS", f"{m['python']} / {m['numpy']} / "
             f"{m['blas'].get('name', '?')} {m['blas'].get('version', '')}".strip()),
            ("backend", m["backend"] + (f" ({m['gpu']})" if "gpu" in m else ""))]
    for name, r in results.items():
        if r is None:
            continue
        load, others = r["load"], r["load"].get("other_cores")
        desc = (f"created {r['created']}, BLAS threads {r.get('threads')}, 1-min load {load['before']:.2f} -> "
                f"{load['after']:.2f}" + ("" if others is None else f", other processes {others:.2f} cores")
                + (" **(busy machine: numbers suspect)**" if load["busy"] else ""))
        if r.get("gemm_peak"):
            desc += (f", GEMM peak {r['gemm_peak']['gflops']:.1f} -> {r['gemm_peak_end']['gflops']:.1f} "
                     f"GFLOP/s ({r['gemm_peak']['n']}^2 float32)")
        rows.append((f"{name}.json", desc + (", **--quick**" if r.get("quick") else "")))
    return "## Machine\n\n" + _table(("", ""), rows)


def network_sections(net):
    parts = []
    rows = [(r["title"], r["batch"], f"{r['T_free']} + 2x{r['T_nudge']}",
             f"{1e3 * r['batch_s']:.1f}" + (" *" if r["extrapolated"] else ""), f"{1e3 * r['step_s']:.2f}",
             f"{r['flops']['step_free'] / 1e6:.1f} / {r['flops']['step_nudged'] / 1e6:.1f}",
             f"{r['flops']['per_step'] / 1e6:.1f}", f"{r['gflops']:.1f}", _pct(r["fraction_of_peak"]),
             f"{r['samples_per_s']:.1f}") for r in net["nets"]]
    extrapolated = "; ".join(f"{r['title']} runs {r['measured']['T_free']} + 2x{r['measured']['T_nudge']} steps"
                             for r in net["nets"] if r["extrapolated"])
    parts.append(f"## EP training batch per net (symmetric EP, float32, GEMM peak "
                 f"{net['gemm_peak_gflops']:.1f} GFLOP/s, the better of the run's start and end)\n\n"
                 "Best of the repeats. ms per step: the marginal cost of a step, (batch - half batch) / "
                 "(steps - half steps). "
                 "FLOPs counted from the layers at the shapes the library computes (benchmarks/benchlib/flops.py)."
                 + (f" \\* extrapolated: {extrapolated}; the batch is its fixed cost + T x the step."
                    if extrapolated else "") + "\n\n"
                 + _table(("net", "batch", "T", "ms/batch", "ms/step", "MFLOP free / nudged step",
                           "MFLOP/step (batch avg)", "GFLOP/s", "% GEMM peak", "samples/s"), rows))
    rows = [(r["title"], *(_pct(r["breakdown"]["fraction"][p]) for p in
                           ("gemm", "layout", "pooling", "elementwise", "rest")),
             r["breakdown"]["calls"], f"{r['breakdown']['wall_s']:.3f}")
            for r in net["nets"] if r.get("breakdown")]
    if rows:
        parts.append("## Where the time goes (one batch under cProfile, benchmarks/benchlib/breakdown.py)\n\n"
                     "GEMM: fast.gemm and the dense/readout products; layout: im2col/col2im and the "
                     "batch-last transposes; element-wise: the dynamics (update, encode/decode, "
                     "sigma_delta, tally, drive, the weight update); rest: Python overhead and "
                     "allocation. Profiler overhead inflates the Python parts.\n\n"
                     + _table(("net", "GEMM", "layout", "pooling", "element-wise", "rest",
                               "function calls", "profiled s"), rows))
    ab = net.get("ab")
    if ab:
        cur = ab["current"]
        rows = [(BY_NAME[r["net"]].title if r["net"] in BY_NAME else r["net"], f"{r['T_free']} + 2x{r['T_nudge']}",
                 r["batch"], f"{r['baseline_median_s']:.3f}", f"{r['current_median_s']:.3f}",
                 f"**{r['speedup_median']:.2f}x** ({min(r['speedups']):.2f}-{max(r['speedups']):.2f})",
                 f"{r['ratio_of_medians']:.2f}x") for r in ab["nets"]]
        parts.append(f"## A/B against the baseline {ab['baseline']['ref']} ({ab['baseline']['commit'][:10]})\n\n"
                     f"Current: {(cur['commit'] or '?')[:10]}{' + uncommitted changes' if cur['dirty'] else ''}. "
                     f"Each batch in a fresh process, baseline and current alternately, {ab['repeats']} pairs, "
                     f"{ab['threads']} BLAS thread(s); speedup = baseline s / current s per pair, median "
                     f"(range). Cores used by other processes in each repetition: "
                     + ", ".join("?" if v["other_cores"] is None else f"{v['other_cores']:.2f}"
                                 for v in ab["load"])
                     + (" **(busy)**" if any(v["busy"] for v in ab["load"]) else "") + ".\n\n"
                     + _table(("net", "T run", "batch", "baseline s", "current s", "speedup", "ratio of medians"),
                              rows))
    return parts


def ops_section(ops):
    rows = [(r["layer"], f"`{r['op']}`", r["path"], f"{1e3 * r['median_s']:.3f}",
             f"{r['gflops']:.1f}" if "gflops" in r else "-", _pct(r.get("fraction_of_peak")),
             f"{r['gbytes_per_s']:.2f}" if "gbytes_per_s" in r else "-") for r in ops["ops"]]
    shapes = "; ".join(f"{k}: {v['C']} -> {v['C_out']} channels, {v['H']}x{v['H']}, {v['K']}x{v['K']}, "
                       f"batch {v['N']}"
                       for k, v in ops["layers"].items())
    return ("## Ops and conv-layer routes (float32)\n\n" + shapes + ". Paths: fast / readable "
            "(`fast.use(False)`); routes: fused (the fast path's layer), two-step (conv then pool, fast "
            "ops), readable.\n\n" + _table(("layer", "op", "path", "median ms", "GFLOP/s", "% GEMM peak", "GB/s"),
                                           rows))


def memory_sections(mem):
    sw = mem["sweep"]
    rows = [[mode] + [f"{r['peak_mb']:.1f}" for r in sw["rows"] if r["mode"] == mode]
            + [f"{m['slope_mb_per_step']:.3f}", f"{m['r2']:.4f}", _pct(m["spread"])]
            for mode, m in sw["modes"].items()]
    parts = [f"## Peak memory of one training step against T (quickstart net, batch {sw['batch']})\n\n"
             f"MB (2^20 bytes), {mem['method']}. EP: {sw['ep_split']}; BPTT unrolls T steps.\n\n"
             + _table(["mode"] + [f"T={T}" for T in sw["Ts"]] + ["MB per step", "R^2", "spread"], rows)]
    p = mem.get("paths")
    if p:
        rows = [(r["net"], r["mode"], r["path"], f"{r['peak_mb']:.1f}") for r in p["rows"]]
        parts.append(f"EP peak memory, fast path vs readable path (batch {p['batch']}, T {p['T_free']} + "
                     f"2x{p['T_nudge']}):\n\n" + _table(("net", "mode", "path", "peak MB"), rows))
    t2 = mem.get("table2")
    if t2:
        rows = [(r["mode"], f"{r['peak_mb']:.1f}", f"{r['paper_mb']:.0f}") for r in t2["rows"]]
        rows += [(f"BPTT / EP, {k}", f"{t2['bptt_over_ep'][k]:.1f}x", f"{t2['paper_bptt_over_ep'][k]:.1f}x")
                 for k in ("SNN", "CRNN")]
        parts.append(f"## Table II protocol (batch {t2['batch']}, 2C2FC, EP T = {t2['T_free']} + "
                     f"{t2['T_nudge']} + {t2['T_nudge']}, BPTT T = {t2['T_bptt']})\n\n"
                     + _table(("mode", "ours MB", "paper MB"), rows) + "\n\n" + t2["note"])
    return parts


def markdown(out_dir):
    """The Markdown summary of the JSON files in ``out_dir``; FileNotFoundError if there are none."""
    results = {name: load(out_dir, name) for name in FILES}
    if all(r is None for r in results.values()):
        raise FileNotFoundError(f"no benchmark JSON (of the current format) in {out_dir}: run the benchmarks")
    ops, net, mem = (results[n] for n in FILES)
    parts = ["# Benchmark summary", f"Written {common.now()} by `benchmarks/run.py` from the JSON files "
             f"in `{pathlib.Path(out_dir).name}/`."]
    if any(r is not None and r.get("quick") for r in results.values()):
        parts.append("> **--quick run**: tiny sizes, a smoke test of the benchmarks. These numbers are not "
                     "measurements and the verdicts below mean nothing.")
    parts.append(machine_section(results))
    rows = [(t["title"], t["target"], t["measured"], verdict(t["met"])) for t in targets(net)]
    note = _threads_note(net) if net else None
    parts.append("## Targets (issue 13)\n\n" + (note + "\n\n" if note else "")
                 + _table(("net", "target", "measured", "verdict"), rows))
    if net is not None:
        parts += network_sections(net)
    if ops is not None:
        parts.append(ops_section(ops))
    if mem is not None:
        parts += memory_sections(mem)
    return "\n\n".join(parts) + "\n"
