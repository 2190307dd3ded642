"""Time EP training batches of whichever minimal_ep is first on PYTHONPATH (the A/B's child process).

    python benchmarks/ab_child.py '<JSON>'      # run by benchlib/ab.py, once per version and net

The JSON holds ``cases``: ``{"name", "build": build_network's keyword arguments, "batch",
"T_free", "T_nudge", "repeats"}``. For each case the child builds the net, runs one warm-up batch
of half the steps (allocations, scratch buffers, the heap grown to a batch's size), then times
``repeats`` whole batches and prints one JSON line: ``{"minimal_ep": the package file imported,
"times": {name: [seconds, ...]}}``.

Only API that the baseline commits (fbe01e1, 9374924) and today's code share is used:
``build_network`` with explicit keyword arguments, ``ep_gradients(net, x, y, beta, T_free,
T_nudge)`` and ``optim.SGD(net.params, lr).step(grads)``. A keyword the imported version's
``build_network`` does not take (``fast``, new with issue 24: the fast path was on by default
before) is left out. Nothing else is imported from the benchmarks, so the child measures the
library on PYTHONPATH and nothing of this checkout.
"""
import inspect
import json
import sys
import time

BETA, LR = 0.2, 1e-3
OPTIONAL = ("fast",)            # passed only to a build_network whose signature has it


def build_arguments(build, build_network):
    """``build`` as build_network's keyword arguments: sequences as tuples, OPTIONAL keys it lacks dropped."""
    params = inspect.signature(build_network).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in build.items():
        if key in OPTIONAL and key not in params and not takes_any:
            continue
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def time_case(case, np, build_network, ep_gradients, optim):
    """Seconds of ``case["repeats"]`` EP training batches of one net, after a short warm-up batch."""
    build = build_arguments(case["build"], build_network)
    net = build_network(**build)
    rng = np.random.default_rng(0)
    x = rng.random((case["batch"],) + tuple(build["input_shape"]), dtype=np.float32)
    y = rng.integers(0, build["n_classes"], case["batch"])
    opt = optim.SGD(net.params, LR)
    opt.step(ep_gradients(net, x, y, BETA, max(1, case["T_free"] // 2), max(1, case["T_nudge"] // 2)))   # warm-up
    times = []
    for _ in range(case["repeats"]):
        t0 = time.perf_counter()
        opt.step(ep_gradients(net, x, y, BETA, case["T_free"], case["T_nudge"]))
        times.append(time.perf_counter() - t0)
    return times


def main(argv):
    spec = json.loads(argv[0])
    import numpy as np
    import minimal_ep
    from minimal_ep import build_network, ep_gradients, optim
    times = {case["name"]: time_case(case, np, build_network, ep_gradients, optim) for case in spec["cases"]}
    print(json.dumps({"minimal_ep": minimal_ep.__file__, "times": times}))


if __name__ == "__main__":
    main(sys.argv[1:])
