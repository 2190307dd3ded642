"""The figure scripts (figures/*.py) run to completion in --fast mode and return sane numbers.

Each script's ``main(argv)`` returns the numbers it prints and plots; the scripts are imported from
the figures/ directory with importlib and write their PNG + PDF into a temporary directory. --fast
uses tiny sizes, so only finiteness, ranges and the presence of the outputs are checked here, plus
two properties that hold even at that size: the routes measured are exactly the two terms of the
layers' total input, and the GDD property for a settled CRNN with average pooling.
"""
import importlib.util
import math
import os
import pathlib
import sys

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

FIG_DIR = pathlib.Path(__file__).resolve().parents[1] / "figures"


def load(name):
    """Import figures/<name>.py as a module (figures/ is not a package)."""
    if str(FIG_DIR) not in sys.path:
        sys.path.insert(0, str(FIG_DIR))
    spec = importlib.util.spec_from_file_location(f"figures_{name}", FIG_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def finite(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def check_outputs(result, out_dir, name):
    for ext in ("png", "pdf"):
        path = pathlib.Path(out_dir) / f"{name}.{ext}"
        assert path.is_file() and path.stat().st_size > 1000, path
    assert not list(pathlib.Path(out_dir).glob(".*tmp*")), "a temporary file was left behind"
    caption = result["caption"]
    assert "embedded MNIST subset" in caption and "network state" in caption.lower()
    assert "--fast" in caption


def test_fig2_fast(tmp_path):
    fig2 = load("fig2_activation_sums")
    r = fig2.main(["--fast", "--out", str(tmp_path)])
    check_outputs(r, tmp_path, "fig2_activation_sums")
    assert set(r["ratios"]) == {"trained", "init"}
    for state in r["ratios"].values():
        assert set(state) == {"CRNN+max", "SNN+max", "SNN+avg", "CRNN+avg"}
        for cfg in state.values():
            assert sorted(cfg) == [2, 3, 4]                    # the middle conv layers, 32-64-128 channels
            for layer in cfg.values():
                for key in ("ratio_signed", "ratio_step", "ratio_tavg"):
                    assert finite(layer[key]) and 1e-3 < layer[key] < 1e4, (key, layer[key])
                assert layer["mean_abs_fwd"] > 0 and layer["mean_abs_bwd"] > 0
    chans = r["per_channel"]["trained"]["SNN+max"]
    assert [len(chans[n]["signed_fwd"]) for n in (2, 3, 4)] == [32, 64, 128]


def test_fig3_fast_with_checkpoint(tmp_path):
    """fig3 on a checkpoint written by the training loop's own save_checkpoint."""
    from minimal_ep import config
    from minimal_ep.optim import SGD
    from minimal_ep.train import network_from_config, save_checkpoint
    cfg = config.resolve(None, (), **{"model.conv_channels": [16, 32, 64, 128], "model.padding": 1,
                                      "model.hidden": [], "model.pool": "avg",
                                      "train.lr": [0.1] * 5, "run.out": str(tmp_path)})
    net = network_from_config(cfg)
    net.params["w3"] *= 1.5                                    # distinguishable from the init
    ckpt = tmp_path / "checkpoint.npz"
    save_checkpoint(ckpt, net, SGD(net.params, cfg["train"]["lr"]), cfg, 2, np.random.default_rng(0))
    fig3 = load("fig3_activation_stats")
    r = fig3.main(["--fast", "--out", str(tmp_path), "--checkpoint", str(ckpt)])
    check_outputs(r, tmp_path, "fig3_activation_stats")
    assert "checkpoint" in r["caption"] and "2 epoch" in r["caption"]
    assert set(r["stats"]) == {"CRNN+max", "SNN+max"}
    for cfg_stats in r["stats"].values():
        for layer in cfg_stats.values():
            for avg in ("per_step", "time_avg"):
                for key in ("X_fwd", "Y_fwd", "X_bwd", "Y_bwd"):
                    mean, std = layer[avg][key]
                    assert finite(mean) and finite(std) and std >= 0
                    if key.startswith("X"):                   # states or spikes: in [0, 1]
                        assert 0 <= mean <= 1 and std <= 0.5 + 1e-9
    # spikes are 0/1: their per-step spread is at least that of their time average
    s = r["stats"]["SNN+max"][2]
    assert s["per_step"]["X_fwd"][1] >= s["time_avg"]["X_fwd"][1] - 1e-12


def test_fig_gdd_fast(tmp_path):
    gdd = load("fig_gdd")
    r = gdd.main(["--fast", "--out", str(tmp_path)])
    check_outputs(r, tmp_path, "fig_gdd")
    assert set(r["rows"]) == {"CRNN+max", "SNN+max", "SNN+avg", "CRNN+avg"}
    for rows in r["rows"].values():
        for row in rows:
            for key in ("rmse_one_sided", "rmse_symmetric"):
                assert finite(row[key]) and 0 <= row[key] < 100
            for key in ("sign_err_one_sided", "sign_err_symmetric"):
                assert 0 <= row[key] <= 1
    # the GDD property at a settled CRNN with average pooling (eps 1, float64, beta 1e-4)
    assert r["residual"]["CRNN+avg"] < 1e-4
    top = {row["name"]: row for row in r["rows"]["CRNN+avg"]}
    assert top["s5"]["rmse_symmetric"] < 0.05 and top["w5"]["rmse_symmetric"] < 0.05


def test_fig_pooling_alignment_fast(tmp_path):
    align = load("fig_pooling_alignment")
    r = align.main(["--fast", "--out", str(tmp_path)])
    check_outputs(r, tmp_path, "fig_pooling_alignment")
    for label, per_cfg in r["cosine"].items():
        assert set(per_cfg) == {"CRNN+max", "SNN+max", "SNN+avg", "CRNN+avg"}, label
        for cos in per_cfg.values():
            assert sorted(cos) == ["w1", "w2", "w3", "w4"]
            for v in cos.values():
                assert -1 - 1e-9 <= v["summed"] <= 1 + 1e-9 and -1 - 1e-9 <= v["batch_mean"] <= 1 + 1e-9
    for e in r["test_error"].values():
        assert 0 <= e["after"] <= 1


def test_routes_are_the_terms_of_the_total_input():
    """Y_fwd + Y_bwd of every middle layer equals that layer's total input (Eq. 9), both poolings."""
    common = load("common")
    from minimal_ep import backend
    x, _, _ = common.load_mnist("train", 2)
    for spiking in (False, True):
        for pool in ("max", "avg"):
            net = common.build(spiking, pool, dtype="float64")
            st = net.free_phase(backend.to_device(x.astype("float64")), 5)
            s = net.messages(st)
            phi, _ = net.total_inputs(s)
            for n in common.conv_middle_layers(net):
                y_fwd, _ = net.forward_route(n, s[n - 1])
                y_bwd = net.backward_route(n, s[n + 1], net.forward_route(n + 1, s[n])[1])
                np.testing.assert_allclose(backend.to_numpy(y_fwd + y_bwd), backend.to_numpy(phi[n]),
                                           rtol=1e-12, atol=1e-12)


def test_compared_networks_have_identical_weights():
    common = load("common")
    a = common.build(False, "max", seed=3)
    st = common.NetworkState({k: v.copy() for k, v in a.params.items()}, "test")
    nets = [st.network(spk, pool) for spk, pool in common.CONFIGS]
    assert [n.spiking for n in nets] == [False, True, True, False]
    assert all(common.same_params(a, n) for n in nets)


@pytest.mark.parametrize("name", ["fig2_activation_sums", "fig3_activation_stats", "fig_gdd",
                                  "fig_pooling_alignment"])
def test_help_runs(name, capsys):
    mod = load(name)
    with pytest.raises(SystemExit) as exc:
        mod.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--samples", "--checkpoint", "--fast", "--out"):
        assert opt in out
