"""The convergent RNN: layers, the primitive function Phi, its total inputs, and the CRNN dynamics.

Layers (paper Sec. II-D, docs/equations.md §1-2). Layer 0 is the static input x, layers 1..N_c are
convolutional (conv -> pool), layers N_c+1..L are dense; L is the top *recurrent* layer. With the
MSE loss the top layer is the n_classes output. With the cross-entropy loss the output is a
softmax readout ``o = softmax(w_{L+1} s_L + b_{L+1})`` outside the recurrent system (Laborieux et
al. 2021). Parameters are ``w1, b1, ..., wK, bK``; ``w_n`` connects layer n-1 to layer n.

Primitive function, for states s_n in [0, 1]:

    Phi(x, s) = sum_{n<=N_c} < s_n, P(w_n * s_{n-1}) + b_n >  +  sum_{n>N_c} < s_n, w_n s_{n-1} + b_n >

Each layer's total input is dPhi/ds_n, the sum of two *routes* (paper Eq. 9):

    forward route   P(w_n * s_{n-1})          (conv)    w_n s_{n-1}        (dense)
    backward route  w_{n+1} ~* P^-1(s_{n+1})  (conv)    w_{n+1}^T s_{n+1}  (dense)

P^-1 is max-unpooling with the indices of the forward pooling of the *same* step, or
nearest-neighbour upsampling divided by alpha (Eq. 16; alpha = F*F is the exact adjoint of P).

CRNN dynamics (Eq. 3 with Eq. 9), all layers updated synchronously from the states of step t-1:

    xi_n^t = clip((1 - eps) xi_n^{t-1} + eps * phi_n(t-1), 0, 1),     s_n = rho(xi_n) = xi_n

(rho' = 1 on [0, 1], where xi lives, so the factor rho'(xi) of Eq. 3 drops out; docs/equations.md §2.)
"""
import warnings
from dataclasses import dataclass, field

from .backend import get_xp, default_rng, resolve_dtype, to_device
from .conv import conv2d, conv2d_weight, conv_output_size, conv_transpose2d
from .pooling import avg_pool2d, avg_unpool2d, max_pool2d, max_unpool2d

POOLS = ("max", "avg")
LOSSES = ("mse", "ce")


class NotSettledWarning(UserWarning):
    """A phase ended with a state residual above the network's ``settle_tol``."""


@dataclass
class State:
    """The state of a CRNN after some steps of a phase.

    Attributes
    ----------
    xi : list of ndarray
        ``xi[0]`` is the input x (N, C, H, W); ``xi[n]`` is layer n, (N, C_n, H_n, W_n) or (N, D_n).
    residual : float
        Per-sample L2 norm of the last step's change, ``||xi^t - xi^{t-1}|| / sqrt(N)``.
    steps : int
        Steps run in the phase that produced this state.
    """
    xi: list
    residual: float = float("nan")
    steps: int = 0
    history: list = field(default_factory=list)   # per-step residuals, when a phase is asked to record

    def copy(self):
        return State([a.copy() for a in self.xi], self.residual, self.steps, [])


