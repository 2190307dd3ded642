"""Convolution ops: loop references, SciPy, adjoint identities, dtypes and bad input.

The readable ops of minimal_ep.conv and the fast ones of minimal_ep.fast.ops compute the same numbers
in other memory layouts. Every test of numbers runs on both (the ``ops`` fixture), so both are held to
the same references; the argument checks belong to the readable ops only (the fast ones are called by
layers that have checked their arguments already).
"""
import numpy as np
import pytest
from scipy import signal

from minimal_ep import conv, to_numpy
from minimal_ep.fast import clear_scratch
from minimal_ep.fast import ops as fast_ops
from conftest import rel_err
from reference import conv2d_loop, conv2d_weight_loop, conv_transpose2d_loop

# (N, C, H, W, F, KH, KW, stride, padding): odd sizes, stride 2, padding, 1x1 and 5x5 kernels
CASES = [
    (2, 3, 7, 7, 4, 3, 3, 1, 0),
    (1, 2, 9, 11, 3, 3, 3, 2, 1),
    (3, 1, 8, 6, 2, 1, 1, 1, 0),
    (2, 2, 10, 9, 3, 5, 5, 1, 2),
    (1, 3, 13, 13, 2, 5, 5, 2, 0),
    (2, 4, 6, 5, 5, 2, 3, 3, 1),
    (1, 2, 16, 16, 2, 3, 3, 1, 1),      # a 16x16 map: wide enough for one product per sample
]
IDS = ["3x3", "stride2-pad1", "1x1", "5x5-pad2", "5x5-stride2", "2x3-stride3", "wide-map"]


class FastOps:
    """The fast ops behind the readable ops' signatures: the bias, the output size and the column
    layout are handled here as the readable ops handle them, the numbers come from minimal_ep.fast.ops."""

    @staticmethod
    def conv2d(x, w, b=None, stride=1, padding=0):
        y = fast_ops.conv2d(x, w, stride, padding)
        if b is not None:
            y += b.reshape(1, -1, 1, 1)
        return y

    @staticmethod
    def conv_transpose2d(y, w, stride=1, padding=0, output_size=None):
        N, _, OH, OW = y.shape
        _, C, KH, KW = w.shape
        if output_size is None:
            output_size = ((OH - 1) * stride - 2 * padding + KH, (OW - 1) * stride - 2 * padding + KW)
        return fast_ops.conv_transpose2d(y, w, (N, C) + tuple(output_size), stride, padding)

    @staticmethod
    def conv2d_weight(x, gy, kernel_size, stride=1, padding=0):
        KH, KW = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        return fast_ops.conv2d_weight(x, gy, KH, KW, stride, padding)

    @staticmethod
    def im2col(x, KH, KW, stride=1, padding=0):
        """im2col_batched's (C*KH*KW, OH*OW*N) columns, laid out as im2col's (N, C*KH*KW, OH*OW)."""
        col = fast_ops.im2col_batched(x, KH, KW, stride, padding)
        return col.reshape(col.shape[0], -1, len(x)).transpose(2, 0, 1).copy()

    @staticmethod
    def col2im(col, x_shape, KH, KW, stride=1, padding=0):
        """col2im_batched of im2col-layout columns (N, C*KH*KW, OH*OW)."""
        batched = col.transpose(1, 2, 0).reshape(col.shape[1], -1)        # (C*KH*KW, OH*OW*N)
        return fast_ops.col2im_batched(batched, x_shape, KH, KW, stride, padding)


PATHS = {"readable": conv, "fast": FastOps}


@pytest.fixture(params=sorted(PATHS))
def ops(request):
    """The five ops of one path: minimal_ep.conv (readable) or minimal_ep.fast.ops (fast)."""
    return PATHS[request.param]


