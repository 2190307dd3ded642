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
# # 06 Spiking convolutional EP, end to end, and the pooling mismatch
#
# Everything so far, together: a spiking convolutional network (tutorial 05) trained with EP
# (tutorial 04) on MNIST digits, in an explicit loop you can step through. Then the paper's
# point (Sec. II-E, tutorial 02): with **max** pooling the spiking network's backward route
# unpools spikes with indices recorded from other values, and we measure what that does to
# its fixed point and to its EP gradients, against **average** pooling.
#
# The settings are scaled down from the paper's to run in well under a minute on a CPU. The
# paper trains conv layers of 128 and 256 channels (Sec. III) for 250 epochs with
# $T_{\mathrm{free}}$ = 250 steps on MNIST and 350 on Fashion-MNIST (Table I). Table I's
# $\epsilon = 0.9$ (MNIST; 1.0 for Fashion-MNIST) and $\lambda = 0.6$ (both) were tuned for
# those long phases; for phases of 40 steps we use a slower, smoother setting:
# $\epsilon = 0.3$, $\lambda = 0.3$ (tutorial 05: smaller $\lambda$, less spike jitter),
# $\beta = 0.2$, $T_{\mathrm{free}} = 40$, $T_{\mathrm{nudge}} = 15$. The works cited are
# listed in the [references](../docs/course/references.md).

# %%
import os

# One BLAS thread, set before NumPy is imported: the matrices here are small, so
# more threads only add waiting, and a fixed thread count keeps the printed numbers
# the same from run to run (export OPENBLAS_NUM_THREADS to override; restart the
# kernel after changing it).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
import time

import matplotlib.pyplot as plt
import numpy as np

import minimal_ep as mep
from minimal_ep import datasets
from minimal_ep.run.gradcheck import cosine
from minimal_ep.optim import SGD

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"  # smaller sizes, a few seconds
SEED = int(os.environ.get("MINIMAL_EP_SEED", "0"))  # other weights, other draws
BATCH = 20
N_BATCHES = 3 if QUICK else 250        # batches of training (normal: 5000 images, once)
N_TEST = 40 if QUICK else 500
BETA, T_FREE, T_NUDGE = 0.2, 40, 15
LRS = [0.5, 0.3, 0.2, 0.16]            # one learning rate per layer, w1 first (Table I)
np.set_printoptions(precision=3, suppress=True, linewidth=88)

# %% [markdown]
# ## 1. The data
# `load_dataset("mnist")` returns the class-balanced subset shipped inside the package (5000
# training and 1000 test images, no download); `to_float_images` scales to [0, 1] and adds the
# channel axis.

# %%
data = datasets.load_dataset("mnist")
x_train = datasets.to_float_images(data["train_images"], "float32")
y_train = data["train_labels"]
x_test = datasets.to_float_images(data["test_images"][:N_TEST], "float32")
y_test = data["test_labels"][:N_TEST]
print("source", data["source"], "  train", x_train.shape, x_train.dtype,
      "  test", x_test.shape)
print("labels of the first 20 training images:", y_train[:20])

# %% [markdown]
# ## 2. A small spiking convolutional network
# conv 8 (3x3) -> avg pool -> conv 16 -> avg pool -> dense 64 -> 10 outputs, MSE loss, float32.

# %%
net = mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(64,),
                        pool="avg", spiking=True, eps=0.3, lam=0.3, loss="mse",
                        dtype="float32", seed=SEED)
print("layer shapes", net.shapes[1:])
print("weights", {k: v.shape for k, v in net.params.items() if k.startswith("w")})
print("parameters in total", sum(v.size for v in net.params.values()))

# %% [markdown]
# ## 3. Training with EP, one batch at a time
# Per batch: a free phase from rest (its output is the prediction), two nudged phases from
# the free state with $+\beta$ and $-\beta$ (inside `ep_gradients`, symmetric estimator,
# Eq. 5), and an SGD step with one learning rate per layer. The training error is counted on
# the free phase, before the update (`net.free_phase` returns the free state and the phase's
# report, whose `spike_stats()` gives the firing rates). Look for: the error falling from
# chance (0.9).
#
# Our normal-mode run (SEED = 0, one pass over the 5000 images, one BLAS thread,
# `python tutorials/06_spiking_conv_ep.py`, also what the course site shows): the training
# error over the last 25 batches went from 0.85 at batch 25 to 0.14 at batch 250, and the
# test error (section 4) was **21.4%**. These are single runs, and the exact numbers depend
# on the BLAS library and its thread count: float32 sums are added in another order, a spike
# threshold turns a tiny difference into a different spike, and the whole trajectory
# changes (which is why the first cell fixes one thread). So a difference of a point or two
# between two such runs says nothing about a setting. Longer training, learning-rate decay
# and a wider net go further.

