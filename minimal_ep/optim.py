"""Stochastic gradient descent with layer-wise learning rates (paper Table I), momentum optional.

The paper trains with plain SGD without momentum and one learning rate per layer, larger for lower
layers: ``lr = [0.25, 0.15, 0.1, 0.08]`` for the weights w1..w4 of 2C2FC. A layer's bias uses its
weight's rate. Gradients are those of the loss (EP's and BPTT's alike), so the update descends them:

    v <- momentum * v + g,      theta <- theta - lr_n * v
"""
import math

from .backend import get_array_module


class SGD:
    """SGD over ``net.params`` with one learning rate per layer.

    Parameters
    ----------
    params : dict
        Name -> array, updated in place (``w1, b1, w2, ...``).
    lrs : float or sequence of float
        One rate for all layers, or one per layer (w1's first).
    momentum : float
        0 (the paper's setting) disables the velocity buffers.
    """

    def __init__(self, params, lrs, momentum=0.0):
        self.params = params
        layers = sorted({int(name[1:]) for name in params})
        lrs = [float(lrs)] * len(layers) if isinstance(lrs, (int, float)) else [float(v) for v in lrs]
        if len(lrs) != len(layers):
            raise ValueError(f"lr needs one value per layer ({len(layers)}: "
                             f"{', '.join('w%d' % n for n in layers)}), got {len(lrs)}")
        if not all(math.isfinite(v) and v >= 0 for v in lrs):
            raise ValueError(f"learning rates must be finite and >= 0, got {lrs}")
        if not 0.0 <= momentum < 1.0:           # also False for NaN
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.base_lrs = dict(zip(layers, lrs))
        self.scale = 1.0                     # a schedule multiplies every rate by this
        self.momentum = float(momentum)
        self.velocity = {k: v * 0 for k, v in params.items()} if momentum else {}

    def lr(self, name):
        return self.base_lrs[int(name[1:])] * self.scale

    def step(self, grads):
        """Descend ``grads`` (a dict with keys of ``params``), in place.

        Every gradient is checked first, so a bad one changes no parameter: ValueError for another
        key, a shape that is not its parameter's (no broadcasting), or NaN or infinite values.
        """
        unknown = sorted(set(grads) - set(self.params))
        if unknown:
            raise ValueError(f"gradients for unknown parameters {', '.join(unknown)}; the parameters "
                             f"are {', '.join(self.params)}")
        for name, g in grads.items():
            shape = tuple(getattr(g, "shape", ()))
            if shape != tuple(self.params[name].shape):
                raise ValueError(f"the gradient of {name} has shape {shape}, the parameter "
                                 f"{tuple(self.params[name].shape)}")
            if not bool(get_array_module(g).isfinite(g).all()):
                raise ValueError(f"the gradient of {name} has NaN or infinite values; nothing was updated")
        for name, g in grads.items():
            if self.momentum:
                v = self.velocity[name]
                v *= self.momentum
                v += g
                g = v
            self.params[name] -= self.lr(name) * g

    def state_dict(self):
        """What a checkpoint needs to resume: the velocity buffers and the schedule's scale."""
        return {"scale": self.scale, **{f"velocity.{k}": v for k, v in self.velocity.items()}}

    def load_state_dict(self, state):
        self.scale = float(state["scale"])
        for k in self.velocity:
            self.velocity[k][...] = state[f"velocity.{k}"]
