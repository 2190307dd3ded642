"""Equilibrium Propagation: free phase, nudged phases, and the gradient estimators (paper Eq. 4-5, 11).

    free phase    T_free steps from rest, beta = 0                 -> s*
    nudged phase  T_nudge steps from s* with +beta                 -> s^beta
                  (symmetric) T_nudge steps from s* with -beta     -> s^-beta

    one-sided  (Eq. 4):  dL/dtheta ~= -(1/beta)  ( dPhi/dtheta(s^beta) - dPhi/dtheta(s*) )
    symmetric  (Eq. 5):  dL/dtheta ~= -(1/2beta) ( dPhi/dtheta(s^beta) - dPhi/dtheta(s^-beta) )

The sign makes these estimates of the gradient of the loss, so training *descends* them, exactly
like the BPTT gradients of :mod:`minimal_ep.bptt`. For spiking networks the nudged phases restart
from every internal variable of the free state (xi, d, V, spikes), and dPhi/dtheta is taken at the
continuous states xi (Eq. 11). The readout of the cross-entropy loss lies outside Phi: its gradient
is dL/dw_out averaged over the nudged states (docs/equations.md §2).

``average_last = K`` takes each state of Eq. 4-5 as the mean of xi over the last K steps of its
phase instead of the last step (K = 1, the paper's literal reading, is the default). A spiking
network never settles exactly: every spike moves a state by a quantum, and the difference of two
single snapshots divided by beta is mostly that noise; the mean over K steps shrinks it about as
1/K. On a settled CRNN the mean is the last state, and the estimate does not change
(docs/equations.md §4; docs/REPRODUCING.md measures what it does to Table I's spiking net).
"""
import numbers

from .dynamics import State
from .network import check_input, check_labels, check_steps

ESTIMATORS = ("symmetric", "one-sided")


