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
# # 02 Pooling: max pooling with indices, unpooling, average pooling, and ties
#
# Every convolutional layer of the network is followed by pooling on the forward route, and
# the backward route needs the matching *unpooling* (paper Eq. 9: $\mathcal{P}(w * s)$ up,
# $w \,\tilde{*}\, \mathcal{P}^{-1}(s)$ down). The paper writes $\mathcal{P}^{-1}$, but
# unpooling is not an inverse of pooling (pooling throws information away, nothing can undo
# it): it is its **adjoint**, the distinction tutorial 01 drew between `col2im` and `im2col`,
# and the adjoint is what makes the backward route the gradient of the same primitive
# function as the forward route (tutorial 03). This tutorial builds both pairs, max
# (Eq. 12-14) and average (Eq. 15-16), checks their adjoint identities, and shows why the
# paper drops max pooling in the spiking network (Sec. II-E).
#
# Symbols: N batch, C channels, H x W input size, OH x OW = (H // F) x (W // F) pooled size.
# **Here F is the pooling window** (F x F, stride F), the paper's notation in Eq. 12, not the
# number of filters as in tutorial 01. The works cited are listed in the
# [references](../docs/course/references.md).

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

from minimal_ep import (avg_pool2d, avg_unpool2d, gather_pool2d, max_pool2d,
                        max_unpool2d, upsample_nearest2d)

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"
SEED = int(os.environ.get("MINIMAL_EP_SEED", "0"))  # other weights, other draws
rng = np.random.default_rng(SEED)
np.set_printoptions(precision=2, suppress=True, linewidth=88)
F = 2

# %% [markdown]
# ## 1. Max pooling records where each maximum was
# A 4x4 map (N = C = 1) pools with F = 2 into 2x2. Besides the maxima `y`, `max_pool2d` returns
# `idx`, the offset of the maximum inside its window, numbered row-major $k = pF + q$
# (0 top left, 1 top right, 2 bottom left, 3 bottom right). Decode it with `divmod(k, F)`.

# %%
x = rng.permutation(16).astype(np.float64).reshape(1, 1, 4, 4)
y, idx = max_pool2d(x, F)
print("x (N, C, H, W) =", x.shape, "\n", x[0, 0])
print("y (N, C, OH, OW) =", y.shape, "\n", y[0, 0])
print("idx =\n", idx[0, 0], " dtype", idx.dtype)
for i in range(2):
    for j in range(2):
        p, q = divmod(int(idx[0, 0, i, j]), F)
        print(f"window ({i},{j}): max {y[0, 0, i, j]:4.0f} at offset (p, q) = "
              f"({p}, {q}) -> pixel ({F * i + p}, {F * j + q})")
        assert x[0, 0, F * i + p, F * j + q] == y[0, 0, i, j]

# %% [markdown]
# ## 2. Max-unpooling puts each value back where it came from
# `max_unpool2d(y, idx, F)` (Eq. 14) writes `y` at the recorded offsets and zeros elsewhere.
# Look for: the four maxima of x at their original places, everything else 0.

# %%
u = max_unpool2d(y, idx, F)
print(u[0, 0])
assert np.array_equal(u, np.where(u != 0, x, 0)) and np.count_nonzero(u) == 4

# %% [markdown]
# ## 3. Floor output size: the border is dropped
# $OH = \lfloor H / F \rfloor$: an 11x11 map pools to 5x5, and its last row and column
# belong to no window.
# Unpooling back to 11x11 (pass `output_size`) leaves them zero; without `output_size` you get
# 10x10.

# %%
x11 = rng.random((1, 1, 11, 11))
y11, idx11 = max_pool2d(x11, F)
u11 = max_unpool2d(y11, idx11, F, output_size=(11, 11))
print("11x11 ->", y11.shape[2:], "-> unpooled", u11.shape[2:],
      " (default output size:", max_unpool2d(y11, idx11, F).shape[2:], ")")
print("last row and column of the unpooled map:", u11[0, 0, -1], u11[0, 0, :, -1],
      sep="\n")
