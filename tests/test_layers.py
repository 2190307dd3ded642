"""Layers, pooling kinds and the update rule: adjoint identities of every VJP, a pure step, both paths.

The routes of a layer are linear in the state they read and in the weight (for fixed pooling
indices), so each VJP is checked by the identity that defines it: <route(s), a> = <s, vjp_s(a)>
and <route(w), a> = <w, vjp_w(a)>, in float64, to round-off.
"""
import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep import fast, fused, to_numpy
from minimal_ep.dynamics import update, update_vjp
from minimal_ep.layers import ConvPool, Dense
from minimal_ep.pooling import POOLS
from nets import random_batch, small_net


def _dot(a, b):
    return float(np.sum(to_numpy(a) * to_numpy(b)))


def _close(a, b):
    assert abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b)), (a, b)


@pytest.mark.parametrize("kind", sorted(POOLS))
@pytest.mark.parametrize("size", [(8, 8), (11, 9)])          # floor pooling drops a row / column
def test_pooling_kinds_vjps_are_adjoints(xp, rng, kind, size):
    pool = POOLS[kind](2, alpha=3.0)
    z = xp.asarray(rng.standard_normal((2, 3) + size))
    y, idx = pool.pool(z)
    g = xp.asarray(rng.standard_normal(y.shape))
    _close(_dot(y, g), _dot(z, pool.pool_vjp(g, idx, size)))             # P and P^T
    u = pool.unpool(g, idx, size)
    _close(_dot(u, z), _dot(g, pool.unpool_vjp(z, idx)))                # P^-1 and (P^-1)^T
    assert (idx is None) == (not pool.needs_indices)


LAYERS = [("conv-max", lambda: ConvPool((3, 9, 9), 4, 3, 1, POOLS["max"](2))),
          ("conv-max-fused", lambda: fused.fused(ConvPool((3, 9, 8), 4, 3, 1, POOLS["max"](2)))),
          ("conv-max-fused-5x5-F3", lambda: fused.fused(ConvPool((2, 13, 12), 3, 5, 2, POOLS["max"](3)))),
          ("conv-avg", lambda: ConvPool((3, 9, 9), 4, 3, 0, POOLS["avg"](2, alpha=2.0))),
          ("conv-avg-fused", lambda: fused.fused(ConvPool((3, 9, 9), 4, 3, 0, POOLS["avg"](2, alpha=2.0)))),
          ("conv-avg-fused-5x5-F3", lambda: fused.fused(ConvPool((2, 13, 12), 3, 5, 2, POOLS["avg"](3)))),
          ("dense-from-map", lambda: Dense((3, 4, 4), 5)),
          ("dense", lambda: Dense((6,), 5))]


@pytest.mark.parametrize("name, make", LAYERS, ids=[n for n, _ in LAYERS])
def test_layer_routes_and_their_vjps(xp, rng, name, make):
    """forward/backward routes against their VJPs (both arguments), and dphi_dw against backward_vjp."""
    layer = make()
    draw = lambda *shape: xp.asarray(rng.standard_normal(shape))       # noqa: E731
    N = 3
    w, s_prev, s = draw(*layer.weight_shape), draw(N, *layer.in_shape), draw(N, *layer.shape)
    route, idx = layer.forward(w, s_prev)
    assert route.shape == (N,) + layer.shape
    a = draw(*route.shape)
    g_s, g_w = layer.forward_vjp(w, s_prev, idx, a)
    _close(_dot(route, a), _dot(s_prev, g_s))
    _close(_dot(route, a), _dot(w, g_w))
    assert layer.forward_vjp(w, s_prev, idx, a, wrt_input=False)[0] is None
    down = layer.backward(w, s, idx)                                      # the indices of this step
    assert down.shape == (N,) + layer.in_shape
    b = draw(*down.shape)
    g_s, g_w = layer.backward_vjp(w, s, idx, b)
    _close(_dot(down, b), _dot(s, g_s))
    _close(_dot(down, b), _dot(w, g_w))
    # Phi_n = <s_n, forward(s_{n-1})> is linear in w and in s_{n-1}: <w, dPhi/dw> and <s_{n-1}, dPhi/ds_{n-1}>
    # (the backward route) both equal Phi_n itself, up to the factor F^2 / alpha of an average
    # unpooling that is not the exact adjoint (alpha != F^2, Eq. 16)
    pool = getattr(layer, "pool", None)
    scale = pool.F ** 2 / pool.alpha if pool is not None and not pool.needs_indices else 1.0
    _close(_dot(w, layer.dphi_dw(w, s_prev, s)), scale * _dot(route, s))
    _close(_dot(s_prev, down), scale * _dot(route, s))
    bias, v = draw(layer.shape[0]), draw(N, *layer.shape)
    _close(_dot(v, layer.bias(bias)), _dot(bias, layer.sum_to_bias(v)))


