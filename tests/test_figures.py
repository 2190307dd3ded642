"""The figure scripts (the figures/ package) on tiny trained checkpoints: the properties of what they measure.

``make_checkpoints.py --quick`` trains the four configurations (two SNN seeds each) as tiny nets on
the embedded subset, through the shared campaign runner (one child process per epoch), once per
module; every script then runs with ``--fast`` on them, writes its PNG + PDF into a temporary
directory, and returns its numbers. The tests check what must hold at any size: the campaign keeps
the schedule, resumes one epoch at a time and keeps the stages (stage 0 is where training starts),
the routes are the two terms of the total input, compared networks have identical weights, ratios
are positive and finite, every quantity has a spread >= 0 (and a spread over seeds exactly where
there are several), the dynamics reported are the checkpoint config's (or the overriding config's),
the cache reuses measurements, and bad input exits with status 2 and one line.
"""
import importlib
import importlib.util
import json
import math
import os
import pathlib
import shutil

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ["fig2_activation_sums", "fig3_activation_stats", "fig_gdd", "fig_pooling_alignment", "diagnose",
           "fig_imbalance_training"]
NAMES = ("crnn_max", "snn_max", "snn_avg", "crnn_avg")


def load(name):
    """``figures.<name>``: figures/ is a package installed with the project, so its helpers never clash."""
    return importlib.import_module(f"figures.{name}")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    """Tiny trained checkpoints of the four configurations, SNN seeds 0 and 1 (quick mode, two children at a time)."""
    d = tmp_path_factory.mktemp("checkpoints")
    assert load("make_checkpoints").main(["--quick", "--out-dir", str(d), "--seeds", "0 1", "--jobs", "2"]) == 0
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == sorted(list(NAMES) + ["snn_max_seed1",
                                                                                      "snn_avg_seed1"])
    return d


def config_dynamics(path):
    from minimal_ep.run.checkpoints import load_checkpoint
    cfg = load_checkpoint(path)[0]
    return {"eps": cfg.model.eps, "lam": cfg.model.lam, "v_th": cfg.model.v_th,
            "beta": cfg.train.beta, "T_free": cfg.train.T_free, "T_nudge": cfg.train.T_nudge}


def check_files(result, out_dir):
    for path in result["paths"]:
        assert pathlib.Path(path).is_file() and pathlib.Path(path).stat().st_size > 1000, path
        assert pathlib.Path(path).parent == pathlib.Path(out_dir)
    assert not list(pathlib.Path(out_dir).glob(".*tmp*")), "a temporary file was left behind"
    assert "--fast" in result["caption"]


def check_spread(q, seeds):
    """A summarised quantity: finite mean, spread >= 0, a spread over seeds exactly when there are several."""
    assert math.isfinite(q["mean"]) and q["std_sets"] >= 0 and q["err"] >= 0
    assert (q["std_seeds"] is not None) == (seeds > 1) and len(q["per_seed"]) == seeds


def test_quick_checkpoints_are_float32_runs_and_resume(ckpts, capsys):
    from minimal_ep.run.checkpoints import read_checkpoint
    for name in list(NAMES) + ["snn_max_seed1"]:
        run = ckpts / name
        for f in ("checkpoint.npz", "config.toml", "metrics.jsonl", "train.log", "campaign.jsonl",
                  "stages/epoch_000.npz", "stages/epoch_001.npz"):
            assert (run / f).is_file(), (name, f)
        ckpt = read_checkpoint(run / "checkpoint.npz")
        cfg = ckpt.config
        assert ckpt.epoch == 1 and all(v.dtype == np.float32 for v in ckpt.params.values())
        assert cfg.train.epochs == 2                                  # --until 1: the config's schedule kept
        assert cfg.model.spiking == name.startswith("snn") and cfg.model.pool == name.split("_")[1][:3]
        assert cfg.train.seed == (1 if name.endswith("seed1") else 0)
        assert cfg.model.conv_channels == [3, 4, 6, 8] and cfg.model.hidden == []
        assert (run / "stages" / "epoch_001.npz").read_bytes() == (run / "checkpoint.npz").read_bytes()
        (row,) = [json.loads(line) for line in (run / "campaign.jsonl").read_text().splitlines()]
        assert (row["exit_code"], row["epochs_before"], row["epochs_after"]) == (0, 0, 1)
        assert row["command"].endswith("--until 1")
    mk = load("make_checkpoints")
    args = ["--quick", "--out-dir", str(ckpts), "--seeds", "0 1"]
    capsys.readouterr()
    assert mk.main(args + ["--status"]) == 0                          # what is done is seen ...
    status = capsys.readouterr().out.splitlines()[1:]
    assert len(status) == 6 and all(line.split()[1:] == ["done", "1/1", "epochs"] for line in status)
    assert mk.main(args + ["--dry-run"]) == 0                         # ... and nothing is retrained
    out = capsys.readouterr().out
    assert "6 runs" in out and "0 to do" in out and not list(ckpts.glob("*/stages/epoch_002.npz"))


