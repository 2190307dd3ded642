"""The fast path computes the readable path's numbers: op by op, layer by layer, network by network.

``minimal_ep.fast`` rearranges memory (the batch innermost, window views, phase-split images for
strided convolutions, reused buffers, the outputs max pooling reads only) and never what is
computed. Every fast op and layer method is held to the readable one of ``minimal_ep.conv``,
``minimal_ep.pooling`` and ``minimal_ep.layers``; max-pooling indices exactly (the first maximum wins,
on maps full of ties); the fast spiking channel bit for bit; and networks built with ``fast=True``
and ``fast=False`` on their states, EP and BPTT gradients, for every net the benchmarks time
(benchmarks/benchlib/nets.py), in small form, in float32 and float64.
"""
import numpy as np
import pytest

import minimal_ep as mep
from benchmarks.benchlib import nets as bench_nets
from minimal_ep import conv
from minimal_ep.fast import FastChannel, accelerate, fast_channel, fast_layer
from minimal_ep.fast import ops
from minimal_ep.fast.layers import ConvAvgPool, ConvMaxPool
from minimal_ep.layers import ConvPool, Dense
from minimal_ep.pooling import POOLS
from minimal_ep.spiking import Channel

DTYPES = ("float32", "float64")
TOL = {"float32": 2e-5, "float64": 1e-11}       # of the largest magnitude: sums in another order


def close(a, b, dtype, what=""):
    """Equal to round-off: |a - b| <= tol * max |b| (float32 sums of hundreds of terms, in another order)."""
    a, b = mep.to_numpy(a), mep.to_numpy(b)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * max(float(np.abs(b).max(initial=0.0)), 1e-30),
                               err_msg=what)


