"""``build_network``: a convergent RNN, continuous or spiking, from keyword arguments, every one checked.

A wrong argument is a ValueError that names it and says what is allowed, before anything is built:
``conv_channels="16"`` is not read as the channels 1 and 6, ``(2.7,)`` is not rounded to 2, an
infinite ``init_scale`` or a NaN ``v_th`` never reaches the weights or the threshold.
"""
import math
import numbers

from .network import LOSSES, ConvergentRNN
from .pooling import POOLS


def _ints(name, value, minimum, allow_empty=True):
    """``value`` as a tuple of ints >= minimum; ValueError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
    out = tuple(value)
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= minimum for v in out):
        raise ValueError(f"{name} must be a sequence of integers >= {minimum}, got {value!r}")
    if not out and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    return tuple(int(v) for v in out)


def _int(name, value, minimum):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _real(name, value, low=-math.inf, high=math.inf, low_open=True, high_open=False):
    """``value`` as a finite float in the interval; ValueError naming ``name`` otherwise."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return float(value)


def build_network(input_shape=(1, 28, 28), conv_channels=(128, 256), kernel_size=3, padding=0,
                  pool="avg", hidden=(512,), n_classes=10, spiking=False, loss="mse",
                  dtype="float32", seed=0, eps=0.8, pool_size=2, alpha=None, init_scale=1.0,
                  settle_tol=None, lam=0.6, v_th=0.5, surrogate_width=1.0):
    """Build a convolutional convergent RNN, continuous (``spiking=False``) or spiking.

    Parameters
    ----------
    input_shape : (C, H, W)
    conv_channels : tuple of int
        Channels of the conv layers, each conv (stride 1) -> pool (F x F, stride F).
    kernel_size, padding : int
    pool : {"avg", "max"}
    hidden : tuple of int
        Widths of the dense hidden layers.
    n_classes : int
    spiking : bool
        A spiking network (Sigma-Delta modulation and predictive coding, paper Eq. 6-10).
    loss : {"mse", "ce"}
        MSE on the top layer, or cross-entropy of a softmax readout outside the recurrent system.
    dtype : {"float32", "float64"}
    seed : int
        Seed of the host RNG that draws the initial weights.
    eps : float
        Step size of the dynamics, in (0, 1].
    pool_size : int
        F, the pooling window and stride.
    alpha : float, optional
        Scale of average unpooling (Eq. 16); default F*F, the exact adjoint.
    init_scale : float or tuple of float
        Multiplies the Kaiming-uniform bound 1 / sqrt(fan_in), per weight when a tuple.
    settle_tol : float, optional
        Warn (NotSettledWarning) when a phase ends with a larger residual; None never warns.
    lam, v_th, surrogate_width : float
        Spiking only: prediction factor lambda (Eq. 7-8), Sigma-Delta threshold (Eq. 6), and the
        width of the triangular surrogate derivative used by spiking BPTT.

    Raises
    ------
    ValueError
        Naming the argument, for any value outside its range.
    """
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; allowed: {', '.join(POOLS)}")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    input_shape = _ints("input_shape", input_shape, 1)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    scales = (init_scale,) if isinstance(init_scale, numbers.Real) else init_scale
    if isinstance(scales, (str, bytes)) or not hasattr(scales, "__iter__"):
        raise ValueError(f"init_scale must be a number or a sequence of numbers, got {init_scale!r}")
    for v in scales:
        _real("init_scale", v, 0.0)
    if alpha is not None:
        alpha = _real("alpha", alpha, 0.0)
    if settle_tol is not None:
        settle_tol = _real("settle_tol", settle_tol, 0.0)
    if seed is not None:
        seed = _int("seed", seed, 0)
    args = dict(input_shape=input_shape, conv_channels=_ints("conv_channels", conv_channels, 1),
                kernel_size=_int("kernel_size", kernel_size, 1), padding=_int("padding", padding, 0),
                pool=pool, pool_size=_int("pool_size", pool_size, 1), alpha=alpha,
                hidden=_ints("hidden", hidden, 1), n_classes=_int("n_classes", n_classes, 2),
                loss=loss, dtype=dtype, seed=seed, eps=_real("eps", eps, 0.0, 1.0),
                init_scale=init_scale, settle_tol=settle_tol)
    if not spiking:
        return ConvergentRNN(**args)
    from .spiking import SpikingConvergentRNN      # spiking.py builds on this module
    return SpikingConvergentRNN(lam=_real("lam", lam, 0.0, 1.0), v_th=_real("v_th", v_th),
                                surrogate_width=_real("surrogate_width", surrogate_width, 0.0), **args)
