"""Backpropagation through time of the unrolled free phase, written by hand (no autograd).

The forward pass runs the network's own ``step`` T times from rest and records a *tape*: the
states each step started from, its pooling indices, and where its clip was not saturated (for the
spiking network also the surrogate derivatives of the spike threshold). The loss is taken at the
last state. The reverse pass walks the tape backwards. For the CRNN step

    u_n = (1 - eps) s_n + eps (phi_n(s) + b_n),     s_n' = clip(u_n, 0, 1)

it carries the cotangent g_n = dL/ds_n' back as

    du_n = g_n * 1[0 < u_n < 1]                        (the clip: derivative 1 strictly inside)
    dL/ds_n += (1 - eps) du_n  +  [d phi / d s]^T (eps du)
    dL/dtheta += [d phi / d theta]^T (eps du)

where the products with the transposed Jacobian of phi (through conv2d, conv_transpose2d, the max-
pooling indices or average pooling) are :func:`total_inputs_vjp`. This is the paper's
"CRNN BPTT" / "SNN BPTT" baseline and the ground truth EP is checked against.
"""
from .conv import conv2d, conv2d_weight, conv_transpose2d
from .pooling import avg_pool2d, avg_unpool2d, gather_pool2d, max_unpool2d


def total_inputs_vjp(net, s, idx, a):
    """Vector-Jacobian product of ``net.total_inputs``: BPTT's way back through Eq. 9.

    Parameters
    ----------
    net : ConvergentRNN
    s : list of ndarray
        The states the total inputs were computed from (``s[0]`` the input, never differentiated).
    idx : list
        The max-pooling indices of that step (fixed: argmax is piecewise constant).
    a : list of ndarray
        ``a[n]``, the cotangent of phi_n, shaped like layer n (a[0] unused).

    Returns
    -------
    gs : list of ndarray
        ``gs[n] = sum_m a[m] . dphi_m/ds_n`` for n = 1..L.
    gp : dict
        ``sum_m a[m] . dphi_m/dw`` for every weight of the recurrent layers (phi holds no bias:
        a bias's gradient is the cotangent of whatever it is added to, see :meth:`sum_to_bias`).
    """
    L, N, xp = net.n_layers, len(s[0]), net.xp
    gs = [None] + [xp.zeros_like(v) for v in s[1:L + 1]]
    gp = {}
    for n in range(1, L + 1):
        w = net.w(n)
        # forward route P(w_n * s_{n-1}) of layer n, its cotangent a[n]
        if net.is_conv(n):
            if net.pool == "max":
                g = max_unpool2d(a[n], idx[n], net.F, net.conv_out[n])        # P^T, max
            else:
                g = avg_unpool2d(a[n], net.F, net.F ** 2, net.conv_out[n])   # P^T, avg
            gp[f"w{n}"] = conv2d_weight(s[n - 1], g, net.kernel_size, padding=net.padding)
            if n > 1:
                gs[n - 1] += conv_transpose2d(g, w, padding=net.padding,
                                              output_size=net.shapes[n - 1][1:])
        else:
            gp[f"w{n}"] = a[n].T @ s[n - 1].reshape(N, -1)
            if n > 1:
                gs[n - 1] += (a[n] @ w).reshape(s[n - 1].shape)
        # backward route w_n ~* P^-1(s_n) into layer n-1, its cotangent a[n-1]
        if n > 1:
            if net.is_conv(n):
                z = conv2d(a[n - 1], w, padding=net.padding)                   # (N, C_n, OH, OW)
                if net.pool == "max":
                    gs[n] += gather_pool2d(z, idx[n], net.F)                   # (P^-1)^T, max
                else:
                    gs[n] += avg_pool2d(z, net.F) * (net.F ** 2 / net.alpha)  # (P^-1)^T, avg
                gp[f"w{n}"] += conv2d_weight(a[n - 1], net.unpool(n, s[n], idx[n]),
                                             net.kernel_size, padding=net.padding)
            else:
                a_prev = a[n - 1].reshape(N, -1)
                gs[n] += a_prev @ w.T
                gp[f"w{n}"] += s[n].T @ a_prev
    return gs, gp


def _zeros_like_params(net):
    return {k: net.xp.zeros_like(v) for k, v in net.params.items()}


