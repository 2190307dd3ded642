# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 Convolution: im2col, its transpose, and the weight gradient
#
# A convolutional layer of the convergent RNN uses three operations, all built here from one
# idea (*im2col*: copy every receptive field into a column, then do one matrix product):
#
# | operation | shapes | role in the network |
# |---|---|---|
# | `conv2d(x, w)` | (N, C, H, W) -> (N, F, OH, OW) | forward route $w * s$ (paper Eq. 9) |
# | `conv_transpose2d(y, w)` | (N, F, OH, OW) -> (N, C, H, W) | backward route $w \,\tilde{*}\, s$ (Eq. 9) |
# | `conv2d_weight(x, gy, (KH, KW))` | -> (F, C, KH, KW) | the weight update (Eq. 11) |
#
# Symbols: N batch, C input channels, H x W input size, F filters (output channels),
# KH x KW kernel size, OH x OW output size. The paper and the works it builds on are listed
# in the [references](../docs/course/references.md).

# %%
import os

# One BLAS thread, set before NumPy is imported: the matrices here are small, so
# more threads only add waiting, and a fixed thread count keeps the printed numbers
# the same from run to run (export OPENBLAS_NUM_THREADS to override; restart the
# kernel after changing it).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import matplotlib.pyplot as plt
import numpy as np

from minimal_ep import col2im, conv2d, conv2d_weight, conv_transpose2d, im2col

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"  # small sizes (all small here)
SEED = int(os.environ.get("MINIMAL_EP_SEED", "0"))  # other weights, other draws
rng = np.random.default_rng(SEED)
np.set_printoptions(precision=3, suppress=True, linewidth=88)

# %% [markdown]
# ## 1. im2col on a tiny image
# One image (N = 1), one channel (C = 1), 4x4 pixels holding 0..15, and a 3x3 kernel. A 3x3
# window fits in OH x OW = 2 x 2 positions, so `im2col` returns a `(N, C*KH*KW, OH*OW)` =
# (1, 9, 4) matrix: **one column per output pixel**, the 9 pixels of its receptive field down
# the column.

# %%
x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
KH = KW = 3
col = im2col(x, KH, KW)
print("x[0, 0] =\n", x[0, 0])
print("col.shape (N, C*KH*KW, OH*OW) =", col.shape)
print(col[0])

# %% [markdown]
# Column $k$ belongs to output pixel $(i, j) = (\lfloor k / OW \rfloor,\ k \bmod OW)$ and holds
# the window whose top left corner is $x_{i,j}$. Look for it: column 0 starts with 0, 1, 2
# (the first image row), column 1 with 1, 2, 3 (shifted right by one), column 2 with 4, 5, 6
# (shifted down by one).

# %%
OH, OW = 2, 2
for k in range(OH * OW):
    i, j = divmod(k, OW)
    window = x[0, 0, i:i + KH, j:j + KW]
    print(f"column {k} = output pixel ({i},{j}); its receptive field:")
    print(col[0, :, k].reshape(KH, KW))
    assert np.array_equal(col[0, :, k].reshape(KH, KW), window)

# %% [markdown]
# ## 2. conv2d is one matrix product
# Flatten each filter to a row: `w.reshape(F, C*KH*KW)`. Then
# `(F, C*KH*KW) @ (C*KH*KW, OH*OW)` gives `(F, OH*OW)`: every filter dotted with every
# receptive field. Reshape to (N, F, OH, OW). In symbols, with $\mathrm{col}$ the im2col
# matrix of one image,
#
# $$y_{f,\,k} = \sum_{r=1}^{C\,K_H K_W} w_{f,\,r}\; \mathrm{col}_{r,\,k}, \qquad k = i\,OW + j .$$

# %%
F = 2
w = rng.standard_normal((F, 1, KH, KW))
y_matmul = (w.reshape(F, -1) @ col).reshape(1, F, OH, OW)
y = conv2d(x, w)
print("w.reshape(F, C*KH*KW):", w.reshape(F, -1).shape, "  col:", col.shape,
      "  y:", y.shape)
