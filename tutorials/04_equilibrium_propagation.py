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
# # 04 Equilibrium Propagation: nudging, the two estimators, and the GDD picture
#
# Tutorial 03 let the network settle to a fixed point $s^*$ (the *free phase*). EP learns by
# settling a second time with the output gently pulled towards the target, and comparing.
# The nudged phase starts from $s^*$ and adds $\beta\,(y - s_{\mathrm{out}})$ to the
# output's input, giving $s^\beta$; then
#
# $$\text{one-sided (Eq. 4):}\quad \frac{\partial L}{\partial \theta} \approx
#   -\frac{1}{\beta}\Big( \frac{\partial \Phi}{\partial \theta}(s^{\beta})
#   - \frac{\partial \Phi}{\partial \theta}(s^{*}) \Big)$$
#
# $$\text{symmetric (Eq. 5):}\quad \frac{\partial L}{\partial \theta} \approx
#   -\frac{1}{2\beta}\Big( \frac{\partial \Phi}{\partial \theta}(s^{\beta})
#   - \frac{\partial \Phi}{\partial \theta}(s^{-\beta}) \Big)$$
#
# **From the paper's notation.** The paper writes Eq. 4-5 with its energy E:
# $\Delta w = \frac{1}{\beta}\big(\frac{\partial E}{\partial w}(\xi^\beta) - \frac{\partial E}{\partial w}(\xi^*)\big)$.
# This implementation uses the primitive function $\Phi$ of tutorial 03, with
# $E = \tfrac{1}{2}\lVert s \rVert^2 - \Phi$. The $\tfrac{1}{2}\lVert s \rVert^2$ term does
# not depend on the weights, so $\partial E / \partial \theta = -\partial \Phi / \partial \theta$:
# that is the minus sign above, and the paper's $\Delta w$ is this estimate of
# $\partial L / \partial \theta$, which training *descends*
# ($\theta \leftarrow \theta - \eta\, \Delta w$). The paper's Eq. 11, Eq. 5 written out per
# layer with products of states, has no minus sign: it is the change to *add* to the
# weights, $-\Delta w$.
#
# Both use only quantities local to each synapse. Section 4 derives why they estimate the
# gradient (Scellier & Bengio 2017); section 5 checks them against backpropagation through
# time (BPTT) and finite differences; section 6 looks at the step-by-step correspondence
# between EP and BPTT (GDD, Ernoult et al. 2019). The papers are listed in the
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

import minimal_ep as mep
from minimal_ep import avg_pool2d, avg_unpool2d, conv2d_weight, datasets
from minimal_ep.ep import ep_per_step_updates
from minimal_ep.run.gradcheck import cosine, gdd_metrics, relative_error
from minimal_ep.optim import SGD

QUICK = os.environ.get("MINIMAL_EP_QUICK", "0") == "1"  # smaller sizes, a few seconds
SEED = int(os.environ.get("MINIMAL_EP_SEED", "3"))  # other weights, other draws
FD_ENTRIES = 4 if QUICK else 10  # finite differences: entries per tensor
T = 100                         # free phase; T_NUDGE for each nudged phase
T_NUDGE = 60
np.set_printoptions(precision=4, suppress=True, linewidth=88)

# %% [markdown]
# ## 1. A small float64 network, settled
# Finite differences need many free phases, so we keep everything small: 8 MNIST digits
# average-pooled to 14x14, two conv layers of 4 and 8 channels, a hidden layer of 16, 10
# outputs, the MSE loss
# $L = \frac{1}{N}\sum_{i} \tfrac{1}{2}\lVert s_{\mathrm{out},i} - \mathrm{onehot}(y_i) \rVert^2$
# (a batch mean), float64, $\epsilon = 1$ (the fixed-point iteration; tutorial 03 showed it
# settles at this weight scale, and we check). EP compares fixed points, so the free phase
# must really have settled: some seeds settle slowly, and then we double T (and T_NUDGE)
# until the residual is below $10^{-10}$ (or T reaches 800).

