"""The convergent RNN: layers, total inputs, the update rule, phases, and the loss.

Layers (paper Sec. II-D, docs/equations.md §1-2). Layer 0 is the static input x, layers 1..N_c are
convolutional (conv -> pool, :class:`~minimal_ep.layers.ConvPool`), layers N_c+1..L are dense
(:class:`~minimal_ep.layers.Dense`); L is the top recurrent layer. With the MSE loss the top layer is
the n_classes output; with cross-entropy a softmax readout sits outside the recurrent system
(Laborieux et al. 2021). Parameters are ``w1, b1, ..., wK, bK``; ``w_n`` connects layer n-1 to n.

One step of the dynamics, for every layer at once, from the states of step t-1 (Eq. 3 with Eq. 9):

    messages  ->  total inputs phi_n = forward route + backward route   (Eq. 9, :meth:`total_inputs`)
              ->  drive_n = phi_n + b_n  (+ the nudge on the top layer)
              ->  xi_n^t = update(xi_n^{t-1}, drive_n, eps)             (Eq. 3, :func:`update`)

    update(xi, drive, eps) = clip((1 - eps) xi + eps drive, 0, 1),       s_n = rho(xi_n) = xi_n

(rho' = 1 on [0, 1], where xi lives, so the factor rho'(xi) of Eq. 3 drops out; docs/equations.md §2.)
In a CRNN the messages are the states themselves; a spiking network (:mod:`minimal_ep.spiking`)
sends spikes instead and wraps the same update in an encoder and a decoder.

``step`` is a pure function of the state: it returns a new :class:`State` and never changes the one
it was given, so a phase is ``for t in range(T): state = net.step(state)`` and the free state can
start as many nudged phases as needed. A phase (:meth:`relax`) returns its last state and, beside it,
a :class:`PhaseReport` (how far it settled). Arguments from outside are checked once, where they
enter (:func:`check_input`, :func:`check_labels`, :func:`check_steps`); the step itself checks nothing.
"""
import numbers
import warnings

from .backend import default_rng, get_xp, resolve_dtype, to_device
from .dynamics import Nudge, PhaseReport, State, update
from .layers import ConvPool, Dense, MSEOutput, SoftmaxReadout
from .pooling import POOLS


class NotSettledWarning(UserWarning):
    """A phase ended with a state residual above the network's ``settle_tol``."""