print(f"max |conv2d - matrix product| = {np.abs(y - y_matmul).max():.1e}")
assert np.allclose(y, y_matmul)

# %% [markdown]
# ## 3. The definition, written as loops
# `conv2d` is a cross-correlation (no kernel flip, as in every deep-learning library):
#
# $$y_{n,f,i,j} = b_f + \sum_{c=1}^{C} \sum_{p=0}^{K_H-1} \sum_{q=0}^{K_W-1} w_{f,c,p,q}\;
#   x^{\mathrm{pad}}_{n,\,c,\,i\cdot\mathrm{stride}+p,\,j\cdot\mathrm{stride}+q} .$$
#
# The loops below are slow but impossible to misread; we check `conv2d` against them on a
# random batch with several channels, stride 2 and padding 1.

# %%
def conv2d_loops(x, w, b, stride, padding):
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    xpad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    OH = (H + 2 * padding - KH) // stride + 1
    OW = (W + 2 * padding - KW) // stride + 1
    y = np.zeros((N, F, OH, OW))
    for n in range(N):
        for f in range(F):
            for i in range(OH):
                for j in range(OW):
                    y[n, f, i, j] = b[f]
                    for c in range(C):
                        for p in range(KH):
                            for q in range(KW):
                                pixel = xpad[n, c, i * stride + p, j * stride + q]
                                y[n, f, i, j] += w[f, c, p, q] * pixel
    return y


xb = rng.standard_normal((2, 3, 7, 7))   # (N, C, H, W)
wb = rng.standard_normal((4, 3, 3, 3))   # (F, C, KH, KW)
bb = rng.standard_normal(4)              # (F,)
for stride, padding in [(1, 0), (2, 1)]:
    ours = conv2d(xb, wb, bb, stride, padding)
    loops = conv2d_loops(xb, wb, bb, stride, padding)
    err = np.abs(ours - loops).max()
    print(f"stride={stride} padding={padding}: output {ours.shape},"
          f" max |diff| = {err:.1e}")
    assert np.allclose(ours, loops, atol=1e-12)

# %% [markdown]
# ## 4. Stride, padding and the output size
# Along each axis
# $OH = \lfloor (H + 2\,\mathrm{padding} - K_H) / \mathrm{stride} \rfloor + 1$ (the floor
# drops a last partial window). Padding 1 with a 3x3 kernel and stride 1 keeps the size
# ("same" convolution); stride 2 roughly halves it.

# %%
def out_size(H, K, stride, padding):
    return (H + 2 * padding - K) // stride + 1


x28 = np.zeros((1, 1, 28, 28))
for K, stride, padding in [(3, 1, 0), (3, 1, 1), (3, 2, 1), (5, 2, 0), (5, 1, 2)]:
    OHs = conv2d(x28, np.zeros((1, 1, K, K)), stride=stride, padding=padding).shape[2]
    print(f"H=28 K={K} stride={stride} padding={padding}: OH = {OHs}"
          f"   formula: {out_size(28, K, stride, padding)}")
    assert OHs == out_size(28, K, stride, padding)

# %% [markdown]
# ## 5. col2im: summing columns back, and counting overlaps
# `col2im` is the reverse bookkeeping: every entry of a column is **added** back onto the
# pixel it was read from. Feed it a matrix of ones and each pixel receives one count per
# window that covers it. With a 3x3 kernel and stride 1 the interior pixels are covered 9
# times, the corners once; with stride 2 the pattern becomes a checkerboard of 1, 2 and 4.

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, stride in zip(axes, [1, 2]):
    shape = (1, 1, 9, 9)
    n_win = out_size(9, 3, stride, 0) ** 2
    counts = col2im(np.ones((1, 9, n_win)), shape, 3, 3, stride=stride)[0, 0]
    ax.imshow(counts, cmap="viridis")
    for (r, c), v in np.ndenumerate(counts):
        ax.text(c, r, int(v), ha="center", va="center", color="w", fontsize=8)
    ax.set_title(f"windows covering each pixel\n3x3 kernel, stride {stride}")
    if stride == 1:
        assert counts[0, 0] == 1 and counts[4, 4] == 9
        counts_s1 = counts
