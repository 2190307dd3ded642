"""Solutions to the exercises of tutorial 04 (Equilibrium Propagation against BPTT).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in quick mode and checks what it should establish. Only the stable public
API is used: ``build_network``, ``net.params``, ``net.free_phase``, ``net.relax``, ``net.loss``,
``net.loss_gradient``, ``net.layers[n].forward_vjp`` / ``backward_vjp``, ``ep_gradients``,
``bptt_gradients``, ``minimal_ep.dynamics.update_vjp``, ``optim.SGD``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import avg_pool2d, datasets
from minimal_ep.dynamics import update_vjp
from minimal_ep.optim import SGD
from minimal_ep.run.gradcheck import relative_error

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"
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
def exercise_1(seed=3, quick=QUICK, beta=0.01):
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
    free, _ = net.free_phase(x, T)
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
def exercise_2(seed=3, quick=QUICK, beta=1e-4, steps=(1, 2, 3, 4, 5, 6, 10, 20, 40, 60)):
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
    free, _ = net.free_phase(x, T)
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
def exercise_3(seed=3, quick=QUICK, lr=0.1):
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
    steps = 4 if quick else 15
    curves = {}
    for method in ("bptt", "ep 0.01", "ep 0.1"):
        net, x, y = problem(seed)
        opt = SGD(net.params, lr)
        losses = []
        for _ in range(steps):
            free, _ = net.free_phase(x, T)
            losses.append(float(net.loss(free, y)))
            if method.startswith("ep"):
                beta = float(method.split()[1])
                g = mep.ep_gradients(net, x, y, beta, T, 60, "symmetric", free_state=free)
            else:
                g = mep.bptt_gradients(net, x, y, T)
            opt.step(g)
        losses.append(float(net.loss(net.free_phase(x, T)[0], y)))
        curves[method] = losses
    return curves


# ---------------------------------------------------------------------------------- exercise 4
def dense_problem(seed=0, n_images=4, hidden=16, eps=0.5):
    """A two-layer dense CRNN (hidden layer, 10 outputs, MSE, float64) and n_images pooled digits."""
    data = datasets.load_dataset("mnist")
    x = avg_pool2d(datasets.to_float_images(data["train_images"][:n_images], "float64"), 2)
    y = data["train_labels"][:n_images]
    net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(), hidden=(hidden,),
                            loss="mse", dtype="float64", seed=seed, eps=eps, spiking=False)
    return net, x, y


def my_bptt(net, x, y, T):
    """Backpropagation through the T steps of the free phase of a dense CRNN, by hand.

    Parameters
    ----------
    net : ConvergentRNN
        A continuous network with dense layers only (``conv_channels=()``), MSE loss.
    x : (N, C, H, W) ndarray
    y : (N,) int ndarray
    T : int

    Returns
    -------
    dict
        Same keys and shapes as ``net.params``: the gradient of ``net.loss`` after T steps
        from rest.
    """
    L, eps = net.n_layers, net.eps
    tape = [net.init_state(x)]
    final, _ = net.relax(tape[0], T, on_step=tape.append)          # tape[t]: state after t steps
    _, g_top, _ = net.loss_gradient(final.xi[L], y)
    grads = {k: np.zeros_like(v) for k, v in net.params.items()}
    g = [None] + [np.zeros_like(v) for v in final.xi[1:L]] + [g_top]   # dL/ds^t, layer by layer
    for t in range(T, 0, -1):
        old, new = tape[t - 1].xi, tape[t].xi
        g_old, a = [None] * (L + 1), [None] * (L + 1)
        for n in range(1, L + 1):               # back through the update: a[n] = dL/d drive_n
            g_old[n], a[n] = update_vjp(new[n], g[n], eps)
        for n in range(1, L + 1):
            layer, w = net.layers[n], net.params[f"w{n}"]
            grads[f"b{n}"] += a[n].sum(axis=0)
            # layer n's forward route w_n s_{n-1} feeds drive_n
            g_prev, g_w = layer.forward_vjp(w, old[n - 1], None, a[n], wrt_input=n > 1)
            grads[f"w{n}"] += g_w
            if n > 1:
                g_old[n - 1] += g_prev
                # layer n's backward route w_n^T s_n feeds drive_{n-1}
                g_s, g_w = layer.backward_vjp(w, old[n], None, a[n - 1])
                g_old[n] += g_s
                grads[f"w{n}"] += g_w
        g = g_old
    return grads


def exercise_4(seed=0, quick=QUICK, h=1e-6):
    """``my_bptt`` against ``bptt_gradients`` and against finite differences of the T-step loss.

    Returns
    -------
    dict
        ``vs_bptt``: the largest ``relative_error(mine, bptt)`` over the tensors; ``vs_fd``: the
        largest |mine - finite difference| on the 3 largest entries of each tensor, relative
        to the tensor's largest entry; ``T``.
    """
    net, x, y = dense_problem(seed)
    T = 20 if quick else 60
    mine = my_bptt(net, x, y, T)
    ref = mep.bptt_gradients(net, x, y, T)
    vs_bptt = max(relative_error(mine[k], ref[k]) for k in ref)
    vs_fd = 0.0
    for k, p in net.params.items():
        flat = p.reshape(-1)                        # a view: writing it perturbs the weight
        for i in np.argsort(-np.abs(mine[k]).ravel())[:3]:
            old = flat[i]
            flat[i] = old + h
            up = net.loss(net.free_phase(x, T)[0], y)
            flat[i] = old - h
            down = net.loss(net.free_phase(x, T)[0], y)
            flat[i] = old
            fd = (up - down) / (2 * h)
            vs_fd = max(vs_fd, abs(mine[k].ravel()[i] - fd) / np.abs(mine[k]).max())
    return {"vs_bptt": float(vs_bptt), "vs_fd": float(vs_fd), "T": T}


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
    r = exercise_4()
    print(f"4. my_bptt, T = {r['T']}: max relative error against bptt_gradients"
          f" {r['vs_bptt']:.1e}, against finite differences {r['vs_fd']:.1e}")
