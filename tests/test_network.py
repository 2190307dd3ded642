"""The convergent RNN: Phi and its total inputs, settling, states and reports, dtypes, bad input."""
import dataclasses

import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep.conv import conv2d
from minimal_ep.network import check_input, check_labels, check_steps
from nets import random_batch, small_net


def primitive_phi(net, s):
    """Phi(x, s) of docs/equations.md §2, written out from its definition (not from the network's code)."""
    total = 0.0
    for n in range(1, net.n_layers + 1):
        prev, w, b = s[n - 1], net.params[f"w{n}"], net.params[f"b{n}"]
        if n <= net.n_conv:
            z = conv2d(prev, w, padding=net.padding)
            pooled = mep.max_pool2d(z, net.F)[0] if net.pool == "max" else mep.avg_pool2d(z, net.F)
            total += np.sum(s[n] * (pooled + b.reshape(1, -1, 1, 1)))
        else:
            total += np.sum(s[n] * (prev.reshape(len(prev), -1) @ w.T + b))
    return float(total)


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_total_input_is_the_gradient_of_phi(pool):
    """phi_n + b_n = dPhi/ds_n (Eq. 9), checked by central differences of Phi written out by hand."""
    net = small_net(pool)
    x, _ = random_batch(2)
    rng = np.random.default_rng(1)
    s = [x] + [rng.random((2,) + sh) for sh in net.shapes[1:net.n_layers + 1]]
    phi, _ = net.total_inputs(s)
    for n in range(1, net.n_layers + 1):
        flat = s[n].reshape(-1)
        for i in rng.choice(flat.size, 6, replace=False):
            old = flat[i]
            flat[i] = old + 1e-6
            up = primitive_phi(net, s)
            flat[i] = old - 1e-6
            down = primitive_phi(net, s)
            flat[i] = old
            analytic = (phi[n] + net.bias(n)).reshape(-1)[i]
            assert abs((up - down) / 2e-6 - analytic) < 1e-6 * max(1.0, abs(analytic))


@pytest.mark.parametrize("pool", ["avg", "max"])
def test_dynamics_settle_for_ten_seeds(pool):
    """Default eps and init: the residual falls below 1e-6 (float64) for each of 10 seeds (docs/equations.md §2)."""
    x, _ = random_batch(4)
    residuals = []
    for seed in range(10):
        net = small_net(pool, seed=seed, conv_channels=(6, 12), hidden=(32,), n_classes=10)
        residuals.append(net.free_phase(x, 300)[1].residual)
    print(f"pool={pool}: final residuals", ", ".join(f"{r:.1e}" for r in residuals))
    assert max(residuals) < 1e-6


def test_every_phase_reports_its_residual_and_warns_when_not_settled():
    x, y = random_batch(4)
    net = small_net(settle_tol=1e-3)
    free, report = net.free_phase(x, 200, record=True)
    assert isinstance(free, mep.State) and isinstance(report, mep.PhaseReport)
    assert report.steps == 200 and len(report.history) == 200 and report.residual == report.history[-1]
    assert report.history[-1] < report.history[10]           # it settles
    s9, _ = small_net().free_phase(x, 9)                    # the residual: ||xi^t - xi^(t-1)|| / sqrt(N)
    s10, r10 = small_net().free_phase(x, 10)
    expected = np.sqrt(sum(np.sum((a - b) ** 2) for a, b in zip(s10.xi[1:], s9.xi[1:])) / len(x))
    assert expected > 1e-3 and abs(r10.residual - expected) < 1e-12
    plus, plus_report = net.nudged_phase(free, y, 0.1, 50)
    assert np.isfinite(plus_report.residual) and plus_report.steps == 50 and plus_report.history == []
    with pytest.warns(mep.NotSettledWarning, match="not settled after 2 steps"):
        net.free_phase(x, 2)


@pytest.mark.parametrize("spiking", [False, True])
def test_a_state_holds_only_what_the_dynamics_need(spiking):
    """State = (xi, idx), SpikingState adds the channel's variables; a phase's report stands beside it."""
    x, _ = random_batch(3)
    net = small_net(spiking=spiking)
    state, report = net.free_phase(x, 5)
    names = [f.name for f in dataclasses.fields(state)]
    assert names == ["xi", "idx"] + (["d", "V", "spikes", "x_prev"] if spiking else [])
    assert [len(state.xi), len(state.idx)] == [net.n_layers + 1] * 2 and state.xi[0] is not None
    assert (report.spikes is not None) == spiking
    if spiking:
        assert [row["layer"] for row in report.spike_stats()] == list(range(1, net.n_layers + 1))
    else:
        with pytest.raises(ValueError, match="sent no spikes"):
            report.spike_stats()