plt.tight_layout()
plt.show()

# %% [markdown]
# So `col2im(im2col(x))` is **not** `x`: it is `x` times the overlap count. col2im is the
# *adjoint* (transpose) of im2col, not its inverse. Look for: a large difference from x, and
# a difference of round-off size from `counts * x`.

# %%
x9 = rng.standard_normal((1, 1, 9, 9))
back = col2im(im2col(x9, 3, 3), x9.shape, 3, 3)
print(f"max |col2im(im2col(x)) - x|          = {np.abs(back - x9).max():.2f}")
gap = np.abs(back - counts_s1 * x9).max()
print(f"max |col2im(im2col(x)) - counts * x| = {gap:.1e}")
print("col2im(im2col(x)) / x, top left 4x4 (the counts again):\n",
      (back / x9)[0, 0, :4, :4])
assert np.allclose(back, counts_s1 * x9)

# %% [markdown]
# ## 6. conv_transpose2d is the adjoint of conv2d: the backward route
# conv2d is linear in x: $y = M x$ for a big sparse matrix $M$ built from w. Its transpose
# $M^\top$ maps (N, F, OH, OW) back to (N, C, H, W): multiply each column by
# `w.reshape(F, -1).T`, then col2im. The defining property is the dot-product test, for all
# x and y,
#
# $$\langle \mathrm{conv2d}(x, w),\, y \rangle
#   = \langle x,\, \mathrm{conv\_transpose2d}(y, w) \rangle .$$
#
# We check it in float64: the two sides are sums of about $10^3$ products, so they agree to a
# relative $10^{-12}$ (the rounding of float64 sums), not exactly.

# %%
N, C, H, W, F = 2, 3, 9, 9, 4
xa, wa = rng.standard_normal((N, C, H, W)), rng.standard_normal((F, C, 3, 3))
for stride, padding in [(1, 0), (2, 1)]:
    ya = rng.standard_normal(conv2d(xa, wa, stride=stride, padding=padding).shape)
    lhs = np.sum(conv2d(xa, wa, stride=stride, padding=padding) * ya)
    rhs = np.sum(xa * conv_transpose2d(ya, wa, stride, padding, output_size=(H, W)))
    print(f"stride={stride} padding={padding}: y {ya.shape} -> x {xa.shape}")
    print(f"    <Mx, y> = {lhs:.10f}   <x, M^T y> = {rhs:.10f}")
    assert np.isclose(lhs, rhs, rtol=1e-12)

# %% [markdown]
# Why this matters for EP: in the convergent RNN the state of layer n is driven by the layer
# below through $w_n * s_{n-1}$ **and** by the layer above through
# $w_{n+1} \,\tilde{*}\, s_{n+1}$ (paper Eq. 9, where $\tilde{*}$ is the transposed
# convolution). Pooling aside, both come from one coupling term
# $\langle s_{n+1},\, w_{n+1} * s_n \rangle$: its gradient with respect to $s_{n+1}$ is the
# convolution, with respect to $s_n$ the transposed convolution. The same weights carry
# signals both ways, which is what lets the nudge at the output travel down to every layer.
#
# Picture it: one active neuron in the layer above sends a copy of its filter (not flipped)
# down onto its own receptive field. `conv_transpose2d` of a single 1 at output pixel (i, j)
# is the kernel stamped into the image with its top left corner at (i, j).

# %%
w1 = np.arange(9, dtype=np.float64).reshape(1, 1, 3, 3)
delta = np.zeros((1, 1, 3, 3))
delta[0, 0, 1, 2] = 1.0  # one active neuron at output pixel (1, 2)
stamp = conv_transpose2d(delta, w1)
print("conv_transpose2d of one spike at (1, 2), shape", stamp.shape, "\n", stamp[0, 0])
assert np.array_equal(stamp[0, 0, 1:4, 2:5], w1[0, 0])

