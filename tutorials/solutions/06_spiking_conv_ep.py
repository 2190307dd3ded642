"""Solutions to the exercises of tutorial 06 (spiking convolutional EP and the pooling mismatch).

Run it as a script to print what each solution measures (about a minute with one BLAS thread);
``tests/test_solutions.py`` calls every ``exercise_*`` function in quick mode and checks what it
should establish. Only the stable public API is used: ``build_network``, ``net.params``,
``net.free_phase``, ``ep_gradients``, ``bptt_gradients``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import datasets
from minimal_ep.run.gradcheck import cosine

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"
BATCH, BETA, T_FREE, T_NUDGE = 20, 0.2, 40, 15
ARCH = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(64,), eps=0.3, loss="mse",
            dtype="float32")


def training_data():
    """The embedded MNIST training subset: (5000, 1, 28, 28) float32 images, (5000,) labels."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"], "float32"), data["train_labels"]


def summed_gradients(pool, seed, n_batches, x, y, crnn=False):
    """EP (and BPTT) gradients of one fresh net, summed over ``n_batches`` batches of 20, float64.

    With ``crnn=True`` the continuous net with the same weights is used, and only EP is computed.
    """
    net = mep.build_network(pool=pool, spiking=not crnn, lam=0.3, seed=seed, **ARCH)
    g_ep = {k: 0.0 for k in net.params}
    g_bp = {k: 0.0 for k in net.params}
    for b in range(n_batches):
        xb, yb = x[b * BATCH:(b + 1) * BATCH], y[b * BATCH:(b + 1) * BATCH]
        ep = mep.ep_gradients(net, xb, yb, BETA, T_FREE, T_NUDGE, "symmetric")
        for k in net.params:
            g_ep[k] = g_ep[k] + ep[k].astype(np.float64)
        if not crnn:
            bp = mep.bptt_gradients(net, xb, yb, T_FREE)
            for k in net.params:
                g_bp[k] = g_bp[k] + bp[k].astype(np.float64)
    return g_ep, g_bp


# ---------------------------------------------------------------------------------- exercise 1
def compare(g_a, g_b):
    """Cosine and norm ratio of two gradient dicts, per weight tensor ``w1, w2, ...``.

    Parameters
    ----------
    g_a, g_b : dict
        Gradients keyed like ``net.params`` (biases are ignored).

    Returns
    -------
    cosines : list of float
        ``cosine(g_a[k], g_b[k])`` for the weights in order w1, w2, ...
    ratios : list of float
        ``||g_a[k]|| / ||g_b[k]||`` for the same weights.
    """
    weights = sorted((k for k in g_a if k.startswith("w")), key=lambda k: int(k[1:]))
    cosines = [cosine(g_a[k], g_b[k]) for k in weights]
    ratios = [float(np.linalg.norm(g_a[k]) / np.linalg.norm(g_b[k])) for k in weights]
    return cosines, ratios


def exercise_1(seed=0, quick=QUICK):
    """Section 6's comparison over several weight seeds: mean and standard deviation.

    Returns
    -------
    dict
        ``{pool: {"cos": (n_seeds, 4) array, "ratio": (n_seeds, 4) array}}`` for the weights
        w1..w4, plus ``"seeds"``.
    """
    x, y = training_data()
    seeds = [seed, seed + 1] if quick else [seed + i for i in range(5)]
    n_batches = 1 if quick else 12
    out = {"seeds": seeds}
    for pool in ("avg", "max"):
        cos, ratio = [], []
        for s in seeds:
            g_ep, g_bp = summed_gradients(pool, s, n_batches, x, y)
            c, q = compare(g_ep, g_bp)
            cos.append(c)
            ratio.append(q)
        out[pool] = {"cos": np.array(cos), "ratio": np.array(ratio)}
    return out


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=0, quick=QUICK, lengths=(10, 20, 40, 80)):
    """Relative distance of the SNN's free state from the CRNN's fixed point, per free-phase length.

    Returns
    -------
    dict
        ``{pool: {T: mean over the two conv layers of mean|xi_snn - xi_crnn| / mean|xi_crnn|}}``.
    """
    x, _ = training_data()
    x = x[:8 if quick else BATCH]
    out = {}
    for pool in ("avg", "max"):
        crnn = mep.build_network(pool=pool, spiking=False, seed=seed, **dict(ARCH, eps=0.8))
        snn = mep.build_network(pool=pool, spiking=True, lam=0.3, seed=seed, **ARCH)
        ref = crnn.free_phase(x, 200)[0].xi
        out[pool] = {}
        for T in lengths:
            st, _ = snn.free_phase(x, T)
            rel = [float(np.abs(a - b).mean() / np.abs(b).mean()) for a, b in zip(st.xi[1:3], ref[1:3])]
            out[pool][T] = float(np.mean(rel))
    return out


# ---------------------------------------------------------------------------------- exercise 3
def exercise_3(seed=0, quick=QUICK):
    """Does the spiking EP estimate point where the continuous net's EP estimate points?

    Both nets have the same weights; the CRNN's EP estimate (no spikes, no index mismatch) is the
    reference. Summed over batches, per weight tensor.

    Returns
    -------
    dict
        ``{pool: [cosine(SNN EP, CRNN EP) for w1..w4]}``.
    """
    x, y = training_data()
    n_batches = 2 if quick else 12
    out = {}
    for pool in ("avg", "max"):
        g_snn, _ = summed_gradients(pool, seed, n_batches, x, y)
        g_crnn, _ = summed_gradients(pool, seed, n_batches, x, y, crnn=True)
        out[pool] = compare(g_snn, g_crnn)[0]
    return out


if __name__ == "__main__":
    r = exercise_1()
    print(f"1. seeds {r['seeds']}, mean +- standard deviation over seeds, w1..w4:")
    for pool in ("avg", "max"):
        c, q = r[pool]["cos"], r[pool]["ratio"]
        print(f"   {pool}: cosine(EP, BPTT) {np.round(c.mean(0), 2)} +- {np.round(c.std(0), 2)}")
        print(f"        ||EP|| / ||BPTT||  {np.round(q.mean(0), 1)} +- {np.round(q.std(0), 1)}")
    c_avg, c_max = r["avg"]["cos"], r["max"]["cos"]
    q_avg, q_max = r["avg"]["ratio"].mean(0), r["max"]["ratio"].mean(0)
    print("   What survives over these seeds: the conv layers' norm ratio (avg"
          f" {np.round(q_avg[:2], 1)}, max {np.round(q_max[:2], 1)});")
    for n in (0, 1):
        spread = "a standard deviation larger than its mean: noise" \
            if c_avg[:, n].std() > abs(c_avg[:, n].mean()) else "a consistent sign"
        print(f"   w{n + 1}'s cosine with average pooling: {c_avg[:, n].mean():.2f}"
              f" +- {c_avg[:, n].std():.2f} ({spread}); with max pooling"
              f" {c_max[:, n].mean():.2f} +- {c_max[:, n].std():.2f}.")
    for pool, d in exercise_2().items():
        print(f"2. {pool}: relative distance of the conv layers by T_free",
              {T: round(v, 3) for T, v in d.items()})
    for pool, c in exercise_3().items():
        print(f"3. {pool}: cosine(spiking EP, CRNN EP) w1..w4 {np.round(c, 2)}")
