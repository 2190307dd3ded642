"""The forward and backward routes of a layer during the nudged phase (paper Figs. 2-3), measured.

For each batch: a free phase of T_free steps, then T_nudge nudged steps (+beta, MSE towards the
label), all at the network's own dynamics. Nudged step t reads the messages ``s = net.messages(state)``
of step t-1 (states in a CRNN, spikes in an SNN) and ``net.step`` returns the new state, whose ``idx``
holds the max-pooling indices that step used. For layer n they give the two terms of its total input
(Eq. 9, without the bias):

    X_fwd = s_{n-1},   Y_fwd = P(w_n * X_fwd)                          net.forward_route
    X_bwd = s_{n+1},   Y_bwd = w_{n+1} ~* P^-1(X_bwd)  (indices of step t)   net.backward_route

:func:`measure` returns, per layer, accumulated over samples and nudged steps (host float64):

* ``signed_fwd``/``signed_bwd`` (C,): per channel, the signed sum over spatial positions, averaged
  over samples and nudged steps: the paper's "activation summation";
* ``abs_fwd``/``abs_bwd`` (C,): per channel, the sum over positions of |Y| per step (per-step magnitude);
* ``tabs_fwd``/``tabs_bwd`` (C,): the same of |Y averaged over the nudged steps| (for spikes, of rates);
* ``stats``: mean and std of X_fwd, Y_fwd, X_bwd, Y_bwd over samples, units and steps (``per_step``)
  and of their averages over the nudged steps over samples and units (``time_avg``);

plus the mean free- and nudged-phase residuals. :func:`ratios` turns one layer's sums into the
forward/backward ratios; :mod:`summary` takes mean and std over sample sets and seeds.
"""
import numpy as np

from minimal_ep import backend

KEYS = ("X_fwd", "Y_fwd", "X_bwd", "Y_bwd")
SUMS = ("signed_fwd", "signed_bwd", "abs_fwd", "abs_bwd", "tabs_fwd", "tabs_bwd")


def middle_layers(net):
    """The conv layers that receive a forward route from a conv layer and a backward route from above.

    Layer 1 is left out, as in the paper: its forward route reads the (spike-coded) static image.
    """
    return [n for n in range(2, net.n_conv + 1) if n < net.n_layers]


def layer_routes(net, s, idx, n):
    """(Y_fwd, Y_bwd) of layer n from the messages ``s`` of step t-1 and the indices ``idx`` of step t."""
    y_fwd, _ = net.forward_route(n, s[n - 1])
    return y_fwd, net.backward_route(n, s[n + 1], idx[n + 1])


def _chan_sum(a):
    """Sum over the batch and the positions: (N, C, H, W) -> (C,), (N, D) -> (D,)."""
    return a.sum(axis=(0, 2, 3)) if a.ndim == 4 else a.sum(axis=0)


class _Moments:
    """Running sum, sum of squares and count, for a mean and a std over many entries."""

    def __init__(self):
        self.s = self.ss = 0.0
        self.n = 0

    def add(self, a):
        self.s += float(a.sum())
        self.ss += float((a * a).sum())
        self.n += a.size

    def result(self):
        m = self.s / max(self.n, 1)
        return [m, float(np.sqrt(max(self.ss / max(self.n, 1) - m * m, 0.0)))]


