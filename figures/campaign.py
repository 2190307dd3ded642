"""The route measurements of Figs. 2-3 over weight groups, seeds and disjoint sample sets, with a cache.

Three weight groups, each at the dynamics of the config its weights come from:

    own      every configuration on its own trained weights, every training seed available
    shared   all four configurations on the trained weights of one (``--shared``, seed 0): identical
             weights, so a CRNN/SNN difference is due to the spikes alone (the control)
    init     all four on the initialisation of that run's seed (identical by construction)

Each network is measured on the same ``--sets`` disjoint sets of random training samples; every
quantity gets a mean and a sample standard deviation (ddof = 1) over the sets and, where a
configuration has several seeds, over the seeds (of the per-seed means). Per-channel sums are kept
for seed 0 only (channels of different seeds are different features). One measurement of one set is
cached in ``OUT/.cache`` (results/figures/.cache by default, git-ignored) under a hash of the weights,
the configuration, the dynamics and the samples, so fig3 reuses what fig2 measured.
"""
import hashlib
import json
import pathlib
import time

import numpy as np

from minimal_ep import backend
from minimal_ep.run.runs import atomic_write

from figures import nets, routes

GROUPS = ("own", "shared", "init")


def add_arguments(p):
    p.add_argument("--shared", default="crnn_max", choices=nets.NAMES,
                   help="the trained net whose weights every configuration gets in the 'shared' group")
    p.add_argument("--groups", default=",".join(GROUPS), help="weight groups measured (comma-separated)")
    p.add_argument("--layers", default=None, help="layers measured, e.g. 2,3,4 (default: the middle conv layers)")
    p.add_argument("--no-cache", action="store_true", help="measure again instead of reading OUT/.cache")


def units(selected, shared, names, groups):
    """[(group, name, seed index, source Net)]: which weights (and dynamics) each measurement uses."""
    if shared not in selected and set(groups) - {"own"}:
        raise nets.FigureError(f"--shared {shared}: no {nets.LABELS[shared]} net among the checkpoints "
                               f"({', '.join(selected)})")
    base = selected[shared][0] if shared in selected else None
    out = []
    for g in groups:
        for name in names:
            if g == "own":
                out += [(g, name, k, net) for k, net in enumerate(selected.get(name, []))]
            else:
                out.append((g, name, 0, base if g == "shared" else base.initial()))
    return out


def _key(net, dyn, x, y, layers, batch_size):
    h = hashlib.sha256()
    for k in sorted(net.params):
        h.update(k.encode() + backend.to_numpy(net.params[k]).tobytes())
    for a in (x, y):
        h.update(np.ascontiguousarray(a).tobytes())
    settings = [type(net).__name__, net.pool, net.eps, getattr(net, "lam", None), getattr(net, "v_th", None),
                net.alpha, str(net.dtype), dyn["beta"], dyn["T_free"], dyn["T_nudge"], layers, batch_size]
    h.update(json.dumps(settings, default=str).encode())
    return h.hexdigest()[:32]


def measure_cached(net, dyn, x, y, layers, batch_size, cache_dir):
    """:func:`routes.measure`, read from / written to ``cache_dir`` (None: no cache)."""
    path = None
    if cache_dir is not None:
        path = pathlib.Path(cache_dir) / f"routes-{_key(net, dyn, x, y, layers, batch_size)}.json"
        if path.is_file():
            r = json.loads(path.read_text())
            r["layers"] = {int(n): v for n, v in r["layers"].items()}
            return r
    r = routes.measure(net, x, y, dyn, batch_size, layers)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.write(json.dumps(r).encode()))
    return r


def spread(values):
    """{"mean", "std" (ddof 1; 0 for one value), "n"} of a list of numbers."""
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def scalars(m, n):
    """The scalar quantities of layer n of one set's measurement, flattened: ratios, stats, growth."""
    r = m["layers"][n]
    out = {f"ratio_{k}": v for k, v in routes.ratios(r).items()}
    for avg, st in r["stats"].items():
        for k, (mean, std) in st.items():
            out[f"{avg}.{k}.mean"], out[f"{avg}.{k}.std"] = mean, std
        out.update({f"{avg}.growth_{k}": v for k, v in routes.growth(st).items()})
    return out


