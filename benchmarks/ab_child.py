"""Time EP training batches of whichever minimal_ep is first on PYTHONPATH (the A/B's child process).

    python benchmarks/ab_child.py '<JSON>'      # run by ab.py, once per version and net

The JSON holds ``cases``: ``{"name", "build": build_network's keyword arguments, "batch",
"T_free", "T_nudge", "repeats"}``. For each case the child builds the net, runs one short warm-up
batch (allocations, scratch buffers), then times ``repeats`` whole batches and prints one JSON
line: ``{"minimal_ep": the package file imported, "times": {name: [seconds, ...]}}``.

Only API that the baseline commit and today's code share is used: ``build_network`` with explicit
keyword arguments, ``ep_gradients(net, x, y, beta, T_free, T_nudge)`` and
``optim.SGD(net.params, lr).step(grads)``. Nothing else is imported from the benchmarks, so the
child measures the library on PYTHONPATH and nothing of this checkout.
"""
import json
import sys
import time

BETA, LR = 0.2, 1e-3


def time_case(case, np, build_network, ep_gradients, optim):
    """Seconds of ``case["repeats"]`` EP training batches of one net, after a short warm-up batch."""
    build = dict(case["build"])
    build["input_shape"] = tuple(build["input_shape"])
    for key in ("conv_channels", "hidden"):
        build[key] = tuple(build[key])
    net = build_network(**build)
    rng = np.random.default_rng(0)
    x = rng.random((case["batch"],) + build["input_shape"], dtype=np.float32)
    y = rng.integers(0, build["n_classes"], case["batch"])
    opt = optim.SGD(net.params, LR)
    opt.step(ep_gradients(net, x, y, BETA, 2, 1))                  # warm-up
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