def ep_gradients(net, x, y, beta, T_free, T_nudge, estimator="symmetric", free_state=None,
                 return_states=False, average_last=1):
    """EP estimate of the gradient of ``net.loss`` with respect to every parameter.

    Parameters
    ----------
    net : ConvergentRNN or SpikingConvergentRNN
    x : (N, C, H, W) ndarray
        Inputs in [0, 1].
    y : (N,) int ndarray
        Labels.
    beta : float
        Nudging factor (non-zero).
    T_free, T_nudge : int
        Steps of the free phase and of each nudged phase.
    estimator : {"symmetric", "one-sided"}
    free_state : State, optional
        A free state of ``net`` for this x, to skip the free phase (the training loop has one); its
        batch must be x's.
    return_states : bool
        Also return the states of the phases (keys "free", "plus" and, symmetric, "minus"; with
        ``average_last`` > 1 also the averaged states the estimate used, "plus_mean", ...).
    average_last : int
        K: dPhi/dtheta at the mean of xi over the last K steps of each nudged phase (and, one-sided,
        of the free phase, which is then run here: no ``free_state``); 1 (the default) is the last
        step, Eq. 11 as the paper writes it.

    Returns
    -------
    grads : dict
        Same keys and shapes as ``net.params``.
    states : dict, only with ``return_states``
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; allowed: {', '.join(ESTIMATORS)}")
    x = check_input(net, x)
    if free_state is not None and len(free_state.xi[0]) != len(x):
        raise ValueError(f"free_state has a batch of {len(free_state.xi[0])} but x has {len(x)}: "
                         "a free state of this x is needed")
    y = check_labels(net, y, len(x))
    nudge = net.nudge_towards(y, beta)                               # checks beta, once
    K = _check_average(average_last, check_steps(T_nudge, "T_nudge"), estimator, free_state)
    states = {}
    if free_state is None:
        T_free = check_steps(T_free, "T_free")
        if estimator == "one-sided" and K > 1:
            free_state, states["free_mean"] = phase_mean(net, net.init_state(x), T_free, None, K)
        else:
            free_state = net.free_phase(x, T_free)[0]
    beta = nudge.beta
    states["free"] = free_state
    states["plus"], states["plus_mean"] = phase_mean(net, free_state, T_nudge, nudge, K)
    if estimator == "symmetric":
        states["minus"], states["minus_mean"] = phase_mean(net, free_state, T_nudge, nudge.flipped(), K)
        other, scale = states["minus_mean"], -1.0 / (2.0 * beta)     # Eq. 5
    else:
        other, scale = states.get("free_mean", free_state), -1.0 / beta   # Eq. 4
    d_plus, d_other = net.dphi_dtheta(states["plus_mean"]), net.dphi_dtheta(other)   # Eq. 11
    grads = {}
    for name in net.params:
        if name in d_plus:
            g = d_plus[name]
            g -= d_other[name]
            g *= scale
            grads[name] = g
    if net.readout:
        nudged = [states["plus_mean"]] + ([states["minus_mean"]] if "minus" in states else [])
        for st in nudged:
            _, _, g_out = net.loss_gradient(st.xi[net.n_layers], y)
            for name, g in g_out.items():
                grads[name] = grads.get(name, 0.0) + g / len(nudged)
    if K == 1:                                                      # the means are the last states
        states = {k: v for k, v in states.items() if not k.endswith("_mean")}
    return (grads, states) if return_states else grads


def phase_mean(net, state, T, nudge, K):
    """Run a phase of T steps from ``state``: (its last state, the mean of xi over its last K steps).

    The mean is a :class:`~minimal_ep.dynamics.State` whose ``xi`` holds the means (``idx`` None:
    dPhi/dtheta recomputes the pooling indices at the states it is given); with K = 1 it is the last
    state itself.
    """
    if K == 1:
        last = net.relax(state, T, nudge)[0]
        return last, last
    total, seen = [None] * (net.n_layers + 1), [0]

    def add(new):                                                   # relax's on_step
        seen[0] += 1
        if seen[0] > T - K:
            for n in range(1, net.n_layers + 1):
                if total[n] is None:
                    total[n] = new.xi[n].copy()
                else:
                    total[n] += new.xi[n]
    last = net.relax(state, T, nudge, on_step=add)[0]
    return last, State([state.xi[0]] + [t / K for t in total[1:]], [None] * (net.n_layers + 1))


def _check_average(K, T_nudge, estimator, free_state):
    """K as an int in [1, T_nudge]; a one-sided estimate with K > 1 runs its own free phase."""
    if isinstance(K, bool) or not isinstance(K, numbers.Integral) or not 1 <= K <= T_nudge:
        raise ValueError(f"average_last must be an integer in [1, T_nudge = {T_nudge}], got {K!r}")
    if K > 1 and estimator == "one-sided" and free_state is not None:
        raise ValueError("average_last > 1 with the one-sided estimator averages the free phase too: "
                         "it is run here, so give no free_state")
    return int(K)


def ep_per_step_updates(net, free_state, y, beta, K):
    """The per-step EP updates of a nudged phase started at a fixed point (GDD, docs/equations.md §3).

    Returns, for t = 0..K-1, the state updates ``-(s_{t+1} - s_t) / (beta * N)`` and the weight
    updates ``-(dPhi/dtheta(s_{t+1}) - dPhi/dtheta(s_t)) / beta``: signed and scaled as gradients of
    the batch-mean loss, so that they compare directly with the per-step BPTT gradients of the last
    K steps (:func:`minimal_ep.bptt.bptt_gradients` with ``per_step=K``: dL/d drive and dL/dtheta).

    Returns
    -------
    states : list of lists
        ``states[t][n]`` for layers n = 1..L (index 0 unused).
    params : list of dict
    """
    nudge = net.nudge_towards(y, beta)
    beta, state = nudge.beta, free_state
    d_prev = net.dphi_dtheta(state)
    scale = -1.0 / (beta * len(y))
    out_s, out_p = [], []
    for _ in range(K):
        nxt = net.relax(state, 1, nudge)[0]
        d_next = net.dphi_dtheta(nxt)
        out_s.append([None] + [(b - a) * scale for a, b in zip(state.xi[1:], nxt.xi[1:])])
        out_p.append({k: -(d_next[k] - d_prev[k]) / beta for k in d_next})
        state, d_prev = nxt, d_next
    return out_s, out_p