assert y11.shape == (1, 1, 5, 5)
assert not u11[0, 0, -1].any() and not u11[0, 0, :, -1].any()

# %% [markdown]
# ## 4. Ties: the first maximum in row-major order wins
# Spikes are 0 or 1, so a window of spikes often has several equal maxima. The rule is
# "first one wins": a window of all ones gives idx 0, and a window with ones at (1,0) and (1,1)
# gives idx 2 = (1, 0).

# %%
s = np.array([[1, 1, 0, 0],
              [1, 1, 1, 1]], dtype=np.float64).reshape(1, 1, 2, 4)
ys, idxs = max_pool2d(s, F)
print("windows:", s[0, 0, :, :2].tolist(), s[0, 0, :, 2:].tolist(),
      " -> idx", idxs[0, 0, 0])
assert idxs[0, 0, 0].tolist() == [0, 2]

# %% [markdown]
# How common are ties? Pool a random spike map (each pixel fires with probability
# $p = 0.3$) and a continuous map of the same size, and count which offset wins. Look for:
# continuous values give every offset about 1/4 of the time; spikes pile up on offset 0,
# which wins whenever the top-left pixel fired (it comes first among the tied ones) and
# whenever the window is silent (four tied zeros): $p + (1 - p)^4 = 0.540$ of the windows,
# decided by the tie rule rather than by the input.