# %%
data = datasets.load_dataset("mnist")
x = avg_pool2d(datasets.to_float_images(data["train_images"][:8], "float64"), 2)
y = data["train_labels"][:8]
net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(4, 8), hidden=(16,),
                        pool="avg", spiking=False, loss="mse", dtype="float64",
                        seed=SEED, eps=1.0)
L = net.n_layers
free, report = net.free_phase(x, T)     # the last state s*, and how far it settled
while report.residual > 1e-10 and T < 800:
    T, T_NUDGE = 2 * T, 2 * T_NUDGE      # slow settling: longer nudged phases too
    free, report = net.free_phase(x, T)
print("x", x.shape, " layers", net.shapes[1:],
      f" T = {T}, residual {report.residual:.1e}")
print(f"loss at s*: {net.loss(free, y):.4f}   predictions {net.predict(free)}"
      f"   labels {y}")
SETTLED = report.residual < 1e-8        # the teaching checks below need a settled phase
if not SETTLED:
    print("This seed has not settled: the EP estimates below will be off.",
          "Try another SEED.")

# %% [markdown]
# ## 2. Nudging
# `net.nudged_phase(free, y, beta, T)` starts from $s^*$ (which it leaves unchanged) and
# adds $\beta\,(y - s_{\mathrm{out}})$ to the output layer's input; like the free phase it
# returns the last state and the phase's report. The output moves towards the one-hot target
# with $+\beta$ and away from it with $-\beta$, and the layers below follow through the
# backward routes. We step it one step at a time to watch. Look for: the target class's
# output rising with $+\beta$, the others falling, and the reverse with $-\beta$.

# %%
beta_show = 0.2
traj = {}
for sign in (+1, -1):
    st, outs = free, [free.xi[L][0]]
    for _ in range(20):
        st, _ = net.nudged_phase(st, y, sign * beta_show, 1)
        outs.append(st.xi[L][0])
    traj[sign] = np.array(outs)                    # (steps + 1, 10), image 0
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
for ax, sign in zip(axes, (+1, -1)):
    for c in range(10):
        target = c == y[0]
        ax.plot(traj[sign][:, c], lw=2.5 if target else 1,
                label=f"class {c}" if target else None)
    ax.set_title(f"output layer of image 0, beta = {sign * beta_show:+}")
    ax.set_xlabel("nudged step")
axes[0].set_ylabel("s_out")
axes[0].legend()
plt.tight_layout()
plt.show()

plus, _ = net.nudged_phase(free, y, beta_show, T_NUDGE)
minus, _ = net.nudged_phase(free, y, -beta_show, T_NUDGE)
losses = [net.loss(s, y) for s in (minus, free, plus)]
print("loss at s^-beta, s*, s^+beta:", np.round(losses, 4))
assert losses[2] < losses[1] < losses[0]

# %% [markdown]
# The nudge adds $-\beta\, s_{\mathrm{out}}$ to the output's own input, a self-coupling.
# With $\epsilon = 1$ and a large $\beta$ that is enough to start a 2-cycle like the one of
# tutorial 03 (the zigzag at the start of the $+\beta$ plot is its damped version). Look at
# the residuals at the end of the nudged phases:

# %%
for b in (0.1, 0.2, 0.5):
    res = [net.nudged_phase(free, y, sign * b, T_NUDGE)[1].residual
           for sign in (+1, -1)]
    print(f"beta = +-{b}: residual after {T_NUDGE} nudged steps"
          f"  +beta {res[0]:.0e}   -beta {res[1]:.0e}")

# %% [markdown]
# ## 3. How Phi changes with the weights (Eq. 11)
# $\Phi$ is linear in every weight, so its derivatives are products of states: for a dense
# layer $\partial \Phi / \partial w_n = s_n s_{n-1}^\top$, for a conv layer the
# weight-gradient correlation of $s_{n-1}$ with the unpooled $\mathcal{P}^{-1}(s_n)$
# (tutorial 01), for a bias the sum of $s_n$. `net.dphi_dtheta(state)` averages them over the
# batch. By hand for a dense and a conv layer:

