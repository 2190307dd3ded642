"""Solutions to the exercises of tutorial 03 (the convergent RNN and its free phase).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in quick mode and checks what it should establish. Only the stable public
API is used: ``build_network``, ``net.params``, ``net.forward_route``, ``net.backward_route``,
``net.step`` and ``net.free_phase`` (which returns the last state and the phase's report).
Arrays are NCHW.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import datasets

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"


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

    Parameters
    ----------
    net : ConvergentRNN
        A continuous network (``spiking=False``), average or max pooling.
    x : (N, C, H, W) ndarray
    T : int

    Returns
    -------
    list of ndarray
        ``[x, s_1, ..., s_L]`` after T steps, ``s_n`` of shape ``(N,) + net.shapes[n]``.
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


def exercise_1(seed=0, quick=QUICK):
    """Compare ``my_free_phase`` with ``net.free_phase`` for eps = 1 and 0.5, avg and max pooling.

    Returns
    -------
    dict
        ``{(pool, eps): max |mine - net.free_phase| over all layers}``.
    """
    x = images(2 if quick else 4)
    T = 20 if quick else 60
    out = {}
    for pool in ("avg", "max"):
        for eps in (1.0, 0.5):
            net = small_net(seed, pool=pool, eps=eps)
            mine = my_free_phase(net, x, T)
            ref = net.free_phase(x, T)[0].xi               # [0]: the last state; [1]: the report
            out[pool, eps] = max(float(np.abs(a - b).max()) for a, b in zip(mine[1:], ref[1:]))
    return out


# ---------------------------------------------------------------------------------- exercise 2
def classify_end(net, state, settle_tol=1e-6):
    """How a free phase ended: two more steps from ``state`` tell.

    Parameters
    ----------
    net : ConvergentRNN
        Steps with its current ``eps``.
    state : State
        The last state of a free phase (left unchanged).
    settle_tol : float

    Returns
    -------
    str
        With d1 = max |s^{t+1} - s^t| and d2 = max |s^{t+2} - s^t| over all layers and units:
        ``"settled"`` if d1 < settle_tol, ``"2-cycle"`` if d1 > 0.1 and d2 < 0.1 d1, else
        ``"moving"``.
    """
    one = net.step(state)
    two = net.step(one)
    d1 = max(float(np.abs(a - b).max()) for a, b in zip(one.xi[1:], state.xi[1:]))
    d2 = max(float(np.abs(a - b).max()) for a, b in zip(two.xi[1:], state.xi[1:]))
    if d1 < settle_tol:
        return "settled"
    if d1 > 0.1 and d2 < 0.1 * d1:
        return "2-cycle"
    return "moving"


def exercise_2(seed=0, quick=QUICK, scales=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0)):
    """How free phases end, for growing weight scales, with eps = 1 and eps = 0.5.

    What it shows (SEED = 0, 1, 2): the 2-cycle appears with eps = 1 at large scales, but not
    monotonically in the scale (a larger scale can settle where a smaller one cycled, or still
    move); eps = 0.5 never ends in a 2-cycle, but with large weights it does not always
    settle within T steps either.

    Returns
    -------
    dict
        ``{init_scale: {eps: (residual after T steps, classify_end(...))}}``.
    """
    x = images(4 if quick else 8)
    T = 100 if quick else 200
    out = {}
    for scale in scales:
        net = small_net(seed, init_scale=scale)
        out[scale] = {}
        for eps in (1.0, 0.5):
            net.eps = eps
            state, report = net.free_phase(x, T)
            out[scale][eps] = (float(report.residual), classify_end(net, state))
    return out


# ---------------------------------------------------------------------------------- exercise 3
def route_ratios(net, s):
    """The forward/backward balance of every layer n < L at the states s (average pooling).

    Parameters
    ----------
    net : ConvergentRNN
    s : list of ndarray
        ``[x, s_1, ..., s_L]``, e.g. ``state.xi`` of a settled free phase.

    Returns
    -------
    list of float
        ``mean |forward route| / mean |backward route|`` of layers 1..L-1.
    """
    out = []
    for n in range(1, net.n_layers):
        fwd, _ = net.forward_route(n, s[n - 1])
        bwd = net.backward_route(n, s[n + 1], None)
        out.append(float(np.abs(fwd).mean() / np.abs(bwd).mean()))
    return out


def exercise_3(seed=0, quick=QUICK, alphas=(1.0, 2.0, 4.0, 8.0)):
    """The forward/backward balance of layers 1 and 2 at the fixed point, for several alpha.

    Layer 1's backward route comes from conv layer 2 through the unpooling, which divides by
    alpha; layer 2's comes from the dense layer 3, with no unpooling.

    Returns
    -------
    dict
        ``{alpha: (ratio of layer 1, ratio of layer 2, residual)}``.
    """
    x = images(4 if quick else 8)
    T = 100 if quick else 200
    out = {}
    for alpha in alphas:
        net = small_net(seed, alpha=alpha)
        st, report = net.free_phase(x, T)
        r = route_ratios(net, st.xi)
        out[alpha] = (r[0], r[1], float(report.residual))
    return out


if __name__ == "__main__":
    for (pool, eps), d in exercise_1().items():
        print(f"1. {pool} pooling, eps = {eps}: max |my_free_phase - net.free_phase| = {d:.1e}")
    for scale, res in exercise_2().items():
        print(f"2. init_scale {scale}: eps = 1: residual {res[1.0][0]:.1e} {res[1.0][1]:8s}"
              f"   eps = 0.5: residual {res[0.5][0]:.1e} {res[0.5][1]}")
    for alpha, (r1, r2, res) in exercise_3().items():
        print(f"3. alpha = {alpha}: forward/backward, layer 1 {r1:5.2f}   layer 2 {r2:5.2f}"
              f"   (residual {res:.0e})")
