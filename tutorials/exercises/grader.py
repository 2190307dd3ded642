"""The grader of the course's exercises: a pytest run pointed at a folder of answers.

Usage (from the repository)::

    make grade DIR=path/to/answers                  # or, the same:
    python tutorials/exercises/grader.py path/to/answers

The folder holds your copies of the stubs of this folder, ``01_convolution.py`` ...
``06_spiking_conv_ep.py``, with the ``NotImplementedError`` bodies filled in. A missing file is
reported as "not handed in"; a stub still raising ``NotImplementedError`` as "not done". Every
check calls your functions on inputs of its own (so a hard-coded answer does not pass) and
compares them with the library or with what the exercise should establish; the exercises'
measurements run in quick mode (``quick=True``), a few seconds each. The exit status is 0 when
every check passed.

``tests/test_solutions.py`` runs every check below on ``tutorials/solutions/`` (they pass) and
``tests/test_grader.py`` runs the grader on the stubs (they fail).
"""
import importlib.util
import os
import pathlib
import sys
import traceback

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep import (avg_pool2d, avg_unpool2d, col2im, conv2d_weight, conv_transpose2d,
                        datasets, max_pool2d)
from minimal_ep.run.gradcheck import cosine, relative_error

HERE = pathlib.Path(__file__).resolve().parent
ENV = "MINIMAL_EP_ANSWERS"
STEMS = ["01_convolution", "02_pooling", "03_convergent_rnn", "04_equilibrium_propagation",
         "05_spikes", "06_spiking_conv_ep"]


class NotHandedIn(Exception):
    """The answers folder has no file for this tutorial."""