# %%
dphi = net.dphi_dtheta(free)
s = free.xi
by_hand_dense = s[4].T @ s[3] / len(x)
unpooled = avg_unpool2d(s[2], 2, 4, net.layers[2].conv_size)       # P^-1(s_2)
by_hand_conv = conv2d_weight(s[1], unpooled, (3, 3)) / len(x)
print("dPhi/dtheta:", {k: v.shape for k, v in dphi.items() if k.startswith("w")})
assert np.allclose(dphi["w4"], by_hand_dense) and np.allclose(dphi["w2"], by_hand_conv)

# %% [markdown]
# ## 4. Why EP computes the gradient: the theorem, derived
# Take one image and stack the states of layers 1..L into one vector $s$. Call
# $F(s, \theta) = \Phi(x, s; \theta) - \tfrac{1}{2}\lVert s \rVert^2$ the function the
# dynamics ascend (tutorial 03, section 4; $F = -E$), and $\ell(s)$ the image's loss,
# $\tfrac{1}{2}\lVert s_{\mathrm{out}} - \mathrm{onehot}(y) \rVert^2$. A fixed point
# satisfies $s = \rho(\partial \Phi / \partial s)$: every unit strictly inside (0, 1) has
# $\partial F / \partial s_i = 0$, and the units at 0 or 1 are pinned there. Call $A$ the
# units inside (0, 1), write $\partial_A$ for the derivatives with respect to them, and
# assume that small changes of $\theta$ and $\beta$ move no unit across 0 or 1 (section 5
# counts the units that do). The nudge adds $-\beta\, \partial \ell / \partial s$ to the
# drive (for the MSE loss, $\beta\,(y - s_{\mathrm{out}})$), so the two fixed points satisfy
#
# $$\partial_A F(s^*, \theta) = 0, \qquad
#   \partial_A F(s^\beta, \theta) = \beta\, \partial_A \ell(s^\beta). \tag{a}$$
#
# **Implicit differentiation.** Let $H = \partial^2_{AA} F = J_{AA} - I$, with
# $J = \partial^2 \Phi / \partial s^2$ the Jacobian of the total inputs, and assume $H$ is
# invertible (the fixed point is isolated). Differentiate the free condition with respect to
# $\theta$, and the nudged one with respect to $\beta$ at $\beta = 0$:
#
# $$H\, \frac{d s^*_A}{d \theta} + \partial_A \partial_\theta F = 0, \qquad
#   H\, \frac{d s^\beta_A}{d \beta}\Big|_{\beta=0} = \partial_A \ell(s^*) . \tag{b}$$
#
# The loss at the free fixed point depends on $\theta$ only through $s^*$, so by the chain
# rule and the first equation of (b)
#
# $$\frac{d \ell(s^*)}{d \theta} = (\partial_A \ell)^\top \frac{d s^*_A}{d \theta}
#   = -(\partial_A \ell)^\top H^{-1}\, \partial_A \partial_\theta F . \tag{c}$$
#
# What EP measures is how $\partial \Phi / \partial \theta$, which equals
# $\partial F / \partial \theta$, moves as the nudge grows: by the second equation of (b),
#
# $$\frac{d}{d\beta} \frac{\partial \Phi}{\partial \theta}(s^\beta) \Big|_{\beta=0}
#   = (\partial_A \partial_\theta F)^\top \frac{d s^\beta_A}{d \beta}\Big|_{\beta=0}
#   = (\partial_A \partial_\theta F)^\top H^{-1}\, \partial_A \ell . \tag{d}$$
#
# **The symmetry.** $H$ is a Hessian, the matrix of second derivatives of *one scalar*
# function, so $H = H^\top$, and then (c) and (d) are the same number up to the sign:
#
# $$\frac{d \ell(s^*)}{d \theta}
#   = -\frac{d}{d\beta} \frac{\partial \Phi}{\partial \theta}(s^\beta) \Big|_{\beta=0} .$$
#
# That is the EP gradient formula (Scellier & Bengio 2017); Eq. 4 is its difference
# quotient (averaged over the batch, like the loss). The symmetry is the adjoint identities
# of tutorials 01-02 at work: $J_{ij} = \partial \phi_j / \partial s_i$, and $J = J^\top$
# says that what unit i sends to unit j on one route is what j sends back to i on the
# other. With an unpooling that is not the adjoint (tutorial 03's exercise 3 with
# $\alpha \ne F^2$), $J$ is not symmetric and the formula no longer holds.
#
# **The estimators' errors.** Inside one linear piece of the clip, $s^\beta$ is a smooth
# function of $\beta$ (the solution of the linear equations (a)), and so is
# $g(\beta) = \frac{\partial \Phi}{\partial \theta}(s^\beta)$. By Taylor's theorem,
# $g(\beta) = g(0) + \beta g'(0) + \tfrac{\beta^2}{2} g''(0) + \tfrac{\beta^3}{6} g'''(0) + O(\beta^4)$,
# so
#
# $$\begin{aligned}
# -\frac{g(\beta) - g(0)}{\beta} &= -g'(0) - \frac{\beta}{2} g''(0) + O(\beta^2)
#   && \text{(one-sided)}, \\
# -\frac{g(\beta) - g(-\beta)}{2\beta} &= -g'(0) - \frac{\beta^2}{6} g'''(0) + O(\beta^4)
#   && \text{(symmetric)}.
# \end{aligned}$$
#
# The one-sided estimate (Eq. 4) is off by $O(\beta)$; in the symmetric one (Eq. 5) the
# even terms cancel and it is off by $O(\beta^2)$ (Laborieux et al. 2021). Section 5
# measures both orders.
#
# **Checked on the network.** With average pooling the total inputs are linear in the
# states, so $J$ is built column by column by feeding `net.total_inputs` the unit vectors,
# with the image set to 0. Look for: $J$ symmetric to round-off, and the solution of the
# second equation of (b) matching $(s^{\beta} - s^{-\beta}) / 2\beta$ measured with two
# nudged phases, for image 0, to $O(\beta^2)$.