# ----------------------------------------------------------------------------- the network
class ConvergentRNN:
    """A convolutional convergent RNN (the paper's "CRNN"). Build it with ``minimal_ep.build_network``.

    Parameters
    ----------
    input_shape : (C, H, W)
    conv_channels : tuple of int
    kernel_size, padding : int
    pool : {"avg", "max"}
    pool_size : int
        F, the pooling window and stride.
    alpha : float or None
        Scale of average unpooling (Eq. 16); None is F*F, the exact adjoint.
    hidden : tuple of int
    n_classes : int
    loss : {"mse", "ce"}
    dtype : {"float32", "float64"}
    seed : int or None
        Seed of the host RNG that draws the initial weights.
    eps : float
        Step size of the dynamics (Eq. 3).
    init_scale : float or sequence of float
        Multiplies the Kaiming-uniform bound 1 / sqrt(fan_in), per weight when a sequence.
    settle_tol : float or None
        Warn (:class:`NotSettledWarning`) when a phase ends with a larger residual.

    Attributes
    ----------
    layers : list
        ``layers[n]`` is layer n (ConvPool or Dense) for n = 1..L; ``layers[0]`` is None (the input).
    output : MSEOutput or SoftmaxReadout
        The loss, its gradient and the nudge.
    params : dict
        ``w1, b1, ...``: the arrays, updated in place by the optimiser.
    shapes : list of tuple
        Batch-less shape of every layer, ``shapes[0]`` the input's (the readout's last, with CE).
    """

    spiking = False

    def __init__(self, input_shape, conv_channels, kernel_size, padding, pool, pool_size, alpha,
                 hidden, n_classes, loss, dtype, seed, eps, init_scale, settle_tol):
        self.xp = get_xp()
        self.dtype = resolve_dtype(dtype)
        self.input_shape, self.n_classes = tuple(input_shape), n_classes
        self.kernel_size, self.padding, self.pool, self.F = kernel_size, padding, pool, pool_size
        self.eps, self.settle_tol, self.loss_name = eps, settle_tol, loss
        pooling = POOLS[pool](pool_size, alpha)                            # MaxPool or AvgPool
        self.alpha = getattr(pooling, "alpha", None)                       # None for max pooling
        self.n_conv = len(conv_channels)
        self.layers, shape = [None], self.input_shape
        for n, c in enumerate(conv_channels, start=1):
            _check_fits(n, shape, kernel_size, padding, pool_size)
            self.layers.append(ConvPool(shape, c, kernel_size, padding, pooling))
            shape = self.layers[-1].shape
        widths = list(hidden) + ([n_classes] if loss == "mse" else [])
        for d in widths:
            self.layers.append(Dense(shape, d))
            shape = self.layers[-1].shape
        self.n_layers = len(self.layers) - 1                                # L
        self.readout = loss == "ce"                                          # not a recurrent layer
        self.output = SoftmaxReadout(self.n_layers + 1, shape, n_classes) if self.readout else MSEOutput()
        self.shapes = [self.input_shape] + [layer.shape for layer in self.layers[1:]]
        if self.readout:
            self.shapes.append(self.output.shape)
        self.params = self._init_params(seed, init_scale)

    def _init_params(self, seed, init_scale):
        """Kaiming-uniform initialisation as in PyTorch's conv and linear layers (a = sqrt(5)).

        Weights and biases ~ U(-b, b) with ``b = init_scale / sqrt(fan_in)``, the default init of
        the PyTorch layers the paper's code was built from (a larger gain, the ReLU one, saturates
        the hard sigmoid and the dynamics no longer settle). The draws happen on the host so CPU
        and GPU runs of one seed start from identical weights.
        """
        rng = default_rng(seed)
        shapes = [layer.weight_shape for layer in self.layers[1:]]
        if self.readout:
            shapes.append(self.output.weight_shape)
        scales = [init_scale] * len(shapes) if isinstance(init_scale, numbers.Real) else list(init_scale)
        if len(scales) != len(shapes):
            raise ValueError(f"init_scale needs one value per weight ({len(shapes)}), got {init_scale!r}")
        params = {}
        for n, (shape, scale) in enumerate(zip(shapes, scales), start=1):
            bound = float(scale) / _size(shape[1:]) ** 0.5
            params[f"w{n}"] = to_device(rng.uniform(-bound, bound, shape), self.dtype)
            params[f"b{n}"] = to_device(rng.uniform(-bound, bound, shape[0]), self.dtype)
        return params

    def w(self, n):
        return self.params[f"w{n}"]

    def bias(self, n):
        """b_n shaped to broadcast against layer n."""
        return self.layers[n].bias(self.params[f"b{n}"])

    # ---------------------------------------------------------------- routes and total inputs (Eq. 9)
    def forward_route(self, n, s_prev):
        """``P(w_n * s_{n-1})`` (conv) or ``w_n s_{n-1}`` (dense), no bias; and the pooling indices."""
        return self.layers[n].forward(self.w(n), s_prev)

    def backward_route(self, n, s_next, idx_next):
        """``w_{n+1} ~* P^-1(s_{n+1})`` (conv) or ``w_{n+1}^T s_{n+1}`` (dense): layer n's input from above."""
        return self.layers[n + 1].backward(self.w(n + 1), s_next, idx_next)

    def messages(self, state):
        """What the layers send each other, ``[x, s_1, ..., s_L]``: the states themselves in a CRNN."""
        return state.xi

    def total_inputs(self, s, input_route=None):
        """phi_n = dPhi/ds_n without the bias, n = 1..L, from the messages ``s = [x, s_1, ..., s_L]``.

        ``input_route``, if given, is layer 1's forward route computed once for a static input
        (:meth:`input_route`). Returns the list ``phi`` (phi[0] is None) and the pooling indices.
        """
        L = self.n_layers
        fwd = [None] * (L + 1)
        idx = [None] * (L + 1)
        for n in range(1, L + 1):
            if n == 1 and input_route is not None:
                fwd[1], idx[1] = input_route
            else:
                fwd[n], idx[n] = self.forward_route(n, s[n - 1])
        phi = [None] + [fwd[n] + self.backward_route(n, s[n + 1], idx[n + 1]) for n in range(1, L)]
        return phi + [fwd[L]], idx                                     # the top layer: no backward route

    # ---------------------------------------------------------------- loss and nudge
    def one_hot(self, y):
        return self.xp.eye(self.n_classes, dtype=self.dtype)[y]

    def nudge_towards(self, y, beta):
        """The :class:`Nudge` of a nudged phase towards labels y with strength beta."""
        return Nudge(self.one_hot(check_labels(self, y, len(y))), beta)

    def loss_gradient(self, s_top, y):
        """(batch-mean loss, dL/ds_L, readout gradients dict) at the top state s_L."""
        return self.output.loss_gradient(self.params, s_top, y, self.one_hot(y))

    def loss(self, state, y):
        """Mean over the batch of 1/2 ||s_L - onehot(y)||^2 (MSE) or -log softmax(readout)_y (CE)."""
        y = check_labels(self, y, len(check_state(self, state, "loss").xi[0]))
        return self.loss_gradient(state.xi[self.n_layers], y)[0]

    def predict(self, state):
        """Predicted class per sample, (N,) int array: argmax of the top layer (MSE) or readout (CE)."""
        state = check_state(self, state, "predict")
        return self.output.logits(self.params, state.xi[self.n_layers]).argmax(axis=1)

    # ---------------------------------------------------------------- dPhi/dtheta (Eq. 11)
    def dphi_dtheta(self, state):
        """dPhi/dtheta at the continuous states ``state.xi``, averaged over the batch (paper Eq. 11).

        conv: correlation of s_{n-1} with P^-1(s_n); dense: s_n^T s_{n-1}; bias: the sum of s_n.
        The readout of the CE loss is not part of Phi and is absent here.
        """
        s, N = state.xi, len(state.xi[0])
        out = {}
        for n in range(1, self.n_layers + 1):
            layer = self.layers[n]
            out[f"w{n}"] = layer.dphi_dw(self.w(n), s[n - 1], s[n]) / N
            out[f"b{n}"] = layer.sum_to_bias(s[n]) / N
        return out

    # ---------------------------------------------------------------- the dynamics
    def drive(self, inputs, s_top, nudge=None):
        """``inputs[n] + b_n`` for every layer, plus -beta dL/ds_L on the top layer in a nudged phase."""
        L = self.n_layers
        drive = [None] + [inputs[n] + self.bias(n) for n in range(1, L + 1)]
        if nudge is not None:
            drive[L] = drive[L] + self.output.nudge(self.params, s_top, nudge.target, nudge.beta)
        return drive

    def step(self, state, nudge=None, input_route=None):
        """One synchronous update of every layer (Eq. 3 with Eq. 9); returns a new :class:`State`.

        ``state`` is not changed. ``nudge`` is a :class:`Nudge` in a nudged phase, None in a free
        one; ``input_route`` is :meth:`input_route`, passed by a phase that computed it once. The
        new state's ``idx`` holds the pooling indices this step used.
        """
        s = state.xi
        phi, idx = self.total_inputs(s, input_route)                        # Eq. 9
        drive = self.drive(phi, s[self.n_layers], nudge)
        xi = [s[0]] + [update(s[n], drive[n], self.eps) for n in range(1, self.n_layers + 1)]   # Eq. 3
        return State(xi, idx)

    def init_state(self, x):
        """The state at rest: every layer at zero (x must be checked already, :func:`check_input`)."""
        zeros = [self.xp.zeros((len(x),) + sh, dtype=self.dtype) for sh in self.shapes[1:self.n_layers + 1]]
        return State([x] + zeros, [None] * (self.n_layers + 1))

    def input_route(self, state):
        """Layer 1's forward route from the static image, ``P(w_1 * x)``: the same at every step of a
        phase, so a phase computes it once (a spiking network's input spikes change: it returns None)."""
        return self.forward_route(1, state.xi[0])

    def relax(self, state, T, nudge=None, record=False, on_step=None):
        """Run T steps from ``state`` (which is not changed): returns (last state, :class:`PhaseReport`).

        Parameters
        ----------
        state : State
        T : int
        nudge : Nudge, optional
            None for a free phase (or its continuation).
        record : bool
            Keep every step's residual in the report's ``history``.
        on_step : callable, optional
            ``on_step(new_state)`` after every step (BPTT keeps its tape this way).
        """
        T = check_steps(T)
        route, history = self.input_route(state), []
        for t in range(T):
            new = self.step(state, nudge, input_route=route)
            if record or t == T - 1:                   # a host sync: once per phase unless recording
                history.append(self.residual(state.xi, new.xi))
            if on_step is not None:
                on_step(new)
            state = new
        report = PhaseReport(steps=T, residual=history[-1], history=history if record else [])
        if self.settle_tol is not None and report.residual > self.settle_tol:
            warnings.warn(f"phase not settled after {T} steps: residual {report.residual:.2e} > "
                          f"settle_tol {self.settle_tol:g} (more steps, or a smaller eps)",
                          NotSettledWarning, stacklevel=3)
        return state, report

    def residual(self, old, new):
        """``||xi^t - xi^{t-1}|| / sqrt(N)`` over every recurrent layer."""
        sq = sum(float(self.xp.sum((a - b) ** 2)) for a, b in zip(old[1:], new[1:]))
        return (sq / len(old[0])) ** 0.5

    def free_phase(self, x, T, record=False):
        """Run T steps from rest without a nudge; x : (N, C, H, W) in [0, 1].

        Returns the free :class:`State` and the phase's :class:`PhaseReport`.
        """
        return self.relax(self.init_state(check_input(self, x)), T, record=record)

    def nudged_phase(self, state, y, beta, T, record=False):
        """Run T steps from ``state`` (not changed) with the top layer nudged towards y by beta.

        Returns the nudged :class:`State` and the phase's :class:`PhaseReport`.
        """
        return self.relax(state, T, self.nudge_towards(y, beta), record=record)


