"""Every exercise solution in tutorials/solutions/ runs in fast mode and establishes what it should."""
import importlib.util
import pathlib

import numpy as np
import pytest

SOLUTIONS = pathlib.Path(__file__).resolve().parents[1] / "tutorials" / "solutions"


def load(stem):
    """Import tutorials/solutions/<stem>.py (its name starts with a digit, so not by ``import``)."""
    spec = importlib.util.spec_from_file_location(f"solution_{stem}", SOLUTIONS / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tutorial_has_solutions():
    tutorials = {p.name for p in SOLUTIONS.parent.glob("[0-9]*.py")}
    assert tutorials == {p.name for p in SOLUTIONS.glob("[0-9]*.py")}
    for path in SOLUTIONS.glob("[0-9]*.py"):
        n = len([name for name in dir(load(path.stem)) if name.startswith("exercise_")])
        assert 2 <= n <= 4, f"{path.name}: {n} exercise functions"


# ------------------------------------------------------------------------------ 01 convolution
def test_01_weight_gradient_from_im2col():
    r = load("01_convolution").exercise_1(fast=True)
    assert r["shape"] == (4, 3, 3, 3) and r["max_diff"] < 1e-12 and r["adjoint_gap"] < 1e-12


def test_01_overlap_counts_are_an_outer_product():
    r = load("01_convolution").exercise_2(fast=True)
    assert all(v["max_diff"] == 0 for v in r.values())
    # stride <= K covers a 9x9 map except where the last window stops short of the border
    assert r[(3, 1)]["uncovered"] == 0 and r[(3, 2)]["uncovered"] == 0
    assert r[(5, 3)]["uncovered"] == 17 and r[(2, 2)]["uncovered"] == 17


def test_01_transpose_is_a_flipped_convolution():
    r = load("01_convolution").exercise_3(fast=True)
    assert r[1] < 1e-12 and r[2] < 1e-12


# ------------------------------------------------------------------------------ 02 pooling
def test_02_mismatch_grows_with_jitter():
    r = load("02_pooling").exercise_1(fast=True)
    assert r[0.0] == 0.0                                   # own indices: every spike on a maximum
    assert 0 < r[0.01] < r[0.05] < r[0.2] and r[0.2] > 0.1


def test_02_avg_unpool_by_hand_is_the_adjoint():
    r = load("02_pooling").exercise_2(fast=True)
    for diff, gap in r.values():
        assert diff < 1e-12 and gap < 1e-12


def test_02_tie_formula():
    for measured, predicted, se in load("02_pooling").exercise_3(fast=True).values():
        assert abs(measured - predicted) < 5 * se


# ------------------------------------------------------------------------------ 03 convergent RNN
def test_03_own_free_phase_matches():
    r = load("03_convergent_rnn").exercise_1(fast=True)
    assert len(r) == 4 and max(r.values()) < 1e-12


def test_03_two_cycle_onset():
    r = load("03_convergent_rnn").exercise_2(fast=True)
    assert r[1.0][1.0] < 1e-6                              # default scale settles with eps = 1
    assert r[3.0][1.0] > 0.1                               # tripled weights: eps = 1 stalls
    assert r[3.0][0.5] < 0.1 * r[3.0][1.0]                 # eps = 0.5 keeps settling


def test_03_alpha_sets_layer_1_balance_only():
    r = load("03_convergent_rnn").exercise_3(fast=True)
    layer1 = [r[a][0] for a in sorted(r)]
    layer2 = [r[a][1] for a in sorted(r)]
    assert all(a < b for a, b in zip(layer1, layer1[1:])) and layer1[-1] > 10 * layer1[0]
    assert max(layer2) < 1.2 * min(layer2)


# ------------------------------------------------------------------------------ 04 EP
def test_04_symmetric_is_mean_of_one_sided():
    r = load("04_equilibrium_propagation").exercise_1(fast=True)
    assert r["identity_gap"] < 1e-10
    e = r["errors"]
    assert e["symmetric"] < 0.1 * min(e["one-sided +beta"], e["one-sided -beta"])


def test_04_one_layer_per_nudged_step():
    r = load("04_equilibrium_propagation").exercise_2(fast=True)
    L = r["n_layers"]
    assert r["nonzero"] == {f"w{n}": L + 1 - n for n in range(1, L + 1)}
    assert all(r["close"][k] is not None and r["close"][k] >= r["nonzero"][k] for k in r["close"])


def test_04_ep_trains_like_bptt_at_small_beta():
    c = load("04_equilibrium_propagation").exercise_3(fast=True)
    assert np.allclose(c["ep 0.01"], c["bptt"], atol=1e-3)
    assert c["bptt"][-1] < c["bptt"][0] and c["ep 0.1"][-1] < c["ep 0.1"][0]


# ------------------------------------------------------------------------------ 05 spikes
def test_05_threshold_sets_drift_bound():
    r = load("05_spikes").exercise_1(fast=True)
    for v_th, (lo, hi, drift, bound, rate) in r.items():
        assert v_th - 1 < lo and hi <= v_th + 1e-12
        assert bound - 0.01 < drift <= bound + 1e-9         # the bound is reached, never exceeded
        assert abs(rate) < 1e-3
    assert min(r, key=lambda v: r[v][2]) == 0.5


def test_05_rate_error_falls_as_one_over_T():
    r = load("05_spikes").exercise_2(fast=True)
    bound = (1 - r["lam"]) / r["lam"] + 1
    for T in (50, 100, 200, 400):
        assert max(T * np.array(r[T])) < bound
    assert max(r[400]) < 0.25 * max(r[50])


def test_05_smaller_lam_settles_closer():
    r = load("05_spikes").exercise_3(fast=True)
    late = [r[lam][1] for lam in sorted(r)]
    assert all(a < b for a, b in zip(late, late[1:]))


# ------------------------------------------------------------------------------ 06 spiking EP
@pytest.fixture(scope="module")
def solutions_06():
    return load("06_spiking_conv_ep")


def test_06_seeds_with_error_bars(solutions_06):
    r = solutions_06.exercise_1(fast=True)
    assert r["avg"]["cos"].shape == (len(r["seeds"]), 4)
    ratio_avg = r["avg"]["ratio"][:, :2].mean()
    ratio_max = r["max"]["ratio"][:, :2].mean()
    assert ratio_max > 2 * ratio_avg                       # max pooling inflates the conv estimates


def test_06_longer_free_phase_does_not_close_max_gap(solutions_06):
    r = solutions_06.exercise_2(fast=True)
    assert r["avg"][10] > r["avg"][40]
    assert all(r["max"][T] > 2 * r["avg"][T] for T in (20, 40, 80))


def test_06_spiking_ep_follows_continuous_ep_in_dense_layers(solutions_06):
    r = solutions_06.exercise_3(fast=True)
    assert min(r["avg"][2:]) > 0.8