def test_update_is_eq3_and_its_vjp_is_the_clip_mask(rng):
    xi, drive = rng.random((4, 5)), rng.standard_normal((4, 5)) * 2
    new = update(xi, drive, 0.7)
    np.testing.assert_array_equal(new, np.clip(0.3 * xi + 0.7 * drive, 0, 1))
    g = rng.standard_normal(new.shape)
    u = 0.3 * xi + 0.7 * drive
    np.testing.assert_array_equal(update_vjp(new, g), g * ((u > 0) & (u < 1)))


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_step_is_pure(spiking, pool):
    """step returns a new state and leaves the one it read untouched (the free state is reusable)."""
    x, y = random_batch(3)
    net = small_net(pool, spiking=spiking, eps=0.5, lam=0.5)
    state = net.free_phase(x, 7)
    fields = ("xi", "spikes", "V", "d") if spiking else ("xi",)
    before = {f: [None if a is None else a.copy() for a in getattr(state, f)] for f in fields}
    new = net.step(state, net.nudge_towards(y, 0.3))
    for f in fields:
        for a, b in zip(before[f], getattr(state, f)):
            assert (a is None and b is None) or np.array_equal(a, b)
    assert new is not state and all(a is not b for a, b in zip(new.xi[1:], state.xi[1:]))
    if pool == "max":
        assert all(new.idx[n] is not None for n in range(1, net.n_conv + 1))


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_fast_and_readable_paths_agree(spiking, pool):
    """Phases, EP and BPTT gradients on the fast path equal those of the readable path (float64)."""
    x, y = random_batch(6)
    out = {}
    for enabled in (True, False):
        with fast.use(enabled):
            net = small_net(pool, "ce", spiking=spiking, eps=0.5, lam=0.5,
                            input_shape=(1, 20, 20))          # 20x20: per-sample and batched products
            g, states = mep.ep_gradients(net, np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4))), y, 0.2, 15, 6,
                                         return_states=True)
            gb = mep.bptt_gradients(net, np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4))), y, 8)
            out[enabled] = (g, gb, states["plus"].xi)
    (g1, b1, s1), (g2, b2, s2) = out[True], out[False]
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b1[k], b2[k], rtol=1e-9, atol=1e-12)
    for a, b in zip(s1[1:], s2[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


FUSED = [("avg", (3, 9, 9), 3, 0, 2, None), ("avg", (2, 13, 12), 5, 2, 3, 2.0), ("avg", (1, 28, 28), 3, 1, 2, 4.0),
         ("avg", (4, 7, 7), 1, 0, 2, 1.0), ("max", (3, 9, 9), 3, 0, 2, None), ("max", (2, 13, 12), 5, 2, 3, None),
         ("max", (2, 12, 12), 5, 0, 2, None)]


@pytest.mark.parametrize("kind, shape, K, padding, F, alpha", FUSED)
def test_fused_conv_pool_equals_the_two_step_form(rng, kind, shape, K, padding, F, alpha):
    """conv -> avg pool as ONE stride-F convolution with the box-averaged kernel (fused.ConvAvgPool);
    conv -> max pool with its maps batch last (fused.ConvMaxPool): the same numbers as ConvPool."""
    two_step = ConvPool(shape, 5, K, padding, POOLS[kind](F, alpha))
    one = fused.fused(ConvPool(shape, 5, K, padding, POOLS[kind](F, alpha)))
    assert isinstance(one, fused.ConvAvgPool if kind == "avg" else fused.ConvMaxPool)
    assert one.shape == two_step.shape
    N = 3
    w, s_prev, s = (rng.standard_normal(sh) for sh in (two_step.weight_shape, (N,) + shape, (N,) + two_step.shape))
    if kind == "max":                            # spikes: binary, so ties decide the indices
        s_prev = (s_prev > 0).astype(float)
    a_up, a_down = rng.standard_normal((N,) + two_step.shape), rng.standard_normal((N,) + shape)
    idx = two_step.forward(w, s_prev)[1]
    if idx is not None:
        np.testing.assert_array_equal(one.forward(w, s_prev)[1], idx)
    calls = {"forward": lambda L: L.forward(w, s_prev)[0], "backward": lambda L: L.backward(w, s, idx),
             "dphi_dw": lambda L: L.dphi_dw(w, s_prev, s),
             "forward_vjp": lambda L: np.concatenate([v.ravel() for v in L.forward_vjp(w, s_prev, idx, a_up)]),
             "backward_vjp": lambda L: np.concatenate([v.ravel() for v in L.backward_vjp(w, s, idx, a_down)])}
    for name, call in calls.items():
        np.testing.assert_allclose(call(one), call(two_step), rtol=1e-12, atol=1e-12, err_msg=name)
    with fast.use(False):                                # switched off, the fused layer is the two-step form
        np.testing.assert_array_equal(one.forward(w, s_prev)[0], two_step.forward(w, s_prev)[0])


def test_box_kernel_adjoint(rng):
    w, g4 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 4, 4))
    _close(_dot(fused.box_kernel(w, 2), g4), _dot(w, fused.box_kernel_adjoint(g4, 2)))


@pytest.mark.parametrize("F, size", [(2, (8, 8)), (2, (9, 7)), (3, (10, 11))])
def test_batch_last_max_pooling_equals_max_pool2d_with_ties(rng, F, size):
    """fast's batch-last pooling: same maxima, same first-maximum offsets (ties everywhere), same adjoints."""
    z = rng.integers(0, 2, (4, 3) + size).astype(float)              # binary maps: ties are the rule
    y, idx = mep.max_pool2d(z, F)
    y_bl, idx_bl = fast.max_pool_bl(fast.to_batch_last(z).copy(), F)
    np.testing.assert_array_equal(fast.from_batch_last(y_bl), y)
    np.testing.assert_array_equal(fast.from_batch_last(idx_bl), idx)
    g = rng.standard_normal(y.shape)
    up = fast.max_unpool_bl(fast.to_batch_last(g, role="a").copy(), idx_bl, F, size)
    np.testing.assert_array_equal(fast.from_batch_last(up), mep.max_unpool2d(g, idx, F, size))
    back = fast.gather_pool_bl(fast.to_batch_last(z, role="b"), idx_bl, F)
    np.testing.assert_array_equal(fast.from_batch_last(back), mep.gather_pool2d(z, idx, F))
