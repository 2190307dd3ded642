"""Fused layers: a conv layer and its pooling computed as one, the same numbers as the two-step form.

Read :class:`minimal_ep.layers.ConvPool` first: convolution, then pooling, each a small function.
The network builds every conv layer through :func:`fused`, which returns the same layer computed
faster where the pooling kind allows it:

* :class:`ConvAvgPool`: average pooling after a stride-1 convolution is itself a convolution, with
  stride F and a (K+F-1) x (K+F-1) kernel, the average of the F*F shifted copies of the K x K one
  (:func:`box_kernel`). The backward route (nearest-neighbour unpooling / alpha, then the transposed
  convolution) is its transpose times F^2 / alpha. No full-resolution map, no pooling pass, and
  (K+F-1)^2 / (F^2 K^2) of the multiply-adds: 16/36 for 3x3 kernels and F = 2.
* :class:`ConvMaxPool`: max pooling needs the full map, but it can be pooled where the product
  leaves it (batch last, :mod:`minimal_ep.fast`), so only the pooled maps and their indices are
  transposed back to NCHW.

Each method of a fused layer falls back to the two-step form when ``fast.ENABLED`` is false, so
``with fast.use(False):`` runs the readable code; a test compares the two on every method.
"""
from . import fast
from .backend import get_array_module
from .conv import conv2d, conv2d_weight, conv_transpose2d
from .fast import (conv2d_bl, conv2d_weight_bl, conv_transpose2d_bl, from_batch_last, gather_pool_bl,
                   max_pool_bl, max_unpool_bl, to_batch_last)
from .layers import ConvPool
from .pooling import AvgPool, MaxPool


# ----------------------------------------------------------------------------- average pooling: one strided convolution
def box_kernel(w, F):
    """A(w): the kernel of the stride-F convolution that equals "convolve with w, then F x F average pooling".

    Average pooling after a stride-1 convolution averages F*F shifted copies of the kernel:

        P(w * x)[I, J] = (1/F^2) sum_{a,b < F} sum_{p,q < K} w[p, q] x[F*I + a + p, F*J + b + q]
                       = sum_{r,s < K+F-1} A(w)[r, s] x[F*I + r, F*J + s]

    A is a fixed linear map of each K x K kernel, applied to all C_out*C of them as one product
    with the (K*K, (K+F-1)^2) matrix of :func:`_box_matrix`.

    w : (C_out, C, K, K) ndarray  ->  A(w) : (C_out, C, K+F-1, K+F-1) ndarray.
    """
    C_out, C, K, _ = w.shape
    return fast.gemm(w.reshape(C_out * C, K * K), _box_matrix(w, K, F)).reshape(C_out, C, K + F - 1, K + F - 1)


def box_kernel_adjoint(g4, F):
    """A^T(g4), the adjoint of :func:`box_kernel`: g[p, q] = (1/F^2) sum_{a,b < F} g4[p + a, q + b]."""
    C_out, C, Kp, _ = g4.shape
    K = Kp - F + 1
    return fast.gemm(g4.reshape(C_out * C, Kp * Kp), _box_matrix(g4, K, F).T).reshape(C_out, C, K, K)


_BOX = {}


def _box_matrix(like, K, F):
    """The matrix B of A(w) = w B on flattened kernels, (K*K, (K+F-1)^2), kept per (K, F, dtype, device).

    ``B[p*K + q, r*(K+F-1) + s] = 1/F^2`` when 0 <= r - p < F and 0 <= s - q < F, else 0: kernel
    entry (p, q) lands on every position of the F x F window that its shifted copies cover.
    """
    xp = get_array_module(like)
    key = (K, F, str(like.dtype), xp.__name__, str(getattr(like, "device", "cpu")))
    if key not in _BOX:
        Kp = K + F - 1
        B = xp.zeros((K, K, Kp, Kp), dtype=like.dtype)
        for p in range(K):
            for q in range(K):
                B[p, q, p:p + F, q:q + F] = 1.0 / (F * F)
        _BOX[key] = B.reshape(K * K, Kp * Kp)
    return _BOX[key]


