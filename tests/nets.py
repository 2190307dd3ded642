"""Small networks and problems shared by the network, gradient, spiking and training tests."""
import numpy as np

import minimal_ep as mep

SMALL = dict(input_shape=(1, 12, 12), conv_channels=(4, 8), kernel_size=3, padding=1, hidden=(16,),
             n_classes=4, spiking=False, eps=0.8, lam=0.6)


def small_net(pool="avg", loss="mse", dtype="float64", seed=3, **kw):
    """conv 4 -> pool -> conv 8 -> pool -> dense 16 -> 4 classes, on 12x12 inputs.

    ``kw`` overrides any ``build_network`` argument, ``fast=False`` for the readable layers.
    """
    return mep.build_network(**{**SMALL, "pool": pool, "loss": loss, "dtype": dtype, "seed": seed, **kw})


def random_batch(n=8, seed=0, shape=(1, 12, 12), classes=4):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + shape), rng.integers(0, classes, n)


def quadrant_problem(n, seed=0, size=8, noise=0.3):
    """Four classes: a bright quadrant on a noisy background. x : (n, 1, size, size), y : (n,)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.random((n, 1, size, size)) * noise
    h = size // 2
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 0, r * h:(r + 1) * h, q * h:(q + 1) * h] += 0.7
    return np.clip(x, 0, 1), y


def fit_quadrants(net, steps, beta, T_free, T_nudge, lrs, seed=0):
    """Train ``net`` with symmetric EP on the quadrant problem; return the training error after."""
    x, y = quadrant_problem(64, seed)
    rng = np.random.default_rng(seed)
    opt = mep.optim.SGD(net.params, lrs)
    for _ in range(steps):
        idx = rng.choice(len(y), 16, replace=False)
        opt.step(mep.ep_gradients(net, x[idx], y[idx], beta, T_free, T_nudge))
    free, _ = net.free_phase(x, T_free)
    return float(np.mean(mep.to_numpy(net.predict(free)) != y))