def test_children_get_paths_relative_to_the_repository():
    """The commands name the config and the run folder from the repository: no machine path in config.toml."""
    mk = load("make_checkpoints")
    args = mk.parse(["--names", "snn_avg", "--seeds", "2"])
    (run,) = mk.plan(args, args.set)
    cmd = run.command(1)
    assert cmd[cmd.index("--config") + 1] == "configs/figures/snn_avg.toml"
    assert cmd[cmd.index("--out") + 1] == "results/figures/checkpoints/snn_avg_seed2"
    assert cmd[cmd.index("--data-dir") + 1] == "data/mnist-10k" and cmd[cmd.index("--seed") + 1] == "2"
    assert cmd[-2:] == ["--until", "1"] and "--until" not in run.command()
    assert not any(str(REPO) in a for a in cmd[1:])
    assert [e for e in range(20) if mk.is_stage(e, 13)] == [0, 1, 2, 4, 8, 13, 16]

@pytest.mark.parametrize("name", NAMES)
def test_recipe2_changes_only_phases_rates_epochs_and_folder(name):
    """configs/figures/recipe2/NAME.toml is NAME.toml with the longer nudge, its rates and 12 epochs, nothing else."""
    from minimal_ep.run import config
    first = config.resolve(REPO / "configs" / "figures" / f"{name}.toml").to_dict()
    second = config.resolve(REPO / "configs" / "figures" / "recipe2" / f"{name}.toml").to_dict()
    changed = {(s, k) for s in first for k in first[s] if first[s][k] != second[s].get(k)}
    assert changed == {("train", "T_free"), ("train", "T_nudge"), ("train", "lr"), ("train", "epochs"), ("run", "out")}
    assert (second["train"]["T_free"], second["train"]["T_nudge"], second["train"]["epochs"]) == (500, 200, 12)
    assert second["run"]["out"] == f"results/figures/recipe2/{name}"
    mk = load("make_checkpoints")
    args = mk.parse(["--names", name, "--seeds", "1", "--configs", "configs/figures/recipe2",
                     "--out-dir", "results/figures/recipe2"])
    cmd = mk.plan(args, args.set)[0].command(1)
    assert cmd[cmd.index("--config") + 1] == f"configs/figures/recipe2/{name}.toml"
    assert cmd[cmd.index("--out") + 1].startswith(f"results/figures/recipe2/{name}")



