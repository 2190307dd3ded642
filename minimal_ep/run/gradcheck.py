"""Gradient checks: EP (one-sided, symmetric) against BPTT and finite differences, and the GDD property.

Ground truths (docs/equations.md §3):

* central finite differences of the equilibrium loss L(s*(theta)), the free phase run to convergence;
* BPTT through the unrolled free phase, equal to finite differences of the T-step loss to round-off;
* GDD (Ernoult et al. 2019): started at the fixed point, the per-step EP updates of the nudged phase
  match the per-step BPTT gradients of the last K steps. Reported as Laborieux et al.'s relative RMSE
  ``sqrt(sum_t ||EP_t - BPTT_t||^2 / K) / max(||EP||, ||BPTT||)`` (norms as RMS over t) and the
  fraction of entries whose signs disagree.

``python -m minimal_ep gradcheck`` prints the tables for a small float64 network.
"""
import numpy as np

from ..backend import to_numpy
from ..bptt import bptt_gradients
from ..ep import ep_gradients, ep_per_step_updates


def cosine(a, b):
    """Cosine similarity of two arrays of one shape (0 when either is zero)."""
    a, b = to_numpy(a).ravel().astype(np.float64), to_numpy(b).ravel().astype(np.float64)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


def relative_error(a, b):
    """``||a - b|| / max(||a||, ||b||)``: 0 when equal, at most 2, and finite when one of them is 0."""
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def finite_differences(net, loss_fn, h=1e-6, max_entries=None, seed=0):
    """Central finite differences of ``loss_fn()`` with respect to ``net.params``.

    Parameters
    ----------
    net : ConvergentRNN
        Its parameters are perturbed in place and restored.
    loss_fn : callable
        No arguments, returns the float loss at the current parameters.
    h : float
    max_entries : int, optional
        Per tensor, differentiate only this many randomly chosen entries (the rest stay NaN).

    Returns
    -------
    dict
        Name -> host array shaped like the parameter, NaN where not evaluated.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for name, p in net.params.items():
        flat = p.reshape(-1)                       # a view: writing it perturbs the parameter
        g = np.full(flat.size, np.nan)
        chosen = range(flat.size) if max_entries is None or max_entries >= flat.size else \
            rng.choice(flat.size, max_entries, replace=False)
        for i in chosen:
            old = float(flat[i])
            flat[i] = old + h
            up = loss_fn()
            flat[i] = old - h
            down = loss_fn()
            flat[i] = old
            g[i] = (up - down) / (2 * h)
        out[name] = g.reshape(p.shape)
    return out


def _rms_over_time(seq):
    return np.sqrt(sum(float(np.sum(v.astype(np.float64) ** 2)) for v in seq) / len(seq))


def gdd_metrics(ep_seq, bptt_seq, rel_tol=1e-2):
    """Relative RMSE and sign-error fraction of two per-step sequences of arrays (docs/equations.md §3).

    The sign count covers the entries where BPTT is above ``rel_tol`` times its largest magnitude:
    entries that should be zero (saturated units, layers the signal has not reached yet) carry only
    EP's O(beta) residue, whose sign means nothing.
    """
    ep_seq = [to_numpy(v).astype(np.float64) for v in ep_seq]
    bptt_seq = [to_numpy(v).astype(np.float64) for v in bptt_seq]
    diff = _rms_over_time([e - b for e, b in zip(ep_seq, bptt_seq)])
    scale = max(_rms_over_time(ep_seq), _rms_over_time(bptt_seq), 1e-300)
    e, b = np.concatenate([v.ravel() for v in ep_seq]), np.concatenate([v.ravel() for v in bptt_seq])
    live = np.abs(b) > rel_tol * np.abs(b).max(initial=0.0)
    sign_err = float(np.mean(np.sign(e[live]) != np.sign(b[live]))) if live.any() else 0.0
    return diff / scale, sign_err


def gdd(net, x, y, beta, T_free, K):
    """The GDD comparison: per-step EP updates against per-step BPTT gradients at the fixed point.

    Returns
    -------
    rows : list of (name, relative RMSE, sign-error fraction)
        One row per layer state (``s1``, ``s2``, ...) and per Phi parameter (``w1``, ``b1``, ...).
    report : PhaseReport
        The free phase's report (its ``residual`` says whether the start settled).
    """
    free, report = net.free_phase(x, T_free)
    ep_s, ep_p = ep_per_step_updates(net, free, y, beta, K)
    _, rec = bptt_gradients(net, x, y, K, state=free, per_step=K)
    rows = []
    for n in range(1, net.n_layers + 1):
        rows.append((f"s{n}",) + gdd_metrics([s[n] for s in ep_s], [s[n] for s in rec["states"]]))
    for name in ep_p[0]:
        rows.append((name,) + gdd_metrics([p[name] for p in ep_p], [p[name] for p in rec["params"]]))
    return rows, report


def compare_gradients(net, x, y, beta=1e-3, T=300, T_nudge=None, fd_entries=12, h=1e-6):
    """EP (one-sided and symmetric), BPTT and finite differences of the equilibrium loss, per tensor.

    Returns
    -------
    rows : list of dict
        Per parameter: cosine and relative error of each estimate against finite differences
        (on the sampled entries) and of EP against BPTT (on the whole tensor).
    """
    T_nudge = T if T_nudge is None else T_nudge
    fd = finite_differences(net, lambda: net.loss(net.free_phase(x, T)[0], y), h=h, max_entries=fd_entries)
    bptt = {k: to_numpy(v) for k, v in bptt_gradients(net, x, y, T).items()}
    ep = {est: {k: to_numpy(v) for k, v in ep_gradients(net, x, y, beta, T, T_nudge, est).items()}
          for est in ("one-sided", "symmetric")}
    rows = []
    for name in net.params:
        m = ~np.isnan(fd[name])
        row = {"param": name, "shape": tuple(net.params[name].shape)}
        for label, g in (("bptt", bptt[name]), ("ep1", ep["one-sided"][name]), ("ep2", ep["symmetric"][name])):
            row[f"{label}_vs_fd_cos"] = cosine(g[m], fd[name][m])
            row[f"{label}_vs_fd_rel"] = relative_error(g[m], fd[name][m])
        for label, est in (("ep1", "one-sided"), ("ep2", "symmetric")):
            row[f"{label}_vs_bptt_cos"] = cosine(ep[est][name], bptt[name])
            row[f"{label}_vs_bptt_rel"] = relative_error(ep[est][name], bptt[name])
        rows.append(row)
    return rows


def spiking_alignment(pool, x, y, batch_size=20, beta=0.2, T_free=60, T_nudge=20, **net_kwargs):
    """Per layer, how well spiking EP agrees with spiking BPTT and with the CRNN's EP (same weights).

    The gradients of each estimate are summed over the batches of (x, y) before the cosine is taken:
    one batch of spiking EP is dominated by quantisation noise divided by beta.

    Returns
    -------
    rows : list of tuple
        ``(weight, cos(SNN EP, SNN BPTT), cos(SNN EP, CRNN EP), cos(CRNN EP, CRNN BPTT),
        mean over batches of cos(SNN EP, SNN BPTT))`` for every weight w1, w2, ...
    """
    from .build import build_network
    snn = build_network(pool=pool, spiking=True, **net_kwargs)
    crnn = build_network(pool=pool, spiking=False, **net_kwargs)
    sums = {k: [0.0, 0.0, 0.0, 0.0] for k in snn.params if k.startswith("w")}
    per_batch = {k: [] for k in sums}
    for i in range(0, len(y), batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        grads = (ep_gradients(snn, xb, yb, beta, T_free, T_nudge), bptt_gradients(snn, xb, yb, T_free),
                 ep_gradients(crnn, xb, yb, beta, T_free, T_nudge), bptt_gradients(crnn, xb, yb, T_free))
        for k in sums:
            for j, g in enumerate(grads):
                sums[k][j] = sums[k][j] + to_numpy(g[k])
            per_batch[k].append(cosine(grads[0][k], grads[1][k]))
    return [(k, cosine(v[0], v[1]), cosine(v[0], v[2]), cosine(v[2], v[3]), float(np.mean(per_batch[k])))
            for k, v in sums.items()]


def format_table(header, rows):
    """A plain-text table, columns padded to their widest cell."""
    def fmt(v):
        if not isinstance(v, float):
            return str(v)
        return f"{v:.5f}" if 0.01 <= abs(v) < 100 else f"{v:.2e}"
    cells = [list(map(str, header))] + [[fmt(v) for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
