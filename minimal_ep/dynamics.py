"""The update rule shared by every network, its derivative, the state of a phase, and the nudge.

Each layer's state moves a step eps towards its *drive* (paper Eq. 3; Eq. 10 for spiking networks):

    xi^t = rho((1 - eps) xi^{t-1} + eps * drive),      rho(u) = clip(u, 0, 1)

The drive is the layer's total input plus its bias in a CRNN (:mod:`minimal_ep.network`), the decoded
input plus the bias in a spiking network (:mod:`minimal_ep.spiking`), plus -beta dL/ds_L on the top
layer during a nudged phase (:class:`Nudge`). rho' = 1 on [0, 1], where xi lives, so the factor
rho'(xi) of Eq. 3 drops out (docs/equations.md §2).
"""
import math
import numbers
from dataclasses import dataclass, field

from .backend import get_array_module


# ----------------------------------------------------------------------------- the update rule
def update(xi, drive, eps):
    """One step of a layer's state towards its drive (paper Eq. 3): ``clip((1-eps) xi + eps drive, 0, 1)``.

    Parameters
    ----------
    xi : ndarray
        The layer's state at step t-1, in [0, 1].
    drive : ndarray
        What pulls it: total input + bias (+ nudge); the decoded input in a spiking network (Eq. 10).
    eps : float
        Step size in (0, 1]; eps = 1 jumps to rho(drive), the fixed-point iteration.

    Returns
    -------
    ndarray
        A new array, the state at step t.
    """
    xp = get_array_module(xi, drive)
    u = (1.0 - eps) * xi
    u += eps * drive
    return xp.clip(u, 0.0, 1.0, out=u)                                # Eq. 3, rho = hard sigmoid


def update_vjp(xi_new, g, eps):
    """Back through :func:`update`: the cotangents (of xi, of drive), given g = dL/dxi_new.

    With u = (1 - eps) xi + eps drive the pre-clip value, the clip passes the gradient where u was
    strictly inside (0, 1), which is exactly where the new state is, ``0 < xi_new < 1``:

        dL/du = g * 1[0 < xi_new < 1],    dL/dxi = (1 - eps) dL/du,    dL/ddrive = eps dL/du
    """
    du = g * ((xi_new > 0) & (xi_new < 1))
    return (1.0 - eps) * du, eps * du


@dataclass
class State:
    """What the dynamics of a CRNN carry from one step to the next.

    Attributes
    ----------
    xi : list of ndarray
        ``xi[0]`` is the input x (N, C, H, W); ``xi[n]`` is layer n, (N, C_n, H_n, W_n) or (N, D_n).
    idx : list
        The max-pooling indices of the step that produced this state, per layer (None for average
        pooling, dense layers and the state at rest). BPTT needs them to go back through that step.
    """
    xi: list
    idx: list


@dataclass
class PhaseReport:
    """What a phase reports beside its last state: how far it settled, and what it sent.

    Attributes
    ----------
    steps : int
        Steps run.
    residual : float
        Per-sample L2 norm of the last step's change, ``||xi^t - xi^{t-1}|| / sqrt(N)``.
    history : list of float
        Per-step residuals, when the phase was asked to record them (else empty).
    spikes : SpikeTally or None
        Spiking networks: the spikes and states summed over the phase (:meth:`spike_stats`).
    """
    steps: int
    residual: float
    history: list = field(default_factory=list)
    spikes: object = None

    def spike_stats(self):
        """Per layer, the firing rate and mean ``|spike rate - rho(xi)|`` over the phase.

        Returns
        -------
        list of dict
            ``{"layer": n, "rate": mean spikes per neuron per step, "rate_error": mean over
            neurons of |spike_count / T - mean_t xi|}`` for n = 1..L. Predictive coding makes the
            spike count telescope, ``count - sum_t xi = (1 - lam)/lam (xi^T - xi^0) - (V^T - V^0)``,
            so the error is O(1/T).
        """
        if self.spikes is None:
            raise ValueError("spike_stats: this phase sent no spikes (a CRNN's phase)")
        return self.spikes.stats(max(self.steps, 1))


@dataclass(frozen=True)
class Nudge:
    """What a nudged phase adds to the top layer's drive: -beta dL/ds_L towards the one-hot ``target``.

    The target and beta travel together; beta is checked here, once. Build one with
    :meth:`ConvergentRNN.nudge_towards`.
    """
    target: object
    beta: float

    def __post_init__(self):
        if isinstance(self.beta, bool) or not isinstance(self.beta, numbers.Real):
            raise TypeError(f"beta must be a real number, got {type(self.beta).__name__} {self.beta!r}")
        beta, dtype = float(self.beta), getattr(self.target, "dtype", None)
        floating = dtype is not None and dtype.kind == "f"
        largest = float(get_array_module(self.target).finfo(dtype).max) if floating else math.inf
        if beta == 0.0 or not (math.isfinite(beta) and abs(beta) <= largest):
            raise ValueError("beta must be a finite non-zero number" + (f" with |beta| <= {largest:.3g} "
                             f"(the largest {dtype})" if floating else "") + f", got {self.beta!r}")
        object.__setattr__(self, "beta", beta)

    def flipped(self):
        """The same target with -beta (the second nudged phase of the symmetric estimator)."""
        return Nudge(self.target, -self.beta)
