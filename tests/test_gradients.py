"""EP and BPTT against finite differences, the GDD property, and learning (docs/equations.md §3)."""
import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep.ep import ep_per_step_updates
from minimal_ep.run.gradcheck import cosine, finite_differences, gdd, relative_error
from nets import fit_quadrants, random_batch, small_net

CONFIGS = [("avg", "mse"), ("avg", "ce"), ("max", "mse"), ("max", "ce")]


def _on_sampled(g, fd):
    """The entries finite differences evaluated, as one vector per dict."""
    mask = {k: ~np.isnan(v) for k, v in fd.items()}
    return (np.concatenate([mep.to_numpy(g[k])[mask[k]] for k in fd]),
            np.concatenate([fd[k][mask[k]] for k in fd]))


@pytest.mark.parametrize("pool,loss", CONFIGS)
def test_bptt_equals_finite_differences_of_the_T_step_loss(pool, loss):
    x, y = random_batch(4)
    net = small_net(pool, loss, eps=0.5)
    T = 12
    g = mep.bptt_gradients(net, x, y, T)
    fd = finite_differences(net, lambda: net.loss(net.free_phase(x, T)[0], y), h=1e-6, max_entries=8)
    a, b = _on_sampled(g, fd)
    assert relative_error(a, b) < 1e-6


def test_bptt_per_step_gradients_sum_to_the_total():
    x, y = random_batch(4)
    net = small_net("max", "mse")
    g, rec = mep.bptt_gradients(net, x, y, 15, per_step=15)
    for k in g:
        assert np.allclose(sum(p[k] for p in rec["params"]), g[k], rtol=1e-12, atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("pool,loss", CONFIGS)
def test_symmetric_ep_matches_finite_differences_of_the_equilibrium_loss(pool, loss):
    x, y = random_batch(8)
    net = small_net(pool, loss)
    T = 150
    fd = finite_differences(net, lambda: net.loss(net.free_phase(x, T)[0], y), h=1e-6, max_entries=4)
    g = mep.ep_gradients(net, x, y, 1e-3, T, T, "symmetric")
    a, b = _on_sampled(g, fd)
    assert cosine(a, b) > 0.99
    assert relative_error(a, b) < 1e-3
    # at a finite beta, the symmetric estimator (Eq. 5) is closer than the one-sided one (Eq. 4)
    errs = {est: relative_error(*_on_sampled(mep.ep_gradients(net, x, y, 1e-2, T, T, est), fd))
            for est in ("one-sided", "symmetric")}
    print(pool, loss, errs)
    assert errs["symmetric"] < errs["one-sided"]


@pytest.mark.parametrize("pool,loss", CONFIGS)
def test_gdd_per_step_ep_updates_match_per_step_bptt_gradients(pool, loss):
    """Started at the fixed point (eps = 1), EP's per-step updates equal BPTT's per-step gradients."""
    x, y = random_batch(8)
    net = small_net(pool, loss, eps=1.0)
    rows, report = gdd(net, x, y, beta=1e-3, T_free=300, K=15)
    assert report.residual < 1e-10                          # a seed that settles
    for name, rmse, sign_err in rows:
        assert rmse < 0.05, (name, rmse)
        assert sign_err < 0.05, (name, sign_err)


def test_gdd_sums_to_the_one_sided_estimate():
    """Summed over the K steps, the per-step EP updates are the one-sided EP gradient (Eq. 4)."""
    x, y = random_batch(4)
    net = small_net()
    free, _ = net.free_phase(x, 150)
    _, per_step = ep_per_step_updates(net, free, y, 0.05, 20)
    g = mep.ep_gradients(net, x, y, 0.05, 150, 20, "one-sided", free_state=free)
    for k, v in per_step[0].items():
        assert np.allclose(sum(p[k] for p in per_step), g[k], atol=1e-12)


@pytest.mark.parametrize("algorithm", ["ep", "bptt"])
def test_one_training_step_lowers_the_loss(algorithm):
    x, y = random_batch(16)
    net = small_net(loss="ce")
    before = net.loss(net.free_phase(x, 150)[0], y)
    g = (mep.ep_gradients(net, x, y, 1e-2, 150, 150) if algorithm == "ep"
         else mep.bptt_gradients(net, x, y, 150))
    mep.optim.SGD(net.params, 0.05).step(g)
    after = net.loss(net.free_phase(x, 150)[0], y)
    assert after < before


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_ep_fits_a_tiny_synthetic_problem(pool):
    net = mep.build_network(input_shape=(1, 8, 8), conv_channels=(4,), kernel_size=3, padding=1,
                            pool=pool, hidden=(16,), n_classes=4, eps=0.5, seed=0, spiking=False)
    assert fit_quadrants(net, 300, beta=0.5, T_free=30, T_nudge=10, lrs=[0.2, 0.1, 0.05]) < 0.05