def test_resume_adds_one_epoch_and_keeps_the_stages(tmp_path, capsys):
    """Each child one epoch more (--until); stage 0 is where training starts."""
    from minimal_ep.run.checkpoints import read_checkpoint
    from minimal_ep.run.train import train
    mk = load("make_checkpoints")
    args = ["--quick", "--out-dir", str(tmp_path), "--names", "crnn_avg"]
    assert mk.main(args) == 0
    run = tmp_path / "crnn_avg"
    shutil.rmtree(run / "stages")                     # a run from before the stages: they are made again
    assert mk.main(args + ["--epochs", "2"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    rows = [json.loads(line) for line in (run / "campaign.jsonl").read_text().splitlines()]
    assert [(r["epochs_before"], r["epochs_after"]) for r in rows] == [(0, 1), (1, 2)]
    assert rows[0]["command"].endswith("--until 1") and rows[1]["command"].endswith("--until 2")
    stages = {e: read_checkpoint(run / "stages" / f"epoch_{e:03d}.npz") for e in (0, 1, 2)}
    assert [s.epoch for s in stages.values()] == [0, 1, 2] and stages[0].metrics == []
    assert (run / "stages" / "epoch_002.npz").read_bytes() == (run / "checkpoint.npz").read_bytes()
    assert not any(np.array_equal(stages[0].params["w1"], s.params["w1"]) for s in (stages[1], stages[2]))
    # stage 0 is where training starts: resumed from it, train() gives stage 1 again, bit for bit
    again = tmp_path / "again"
    again.mkdir()
    (again / "checkpoint.npz").write_bytes((run / "stages" / "epoch_000.npz").read_bytes())
    train(stages[0].config.replace(**{"run.out": str(again)}), resume=True, progress=False, until=1,
          log=lambda *a: None)
    retrained = read_checkpoint(again / "checkpoint.npz")
    same = ("epoch", "train_error", "test_error", "loss", "lr_scale")
    assert retrained.epoch == 1 and [{k: m[k] for k in same} for m in retrained.metrics] == \
        [{k: m[k] for k in same} for m in stages[1].metrics]
    assert all(np.array_equal(retrained.params[k], v) for k, v in stages[1].params.items())
    capsys.readouterr()
    assert mk.main(args + ["--epochs", "3"]) == 2                     # beyond the schedule: one line, status 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--set train.epochs=3" in err


def test_chance_stop_ends_only_other_seeds_at_chance_after_each_epoch(tmp_path, capsys):
    """--chance-stop 3: a later seed at chance after epochs 1-3 is done at 3; the first seed, and any
    run that left chance or has not trained 3 epochs, keeps the config's 12."""
    mk = load("make_checkpoints")
    errors = {"snn_max": [0.90] * 3, "snn_max_seed1": [0.90, 0.89, 0.91], "snn_max_seed2": [0.90, 0.60, 0.90],
              "snn_avg_seed1": [0.90, 0.90], "crnn_max": [0.90] * 3}
    for run, errs in errors.items():
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": e + 1, "test_error": err}) + "\n" for e, err in enumerate(errs)))
    args = ["--configs", str(REPO / "configs/figures/recipe2"), "--out-dir", str(tmp_path), "--status"]
    assert mk.main(args + ["--chance-stop", "3"]) == 0
    status = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()[1:]}
    assert status["snn_max_seed1"] == ["done", "3/3", "epochs"]
    for run, errs in errors.items():
        if run != "snn_max_seed1":
            assert status[run][-2] == f"{len(errs)}/12", run
    assert mk.main(args) == 0                                         # without the option: the config's 12
    assert "3/12" in capsys.readouterr().out.split("snn_max_seed1")[1].splitlines()[0]


def test_fig2_then_fig3_share_measurements(ckpts, tmp_path):
    r = load("fig2_activation_sums").main(["--fast", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path)])
    check_files(r, tmp_path)
    assert set(r["groups"]) == {"own", "shared", "init"}
    dyn = {name: config_dynamics(ckpts / name / "checkpoint.npz") for name in NAMES}
    for g, per in r["groups"].items():
        if g != "own":
            assert per["params_equal_across_names"] is True                  # the identical-weights control
        for name in NAMES:
            s = per[name]
            seeds = 2 if (g == "own" and name.startswith("snn")) else 1
            assert s["seeds"] == seeds and s["sets"] == 2
            assert s["dynamics"][0] == (dyn[name] if g == "own" else dyn["crnn_max"])
            assert sorted(s["layers"]) == [2, 3, 4]                          # the middle conv layers
            for n, q in s["layers"].items():
                assert len(q["signed_fwd"]["mean"]) == {2: 4, 3: 6, 4: 8}[n]
                assert min(q["signed_fwd"]["std"] + q["signed_bwd"]["std"]) >= 0
                for key in ("ratio_signed", "ratio_step", "ratio_tavg"):
                    check_spread(q[key], seeds)
                    assert all(0 < v < math.inf for v in q[key]["per_seed"]), (g, name, n, key)
    cache = sorted((tmp_path / ".cache").glob("routes-*.json"))
    assert len(cache) == 2 * (6 + 3 + 4)          # 2 sets x (own 6, shared 4 of which CRNN+max = own, init 4)
    r3 = load("fig3_activation_stats").main(["--fast", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path),
                                             "--json", str(tmp_path / "f3.json")])
    check_files(r3, tmp_path)
    saved = json.loads((tmp_path / "f3.json").read_text())                  # --json: the numbers printed
    assert saved["caption"] == r3["caption"] and saved["samples"] == r3["samples"]
    assert saved["groups"]["own"]["snn_max"]["layers"]["3"]["ratio_step"] == \
        r3["groups"]["own"]["snn_max"]["layers"][3]["ratio_step"]
    assert sorted((tmp_path / ".cache").glob("routes-*.json")) == cache    # all read from fig2's measurements
    for g in ("own", "shared", "init"):
        for name in ("crnn_max", "snn_max"):
            q3, q2 = r3["groups"][g][name]["layers"][3], r["groups"][g][name]["layers"][3]
            assert q3["ratio_step"] == q2["ratio_step"]
            for avg in ("per_step", "time_avg"):
                for k in ("X_fwd", "Y_fwd", "X_bwd", "Y_bwd"):
                    check_spread(q3[f"{avg}.{k}.std"], r3["groups"][g][name]["seeds"])
                    assert q3[f"{avg}.{k}.std"]["mean"] >= 0
                    if k[0] == "X":                                          # states or spikes: in [0, 1]
                        assert 0 <= q3[f"{avg}.{k}.mean"]["mean"] <= 1


