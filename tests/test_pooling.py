"""Pooling ops: loop references, ties, floor sizes, adjoint identities, dtypes, bad input."""
import numpy as np
import pytest

from minimal_ep import (avg_pool2d, avg_unpool2d, gather_pool2d, max_pool2d, max_unpool2d, to_numpy,
                        upsample_nearest2d)
from conftest import rel_err
from reference import avg_pool2d_loop, avg_unpool2d_loop, max_pool2d_loop, max_unpool2d_loop

SHAPES = [((2, 3, 8, 8), 2), ((1, 2, 11, 11), 2), ((2, 1, 9, 7), 3), ((1, 2, 5, 6), 1), ((3, 2, 6, 6), 4)]
IDS = ["8x8-F2", "11x11-F2", "9x7-F3", "F1", "6x6-F4"]


@pytest.mark.parametrize("shape,F", SHAPES, ids=IDS)
def test_max_pool_and_unpool_match_loops(xp, rng, shape, F):
    x = rng.standard_normal(shape)
    y, idx = max_pool2d(xp.asarray(x), F)
    y_ref, idx_ref = max_pool2d_loop(x, F)
    assert rel_err(y, y_ref) == 0.0
    np.testing.assert_array_equal(to_numpy(idx), idx_ref)
    H, W = shape[2:]
    back = max_unpool2d(y, idx, F, output_size=(H, W))
    assert back.shape == shape
    assert rel_err(back, max_unpool2d_loop(y_ref, idx_ref, F, H, W)) == 0.0
    assert rel_err(gather_pool2d(xp.asarray(x), idx, F), y_ref) == 0.0   # gathering at the argmax = the max


@pytest.mark.parametrize("shape,F", SHAPES, ids=IDS)
def test_avg_pool_and_unpool_match_loops(xp, rng, shape, F):
    x = rng.standard_normal(shape)
    y = avg_pool2d(xp.asarray(x), F)
    assert rel_err(y, avg_pool2d_loop(x, F)) < 1e-14
    H, W = shape[2:]
    for alpha in (F * F, 1.0, 2.5):
        back = avg_unpool2d(y, F, alpha=alpha, output_size=(H, W))
        assert rel_err(back, avg_unpool2d_loop(to_numpy(y), F, alpha, H, W)) < 1e-14
    assert rel_err(upsample_nearest2d(y, F, (H, W)), avg_unpool2d_loop(to_numpy(y), F, 1.0, H, W)) == 0.0


def test_ties_on_binary_input_first_maximum_wins(xp, rng):
    spikes = (rng.random((4, 3, 10, 10)) < 0.5).astype("float32")
    y, idx = max_pool2d(xp.asarray(spikes), 2)
    y_ref, idx_ref = max_pool2d_loop(spikes, 2)
    np.testing.assert_array_equal(to_numpy(idx), idx_ref)
    np.testing.assert_array_equal(to_numpy(y), y_ref)
    # a window of all ones picks offset 0; a window whose only ones are at (1, 0) and (1, 1) picks 2
    x = np.zeros((1, 1, 2, 4), dtype="float32")
    x[0, 0, :, :2] = 1.0
    x[0, 0, 1, 2:] = 1.0
    _, idx = max_pool2d(xp.asarray(x), 2)
    assert to_numpy(idx).ravel().tolist() == [0, 2]
    # an all-zero window picks offset 0 too
    _, idx = max_pool2d(xp.zeros((1, 1, 2, 2), dtype="float32"), 2)
    assert int(to_numpy(idx).ravel()[0]) == 0


def test_floor_output_size_and_zero_border(xp, rng):
    x = xp.asarray(rng.random((1, 1, 11, 11)) + 0.5)
    y, idx = max_pool2d(x, 2)
    assert y.shape == (1, 1, 5, 5)
    back = to_numpy(max_unpool2d(y, idx, 2, output_size=(11, 11)))
    assert back.shape == (1, 1, 11, 11)
    assert not back[..., 10, :].any() and not back[..., :, 10].any()
    assert np.count_nonzero(back) == 25                 # one value per window, all non-zero here
    up = to_numpy(avg_unpool2d(avg_pool2d(x, 2), 2, output_size=(11, 11)))
    assert not up[..., 10, :].any() and not up[..., :, 10].any()
    assert np.all(up[..., :10, :10] > 0)


@pytest.mark.parametrize("shape,F", SHAPES, ids=IDS)
def test_adjoint_identities(xp, rng, shape, F):
    """max_unpool2d is the adjoint of gather_pool2d; avg_unpool2d(alpha=F*F) of avg_pool2d (1e-12)."""
    H, W = shape[2:]
    x = xp.asarray(rng.standard_normal(shape))
    _, idx = max_pool2d(xp.asarray(rng.standard_normal(shape)), F)
    y = xp.asarray(rng.standard_normal(idx.shape))
    lhs = float(xp.sum(max_unpool2d(y, idx, F, (H, W)) * x))
    rhs = float(xp.sum(y * gather_pool2d(x, idx, F)))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    lhs = float(xp.sum(avg_pool2d(x, F) * y))
    rhs = float(xp.sum(x * avg_unpool2d(y, F, alpha=F * F, output_size=(H, W))))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))
    # max pooling is linear along a fixed route: <P(x), y> = <x, unpool(y, idx(x))>
    ymax, idx = max_pool2d(x, F)
    lhs = float(xp.sum(ymax * y))
    rhs = float(xp.sum(x * max_unpool2d(y, idx, F, (H, W))))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dtype_preserved(xp, rng, dtype):
    x = xp.asarray(rng.random((2, 2, 6, 6)).astype(dtype))
    y, idx = max_pool2d(x, 2)
    assert y.dtype == dtype and idx.dtype == np.int32
    assert max_unpool2d(y, idx, 2).dtype == dtype
    assert gather_pool2d(x, idx, 2).dtype == dtype
    assert avg_pool2d(x, 2).dtype == dtype
    assert avg_unpool2d(y, 2, alpha=3.0).dtype == dtype
    assert upsample_nearest2d(y, 2).dtype == dtype


def test_bad_input_raises_naming_shapes(xp):
    x = xp.zeros((2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"4-d.*\(6, 6\)"):
        max_pool2d(xp.zeros((6, 6)), 2)
    with pytest.raises(ValueError, match=r"F must be an int >= 1, got 0"):
        avg_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"window 7x7 is larger than the input 6x6"):
        max_pool2d(x, 7)
    y, idx = max_pool2d(x, 2)
    with pytest.raises(ValueError, match=r"output_size \(9, 9\) does not pool to \(3, 3\)"):
        max_unpool2d(y, idx, 2, output_size=(9, 9))
    with pytest.raises(ValueError, match=r"idx has shape \(2, 3, 2, 2\)"):
        max_unpool2d(y, idx[:, :, :2, :2], 2)
    with pytest.raises(ValueError, match=r"alpha must be > 0"):
        avg_unpool2d(y, 2, alpha=0.0)