def summarize(per_seed):
    """Mean and spread over sets and seeds of one configuration; ``per_seed[k]`` = list of set measurements."""
    layers = list(per_seed[0][0]["layers"])
    out = {"layers": {}, "seeds": len(per_seed), "sets": len(per_seed[0])}
    for n in layers:
        q = [[scalars(m, n) for m in sets] for sets in per_seed]
        layer = {}
        for name in q[0][0]:
            seed_means = [spread([s[name] for s in sets]) for sets in q]
            over_seeds = spread([sm["mean"] for sm in seed_means])
            std_sets = float(np.mean([sm["std"] for sm in seed_means]))
            layer[name] = {"mean": over_seeds["mean"], "std_sets": std_sets,
                           "std_seeds": over_seeds["std"] if len(q) > 1 else None,
                           "err": over_seeds["std"] if len(q) > 1 else std_sets,
                           "per_seed": [sm["mean"] for sm in seed_means]}
        for d in ("signed_fwd", "signed_bwd"):                           # seed 0: channels are features
            a = np.array([m["layers"][n][d] for m in per_seed[0]])
            layer[d] = {"mean": a.mean(axis=0).tolist(),
                        "std": (a.std(axis=0, ddof=1) if len(a) > 1 else 0 * a[0]).tolist()}
        out["layers"][n] = layer
    for k in ("residual_free", "residual_nudge"):
        out[k] = spread([m[k] for sets in per_seed for m in sets])
    return out


def run(args, selected, names, log=print):
    """Measure every (group, configuration, seed) on the sample sets; returns (summary, sample description).

    summary[group][name] is :func:`summarize`'s dict plus ``dynamics``, ``weights`` (descriptions)
    and ``params_equal_across_names`` (shared/init groups: True when all configurations got the
    same arrays, checked on the built networks).
    """
    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    bad = [g for g in groups if g not in GROUPS]
    if bad or not groups:
        raise nets.FigureError(f"--groups: unknown {bad or groups}; allowed: {', '.join(GROUPS)}")
    layers = None if args.layers is None else sorted({int(v) for v in args.layers.split(",") if v.strip()})
    first = next(iter(selected.values()))[0]
    sets, source = nets.sample_sets(first.cfg, args.samples, args.sets, args.seed, args.data_dir)
    cache = None if args.no_cache else pathlib.Path(args.out) / ".cache"
    raw, built = {}, {}
    for g, name, k, src in units(selected, args.shared, names, groups):
        net, dyn = src.network(name), src.dynamics
        if layers is not None and any(not (1 <= n <= net.n_conv and n < net.n_layers) for n in layers):
            raise nets.FigureError(f"--layers {args.layers}: only conv layers below the top (1..{net.n_conv})")
        t = time.perf_counter()
        ms = [measure_cached(net, dyn, x, y, layers, args.batch_size, cache) for x, y in sets]
        raw.setdefault(g, {}).setdefault(name, []).append(ms)
        built.setdefault(g, {}).setdefault(name, []).append((src, net))
        log(f"  {g:6s} {nets.LABELS[name]:9s} seed {src.seed}: {time.perf_counter() - t:6.1f}s "
            f"(residual free {np.mean([m['residual_free'] for m in ms]):.2e}, "
            f"nudged {np.mean([m['residual_nudge'] for m in ms]):.2e})")
    out = {}
    for g, per_name in raw.items():
        out[g] = {}
        for name, per_seed in per_name.items():
            s = summarize(per_seed)
            s["dynamics"] = [src.dynamics for src, _ in built[g][name]]
            s["weights"] = [src.describe() for src, _ in built[g][name]]
            out[g][name] = s
        if g != "own":
            nets0 = [built[g][name][0][1].params for name in per_name]
            out[g]["params_equal_across_names"] = all(nets.same_params(nets0[0], p) for p in nets0[1:])
    n = sum(len(x[1]) for x in sets)
    desc = f"{n} random training samples of {source} in {len(sets)} disjoint sets (seed {args.seed})"
    return out, desc
