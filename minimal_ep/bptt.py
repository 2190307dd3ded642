"""Backpropagation through time of the unrolled free phase, written by hand (no autograd).

The forward pass runs the network's own phase (``net.relax``) for T steps from rest and keeps every
state on a *tape*: ``tape[t]`` is the state after t steps (each state also holds the pooling indices
of the step that made it). The loss is taken at the last state. The reverse pass walks the tape
backwards, one step at a time, through the pieces of that step, each with its vector-Jacobian product
beside its forward code:

    CRNN step                                    its VJP
    phi = total_inputs(s)          (Eq. 9)       total_inputs_vjp, below   (the layers' route VJPs)
    u = (1 - eps) s + eps (phi + b)              dL/ds, dL/ddrive = update_vjp(s', dL/ds')
    s' = clip(u, 0, 1)             (Eq. 3)       (dL/dphi = dL/db = dL/ddrive)

A spiking step adds the decoder before the update and the encoder and Sigma-Delta modulator after
it (``Channel.receive_vjp`` and ``Channel.send_vjp``, the threshold's derivative replaced by a
triangular surrogate). This is the paper's "CRNN BPTT" / "SNN BPTT" baseline. For a CRNN it is the
exact gradient of the T-step loss; for a spiking network it is a surrogate-gradient estimate.
"""
from .dynamics import update_vjp
from .network import check_input, check_labels, check_steps


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
        Start from this state instead of rest (the GDD check starts at a fixed point); its batch
        must be x's.
    per_step : int
        If K > 0, also return the per-step gradients of the last K steps (docs/equations.md §3).
    return_state : bool
        Also return the state after the T steps and its :class:`~minimal_ep.dynamics.PhaseReport`
        (the training loop predicts from them).

    Returns
    -------
    grads : dict
        Same keys and shapes as ``net.params``: d loss(s^T) / d theta.
    per_step : dict, only when ``per_step`` > 0
        ``"states"[k][n]``: dL/d drive_n at step T-k, ``"params"[k]``: the contribution of step
        T-k to dL/dtheta, for k = 0..K-1.
    state, report : only with ``return_state``
    """
    T = check_steps(T)
    x = check_input(net, x)
    y = check_labels(net, y, len(x))
    if state is not None and len(state.xi[0]) != len(x):
        raise ValueError(f"state has a batch of {len(state.xi[0])} but x has {len(x)}")
    tape = [net.init_state(x) if state is None else state]
    final, report = net.relax(tape[0], T, on_step=tape.append)      # forward, keeping every state
    _, g_top, g_readout = net.loss_gradient(final.xi[net.n_layers], y)
    grads = {k: net.xp.zeros_like(v) for k, v in net.params.items()}
    for k, g in g_readout.items():
        grads[k] += g
    record = {"states": [], "params": []}
    backward = _backward_spiking if net.spiking else _backward_crnn
    for gp, g_drive in backward(net, tape, g_top):
        for k, v in gp.items():
            grads[k] += v
        if len(record["params"]) < per_step:
            record["states"].append(g_drive)
            record["params"].append(gp)
    out = (grads,) + ((record,) if per_step else ()) + ((final, report) if return_state else ())
    return out if len(out) > 1 else grads


def total_inputs_vjp(net, s, idx, a):
    """The vector-Jacobian product of ``net.total_inputs``: the way back through Eq. 9.

    Parameters
    ----------
    net : ConvergentRNN
    s : list of ndarray
        The messages the total inputs were computed from (``s[0]``, the input, is not differentiated).
    idx : list
        The pooling indices of that step (fixed: argmax is piecewise constant).
    a : list of ndarray
        ``a[n]``, the cotangent of phi_n, shaped like layer n (a[0] unused).

    Returns
    -------
    gs : list of ndarray
        ``gs[n] = sum_m a[m] . dphi_m/ds_n`` for n = 1..L.
    gw : dict
        ``sum_m a[m] . dphi_m/dw_n`` for every recurrent layer's weight.
    """
    L, xp = net.n_layers, net.xp
    gs = [None] + [xp.zeros_like(v) for v in s[1:L + 1]]
    gw = {}
    for n in range(1, L + 1):
        layer, w = net.layers[n], net.w(n)
        g_prev, gw[f"w{n}"] = layer.forward_vjp(w, s[n - 1], idx[n], a[n], wrt_input=n > 1)
        if n > 1:                                   # layer n's backward route feeds layer n-1
            gs[n - 1] += g_prev
            g_s, g_w = layer.backward_vjp(w, s[n], idx[n], a[n - 1])
            gs[n] += g_s
            gw[f"w{n}"] += g_w
    return gs, gw


def _backward_crnn(net, tape, g_top):
    """Walk the CRNN tape backwards; yield each step's (parameter gradients, dL/ddrive per layer)."""
    L, eps = net.n_layers, net.eps
    g = [None] + [net.xp.zeros_like(v) for v in tape[-1].xi[1:L]] + [g_top]      # dL/ds^T
    for t in range(len(tape) - 1, 0, -1):
        old, new = tape[t - 1], tape[t]
        back = [None] + [update_vjp(new.xi[n], g[n], eps) for n in range(1, L + 1)]   # Eq. 3 backwards
        a = [None] + [g_drive for _, g_drive in back[1:]]                         # dL/dphi_n
        g, gp = total_inputs_vjp(net, net.messages(old), new.idx, a)              # Eq. 9 backwards
        for n in range(1, L + 1):
            g[n] += back[n][0]
            gp[f"b{n}"] = net.layers[n].sum_to_bias(a[n])
        tape[t] = None                                     # free the step's memory as we go
        yield gp, a


def _backward_spiking(net, tape, g_top):
    """Walk the spiking tape backwards; yield each step's (parameter gradients, dL/ddrive per layer).

    Per layer and step, backwards through
        d' = receive(d, phi(s)),  u = (1-eps) xi + eps (d' + b),  xi' = clip(u),
        (s', V') = send(xi', xi, V)
    carrying the cotangents of the state's xi, d, V and spikes from step to step.
    """
    L, eps, ch, xp = net.n_layers, net.eps, net.channel, net.xp
    zeros = lambda: [None] + [xp.zeros_like(v) for v in tape[-1].xi[1:]]    # noqa: E731
    g_xi, g_d, g_V, g_s = zeros(), zeros(), zeros(), zeros()      # cotangents of step t's outputs
    g_xi[L] += g_top
    for t in range(len(tape) - 1, 0, -1):
        old, new = tape[t - 1], tape[t]
        a, g_drive, gb = [None] * (L + 1), [None] * (L + 1), {}
        for n in range(1, L + 1):
            g_r, g_r_prev, g_V[n] = ch.send_vjp(new.spikes[n], new.V[n], g_s[n], g_V[n])
            g_xi_old, g_drive[n] = update_vjp(new.xi[n], g_xi[n] + g_r, eps)   # xi' is also what was sent
            g_d_prev, a[n] = ch.receive_vjp(g_d[n] + g_drive[n])     # phi enters d' (Eq. 7)
            gb[f"b{n}"] = net.layers[n].sum_to_bias(g_drive[n])
            g_d[n] = g_d_prev
            g_xi[n] = g_xi_old + g_r_prev
        g_s, gp = total_inputs_vjp(net, old.spikes, new.idx, a)       # back to the spikes of step t-1
        gp.update(gb)
        tape[t] = None
        yield gp, g_drive