def load_answers(path):
    """Import a file of answers by its path (names start with a digit, so not by ``import``)."""
    path = pathlib.Path(path)
    spec = importlib.util.spec_from_file_location(f"answers_{path.stem}_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_MODULES = {}


def answers(stem):
    """The student's module for a tutorial, from the folder named by MINIMAL_EP_ANSWERS."""
    folder = pathlib.Path(os.environ.get(ENV, HERE))
    path = folder / f"{stem}.py"
    if not path.exists():
        raise NotHandedIn(f"{path} does not exist")
    if path not in _MODULES:
        _MODULES[path] = load_answers(path)
    return _MODULES[path]


def function(module, name):
    """The student's function ``name``, with a message naming it when it is missing."""
    f = getattr(module, name, None)
    assert callable(f), (f"{module.__file__} has no function {name}(...): keep the names of "
                         "the stubs")
    return f


def close(a, b, tol):
    """max |a - b| relative to max |b| (absolute when b is 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) < tol


# ------------------------------------------------------------------------------ the checks
# Each check takes the module of answers and raises AssertionError with a message for a
# student. CHECKS[stem] lists them in order; the docstring's first line names the check.
CHECKS = {stem: [] for stem in STEMS}


def check(stem):
    def register(f):
        CHECKS[stem].append(f)
        return f
    return register


@check("01_convolution")
def ex1_weight_gradient(m):
    """Exercise 1: my_conv2d_weight equals conv2d_weight; exercise_1 reports it."""
    mine = function(m, "my_conv2d_weight")
    rng = np.random.default_rng(101)
    for (N, C, H, F, K), stride, padding in [((2, 3, 9, 4, 3), 2, 1), ((3, 2, 8, 5, 2), 1, 0),
                                             ((1, 1, 7, 2, 3), 1, 2)]:
        x = rng.standard_normal((N, C, H, H))
        OH = (H + 2 * padding - K) // stride + 1
        gy = rng.standard_normal((N, F, OH, OH))
        got = np.asarray(mine(x, gy, K, K, stride, padding))
        ref = conv2d_weight(x, gy, (K, K), stride, padding)
        assert got.shape == ref.shape, (
            f"my_conv2d_weight(x {x.shape}, gy {gy.shape}, {K}, {K}, stride={stride}, "
            f"padding={padding}) has shape {got.shape}, should be (F, C, KH, KW) = {ref.shape}")
        assert close(got, ref, 1e-10), (
            f"my_conv2d_weight differs from conv2d_weight (stride {stride}, padding {padding}) "
            f"by {np.abs(got - ref).max():.2e}: it should agree to round-off")
    r = function(m, "exercise_1")(quick=True)
    assert r["max_diff"] < 1e-10 and r["adjoint_gap"] < 1e-10, (
        f"exercise_1 reports max_diff {r['max_diff']:.2e} and adjoint_gap "
        f"{r['adjoint_gap']:.2e}: both should be round-off (< 1e-10)")
    assert tuple(r["shape"]) == (4, 3, 3, 3), (
        f"exercise_1's shape is {r['shape']}, not (4, 3, 3, 3)")


@check("01_convolution")
def ex2_overlap_counts(m):
    """Exercise 2: count_1d and predicted_counts match col2im of ones."""
    count_1d, predicted = function(m, "count_1d"), function(m, "predicted_counts")
    for size, K, stride in [(9, 3, 1), (9, 3, 2), (9, 5, 3), (9, 2, 2), (11, 4, 3), (7, 7, 1)]:
        n_win = ((size - K) // stride + 1) ** 2
        ref = col2im(np.ones((1, K * K, n_win)), (1, 1, size, size), K, K, stride=stride)[0, 0]
        starts = stride * np.arange((size - K) // stride + 1)
        expected = [int(np.sum((starts <= h) & (h < starts + K))) for h in range(size)]
        got_1d = np.asarray(count_1d(size, K, stride))
        assert got_1d.shape == (size,), (
            f"count_1d({size}, {K}, {stride}) should have shape ({size},), got {got_1d.shape}")
        assert np.array_equal(got_1d, expected), (
            f"count_1d({size}, {K}, {stride}) = {got_1d.tolist()}, expected {expected}")
        got = np.asarray(predicted(size, K, stride))
        assert got.shape == ref.shape and np.array_equal(got, ref), (
            f"predicted_counts({size}, {K}, {stride}) differs from col2im(ones)")
    r = function(m, "exercise_2")(quick=True)
    assert all(v["max_diff"] == 0 for v in r.values()), "exercise_2: some max_diff is not 0"
    expected = {(3, 1): 0, (3, 2): 0, (5, 3): 17, (2, 2): 17}
    got = {k: r[k]["uncovered"] for k in expected}
    assert got == expected, f"exercise_2's uncovered pixels {got}, expected {expected}"


@check("01_convolution")
def ex3_transpose_as_convolution(m):
    """Exercise 3: transpose_as_convolution equals conv_transpose2d (stride 1, 2, 3)."""
    mine = function(m, "transpose_as_convolution")
    rng = np.random.default_rng(103)
    for stride, (F, C, K, O) in [(1, (4, 3, 3, 4)), (2, (2, 5, 3, 3)), (3, (3, 2, 2, 4))]:
        w = rng.standard_normal((F, C, K, K))
        y = rng.standard_normal((2, F, O, O))
        ref = conv_transpose2d(y, w, stride)
        got = np.asarray(mine(y, w, stride))
        assert got.shape == ref.shape, (
            f"transpose_as_convolution(y {y.shape}, w {w.shape}, stride={stride}) has shape "
            f"{got.shape}, not {ref.shape}")
        assert close(got, ref, 1e-10), (
            f"transpose_as_convolution differs from conv_transpose2d at stride {stride} by "
            f"{np.abs(got - ref).max():.2e}")
    r = function(m, "exercise_3")(quick=True)
    assert r[1] < 1e-10 and r[2] < 1e-10, f"exercise_3 reports {r}: both should be round-off"


@check("02_pooling")
def ex1_misplaced_spikes(m):
    """Exercise 1: misplaced_fraction is right, and grows with the jitter."""
    mine = function(m, "misplaced_fraction")
    rng = np.random.default_rng(201)
    z = rng.random((1, 3, 8, 8))
    y, idx = max_pool2d(z, 2)
    spikes = (rng.random(y.shape) < 0.6).astype(np.float64)
    assert abs(mine(z, spikes, idx, 2)) < 1e-12, (
        "misplaced_fraction with z's own indices should be 0: every spike lands on a maximum")
    other = (idx + 1) % 4                                   # every spike one offset off
    assert abs(mine(z, spikes, other, 2) - 1.0) < 1e-12, (
        "misplaced_fraction with indices that all differ from z's should be 1")
    half = idx.copy()
    half[..., :2] = other[..., :2]                          # the first two columns of windows
    expected = spikes[..., :2].sum() / spikes.sum()
    assert abs(mine(z, spikes, half, 2) - expected) < 1e-12, (
        f"misplaced_fraction should be {expected:.4f} on a case where the first two columns of "
        f"windows use other indices, got {mine(z, spikes, half, 2)}")
    r = function(m, "exercise_1")(quick=True)
    assert r[0.0] == 0.0, f"exercise_1: with no jitter nothing is misplaced, got {r[0.0]}"
    assert 0 < r[0.01] < r[0.05] < r[0.2] and r[0.2] > 0.1, (
        f"exercise_1: the misplaced fraction should grow with the jitter, got {r}")


@check("02_pooling")
def ex2_avg_unpool_by_hand(m):
    """Exercise 2: my_avg_unpool2d equals avg_unpool2d; adjoint_alpha gives the adjoint."""
    mine, alpha_of = function(m, "my_avg_unpool2d"), function(m, "adjoint_alpha")
    rng = np.random.default_rng(202)
    for F, size, alpha in [(2, 11, None), (3, 11, None), (2, 8, 1.0), (3, 10, 2.5)]:
        y = rng.standard_normal((2, 3, size // F, size // F))
        ref = avg_unpool2d(y, F, alpha, output_size=(size, size))
        got = np.asarray(mine(y, F, alpha, (size, size)))
        assert got.shape == ref.shape and close(got, ref, 1e-12), (
            f"my_avg_unpool2d(y, F={F}, alpha={alpha}, output_size=({size}, {size})) differs "
            "from avg_unpool2d")
    for F in (2, 3, 4):
        x = rng.standard_normal((1, 2, 4 * F, 4 * F))
        y = rng.standard_normal((1, 2, 4, 4))
        lhs = np.sum(avg_pool2d(x, F) * y)
        rhs = np.sum(x * avg_unpool2d(y, F, alpha_of(F)))
        assert abs(lhs - rhs) < 1e-10 * abs(lhs), (
            f"adjoint_alpha({F}) = {alpha_of(F)} does not make avg_unpool2d the adjoint of "
            "avg_pool2d")
    r = function(m, "exercise_2")(quick=True)
    for F, (diff, gap) in r.items():
        assert diff < 1e-12 and gap < 1e-12, f"exercise_2 for F = {F}: {diff:.1e}, {gap:.1e}"


@check("02_pooling")
def ex3_tie_formula(m):
    """Exercise 3: offset0_fraction is the tie formula; the measurements agree with it."""
    formula = function(m, "offset0_fraction")
    for p in (0.0, 0.1, 0.3, 0.5, 0.9, 1.0):
        for F in (2, 3):
            expected = p + (1 - p) ** (F * F)
            assert abs(formula(p, F) - expected) < 1e-12, (
                f"offset0_fraction({p}, F={F}) = {formula(p, F)}: count the windows where the "
                "top-left pixel fired plus the silent ones")
    rng = np.random.default_rng(203)
    spikes = (rng.random((1, 8, 96, 96)) < 0.2).astype(np.float64)
    _, idx = max_pool2d(spikes, 3)
    q = formula(0.2, 3)
    assert abs(np.mean(idx == 0) - q) < 5 * np.sqrt(q * (1 - q) / idx.size), (
        "offset0_fraction(0.2, F=3) disagrees with max_pool2d on 3x3 windows")
    for p, (measured, predicted, se) in function(m, "exercise_3")(quick=True).items():
        assert abs(measured - predicted) < 5 * se, (
            f"exercise_3 at p = {p}: measured {measured:.3f}, predicted {predicted:.3f}, more "
            f"than 5 standard errors ({se:.3f}) apart")


def _images(n, size=28):
    data = datasets.load_dataset("mnist")
    x = datasets.to_float_images(data["train_images"][:n], "float64")
    return x if size == 28 else avg_pool2d(x, 28 // size)


@check("03_convergent_rnn")
def ex1_own_free_phase(m):
    """Exercise 1: my_free_phase equals net.free_phase (avg and max pooling, eps 1 and 0.5)."""
    mine = function(m, "my_free_phase")
    x = _images(2, 14)
    for pool in ("avg", "max"):
        for eps in (1.0, 0.5):
            net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(3, 5),
                                    hidden=(7,), pool=pool, spiking=False, dtype="float64",
                                    loss="mse", seed=7, eps=eps)
            ref = net.free_phase(x, 12)[0].xi
            got = mine(net, x, 12)
            assert len(got) == net.n_layers + 1, (
                f"my_free_phase should return [x, s_1, ..., s_L], {net.n_layers + 1} arrays")
            gap = max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(got[1:], ref[1:]))
            assert gap < 1e-12, (f"my_free_phase differs from net.free_phase by {gap:.2e} with "
                                 f"{pool} pooling and eps = {eps}")
    r = function(m, "exercise_1")(quick=True)
    assert len(r) == 4 and max(r.values()) < 1e-12, f"exercise_1 reports {r}"


@check("03_convergent_rnn")
def ex2_how_a_phase_ends(m):
    """Exercise 2: classify_end names settled, 2-cycle and moving runs; eps = 0.5 never cycles."""
    classify = function(m, "classify_end")
    x = _images(4)
    cases = [(1.0, 1.0, "settled"), (4.0, 1.0, "2-cycle"), (2.0, 0.5, "moving")]
    for scale, eps, expected in cases:
        net = mep.build_network(input_shape=(1, 28, 28), conv_channels=(8, 16), hidden=(32,),
                                pool="avg", spiking=False, dtype="float64", loss="mse", seed=0,
                                eps=eps, init_scale=scale)
        state, _ = net.free_phase(x, 100)
        before = [a.copy() for a in state.xi]
        got = classify(net, state)
        assert got == expected, (f"classify_end says {got!r} for init_scale {scale}, eps {eps}"
                                 f" after 100 steps; it is {expected!r}")
        assert all(np.array_equal(a, b) for a, b in zip(before, state.xi)), (
            "classify_end changed the state it was given")
    r = function(m, "exercise_2")(quick=True)
    assert r[1.0][1.0][1] == "settled", f"exercise_2: init_scale 1, eps 1 ends {r[1.0][1.0]}"
    assert r[4.0][1.0][1] == "2-cycle", f"exercise_2: init_scale 4, eps 1 ends {r[4.0][1.0]}"
    cycles = [scale for scale in r if r[scale][0.5][1] == "2-cycle"]
    assert not cycles, f"exercise_2: eps = 0.5 ends in a 2-cycle at init_scale {cycles}?"
    for scale, by_eps in r.items():
        for eps, (residual, kind) in by_eps.items():
            assert kind != "settled" or residual < 1e-5, (
                f"exercise_2: init_scale {scale}, eps {eps} is 'settled' with residual "
                f"{residual:.1e}")


@check("03_convergent_rnn")
def ex3_alpha_and_balance(m):
    """Exercise 3: route_ratios is right; only layer 1's ratio follows alpha."""
    ratios = function(m, "route_ratios")
    x = _images(2)
    net = mep.build_network(input_shape=(1, 28, 28), conv_channels=(4, 6), hidden=(9,),
                            pool="avg", spiking=False, dtype="float64", loss="mse", seed=5,
                            eps=0.8)
    s = net.free_phase(x, 60)[0].xi
    expected = []
    for n in range(1, net.n_layers):
        fwd, _ = net.forward_route(n, s[n - 1])
        bwd = net.backward_route(n, s[n + 1], None)
        expected.append(np.abs(fwd).mean() / np.abs(bwd).mean())
    got = list(ratios(net, s))
    assert len(got) == net.n_layers - 1 and close(got, expected, 1e-10), (
        f"route_ratios gives {np.round(got, 4)}, expected {np.round(expected, 4)} (layers "
        "1..L-1: mean |forward route| / mean |backward route|)")
    r = function(m, "exercise_3")(quick=True)
    layer1 = [r[a][0] for a in sorted(r)]
    layer2 = [r[a][1] for a in sorted(r)]
    assert all(a < b for a, b in zip(layer1, layer1[1:])) and layer1[-1] > 4 * layer1[0], (
        f"exercise_3: layer 1's ratio should grow with alpha, got {np.round(layer1, 2)}")
    assert max(layer2) < 1.2 * min(layer2), (
        f"exercise_3: layer 2's ratio should hardly change with alpha, got {np.round(layer2, 2)}")


@check("04_equilibrium_propagation")
def ex1_symmetric_is_a_mean(m):
    """Exercise 1: the symmetric estimate is the mean of the one-sided ones, and more accurate."""
    r = function(m, "exercise_1")(quick=True)
    assert r["identity_gap"] < 1e-10, (
        f"exercise_1: identity_gap {r['identity_gap']:.1e}; the symmetric estimate equals the mean "
        "of one-sided(+beta) and one-sided(-beta) to round-off")
    e = r["errors"]
    assert e["symmetric"] < 0.1 * min(e["one-sided +beta"], e["one-sided -beta"]), (
        f"exercise_1: errors {e}; the symmetric estimate should be far closer to BPTT")


@check("04_equilibrium_propagation")
def ex2_one_layer_per_step(m):
    """Exercise 2: w_n's estimate starts moving after L + 1 - n nudged steps."""
    r = function(m, "exercise_2")(quick=True)
    L = r["n_layers"]
    expected = {f"w{n}": L + 1 - n for n in range(1, L + 1)}
    assert r["nonzero"] == expected, (
        f"exercise_2: first non-zero T_nudge {r['nonzero']}, expected {expected}")
    for k, t in r["close"].items():
        assert t is not None and t >= expected[k], (
            f"exercise_2: {k} within 1% of BPTT at T_nudge {t}: it should happen, and not before "
            f"its estimate starts ({expected[k]})")


@check("04_equilibrium_propagation")
def ex3_ep_trains_like_bptt(m):
    """Exercise 3: EP at beta = 0.01 follows BPTT's loss curve; all curves go down."""
    c = function(m, "exercise_3")(quick=True)
    assert len(c["bptt"]) == len(c["ep 0.01"]) == len(c["ep 0.1"]) >= 2, (
        "exercise_3 should return three loss curves of the same length")
    assert np.allclose(c["ep 0.01"], c["bptt"], atol=1e-3), (
        f"exercise_3: at beta = 0.01 EP should follow BPTT: {np.round(c['ep 0.01'], 4)} against "
        f"{np.round(c['bptt'], 4)}")
    assert c["bptt"][-1] < c["bptt"][0] and c["ep 0.1"][-1] < c["ep 0.1"][0], (
        "exercise_3: the losses should go down")


@check("04_equilibrium_propagation")
def ex4_bptt_by_hand(m):
    """Exercise 4: my_bptt equals bptt_gradients on dense CRNNs, and finite differences."""
    mine = function(m, "my_bptt")
    data = datasets.load_dataset("mnist")
    x = avg_pool2d(datasets.to_float_images(data["train_images"][10:13], "float64"), 2)
    y = data["train_labels"][10:13]
    for hidden, eps, T, seed in [(12, 0.5, 15, 4), (20, 1.0, 9, 5), (8, 0.3, 25, 6)]:
        net = mep.build_network(input_shape=(1, 14, 14), conv_channels=(), hidden=(hidden,),
                                loss="mse", dtype="float64", seed=seed, eps=eps, spiking=False)
        ref = mep.bptt_gradients(net, x, y, T)
        got = mine(net, x, y, T)
        assert set(got) == set(ref), f"my_bptt returns keys {sorted(got)}, not {sorted(ref)}"
        for k in ref:
            err = relative_error(np.asarray(got[k]), ref[k])
            assert np.shape(got[k]) == ref[k].shape and err < 1e-9, (
                f"my_bptt's {k} differs from bptt_gradients by a relative {err:.1e} (hidden "
                f"{hidden}, eps {eps}, T {T}); it should agree to round-off")
    r = function(m, "exercise_4")(quick=True)
    assert r["vs_bptt"] < 1e-9 and r["vs_fd"] < 1e-5, (
        f"exercise_4 reports {r}: my_bptt should match bptt_gradients to round-off and finite "
        "differences to about 1e-8")


@check("05_spikes")
def ex1_drift_bound(m):
    """Exercise 1: drift_bound is max(v_th, 1 - v_th), reached and never exceeded."""
    bound = function(m, "drift_bound")
    for v_th in (0.0, 0.2, 0.5, 0.7, 1.0):
        assert abs(bound(v_th) - max(v_th, 1 - v_th)) < 1e-12, (
            f"drift_bound({v_th}) = {bound(v_th)}: where can V lie, and what is the drift?")
    r = function(m, "exercise_1")(quick=True)
    for v_th, (lo, hi, drift, b, rate) in r.items():
        assert v_th - 1 < lo and hi <= v_th + 1e-12, (
            f"exercise_1: with V_th = {v_th}, V ranged over [{lo:.3f}, {hi:.3f}]")
        assert b - 0.01 < drift <= b + 1e-9, (
            f"exercise_1: with V_th = {v_th} the drift reached {drift:.3f}, the bound is {b}")
        assert abs(rate) < 1e-3, f"exercise_1: firing rate - mean input = {rate:.1e} at V_th {v_th}"


@check("05_spikes")
def ex2_rate_error_over_T(m):
    """Exercise 2: T times the rate error stays bounded."""
    r = function(m, "exercise_2")(quick=True)
    bound = (1 - r["lam"]) / r["lam"] + 1
    for T in (50, 100, 200, 400):
        worst = max(T * np.array(r[T]))
        assert worst < bound, (
            f"exercise_2: T * rate_error = {worst:.2f} at T = {T}, above {bound:.2f}")
    assert max(r[400]) < 0.25 * max(r[50]), "exercise_2: the rate error should fall as 1/T"


@check("05_spikes")
def ex3_lam_against_distance(m):
    """Exercise 3: distance_curve is right; a smaller lam ends closer."""
    curve_of = function(m, "distance_curve")
    data = datasets.load_dataset("mnist")
    x = datasets.to_float_images(data["train_images"][5:7], "float64")
    kw = dict(input_shape=(1, 28, 28), conv_channels=(4,), hidden=(12,), pool="avg",
              loss="mse", dtype="float64", seed=9, eps=0.3)
    ref = mep.build_network(spiking=False, **kw).free_phase(x, 100)[0].xi
    snn = mep.build_network(spiking=True, lam=0.4, **kw)
    expected = []
    snn.relax(snn.init_state(x), 30, on_step=lambda st: expected.append(
        np.mean([np.abs(a - b).mean() for a, b in zip(st.xi[1:], ref[1:])])))
    got = np.asarray(curve_of(snn, x, ref, 30))
    assert got.shape == (30,), (
        f"distance_curve(..., T=30) should have shape (30,), got {got.shape}")
    assert close(got, expected, 1e-10), (
        "distance_curve differs from the mean over layers of mean |xi_snn - ref| after each step")
    r = function(m, "exercise_3")(quick=True)
    late = [r[lam][1] for lam in sorted(r)]
    assert all(a < b for a, b in zip(late, late[1:])), (
        "exercise_3: the distance over the last 50 steps should grow with lam, got "
        f"{np.round(late, 4)}")
    assert all(r[lam][0] > r[lam][1] for lam in r), "exercise_3: every SNN should get closer"


@check("06_spiking_conv_ep")
def ex1_error_bars(m):
    """Exercise 1: compare is right; max pooling inflates the conv layers' EP norms."""
    compare = function(m, "compare")
    rng = np.random.default_rng(601)
    g_a = {"w1": rng.standard_normal((3, 2)), "b1": rng.standard_normal(3),
           "w2": rng.standard_normal((4, 3)), "w10": rng.standard_normal(5)}
    g_b = {k: v + rng.standard_normal(v.shape) for k, v in g_a.items()}
    cos, ratio = compare(g_a, g_b)
    order = ["w1", "w2", "w10"]
    assert close(cos, [cosine(g_a[k], g_b[k]) for k in order], 1e-12), (
        "compare: the cosines should be cosine(g_a[k], g_b[k]) for w1, w2, ... in order")
    norms = [np.linalg.norm(g_a[k]) / np.linalg.norm(g_b[k]) for k in order]
    assert close(ratio, norms, 1e-12), (
        "compare: the ratios should be ||g_a[k]|| / ||g_b[k]|| for w1, w2, ... in order")
    r = function(m, "exercise_1")(quick=True)
    assert np.shape(r["avg"]["cos"]) == (len(r["seeds"]), 4), "exercise_1: cos is (seeds, 4)"
    avg = np.asarray(r["avg"]["ratio"])[:, :2].mean()
    mx = np.asarray(r["max"]["ratio"])[:, :2].mean()
    assert mx > 2 * avg, (f"exercise_1: the conv layers' norm ratio is {mx:.1f} with max pooling "
                          f"against {avg:.1f} with average pooling")


@check("06_spiking_conv_ep")
def ex2_free_phase_length(m):
    """Exercise 2: a longer free phase does not close the max-pooling gap."""
    r = function(m, "exercise_2")(quick=True)
    assert r["avg"][10] > r["avg"][40], (
        f"exercise_2: with average pooling a longer phase should settle closer, {r['avg']}")
    assert all(r["max"][T] > 2 * r["avg"][T] for T in (20, 40, 80)), (
        f"exercise_2: max pooling should stay further away, {r}")


@check("06_spiking_conv_ep")
def ex3_spiking_vs_continuous(m):
    """Exercise 3: spiking EP follows continuous EP in the dense layers (average pooling)."""
    r = function(m, "exercise_3")(quick=True)
    assert len(r["avg"]) == 4 and min(r["avg"][2:]) > 0.8, (
        f"exercise_3: with average pooling the dense layers' cosines should be high, {r['avg']}")


# ------------------------------------------------------------------------------ as a pytest run
CASES = [(stem, f) for stem in STEMS for f in CHECKS[stem]]


def _title(f):
    return f.__doc__.strip().splitlines()[0]


@pytest.mark.parametrize("stem, check_", CASES, ids=[f"{s}-{f.__name__}" for s, f in CASES])
def test_exercise(stem, check_):
    try:
        module = answers(stem)
    except NotHandedIn as exc:
        pytest.skip(f"not handed in: {exc}")
    check_(module)


class Report:
    """A pytest plugin that prints one line per check, in words, instead of tracebacks."""

    def __init__(self, folder):
        self.folder, self.rows = folder, []

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            stem, f = item.callspec.params["stem"], item.callspec.params["check_"]
            if report.passed:
                mark, verdict = "PASS", ""
            elif report.skipped:
                mark, verdict = "----", "not handed in"
            else:
                mark, verdict = "FAIL", _verdict(call.excinfo)
            self.rows.append((stem, _title(f), mark, verdict))

    def pytest_terminal_summary(self, terminalreporter):
        write = terminalreporter.write_line
        write("")
        write(f"Exercises graded from {self.folder}:")
        for stem, title, mark, verdict in self.rows:
            write(f"  {mark}  {stem:27s} {title}")
            if verdict:
                write(f"        {verdict}")
        n_pass = sum(row[2] == "PASS" for row in self.rows)
        write(f"{n_pass} of {len(self.rows)} checks passed.")


def _verdict(excinfo):
    """One or two lines a student can act on."""
    exc = excinfo.value
    if isinstance(exc, NotImplementedError):
        return f"not done: the stub still raises NotImplementedError ({exc})"
    if isinstance(exc, AssertionError):
        return "wrong: " + str(exc).split("\nassert ")[0]     # not pytest's rewritten details
    frames = [f for f in traceback.extract_tb(excinfo.tb) if "grader.py" not in f.filename]
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"your code raised {type(exc).__name__}: {exc}{where}"


def main(argv=None):
    """``python tutorials/exercises/grader.py DIR [pytest options]``: grade the answers in DIR."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        print("usage: python tutorials/exercises/grader.py DIR   (DIR: your copy of "
              "tutorials/exercises/ with the stubs filled in)", file=sys.stderr)
        return 2
    folder = pathlib.Path(argv.pop(0)).resolve()
    if not folder.is_dir():
        print(f"grader: {folder} is not a folder", file=sys.stderr)
        return 2
    os.environ[ENV] = str(folder)
    report = Report(folder)
    status = int(pytest.main([str(pathlib.Path(__file__).resolve()), "-q", "--tb=no", "-rN",
                              "-p", "no:cacheprovider", *argv], plugins=[report]))
    if status == 0 and any(row[2] != "PASS" for row in report.rows):
        status = 1                      # a tutorial not handed in is not a pass
    return status


if __name__ == "__main__":
    sys.exit(main())