class ConvAvgPool(ConvPool):
    """A :class:`~minimal_ep.layers.ConvPool` with average pooling, as one stride-F convolution.

    With A the kernel map of :func:`box_kernel` and c = F^2 / alpha (1 for the exact adjoint):

        forward    P(w * s_{n-1})         = conv2d(s_{n-1}, A(w), stride F)
        backward   w ~* P^-1(s_n)         = c conv_transpose2d(s_n, A(w), stride F)
        dphi_dw    corr(s_{n-1}, P^-1 s_n) = c A^T(conv2d_weight(s_{n-1}, s_n, K+F-1, stride F))

    No full-resolution map, no pooling pass, and (K+F-1)^2 / (F^2 K^2) of the multiply-adds
    (16/36 for 3x3 kernels and F = 2, less still where floor pooling drops a row). With
    ``fast.ENABLED`` false every method is the readable two-step form of ConvPool.
    """

    def _c(self):
        return self.pool.F ** 2 / self.pool.alpha

    def _kw(self):
        return dict(stride=self.pool.F, padding=self.padding)

    def forward(self, w, s_prev):
        if not fast.ENABLED:
            return super().forward(w, s_prev)
        return conv2d(s_prev, box_kernel(w, self.pool.F), **self._kw()), None

    def backward(self, w, s, idx):
        if not fast.ENABLED:
            return super().backward(w, s, idx)
        x = conv_transpose2d(s, box_kernel(w, self.pool.F), output_size=self.in_shape[1:],
                                   **self._kw())
        return _scaled(x, self._c())

    def dphi_dw(self, w, s_prev, s):
        if not fast.ENABLED:
            return super().dphi_dw(w, s_prev, s)
        return _scaled(self._weight(s_prev, s), self._c())

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        if not fast.ENABLED:
            return super().forward_vjp(w, s_prev, idx, a, wrt_input)
        g_s = (conv_transpose2d(a, box_kernel(w, self.pool.F), output_size=self.in_shape[1:],
                                      **self._kw()) if wrt_input else None)
        return g_s, self._weight(s_prev, a)

    def backward_vjp(self, w, s, idx, a):
        if not fast.ENABLED:
            return super().backward_vjp(w, s, idx, a)
        g_s = conv2d(a, box_kernel(w, self.pool.F), **self._kw())
        return _scaled(g_s, self._c()), _scaled(self._weight(a, s), self._c())

    def _weight(self, x, gy):
        """A^T(conv2d_weight(x, gy, K+F-1, stride F)): the weight gradient through the fused kernel."""
        g4 = conv2d_weight(x, gy, self.kernel_size + self.pool.F - 1, **self._kw())
        return box_kernel_adjoint(g4, self.pool.F)


# ----------------------------------------------------------------------------- max pooling, batch last
class ConvMaxPool(ConvPool):
    """A :class:`~minimal_ep.layers.ConvPool` with max pooling, its maps kept batch last in between.

    The two-step form transposes every full-resolution map between NCHW and the batch-last layout
    of the products (or, on wide maps, pools NCHW maps with short strided rows); here the
    convolution's output is pooled where the product leaves it, batch last, the unpooled map is
    built where the transposed convolution reads it, and only the pooled maps and their indices
    (F^2 times smaller) are transposed. The indices returned are NCHW, as max_pool2d's. With
    ``fast.ENABLED`` false every method is the two-step form.
    """

    def _kw(self):
        return dict(stride=1, padding=self.padding)

    def _unpool_bl(self, s, idx):
        """P^-1(s) (and P^T), batch last: (C_out, OH, OW, N)."""
        return max_unpool_bl(to_batch_last(s, role="pooled"), to_batch_last(idx, role="pooled_idx"),
                             self.pool.F, self.conv_size)

    def forward(self, w, s_prev):
        if not fast.ENABLED:
            return super().forward(w, s_prev)
        y, idx = max_pool_bl(conv2d_bl(s_prev, w, **self._kw()), self.pool.F)
        return from_batch_last(y), from_batch_last(idx)

    def backward(self, w, s, idx):
        if not fast.ENABLED:
            return super().backward(w, s, idx)
        return conv_transpose2d_bl(self._unpool_bl(s, idx), w, (len(s),) + self.in_shape, **self._kw())

    def dphi_dw(self, w, s_prev, s):
        if not fast.ENABLED:
            return super().dphi_dw(w, s_prev, s)
        idx = self.forward(w, s_prev)[1]
        return conv2d_weight_bl(s_prev, self._unpool_bl(s, idx), self.kernel_size, self.kernel_size,
                                **self._kw())

    def forward_vjp(self, w, s_prev, idx, a, wrt_input=True):
        if not fast.ENABLED:
            return super().forward_vjp(w, s_prev, idx, a, wrt_input)
        g = self._unpool_bl(a, idx)                                   # P^T a, batch last
        g_w = conv2d_weight_bl(s_prev, g, self.kernel_size, self.kernel_size, **self._kw())
        g_s = conv_transpose2d_bl(g, w, s_prev.shape, **self._kw()) if wrt_input else None
        return g_s, g_w

    def backward_vjp(self, w, s, idx, a):
        if not fast.ENABLED:
            return super().backward_vjp(w, s, idx, a)
        z = conv2d_bl(a, w, **self._kw())                             # (C_out, OH, OW, N)
        g_s = from_batch_last(gather_pool_bl(z, to_batch_last(idx, role="pooled_idx"), self.pool.F))
        g_w = conv2d_weight_bl(a, self._unpool_bl(s, idx), self.kernel_size, self.kernel_size,
                               **self._kw())
        return g_s, g_w


def fused(layer):
    """``layer`` computed faster where it can be: a conv layer with average pooling becomes a
    :class:`ConvAvgPool` (one strided convolution), one with max pooling a :class:`ConvMaxPool`;
    any other layer is returned as it is."""
    if type(layer) is not ConvPool:
        return layer
    kinds = {AvgPool: ConvAvgPool, MaxPool: ConvMaxPool}
    fast_class = kinds.get(type(layer.pool))
    if fast_class is None:
        return layer
    return fast_class(layer.in_shape, layer.shape[0], layer.kernel_size, layer.padding, layer.pool)


def _scaled(a, c):
    if c != 1.0:
        a *= c
    return a
