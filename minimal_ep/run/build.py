"""``build_network``: a convergent RNN, continuous or spiking, from a :class:`~.config.ModelConfig`.

The defaults and the allowed values of the model's settings live in one place,
:class:`minimal_ep.run.config.ModelConfig` (whose defaults are ``configs/quickstart.toml``). A wrong
argument is a ValueError that names it and says what is allowed, before anything is built:
``conv_channels="16"`` is not read as the channels 1 and 6, ``(2.7,)`` is not rounded to 2, an
infinite ``init_scale`` or a NaN ``v_th`` never reaches the weights or the threshold.

This is also the one seam of the fast path: ``fast=True`` (the default) hands the readable network to
:func:`minimal_ep.fast.accelerate`, which swaps its conv layers for the fused ones.
"""
import dataclasses
import math
import numbers

from .. import fast as fast_path
from ..network import ConvergentRNN
from ..spiking import SpikingConvergentRNN
from . import config

MODEL_KEYS = tuple(f.name for f in dataclasses.fields(config.ModelConfig))


def _as_setting(value):
    """A Python argument in the form the config checks read: sequences as lists, numbers as int/float."""
    if isinstance(value, (tuple, list)):
        return [_as_setting(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)                       # numpy floats too
    return value


def model_config(model=None, **settings):
    """A checked :class:`ModelConfig`: ``model`` (default: the quickstart's) with ``settings`` changed.

    ValueError naming the setting, for an unknown name or a value outside its range.
    """
    unknown = sorted(set(settings) - set(MODEL_KEYS))
    if unknown:
        raise TypeError(f"build_network() got unexpected keyword argument(s) {', '.join(unknown)}; "
                        f"the model settings are {', '.join(MODEL_KEYS)}")
    values = dataclasses.asdict(model if model is not None else config.ModelConfig())
    for key, value in settings.items():
        try:
            values[key] = config.check_value("model", key, _as_setting(value))
        except config.ConfigError:
            raise ValueError(f"{key} must be {config.SCHEMA['model'][key][2]}, got {value!r}") from None
    return config.ModelConfig(**values)


def build_network(model=None, *, input_shape=(1, 28, 28), n_classes=10, seed=0, settle_tol=None,
                  fast=True, **settings):
    """Build a convolutional convergent RNN, continuous (``spiking=False``) or spiking.

    The defaults are the quickstart's (``configs/quickstart.toml``, :class:`~.config.ModelConfig`):
    a spiking conv 16-32 -> dense 128 -> 10 network with average pooling and eps = lam = 0.3.

    Parameters
    ----------
    model : ModelConfig, optional
        The network's settings (a run's ``cfg.model``); default the quickstart's.
    input_shape : (C, H, W)
    n_classes : int
    seed : int or None
        Seed of the host RNG that draws the initial weights.
    settle_tol : float, optional
        Warn (NotSettledWarning) when a phase ends with a larger residual; None never warns.
    fast : bool
        Compute with the fast path (:mod:`minimal_ep.fast`); False keeps the readable layers.
    **settings
        Any :class:`~.config.ModelConfig` field, overriding ``model``'s (below).

    Other Parameters
    ----------------
    conv_channels : tuple of int
        Channels of the conv layers, each conv (stride 1) -> pool (F x F, stride F). Default (16, 32).
    kernel_size : int
        KH = KW of every conv layer. Default 3.
    padding : int
        Zero padding of every conv layer. Default 0.
    pool : {"avg", "max"}
        The pooling kind (Eq. 12-16). Default "avg".
    pool_size : int
        F, the pooling window and stride. Default 2.
    alpha : float or None
        Scale of average unpooling (Eq. 16); None is F*F, the exact adjoint. Default None.
    hidden : tuple of int
        Widths of the dense hidden layers. Default (128,).
    spiking : bool
        A spiking network (Sigma-Delta modulation and predictive coding, Eq. 6-10). Default True.
    loss : {"mse", "ce"}
        MSE on the top layer, or cross-entropy of a softmax readout outside Phi. Default "mse".
    dtype : {"float32", "float64"}
        Default "float32".
    eps : float
        Step size of the dynamics (Eq. 3), in (0, 1]. Default 0.3.
    init_scale : float or tuple of float
        Multiplies the Kaiming-uniform bound 1 / sqrt(fan_in), per weight when a tuple. Default 1.
    lam : float
        Spiking only: the prediction factor lambda of encoder and decoder (Eq. 7-8). Default 0.3.
    v_th : float
        Spiking only: the Sigma-Delta threshold V_th (Eq. 6). Default 0.5.
    surrogate_width : float
        Spiking only: half-width of the triangular surrogate derivative of spiking BPTT. Default 1.

    Raises
    ------
    ValueError
        Naming the argument, for any value outside its range.
    """
    m = model_config(model, **settings)
    input_shape = _as_setting(input_shape)
    if not (isinstance(input_shape, list) and len(input_shape) == 3
            and all(isinstance(v, int) and v >= 1 for v in input_shape)):
        raise ValueError(f"input_shape must be (C, H, W), three integers >= 1, got {input_shape!r}")
    if not isinstance(n_classes, numbers.Integral) or isinstance(n_classes, bool) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if seed is not None and (not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0):
        raise ValueError(f"seed must be an integer >= 0 or None, got {seed!r}")
    if settle_tol is not None and not (isinstance(settle_tol, numbers.Real) and math.isfinite(settle_tol)
                                       and settle_tol > 0):
        raise ValueError(f"settle_tol must be a finite number > 0 or None, got {settle_tol!r}")
    if not isinstance(fast, bool):
        raise ValueError(f"fast must be True or False, got {fast!r}")
    args = dict(input_shape=tuple(input_shape), conv_channels=tuple(m.conv_channels),
                kernel_size=m.kernel_size, padding=m.padding, pool=m.pool, pool_size=m.pool_size,
                alpha=m.alpha, hidden=tuple(m.hidden), n_classes=int(n_classes), loss=m.loss,
                dtype=m.dtype, seed=seed, eps=m.eps, init_scale=m.init_scale, settle_tol=settle_tol)
    if m.spiking:
        net = SpikingConvergentRNN(lam=m.lam, v_th=m.v_th, surrogate_width=m.surrogate_width, **args)
    else:
        net = ConvergentRNN(**args)
    net.model = m
    return fast_path.accelerate(net) if fast else net
