"""Layers, pooling kinds and the update rule: adjoint identities of every VJP, a pure step, both paths.

The routes of a layer are linear in the state they read and in the weight (for fixed pooling
indices), so each VJP is checked by the identity that defines it: <route(s), a> = <s, vjp_s(a)>
and <route(w), a> = <w, vjp_w(a)>, in float64, to round-off. The fast layers
(``minimal_ep.fast.fast_layer`` of a readable ``ConvPool``) are held to the same identities, then
compared with the readable layer method by method, and whole networks built with ``fast=True`` and
``fast=False`` are compared on their states and gradients.
"""
import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep import to_numpy
from minimal_ep.dynamics import update, update_vjp
from minimal_ep.fast import ConvAvgPool, ConvMaxPool, box_kernel, box_kernel_adjoint, fast_layer
from minimal_ep.fast import ops as fast_ops
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
          ("conv-max-fast", lambda: fast_layer(ConvPool((3, 9, 8), 4, 3, 1, POOLS["max"](2)))),
          ("conv-max-fast-5x5-F3", lambda: fast_layer(ConvPool((2, 13, 12), 3, 5, 2, POOLS["max"](3)))),
          ("conv-avg", lambda: ConvPool((3, 9, 9), 4, 3, 0, POOLS["avg"](2, alpha=2.0))),
          ("conv-avg-fast", lambda: fast_layer(ConvPool((3, 9, 9), 4, 3, 0, POOLS["avg"](2, alpha=2.0)))),
          ("conv-avg-fast-5x5-F3", lambda: fast_layer(ConvPool((2, 13, 12), 3, 5, 2, POOLS["avg"](3)))),
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
    """update = clip((1-eps) xi + eps drive); its VJP is the clip's mask times (1-eps) for xi, eps for drive."""
    eps = 0.7
    xi, drive = rng.random((4, 5)), rng.standard_normal((4, 5)) * 2
    new = update(xi, drive, eps)
    u = (1 - eps) * xi + eps * drive
    np.testing.assert_allclose(new, np.clip(u, 0, 1), rtol=1e-15, atol=0)
    assert 0 < np.mean((u > 0) & (u < 1)) < 1                        # both sides of the clip are tried
    g = rng.standard_normal(new.shape)
    g_xi, g_drive = update_vjp(new, g, eps)
    mask = (u > 0) & (u < 1)
    np.testing.assert_allclose(g_xi, (1 - eps) * g * mask, rtol=1e-15, atol=0)
    np.testing.assert_allclose(g_drive, eps * g * mask, rtol=1e-15, atol=0)
    # and the VJP is the derivative: a small change of xi and drive inside the linear pieces
    h, d_xi, d_drive = 1e-7, rng.standard_normal(xi.shape), rng.standard_normal(xi.shape)
    slope = (update(xi + h * d_xi, drive + h * d_drive, eps) - new) / h
    assert abs(np.sum(g * slope) - np.sum(g_xi * d_xi + g_drive * d_drive)) < 1e-5


@pytest.mark.parametrize("spiking", [False, True])
@pytest.mark.parametrize("pool", ["avg", "max"])
def test_step_is_pure(spiking, pool):
    """step returns a new state and leaves the one it read untouched (the free state is reusable)."""
    x, y = random_batch(3)
    net = small_net(pool, spiking=spiking, eps=0.5, lam=0.5)
    state, _ = net.free_phase(x, 7)
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
def test_fast_and_readable_networks_agree(spiking, pool):
    """A network built with fast=True and the same one built with fast=False: same states (free and
    nudged), same EP and BPTT gradients (float64), while their conv layers are different classes."""
    kw = dict(spiking=spiking, eps=0.5, lam=0.5, input_shape=(1, 20, 20))   # 20x20: per-sample and batched
    fast_net, readable = small_net(pool, "ce", fast=True, **kw), small_net(pool, "ce", fast=False, **kw)
    fused = ConvAvgPool if pool == "avg" else ConvMaxPool
    for n in range(1, fast_net.n_conv + 1):
        assert type(fast_net.layers[n]) is fused and type(readable.layers[n]) is ConvPool
    assert all(type(a) is type(b) for a, b in zip(fast_net.layers[fast_net.n_conv + 1:],
                                                   readable.layers[readable.n_conv + 1:]))
    for k, v in readable.params.items():
        assert np.array_equal(fast_net.params[k], v)
    x, y = random_batch(6)
    x = np.pad(x, ((0, 0), (0, 0), (4, 4), (4, 4)))
    out = {}
    for name, net in (("fast", fast_net), ("readable", readable)):
        g, states = mep.ep_gradients(net, x, y, 0.2, 15, 6, return_states=True)
        gb, final, report = mep.bptt_gradients(net, x, y, 8, return_state=True)
        out[name] = (g, gb, states, final, report)
    (g1, b1, st1, f1, r1), (g2, b2, st2, f2, r2) = out["fast"], out["readable"]
    assert set(g1) == set(g2) == set(b1) == set(b2) == set(readable.params)
    for k in g1:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-9, atol=1e-12, err_msg=f"EP {k}")
        np.testing.assert_allclose(b1[k], b2[k], rtol=1e-9, atol=1e-12, err_msg=f"BPTT {k}")
    for phase in ("free", "plus", "minus"):
        for a, b in zip(st1[phase].xi[1:], st2[phase].xi[1:]):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=phase)
    for a, b in zip(f1.xi[1:], f2.xi[1:]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg="BPTT's final state")
    if pool == "max":                                     # the same pooling indices, step by step
        for a, b in zip(f1.idx[1:fast_net.n_conv + 1], f2.idx[1:readable.n_conv + 1]):
            np.testing.assert_array_equal(a, b)
    assert r1.steps == r2.steps == 8 and abs(r1.residual - r2.residual) <= 1e-9 * max(1.0, r2.residual)