def test_imbalance_over_training_is_fig2_at_every_stage(ckpts, tmp_path):
    """Every stage of every run, seeds pooled per stage; the last stage is fig2's own group, the control
    its shared group (CRNN+max's weights run as SNN+max), and the CRNN+avg control runs CRNN+avg's."""
    mod = load("fig_imbalance_training")
    args = ["--fast", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path)]
    r = mod.main(args + ["--json", str(tmp_path / "imb.json")])
    check_files(r, tmp_path)
    assert json.loads((tmp_path / "imb.json").read_text())["caption"] == r["caption"]
    for name in NAMES:
        seeds = 2 if name.startswith("snn") else 1
        assert list(r["own"][name]) == [0, 1]                             # quick runs: init and epoch 1
        for epoch, m in r["own"][name].items():
            assert m["seeds"] == list(range(seeds)) and sorted(m["layers"]) == [2, 3, 4]
            assert (m["test_error"][0] is None) == (epoch == 0)
            for q in m["layers"].values():
                for key, _ in mod.QUANTITIES:
                    check_spread(q[key], seeds)
    assert set(r["control"]) == {"crnn_max", "crnn_avg"}
    for crnn, per in r["control"].items():
        for epoch, m in per.items():
            assert m["weights"] == r["own"][crnn][epoch]["weights"][:1]       # the CRNN's seed-0 weights
    fig2 = load("fig2_activation_sums").main(args + ["--no-plot", "--groups", "own,shared"])["groups"]
    for name in NAMES:
        for n in (2, 3, 4):
            assert r["own"][name][1]["layers"][n]["ratio_signed"] == fig2["own"][name]["layers"][n]["ratio_signed"]
    for n in (2, 3, 4):
        assert r["control"]["crnn_max"][1]["layers"][n]["ratio_signed"] == \
            fig2["shared"]["snn_max"]["layers"][n]["ratio_signed"]
        assert r["control"]["crnn_max"][1]["layers"][n]["ratio_signed"] != \
            r["own"]["snn_max"][1]["layers"][n]["ratio_signed"]


def test_spikes_are_binary_in_the_route_statistics(ckpts):
    """SNN messages are 0/1 spikes: the per-step std of X is exactly sqrt(p (1 - p))."""
    nets, routes = load("nets"), load("routes")
    src = nets.from_checkpoint(ckpts / "snn_max" / "checkpoint.npz")
    (x, y), = nets.sample_sets(src.cfg, 3, 1)[0]
    m = routes.measure(src.network(), x, y, src.dynamics, 2)
    for n, r in m["layers"].items():
        p, std = r["stats"]["per_step"]["X_fwd"]
        assert std == pytest.approx(math.sqrt(p * (1 - p)), rel=1e-9)
        assert r["stats"]["time_avg"]["X_fwd"][1] <= std + 1e-12
        g, st = routes.growth(r["stats"]["per_step"]), r["stats"]["per_step"]
        for d in ("fwd", "bwd"):                      # Fig. 3's growth: Y's mean and std over X's
            if st[f"X_{d}"][0] > 0:
                assert g[f"mean_{d}"] * st[f"X_{d}"][0] == pytest.approx(st[f"Y_{d}"][0], rel=1e-12)
                assert g[f"std_{d}"] * st[f"X_{d}"][1] == pytest.approx(st[f"Y_{d}"][1], rel=1e-12)
            else:                                     # a silent route has no growth, not a huge one
                assert math.isnan(g[f"mean_{d}"]) and math.isnan(g[f"std_{d}"])


def test_routes_are_the_terms_of_the_total_input(ckpts):
    """Y_fwd + Y_bwd of every middle layer is that layer's total input (Eq. 9) at the step's own indices."""
    nets, routes = load("nets"), load("routes")
    from minimal_ep import backend
    src = nets.from_checkpoint(ckpts / "crnn_max" / "checkpoint.npz")
    (x, y), = nets.sample_sets(src.cfg, 3, 1)[0]
    for name in NAMES:
        net = src.network(name, dtype="float64")            # every configuration: the same weights, in float64
        assert all(v.dtype == np.float64 for v in net.params.values())
        assert nets.same_params(net.params, {k: v.astype(np.float64) for k, v in src.params.items()})
        state, _ = net.free_phase(backend.to_device(x.astype(np.float64)), 4)
        nudge = net.nudge_towards(backend.to_device(y), 0.1)
        for _ in range(2):
            s = net.messages(state)
            new = net.step(state, nudge)
            phi, idx = net.total_inputs(s)
            for n in routes.middle_layers(net):
                y_fwd, y_bwd = routes.layer_routes(net, s, new.idx, n)
                np.testing.assert_allclose(backend.to_numpy(y_fwd + y_bwd), backend.to_numpy(phi[n]),
                                           rtol=1e-12, atol=1e-12)
                if idx[n + 1] is not None:
                    assert np.array_equal(backend.to_numpy(idx[n + 1]), backend.to_numpy(new.idx[n + 1]))
            state = new


def test_identical_weights_across_configurations(ckpts):
    nets = load("nets")
    src = nets.from_checkpoint(ckpts / "snn_avg" / "checkpoint.npz")
    built = {name: src.network(name) for name in NAMES}
    assert [built[n].spiking for n in NAMES] == [False, True, True, False]
    assert [built[n].pool for n in NAMES] == ["max", "max", "avg", "avg"]
    assert all(nets.same_params(built[n].params, src.params) for n in NAMES)
    assert all(built[n].eps == src.cfg.model.eps for n in NAMES)
    init = src.initial()
    assert not nets.same_params(init.params, src.params)              # training changed the weights


