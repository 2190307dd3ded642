"""EP's gradient estimate against BPTT's gradient, per weight, on given samples.

EP: ``minimal_ep.ep_gradients`` with the net's config (estimator, beta, T_free, T_nudge, average_last); BPTT:
``minimal_ep.bptt_gradients`` of the loss after the same T_free-step free phase (for the SNN through
the spikes, with a triangular surrogate of the threshold). Both are batch means; summed over the
batches with the batch sizes as weights they are the gradients of the mean loss over the samples.
"""
import numpy as np

from minimal_ep import backend, bptt_gradients, ep_gradients
from minimal_ep.run.gradcheck import cosine


def alignment(net, x, y, cfg, batch_size):
    """Per weight w_n: cosine(EP, BPTT) of the gradients over (x, y), their norms, and per-batch cosines.

    Parameters
    ----------
    net : ConvergentRNN or SpikingConvergentRNN
    x : (N, C, H, W) ndarray
        Samples in [0, 1] (host).
    y : (N,) int ndarray
    cfg : Config
        The resolved config whose ``train`` section gives estimator, beta, T_free, T_nudge and
        average_last (Eq. 11 at the mean of each nudged phase's last K states, as in training).
    batch_size : int
        BPTT keeps every step's state: memory grows with batch_size * T_free.

    Returns
    -------
    dict
        ``{"w1": {"cos", "norm_ep", "norm_bptt", "batch_cos": [...]}, ...}``.
    """
    t = cfg.train
    ep_sum, bp_sum, batch_cos = {}, {}, {}
    for i in range(0, len(y), batch_size):
        xb, yb = backend.to_device(x[i:i + batch_size]), backend.to_device(y[i:i + batch_size])
        ep = ep_gradients(net, xb, yb, t.beta, t.T_free, t.T_nudge, t.estimator, average_last=t.average_last)
        bp = bptt_gradients(net, xb, yb, t.T_free)
        share = len(yb) / len(y)
        for k in ep:
            if not k.startswith("w"):
                continue
            e, b = (backend.to_numpy(g[k]).astype(np.float64) for g in (ep, bp))
            ep_sum[k] = ep_sum.get(k, 0.0) + share * e
            bp_sum[k] = bp_sum.get(k, 0.0) + share * b
            batch_cos.setdefault(k, []).append(cosine(e, b))
    return {k: {"cos": cosine(ep_sum[k], bp_sum[k]), "norm_ep": float(np.linalg.norm(ep_sum[k])),
                "norm_bptt": float(np.linalg.norm(bp_sum[k])), "batch_cos": batch_cos[k]}
            for k in sorted(ep_sum, key=lambda k: int(k[1:]))}