# %%
sizes = [int(np.prod(shape)) for shape in net.shapes[1:L + 1]]
D = sum(sizes)                                     # units per image, all layers
unit = np.eye(D)
basis = [np.zeros((D,) + net.shapes[0])]           # the image: zero
start = 0
for n, size in enumerate(sizes, start=1):          # D states, each with one unit at 1
    basis.append(unit[:, start:start + size].reshape((D,) + net.shapes[n]))
    start += size
phi_basis, _ = net.total_inputs(basis)
J = np.concatenate([p.reshape(D, -1) for p in phi_basis[1:]], axis=1)  # dphi_j / ds_i
asym = np.abs(J - J.T).max()
print(f"J {J.shape}: max |J - J^T| = {asym:.1e}   (max |J| = {np.abs(J).max():.2f})")


def flat(state, i):
    """The states of layers 1..L of image i as one vector of D units."""
    return np.concatenate([a[i].ravel() for a in state.xi[1:]])


s0 = flat(free, 0)
inside = (s0 > 0) & (s0 < 1)                       # the units of A
dl = np.zeros(D)                                # d loss(image 0) / ds: top layer only
dl[-net.n_classes:] = s0[-net.n_classes:] - net.one_hot(y[:1])[0]
H = J[np.ix_(inside, inside)] - np.eye(inside.sum())
predicted = np.zeros(D)
predicted[inside] = np.linalg.solve(H, dl[inside])           # ds^beta/dbeta at beta = 0
b = 1e-4
s_plus = net.nudged_phase(free, y, b, T_NUDGE)[0]
s_minus = net.nudged_phase(free, y, -b, T_NUDGE)[0]
measured = (flat(s_plus, 0) - flat(s_minus, 0)) / (2 * b)
response_err = np.abs(measured - predicted).max() / np.abs(predicted).max()
print(f"{inside.sum()} of {D} units inside (0, 1)")
print(f"ds/dbeta: max |measured - H^-1 dl| / max |H^-1 dl| = {response_err:.1e}")
assert asym < 1e-12
if SETTLED:
    assert response_err < 1e-6