def bptt_gradients(net, x, y, T, state=None, per_step=0, return_state=False):
    """Gradient of the loss after T steps of the free phase, by backpropagation through time.

    Parameters
    ----------
    net : ConvergentRNN or SpikingConvergentRNN
    x : (N, C, H, W) ndarray
    y : (N,) int ndarray
    T : int
        Steps to unroll.
    state : State, optional
        Start from this state instead of rest (the GDD check starts at a fixed point).
    per_step : int
        If K > 0, also return the per-step gradients of the last K steps (docs/equations.md §3).
    return_state : bool
        Also return the state after the T steps (the training loop predicts from it).

    Returns
    -------
    grads : dict
        Same keys and shapes as ``net.params``: d loss(s^T) / d theta.
    per_step : dict, only when ``per_step`` > 0
        ``"states"[k][n]``: dL/du_n at step T-k (the pre-clip value), ``"params"[k]``: the
        contribution of step T-k to dL/dtheta, for k = 0..K-1.
    state : State, only with ``return_state``
    """
    T = net.check_steps(T)
    x = net.check_input(x)
    y = net.check_labels(y, len(x))
    state = net.init_state(x) if state is None else state.copy()
    tape, route = [], net.input_route(state)
    for _ in range(T):                                     # forward, recording
        state.xi = net.step(state, tape=tape, input_route=route)
    state.steps = T
    _, g_top, g_readout = net.loss_gradient(state.xi[net.n_layers], y)
    grads = _zeros_like_params(net)
    for k, g in g_readout.items():
        grads[k] += g
    record = {"states": [], "params": []}
    backward = _backward_spiking if net.spiking else _backward_crnn
    backward(net, tape, state, g_top, grads, record, per_step)
    out = (grads,) + ((record,) if per_step else ()) + ((state,) if return_state else ())
    return out if len(out) > 1 else grads


def _backward_crnn(net, tape, state, g_top, grads, record, per_step):
    """Reverse pass through the CRNN steps on the tape, accumulating into ``grads``."""
    L, eps = net.n_layers, net.eps
    g = [None] + [net.xp.zeros_like(v) for v in state.xi[1:L]] + [g_top]   # dL/ds^T
    for t in range(len(tape) - 1, -1, -1):
        s_prev, idx, masks = tape[t]
        du = [None] + [g[n] * masks[n] for n in range(1, L + 1)]
        a = [None] + [eps * du[n] for n in range(1, L + 1)]
        g, gp = total_inputs_vjp(net, s_prev, idx, a)
        for n in range(1, L + 1):
            g[n] += (1.0 - eps) * du[n]
            gp[f"b{n}"] = net.sum_to_bias(n, a[n])
        for k, v in gp.items():
            grads[k] += v
        if len(record["params"]) < per_step:
            record["states"].append(du)
            record["params"].append(gp)
        tape[t] = None                                     # free the step's memory as we go


def _backward_spiking(net, tape, state, g_top, grads, record, per_step):
    """Reverse pass through the spiking steps of Eq. 10 on the tape, accumulating into ``grads``.

    Per layer and step, backwards through
        d' = (1-lam) d + lam phi(s),  u = (1-eps) xi + eps (d' + b),  xi' = clip(u),
        e = (xi' - (1-lam) xi) / lam,  v = V + e,  s' = H(v - V_th),  V' = v - s'
    with the threshold's derivative replaced by the triangular surrogate ``net.surrogate``.
    """
    L, eps, lam, xp = net.n_layers, net.eps, net.lam, net.xp
    zeros = lambda: [None] + [xp.zeros_like(v) for v in state.xi[1:]]
    g_xi, g_d, g_V, g_s = zeros(), zeros(), zeros(), zeros()      # cotangents of step t's outputs
    g_xi[L] += g_top
    for t in range(len(tape) - 1, -1, -1):
        s_prev, idx, masks, sur = tape[t]
        a, du = [None] * (L + 1), [None] * (L + 1)
        bias = {}
        for n in range(1, L + 1):
            g_v = g_s[n] * sur[n] + g_V[n] * (1.0 - sur[n])     # through s' = H(v) and V' = v - s'
            g_xi_now = g_xi[n] + g_v * (1.0 / lam)              # xi' enters e with 1/lam
            du[n] = g_xi_now * masks[n]                         # the clip
            g_d_now = g_d[n] + eps * du[n]
            bias[f"b{n}"] = net.sum_to_bias(n, eps * du[n])
            a[n] = lam * g_d_now                                # phi enters d' with lam
            g_d[n] = (1.0 - lam) * g_d_now                      # carried to d of step t-1
            g_xi[n] = (1.0 - eps) * du[n] - ((1.0 - lam) / lam) * g_v
            g_V[n] = g_v
        g_s, gp = total_inputs_vjp(net, s_prev, idx, a)          # back to the spikes of step t-1
        gp.update(bias)
        for k, v in gp.items():
            grads[k] += v
        if len(record["params"]) < per_step:
            record["states"].append(du)
            record["params"].append(gp)
        tape[t] = None
