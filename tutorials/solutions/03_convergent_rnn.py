"""Solutions to the exercises of tutorial 03 (the convergent RNN and its free phase).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in fast mode and checks what it should establish. Only the stable public
API is used: ``build_network``, ``net.params``, ``net.forward_route``, ``net.backward_route``,
``net.free_phase``. Arrays are NCHW.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import datasets

FAST = os.environ.get("MINIMAL_EP_FAST", "0") == "1"


def images(n):
    """The first n training images of the embedded MNIST subset, (n, 1, 28, 28) float64 in [0, 1]."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"][:n], "float64")


def small_net(seed=0, **kw):
    """Tutorial 03's net: conv 8 -> conv 16 (3x3, 2x2 average pooling) -> dense 32 -> 10, float64."""
    args = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,), n_classes=10,
                pool="avg", loss="mse", dtype="float64", seed=seed, eps=0.8, spiking=False)
    args.update(kw)
    return mep.build_network(**args)


# ---------------------------------------------------------------------------------- exercise 1
def bias(net, n):
    """b_n shaped to broadcast against layer n: (C, 1, 1) for a conv layer, (units,) for a dense one."""
    b = net.params[f"b{n}"]
    return b.reshape(-1, 1, 1) if len(net.shapes[n]) == 3 else b


def my_free_phase(net, x, T):
    """T synchronous steps from rest, written with the two routes (docs/equations.md §2).

    Returns
    -------
    list of ndarray
        ``[x, s_1, ..., s_L]`` after T steps.
    """
    L = net.n_layers
    s = [x] + [np.zeros((len(x),) + shape, dtype=x.dtype) for shape in net.shapes[1:]]
    for _ in range(T):
        fwd, idx = [None] * (L + 1), [None] * (L + 1)
        for n in range(1, L + 1):                           # from the states of the previous step
            fwd[n], idx[n] = net.forward_route(n, s[n - 1])
        new = [x]
        for n in range(1, L + 1):
            total = fwd[n] + bias(net, n)
            if n < L:
                total = total + net.backward_route(n, s[n + 1], idx[n + 1])
            new.append(np.clip((1 - net.eps) * s[n] + net.eps * total, 0.0, 1.0))
        s = new
    return s


def exercise_1(seed=0, fast=FAST):
    """Compare ``my_free_phase`` with ``net.free_phase`` for eps = 1 and 0.5, avg and max pooling.

    Returns
    -------
    dict
        ``{(pool, eps): max |mine - net.free_phase| over all layers}``.
    """
    x = images(2 if fast else 4)
    T = 20 if fast else 60
    out = {}
    for pool in ("avg", "max"):
        for eps in (1.0, 0.5):
            net = small_net(seed, pool=pool, eps=eps)
            mine = my_free_phase(net, x, T)
            ref = net.free_phase(x, T).xi
            out[pool, eps] = max(float(np.abs(a - b).max()) for a, b in zip(mine[1:], ref[1:]))
    return out


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=0, fast=FAST, scales=(1.0, 1.5, 2.0, 2.5, 3.0)):
    """Final residuals of free phases for growing weight scales, eps = 1 and eps = 0.5.

    Returns
    -------
    dict
        ``{init_scale: {eps: residual after T steps}}``.
    """
    x = images(4 if fast else 8)
    T = 100 if fast else 200
    out = {}
    for scale in scales:
        net = small_net(seed, init_scale=scale)
        out[scale] = {}
        for eps in (1.0, 0.5):
            net.eps = eps
            out[scale][eps] = float(net.free_phase(x, T).residual)
    return out


# ---------------------------------------------------------------------------------- exercise 3
def route_ratios(net, s):
    """mean |forward route| / mean |backward route| of every layer n < L at states s (avg pooling)."""
    out = []
    for n in range(1, net.n_layers):
        fwd, _ = net.forward_route(n, s[n - 1])
        bwd = net.backward_route(n, s[n + 1], None)
        out.append(float(np.abs(fwd).mean() / np.abs(bwd).mean()))
    return out


def exercise_3(seed=0, fast=FAST, alphas=(1.0, 2.0, 4.0, 8.0)):
    """The forward/backward balance of layers 1 and 2 at the fixed point, for several alpha.

    Layer 1's backward route comes from conv layer 2 through the unpooling, which divides by
    alpha; layer 2's comes from the dense layer 3, with no unpooling.

    Returns
    -------
    dict
        ``{alpha: (ratio of layer 1, ratio of layer 2, residual)}``.
    """
    x = images(4 if fast else 8)
    T = 100 if fast else 200
    out = {}
    for alpha in alphas:
        net = small_net(seed, alpha=alpha)
        st = net.free_phase(x, T)
        r = route_ratios(net, st.xi)
        out[alpha] = (r[0], r[1], float(st.residual))
    return out


if __name__ == "__main__":
    for (pool, eps), d in exercise_1().items():
        print(f"1. {pool} pooling, eps = {eps}: max |my_free_phase - net.free_phase| = {d:.1e}")
    for scale, res in exercise_2().items():
        print(f"2. init_scale {scale}: residual eps = 1: {res[1.0]:.1e}   eps = 0.5: {res[0.5]:.1e}")
    for alpha, (r1, r2, res) in exercise_3().items():
        print(f"3. alpha = {alpha}: forward/backward, layer 1 {r1:5.2f}   layer 2 {r2:5.2f}"
              f"   (residual {res:.0e})")