# ----------------------------------------------------------------------------- checks at the boundary
def check_input(net, x):
    """x as a backend array of ``net``'s dtype; TypeError if it is not numbers, ValueError for a wrong
    shape or values outside [0, 1]. Array-likes (lists, NumPy arrays on a CuPy net) are converted."""
    xp = net.xp
    try:
        x = xp.asarray(x)
    except (TypeError, ValueError) as err:
        raise TypeError(f"x must be an array of numbers, (N,) + input_shape; got {type(x).__name__} "
                        f"({err})") from None
    if x.dtype.kind not in "biuf":
        raise TypeError(f"x must be an array of numbers, got dtype {x.dtype} ({type(x).__name__})")
    if x.ndim != 4 or tuple(x.shape[1:]) != net.input_shape or len(x) == 0:
        raise ValueError(f"x has shape {tuple(x.shape)}, expected (N,) + input_shape = "
                         f"(N, {', '.join(map(str, net.input_shape))})")
    x = x.astype(net.dtype, copy=False)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"x must lie in [0, 1] (the states are clipped there), got values in "
                         f"[{lo:g}, {hi:g}]; scale the inputs first, e.g. pixels / 255")
    return x


def check_labels(net, y, N):
    """y as a backend int array of N labels in [0, n_classes); TypeError if it is not numbers."""
    try:
        y = net.xp.asarray(y)
    except (TypeError, ValueError) as err:
        raise TypeError(f"y must be an array of integer labels, got {type(y).__name__} ({err})") from None
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y must be an array of integer labels, got dtype {y.dtype} ({type(y).__name__})")
    if y.shape != (N,) or y.dtype.kind not in "iu":
        raise ValueError(f"y must be ({N},) integer labels, got shape {y.shape} dtype {y.dtype}")
    if N and (int(y.min()) < 0 or int(y.max()) >= net.n_classes):
        raise ValueError(f"labels must be in [0, {net.n_classes}), got range "
                         f"[{int(y.min())}, {int(y.max())}]")
    return y.astype(net.xp.int64)