# %% [markdown]
# ## 7. conv2d_weight: the adjoint in w, and a finite-difference check
# conv2d is also linear in w. Its adjoint correlates the input x with an output signal
# $g_y$, summed over the batch:
# $\langle \mathrm{conv2d}(x, w), g_y \rangle = \langle w, \mathrm{conv2d\_weight}(x, g_y) \rangle$.
# That is the gradient of any loss L with $\partial L / \partial y = g_y$, and in EP the
# weight update of Eq. 11 (with $g_y$ the layer above's state, x the layer below's).

# %%
gy = rng.standard_normal(conv2d(xa, wa).shape)
gw = conv2d_weight(xa, gy, (3, 3))
print("x", xa.shape, " gy", gy.shape, " -> gw", gw.shape, "(F, C, KH, KW)")
lhs, rhs = np.sum(conv2d(xa, wa) * gy), np.sum(wa * gw)
print(f"<conv2d(x, w), gy> = {lhs:.10f}   <w, conv2d_weight(x, gy)> = {rhs:.10f}")
assert np.isclose(lhs, rhs, rtol=1e-12)

# %% [markdown]
# Finite differences: take $L(w) = \tfrac{1}{2} \lVert \mathrm{conv2d}(x, w) \rVert^2$, so
# $\partial L / \partial y = y$ and $\partial L / \partial w = \mathrm{conv2d\_weight}(x, y)$.
# Nudge one weight entry by $\pm h$ and compare the slope. L is quadratic in w, so the
# central difference $(L(w + h) - L(w - h)) / 2h$ has no truncation error: only rounding is
# left, about $\epsilon_{\mathrm{mach}} \lvert L \rvert / h$. That, not a fixed number, is the
# tolerance.

# %%
def loss(w):
    return 0.5 * np.sum(conv2d(xa, w) ** 2)


grad = conv2d_weight(xa, conv2d(xa, wa), (3, 3))
h, entry = 1e-5, (2, 1, 0, 2)  # (f, c, p, q)
wp, wm = wa.copy(), wa.copy()
wp[entry] += h
wm[entry] -= h
fd = (loss(wp) - loss(wm)) / (2 * h)
rounding = np.finfo(np.float64).eps * loss(wa) / h
print(f"dL/dw{entry}: conv2d_weight = {grad[entry]:.8f}, finite difference = {fd:.8f}")
print(f"|difference| = {abs(grad[entry] - fd):.1e}, "
      f"rounding scale eps*|L|/h = {rounding:.1e}")
assert abs(grad[entry] - fd) < 100 * rounding

# %% [markdown]
# ## 8. Filters on a picture
# No data files here, so we draw a 28x28 shape (a ring with a cross, MNIST-sized) and apply
# F = 4 hand-made 3x3 filters at once, w of shape (F, C, KH, KW) = (4, 1, 3, 3), padding 1 so
# the maps stay 28x28. Look for: the vertical-edge filter lights up on left/right borders
# (positive on one side, negative on the other), the horizontal one on top/bottom borders,
# the Laplacian on every outline, and the box blur just softens the shape.

# %%
r, c = np.mgrid[0:28, 0:28]
dist = np.hypot(r - 13.5, c - 13.5)
img = ((dist > 7) & (dist < 11)).astype(np.float64)
img[12:16, 4:24] = 1.0  # horizontal bar
img[4:24, 12:16] = 1.0  # vertical bar
sobel = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
laplace = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
filters = np.stack([sobel, sobel.T, laplace, np.ones((3, 3)) / 9])   # (F, KH, KW)
names = ["vertical edges", "horizontal edges", "Laplacian", "box blur"]
maps = conv2d(img[None, None], filters[:, None], padding=1)
print("image", img[None, None].shape, " filters", filters[:, None].shape,
      " maps", maps.shape)
assert maps.shape == (1, 4, 28, 28)

fig, axes = plt.subplots(2, 3, figsize=(9, 6.2))
axes = axes.ravel()
axes[0].imshow(img, cmap="gray")
axes[0].set_title("input 28x28")
for ax, m, name in zip(axes[1:], maps[0], names):
    lim = np.abs(m).max()
    if name == "box blur":
        ax.imshow(m, cmap="gray", vmin=0, vmax=lim)
    else:                        # signed responses: red positive, blue negative
        ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(name)