# %% [markdown]
# ## 5. The estimators against BPTT and finite differences
# The one-sided estimator by hand from the states, then `mep.ep_gradients`, which returns
# the same dict of gradients of the loss (descend them). Two references to check them
# against, both gradients of the loss after the T steps of the free phase:
# `mep.bptt_gradients(net, x, y, T)` differentiates the T unrolled steps exactly (written by
# hand, no autograd; exercise 4 builds it yourself), and finite differences perturb one
# weight at a time by $\pm h$ and re-run the T steps. Many gradient entries are exactly 0 (a
# unit saturated at 0 or 1 passes no gradient), and comparing zeros with zeros tests
# nothing, so we difference the `FD_ENTRIES` entries of each tensor with the **largest**
# BPTT gradient (fewer where a tensor has fewer non-zero ones). The errors against finite
# differences are scaled by the largest gradient entry of the tensor.
#
# One more thing can spoil the comparison: the clip. EP's estimate is a difference of states
# at finite $\beta$, while BPTT and finite differences take the derivative at $\beta = 0$.
# If even the small nudge pushes a unit across 0 or 1 (into another linear piece of the
# dynamics), the assumption of section 4 fails, the loss has a kink there and the two
# disagree; we count such units (some seeds have one at $\beta = 10^{-3}$: try a few).

# %%
def piece(state):
    """Which units are strictly inside (0, 1), the clip's linear piece, per layer."""
    return [(a > 0) & (a < 1) for a in state.xi[1:]]


def n_crossed(state):
    return sum(int(np.sum(p != q)) for p, q in zip(piece(state), piece(free)))


beta = 1e-3
plus, _ = net.nudged_phase(free, y, beta, T_NUDGE)
crossed = n_crossed(plus) + n_crossed(net.nudged_phase(free, y, -beta, T_NUDGE)[0])
SMOOTH = SETTLED and crossed == 0     # the EP teaching checks below need both
print(f"units that the nudge of +-{beta} moves across a clip edge: {crossed}")
one_by_hand = {k: -(v - dphi[k]) / beta for k, v in net.dphi_dtheta(plus).items()}
ep1 = mep.ep_gradients(net, x, y, beta, T, T_NUDGE, "one-sided", free_state=free)
ep2 = mep.ep_gradients(net, x, y, beta, T, T_NUDGE, "symmetric", free_state=free)
assert all(np.allclose(one_by_hand[k], ep1[k]) for k in ep1)
bptt = mep.bptt_gradients(net, x, y, T)


def finite_differences_at(k, entries, h=1e-6):
    """Central differences of the T-step loss in some flat entries of net.params[k].

    Returns an array shaped like the parameter: differences at `entries`, NaN elsewhere.
    """
    weights = net.params[k].reshape(-1)       # a view: writing it perturbs the weight
    out = np.full(weights.size, np.nan)
    for i in entries:
        old = weights[i]
        weights[i] = old + h
        up = net.loss(net.free_phase(x, T)[0], y)
        weights[i] = old - h
        down = net.loss(net.free_phase(x, T)[0], y)
        weights[i] = old
        out[i] = (up - down) / (2 * h)
    return out.reshape(net.params[k].shape)


fd = {}
for k in net.params:
    magnitude = np.abs(bptt[k]).ravel()
    largest = np.argsort(-magnitude)[:FD_ENTRIES]
    fd[k] = finite_differences_at(k, largest[magnitude[largest] > 0])


def vs_fd(g, k):
    """Worst error on the sampled entries, relative to the largest BPTT entry."""
    m = ~np.isnan(fd[k])
    return np.abs(g[k][m] - fd[k][m]).max() / np.abs(bptt[k]).max()