def test_descriptions_name_repository_paths_relative(ckpts):
    """What the outputs say a net is names a path inside the repository from it (results/ holds no machine path)."""
    nets = load("nets")
    src = nets.from_checkpoint(ckpts / "snn_avg" / "checkpoint.npz")
    path = "results/figures/checkpoints/snn_avg/checkpoint.npz"
    inside = nets.Net(src.cfg, src.params, 1, REPO / path)
    assert inside.describe() == f"SNN+avg seed 0 (1 epoch(s) of EP; {path})"
    assert inside.initial().describe() == f"SNN+avg seed 0 (untrained; init of {path})"
    assert src.describe().endswith(f"{ckpts / 'snn_avg' / 'checkpoint.npz'})")        # elsewhere: as given


def test_config_overrides_the_dynamics(ckpts, tmp_path):
    """--checkpoint with --config: the checkpoint's weights at the config's eps, lam, beta, T_free, T_nudge."""
    from minimal_ep.run import config
    from minimal_ep.run.checkpoints import load_checkpoint
    ckpt = ckpts / "snn_avg" / "checkpoint.npz"
    cfg = load_checkpoint(ckpt)[0].replace(**{"model.eps": 0.5, "model.lam": 0.4, "train.beta": 0.3,
                                              "train.T_free": 5, "train.T_nudge": 2, "train.seed": 7})
    (tmp_path / "dyn.toml").write_text(config.dumps(cfg))
    r = load("fig2_activation_sums").main(["--fast", "--no-plot", "--groups", "own", "--out", str(tmp_path),
                                           "--checkpoint", str(ckpt), "--config", str(tmp_path / "dyn.toml")])
    assert list(r["groups"]["own"]) == ["snn_avg"]
    assert r["groups"]["own"]["snn_avg"]["dynamics"][0] == {"eps": 0.5, "lam": 0.4, "v_th": 0.5, "beta": 0.3,
                                                            "T_free": 5, "T_nudge": 2}
    assert "seed 0" in r["nets"]["snn_avg"][0]                 # only the dynamics come from the config


def test_set_overrides_keys_of_the_config(ckpts, tmp_path, capsys):
    """--set changes the --config it follows: the untrained net it describes, or the dynamics a checkpoint gets."""
    from minimal_ep import backend
    from minimal_ep.run import config
    from minimal_ep.run.checkpoints import load_checkpoint
    nets, ckpt = load("nets"), ckpts / "snn_avg" / "checkpoint.npz"
    (tmp_path / "c.toml").write_text(config.dumps(load_checkpoint(ckpt)[0]))
    plain = nets.from_config(tmp_path / "c.toml", ["model.init_scale=1.0"])
    wider = nets.from_config(tmp_path / "c.toml", ["model.init_scale=2.0", "model.eps=0.25"])
    assert wider.cfg.model.eps == 0.25 and plain.cfg.model.eps != 0.25
    peak = {name: {k: float(np.abs(backend.to_numpy(v)).max()) for k, v in net.params.items()}
            for name, net in (("plain", plain), ("wider", wider))}
    assert all(1.5 * peak["plain"][k] < peak["wider"][k] <= 2 * peak["plain"][k] * 1.01 for k in peak["plain"]
               if k.startswith("w")), peak
    args = ["--fast", "--no-plot", "--no-gradients", "--checkpoint", str(ckpt), "--config", str(tmp_path / "c.toml")]
    (_, d), = load("diagnose").main(args + ["--set", "train.T_free=6", "--set", "model.lam=0.45"])["nets"].items()
    assert d["dynamics"]["T_free"] == 6 and d["dynamics"]["lam"] == 0.45 and len(d["free"]["trace"]) == 6
    run = load("cli").run_main
    assert run(load("diagnose").main, args + ["--set", "model.no_such_key=1"]) == 2
    assert "no_such_key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:                     # --set needs a --config to override
        load("diagnose").main(["--fast", "--checkpoint", str(ckpt), "--set", "model.eps=0.3"])
    assert exc.value.code == 2


def test_gdd_fast(ckpts, tmp_path):
    gdd = load("fig_gdd")
    r = gdd.main(["--fast", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path)])
    check_files(r, tmp_path)
    dyn = config_dynamics(ckpts / "crnn_max" / "checkpoint.npz")
    assert r["dynamics"] == dict(dyn, K=dyn["T_nudge"])                   # K = T_nudge steps compared
    for rows in r["rows"].values():
        for row in rows.values():
            assert all(q["std"] >= 0 and math.isfinite(q["mean"]) for q in row.values())
            assert 0 <= row["sign_err_symmetric"]["mean"] <= 1
    # the GDD property at a settled CRNN (eps 1, float64, small beta), with the overrides reported
    r = gdd.main(["--fast", "--no-plot", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path),
                  "--eps", "1", "--beta", "1e-4", "--T-free", "60"])
    assert r["dynamics"]["eps"] == 1 and r["dynamics"]["beta"] == 1e-4 and r["dynamics"]["T_free"] == 60
    assert r["residual"]["CRNN+avg" if "CRNN+avg" in r["residual"] else "crnn_avg"]["mean"] < 1e-8
    top = r["rows"]["crnn_avg"]
    assert top["s5"]["rmse_symmetric"]["mean"] < 1e-3 and top["w5"]["rmse_symmetric"]["mean"] < 1e-3


