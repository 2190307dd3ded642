"""The update rule shared by every network, its derivative, the state of a phase, and the nudge.

Each layer's state moves a step eps towards its *drive* (paper Eq. 3; Eq. 10 for spiking networks):

    xi^t = rho((1 - eps) xi^{t-1} + eps * drive),      rho(u) = clip(u, 0, 1)

The drive is the layer's total input plus its bias in a CRNN (:mod:`minimal_ep.network`), the decoded
input plus the bias in a spiking network (:mod:`minimal_ep.spiking`), plus -beta dL/ds_L on the top
layer during a nudged phase (:class:`Nudge`). rho' = 1 on [0, 1], where xi lives, so the factor
rho'(xi) of Eq. 3 drops out (docs/equations.md §2).
"""
import math
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


def update_vjp(xi_new, g):
    """dL/du for the pre-clip value u of :func:`update`, given g = dL/dxi_new.

    The clip passes the gradient where u was strictly inside (0, 1), which is exactly where the
    new state is: ``0 < xi_new < 1``. From u = (1-eps) xi + eps drive the caller then takes
    dL/dxi = (1-eps) dL/du and dL/ddrive = eps dL/du.
    """
    return g * ((xi_new > 0) & (xi_new < 1))


@dataclass
class State:
    """The state of a CRNN after some steps of a phase.

    Attributes
    ----------
    xi : list of ndarray
        ``xi[0]`` is the input x (N, C, H, W); ``xi[n]`` is layer n, (N, C_n, H_n, W_n) or (N, D_n).
    idx : list
        The max-pooling indices of the step that produced this state, per layer (None for average
        pooling, dense layers and the state at rest).
    residual : float
        Per-sample L2 norm of the last step's change, ``||xi^t - xi^{t-1}|| / sqrt(N)``.
    steps : int
        Steps run in the phase that produced this state.
    history : list of float
        Per-step residuals, when the phase was asked to record them.
    tally : object
        Per-phase statistics (spiking networks: spike counts, see :meth:`spike_stats`).
    """
    xi: list
    idx: list = None
    residual: float = float("nan")
    steps: int = 0
    history: list = field(default_factory=list)
    tally: object = None

    def copy(self):
        return State([a.copy() for a in self.xi], self.idx, self.residual, self.steps, [])


@dataclass(frozen=True)
class Nudge:
    """What a nudged phase adds to the top layer's drive: -beta dL/ds_L towards the one-hot ``target``.

    The target and beta travel together; beta is checked here, once. Build one with
    :meth:`ConvergentRNN.nudge_towards`.
    """
    target: object
    beta: float

    def __post_init__(self):
        beta = float(self.beta)
        if beta == 0.0 or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite non-zero number, got {self.beta!r}")
        object.__setattr__(self, "beta", beta)

    def flipped(self):
        """The same target with -beta (the second nudged phase of the symmetric estimator)."""
        return Nudge(self.target, -self.beta)
