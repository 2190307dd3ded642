"""Where the time of an EP batch goes: one batch under cProfile, every function's time given to a part.

cProfile times Python functions and C functions called from Python (``ndarray.copy``, builtins);
it does not see ufuncs, so ``a @ b`` or ``x + y`` are time spent in the function that wrote them.
That is what makes the attribution work: every matrix product of the fast path is inside
``minimal_ep.fast.ops.gemm`` (all of its time, callees included, is GEMM), and the dense layers and
the softmax readout write theirs inside their methods (their own time is GEMM). The parts:

``gemm``         ``fast.ops.gemm`` (cumulative), the own time of ``Dense``'s routes and the readout's
                 products
``layout``       im2col / col2im, to_batch_last / from_batch_last (and the copies they make)
``pooling``      pooling.py, the fast path's max pooling, unpooling and gathering, unpooling scales
``elementwise``  the dynamics: update, drive, total inputs, predictive encode/decode,
                 sigma_delta, the spike tally, the residual, dPhi/dtheta's sums, the weight update
                 (the readable channel's and the fast one's)
``rest``         everything else: Python overhead (loops, lists, checks), allocation

Names are ``module.Qualified.name`` relative to the package (``fast.ops.gemm``, ``spiking.Channel.send``).

A function of the package gets the part its name is listed under (``rest`` if none; a function
nested in one, such as the channel blocks that ``fast.ops.by_channel`` runs, is named
``outer.inner`` and matched by ``outer*``). Anything else (NumPy's Python functions, C methods such
as ``copy`` or ``fill``, and ``by_channel``, which waits for its threads) works for whoever called
it, so its time is split among its callers' parts, in proportion to the time each call took;
view and metadata calls (``reshape``, builtins, dtype names) are overhead (``rest``). The parts are
a partition: they sum to the profile's total time. cProfile sees the main thread only: with more
than one thread, the channel blocks the other threads run show up as the main thread's wait, in the
part of the pass that waits (so the parts stay shares of the wall time).
"""
import ast
import cProfile
import fnmatch
import functools
import pathlib
import pstats
import time

import minimal_ep

PACKAGE = pathlib.Path(minimal_ep.__file__).resolve().parent
PARTS = ("gemm", "layout", "pooling", "elementwise", "rest")
SUBTREE = {"fast.ops.gemm"}           # everything called from these is theirs
RULES = {
    "gemm": ["fast.ops.gemm", "layers.Dense.forward", "layers.Dense.backward", "layers.Dense.dphi_dw",
             "layers.Dense.forward_vjp", "layers.Dense.backward_vjp", "layers.SoftmaxReadout.logits",
             "layers.SoftmaxReadout.nudge", "layers.SoftmaxReadout.loss_gradient"],
    "layout": ["fast.ops.to_batch_last*", "fast.ops.from_batch_last*", "fast.ops.im2col_batched*",
               "fast.ops.col2im_batched*", "fast.ops._col2im_plan", "conv.im2col", "conv.col2im"],
    "pooling": ["pooling.*", "fast.ops.max_pool_bl*", "fast.ops.max_unpool_bl*", "fast.ops.gather_pool_bl*",
                "fast.ops.window_view", "fast.ops._blend", "fast.ops.index_dtype", "fast.layers._scaled"],
    "elementwise": ["dynamics.*", "spiking.sigma_delta", "spiking.predictive_encode",
                    "spiking.predictive_decode", "spiking.Channel.*", "spiking.SpikeTally.*",
                    "fast.spiking.*",
                    "network.ConvergentRNN.drive", "network.ConvergentRNN.total_inputs",
                    "network.ConvergentRNN.residual", "network.ConvergentRNN.dphi_dtheta",
                    "layers.*.sum_to_bias", "layers.MSEOutput.*", "layers.SoftmaxReadout.softmax",
                    "ep.ep_gradients", "optim.SGD.step"],
}
INHERIT = {"fast.ops.by_channel"}      # a dispatcher: its time (waiting for its threads) is its caller's part
OVERHEAD_CALLS = ("reshape", "transpose", "view", "builtins.", "_dtype.py", "numerictypes.py",
                  "_thread", "__exit__", "__enter__")