def test_pooling_alignment_fast(ckpts, tmp_path):
    r = load("fig_pooling_alignment").main(["--fast", "--checkpoint-dir", str(ckpts), "--out", str(tmp_path)])
    check_files(r, tmp_path)
    for name in NAMES:
        runs = [name] + ([f"{name}_seed1"] if name.startswith("snn") else [])
        final = [json.loads((ckpts / d / "metrics.jsonl").read_text().splitlines()[-1])["test_error"] for d in runs]
        e = r["test_error"][name]
        assert e["per_seed"] == final and e["mean"] == pytest.approx(np.mean(final)) and e["std"] >= 0
        for g in ("own", "init"):
            c = r["cosine"][g][name]
            seeds = len(runs) if g == "own" else 1
            assert c["seeds"] == seeds and sorted(c["weights"]) == ["w1", "w2", "w3", "w4", "w5"]
            run = name if g == "own" else "crnn_max"
            assert c["dynamics"][0] == config_dynamics(ckpts / run / "checkpoint.npz")
            for q in c["weights"].values():
                check_spread(q, seeds)
                assert -1 - 1e-9 <= q["mean"] <= 1 + 1e-9


def test_diagnose_fast(ckpts, tmp_path):
    out = tmp_path / "d.json"
    r = load("diagnose").main(["--fast", "--history", "--checkpoint", str(ckpts / "snn_max" / "checkpoint.npz"),
                               "--out", str(tmp_path), "--json", str(out)])
    check_files(dict(r, caption=r["caption"] + " --fast"), tmp_path)
    assert list(r["nets"]) == ["SNN+max seed 0 init", "SNN+max seed 0 epoch 1"]        # the run's stages
    assert [d["net"].endswith(f"stages/epoch_00{e}.npz)") for e, d in enumerate(r["nets"].values())] == [True, True]
    metrics = [json.loads(line) for line in (ckpts / "snn_max" / "metrics.jsonl").read_text().splitlines()]
    assert [d["test_error"] for d in r["nets"].values()] == [None, metrics[0]["test_error"]]
    assert json.loads(out.read_text()).keys() == r["nets"].keys()
    for d in r["nets"].values():
        assert d["dynamics"] == config_dynamics(ckpts / "snn_max" / "checkpoint.npz")
        for ph in ("free", "plus", "minus"):
            assert len(d[ph]["residual"]) == 5 and all(v >= 0 and math.isfinite(v) for v in d[ph]["residual"])
            assert len(d[ph]["trace"]) == d["dynamics"]["T_free" if ph == "free" else "T_nudge"]
        assert all(0 <= v <= 1 for k in ("mean", "at_0", "at_1") for v in d["activity"][k])
        assert all(0 <= v <= 1 for v in d["free"]["rate"])
        assert sorted(d["routes"]) == [1, 2, 3, 4] and sorted(d["gradients"]) == ["w1", "w2", "w3", "w4", "w5"]
        for k in ("idx_plus_minus", "idx_flicker"):                    # four max-pooled conv layers, no pooled output
            v = d[k] if k == "idx_plus_minus" else d["free"][k]
            assert len(v) == 5 and v[4] is None and all(0 <= f <= 1 for f in v[:4])
    growth = [d["weight_growth"] for d in r["nets"].values()]
    assert set(growth[0].values()) == {1.0} and sorted(growth[1]) == ["w1", "w2", "w3", "w4", "w5"]


def test_diagnose_as_another_configuration_keeps_the_weights(ckpts):
    """--as crnn_max: the SNN+avg weights measured in the continuous net with max pooling."""
    args = ["--fast", "--no-plot", "--no-gradients", "--checkpoint", str(ckpts / "snn_avg" / "checkpoint.npz")]
    r = load("diagnose").main(args + ["--as", "crnn_max"])
    (name, d), = r["nets"].items()
    assert name == "SNN+avg seed 0 as CRNN+max epoch 1" and "rate" not in d["free"] and d["test_error"] is None
    assert all(f is not None for f in d["idx_plus_minus"][:4]) and d["idx_plus_minus"][4] is None
    assert all(g > 0 for g in d["weight_growth"].values())
    avg = load("diagnose").main(args)["nets"]
    assert all(f is None for d in avg.values() for f in d["idx_plus_minus"])      # average pooling: no indices


def test_prepared_idx_files_load(tmp_path):
    path = REPO / "scripts" / "prepare_mnist_subset.py"
    spec = importlib.util.spec_from_file_location("prepare_mnist_subset", path)
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    from minimal_ep.run.datasets import load_idx
    images = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    for name, a in (("img", images), ("lab", np.array([3, 1, 4], dtype=np.uint8))):
        (tmp_path / name).write_bytes(prep.idx_bytes(a))
        assert np.array_equal(load_idx(tmp_path / name), a)


@pytest.mark.parametrize("argv", [["--checkpoint", "/nonexistent/checkpoint.npz"],
                                  ["--checkpoint-dir", "/nonexistent"]])