def check_state(net, state, what):
    """``state`` if it is a State of ``net``'s layers; TypeError naming ``what`` otherwise."""
    if not isinstance(state, State) or len(state.xi) != net.n_layers + 1:
        got = type(state).__name__ if not isinstance(state, State) else f"a State of {len(state.xi) - 1} layers"
        raise TypeError(f"{what} takes a State of this network's {net.n_layers} layers (the first value "
                        f"net.free_phase(x, T) returns), got {got}")
    return state


def check_steps(T, name="T"):
    """T as an int >= 1; ValueError naming ``name`` otherwise."""
    if isinstance(T, bool) or not isinstance(T, numbers.Real) or int(T) != T or T < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {T!r}")
    return int(T)


def _size(shape):
    out = 1
    for v in shape:
        out *= int(v)
    return out


def _check_fits(n, shape, kernel_size, padding, F):
    """ValueError when conv layer n's kernel or pooling window does not fit its input."""
    C, H, W = shape
    if kernel_size > min(H, W) + 2 * padding:
        raise ValueError(f"conv layer {n}: kernel {kernel_size} does not fit its {H}x{W} input "
                         f"(padding {padding})")
    OH, OW = H + 2 * padding - kernel_size + 1, W + 2 * padding - kernel_size + 1
    if OH < F or OW < F:
        raise ValueError(f"conv layer {n}: its {OH}x{OW} map is smaller than the pooling window {F}; "
                         "use fewer conv layers or more padding")
