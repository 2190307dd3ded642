"""Solutions to the exercises of tutorial 05 (Sigma-Delta modulation, predictive coding, a spiking net).

Run it as a script to print what each solution measures; ``tests/test_solutions.py`` calls every
``exercise_*`` function in quick mode and checks what it should establish. Only the stable public
API is used: ``sigma_delta``, ``build_network``, ``net.free_phase``, ``net.relax`` and the phase
report's ``spike_stats()``.
"""
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")          # one BLAS thread, before NumPy loads (see the tutorials)

import numpy as np

import minimal_ep as mep
from minimal_ep import datasets
from minimal_ep.spiking import sigma_delta

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"


# ---------------------------------------------------------------------------------- exercise 1
def drift_bound(v_th):
    """The largest |cumulative spikes - cumulative input| of a Sigma-Delta modulator from V = 0.

    For inputs in [0, 1] and a threshold v_th in [0, 1], V stays in (v_th - 1, v_th] and the
    drift is -V, so it never exceeds ``max(v_th, 1 - v_th)``.
    """
    return max(v_th, 1.0 - v_th)


def exercise_1(seed=0, quick=QUICK, thresholds=(0.2, 0.5, 0.8)):
    """Range of V and the largest cumulative drift for uniform inputs in [0, 1], per threshold.

    From V = 0, ``V`` stays in ``(V_th - 1, V_th]`` and the drift (cumulative spikes minus
    cumulative input) is ``-V``, so ``|drift| <= max(V_th, 1 - V_th)``: smallest, 0.5, for the
    rounding threshold V_th = 0.5. Every V_th in [0, 1] keeps the drift bounded, so every one gives
    the right long-run rate; V_th only decides how far the count may lag or lead.

    Returns
    -------
    dict
        ``{v_th: (min V, max V, max |drift|, bound max(v_th, 1 - v_th), firing rate - mean input)}``.
    """
    rng = np.random.default_rng(seed)
    steps = 2000 if quick else 10000
    inputs = rng.random((steps, 64))                       # 64 independent neurons
    out = {}
    for v_th in thresholds:
        V = np.zeros(64)
        vs, spikes = [], []
        for a in inputs:
            s, V = sigma_delta(a, V, v_th)
            vs.append(V)
            spikes.append(s)
        vs, spikes = np.array(vs), np.array(spikes)
        drift = np.cumsum(spikes, axis=0) - np.cumsum(inputs, axis=0)
        out[v_th] = (float(vs.min()), float(vs.max()), float(np.abs(drift).max()),
                     drift_bound(v_th), float(spikes.mean() - inputs.mean()))
    return out


# ---------------------------------------------------------------------------------- exercise 2
def spiking_net(seed=0, lam=0.3):
    """Tutorial 05's spiking net: conv 8 -> conv 16 -> 32 -> 10, average pooling, float64, eps 0.3."""
    return mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,), pool="avg",
                             loss="mse", dtype="float64", seed=seed, eps=0.3, spiking=True, lam=lam)


def images(n):
    """The first n training images of the embedded MNIST subset, (n, 1, 28, 28) float64."""
    data = datasets.load_dataset("mnist")
    return datasets.to_float_images(data["train_images"][:n], "float64")


def exercise_2(seed=0, quick=QUICK, lengths=(50, 100, 200, 400)):
    """Per-layer ``rate_error`` of the report's ``spike_stats()`` after free phases of several lengths T.

    The spike count telescopes (tutorial 05, section 5): ``|count/T - mean xi| <=
    ((1 - lam)/lam * |xi^T| + |V^T|) / T``, so ``T * rate_error`` stays bounded.

    Returns
    -------
    dict
        ``{T: [rate_error of each layer]}`` and ``"lam"``.
    """
    x = images(2 if quick else 4)
    net = spiking_net(seed)
    out = {"lam": net.lam}
    for T in lengths:
        _, report = net.free_phase(x, T)
        out[T] = [row["rate_error"] for row in report.spike_stats()]
    return out


# ---------------------------------------------------------------------------------- exercise 3
def crnn_fixed_point(x, seed=0):
    """The fixed point of the CRNN with the spiking net's weights (eps = 0.8, 300 steps)."""
    crnn = mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,),
                             pool="avg", loss="mse", dtype="float64", seed=seed, eps=0.8,
                             spiking=False)
    return crnn.free_phase(x, 300)[0].xi


def distance_curve(snn, x, ref_xi, T):
    """The SNN's distance from a reference state after every step of one free phase.

    Parameters
    ----------
    snn : SpikingConvergentRNN
    x : (N, C, H, W) ndarray
    ref_xi : list of ndarray
        ``[x, xi_1, ..., xi_L]``, the CRNN's fixed point with the same weights.
    T : int
        Steps of the free phase, from rest.

    Returns
    -------
    (T,) ndarray
        After step t (t = 1..T): the mean over layers 1..L of mean |xi_snn - ref|.
    """
    curve = []

    def watch(state):
        curve.append(np.mean([np.abs(a - b).mean() for a, b in zip(state.xi[1:], ref_xi[1:])]))

    snn.relax(snn.init_state(x), T, on_step=watch)
    return np.array(curve)


def exercise_3(seed=0, quick=QUICK, lams=(0.1, 0.2, 0.3, 0.6, 1.0), T=300, window=50):
    """Distance of the SNN's states from the CRNN's fixed point (same weights), per lam.

    One free phase of T steps per lam; the distance curve is averaged over its first and its
    last ``window`` steps.

    Returns
    -------
    dict
        ``{lam: (mean distance over the first window steps, over the last window steps)}``.
    """
    x = images(2 if quick else 4)
    ref = crnn_fixed_point(x, seed)
    out = {}
    for lam in lams:
        curve = distance_curve(spiking_net(seed, lam), x, ref, T)
        out[lam] = (float(curve[:window].mean()), float(curve[-window:].mean()))
    return out


if __name__ == "__main__":
    for v_th, (lo, hi, drift, bound, rate) in exercise_1().items():
        print(f"1. V_th = {v_th}: V in [{lo:+.3f}, {hi:+.3f}]   max |drift| {drift:.3f}"
              f"   bound max(V_th, 1 - V_th) = {bound}   rate - mean input {rate:+.1e}")
    r = exercise_2()
    for T in (50, 100, 200, 400):
        print(f"2. T = {T:3d}: rate_error per layer {np.round(r[T], 4)}   T * rate_error "
              f"{np.round(T * np.array(r[T]), 2)}   (bound (1-lam)/lam + |V| ~ {(1 - r['lam']) / r['lam'] + 1:.1f})")
    for lam, (early, late) in exercise_3().items():
        print(f"3. lam = {lam}: mean |xi_snn - xi_crnn| over the first 50 steps {early:.4f},"
              f" over the last 50 {late:.4f}")
