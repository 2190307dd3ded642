"""The layers of a convergent RNN: what each one sends up, what it sends down, and its learning rule.

A network is a stack of layers 0..L; layer 0 is the static input x. Layer n (n >= 1) owns the weight
w_n and bias b_n that connect it to layer n-1, and knows two *routes* (paper Eq. 9):

    forward route    what layer n hears from below     P(w_n * s_{n-1})         w_n s_{n-1}
    backward route   what layer n-1 hears from above   w_n ~* P^-1(s_n)         w_n^T s_n
                                                       (ConvPool)               (Dense)

so that layer n's total input is ``layer[n].forward(s_{n-1}) + layer[n+1].backward(s_{n+1})``. Both
routes are gradients of one scalar, the layer's term of the primitive function,

    Phi_n = < s_n, P(w_n * s_{n-1}) + b_n >      or      < s_n, w_n s_{n-1} + b_n >,

with respect to s_n and s_{n-1}; ``dphi_dw`` is its gradient with respect to w_n (Eq. 11). Right
beside them are the vector-Jacobian products of the two routes, which BPTT needs to run the dynamics
backwards (micrograd keeps each ``_backward`` next to its forward): ``forward_vjp`` and
``backward_vjp`` return the cotangents of a route's state argument and of w_n.

Every method takes the weight as its first argument: the arrays live in ``net.params`` (updated in
place by the optimiser), the layer holds only shapes and the pooling kind. Biases are added by the
network (:meth:`bias` shapes one for broadcasting, :meth:`sum_to_bias` is its adjoint).

At the end: the two outputs of the loss, :class:`MSEOutput` (the top layer itself is compared with
the target) and :class:`SoftmaxReadout` (cross-entropy of a readout outside the recurrent system).
"""
from .backend import get_array_module
from .conv import conv2d, conv2d_weight, conv_output_size, conv_transpose2d


def _size(shape):
    out = 1
    for v in shape:
        out *= int(v)
    return out