def test_nudged_phase_starts_from_and_leaves_the_free_state():
    x, y = random_batch(4)
    net = small_net()
    free, _ = net.free_phase(x, 100)
    before = [a.copy() for a in free.xi]
    zero, _ = net.relax(free, 30)                            # no nudge: just more free steps
    more, _ = net.free_phase(x, 130)
    for a, b, c in zip(before, free.xi, zero.xi):
        assert np.array_equal(a, b)                          # the free state is untouched
    for b, c in zip(zero.xi, more.xi):
        assert np.allclose(b, c, atol=1e-12)
    plus, _ = net.nudged_phase(free, y, 0.5, 30)
    # nudging lowers the loss: the output moves toward the target
    assert net.loss(plus, y) < net.loss(free, y)


@pytest.mark.parametrize("spiking", [False, True])
def test_float32_stays_float32(spiking):
    """No silent promotion: states, gradients and updated weights of a float32 net stay float32."""
    x, y = random_batch(4)
    net = small_net(dtype="float32", spiking=spiking, loss="ce")
    assert all(p.dtype == np.float32 for p in net.params.values())
    g, states = mep.ep_gradients(net, x, y, 0.2, 10, 5, return_states=True)
    for st in states.values():
        assert all(a.dtype == np.float32 for a in st.xi)
    assert all(v.dtype == np.float32 for v in g.values())
    assert all(v.dtype == np.float32 for v in mep.bptt_gradients(net, x, y, 5).values())
    mep.optim.SGD(net.params, 0.1).step(g)
    assert all(p.dtype == np.float32 for p in net.params.values())
    if spiking:
        assert all(a.dtype == np.float32 for a in states["free"].spikes + states["free"].V)


def test_float64_on_request_and_agreement_with_float32():
    x, _ = random_batch(4)
    s64, _ = small_net(dtype="float64").free_phase(x, 50)
    s32, _ = small_net(dtype="float32").free_phase(x, 50)
    for a, b in zip(s64.xi[1:], s32.xi[1:]):
        assert a.dtype == np.float64 and b.dtype == np.float32
        assert np.abs(a - b).max() < 1e-4


def test_backend_invariance(xp):
    """The same seed gives the same weights, and the same states, on every backend."""
    x, _ = random_batch(4)
    net = small_net()                                       # on the fixture's backend
    state, _ = net.free_phase(xp.asarray(x), 20)
    mep.set_backend("numpy")
    cpu = small_net()
    for k, v in cpu.params.items():
        assert np.array_equal(mep.to_numpy(net.params[k]), v)
    for a, b in zip(state.xi, cpu.free_phase(x, 20)[0].xi):
        assert np.allclose(mep.to_numpy(a), b, atol=1e-10)


def test_layer_shapes_and_parameters():
    net = mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), kernel_size=3, padding=0,
                            hidden=(32,), n_classes=10, loss="ce", spiking=False)
    assert net.shapes == [(1, 28, 28), (8, 13, 13), (16, 5, 5), (32,), (10,)]
    assert net.n_layers == 3                                 # the softmax readout is not recurrent
    assert net.params["w1"].shape == (8, 1, 3, 3) and net.params["w2"].shape == (16, 8, 3, 3)
    assert net.params["w3"].shape == (32, 400) and net.params["w4"].shape == (10, 32)
    bound = 1 / np.sqrt(400)                                 # Kaiming-uniform, a = sqrt(5)
    assert np.abs(net.params["w3"]).max() <= bound and np.abs(net.params["w3"]).max() > 0.9 * bound


def test_bad_input_raises_value_errors():
    with pytest.raises(ValueError, match="pool must be avg, max, got 'sum'"):
        small_net(pool="sum")
    with pytest.raises(ValueError, match="loss must be mse, ce, got 'l1'"):
        small_net(loss="l1")
    with pytest.raises(ValueError, match=r"eps must be a number in \(0, 1\], got 1.5"):
        small_net(eps=1.5)
    with pytest.raises(ValueError, match="pool_size must be an integer >= 1, got 0"):
        small_net(pool_size=0)
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0, or none .*for F\*F.*got -1.0"):
        small_net(alpha=-1.0)
    with pytest.raises(ValueError, match=r"alpha must be .*, got 0$"):       # 0 no longer means F*F
        small_net(alpha=0)
    with pytest.raises(ValueError, match="kernel 5 does not fit"):
        mep.build_network(input_shape=(1, 4, 4), conv_channels=(2,), kernel_size=5, hidden=(), n_classes=2)
    net = small_net()
    x, y = random_batch(4)
    with pytest.raises(ValueError, match=r"x has shape \(4, 1, 10, 10\), expected .*\(N, 1, 12, 12\)"):
        net.free_phase(np.zeros((4, 1, 10, 10)), 5)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        net.free_phase(bad, 5)
    with pytest.raises(ValueError, match="T must be an integer >= 1, got 0"):
        net.free_phase(x, 0)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 4\), got range \[0, 7\]"):
        mep.ep_gradients(net, x, np.array([0, 1, 2, 7]), 0.1, 5, 5)
    with pytest.raises(ValueError, match=r"y must be \(4,\) integer labels"):
        mep.bptt_gradients(net, x, np.zeros(3, dtype=int), 5)
    with pytest.raises(ValueError, match="beta must be a finite non-zero number.*, got 0.0"):
        mep.ep_gradients(net, x, y, 0.0, 5, 5)
    with pytest.raises(ValueError, match="beta must be a finite non-zero number.*, got 0.0"):
        net.nudged_phase(net.free_phase(x, 2)[0], y, 0.0, 5)    # beta = 0 is not a free phase
    with pytest.raises(ValueError, match=r"x must lie in \[0, 1\].*got values in \[0\.07\d*, 254\.8\d*\].*pixels / 255"):
        net.free_phase(x * 255, 5)
    with pytest.raises(ValueError, match="T_nudge must be an integer >= 1"):
        mep.ep_gradients(net, x, y, 0.1, 5, 0)
    with pytest.raises(ValueError, match="unknown estimator 'two-sided'"):
        mep.ep_gradients(net, x, y, 0.1, 5, 5, estimator="two-sided")