@functools.lru_cache(maxsize=None)
def _functions(path):
    """[(first line, last line, qualified name)] of every function and method in a source file."""
    out = []

    def walk(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = prefix + child.name
                if not isinstance(child, ast.ClassDef):
                    first = min([child.lineno] + [d.lineno for d in child.decorator_list])
                    out.append((first, child.end_lineno, name))
                walk(child, name + ".")
    walk(ast.parse(pathlib.Path(path).read_text()), "")
    return out


def package_name(entry):
    """``module.Qualified.name`` of a profile entry inside minimal_ep (a list comprehension or a
    lambda gets its enclosing function's), or None for code outside the package."""
    path, line, _ = entry
    try:
        rel = pathlib.Path(path).resolve().relative_to(PACKAGE)
    except (ValueError, OSError):
        return None
    module = ".".join(rel.with_suffix("").parts)
    inner = [(last - first, name) for first, last, name in _functions(str(path)) if first <= line <= last]
    return f"{module}.{min(inner)[1]}" if inner else module


def _rule_part(name):
    for part, patterns in RULES.items():
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            return part
    return "rest"


def _overhead(entry):
    path, _, func = entry
    text = f"{path}:{func}"
    return any(tag in text for tag in OVERHEAD_CALLS)


def attribute(stats):
    """{part: seconds} of a ``pstats.Stats``: every function's own time split among the parts."""
    raw = stats.stats
    shares = {}                                       # entry -> {part or "gemm*": fraction}

    def share(entry, depth=0):
        if entry in shares:
            return shares[entry]
        shares[entry] = {"rest": 1.0}                 # provisional: breaks recursion cycles
        name = package_name(entry)
        name = None if name in INHERIT else name
        callers = raw[entry][4]
        weights = {c: v[2] for c, v in callers.items() if c in raw}
        total = sum(weights.values())
        if total <= 0:
            weights = {c: 1.0 for c in weights} or {None: 1.0}
            total = float(len(weights))
        out = {}
        for caller, w in weights.items():
            w /= total
            parent = share(caller, depth + 1) if caller is not None and depth < 50 else {}
            inside = parent.get("gemm*", 0.0)         # this call runs inside fast.gemm
            out["gemm*"] = out.get("gemm*", 0.0) + w * inside
            w *= 1.0 - inside
            if name in SUBTREE:
                out["gemm*"] += w
            elif name is not None:
                part = _rule_part(name)
                out[part] = out.get(part, 0.0) + w
            elif _overhead(entry) or not parent:
                out["rest"] = out.get("rest", 0.0) + w
            else:                                     # NumPy internals, C methods: the caller's part
                scale = sum(v for k, v in parent.items() if k != "gemm*")
                for part, v in parent.items():
                    if part != "gemm*" and scale > 0:
                        out[part] = out.get(part, 0.0) + w * v / scale
        shares[entry] = out
        return out

    seconds = dict.fromkeys(PARTS, 0.0)
    for entry, (_, _, tottime, _, _) in raw.items():
        for part, frac in share(entry).items():
            seconds["gemm" if part == "gemm*" else part] += tottime * frac
    return seconds


def profile_batch(run):
    """Run ``run()`` (one EP batch) under cProfile.

    Returns
    -------
    dict
        ``wall_s`` (the profiled call, profiler overhead included), ``profiled_s`` (the profile's
        total), ``seconds`` and ``fraction`` per part (the fractions sum to 1), ``calls`` (Python
        and C function calls seen, a measure of per-step overhead).
    """
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    run()
    profiler.disable()
    wall = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    seconds = attribute(stats)
    total = sum(seconds.values())
    return {"wall_s": wall, "profiled_s": stats.total_tt, "calls": stats.total_calls,
            "seconds": seconds, "fraction": {p: s / total if total else 0.0 for p, s in seconds.items()}}
