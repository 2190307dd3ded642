"""``summary.md``: the benchmark JSON files as Markdown tables, and the issue's targets with a verdict each.

Every number and every verdict is read from the JSON files (any of them may be missing); the
thresholds are ``nets.TARGETS``.
"""
import json
import math
import pathlib

from . import common
from .nets import (BY_NAME, CAMPAIGN, EPOCH_TEST_BATCHES, EPOCH_TRAIN_BATCHES, TARGET_THREADS, TARGETS,
                   TEST_STEPS)

FILES = ("ops", "network", "memory")
NOTES = "notes.md"           # optional, by hand: what the JSON cannot say (the state of the machine, ...)


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


def comparisons(network):
    """The A/B comparisons of network.json: ``[{"ref", "commit", "threads", "nets"}]`` (empty without an A/B)."""
    return list(((network or {}).get("ab") or {}).get("comparisons", []))


def targets(network):
    """One row per target of ``nets.TARGETS`` and thread count: ``net``, ``title``, ``threads``, ``target``,
    ``measured``, ``met``.

    A speedup target is checked against the A/B with its baseline at each thread count the A/B ran
    (``nets.TARGET_THREADS`` when there is none); ``met`` is None when ``network`` (network.json)
    has no measurement for it: no file, the net not run, or no A/B against that baseline.
    """
    rows = []
    by_net = {r["name"]: r for r in network["nets"]} if network else {}
    comps = comparisons(network)
    for name, kind, threshold, ref in TARGETS:
        base = {"net": name, "title": BY_NAME[name].title, "kind": kind, "threshold": threshold, "ref": ref,
                "measured": "-", "met": None}
        if kind == "speedup":
            base["target"] = f">= {threshold:g}x faster than {ref}"
            mine = [c for c in comps if c["ref"] == ref]
            for t in sorted({c["threads"] for c in mine} or set(TARGET_THREADS)):
                row = dict(base, threads=t)
                ab = next((r for c in mine if c["threads"] == t for r in c["nets"] if r["net"] == name), None)
                if ab is not None:
                    row["measured"] = (f"{ab['speedup_median']:.2f}x ({min(ab['speedups']):.2f}-"
                                       f"{max(ab['speedups']):.2f}; {ab['baseline_median_s']:.3f} s -> "
                                       f"{ab['current_median_s']:.3f} s, median of {len(ab['speedups'])} pairs)")
                    row["met"] = ab["speedup_median"] >= threshold
                rows.append(row)
        else:
            row = dict(base, threads=(network or {}).get("threads") or "-",
                       target=f"<= {threshold:g} ms per step at batch {BY_NAME[name].batch}")
            r = by_net.get(name)
            if r is not None:
                row["measured"] = f"{1e3 * r['step_s']:.1f} ms per step (batch {r['batch']})"
                row["met"] = 1e3 * r["step_s"] <= threshold
            rows.append(row)
    return rows


def _threads_note(network):
    ran = sorted({c["threads"] for c in comparisons(network)})
    if ran and set(ran) != set(TARGET_THREADS):
        return (f"> The A/B ran with {', '.join(str(t) for t in ran)} BLAS thread(s): the targets are "
                f"set for {' and '.join(str(t) for t in TARGET_THREADS)}.")
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
                     "batch-last transposes; pooling: max pooling, unpooling and gathering; element-wise: "
                     "the dynamics (update, encode/decode, sigma_delta, tally, drive, the weight update); "
                     "rest: Python overhead and allocation. Profiler overhead inflates the Python parts.\n\n"
                     + _table(("net", "GEMM", "layout", "pooling", "element-wise", "rest",
                               "function calls", "profiled s"), rows))
    ab = net.get("ab")
    for comp in comparisons(net):
        cur = ab["current"]
        rows = [(BY_NAME[r["net"]].title if r["net"] in BY_NAME else r["net"], f"{r['T_free']} + 2x{r['T_nudge']}",
                 r["batch"], f"{r['baseline_median_s']:.3f}", f"{r['current_median_s']:.3f}",
                 f"**{r['speedup_median']:.2f}x** ({min(r['speedups']):.2f}-{max(r['speedups']):.2f})",
                 f"{r['ratio_of_medians']:.2f}x") for r in comp["nets"]]
        parts.append(f"## A/B against {comp['ref']} ({comp['commit'][:10]}), {comp['threads']} BLAS thread(s)\n\n"
                     f"Current: {(cur['commit'] or '?')[:10]}{' + uncommitted changes' if cur['dirty'] else ''}. "
                     f"Each batch in a fresh process, the versions interleaved (order reversed every "
                     f"repetition), {ab['repeats']} repetitions; speedup = baseline s / current s of the same "
                     f"repetition, median (range). Cores used by other processes in each repetition: "
                     + ", ".join("?" if v["other_cores"] is None else f"{v['other_cores']:.2f}"
                                 for v in ab["load"])
                     + (" **(busy)**" if any(v["busy"] for v in ab["load"]) else "") + ".\n\n"
                     + _table(("net", "T run", "batch", "baseline s", "current s", "speedup", "ratio of medians"),
                              rows))
    return parts