# %%
size = 32 if QUICK else 64
spikes = (rng.random((1, 8, size, size)) < 0.3).astype(np.float64)
cont = rng.random((1, 8, size, size))
ys, idx_sp = max_pool2d(spikes, F)
_, idx_ct = max_pool2d(cont, F)
n_ones = spikes.reshape(1, 8, size // F, F, size // F, F).sum(axis=(3, 5))
print("spike windows with a tied maximum (silent, or >= 2 spikes):",
      f"{np.mean(n_ones != 1):.0%}")
h_sp = np.bincount(idx_sp.ravel(), minlength=4) / idx_sp.size
h_ct = np.bincount(idx_ct.ravel(), minlength=4) / idx_ct.size
plt.figure(figsize=(5, 3))
plt.bar(np.arange(4) - 0.2, h_ct, 0.4, label="continuous input")
plt.bar(np.arange(4) + 0.2, h_sp, 0.4, label="spike input")
plt.xticks(range(4), ["0 (0,0)", "1 (0,1)", "2 (1,0)", "3 (1,1)"])
plt.ylabel("fraction of windows")
plt.title("which offset max_pool2d records")
plt.legend()
plt.show()
# Teaching check, with a tolerance scaled to the sampling noise: each fraction is a
# mean over n windows, so it scatters by about sqrt(p (1 - p) / n) around its
# expected value p.
n_win = idx_sp.size
predicted = {"spikes, offset 0": (h_sp[0], 0.3 + 0.7 ** 4),
             "continuous, offset 0": (h_ct[0], 0.25)}
for name, (measured, p) in predicted.items():
    sigma = np.sqrt(p * (1 - p) / n_win)
    print(f"{name}: measured {measured:.3f}, expected {p:.3f} +- {sigma:.3f}"
          f" ({n_win} windows)")
    assert abs(measured - p) < 5 * sigma

# %% [markdown]
# ## 5. The adjoint identities
# Unpooling with fixed indices is linear in y, and its adjoint takes the value at the recorded
# offset from each window (`gather_pool2d`):
#
# $$\langle \mathcal{P}^{-1}_{\max}(y, I^F),\, x \rangle
#   = \langle y,\, \mathrm{gather}(x, I^F) \rangle ,$$
#
# with $I^F$ the recorded indices (the paper's $I^F(X)$ of Eq. 13). Average pooling is
# linear too, and its adjoint is nearest-neighbour upsampling divided by $F^2$, which is
# `avg_unpool2d` with its default $\alpha = F^2$. We check both on 11x11 maps with random
# indices (so the dropped border is included), in float64.

# %%
xa = rng.standard_normal((2, 3, 11, 11))
ya = rng.standard_normal((2, 3, 5, 5))
idx_r = rng.integers(0, F * F, size=ya.shape).astype(np.int32)
lhs = np.sum(max_unpool2d(ya, idx_r, F, output_size=(11, 11)) * xa)
rhs = np.sum(ya * gather_pool2d(xa, idx_r, F))
print(f"max:  <unpool(y), x> = {lhs:.12f}   <y, gather(x)> = {rhs:.12f}")
assert np.isclose(lhs, rhs, rtol=1e-12)
lhs = np.sum(avg_pool2d(xa, F) * ya)
rhs = np.sum(xa * avg_unpool2d(ya, F, output_size=(11, 11)))
print(f"avg:  <avg_pool(x), y> = {lhs:.12f}   <x, avg_unpool(y)> = {rhs:.12f}")
assert np.isclose(lhs, rhs, rtol=1e-12)
# gathering at max_pool2d's own indices returns the maxima themselves
assert np.array_equal(gather_pool2d(x11, idx11, F), y11)

# %% [markdown]
# ## 6. The paper's point in miniature (Sec. II-E)
# In the spiking network the forward route pools a map $z = w * s$ and records the indices.
# But the backward route does not unpool those pooled values: it unpools the **spikes of the
# layer above**, which encode that layer's own state (Eq. 10). That state is driven by the
# pooled values, but also by the layer above it, by its bias and by its own past (it moves
# a step $\epsilon$ at a time), and its spikes are 0s and 1s whose *rate* tracks it
# (tutorial 05), not any one step's value. Toy version: the spikes of the pooled layer are
# Bernoulli(y), drawn with the same uniform numbers for the max route and the average
# route.

# %%
z = rng.random((1, 1, 8, 8)) ** 3        # activity: mostly small values, a few large
y, idx = max_pool2d(z, F)
y_avg = avg_pool2d(z, F)
draw = rng.random(y.shape)
s_max, s_avg = (draw < y).astype(np.float64), (draw < y_avg).astype(np.float64)
back_cont = max_unpool2d(y, idx, F)      # the pooled values, at their own indices
back_max = max_unpool2d(s_max, idx, F)   # spiking network: spikes at forward indices
back_avg = avg_unpool2d(s_avg, F)        # average pooling: spread over the window
print("pooled y =\n", y[0, 0], "\nspikes s =\n", s_max[0, 0])
print("windows that fired although their max was < 0.5:",
      int(np.sum((s_max == 1) & (y < 0.5))),
      "   silent although max > 0.5:", int(np.sum((s_max == 0) & (y > 0.5))))

# %% [markdown]
# `back_cont` is the continuous picture only **at the fixed point**: there the indices no
# longer change from step to step, so the backward route puts $s_{n+1}$ back at the maxima
# that charged it. While a continuous network is still settling its indices can move too.
#
# Each spike is a full 1 sent to exactly the pixel that won the forward comparison, whatever
# the margin; a window that fired with a small maximum looks as strong as one with a large
# maximum, and a silent window sends nothing to its winner. Worse, the winner itself is
# fragile: the layer below is spiking too, so z jitters from step to step while the spikes
# of the layer above integrate over many steps, and a spike arrives at the position chosen
# by the current maxima, not by the ones that charged it. How many winners does a jitter of
# standard deviation 0.05 move? 16 windows are too few to say, so we count on 8 channels of
# 64x64 drawn the same way. With SEED = 0 we measured 8.6% of the windows.

# %%
z_big = rng.random((1, 8, 64, 64)) ** 3
_, idx_big = max_pool2d(z_big, F)
_, idx_jit = max_pool2d(z_big + 0.05 * rng.standard_normal(z_big.shape), F)
moved = float(np.mean(idx_jit != idx_big))
print(f"windows whose winning offset moved after a jitter of 0.05: {moved:.1%}"
      f" of {idx_big.size}")

# %% [markdown]
# Average pooling needs no indices: the backward route copies every value onto its whole window
# (Eq. 16), so there is nothing to mismatch. Look for: the max-unpooled spikes are isolated dots
# at a quarter of the positions at most; the nearest-neighbour map is made of full 2x2 blocks.

# %%
panels = [(z, "z (forward, before pooling)"),
          (back_cont, "max_unpool2d(y, idx)\ncontinuous"),
          (back_max, "max_unpool2d(spikes, idx)\nspiking, max route"),
          (upsample_nearest2d(s_avg, F),
           "upsample_nearest2d(spikes)\nspiking, avg route")]
fig, axes = plt.subplots(2, 2, figsize=(7.5, 7.8))
for ax, (m, title) in zip(axes.ravel(), panels):
    ax.imshow(m[0, 0], cmap="magma", vmin=0, vmax=1)
    ax.set_title(title, fontsize=10)
    ax.set_xticks(np.arange(-0.5, 8, F), minor=True)
    ax.set_yticks(np.arange(-0.5, 8, F), minor=True)
    ax.grid(which="minor", color="w", lw=1)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 7. Magnitudes and the scale alpha (Eq. 16)
# Sum each backward map and divide by the sum of the spikes it came from. Max-unpooling
# keeps the total (each spike lands once). Nearest-neighbour unpooling copies each spike to
# $F^2 = 4$ pixels, so $\alpha$ decides the magnitude: $\alpha = F^2$ keeps the total (and
# is the exact adjoint of average pooling, the paper's choice), $\alpha = 1$ multiplies it
# by $F^2$. $\alpha$ is the knob that balances the backward route against the forward
# route.
#
# How far apart are the two routes in a real network? The paper (Sec. II-E, Fig. 2) reports
# forward/backward magnitude ratios of a few times for a continuous network with max pooling
# and up to ten times for the spiking one, largest in the shallow layers, with average
# pooling balancing them; and it concludes that max pooling breaks spiking EP while average
# pooling restores it. This project measured both on the paper's five-layer net, trained by
# EP (the [figures page](../docs/FIGURES.md), `make figures`). The conclusion holds:
# with max pooling the spiking net stays at chance and its conv layers' EP estimates are
# uncorrelated with spiking BPTT's surrogate gradient (itself an estimate, not the true
# gradient: the spike threshold has no derivative), while with average pooling it learns
# and the estimates align, as for the continuous net. The explanation by magnitudes only
# partly: the ratios grow with depth in every net, continuous ones included, and on
# identical weights spikes change them little. Exercise 3 of tutorial 03 measures the ratio
# yourself.

# %%
rows = [("max_unpool2d", s_max, max_unpool2d(s_max, idx, F)),
        ("avg_unpool2d, alpha = F*F", s_avg, avg_unpool2d(s_avg, F)),
        ("avg_unpool2d, alpha = 1", s_avg, avg_unpool2d(s_avg, F, alpha=1))]
for name, pooled, back in rows:
    print(f"{name:26s} sum(back)/sum(spikes) {back.sum() / pooled.sum():.2f}   "
          f"nonzero {np.count_nonzero(back) / back.size:.0%}   peak {back.max():.2f}")
assert np.isclose(rows[0][2].sum(), s_max.sum())
assert np.isclose(rows[1][2].sum(), s_avg.sum())
assert np.isclose(rows[2][2].sum(), F * F * s_avg.sum())

# %% [markdown]
# ## 8. Average pooling after a convolution is one convolution
# Average pooling is linear, and so is the convolution before it, so the two together are
# one linear map, and a simple one: the average of $F^2$ copies of the $K \times K$ kernel,
# each shifted by one of the $F^2$ window offsets, is a $(K+F-1) \times (K+F-1)$ kernel
# $A(w)$, applied with stride F:
#
# $$\mathcal{P}(w * x)_{I,J}
#   = \frac{1}{F^2} \sum_{a,b=0}^{F-1} \sum_{p,q=0}^{K-1} w_{p,q}\, x_{FI+a+p,\,FJ+b+q}
#   = \sum_{r,t=0}^{K+F-2} A(w)_{r,t}\, x_{FI+r,\,FJ+t} .$$
#
# It skips the full-resolution map and the pooling pass, and needs
# $(K+F-1)^2 / (F^2 K^2)$ of the multiply-adds: 16/36 for a 3x3 kernel and F = 2. The
# backward route of average pooling is its transpose times $F^2 / \alpha$, so it is one
# transposed convolution with the same kernel. This is how the fast path computes a conv
# layer with average pooling (`ConvAvgPool` in `minimal_ep/fast/layers.py`), swapped in when
# a network is built (`build_network(..., fast=True)`, the default; `fast=False` keeps the
# two-step `ConvPool` of `minimal_ep/layers.py`). Below, by hand, on a 13x13 input whose
# convolution is 11x11 (floor pooling drops its last row and column in both forms).

# %%
from minimal_ep import conv2d, conv_transpose2d  # noqa: E402

x = rng.random((2, 3, 13, 13))
w = rng.standard_normal((4, 3, 3, 3))
A = np.zeros((4, 3, 4, 4))
for a in range(F):
    for b in range(F):
        A[:, :, a:a + 3, b:b + 3] += w / (F * F)    # F*F shifted copies, averaged
two_steps = avg_pool2d(conv2d(x, w), F)                     # 11x11 map, then 5x5
one_step = conv2d(x, A, stride=F)                           # straight to 5x5
print("conv then average pooling:", two_steps.shape,
      "  one stride-2 convolution:", one_step.shape)
print("forward route, the two ways: max |difference|",
      f"{np.abs(two_steps - one_step).max():.1e}")
s = rng.random(two_steps.shape)                     # a layer's state, pooled size
back_two = conv_transpose2d(avg_unpool2d(s, F, F * F, (11, 11)), w,
                            output_size=(13, 13))
back_one = conv_transpose2d(s, A, stride=F, output_size=(13, 13))
print("backward route, the two ways: max |difference|",
      f"{np.abs(back_two - back_one).max():.1e}")
assert np.allclose(two_steps, one_step) and np.allclose(back_two, back_one)

# %% [markdown]
# ## What we learned
# - `max_pool2d` returns the maxima and their row-major window offsets $pF + q$; the output
#   size is floored, and unpooling leaves the dropped border at zero.
# - Unpooling is the **adjoint** of pooling, not its inverse: `max_unpool2d` and
#   `gather_pool2d` are adjoints; so are `avg_pool2d` and `avg_unpool2d` with
#   $\alpha = F^2$.
# - With binary spikes ties are the rule, and the first maximum in row-major order wins.
# - In a spiking network the backward route unpools the spikes of the layer above with
#   indices that were recorded from other values, so max-unpooling places signals the
#   forward route no longer justifies. Average pooling with nearest-neighbour unpooling needs
#   no indices, and $\alpha$ sets the backward magnitude (Eq. 16).
# - Average pooling after a stride-1 convolution is itself a convolution, with stride F and
#   the box-averaged kernel; its backward route is the transposed convolution with the same
#   kernel.

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/02_pooling.py`. To hand in: the stubs of
# `tutorials/exercises/02_pooling.py`, graded by `make grade DIR=your/folder`.
#
# 1. **A real mismatch.** In section 6 the spikes were unpooled with the indices they were
#    pooled with, so `back_max` puts every spike on a true maximum of z. Make the mismatch
#    visible: unpool the spikes with the indices of the jittered map (the "other route",
#    `max_pool2d(z + noise)`) and measure, on 8 channels of 64x64, the fraction of unpooled
#    spikes that land on a pixel that is **not** the maximum of its window in z. How does it
#    grow with the jitter's standard deviation (0.01, 0.05, 0.2)?
# 2. **avg_unpool2d by hand.** Implement `my_avg_unpool2d(y, F, alpha, output_size)` with
#    `np.repeat` (and zero padding for the dropped border), check it against `avg_unpool2d`,
#    and pass the adjoint test
#    $\langle \mathrm{avg\_pool2d}(x), y \rangle = \langle x, \mathrm{my\_avg\_unpool2d}(y, F, F^2) \rangle$
#    on 11x11 maps. Which $\alpha$ makes it the adjoint for F = 3?
# 3. **Ties by the numbers.** For spikes firing with probability p, derive the fraction of
#    windows where max pooling records offset 0 (section 4 used p = 0.3), for any window
#    size F, and check your formula with `max_pool2d` for p = 0.1, 0.5 and 0.9.