def test_bad_input_is_one_line_and_status_2(argv, capsys):
    fig2 = load("fig2_activation_sums")
    assert fig2.cli.run_main(fig2.main, argv + ["--fast", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error" in err
    with pytest.raises(SystemExit) as exc:
        fig2.main(["--samples", "0"])
    assert exc.value.code == 2


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_runs(name, capsys):
    with pytest.raises(SystemExit) as exc:
        load(name).main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--samples", "--checkpoint", "--config", "--fast", "--out"):
        assert opt in out


def test_diagnose_at_other_phase_lengths(ckpts, capsys):
    args = ["--fast", "--no-plot", "--no-gradients", "--checkpoint", str(ckpts / "snn_avg" / "checkpoint.npz")]
    (name, d), = load("diagnose").main(args + ["--phases", "7", "3"])["nets"].items()
    assert " T 7+3 " in name and (d["dynamics"]["T_free"], d["dynamics"]["T_nudge"]) == (7, 3)
    assert len(d["free"]["trace"]) == 7 and len(d["plus"]["trace"]) == len(d["minus"]["trace"]) == 3
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        load("diagnose").main(args + ["--phases", "0", "3"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--phases" in err and "got 0" in err


PROBE_QUICK = ["--config", str(REPO / "configs" / "figures" / "snn_avg.toml"), "--set", 'data.source="embedded"',
               "--set", "model.conv_channels=[3, 4, 6, 8]", "--set", "train.T_free=16", "--set", "train.T_nudge=6"]


def test_probe_steps_records_the_training_loops_own_batches(tmp_path):
    from minimal_ep import backend, bptt_gradients, datasets, ep_gradients
    from minimal_ep.run import config
    from minimal_ep.run.gradcheck import cosine
    from minimal_ep.run.train import load_data, network_from_config
    probe = load("probe_steps")
    records = probe.main(PROBE_QUICK + ["--steps", "3", "--batch-size", "10", "--seed", "4",
                                        "--compare-bptt", "2", "--json", str(tmp_path / "p.json")])
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["steps"] == records and [r["step"] for r in records] == [1, 2, 3]
    assert saved["complete"] and saved["steps_planned"] == 3
    assert "--steps 3" in saved["command"] and not list(tmp_path.glob(".*tmp*"))
    assert saved["config"]["data"]["batch_size"] == 10
    assert [r["cos_bptt"] is None for r in records] == [False, True, False]
    (row,) = probe.main(["--summarize", str(tmp_path / "p.json")])
    assert row["batch"] == 10 and row["steps"] == 3 and row["net"] == "SNN+avg"
    assert row["error"] == [pytest.approx(np.mean([r["error"] for r in records]))]
    # step 1 is the gradient of a fresh net on the first batch of the loop's shuffle (seed 4)
    cfg = config.resolve(PROBE_QUICK[1], PROBE_QUICK[3::2] + ["data.batch_size=10", "data.test_size=1"])
    assert saved["config"] == cfg.to_dict()
    net, data = network_from_config(cfg), load_data(cfg)
    idx = next(iter(datasets.iterate_batches(30, 10, True, np.random.default_rng(4))))
    t = cfg.train
    xb, yb = backend.to_device(data.x_train[idx]), backend.to_device(data.y_train[idx])
    g = ep_gradients(net, xb, yb, t.beta, t.T_free, t.T_nudge, t.estimator)
    bp = bptt_gradients(net, xb, yb, t.T_free)
    ep_w, bp_w = ([backend.to_numpy(d[f"w{n}"]).astype(np.float64) for n in range(1, 6)] for d in (g, bp))
    np.testing.assert_allclose(records[0]["grad"], [np.linalg.norm(a) for a in ep_w], rtol=1e-6)
    np.testing.assert_allclose(records[0]["cos_bptt"], [cosine(a, b) for a, b in zip(ep_w, bp_w)], atol=1e-6)
    for r in records:
        assert len(r["mean"]) == len(r["at0"]) == len(r["at1"]) == 5
        assert all(0 <= a + b <= 1 for a, b in zip(r["at0"], r["at1"]))
        assert 10 * r["error"] == round(10 * r["error"]) and math.isfinite(r["loss"]) and r["cpu"] >= 0


def test_probe_steps_json_grows_step_by_step(tmp_path, monkeypatch):
    """The --json file is rewritten after every step: a probe stopped early leaves the steps it made."""
    probe = load("probe_steps")
    written = []
    save = probe.cli.save_json
    monkeypatch.setattr(probe.cli, "save_json",
                        lambda args, data: (written.append((len(data["steps"]), data["complete"])), save(args, data)))
    probe.main(PROBE_QUICK + ["--steps", "2", "--batch-size", "10", "--json", str(tmp_path / "p.json")])
    assert written == [(1, False), (2, True), (2, True)]


def test_probe_steps_bad_input_is_one_line_and_status_2(capsys):
    probe = load("probe_steps")
    with pytest.raises(SystemExit) as exc:
        probe.main(PROBE_QUICK + ["--steps", "0", "--batch-size", "3"])
    assert exc.value.code == 2
    assert probe.cli.run_main(probe.main, PROBE_QUICK + ["--steps", "1000", "--batch-size", "300"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "--steps" in err[0] and "got 0" in err[0] and "300000 images" in err[1]


def test_readings_literal_is_the_library_and_its_average_is_average_last():
    """figures/readings.py (issue #30): the literal reading's estimates are the library's ep_gradients,
    with average_last = 1 (Eq. 11 at the last step) and = K (at the mean of the last K steps)."""
    import minimal_ep as mep
    readings = load("readings")
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 1, 12, 12)), rng.integers(0, 4, 6)
    net = mep.build_network(input_shape=(1, 12, 12), conv_channels=(4, 8), hidden=(16,), n_classes=4,
                            padding=1, spiking=True, eps=0.5, lam=0.5, dtype="float64")
    reading = readings.as_reading(net, readings.Literal)
    T_nudge = 10
    phases = readings.ep_phases(reading, x, y, 0.2, 20, T_nudge, 10, readings.state_ks(T_nudge))
    est = readings.estimates(reading, phases, 0.2, T_nudge)
    for K, name in ((1, "last"), (5, "state_avg_5"), (10, "state_avg_10")):
        lib = mep.ep_gradients(net, x, y, 0.2, 20, T_nudge, average_last=K)
        assert all(np.allclose(est[name][k], lib[k], rtol=1e-10, atol=1e-14) for k in est[name]), name
    assert readings.READINGS and all(readings.reading_doc(name) for name in readings.READINGS)


def test_diagnose_measures_the_estimate_training_uses():
    """figures/gradients.py: EP's estimate with the config's train settings, average_last included."""
    import minimal_ep as mep
    from minimal_ep.run import config as config_mod
    gradients = load("gradients")
    rng = np.random.default_rng(1)
    x, y = rng.random((4, 1, 12, 12)), rng.integers(0, 4, 4)
    net = mep.build_network(input_shape=(1, 12, 12), conv_channels=(4, 8), hidden=(16,), n_classes=4,
                            padding=1, spiking=True, eps=0.5, lam=0.5, dtype="float64")
    norms = {}
    for K in (1, 5):
        cfg = config_mod.resolve(None, ["train.T_free=20", "train.T_nudge=10", "train.beta=0.2",
                                        f"train.average_last={K}"])
        got = gradients.alignment(net, x, y, cfg, batch_size=4)
        ep = mep.ep_gradients(net, x, y, 0.2, 20, 10, average_last=K)
        norms[K] = [got[k]["norm_ep"] for k in got]
        assert np.allclose(norms[K], [np.linalg.norm(ep[k]) for k in got], rtol=1e-12)
    assert norms[1] != norms[5]


def test_campaign_table_is_the_runs_files(ckpts, tmp_path, capsys):
    """The table holds every run's test errors and CPU s; the net rows are mean +- std (ddof 1) over seeds."""
    table = load("campaign_table")
    runs = table.read_runs(ckpts)
    assert sorted(runs) == sorted(p.name for p in ckpts.iterdir() if p.is_dir())
    for run, (errors, _, cpu) in runs.items():
        metrics = [json.loads(line) for line in (ckpts / run / "metrics.jsonl").read_text().splitlines()]
        assert errors == [m["test_error"] for m in metrics] and len(cpu) == len(errors) and min(cpu) > 0
    rows = {(net, epoch): (seeds, mean, std) for net, seeds, epoch, mean, std in table.family_rows(runs)}
    seeds, mean, std = rows[("snn_avg", 1)]
    values = [runs["snn_avg"][0][0], runs["snn_avg_seed1"][0][0]]
    assert seeds == 2 and mean == pytest.approx(np.mean(values)) and std == pytest.approx(np.std(values, ddof=1))
    assert rows[("crnn_max", 1)][2] is None                       # one seed: no spread
    doc = tmp_path / "doc.md"
    doc.write_text(f"head\n{table.BEGIN}\nold\n{table.END}\ntail\n")
    assert table.main(["--out-dir", str(ckpts), "--write", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith(f"head\n{table.BEGIN}\n| run |") and text.endswith(f"{table.END}\ntail\n")
    assert "old" not in text and table.table(runs) in text
    doc.write_text("no markers\n")
    assert table.run_main(table.main, ["--out-dir", str(ckpts), "--write", str(doc)]) == 2
    assert doc.read_text() == "no markers\n" and capsys.readouterr().err.count("\n") == 1


def test_figures_md_campaign_table_is_the_committed_runs():
    """docs/FIGURES.md's campaign table is what figures.campaign_table makes of results/figures/recipe2/."""
    table = load("campaign_table")
    text = (REPO / "docs" / "FIGURES.md").read_text()
    assert table.replace_between_markers(text, table.table(table.read_runs(table.DEFAULT_DIR))) == text
