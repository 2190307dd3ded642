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


# ----------------------------------------------------------------------------- average_last (docs/equations.md §4)
def test_average_last_one_is_the_literal_estimate_bit_for_bit():
    x, y = random_batch(6)
    for spiking in (False, True):
        net = small_net(spiking=spiking, eps=0.5)
        for est in ("symmetric", "one-sided"):
            a = mep.ep_gradients(net, x, y, 0.1, 30, 10, est)
            b = mep.ep_gradients(net, x, y, 0.1, 30, 10, est, average_last=1)
            assert all(np.array_equal(a[k], b[k]) for k in a)


def test_the_phase_mean_is_the_mean_of_the_last_k_states():
    """Against a loop that keeps every state of the phase (a slow reference)."""
    from minimal_ep.ep import phase_mean
    x, y = random_batch(4)
    net = small_net(pool="max", spiking=True, eps=0.5)
    free, _ = net.free_phase(x, 20)
    nudge = net.nudge_towards(y, 0.2)
    last, mean = phase_mean(net, free, 12, nudge, 5)
    states, state = [], free
    for _ in range(12):
        state = net.step(state, nudge)
        states.append(state)
    for n in range(1, net.n_layers + 1):
        assert np.array_equal(last.xi[n], states[-1].xi[n])
        assert np.allclose(mean.xi[n], np.mean([s.xi[n] for s in states[-5:]], axis=0), atol=1e-14)
    assert mean.xi[0] is free.xi[0]


def test_averaging_a_settled_crnn_changes_nothing():
    x, y = random_batch(6)
    net = small_net(eps=0.8)
    a = mep.ep_gradients(net, x, y, 0.05, 200, 200)
    b = mep.ep_gradients(net, x, y, 0.05, 200, 200, average_last=50)
    assert all(relative_error(a[k], b[k]) < 1e-6 for k in a)


def test_averaging_brings_spiking_ep_towards_the_continuous_estimate():
    """Same weights: the SNN's estimate is closer to the CRNN's when each phase is averaged (noise / K)."""
    x, y = random_batch(16)
    for seed in (0, 2):
        kw = dict(eps=0.3, lam=0.3, seed=seed)
        snn, crnn = small_net(spiking=True, **kw), small_net(spiking=False, **kw)
        target = mep.ep_gradients(crnn, x, y, 0.2, 80, 40)
        cos = {K: [cosine(mep.ep_gradients(snn, x, y, 0.2, 80, 40, average_last=K)[k], target[k])
                   for k in target if k[0] == "w"] for K in (1, 40)}
        assert sum(cos[40]) > sum(cos[1]) + 0.5 and min(cos[40]) > 0.5, cos


def test_average_last_is_checked():
    x, y = random_batch(4)
    net = small_net()
    free, _ = net.free_phase(x, 5)
    for K in (0, 11, 2.5, True):
        with pytest.raises(ValueError, match="average_last must be an integer in"):
            mep.ep_gradients(net, x, y, 0.1, 5, 10, average_last=K)
    with pytest.raises(ValueError, match="give no free_state"):
        mep.ep_gradients(net, x, y, 0.1, 5, 10, "one-sided", free_state=free, average_last=3)
    g = mep.ep_gradients(net, x, y, 0.1, 5, 10, "one-sided", average_last=3)    # runs its own free phase
    assert set(g) == set(net.params)
