"""Backpropagation through time of the unrolled free phase, written by hand (no autograd).

The forward pass runs the network's own ``step`` T times from rest and keeps every state on a
*tape*: ``tape[t]`` is the state after t steps (each state also holds the pooling indices of the
step that made it). The loss is taken at the last state. The reverse pass walks the tape backwards,
one step at a time, through the pieces of that step, each with its vector-Jacobian product beside
its forward code:

    CRNN step                                    its VJP
    phi = total_inputs(s)          (Eq. 9)       net.total_inputs_vjp      (the layers' route VJPs)
    u = (1 - eps) s + eps (phi + b)              dL/ds += (1 - eps) du,  dL/dphi = eps du = dL/db
    s' = clip(u, 0, 1)             (Eq. 3)       du = dynamics.update_vjp(s', dL/ds')

A spiking step adds the decoder before the update and the encoder and Sigma-Delta modulator after
it (``Channel.receive_vjp`` and ``Channel.send_vjp``, the threshold's derivative replaced by a
triangular surrogate). This is the paper's "CRNN BPTT" / "SNN BPTT" baseline and the ground truth
EP is checked against.
"""
from .dynamics import update_vjp


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
    tape = [net.init_state(x) if state is None else state]
    route, tally = net.input_route(tape[0]), net.new_tally(tape[0])
    for _ in range(T):                                     # forward, keeping every state
        tape.append(net.step(tape[-1], input_route=route))
        if tally is not None:
            tally.add(tape[-1])
    final = tape[-1]
    final.steps, final.tally = T, tally                    # the phase's statistics (spike_stats)
    _, g_top, g_readout = net.loss_gradient(final.xi[net.n_layers], y)
    grads = {k: net.xp.zeros_like(v) for k, v in net.params.items()}
    for k, g in g_readout.items():
        grads[k] += g
    record = {"states": [], "params": []}
    backward = _backward_spiking if net.spiking else _backward_crnn
    for gp, du in backward(net, tape, g_top):
        for k, v in gp.items():
            grads[k] += v
        if len(record["params"]) < per_step:
            record["states"].append(du)
            record["params"].append(gp)
    out = (grads,) + ((record,) if per_step else ()) + ((final,) if return_state else ())
    return out if len(out) > 1 else grads


def _backward_crnn(net, tape, g_top):
    """Walk the CRNN tape backwards; yield each step's (parameter gradients, dL/du per layer)."""
    L, eps = net.n_layers, net.eps
    g = [None] + [net.xp.zeros_like(v) for v in tape[-1].xi[1:L]] + [g_top]      # dL/ds^T
    for t in range(len(tape) - 1, 0, -1):
        old, new = tape[t - 1], tape[t]
        du = [None] + [update_vjp(new.xi[n], g[n]) for n in range(1, L + 1)]     # the clip
        a = [None] + [eps * du[n] for n in range(1, L + 1)]                      # dL/dphi_n
        g, gp = net.total_inputs_vjp(net.messages(old), new.idx, a)              # Eq. 9 backwards
        for n in range(1, L + 1):
            g[n] += (1.0 - eps) * du[n]
            gp[f"b{n}"] = net.layers[n].sum_to_bias(a[n])
        tape[t] = None                                     # free the step's memory as we go
        yield gp, du


def _backward_spiking(net, tape, g_top):
    """Walk the spiking tape backwards; yield each step's (parameter gradients, dL/du per layer).

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
        a, du, gb = [None] * (L + 1), [None] * (L + 1), {}
        for n in range(1, L + 1):
            g_r, g_r_prev, g_V[n] = ch.send_vjp(new.spikes[n], new.V[n], g_s[n], g_V[n])
            du[n] = update_vjp(new.xi[n], g_xi[n] + g_r)              # xi' is also what was sent
            g_d_prev, a[n] = ch.receive_vjp(g_d[n] + eps * du[n])     # phi enters d' (Eq. 7)
            gb[f"b{n}"] = net.layers[n].sum_to_bias(eps * du[n])
            g_d[n] = g_d_prev
            g_xi[n] = (1.0 - eps) * du[n] + g_r_prev
        g_s, gp = net.total_inputs_vjp(old.spikes, new.idx, a)         # back to the spikes of step t-1
        gp.update(gb)
        tape[t] = None
        yield gp, du