print(f"beta = {beta}. Against finite differences (FD): worst entry / max |BPTT|;")
print("against BPTT: ||a - b|| / ||b||. 1-s: one-sided (Eq. 4), sym: symmetric.")
print("param  FD n (non-0)   BPTT/FD    1-s/FD    sym/FD  1-s/BPTT  sym/BPTT")
for k in net.params:
    m = ~np.isnan(fd[k])
    print(f"{k:5s} {m.sum():6d} ({np.count_nonzero(fd[k][m]):2d})"
          f" {vs_fd(bptt, k):10.1e} {vs_fd(ep1, k):9.1e} {vs_fd(ep2, k):9.1e}"
          f" {relative_error(ep1[k], bptt[k]):9.1e}"
          f" {relative_error(ep2[k], bptt[k]):9.1e}")
    # Teaching checks, scaled to what is compared: BPTT and finite differences
    # differentiate the same T-step loss (they agree far below 1e-4 whether or not it
    # settled); at a fixed point the one-sided estimate is off by O(beta) and the
    # symmetric one by O(beta^2).
    assert vs_fd(bptt, k) < 1e-4
    if SMOOTH:
        assert relative_error(ep1[k], bptt[k]) < 10 * beta
        assert relative_error(ep2[k], bptt[k]) < beta

# %% [markdown]
# BPTT agrees with finite differences to round-off, whether or not the free phase has
# settled: both differentiate the same T-step loss (finite differences re-run the T steps).
# That the free phase *has* settled is what makes this T-step gradient also the gradient of
# the loss at the fixed point, the quantity EP estimates (section 4). EP is a *finite-beta*
# estimate: the one-sided error is about $\beta$ itself, the symmetric one much smaller.
# Sweep $\beta$ to see the orders. Look for: slope 1 (one-sided, $O(\beta)$) and slope 2
# (symmetric, $O(\beta^2)$) on the log-log plot, and both breaking away at large $\beta$.

# %%
def total_error(g):
    squared = sum(np.sum((g[k] - bptt[k]) ** 2) for k in g)
    return np.sqrt(squared / sum(np.sum(bptt[k] ** 2) for k in g))


betas = np.logspace(-4, -0.5, 5 if QUICK else 11)
errs = {est: [total_error(mep.ep_gradients(net, x, y, b, T, T_NUDGE, est,
                                           free_state=free))
              for b in betas]
        for est in ("one-sided", "symmetric")}
plt.figure(figsize=(5.5, 4))
for est, marker in (("one-sided", "o"), ("symmetric", "s")):
    plt.loglog(betas, errs[est], marker + "-", label=est)
plt.loglog(betas, betas, "k:", lw=1, label="beta")
plt.loglog(betas, betas ** 2, "k--", lw=1, label="beta^2")
plt.xlabel("beta")
plt.ylabel("||EP - BPTT|| / ||BPTT||  (all parameters)")
plt.legend()
plt.tight_layout()
plt.show()
small = betas <= 1e-2
slopes = {est: np.polyfit(np.log(betas[small]), np.log(np.array(e)[small]), 1)[0]
          for est, e in errs.items()}
print("log-log slopes for beta <= 1e-2:",
      {k: round(float(v), 2) for k, v in slopes.items()})
if SMOOTH:    # O(beta): slope 1; the symmetric estimate is far more accurate
    assert abs(slopes["one-sided"] - 1) < 0.3
    assert errs["symmetric"][0] < 0.01 * errs["one-sided"][0]

# %% [markdown]
# At large $\beta$ the curves bend up. Inside one linear piece of the dynamics (no unit
# crossing an edge of the clip) the error keeps its slope; the bend comes when the nudge
# pushes units across 0 or 1, into another linear piece. Count the units whose piece differs
# between $s^*$ and $s^\beta$. Look for: none at small $\beta$, the first ones where the
# curves bend.

# %%
for b in betas:
    nudged = [net.nudged_phase(free, y, sign * b, T_NUDGE)[0] for sign in (+1, -1)]
    crossed = [sum(int(np.sum(p != q)) for p, q in zip(piece(st), piece(free)))
               for st in nudged]
    print(f"beta = {b:.1e}: units across a clip edge"
          f"  +beta {crossed[0]:3d}   -beta {crossed[1]:3d}")

# %% [markdown]
# At $\beta = 0.1$ (the paper's MNIST value) the direction is still roughly right:

# %%
g01 = mep.ep_gradients(net, x, y, 0.1, T, T_NUDGE, "symmetric", free_state=free)
cos01 = {k: round(cosine(g01[k], bptt[k]), 3) for k in g01}
print("beta = 0.1, symmetric: cosine with BPTT per tensor")
print("  ".join(f"{k} {v:.3f}" for k, v in cos01.items()))

# %% [markdown]
# ## 6. The GDD picture: EP replays BPTT step by step
# Start the nudged phase at the fixed point and record, for each step t, the EP update
# $-(s_{t+1} - s_t) / (\beta N)$ of every unit (N images: the loss is a batch mean) and
# $-\big(\frac{\partial \Phi}{\partial \theta}(s_{t+1}) - \frac{\partial \Phi}{\partial \theta}(s_t)\big) / \beta$
# of every weight (`ep_per_step_updates`). Run BPTT for K steps from the same fixed point and
# record what each step, counted back from the end, contributes: the gradient with respect
# to every unit's drive (its total input plus bias) and to every weight
# (`bptt_gradients(..., state=free, per_step=K)`). The GDD property says the two sequences
# are equal as $\beta \to 0$: the nudged phase *is* backpropagation through time, running
# forward. Look for: EP dots on the BPTT lines.

# %%
K = 12
ep_s, ep_p = ep_per_step_updates(net, free, y, 1e-4, K)
_, rec = mep.bptt_gradients(net, x, y, K, state=free, per_step=K)
fig, axes = plt.subplots(2, 2, figsize=(10, 7))
for ax, n in zip(axes.ravel(), range(L, 0, -1)):
    ep_tr = np.array([st[n][0].ravel() for st in ep_s])        # (K, units), image 0
    bp_tr = np.array([st[n][0].ravel() for st in rec["states"]])
    for u in np.argsort(-np.abs(bp_tr).max(axis=0))[:3]:      # the three busiest units
        line, = ax.plot(bp_tr[:, u], "-", lw=1)
        ax.plot(ep_tr[:, u], "o", ms=4, color=line.get_color())
    ax.set_title(f"layer {n}: BPTT (lines), EP (dots)", fontsize=10)
    ax.set_xlabel("step t (BPTT: t steps before the end)")
plt.tight_layout()
plt.show()
rows = [(f"s{n}",) + gdd_metrics([st[n] for st in ep_s],
                                 [st[n] for st in rec["states"]])
        for n in range(1, L + 1)]
rows += [(k,) + gdd_metrics([p[k] for p in ep_p], [p[k] for p in rec["params"]])
         for k in ep_p[0]]
for name, rmse, sign_err in rows:
    print(f"{name:3s} relative RMSE {rmse:.1e}   sign errors {sign_err:.1%}")
if SETTLED:        # each step's EP update is one-sided: off by O(beta) = 1e-4 relative
    assert max(r[1] for r in rows) < 100 * 1e-4 and max(r[2] for r in rows) == 0.0

# %% [markdown]
# With $\epsilon = 1$ the signal travels one layer per step: the output moves at step 0, the
# layer below at step 1, and so on, and every layer is silent every other step (its
# neighbours moved in the previous step, itself not). BPTT's per-step gradients have exactly
# the same pattern, because they are the same computation read backwards.
#
# ## 7. One SGD step lowers the loss
# `SGD(net.params, lr)` descends the gradients in place (one rate per layer is possible, here
# one for all). We use the symmetric estimate at $\beta = 0.1$ and re-run the free phase with
# the new weights.

# %%
g = mep.ep_gradients(net, x, y, 0.1, T, T_NUDGE, "symmetric", free_state=free)
loss_before = net.loss(free, y)
SGD(net.params, 0.5).step(g)
after, after_report = net.free_phase(x, T)
print(f"loss before {loss_before:.4f}  after one EP step {net.loss(after, y):.4f}"
      f"  (residual {after_report.residual:.0e})")
if SETTLED:
    assert net.loss(after, y) < loss_before