# %%
opt = SGD(net.params, LRS)
order = np.random.default_rng(SEED).permutation(len(y_train))
errors, start = [], time.perf_counter()
for b in range(N_BATCHES):
    idx = order[b * BATCH:(b + 1) * BATCH]
    xb, yb = x_train[idx], y_train[idx]
    free, report = net.free_phase(xb, T_FREE)
    errors.append(float(np.mean(net.predict(free) != yb)))
    grads = mep.ep_gradients(net, xb, yb, BETA, T_FREE, T_NUDGE, "symmetric",
                             free_state=free)
    opt.step(grads)
    if (b + 1) % 25 == 0 or b + 1 == N_BATCHES:
        print(f"batch {b + 1:3d}: training error over the last 25 batches "
              f"{np.mean(errors[-25:]):.2f}   ({time.perf_counter() - start:.0f} s)")
stats = report.spike_stats()
print("firing rates of the last free phase:", [round(row["rate"], 3) for row in stats])
assert all(np.isfinite(v).all() for v in net.params.values())

# %%
window = min(10, N_BATCHES)
smooth = np.convolve(errors, np.ones(window) / window, mode="valid")
plt.figure(figsize=(6, 3.5))
plt.plot(np.arange(1, N_BATCHES + 1), errors, ".", alpha=0.3, label="per batch")
plt.plot(np.arange(window, N_BATCHES + 1), smooth, label=f"mean of {window} batches")
plt.axhline(0.9, color="k", ls=":", lw=1, label="chance")
plt.xlabel("batch")
plt.ylabel("training error")
plt.legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Test predictions
# A free phase on held-out digits; the prediction is the most active output neuron.

# %%
test_state, _ = net.free_phase(x_test, T_FREE)
pred = net.predict(test_state)
test_error = float(np.mean(pred != y_test))
print(f"test error on {N_TEST} images after {N_BATCHES * BATCH} training images:",
      f"{test_error:.1%}")
fig, axes = plt.subplots(2, 4, figsize=(9, 5))
for ax, i in zip(axes.ravel(), range(8)):
    ax.imshow(x_test[i, 0], cmap="gray")
    ax.set_title(f"pred {pred[i]} / true {y_test[i]}", fontsize=9,
                 color="g" if pred[i] == y_test[i] else "r")
    ax.axis("off")
plt.show()
if not QUICK:
    assert test_error < 0.6

# %% [markdown]
# ## 5. The pooling mismatch: where does the SNN settle?
# A spiking network should settle near the fixed point of the CRNN with the same weights
# (tutorial 05). We build both, with fresh weights from one seed, for average and for max
# pooling, run the CRNN to convergence (with $\epsilon = 0.8$: same fixed point, fewer steps,
# tutorial 03) and the SNN for a free phase, and measure the mean
# $\lvert \xi_{\mathrm{snn}} - \xi_{\mathrm{crnn}} \rvert$ per layer, also relative to the
# CRNN's mean activity.

# %%
x_p = x_train[:BATCH]
arch = dict(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(64,), eps=0.3,
            loss="mse", dtype="float32", seed=SEED)
gap = {}
for pool in ("avg", "max"):
    # the same weights as the SNN's; eps = 0.8 settles faster to the same fixed point
    crnn = mep.build_network(pool=pool, spiking=False, **dict(arch, eps=0.8))
    snn = mep.build_network(pool=pool, spiking=True, lam=0.3, **arch)
    ref, ref_report = crnn.free_phase(x_p, 100 if QUICK else 200)
    st, _ = snn.free_phase(x_p, T_FREE if QUICK else 100)
    absolute = np.array([float(np.abs(a - b).mean())
                         for a, b in zip(st.xi[1:], ref.xi[1:])])
    gap[pool] = absolute / np.array([float(np.abs(b).mean()) for b in ref.xi[1:]])
    print(f"{pool}: CRNN residual {ref_report.residual:.0e};"
          f"  mean |xi_snn - xi_crnn| per layer {absolute}"
          f"\n     relative to mean |xi_crnn|: {gap[pool]}")
assert np.all(gap["max"][:2] > 2 * gap["avg"][:2])

# %% [markdown]
# Look for: with average pooling the spiking states stay within a few percent of the CRNN's
# in the conv layers (with SEED = 0: 0.016 and 0.051 of the mean activity); with max pooling
# they are off by about a third (0.306 and 0.279). The dense layers inherit part of it (0.153
# and 0.154 against 0.247 and 0.331). The quantisation noise is the same; what differs is
# where the backward route puts it (tutorial 02, section 6).
#
# ## 6. The pooling mismatch: EP against BPTT in the spiking network
# Spiking BPTT (`bptt_gradients` on the spiking net) is the baseline the paper trains
# against. It is not the true gradient: the spike threshold has no useful derivative, so it
# backpropagates through a triangular *surrogate* of it, and what it returns is a
# surrogate-gradient estimate. One batch's spiking EP estimate is noisy too (the $+\beta$
# and $-\beta$ phases spike differently, and the difference is divided by $2\beta$), so we
# **sum the gradients of several batches** before taking the cosine per weight tensor, and
# also report the ratio of norms.