def epoch_seconds(batch_s, net):
    """One epoch of a figure net from the time of one training batch: the training batches, and the test
    batches counted as TEST_STEPS / (T_free + 2 T_nudge) of a training batch (a free phase only)."""
    return batch_s * (EPOCH_TRAIN_BATCHES + EPOCH_TEST_BATCHES * TEST_STEPS / net.steps)


def campaign(network):
    """Rows of the figure campaign's projected CPU time per epoch, from the A/B medians (every thread count
    and baseline that ran all the campaign's nets) and from the in-process batch times."""
    rows = []
    in_process = {r["name"]: r for r in (network or {}).get("nets", [])}
    if all(n in in_process and not in_process[n]["extrapolated"] for n in CAMPAIGN):
        secs = sum(k * epoch_seconds(in_process[n]["batch_s"], BY_NAME[n]) for n, k in CAMPAIGN.items())
        rows.append((f"current, in-process best ({network.get('threads')} BLAS thread(s))", secs))
    for comp in comparisons(network):
        by = {r["net"]: r for r in comp["nets"]}
        if all(n in by for n in CAMPAIGN):
            for who, key in (("current", "current_median_s"), (comp["ref"], "baseline_median_s")):
                secs = sum(k * epoch_seconds(by[n][key], BY_NAME[n]) for n, k in CAMPAIGN.items())
                rows.append((f"{who}, A/B median ({comp['threads']} BLAS thread(s))", secs))
    return rows


def campaign_section(network):
    rows = campaign(network)
    if not rows:
        return None
    nets = ", ".join(f"{k}x {BY_NAME[n].title}" for n, k in CAMPAIGN.items())
    return ("## The figure campaign: projected CPU time per epoch\n\n"
            f"{nets}; per net and epoch {EPOCH_TRAIN_BATCHES} training batches of 25 (T 250 + 2x50) and "
            f"{EPOCH_TEST_BATCHES} test batches of 25 (a free phase of {TEST_STEPS} steps, counted as "
            f"{TEST_STEPS}/350 of a training batch). One process per net, each on one core (CPU hours = "
            "wall hours of one core).\n\n"
            + _table(("timing", "CPU hours per epoch (8 nets)", "CPU seconds per epoch and net (mean)"),
                     [(who, f"{secs / 3600:.2f}", f"{secs / sum(CAMPAIGN.values()):.0f}") for who, secs in rows]))


def ops_section(ops):
    rows = [(r["layer"], f"`{r['op']}`", r["path"], f"{1e3 * r['median_s']:.3f}",
             f"{r['gflops']:.1f}" if "gflops" in r else "-", _pct(r.get("fraction_of_peak")),
             f"{r['gbytes_per_s']:.2f}" if "gbytes_per_s" in r else "-") for r in ops["ops"]]
    shapes = "; ".join(f"{k}: {v['C']} -> {v['C_out']} channels, {v['H']}x{v['H']}, {v['K']}x{v['K']}, "
                       f"batch {v['N']}"
                       for k, v in ops["layers"].items())
    return ("## Ops and conv-layer routes (float32)\n\n" + shapes + ". Ops: fast (minimal_ep.fast.ops; "
            "max pooling on the fast layers' layout) / readable (minimal_ep.conv, minimal_ep.pooling); "
            "routes: fused (the fast path's layer, `fast.fast_layer(layer)`) / readable (`ConvPool`). "
            "GB/s: the bytes a pooling op must read and write over its time.\n\n"
            + _table(("layer", "op", "path", "median ms", "GFLOP/s", "% GEMM peak", "GB/s"), rows))


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
    out_dir = pathlib.Path(out_dir)
    try:
        where = out_dir.resolve().relative_to(common.REPO)
    except ValueError:
        where = out_dir.name
    parts = ["# Benchmark summary", f"Written {common.now()} by `benchmarks/run.py` from the JSON files "
             f"in `{where}/`" + (" and the notes in `notes.md` (at the end)." if (out_dir / NOTES).exists() else ".")]
    if any(r is not None and r.get("quick") for r in results.values()):
        parts.append("> **--quick run**: tiny sizes, a smoke test of the benchmarks. These numbers are not "
                     "measurements and the verdicts below mean nothing.")
    parts.append(machine_section(results))
    rows = [(t["title"], t["target"], t["threads"], t["measured"], verdict(t["met"])) for t in targets(net)]
    note = _threads_note(net) if net else None
    parts.append("## Targets (issue 25)\n\n" + (note + "\n\n" if note else "")
                 + _table(("net", "target", "BLAS threads", "measured: speedup median (range)", "verdict"),
                          rows))
    if net is not None:
        parts += network_sections(net)
        section = campaign_section(net)
        if section:
            parts.append(section)
    if ops is not None:
        parts.append(ops_section(ops))
    if mem is not None:
        parts += memory_sections(mem)
    if (out_dir / NOTES).exists():
        parts.append("## Notes (notes.md, written by hand)\n\n" + (out_dir / NOTES).read_text().strip())
    return "\n\n".join(parts) + "\n"