# %% [markdown]
# ## What we learned
# - A nudged phase starts at the free fixed point and pulls the output by
#   $\beta\,(y - s_{\mathrm{out}})$; $\partial \Phi / \partial \theta$ is a product of
#   neighbouring states (Eq. 11), local to each synapse.
# - Implicit differentiation of the fixed-point condition gives the EP gradient formula,
#   $d\ell(s^*)/d\theta = -\frac{d}{d\beta} \frac{\partial \Phi}{\partial \theta}(s^\beta)$ at
#   $\beta = 0$, because the Jacobian of the total inputs is symmetric (the routes are
#   adjoints).
# - The one-sided estimator (Eq. 4) is off by $O(\beta)$, the symmetric one (Eq. 5) by
#   $O(\beta^2)$; at small $\beta$ both match BPTT and finite differences, and BPTT matches
#   finite differences to round-off. At large $\beta$ the clip's edges make the estimate
#   cruder.
# - GDD: started at the fixed point, the per-step EP updates equal the per-step BPTT
#   gradients, layer by layer and step by step.
# - The estimate is a gradient of the loss: one SGD step with it lowered the loss.

# %% [markdown]
# ## Exercises
# Solutions: `tutorials/solutions/04_equilibrium_propagation.py`. To hand in: the stubs of
# `tutorials/exercises/04_equilibrium_propagation.py`, graded by
# `make grade DIR=your/folder`.
#
# 1. **The symmetric estimate is a mean.** Show with `ep_gradients` that the symmetric
#    estimate at $\beta$ equals the mean of the one-sided estimates at $+\beta$ and $-\beta$
#    (to round-off), and prove it from Eq. 4-5. Compare the three errors against BPTT at
#    $\beta = 0.01$: why does averaging cancel the $O(\beta)$ term?
# 2. **One layer per step.** With $\epsilon = 1$ the nudge travels one layer per step
#    (section 6). Compute the symmetric estimate ($\beta = 10^{-4}$) for T_nudge = 1, 2, ...,
#    6, 10, 20, 40, 60. At which T_nudge does each weight tensor's estimate first become
#    non-zero, and when is it within 1% of BPTT? What does this say about the T_nudge a
#    deeper network needs?
# 3. **EP trains like BPTT, at small beta.** Build three identical nets (same SEED) and train
#    them for 15 SGD steps (lr 0.1) on the 8 images: one with BPTT, one with symmetric EP at
#    $\beta = 0.01$, one at $\beta = 0.1$. Plot the losses. Which curves coincide, and why
#    can the $\beta = 0.1$ curve go lower than the exact gradient's? (Hint: section 5's units
#    across a clip edge.)
# 4. **BPTT by hand.** Write `my_bptt(net, x, y, T)` for a two-layer dense CRNN
#    (`build_network(conv_channels=(), hidden=(16,), spiking=False, ...)`: a hidden layer
#    and the output). Run the free phase with
#    `net.relax(net.init_state(x), T, on_step=tape.append)` to keep every state on a tape,
#    start from $\partial L / \partial s^T$ (the second value of
#    `net.loss_gradient(s_top, y)`), and walk the tape backwards. One step is
#    $\xi_n^{t} = \rho((1 - \epsilon)\,\xi_n^{t-1} + \epsilon\, d_n)$ with the drive
#    $d_n = \mathrm{fwd}_n(s_{n-1}^{t-1}) + \mathrm{bwd}_{n+1}(s_{n+1}^{t-1}) + b_n$, so going
#    back through it takes three pieces: `minimal_ep.dynamics.update_vjp(xi_new, g, eps)`,
#    which returns $(\partial L / \partial \xi^{t-1}_n,\ \partial L / \partial d_n)$ given
#    $g = \partial L / \partial \xi^t_n$; `net.layers[n].forward_vjp(w, s_prev, None, a)` and
#    `net.layers[n].backward_vjp(w, s, None, a)`, the cotangents (of the route's state input,
#    of $w_n$) given the cotangent $a$ of the route's output; and the bias, whose gradient is
#    $\partial L / \partial d_n$ summed over the batch. Check your gradients against
#    `bptt_gradients` (to round-off) and against finite differences of the T-step loss.
