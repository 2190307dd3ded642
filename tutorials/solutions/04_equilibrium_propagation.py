"""Solutions to the exercises of tutorial 04 (Equilibrium Propagation against BPTT).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in fast mode and checks what it should establish. Only the stable public
API is used: ``build_network``, ``net.params``, ``net.free_phase``, ``net.loss``, ``ep_gradients``,
``bptt_gradients``, ``optim.SGD``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import avg_pool2d, datasets
from minimal_ep.gradcheck import relative_error
from minimal_ep.optim import SGD

FAST = os.environ.get("MINIMAL_EP_FAST", "0") == "1"
T = 100


def problem(seed=3):
    """Tutorial 04's setting: 8 digits pooled to 14x14, conv 4 -> conv 8 -> 16 -> 10, float64, eps = 1."""
    data = datasets.load_dataset("mnist")
    x = avg_pool2d(datasets.to_float_images(data["train_images"][:8], "float64"), 2)
    y = data["train_labels"][:8]
    net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(4, 8), hidden=(16,), pool="avg",
                            loss="mse", dtype="float64", seed=seed, eps=1.0, spiking=False)
    return net, x, y


# ---------------------------------------------------------------------------------- exercise 1
def exercise_1(seed=3, fast=FAST, beta=0.01):
    """symmetric(beta) against the mean of the one-sided estimates at +beta and -beta.

    ``-(1/2b)(A(b) - A(-b)) = 1/2 [-(1/b)(A(b) - A(0)) - (1/(-b))(A(-b) - A(0))]``: the symmetric
    estimator *is* that mean, so the O(beta) terms of the two one-sided estimates (equal and of
    opposite sign) cancel, leaving O(beta^2).

    Returns
    -------
    dict
        ``identity_gap``: max relative difference over tensors; ``errors``: relative errors against
        BPTT of one-sided(+beta), one-sided(-beta) and symmetric.
    """
    net, x, y = problem(seed)
    free = net.free_phase(x, T)
    T_nudge = 60
    one_p = mep.ep_gradients(net, x, y, beta, T, T_nudge, "one-sided", free_state=free)
    one_m = mep.ep_gradients(net, x, y, -beta, T, T_nudge, "one-sided", free_state=free)
    sym = mep.ep_gradients(net, x, y, beta, T, T_nudge, "symmetric", free_state=free)
    bptt = mep.bptt_gradients(net, x, y, T)
    gap = max(relative_error(0.5 * (one_p[k] + one_m[k]), sym[k]) for k in sym)

    def total(g):
        return float(np.sqrt(sum(np.sum((g[k] - bptt[k]) ** 2) for k in g)
                             / sum(np.sum(bptt[k] ** 2) for k in g)))

    return {"identity_gap": float(gap),
            "errors": {"one-sided +beta": total(one_p), "one-sided -beta": total(one_m),
                       "symmetric": total(sym)}}


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=3, fast=FAST, beta=1e-4, steps=(1, 2, 3, 4, 5, 6, 10, 20, 40, 60)):
    """How many nudged steps each weight tensor needs before its EP estimate matches BPTT.

    With eps = 1 the nudge moves one layer per step: the output at step 1, the layer below at
    step 2, and so on. dPhi/dw_n involves s_n and s_{n-1}, so w_n's estimate starts to move once
    s_n has moved.

    Returns
    -------
    dict
        ``nonzero[k]``: first T_nudge with a non-zero estimate of weight k; ``close[k]``: first
        T_nudge (of ``steps``) within 1% of BPTT, None if none; ``n_layers``.
    """
    net, x, y = problem(seed)
    free = net.free_phase(x, T)
    bptt = mep.bptt_gradients(net, x, y, T)
    weights = [k for k in net.params if k.startswith("w")]
    nonzero, close = {k: None for k in weights}, {k: None for k in weights}
    for t_nudge in steps:
        g = mep.ep_gradients(net, x, y, beta, T, t_nudge, "symmetric", free_state=free)
        for k in weights:
            if nonzero[k] is None and np.any(g[k] != 0):
                nonzero[k] = t_nudge
            if close[k] is None and relative_error(g[k], bptt[k]) < 0.01:
                close[k] = t_nudge
    return {"nonzero": nonzero, "close": close, "n_layers": net.n_layers}


# ---------------------------------------------------------------------------------- exercise 3
def exercise_3(seed=3, fast=FAST, lr=0.1):
    """Train identical nets with BPTT and with symmetric EP at beta = 0.01 and 0.1; compare losses.

    At beta = 0.01 EP follows BPTT's curve. At beta = 0.1 it moves away: such a nudge moves units
    across a clip edge (tutorial 04, section 4), so the estimate is no longer the derivative at
    beta = 0 but a difference over a stretch that reaches units the exact gradient sees as
    saturated (slope 0).

    Returns
    -------
    dict
        ``{"bptt": losses, "ep 0.01": losses, "ep 0.1": losses}``: the loss at the free fixed
        point before each SGD step and after the last one.
    """
    steps = 4 if fast else 15
    curves = {}
    for method in ("bptt", "ep 0.01", "ep 0.1"):
        net, x, y = problem(seed)
        opt = SGD(net.params, lr)
        losses = []
        for _ in range(steps):
            free = net.free_phase(x, T)
            losses.append(float(net.loss(free, y)))
            if method.startswith("ep"):
                beta = float(method.split()[1])
                g = mep.ep_gradients(net, x, y, beta, T, 60, "symmetric", free_state=free)
            else:
                g = mep.bptt_gradients(net, x, y, T)
            opt.step(g)
        losses.append(float(net.loss(net.free_phase(x, T), y)))
        curves[method] = losses
    return curves


if __name__ == "__main__":
    r = exercise_1()
    print(f"1. max relative gap |mean of one-sided(+-beta) - symmetric| = {r['identity_gap']:.1e}")
    for name, e in r["errors"].items():
        print(f"   {name:16s} ||EP - BPTT|| / ||BPTT|| = {e:.1e}")
    r = exercise_2()
    print(f"2. (L = {r['n_layers']} layers) first T_nudge with a non-zero estimate: {r['nonzero']}")
    print(f"   first T_nudge within 1% of BPTT: {r['close']}")
    for method, losses in exercise_3().items():
        print(f"3. loss per SGD step (lr 0.1), {method:8s}", np.round(losses, 4))