for ax in axes:
    ax.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 9. The readable ops and the fast path
# Everything above used the readable ops of `minimal_ep/conv.py`: each a few lines around
# im2col or col2im, with its arguments checked. A network computes the same numbers faster
# with the code of `minimal_ep.fast`: the columns of the whole batch laid out for **one**
# matrix product, buffers reused from step to step, and each conv layer fused with its
# pooling (tutorial 02, section 8). Which code runs is chosen once, when the network is
# built: `build_network(...)` swaps its conv layers for the fast ones (`fast=True`, the
# default), and `build_network(..., fast=False)` keeps the readable ones, the code to step
# through in a debugger. Nothing switches inside the ops: `minimal_ep.conv2d` is always the
# readable one. Look for: two layer classes, one answer (here the first layer's forward
# route, a convolution followed by 2x2 average pooling, tutorials 02-03).

# %%
import minimal_ep as mep  # noqa: E402

digits = rng.random((2, 1, 28, 28))
nets = {fast: mep.build_network(spiking=False, dtype="float64", seed=SEED, fast=fast)
        for fast in (True, False)}
routes = {}
for fast, net in nets.items():
    routes[fast], _ = net.forward_route(1, digits)
    print(f"build_network(..., fast={fast}): conv layer 1 is a "
          f"{type(net.layers[1]).__name__}")
gap = np.abs(routes[True] - routes[False]).max()
print(f"max |fast - readable| of layer 1's forward route: {gap:.1e}")
assert np.allclose(routes[True], routes[False], rtol=0, atol=1e-12)

# %% [markdown]
# ## What we learned
# - `im2col` turns convolution into one matrix product:
#   `(F, C*KH*KW) @ (C*KH*KW, OH*OW)`.
# - $OH = \lfloor (H + 2\,\mathrm{padding} - K_H) / \mathrm{stride} \rfloor + 1$; `col2im`
#   adds columns back, so `col2im(im2col(x))` is x times the number of windows covering each
#   pixel (the adjoint, not the inverse).
# - `conv_transpose2d` is the exact adjoint of `conv2d` in x: the backward route
#   $w \,\tilde{*}\, s$ of Eq. 9, by which a layer hears the layer above through the same
#   weights.
# - `conv2d_weight` is the adjoint in w: input correlated with output signal, the gradient
#   and the EP weight update (Eq. 11); it agrees with finite differences.
# - A network runs these readable ops when built with `fast=False`; by default
#   `minimal_ep.fast` swaps in conv layers that compute the same numbers faster.

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/01_convolution.py` (run it as a script;
# `tests/test_solutions.py` checks what each one establishes). To hand in: fill in the stubs
# of `tutorials/exercises/01_convolution.py` (copy the folder first) and grade them with
# `make grade DIR=your/folder`.
#
# 1. **The weight gradient from im2col.** Write `my_conv2d_weight(x, gy, KH, KW, stride,
#    padding)` with `im2col` and one matrix product per image
#    (`gy[n].reshape(F, -1) @ col[n].T`, summed over n). Check it against `conv2d_weight` and
#    with the adjoint identity of section 7, for stride 2 and padding 1.
# 2. **Overlap counts, predicted.** Along one axis, pixel h is covered by every window whose
#    start $i \cdot \mathrm{stride}$ satisfies
#    $i \cdot \mathrm{stride} \le h < i \cdot \mathrm{stride} + K$. Write this 1-D count and
#    predict the 2-D count map of section 5 as the outer product of two 1-D counts. Check it
#    against `col2im(ones)` for (K, stride) = (3, 1), (3, 2), (5, 3) and (2, 2) on a 9x9
#    map. Which setting leaves pixels that no window covers, and what does that mean for
#    their gradient?
# 3. **The transpose is a full convolution with the flipped kernel.** For stride 1 and no
#    padding, show that `conv_transpose2d(y, w)` equals `conv2d` of y padded by K - 1 on
#    every side with the kernel flipped in both spatial axes and its two channel axes
#    swapped. For stride 2, first insert a zero between neighbouring pixels of y ("dilate"
#    it); check that too.