# %%
n_grad = 1 if QUICK else 12
cos, ratio = {}, {}
for pool in ("avg", "max"):
    snn = mep.build_network(pool=pool, spiking=True, lam=0.3, **arch)
    g_ep = {k: 0.0 for k in snn.params}
    g_bp = {k: 0.0 for k in snn.params}
    for b in range(n_grad):
        xb, yb = x_train[b * BATCH:(b + 1) * BATCH], y_train[b * BATCH:(b + 1) * BATCH]
        ep = mep.ep_gradients(snn, xb, yb, BETA, T_FREE, T_NUDGE, "symmetric")
        bp = mep.bptt_gradients(snn, xb, yb, T_FREE)
        for k in snn.params:
            g_ep[k] = g_ep[k] + ep[k].astype(np.float64)
            g_bp[k] = g_bp[k] + bp[k].astype(np.float64)
    weights = [k for k in snn.params if k.startswith("w")]
    cos[pool] = [cosine(g_ep[k], g_bp[k]) for k in weights]
    ratio[pool] = [float(np.linalg.norm(g_ep[k]) / np.linalg.norm(g_bp[k]))
                   for k in weights]
    print(f"{pool}: summed over {n_grad} batches, per weight {weights}"
          f"\n     cosine(EP, BPTT) {np.round(cos[pool], 2)}"
          f"   ||EP|| / ||BPTT|| {np.round(ratio[pool], 1)}")

fig, ax = plt.subplots(figsize=(6, 3.5))
pos = np.arange(len(weights))
ax.bar(pos - 0.2, cos["avg"], 0.4, label="avg pooling")
ax.bar(pos + 0.2, cos["max"], 0.4, label="max pooling")
ax.axhline(0, color="k", lw=0.8)
ax.set_xticks(pos, weights)
ax.set_ylabel("cosine(spiking EP, spiking BPTT)")
ax.legend()
plt.tight_layout()
plt.show()
assert np.mean(ratio["max"][:2]) > 2 * np.mean(ratio["avg"][:2])
if not QUICK:
    assert np.mean(cos["avg"][:2]) > np.mean(cos["max"][:2])

# %% [markdown]
# What we measured (normal mode, SEED = 0, one BLAS thread, 12 batches of 20): with
# average pooling the EP estimates have about BPTT's norm in every layer (ratios 1.3, 1.2,
# 1.1 and 1.3 for w1 to w4); with max pooling the conv layers' are about eight times too
# large (8.2 and 8.7), while the dense layers keep the right scale. That is what the index
# mismatch predicts: spikes unpooled where the forward route no longer puts its maxima add a
# large component to the $+\beta$ / $-\beta$ difference that BPTT does not see.
#
# The cosines of this one seed look like a clean split too (0.71 and 0.44 for w1 and w2
# with average pooling, against -0.36 and 0.11 with max pooling), but **one seed is not
# enough to claim that the conv layers align with BPTT under average pooling**: the first
# layer's cosine is the noisiest of all (it is furthest from the output, and its signal has
# passed through every spiking layer), and it changes a lot with the weights' seed.
# Exercise 1 repeats the measurement over five seeds with error bars: check which of these
# statements survive before you repeat them. The dense layers go the other way in this run
# (cosines 0.50 with average pooling, 0.88 and 0.93 with max pooling), which this experiment
# does not explain. With one batch (quick mode) every cosine is noise, and only the norm
# ratio separates the two poolings reliably.
#
# ## What we learned
# - A spiking convolutional network learns MNIST digits with EP in a plain loop: free phase,
#   two nudged phases, `ep_gradients`, one SGD step with per-layer rates.
# - With average pooling the SNN settles close to the CRNN with the same weights; with max
#   pooling it settles much further away, most in the conv layers.
# - Spiking BPTT is a surrogate-gradient estimate, and spiking EP estimates are noisy per
#   batch. Summed over batches, with average pooling the EP estimates have the right scale
#   in every layer; with max pooling the conv layers' are several times too large (the
#   pooling mismatch). Whether a conv layer's *direction* agrees with BPTT's needs more
#   than one seed to tell (exercise 1).

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/06_spiking_conv_ep.py`. To hand in: the stubs of
# `tutorials/exercises/06_spiking_conv_ep.py`, graded by `make grade DIR=your/folder`.
#
# 1. **Error bars.** Section 6 is one seed. Repeat it for SEED = 0..4 (fresh weights each
#    time, the same 12 batches) and report, per weight tensor and pooling, the mean and
#    standard deviation of the cosine and of the norm ratio over the seeds; plot the cosines
#    as bars with error bars. Which of section 6's statements survive?
# 2. **How long must the spiking net run?** For $T_{\mathrm{free}}$ = 10, 20, 40 and 80,
#    measure the SNN's relative distance from the CRNN's fixed point (section 5) in the two
#    conv layers, for both poolings. Does a longer free phase close the gap with max
#    pooling?
# 3. **Spiking EP against continuous EP.** The CRNN with the same weights has no spikes and
#    no index mismatch. Compute its EP estimate (same $\beta$ and phases) and the cosine
#    between the spiking and the continuous estimates, summed over 12 batches, for both
#    poolings. In which layers do the spikes, and in which does the pooling, cost the most
#    agreement?