# ----------------------------------------------------------------------------- the ops
# (N, C, H, W, C_out, K, stride, padding): the benchmarked layer shapes in small form, per-sample
# (256+ pixels) and batch-last products, strides 1-3, paddings 0-2, odd sizes.
CONV = [(2, 1, 28, 28, 3, 3, 1, 1), (3, 2, 14, 14, 4, 3, 1, 1), (3, 3, 7, 7, 4, 3, 1, 1), (2, 4, 3, 3, 5, 3, 1, 1),
        (2, 1, 28, 28, 3, 5, 1, 0), (3, 3, 12, 12, 4, 5, 1, 0), (2, 2, 13, 12, 3, 4, 2, 0), (2, 2, 28, 28, 3, 4, 2, 1),
        (2, 3, 9, 11, 2, 3, 3, 2), (2, 2, 7, 7, 3, 1, 1, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, C_out, K, stride, padding", CONV)
def test_fast_conv_ops_equal_the_readable_ones(rng, dtype, N, C, H, W, C_out, K, stride, padding):
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    w = rng.standard_normal((C_out, C, K, K)).astype(dtype)
    y = conv.conv2d(x, w, stride=stride, padding=padding)
    gy = rng.standard_normal(y.shape).astype(dtype)
    close(ops.conv2d(x, w, stride, padding), y, dtype, "conv2d")
    close(ops.conv_transpose2d(gy, w, x.shape, stride, padding),
          conv.conv_transpose2d(gy, w, stride=stride, padding=padding, output_size=(H, W)), dtype, "conv_transpose2d")
    close(ops.conv2d_weight(x, gy, K, K, stride, padding),
          conv.conv2d_weight(x, gy, K, stride=stride, padding=padding), dtype, "conv2d_weight")
    for result in (ops.conv2d(x, w, stride, padding), ops.conv_transpose2d(gy, w, x.shape, stride, padding)):
        assert result.dtype == x.dtype and result.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("N, C, H, W, C_out, K, stride, padding", CONV)
def test_batched_columns_equal_im2col_and_col2im(rng, dtype, N, C, H, W, C_out, K, stride, padding):
    """im2col_batched is im2col with the batch innermost (exactly); col2im_batched its adjoint, also when
    only the first OH' x OW' outputs are given (the rest zero): the crop max pooling reads."""
    OH, OW = conv.conv_output_size(H, K, stride, padding), conv.conv_output_size(W, K, stride, padding)
    x = rng.standard_normal((N, C, H, W)).astype(dtype)
    for crop in ((OH, OW), (max(1, OH - 1), max(1, OW - 1))):
        full = conv.im2col(x, K, K, stride, padding).reshape(N, C * K * K, OH, OW)
        expect = full[:, :, :crop[0], :crop[1]].transpose(1, 2, 3, 0).reshape(C * K * K, -1)
        np.testing.assert_array_equal(ops.im2col_batched(x, K, K, stride, padding, crop), expect)
        col = rng.standard_normal((C * K * K, crop[0] * crop[1] * N)).astype(dtype)
        padded = np.zeros((C * K * K, OH, OW, N), dtype=dtype)
        padded[:, :crop[0], :crop[1]] = col.reshape(C * K * K, crop[0], crop[1], N)
        ref = conv.col2im(padded.transpose(3, 0, 1, 2).reshape(N, C * K * K, OH * OW), x.shape, K, K, stride, padding)
        close(ops.col2im_batched(col, x.shape, K, K, stride, padding, crop), ref, dtype, f"col2im crop {crop}")


def test_scratch_images_are_not_shared_between_geometries(rng):
    """The same buffer shape for two image sizes (27 and 28 rows pad to 15 blocks at stride 2): each call
    sees only its own pixels and zero padding, whatever ran before."""
    for H in (28, 27, 28, 27, 26):
        x = rng.standard_normal((2, 3, H, H))
        OH = conv.conv_output_size(H, 4, 2, 1)
        expect = conv.im2col(x, 4, 4, 2, 1).reshape(2, 48, OH, OH).transpose(1, 2, 3, 0).reshape(48, -1)
        np.testing.assert_array_equal(ops.im2col_batched(x, 4, 4, 2, 1), expect)
        for padding in (0, 1, 2):
            np.testing.assert_array_equal(ops.to_batch_last(x, padding)[:, padding:padding + H, padding:padding + H],
                                          x.transpose(1, 2, 3, 0))
            assert not ops.to_batch_last(x, padding)[:, :padding].any()


# ----------------------------------------------------------------------------- max pooling: exact
MAPS = {"binary": lambda rng, shape: rng.integers(0, 2, shape),           # spikes: ties are the rule
        "three values": lambda rng, shape: rng.integers(0, 3, shape),
        "all equal": lambda rng, shape: np.full(shape, 0.5),
        "real": lambda rng, shape: rng.standard_normal(shape)}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(MAPS))
@pytest.mark.parametrize("F, size", [(2, (8, 8)), (2, (9, 7)), (2, (28, 28)), (3, (10, 11)), (1, (4, 5)), (4, (9, 8))])
def test_max_pooling_equals_max_pool2d_exactly(rng, dtype, kind, F, size):
    """The window maxima, the first-maximum offsets (ties everywhere), max-unpooling and its adjoint."""
    z = MAPS[kind](rng, (3, 4) + size).astype(dtype)
    y, idx = mep.max_pool2d(z, F)
    z_bl = ops.to_batch_last(z, role="test_z").copy()
    y_bl, idx_bl = ops.max_pool_bl(z_bl, F)
    np.testing.assert_array_equal(ops.from_batch_last(y_bl), y)
    np.testing.assert_array_equal(ops.from_batch_last(idx_bl), idx)
    assert y_bl.dtype == z.dtype and idx_bl.dtype == ops.index_dtype(F, np)
    out = np.empty_like(y_bl)
    assert ops.max_pool_bl(z_bl, F, out=out)[0] is out
    g = rng.standard_normal(y.shape).astype(dtype)
    up = ops.max_unpool_bl(ops.to_batch_last(g, role="test_g").copy(), idx_bl, F, size)
    np.testing.assert_array_equal(ops.from_batch_last(up), mep.max_unpool2d(g, idx, F, size))
    back = ops.gather_pool_bl(z_bl, idx_bl, F)
    np.testing.assert_array_equal(ops.from_batch_last(back), mep.gather_pool2d(z, idx, F))


def test_first_maximum_wins_in_row_major_order():
    """Hand-made windows: the maximum repeated in the second row and the first column must lose to the
    first one in row-major order (a column-first search would pick offset 2 here)."""
    z = np.array([[0, 1], [1, 0]], dtype="float32").reshape(1, 1, 2, 2)
    for window, first in (([[0, 1], [1, 0]], 1), ([[1, 1], [1, 1]], 0), ([[0, 0], [1, 1]], 2), ([[0, 0], [0, 1]], 3),
                          ([[0, 0], [0, 0]], 0), ([[-1, -2], [-1, -3]], 0)):
        z[0, 0] = window
        assert int(mep.max_pool2d(z, 2)[1].ravel()[0]) == first
        assert int(ops.max_pool_bl(ops.to_batch_last(z).copy(), 2)[1].ravel()[0]) == first


# ----------------------------------------------------------------------------- the layers
# (pool, in_shape, channels, K, padding, F, alpha): the benchmarked layers in small form, floor pooling
# of odd maps (7 -> 3, 3 -> 1), 5x5 kernels, F = 3.
LAYERS = [("max", (1, 28, 28), 3, 3, 1, 2, None), ("max", (2, 14, 14), 3, 3, 1, 2, None),
          ("max", (3, 7, 7), 4, 3, 1, 2, None), ("max", (4, 3, 3), 5, 3, 1, 2, None),
          ("max", (1, 28, 28), 3, 5, 0, 2, None), ("max", (3, 12, 12), 4, 5, 0, 2, None),
          ("max", (2, 13, 12), 3, 5, 2, 3, None), ("max", (3, 9, 9), 2, 3, 0, 2, None),
          ("avg", (1, 28, 28), 3, 3, 1, 2, None), ("avg", (2, 13, 13), 3, 3, 0, 2, None),
          ("avg", (3, 7, 7), 4, 3, 1, 2, 2.0), ("avg", (2, 13, 12), 3, 5, 2, 3, None),
          ("avg", (4, 7, 7), 2, 1, 0, 2, 1.0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pool, shape, channels, K, padding, F, alpha", LAYERS)
def test_fast_layers_equal_the_readable_layer(rng, dtype, pool, shape, channels, K, padding, F, alpha):
    """Every method of the fused layer against ConvPool's; max-pooling indices exactly, given back to the
    methods as the fast layer returns them and as max_pool2d's int32 NCHW array."""
    readable = ConvPool(shape, channels, K, padding, POOLS[pool](F, alpha))
    fast = fast_layer(ConvPool(shape, channels, K, padding, POOLS[pool](F, alpha)))
    assert isinstance(fast, ConvMaxPool if pool == "max" else ConvAvgPool) and fast.shape == readable.shape
    N = 3
    draw = lambda *s: rng.standard_normal(s).astype(dtype)      # noqa: E731
    w, s, a_up = draw(*readable.weight_shape), draw(N, *readable.shape), draw(N, *readable.shape)
    a_down = draw(N, *shape)
    s_prev = (rng.random((N,) + shape) > 0.6).astype(dtype)     # spikes: binary, so ties decide the indices
    y, idx = readable.forward(w, s_prev)
    y_fast, idx_fast = fast.forward(w, s_prev)
    close(y_fast, y, dtype, "forward")
    if pool == "max":
        np.testing.assert_array_equal(idx_fast, idx)
        assert idx_fast.shape == idx.shape
    close(fast.dphi_dw(w, s_prev, s), readable.dphi_dw(w, s_prev, s), dtype, "dphi_dw")
    for given in ([idx, idx_fast] if pool == "max" else [None]):
        close(fast.backward(w, s, given), readable.backward(w, s, idx), dtype, "backward")
        for got, want in zip(fast.forward_vjp(w, s_prev, given, a_up), readable.forward_vjp(w, s_prev, idx, a_up)):
            close(got, want, dtype, "forward_vjp")
        for got, want in zip(fast.backward_vjp(w, s, given, a_down), readable.backward_vjp(w, s, idx, a_down)):
            close(got, want, dtype, "backward_vjp")
    assert fast.forward_vjp(w, s_prev, idx, a_up, wrt_input=False)[0] is None


# ----------------------------------------------------------------------------- the spiking channel
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam, v_th", [(0.1, 0.5), (0.6, 0.5), (1.0, 0.3)])
def test_fast_channel_is_the_channel_bit_for_bit(rng, dtype, lam, v_th):
    readable, fast = Channel(lam, v_th, 1.0), FastChannel(lam, v_th, 1.0)
    r, r_prev, d, received = (rng.random((4, 3, 5, 5)).astype(dtype) for _ in range(4))
    V = (rng.random((4, 3, 5, 5)) - 0.5).astype(dtype)
    for got, want in zip(fast.send(r, r_prev, V), readable.send(r, r_prev, V)):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    np.testing.assert_array_equal(fast.receive(d, received), readable.receive(d, received))
    before = [a.copy() for a in (r, r_prev, V, d, received)]
    s1, V1 = fast.send(r, r_prev, V)
    s2, V2 = fast.send(r, r_prev, V)
    assert s1 is not s2 and V1 is not V2 and fast.receive(d, received) is not fast.receive(d, received)
    for a, b in zip(before, (r, r_prev, V, d, received)):
        np.testing.assert_array_equal(a, b)                      # the arguments are never written


def test_accelerate_is_the_one_seam():
    """build_network(fast=True) swaps every conv layer and the spiking channel; fast=False keeps the readable
    ones; a channel of another class (a figure's reading) is left alone."""
    for spiking in (False, True):
        for pool in ("avg", "max"):
            fast = mep.build_network(conv_channels=(2, 3), hidden=(4,), pool=pool, spiking=spiking, fast=True)
            readable = mep.build_network(conv_channels=(2, 3), hidden=(4,), pool=pool, spiking=spiking, fast=False)
            assert [type(layer).__name__ for layer in fast.layers[1:3]] == [
                "ConvMaxPool" if pool == "max" else "ConvAvgPool"] * 2
            assert all(type(layer) in (ConvPool, Dense) for layer in readable.layers[1:])
            if spiking:
                assert type(fast.channel) is FastChannel and type(readable.channel) is Channel
    class Reading(Channel):
        pass
    assert type(fast_channel(Reading(0.5, 0.5, 1.0))) is Reading
    net = mep.build_network(spiking=True, fast=False)
    assert accelerate(net) is net and type(net.channel) is FastChannel


# ----------------------------------------------------------------------------- whole networks
def small(net):
    """A benchmarked net in small form: the same layers, kernels, paddings, pooling, loss and dynamics,
    2-5 channels per conv layer and 8 hidden units."""
    build = dict(net.build, conv_channels=tuple(2 + k for k in range(len(net.build["conv_channels"]))),
                 hidden=(8,) * len(net.build["hidden"]), seed=3)
    scale = build.get("init_scale")
    if isinstance(scale, tuple):
        build["init_scale"] = scale
    return build


BENCHMARKED = [n for n in bench_nets.NETS]


BETA = 0.2


def _run(build, dtype, fast, x, y):
    """EP gradients, BPTT gradients, the states of the phases, and the size of each EP gradient's terms."""
    net = mep.build_network(**dict(build, dtype=dtype), fast=fast)
    spiking = build.get("spiking", True)
    T_free, T_nudge, T_bptt = (3, 2, 3) if spiking and dtype == "float32" else (6, 3, 5)
    g, states = mep.ep_gradients(net, x, y, BETA, T_free, T_nudge, return_states=True)
    gb = mep.bptt_gradients(net, x, y, T_bptt)
    terms = {k: float(np.abs(mep.to_numpy(v)).max()) / BETA for k, v in net.dphi_dtheta(states["plus"]).items()}
    return g, gb, states, terms


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", BENCHMARKED, ids=[n.name for n in BENCHMARKED])
def test_fast_and_readable_networks_agree(rng, dtype, net):
    """States of every phase (and every spiking variable), EP and BPTT gradients, pooling indices exactly.

    Spiking nets in float32 run a few steps only: a last-bit difference of a product that lands a
    potential on the threshold would flip a spike, and the dynamics then part (chaotically)."""
    build = small(net)
    x = rng.random((3,) + tuple(build["input_shape"]))
    y = rng.integers(0, build["n_classes"], 3)
    (g1, b1, s1, _), (g2, b2, s2, terms) = (_run(build, dtype, fast, x, y) for fast in (True, False))
    for name in g2:
        # EP's estimate is a difference of two nearly equal correlations over beta: its round-off is
        # that of the correlations, not of their (much smaller) difference
        np.testing.assert_allclose(g1[name], g2[name], rtol=0, err_msg=f"EP {name}",
                                   atol=TOL[dtype] * max(terms.get(name, 0.0), float(np.abs(g2[name]).max())))
        close(b1[name], b2[name], dtype, f"BPTT {name}")
    for phase in s2:
        for field in ("xi", "d", "V", "spikes"):
            for a, b in zip(getattr(s1[phase], field, []), getattr(s2[phase], field, [])):
                if b is not None:
                    close(a, b, dtype, f"{phase}.{field}")
        for a, b in zip(s1[phase].idx, s2[phase].idx):
            assert (a is None) == (b is None)
            if b is not None:
                np.testing.assert_array_equal(a, b, err_msg=f"{phase} pooling indices")


# ----------------------------------------------------------------------------- passes split over threads
@pytest.fixture
def two_threads(monkeypatch):
    """Every pass split over two threads, whatever its size (the split is otherwise for large passes)."""
    before = ops.threads()
    monkeypatch.setattr(ops, "PARALLEL_MIN", 0)
    ops.threads(2)
    yield
    ops.threads(before)


@pytest.mark.parametrize("pool, shape, channels, K, padding, F, alpha", LAYERS[:9:2])
def test_passes_split_over_threads_give_the_same_bits(rng, two_threads, pool, shape, channels, K, padding, F,
                                                      alpha):
    """Channel blocks on two threads: the same numbers as one thread, bit for bit (disjoint blocks)."""
    layer = fast_layer(ConvPool(shape, channels, K, padding, POOLS[pool](F, alpha)))
    N = 3
    w = rng.standard_normal(layer.weight_shape)
    s_prev = (rng.random((N,) + shape) > 0.6).astype(float)
    s = rng.standard_normal((N,) + layer.shape)
    calls = {"forward": lambda: layer.forward(w, s_prev), "dphi_dw": lambda: (layer.dphi_dw(w, s_prev, s),),
             "backward": lambda: (layer.backward(w, s, layer.forward(w, s_prev)[1]),)}
    split = {k: [np.array(v) for v in call() if v is not None] for k, call in calls.items()}
    ops.threads(1)
    for k, call in calls.items():
        for a, b in zip(split[k], [np.array(v) for v in call() if v is not None]):
            np.testing.assert_array_equal(a, b, err_msg=k)


def test_threads_follow_the_blas_library():
    assert ops.threads() >= 1
    big = np.ones((8, 64, 64, 16), dtype="float32")
    seen = []
    before = ops.threads()
    try:
        ops.threads(2)
        ops.by_channel(big, 8, big.size, lambda c0, c1: seen.append((c0, c1)))
        assert sorted(seen) == [(0, 4), (4, 8)]
        seen.clear()
        ops.by_channel(big, 8, 10, lambda c0, c1: seen.append((c0, c1)))     # small: one call
        assert seen == [(0, 8)]
    finally:
        ops.threads(before)