FUSED = [("avg", (3, 9, 9), 3, 0, 2, None), ("avg", (2, 13, 12), 5, 2, 3, 2.0), ("avg", (1, 28, 28), 3, 1, 2, 4.0),
         ("avg", (4, 7, 7), 1, 0, 2, 1.0), ("max", (3, 9, 9), 3, 0, 2, None), ("max", (2, 13, 12), 5, 2, 3, None),
         ("max", (2, 12, 12), 5, 0, 2, None)]


@pytest.mark.parametrize("kind, shape, K, padding, F, alpha", FUSED)
def test_fast_layer_equals_the_readable_conv_pool(rng, kind, shape, K, padding, F, alpha):
    """conv -> avg pool as ONE stride-F convolution with the box-averaged kernel (fast ConvAvgPool);
    conv -> max pool with its maps batch last (fast ConvMaxPool): the same numbers as ConvPool,
    method by method."""
    readable = ConvPool(shape, 5, K, padding, POOLS[kind](F, alpha))
    one = fast_layer(readable)
    assert type(one) is (ConvAvgPool if kind == "avg" else ConvMaxPool) and type(readable) is ConvPool
    assert (one.shape, one.weight_shape, one.conv_size) == (readable.shape, readable.weight_shape,
                                                             readable.conv_size)
    N = 3
    w, s_prev, s = (rng.standard_normal(sh)
                    for sh in (readable.weight_shape, (N,) + shape, (N,) + readable.shape))
    if kind == "max":                            # spikes: binary, so ties decide the indices
        s_prev = (s_prev > 0).astype(float)
    a_up, a_down = rng.standard_normal((N,) + readable.shape), rng.standard_normal((N,) + shape)
    idx = readable.forward(w, s_prev)[1]
    if idx is not None:
        np.testing.assert_array_equal(one.forward(w, s_prev)[1], idx)
    calls = {"forward": lambda L: L.forward(w, s_prev)[0], "backward": lambda L: L.backward(w, s, idx),
             "dphi_dw": lambda L: L.dphi_dw(w, s_prev, s),
             "forward_vjp": lambda L: np.concatenate([v.ravel() for v in L.forward_vjp(w, s_prev, idx, a_up)]),
             "backward_vjp": lambda L: np.concatenate([v.ravel() for v in L.backward_vjp(w, s, idx, a_down)]),
             "forward_vjp, weight only": lambda L: L.forward_vjp(w, s_prev, idx, a_up, wrt_input=False)[1]}
    for name, call in calls.items():
        np.testing.assert_allclose(call(one), call(readable), rtol=1e-12, atol=1e-12, err_msg=name)


def test_fast_layer_swaps_only_conv_layers():
    """fast_layer leaves every other layer as it is; accelerate swaps a built net's conv layers in place."""
    for layer in (Dense((3, 4, 4), 5), Dense((6,), 5)):
        assert fast_layer(layer) is layer
    net = small_net(fast=False)
    layers = list(net.layers)
    assert mep.fast.accelerate(net) is net
    assert [type(layer) for layer in net.layers[1:]] == [ConvAvgPool, ConvAvgPool, Dense, Dense]
    assert net.layers[3] is layers[3] and net.layers[1].pool is layers[1].pool


def test_box_kernel_adjoint(rng):
    w, g4 = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((3, 2, 4, 4))
    _close(_dot(box_kernel(w, 2), g4), _dot(w, box_kernel_adjoint(g4, 2)))


@pytest.mark.parametrize("F, size", [(2, (8, 8)), (2, (9, 7)), (3, (10, 11))])
def test_batch_last_max_pooling_equals_max_pool2d_with_ties(rng, F, size):
    """The fast batch-last pooling: same maxima, same first-maximum offsets (ties everywhere), same adjoints."""
    z = rng.integers(0, 2, (4, 3) + size).astype(float)              # binary maps: ties are the rule
    y, idx = mep.max_pool2d(z, F)
    y_bl, idx_bl = fast_ops.max_pool_bl(fast_ops.to_batch_last(z).copy(), F)
    np.testing.assert_array_equal(fast_ops.from_batch_last(y_bl), y)
    np.testing.assert_array_equal(fast_ops.from_batch_last(idx_bl), idx)
    g = rng.standard_normal(y.shape)
    up = fast_ops.max_unpool_bl(fast_ops.to_batch_last(g, role="a").copy(), idx_bl, F, size)
    np.testing.assert_array_equal(fast_ops.from_batch_last(up), mep.max_unpool2d(g, idx, F, size))
    back = fast_ops.gather_pool_bl(fast_ops.to_batch_last(z, role="b"), idx_bl, F)
    np.testing.assert_array_equal(fast_ops.from_batch_last(back), mep.gather_pool2d(z, idx, F))