@pytest.mark.parametrize("kwargs, message", [
    (dict(conv_channels="16"), "conv_channels must be a list of integers >= 1, got '16'"),
    (dict(conv_channels=(2.7,)), r"conv_channels must be a list of integers >= 1, got \(2.7,\)"),
    (dict(conv_channels=(4, 0)), "conv_channels must be a list of integers >= 1"),
    (dict(hidden=8), "hidden must be a list of integers >= 1, got 8"),
    (dict(hidden=(True,)), "hidden must be a list of integers >= 1"),
    (dict(kernel_size=0), "kernel_size must be an integer >= 1, got 0"),
    (dict(kernel_size=2.5), "kernel_size must be an integer >= 1, got 2.5"),
    (dict(padding=-1), "padding must be an integer >= 0, got -1"),
    (dict(init_scale=float("inf")), "init_scale must be a finite number > 0"),
    (dict(init_scale=0.0), "init_scale must be a finite number > 0"),
    (dict(init_scale=(1.0, float("nan"), 1.0, 1.0)), "init_scale must be a finite number > 0"),
    (dict(init_scale="1"), "init_scale must be a finite number > 0"),
    (dict(n_classes=1), "n_classes must be an integer >= 2"),
    (dict(input_shape=(12, 12)), r"input_shape must be \(C, H, W\)"),
    (dict(spiking=True, v_th=float("nan")), "v_th must be a finite number, got nan"),
    (dict(spiking=True, lam=1.5), r"lam must be a number in \(0, 1\]"),
    (dict(spiking=True, surrogate_width=float("inf")), "surrogate_width must be a finite number > 0"),
    (dict(settle_tol=-1.0), "settle_tol must be a finite number > 0 or None"),
    (dict(dtype="float16"), "dtype must be float32, float64, got 'float16'"),
])
def test_build_network_names_the_bad_argument(kwargs, message):
    """Every argument is checked before anything is built; the error names it (issue 11, point 9)."""
    with pytest.raises(ValueError, match=message):
        small_net(**kwargs)


def test_build_network_takes_model_settings_only_and_keeps_its_model():
    """build_network's keywords are ModelConfig's fields (numpy scalars too); the net keeps the config."""
    net = small_net(eps=np.float32(0.5), conv_channels=(np.int64(4), 8))
    assert isinstance(net.model, mep.ModelConfig)
    assert net.model.eps == net.eps == 0.5 and net.model.conv_channels == [4, 8] and net.model.alpha is None
    assert net.alpha == 4.0 and small_net(pool="max").alpha is None
    assert mep.build_network(net.model, input_shape=(1, 12, 12), n_classes=4, seed=3).model == net.model
    with pytest.raises(TypeError, match="unexpected keyword argument.*epsilon.*the model settings are"):
        small_net(epsilon=0.5)


def test_checks_at_the_boundary():
    """The inputs are checked where they enter, by three functions; the step itself checks nothing."""
    net = small_net(dtype="float32")
    x, y = random_batch(3)
    assert check_input(net, x).dtype == np.float32
    with pytest.raises(ValueError, match=r"x has shape \(3, 12, 12\)"):
        check_input(net, x[:, 0])
    assert check_labels(net, y, 3).dtype == np.int64
    with pytest.raises(ValueError, match=r"y must be \(2,\) integer labels"):
        check_labels(net, y, 2)
    assert check_steps(np.int64(5)) == 5 and isinstance(check_steps(5.0), int)
    for bad in (0, 2.5, True, "5"):
        with pytest.raises(ValueError, match="T_free must be an integer >= 1"):
            check_steps(bad, "T_free")
