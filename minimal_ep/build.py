"""``build_network``: a convergent RNN, continuous or spiking, from keyword arguments, every one checked.

The defaults and the allowed values of the model's settings live in one place,
:class:`minimal_ep.config.ModelConfig` (whose defaults are ``configs/quickstart.toml``); this module
reads both from there. A wrong argument is a ValueError that names it and says what is allowed,
before anything is built: ``conv_channels="16"`` is not read as the channels 1 and 6, ``(2.7,)`` is
not rounded to 2, an infinite ``init_scale`` or a NaN ``v_th`` never reaches the weights or the
threshold.
"""
import math
import numbers

from . import config
from .network import ConvergentRNN

_D = config.ModelConfig()


def _as_setting(value):
    """A Python argument in the form the config checks read: sequences as lists, integers as int."""
    if isinstance(value, (tuple, list)):
        return [_as_setting(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    return value


def _model_setting(key, value):
    """``value`` checked against :class:`~minimal_ep.config.ModelConfig`'s rule for ``key``."""
    try:
        return config.check_value("model", key, _as_setting(value))
    except config.ConfigError:
        raise ValueError(f"{key} must be {config.SCHEMA['model'][key][2]}, got {value!r}") from None


def _positive_ints(name, value, minimum=1):
    value = _as_setting(value)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool)
                                              and v >= minimum for v in value):
        raise ValueError(f"{name} must be a sequence of integers >= {minimum}, got {value!r}")
    return tuple(value)


def build_network(input_shape=(1, 28, 28), conv_channels=tuple(_D.conv_channels), kernel_size=_D.kernel_size,
                  padding=_D.padding, pool=_D.pool, hidden=tuple(_D.hidden), n_classes=10,
                  spiking=_D.spiking, loss=_D.loss, dtype=_D.dtype, seed=0, eps=_D.eps,
                  pool_size=_D.pool_size, alpha=None, init_scale=_D.init_scale, settle_tol=None,
                  lam=_D.lam, v_th=_D.v_th, surrogate_width=_D.surrogate_width):
    """Build a convolutional convergent RNN, continuous (``spiking=False``) or spiking.

    The defaults are the quickstart's (``configs/quickstart.toml``, :class:`minimal_ep.config.ModelConfig`):
    a spiking conv 16-32 -> dense 128 -> 10 network with average pooling and eps = lam = 0.3.

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
        Scale of average unpooling (Eq. 16); None (or 0) is F*F, the exact adjoint.
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
    model = {key: _model_setting(key, value) for key, value in dict(
        conv_channels=conv_channels, kernel_size=kernel_size, padding=padding, pool=pool, hidden=hidden,
        spiking=spiking, loss=loss, dtype=dtype, eps=eps, pool_size=pool_size, init_scale=init_scale,
        alpha=0.0 if alpha is None else alpha, lam=lam, v_th=v_th, surrogate_width=surrogate_width).items()}
    input_shape = _positive_ints("input_shape", input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {input_shape!r}")
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
    if settle_tol is not None and not (isinstance(settle_tol, numbers.Real) and math.isfinite(settle_tol)
                                       and settle_tol > 0):
        raise ValueError(f"settle_tol must be a finite number > 0 or None, got {settle_tol!r}")
    args = dict(input_shape=input_shape, conv_channels=tuple(model["conv_channels"]),
                kernel_size=model["kernel_size"], padding=model["padding"], pool=model["pool"],
                pool_size=model["pool_size"], alpha=model["alpha"] or None, hidden=tuple(model["hidden"]),
                n_classes=int(n_classes), loss=model["loss"], dtype=model["dtype"], seed=seed,
                eps=model["eps"], init_scale=model["init_scale"], settle_tol=settle_tol)
    if not model["spiking"]:
        return ConvergentRNN(**args)
    from .spiking import SpikingConvergentRNN      # spiking.py builds on network.py
    return SpikingConvergentRNN(lam=model["lam"], v_th=model["v_th"],
                                surrogate_width=model["surrogate_width"], **args)
