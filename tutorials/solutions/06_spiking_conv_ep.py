"""Solutions to the exercises of tutorial 06 (spiking convolutional EP and the pooling mismatch).

Run it as a script to print what each solution measures (about a minute with one BLAS thread);
``tests/test_solutions.py`` calls every ``exercise_*`` function in fast mode and checks what it
should establish. Only the stable public API is used: ``build_network``, ``net.params``,
``net.free_phase``, ``ep_gradients``, ``bptt_gradients``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import datasets
from minimal_ep.gradcheck import cosine

FAST = os.environ.get("MINIMAL_EP_FAST", "0") == "1"
BATCH, BETA, T_FREE, T_NUDGE = 20, 0.2, 40, 15
ARCH = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(64,), eps=0.3, loss="mse",
            dtype="float32")


def training_data():
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
def exercise_1(seed=0, fast=FAST):
    """Section 6's comparison over several weight seeds: mean and standard deviation.

    Returns
    -------
    dict
        ``{pool: {"cos": (n_seeds, 4) array, "ratio": (n_seeds, 4) array}}`` for the weights
        w1..w4, plus ``"seeds"``.
    """
    x, y = training_data()
    seeds = [seed, seed + 1] if fast else [seed + i for i in range(5)]
    n_batches = 1 if fast else 12
    out = {"seeds": seeds}
    for pool in ("avg", "max"):
        cos, ratio = [], []
        for s in seeds:
            g_ep, g_bp = summed_gradients(pool, s, n_batches, x, y)
            weights = [k for k in g_ep if k.startswith("w")]
            cos.append([cosine(g_ep[k], g_bp[k]) for k in weights])
            ratio.append([float(np.linalg.norm(g_ep[k]) / np.linalg.norm(g_bp[k])) for k in weights])
        out[pool] = {"cos": np.array(cos), "ratio": np.array(ratio)}
    return out


# ---------------------------------------------------------------------------------- exercise 2
def exercise_2(seed=0, fast=FAST, lengths=(10, 20, 40, 80)):
    """Relative distance of the SNN's free state from the CRNN's fixed point, per free-phase length.

    Returns
    -------
    dict
        ``{pool: {T: mean over the two conv layers of mean|xi_snn - xi_crnn| / mean|xi_crnn|}}``.
    """
    x, _ = training_data()
    x = x[:8 if fast else BATCH]
    out = {}
    for pool in ("avg", "max"):
        crnn = mep.build_network(pool=pool, spiking=False, seed=seed, **dict(ARCH, eps=0.8))
        snn = mep.build_network(pool=pool, spiking=True, lam=0.3, seed=seed, **ARCH)
        ref = crnn.free_phase(x, 200).xi
        out[pool] = {}
        for T in lengths:
            st = snn.free_phase(x, T)
            rel = [float(np.abs(a - b).mean() / np.abs(b).mean()) for a, b in zip(st.xi[1:3], ref[1:3])]
            out[pool][T] = float(np.mean(rel))
    return out


# ---------------------------------------------------------------------------------- exercise 3
def exercise_3(seed=0, fast=FAST):
    """Does the spiking EP estimate point where the continuous net's EP estimate points?

    Both nets have the same weights; the CRNN's EP estimate (no spikes, no index mismatch) is the
    reference. Summed over batches, per weight tensor.

    Returns
    -------
    dict
        ``{pool: [cosine(SNN EP, CRNN EP) for w1..w4]}``.
    """
    x, y = training_data()
    n_batches = 2 if fast else 12
    out = {}
    for pool in ("avg", "max"):
        g_snn, _ = summed_gradients(pool, seed, n_batches, x, y)
        g_crnn, _ = summed_gradients(pool, seed, n_batches, x, y, crnn=True)
        out[pool] = [cosine(g_snn[k], g_crnn[k]) for k in g_snn if k.startswith("w")]
    return out


if __name__ == "__main__":
    r = exercise_1()
    print(f"1. seeds {r['seeds']}, mean +- standard deviation over seeds, w1..w4:")
    for pool in ("avg", "max"):
        c, q = r[pool]["cos"], r[pool]["ratio"]
        print(f"   {pool}: cosine(EP, BPTT) {np.round(c.mean(0), 2)} +- {np.round(c.std(0), 2)}")
        print(f"        ||EP|| / ||BPTT||  {np.round(q.mean(0), 1)} +- {np.round(q.std(0), 1)}")
    print("   What survives (normal mode, SEED 0-4): the norm ratio, ~1.1-1.3x with average pooling")
    print("   against ~5.5-6x with max pooling in the conv layers, and w2's cosine (0.61 +- 0.10 against")
    print("   0.09 +- 0.05). w1's cosine is noise (0.26 +- 0.53 with average pooling): SEED = 0's 0.71 in")
    print("   the tutorial was a good draw. The dense layers align better with max pooling on average.")
    for pool, d in exercise_2().items():
        print(f"2. {pool}: relative distance of the conv layers by T_free",
              {T: round(v, 3) for T, v in d.items()})
    for pool, c in exercise_3().items():
        print(f"3. {pool}: cosine(spiking EP, CRNN EP) w1..w4 {np.round(c, 2)}")