def _draw(rng, xp, *shape, dtype="float64"):
    return xp.asarray(rng.standard_normal(shape).astype(dtype))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv2d_matches_loop_and_scipy(ops, xp, rng, case):
    N, C, H, W, F, KH, KW, s, p = case
    x, w, b = _draw(rng, xp, N, C, H, W), _draw(rng, xp, F, C, KH, KW), _draw(rng, xp, F)
    y = ops.conv2d(x, w, b, stride=s, padding=p)
    xh, wh, bh = to_numpy(x), to_numpy(w), to_numpy(b)
    assert rel_err(y, conv2d_loop(xh, wh, bh, s, p)) < 1e-13
    # SciPy: a 'valid' correlation over (C, H, W) of the padded image, subsampled by the stride.
    xpad = np.pad(xh, ((0, 0), (0, 0), (p, p), (p, p)))
    ref = np.stack([np.stack([signal.correlate(xpad[n], wh[f], mode="valid")[0, ::s, ::s] + bh[f]
                              for f in range(F)]) for n in range(N)])
    assert y.shape == ref.shape
    assert rel_err(y, ref) < 1e-13


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_conv_transpose2d_and_weight_match_loops(ops, xp, rng, case):
    N, C, H, W, F, KH, KW, s, p = case
    x, w = _draw(rng, xp, N, C, H, W), _draw(rng, xp, F, C, KH, KW)
    OH, OW = ops.conv2d(x, w, stride=s, padding=p).shape[2:]
    gy = _draw(rng, xp, N, F, OH, OW)
    xt = ops.conv_transpose2d(gy, w, stride=s, padding=p, output_size=(H, W))
    assert xt.shape == (N, C, H, W)
    assert rel_err(xt, conv_transpose2d_loop(to_numpy(gy), to_numpy(w), H, W, s, p)) < 1e-13
    gw = ops.conv2d_weight(x, gy, (KH, KW), stride=s, padding=p)
    assert rel_err(gw, conv2d_weight_loop(to_numpy(x), to_numpy(gy), KH, KW, s, p)) < 1e-12


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_adjoint_identities(ops, xp, rng, case):
    """<conv2d(x,w), y> = <x, conv_transpose2d(y,w)> = <w, conv2d_weight(x,y)>, to 1e-12."""
    N, C, H, W, F, KH, KW, s, p = case
    x, w = _draw(rng, xp, N, C, H, W), _draw(rng, xp, F, C, KH, KW)
    y = _draw(rng, xp, *ops.conv2d(x, w, stride=s, padding=p).shape)
    lhs = float(xp.sum(ops.conv2d(x, w, stride=s, padding=p) * y))
    rhs_x = float(xp.sum(x * ops.conv_transpose2d(y, w, stride=s, padding=p, output_size=(H, W))))
    rhs_w = float(xp.sum(w * ops.conv2d_weight(x, y, (KH, KW), stride=s, padding=p)))
    assert abs(lhs - rhs_x) <= 1e-12 * max(1.0, abs(lhs))
    assert abs(lhs - rhs_w) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_im2col_layout_and_col2im_adjoint(ops, xp, rng, case):
    N, C, H, W, F, KH, KW, s, p = case
    x = _draw(rng, xp, N, C, H, W)
    col = ops.im2col(x, KH, KW, s, p)
    OH, OW = (H + 2 * p - KH) // s + 1, (W + 2 * p - KW) // s + 1
    assert col.shape == (N, C * KH * KW, OH * OW)
    xpad = np.pad(to_numpy(x), ((0, 0), (0, 0), (p, p), (p, p)))
    c, kp, kq, i, j = C - 1, KH - 1, KW - 1, OH - 1, OW // 2      # one entry, by the documented formula
    assert to_numpy(col)[0, (c * KH + kp) * KW + kq, i * OW + j] == xpad[0, c, i * s + kp, j * s + kq]
    z = _draw(rng, xp, *col.shape)
    lhs = float(xp.sum(col * z))
    rhs = float(xp.sum(x * ops.col2im(z, x.shape, KH, KW, s, p)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_col2im_counts_window_overlaps(ops, xp):
    """col2im of all-ones columns counts, at each pixel, how many windows cover it."""
    N, C, H, W, K = 1, 1, 5, 6, 3
    ones = xp.ones((N, C * K * K, 3 * 4))
    counts = to_numpy(ops.col2im(ones, (N, C, H, W), K, K))[0, 0]
    rows = np.array([1, 2, 3, 2, 1])
    cols = np.array([1, 2, 3, 3, 2, 1])
    np.testing.assert_array_equal(counts, np.outer(rows, cols))


@pytest.mark.parametrize("case", CASES + [(1, 1, 7, 7, 1, 3, 3, 1, 0)], ids=IDS + ["N=C=C_out=1"])
def test_results_are_new_arrays_not_scratch_buffers(ops, xp, rng, case):
    """The fast ops reuse internal column buffers; a later call must never change an earlier result."""
    N, C, H, W, C_out, KH, KW, stride, padding = case
    kw = dict(stride=stride, padding=padding)
    x, w = _draw(rng, xp, N, C, H, W), _draw(rng, xp, C_out, C, KH, KW)
    clear_scratch()                                    # room for every buffer: the second call reuses them
    y = ops.conv2d(x, w, **kw)
    xt = ops.conv_transpose2d(y, w, output_size=(H, W), **kw)
    gw = ops.conv2d_weight(x, y, (KH, KW), **kw)
    kept = [to_numpy(a).copy() for a in (y, xt, gw)]
    x2, w2 = 2 * x + 1, w - 1                          # same shapes, other values: the same buffers
    y2 = ops.conv2d(x2, w2, **kw)
    ops.conv_transpose2d(y2, w2, output_size=(H, W), **kw)
    ops.conv2d_weight(x2, y2, (KH, KW), **kw)
    for a, k in zip((y, xt, gw), kept):
        assert np.array_equal(to_numpy(a), k)


def test_col2im_is_deterministic(ops, xp, rng):
    x = _draw(rng, xp, 2, 3, 9, 9, dtype="float32")
    col = ops.im2col(x, 3, 3, 1, 1)
    a, b = ops.col2im(col, x.shape, 3, 3, 1, 1), ops.col2im(col, x.shape, 3, 3, 1, 1)
    assert np.array_equal(to_numpy(a), to_numpy(b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_preserved(ops, xp, rng, dtype):
    x, w = _draw(rng, xp, 2, 3, 8, 8, dtype=dtype), _draw(rng, xp, 4, 3, 3, 3, dtype=dtype)
    b = _draw(rng, xp, 4, dtype=dtype)
    y = ops.conv2d(x, w, b, padding=1)
    assert y.dtype == dtype
    assert ops.conv_transpose2d(y, w, padding=1).dtype == dtype
    assert ops.conv2d_weight(x, y, 3, padding=1).dtype == dtype
    assert ops.im2col(x, 3, 3).dtype == dtype


def test_float32_agrees_with_float64(ops, xp, rng):
    x, w = _draw(rng, xp, 2, 3, 9, 9), _draw(rng, xp, 4, 3, 3, 3)
    y64 = ops.conv2d(x, w)
    y32 = ops.conv2d(x.astype("float32"), w.astype("float32"))
    assert rel_err(y32, y64) < 1e-5


def test_bad_input_raises_naming_shapes(xp):
    """The readable ops check their arguments and name the shapes (the fast ones are fed checked ones)."""
    x, w = xp.zeros((2, 3, 8, 8)), xp.zeros((4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"4-d.*\(8, 8\)"):
        conv.conv2d(xp.zeros((8, 8)), w)
    with pytest.raises(ValueError, match=r"x has 2 channels.*w expects 3"):
        conv.conv2d(xp.zeros((2, 2, 8, 8)), w)
    with pytest.raises(ValueError, match=r"kernel 9x9 is larger than the padded input 8x8"):
        conv.conv2d(x, xp.zeros((4, 3, 9, 9)))
    with pytest.raises(ValueError, match=r"dtype mismatch"):
        conv.conv2d(x.astype("float32"), w)
    with pytest.raises(ValueError, match=r"stride must be >= 1"):
        conv.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match=r"y has 5 channels.*w has 4 filters"):
        conv.conv_transpose2d(xp.zeros((2, 5, 6, 6)), w)
    with pytest.raises(ValueError, match=r"output_size \(9, 9\) does not convolve back"):
        conv.conv_transpose2d(xp.zeros((2, 4, 6, 6)), w, output_size=(9, 9))
    with pytest.raises(ValueError, match=r"gy has shape \(2, 4, 5, 5\)"):
        conv.conv2d_weight(x, xp.zeros((2, 4, 5, 5)), 3)
    with pytest.raises(ValueError, match=r"col has shape"):
        conv.col2im(xp.zeros((2, 27, 35)), (2, 3, 8, 8), 3, 3)