class ConvPool:
    """A convolutional layer: stride-1 convolution, then pooling (``MaxPool`` or ``AvgPool``).

    Parameters
    ----------
    in_shape : (C, H, W)
        Shape of layer n-1.
    channels : int
        C_out, the channels of this layer.
    kernel_size, padding : int
    pool : MaxPool or AvgPool
        The pooling kind (:mod:`minimal_ep.pooling`).

    Attributes
    ----------
    shape : (C_out, OH // F, OW // F)
        This layer's state; ``conv_size = (OH, OW)`` is the map before pooling.
    weight_shape : (C_out, C, KH, KW)
    """

    def __init__(self, in_shape, channels, kernel_size, padding, pool):
        C, H, W = in_shape
        self.in_shape, self.kernel_size, self.padding, self.pool = tuple(in_shape), kernel_size, padding, pool
        self.conv_size = (conv_output_size(H, kernel_size, 1, padding),
                          conv_output_size(W, kernel_size, 1, padding))
        self.shape = (channels, self.conv_size[0] // pool.F, self.conv_size[1] // pool.F)
        self.weight_shape = (channels, C, kernel_size, kernel_size)

    def forward(self, w, s_prev):
        """P(w * s_{n-1}): (N, C, H, W) -> (N, C_out, OH/F, OW/F), and the pooling indices (or None)."""
        z = conv2d(s_prev, w, padding=self.padding)                 # (N, C_out, OH, OW)
        return self.pool.pool(z)                                     # Eq. 12-13 or Eq. 15

    def backward(self, w, s, idx):
        """w ~* P^-1(s_n): layer n's state carried down onto layer n-1, (N, C, H, W)."""
        u = self.pool.unpool(s, idx, self.conv_size)                 # Eq. 14 or Eq. 16
        return conv_transpose2d(u, w, padding=self.padding, output_size=self.in_shape[1:])

    def dphi_dw(self, w, s_prev, s):
        """dPhi_n/dw_n = correlation of s_{n-1} with P^-1(s_n) (Eq. 11), summed over the batch.

        Phi is evaluated at the states themselves, so the max-pooling indices are those of the
        forward route at s_{n-1} (average pooling needs none and skips that convolution).
        """
        idx = self.forward(w, s_prev)[1] if self.pool.needs_indices else None
        return conv2d_weight(s_prev, self.pool.unpool(s, idx, self.conv_size), self.kernel_size,
                             padding=self.padding)

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        """Given a = cotangent of the forward route, the cotangents (of s_{n-1} or None, of w_n)."""
        g = self.pool.pool_vjp(a, idx, self.conv_size)               # P^T a: (N, C_out, OH, OW)
        g_s = (conv_transpose2d(g, w, padding=self.padding, output_size=self.in_shape[1:])
               if wrt_input else None)
        return g_s, conv2d_weight(s_prev, g, self.kernel_size, padding=self.padding)

    def backward_vjp(self, w, s, idx, a):
        """Given a = cotangent of the backward route (shaped like layer n-1), the cotangents (of s_n, of w_n)."""
        z = conv2d(a, w, padding=self.padding)                       # (N, C_out, OH, OW)
        g_w = conv2d_weight(a, self.pool.unpool(s, idx, self.conv_size), self.kernel_size,
                            padding=self.padding)
        return self.pool.unpool_vjp(z, idx), g_w

    def bias(self, b):
        """b_n shaped (1, C_out, 1, 1), to broadcast against the layer."""
        return b.reshape(1, -1, 1, 1)

    def sum_to_bias(self, v):
        """The adjoint of :meth:`bias`: sum over the batch and the positions, (C_out,)."""
        return v.sum(axis=(0, 2, 3))


class Dense:
    """A fully connected layer: w_n (D_n, size of layer n-1); layer n-1 may be a conv map (flattened).

    Parameters
    ----------
    in_shape : tuple
        Shape of layer n-1, (C, H, W) or (D,).
    width : int
        D_n.
    """

    def __init__(self, in_shape, width):
        self.in_shape, self.shape = tuple(in_shape), (width,)
        self.weight_shape = (width, _size(in_shape))

    def forward(self, w, s_prev):
        """w_n s_{n-1}: (N, ...) -> (N, D_n); no pooling indices."""
        return s_prev.reshape(len(s_prev), -1) @ w.T, None

    def backward(self, w, s, idx):
        """w_n^T s_n, shaped like layer n-1."""
        return (s @ w).reshape((len(s),) + self.in_shape)

    def dphi_dw(self, w, s_prev, s):
        """s_n^T s_{n-1} (Eq. 11), summed over the batch."""
        return s.T @ s_prev.reshape(len(s_prev), -1)

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        g_s = (a @ w).reshape(s_prev.shape) if wrt_input else None
        return g_s, a.T @ s_prev.reshape(len(s_prev), -1)

    def backward_vjp(self, w, s, idx, a):
        a_flat = a.reshape(len(a), -1)
        return a_flat @ w.T, s.T @ a_flat

    def bias(self, b):
        return b

    def sum_to_bias(self, v):
        return v.sum(axis=0)


# ----------------------------------------------------------------------------- outputs (the loss)
class MSEOutput:
    """The top recurrent layer is the output: L = 1/2 ||s_L - y||^2 (y one-hot); no parameters."""

    n_readout = 0

    def logits(self, params, s_top):
        return s_top

    def loss_gradient(self, params, s_top, y, target):
        """(batch-mean loss, dL/ds_L, {}) at the top state s_L, for labels y and their one-hot target."""
        xp, N = get_array_module(s_top), len(s_top)
        err = s_top - target                                         # (N, n_classes)
        return 0.5 * float(xp.sum(err * err)) / N, err / N, {}

    def nudge(self, params, s_top, target, beta):
        """-beta dL/ds_L = beta (y - s_L), added to the top layer's drive in a nudged phase."""
        return beta * (target - s_top)


class SoftmaxReadout:
    """Cross-entropy of o = softmax(w_K s_L + b_K), K = L + 1: a readout outside the recurrent system.

    Its parameters ``w{K}``, ``b{K}`` are not part of Phi (Laborieux et al. 2021), so EP takes their
    gradient as dL/dw_K at the nudged states.
    """

    n_readout = 1

    def __init__(self, K, in_shape, n_classes):
        self.K, self.in_shape = K, tuple(in_shape)
        self.shape, self.weight_shape = (n_classes,), (n_classes, _size(in_shape))

    def logits(self, params, s_top):
        """w_K s_L + b_K, (N, n_classes)."""
        return s_top.reshape(len(s_top), -1) @ params[f"w{self.K}"].T + params[f"b{self.K}"]

    def softmax(self, params, s_top):
        xp = get_array_module(s_top)
        z = self.logits(params, s_top)
        e = xp.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def loss_gradient(self, params, s_top, y, target):
        """(batch-mean loss, dL/ds_L, {w_K, b_K: their gradients}) at the top state s_L."""
        xp, N = get_array_module(s_top), len(s_top)
        o = self.softmax(params, s_top)
        loss = -float(xp.sum(xp.log(o[xp.arange(N), y] + 1e-30))) / N
        err = (o - target) / N                                        # dL/dz, (N, n_classes)
        g_top = (err @ params[f"w{self.K}"]).reshape(s_top.shape)
        return loss, g_top, {f"w{self.K}": err.T @ s_top.reshape(N, -1), f"b{self.K}": err.sum(axis=0)}

    def nudge(self, params, s_top, target, beta):
        """-beta dL/ds_L = beta w_K^T (y - o)."""
        o = self.softmax(params, s_top)
        return (beta * (target - o) @ params[f"w{self.K}"]).reshape(s_top.shape)