class ConvergentRNN:
    """A convolutional convergent RNN (the paper's "CRNN"). Build it with :func:`build_network`."""

    spiking = False

    def __init__(self, input_shape, conv_channels, kernel_size, padding, pool, pool_size, alpha,
                 hidden, n_classes, loss, dtype, seed, eps, init_scale, settle_tol):
        if pool not in POOLS:
            raise ValueError(f"unknown pool {pool!r}; allowed: {', '.join(POOLS)}")
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(f"input_shape must be (C, H, W) with positive sizes, got {input_shape!r}")
        if not 0 < eps <= 1:
            raise ValueError(f"eps must be in (0, 1], got {eps}")
        if any(int(c) < 1 for c in conv_channels) or any(int(h) < 1 for h in hidden):
            raise ValueError(f"layer widths must be >= 1, got conv {conv_channels}, hidden {hidden}")
        if int(n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        if int(pool_size) < 1 or (alpha is not None and not alpha > 0):
            raise ValueError(f"pool_size must be >= 1 and alpha > 0, got {pool_size} and {alpha}")
        self.xp = get_xp()
        self.dtype = resolve_dtype(dtype)
        self.input_shape = tuple(int(v) for v in input_shape)
        self.kernel_size, self.padding = int(kernel_size), int(padding)
        self.pool, self.F = pool, int(pool_size)
        self.alpha = float(self.F ** 2 if alpha is None else alpha)
        self.n_classes, self.loss_name = int(n_classes), loss
        self.eps, self.settle_tol = float(eps), settle_tol
        self.n_conv = len(conv_channels)
        widths = [int(h) for h in hidden] + [int(n_classes)]
        # shapes[n]: the (batch-less) shape of layer n; conv_out[n]: layer n's conv map before pooling
        self.shapes, self.conv_out = [self.input_shape], {}
        for n, c in enumerate(conv_channels, start=1):
            C, H, W = self.shapes[-1]
            if self.kernel_size > min(H, W) + 2 * self.padding:
                raise ValueError(f"conv layer {n}: kernel {self.kernel_size} does not fit its "
                                 f"{H}x{W} input (padding {self.padding})")
            OH = conv_output_size(H, self.kernel_size, 1, self.padding)
            OW = conv_output_size(W, self.kernel_size, 1, self.padding)
            if OH < self.F or OW < self.F:
                raise ValueError(f"conv layer {n}: its {OH}x{OW} map is smaller than the pooling "
                                 f"window {self.F}; use fewer conv layers or more padding")
            self.conv_out[n] = (OH, OW)
            self.shapes.append((int(c), OH // self.F, OW // self.F))
        self.shapes += [(d,) for d in widths]
        self.readout = loss == "ce"            # the softmax readout is not a recurrent layer
        self.n_layers = len(self.shapes) - 1 - int(self.readout)   # L
        self.params = self._init_params(seed, init_scale)

    # ---------------------------------------------------------------- parameters
    def _init_params(self, seed, init_scale):
        """Kaiming-uniform initialisation as in PyTorch's conv and linear layers (a = sqrt(5)).

        Weights ~ U(-b, b) and biases ~ U(-b, b) with ``b = init_scale / sqrt(fan_in)``, the
        default init of the PyTorch layers the paper's code was built from (a larger gain, the
        ReLU one, saturates the hard sigmoid and the dynamics no longer settle). The draws happen
        on the host (NumPy) so CPU and GPU runs of one seed start from identical weights.
        """
        rng = default_rng(seed)
        K = len(self.shapes) - 1
        scales = [float(init_scale)] * K if isinstance(init_scale, (int, float)) else list(init_scale)
        if len(scales) != K:
            raise ValueError(f"init_scale needs one value per weight ({K}), got {init_scale!r}")
        params = {}
        for n in range(1, K + 1):
            fan_out = self.shapes[n][0]
            if self.is_conv(n):
                shape = (fan_out, self.shapes[n - 1][0], self.kernel_size, self.kernel_size)
            else:
                shape = (fan_out, _size(self.shapes[n - 1]))
            bound = scales[n - 1] / _size(shape[1:]) ** 0.5
            params[f"w{n}"] = to_device(rng.uniform(-bound, bound, shape), self.dtype)
            params[f"b{n}"] = to_device(rng.uniform(-bound, bound, fan_out), self.dtype)
        return params

    def w(self, n):
        return self.params[f"w{n}"]

    def b(self, n):
        return self.params[f"b{n}"]

    def is_conv(self, n):
        return 1 <= n <= self.n_conv

    # ---------------------------------------------------------------- routes (paper Eq. 9)
    def forward_route(self, n, s_prev):
        """``P(w_n * s_{n-1})`` (conv) or ``w_n s_{n-1}`` (dense), without the bias.

        Returns the route, (N,) + shapes[n], and the max-pooling indices (None for avg / dense).
        """
        if self.is_conv(n):
            z = conv2d(s_prev, self.w(n), padding=self.padding)        # (N, C_n, OH, OW)
            if self.pool == "max":
                return max_pool2d(z, self.F)                             # Eq. 12-13
            return avg_pool2d(z, self.F), None                          # Eq. 15
        return s_prev.reshape(len(s_prev), -1) @ self.w(n).T, None      # (N, D_n)

    def unpool(self, n, s, idx):
        """``P^-1(s_n)``: layer n's state back on its conv map (Eq. 14 or Eq. 16)."""
        if self.pool == "max":
            return max_unpool2d(s, idx, self.F, self.conv_out[n])
        return avg_unpool2d(s, self.F, self.alpha, self.conv_out[n])

    def backward_route(self, n, s_next, idx_next):
        """``w_{n+1} ~* P^-1(s_{n+1})`` (conv) or ``w_{n+1}^T s_{n+1}`` (dense): layer n's input from above."""
        if self.is_conv(n + 1):
            u = self.unpool(n + 1, s_next, idx_next)                    # (N, C_{n+1}, OH, OW)
            return conv_transpose2d(u, self.w(n + 1), padding=self.padding,
                                    output_size=self.shapes[n][1:])
        return (s_next @ self.w(n + 1)).reshape((len(s_next),) + self.shapes[n])

    def bias(self, n):
        """b_n shaped to broadcast against layer n."""
        b = self.b(n)
        return b.reshape(1, -1, 1, 1) if self.is_conv(n) else b

    def sum_to_bias(self, n, v):
        """Sum an array shaped like layer n over the batch (and space): the shape of b_n."""
        return v.sum(axis=(0, 2, 3)) if self.is_conv(n) else v.sum(axis=0)

    def messages(self, state):
        """What the layers send each other, ``[x, s_1, ..., s_L]``: the states themselves in a CRNN
        (spikes in a spiking network). The routes and total inputs are computed from these."""
        return state.xi

    def total_inputs(self, s, input_route=None):
        """phi_n = dPhi/ds_n without the bias, for n = 1..L, from the states ``s = [x, s_1, ..., s_L]``.

        ``input_route``, if given, is layer 1's forward route ``forward_route(1, s[0])`` computed
        once for a static input (see :meth:`input_route`). Returns the list ``phi`` (phi[0] is None)
        and the max-pooling indices of this step.
        """
        L = self.n_layers
        phi, idx = [None] * (L + 1), [None] * (L + 1)
        for n in range(1, L + 1):
            if n == 1 and input_route is not None:
                phi[1], idx[1] = input_route[0].copy(), input_route[1]
            else:
                phi[n], idx[n] = self.forward_route(n, s[n - 1])
        for n in range(1, L):
            phi[n] += self.backward_route(n, s[n + 1], idx[n + 1])          # Eq. 9
        return phi, idx

    # ---------------------------------------------------------------- loss and nudge
    def logits(self, s_top):
        """The readout's pre-softmax output (CE), or the top layer itself (MSE)."""
        if not self.readout:
            return s_top
        K = self.n_layers + 1
        return s_top.reshape(len(s_top), -1) @ self.w(K).T + self.b(K)

    def _softmax(self, z):
        z = z - z.max(axis=1, keepdims=True)
        e = self.xp.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def one_hot(self, y):
        return self.xp.eye(self.n_classes, dtype=self.dtype)[y]

    def loss(self, state, y):
        """Mean over the batch of 1/2 ||s_L - onehot(y)||^2 (MSE) or -log softmax(readout)_y (CE)."""
        y = self.check_labels(y, len(state.xi[0]))
        return float(self.loss_gradient(state.xi[self.n_layers], y)[0])

    def loss_gradient(self, s_top, y):
        """(loss, dL/ds_L, readout gradients dict) for the batch mean of the loss, at top state s_L."""
        xp, N = self.xp, len(s_top)
        target = self.one_hot(y)
        if not self.readout:
            err = s_top - target                                                   # (N, n_classes)
            return 0.5 * float(xp.sum(err * err)) / N, err / N, {}
        K = self.n_layers + 1
        z = self.logits(s_top)
        o = self._softmax(z)
        loss = -float(xp.sum(xp.log(o[xp.arange(N), y] + 1e-30))) / N
        err = (o - target) / N                                                     # dL/dz
        g_top = (err @ self.w(K)).reshape(s_top.shape)
        s_flat = s_top.reshape(N, -1)
        return loss, g_top, {f"w{K}": err.T @ s_flat, f"b{K}": err.sum(axis=0)}

    def nudge(self, s_top, target, beta):
        """-beta dL/ds_L added to the top layer's input in a nudged phase (docs/equations.md §2)."""
        if not self.readout:
            return beta * (target - s_top)                            # MSE: beta (y - s_out)
        o = self._softmax(self.logits(s_top))
        K = self.n_layers + 1
        return (beta * (target - o) @ self.w(K)).reshape(s_top.shape)  # CE: beta w_out^T (y - o)

    def predict(self, state):
        """Predicted class per sample, (N,) int array."""
        return self.logits(state.xi[self.n_layers]).argmax(axis=1)

    # ---------------------------------------------------------------- dPhi/dtheta (Eq. 11)
    def dphi_dtheta(self, state):
        """dPhi/dtheta at the continuous states ``state.xi``, averaged over the batch (paper Eq. 11).

        conv:  conv2d_weight(s_{n-1}, P^-1(s_n))     dense:  s_n^T s_{n-1}      bias:  sum of s_n.
        The max-pooling indices are those of the forward route at these states. The readout of
        the CE loss is not part of Phi and is absent here.
        """
        s, N = state.xi, len(state.xi[0])
        out = {}
        for n in range(1, self.n_layers + 1):
            if self.is_conv(n):
                idx = self.forward_route(n, s[n - 1])[1] if self.pool == "max" else None
                gw = conv2d_weight(s[n - 1], self.unpool(n, s[n], idx), self.kernel_size,
                                   padding=self.padding)
            else:
                gw = s[n].T @ s[n - 1].reshape(N, -1)
            out[f"w{n}"], out[f"b{n}"] = gw / N, self.sum_to_bias(n, s[n]) / N
        return out

    # ---------------------------------------------------------------- dynamics
    def check_input(self, x):
        """x as a backend array of the network's dtype; ValueError for a wrong shape or non-finite values."""
        xp = self.xp
        if tuple(x.shape[1:]) != self.input_shape or x.ndim != 4 or len(x) == 0:
            raise ValueError(f"x has shape {tuple(x.shape)}, expected (N,) + input_shape = "
                             f"(N, {', '.join(map(str, self.input_shape))})")
        x = xp.asarray(x, dtype=self.dtype)
        if not bool(xp.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values")
        return x

    def check_labels(self, y, N):
        """y as a backend int array of N labels in [0, n_classes)."""
        y = self.xp.asarray(y)
        if y.shape != (N,) or y.dtype.kind not in "iu":
            raise ValueError(f"y must be ({N},) integer labels, got shape {y.shape} dtype {y.dtype}")
        if N and (int(y.min()) < 0 or int(y.max()) >= self.n_classes):
            raise ValueError(f"labels must be in [0, {self.n_classes}), got range "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y.astype(self.xp.int64)

    @staticmethod
    def check_steps(T, name="T"):
        if isinstance(T, bool) or int(T) != T or T < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {T!r}")
        return int(T)

    def init_state(self, x):
        """The state at rest: every layer at zero."""
        N = len(x)
        return State([x] + [self.xp.zeros((N,) + sh, dtype=self.dtype)
                            for sh in self.shapes[1:self.n_layers + 1]])

    def input_route(self, state):
        """Layer 1's forward route from the static image, ``P(w_1 * x)``: the same at every step of a
        phase, so a phase computes it once (None in a spiking network, whose input spikes change)."""
        return self.forward_route(1, state.xi[0])

    def step(self, state, target=None, beta=0.0, tape=None, input_route=None):
        """One synchronous update of every layer (Eq. 3 with Eq. 9); returns the new state list.

        With a ``tape`` (a list), appends what BPTT needs to go back through this step: the states
        it started from, the pooling indices, and the masks where the clip was not saturated.
        ``input_route`` is :meth:`input_route`, passed by a phase that computed it once.
        """
        s, L, eps = state.xi, self.n_layers, self.eps
        phi, idx = self.total_inputs(self.messages(state), input_route)
        new, masks = [s[0]], [None]
        for n in range(1, L + 1):
            u = phi[n]
            u += self.bias(n)
            if n == L and beta:
                u += self.nudge(s[L], target, beta)
            u *= eps
            u += (1.0 - eps) * s[n]                                     # Eq. 3
            if tape is not None:
                masks.append((u > 0) & (u < 1))
            new.append(self.xp.clip(u, 0.0, 1.0, out=u))                 # rho = hard sigmoid
        if tape is not None:
            tape.append((s, idx, masks))
        return new

    def _run(self, state, T, target=None, beta=0.0, record=False):
        T = self.check_steps(T)
        route = self.input_route(state)
        for t in range(T):
            new = self.step(state, target, beta, input_route=route)
            if t == T - 1 or record:
                r = self.residual(state.xi, new)
                if record:
                    state.history.append(r)
                state.residual = r
            state.xi = new
        state.steps = T
        if self.settle_tol is not None and state.residual > self.settle_tol:
            warnings.warn(f"phase not settled after {T} steps: residual {state.residual:.2e} > "
                          f"settle_tol {self.settle_tol:g} (more steps, or a smaller eps)",
                          NotSettledWarning, stacklevel=3)
        return state

    def residual(self, old, new):
        """``||xi^t - xi^{t-1}|| / sqrt(N)`` over every recurrent layer."""
        sq = sum(float(self.xp.sum((a - b) ** 2)) for a, b in zip(old[1:], new[1:]))
        return (sq / len(old[0])) ** 0.5

    def free_phase(self, x, T, record=False):
        """Run T steps from rest with beta = 0; x : (N, C, H, W) in [0, 1]. Returns the free State."""
        x = self.check_input(x)
        return self._run(self.init_state(x), T, record=record)

    def nudged_phase(self, state, y, beta, T, record=False):
        """Run T steps from a copy of ``state`` with the top layer nudged towards y by beta."""
        y = self.check_labels(y, len(state.xi[0]))
        return self._run(state.copy(), T, self.one_hot(y), float(beta), record=record)


def _size(shape):
    out = 1
    for v in shape:
        out *= int(v)
    return out


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
    """
    args = dict(input_shape=input_shape, conv_channels=tuple(conv_channels), kernel_size=kernel_size,
                padding=padding, pool=pool, pool_size=pool_size, alpha=alpha, hidden=tuple(hidden),
                n_classes=n_classes, loss=loss, dtype=dtype, seed=seed, eps=eps,
                init_scale=init_scale, settle_tol=settle_tol)
    if not spiking:
        return ConvergentRNN(**args)
    from .spiking import SpikingConvergentRNN      # spiking.py builds on this module
    return SpikingConvergentRNN(lam=lam, v_th=v_th, surrogate_width=surrogate_width, **args)