def measure(net, x, y, dyn, batch_size, layers=None):
    """Routes of ``layers`` (default :func:`middle_layers`) over the samples (x, y); see the module doc.

    Parameters
    ----------
    net : ConvergentRNN or SpikingConvergentRNN
    x : (N, C, H, W) ndarray
        Samples in [0, 1] (host).
    y : (N,) int ndarray
    dyn : dict
        ``beta``, ``T_free``, ``T_nudge`` (the net's eps and lam are its own).
    batch_size : int

    Returns
    -------
    dict
        ``layers``: {n: {SUMS..., "stats"}}, ``residual_free``, ``residual_nudge``, ``samples``.
    """
    layers = middle_layers(net) if layers is None else list(layers)
    T = int(dyn["T_nudge"])
    acc = {n: dict({k: 0.0 for k in SUMS}, mom={k: _Moments() for k in KEYS},
                   tmom={k: _Moments() for k in KEYS}) for n in layers}
    res_free, res_nudge, N_total = [], [], 0
    h = lambda a: backend.to_numpy(a).astype(np.float64)             # noqa: E731
    for i in range(0, len(y), batch_size):
        xb, yb = backend.to_device(x[i:i + batch_size]), backend.to_device(y[i:i + batch_size])
        state, report = net.free_phase(xb, dyn["T_free"])
        res_free.append(report.residual)
        nudge = net.nudge_towards(yb, dyn["beta"])
        tsum = {n: {k: 0.0 for k in KEYS} for n in layers}
        for _ in range(T):
            s = net.messages(state)                   # what the layers send at step t-1 ...
            new = net.step(state, nudge)              # ... and the indices step t pooled them with
            for n in layers:
                y_fwd, y_bwd = layer_routes(net, s, new.idx, n)
                vals = {"X_fwd": h(s[n - 1]), "Y_fwd": h(y_fwd), "X_bwd": h(s[n + 1]), "Y_bwd": h(y_bwd)}
                a = acc[n]
                for k, v in vals.items():
                    a["mom"][k].add(v)
                    tsum[n][k] = tsum[n][k] + v
                for d, v in (("fwd", vals["Y_fwd"]), ("bwd", vals["Y_bwd"])):
                    a[f"signed_{d}"] = a[f"signed_{d}"] + _chan_sum(v)
                    a[f"abs_{d}"] = a[f"abs_{d}"] + _chan_sum(np.abs(v))
            state, last = new, net.residual(state.xi, new.xi)
        res_nudge.append(last)
        for n in layers:
            for k in KEYS:
                acc[n]["tmom"][k].add(tsum[n][k] / T)
            for d in ("fwd", "bwd"):
                acc[n][f"tabs_{d}"] = acc[n][f"tabs_{d}"] + _chan_sum(np.abs(tsum[n][f"Y_{d}"] / T))
        N_total += len(yb)
    out = {}
    for n in layers:
        a = acc[n]
        r = {k: (a[k] / (N_total * (1 if k.startswith("tabs") else T))).tolist() for k in SUMS}
        r["stats"] = {"per_step": {k: a["mom"][k].result() for k in KEYS},
                      "time_avg": {k: a["tmom"][k].result() for k in KEYS}}
        out[n] = r
    return {"layers": out, "residual_free": float(np.mean(res_free)),
            "residual_nudge": float(np.mean(res_nudge)), "samples": N_total}


def ratios(r):
    """Forward / backward ratios of one layer's measurement (:func:`measure`), the paper's first.

    * ``signed``: mean over channels of |signed per-channel sum|, forward over backward (the paper's
      quantity: sums over positions, averaged over samples);
    * ``step``: mean |Y| per unit and step;
    * ``tavg``: mean |Y averaged over the nudged steps| per unit;
    * ``median_channel``: median over channels of |S_fwd[c]| / |S_bwd[c]|.
    """
    sf, sb = np.abs(np.asarray(r["signed_fwd"])), np.abs(np.asarray(r["signed_bwd"]))
    with np.errstate(divide="ignore", invalid="ignore"):       # a silent route: inf or nan, not a huge number
        return {"signed": float(sf.mean() / sb.mean()),
                "step": float(np.sum(r["abs_fwd"]) / np.sum(r["abs_bwd"])),
                "tavg": float(np.sum(r["tabs_fwd"]) / np.sum(r["tabs_bwd"])),
                "median_channel": float(np.median(sf / sb))}


def growth(stats):
    """Std and mean of Y over those of X, forward and backward (Fig. 3's "increase from X to Y").

    ``stats[k]`` is (mean, std); a mean of Y can be negative (the weights are signed).
    """
    def g(yk, xk, i):
        return stats[yk][i] / stats[xk][i] if stats[xk][i] > 0 else float("nan")
    return {f"{q}_{d}": g(f"Y_{d}", f"X_{d}", i) for q, i in (("std", 1), ("mean", 0)) for d in ("fwd", "bwd")}
