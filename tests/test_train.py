"""Configs, the training loop's outputs, resume, divergence, and the CLI's exit codes."""
import json

import numpy as np
import pytest

import minimal_ep as mep
import minimal_ep.run.checkpoints as ckpt_mod
import minimal_ep.run.resume as resume_mod
import minimal_ep.run.train as train_mod
from minimal_ep.run import cli, config

TINY = ["data.train_size=60", "data.test_size=40", "data.batch_size=20", "model.conv_channels=[4]",
        "model.hidden=[8]", "train.T_free=6", "train.T_nudge=3", "train.lr=[0.2, 0.1, 0.05]"]


def tiny_config(tmp_path, *more, epochs=1):
    return config.resolve(None, TINY + list(more), **{"train.epochs": epochs, "run.out": str(tmp_path)})


def test_config_defaults_overrides_and_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\npool = "max"\nhidden = [32, 16]\n[train]\nbeta = 1\n')
    cfg = config.resolve(path, ["train.T_free=12", "model.loss=ce", "data.dataset=fashion-mnist", "train.lr=0.1"],
                         **{"train.epochs": 3, "train.seed": None})
    assert cfg.model.pool == "max" and cfg.model.hidden == [32, 16]
    assert cfg.train.beta == 1.0 and isinstance(cfg.train.beta, float)
    assert cfg.train.T_free == 12 and cfg.model.loss == "ce" and cfg.train.epochs == 3
    assert cfg.train.seed == config.defaults().train.seed       # None leaves the default
    assert config.loads(config.dumps(cfg)) == cfg


@pytest.mark.parametrize("override,message", [
    ("model.pool=sum", r"bad value for model.pool: 'sum'; allowed: avg, max"),
    ("model.pools=avg", r"unknown config key model.pools; allowed in \[model\]: spiking, conv_channels"),
    ("optim.lr=1", r"unknown config section \[optim\]; allowed: data, model, train, run"),
    ("train.T_free=0", r"bad value for train.T_free: 0; allowed: an integer >= 1"),
    ("train.beta=0", r"bad value for train.beta: 0.0; allowed: a finite non-zero number"),
    ("model.eps=1.5", r"bad value for model.eps: 1.5; allowed: a number in \(0, 1\]"),
    ("train.algorithm=adam", r"bad value for train.algorithm: 'adam'; allowed: ep, bptt"),
    ("nodot=1", r"--set takes section.key=value"),
])
def test_config_errors_name_the_key_and_the_allowed_values(override, message):
    with pytest.raises(config.ConfigError, match=message):
        config.resolve(None, [override])


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\npool = 'avg'")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.resolve(bad)
    with pytest.raises(config.ConfigError, match="cannot read config"):
        config.resolve(tmp_path / "missing.toml")


def test_shipped_configs_are_valid_and_follow_table_1():
    import pathlib
    configs = sorted((pathlib.Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert len(configs) >= 13
    for path in configs:
        cfg = config.resolve(path)
        if path.stem.startswith(("mnist_2c2fc", "fmnist_2c2fc")):
            t, m = cfg.train, cfg.model
            mnist = path.stem.startswith("mnist")
            assert (t.beta, m.eps, m.lam, t.T_free, t.T_nudge) == \
                ((0.1, 0.9, 0.6, 250, 50) if mnist else (0.2, 1.0, 0.6, 350, 50)), path.name
            assert t.lr == [0.25, 0.15, 0.1, 0.08] and cfg.data.batch_size == 125
            assert t.epochs == 250 and m.conv_channels == [128, 256] and t.momentum == 0
            assert m.loss == ("mse" if m.spiking else "ce")
            assert m.pool == ("max" if "maxpool" in path.stem else "avg")


@pytest.mark.parametrize("extra", [[], ["model.spiking=false", "model.loss=ce", "train.algorithm=bptt"]])
def test_one_epoch_writes_every_output_file(tmp_path, extra):
    cfg = tiny_config(tmp_path, *extra)
    lines = []
    metrics = train_mod.train(cfg, progress=False, log=lines.append)
    for name in ("config.toml", "metrics.jsonl", "checkpoint.npz", "learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert config.resolve(tmp_path / "config.toml") == cfg
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row == metrics[0]
    for key in ("epoch", "train_error", "test_error", "loss", "seconds"):
        assert key in row
    assert 0 <= row["test_error"] <= 1 and row["epoch"] == 1
    assert ("firing_rate" in row) == cfg.model.spiking
    assert any("test error" in line for line in lines)
    assert not list(tmp_path.glob(".*tmp*"))                  # no temporary file left behind
    loaded = ckpt_mod.load_checkpoint(tmp_path / "checkpoint.npz")
    assert loaded[0] == cfg and loaded[3] == 1


def test_resume_equals_an_uninterrupted_run(tmp_path):
    whole = train_mod.train(tiny_config(tmp_path / "whole", epochs=3), progress=False, log=lambda s: None)
    train_mod.train(tiny_config(tmp_path / "split", epochs=1), progress=False, log=lambda s: None)
    split = train_mod.train(tiny_config(tmp_path / "split", epochs=3), resume=True, progress=False,
                            log=lambda s: None)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")}
                          for r in rows]
    assert strip(split) == strip(whole)
    a = np.load(tmp_path / "whole" / "checkpoint.npz")
    b = np.load(tmp_path / "split" / "checkpoint.npz")
    for k in a.files:
        if k.startswith("param."):
            assert np.array_equal(a[k], b[k]), k


def test_nan_stops_training_naming_layer_and_epoch(tmp_path, monkeypatch):
    real = train_mod.ep_gradients
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        g = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 3:                                   # epoch 2 (3 batches per epoch)
            g["w2"][0] = np.nan
        return g

    monkeypatch.setattr(train_mod, "ep_gradients", poisoned)
    cfg = tiny_config(tmp_path, epochs=3)
    with pytest.raises(train_mod.TrainingDiverged, match="gradient of w2 at epoch 2, batch 1"):
        train_mod.train(cfg, progress=False, log=lambda s: None)
    assert ckpt_mod.load_checkpoint(tmp_path / "checkpoint.npz")[3] == 1   # last good epoch kept


def _run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    code, out, err = _run_cli(capsys, "train", "--set", "model.pool=sum", "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "model.pool" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--epochs", "three"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
    code, out, err = _run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "none.npz"))
    assert code == 2 and "cannot read checkpoint" in err and err.count("\n") == 1
    args = ["train", "--out", str(tmp_path / "run"), "--epochs", "1", "--no-progress"]
    for s in TINY:
        args += ["--set", s]
    code, out, err = _run_cli(capsys, *args)
    assert code == 0 and "final test error" in out
    code, out, err = _run_cli(capsys, "evaluate", "--checkpoint", str(tmp_path / "run" / "checkpoint.npz"))
    assert code == 0 and "test error" in out and "40 mnist test images" in out
    code, out, err = _run_cli(capsys, "datasets")
    assert code == 0 and "mnist" in out and "embedded: 5000 train / 1000 test" in out


def test_cli_ctrl_c_keeps_the_last_completed_epoch(tmp_path, capsys, monkeypatch):
    real = train_mod.train_epoch

    def interrupted(net, opt, cfg, x, y, rng, epoch, progress=True, **kw):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(net, opt, cfg, x, y, rng, epoch, progress, **kw)

    monkeypatch.setattr(train_mod, "train_epoch", interrupted)
    args = ["train", "--out", str(tmp_path), "--epochs", "3", "--no-progress"]
    for s in TINY:
        args += ["--set", s]
    code, out, err = _run_cli(capsys, *args)
    assert code == 130 and "interrupted" in err and "Traceback" not in err
    assert ckpt_mod.load_checkpoint(tmp_path / "checkpoint.npz")[3] == 1


def test_resume_records_a_changed_learning_rate_and_refuses_other_settings(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    train_mod.train(tiny_config(tmp_path, epochs=3), until=1, **quiet)
    with pytest.raises(ckpt_mod.CheckpointError, match=r"train.beta: 0.2 -> 0.5"):
        train_mod.train(tiny_config(tmp_path, "train.beta=0.5", epochs=3), resume=True, **quiet)
    lower = tiny_config(tmp_path, "train.lr=[0.1, 0.05, 0.025]", epochs=3)
    metrics = train_mod.train(lower, resume=True, until=2, **quiet)
    assert [m["epoch"] for m in metrics] == [1, 2]
    ckpt = ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz")
    assert ckpt.config == lower and ckpt.changes == [
        {"epoch": 2, "key": "train.lr", "old": [0.2, 0.1, 0.05], "new": [0.1, 0.05, 0.025]}]
    assert config.resolve(tmp_path / "config.toml") == lower
    assert resume_mod.undo(lower, ckpt.changes)[-1] == tiny_config(tmp_path, epochs=3)


def test_a_linear_schedule_keeps_its_length_once_a_second_epoch_is_done(tmp_path):
    quiet = dict(progress=False, log=lambda s: None)
    train_mod.train(tiny_config(tmp_path, epochs=2), **quiet)
    with pytest.raises(ckpt_mod.CheckpointError, match=r"train.epochs: 2 -> 4 \(the learning rates of completed"):
        train_mod.train(tiny_config(tmp_path, epochs=4), resume=True, **quiet)
    assert resume_mod.epochs_problem(tiny_config(tmp_path, epochs=2), tiny_config(tmp_path, epochs=4), 1) is None
    constant = [tiny_config(tmp_path, "train.lr_schedule=constant", epochs=e) for e in (2, 4)]
    assert resume_mod.epochs_problem(*constant, 2) is None
    assert "2 epochs are already done" in resume_mod.epochs_problem(constant[1], constant[0].replace(**{
        "train.epochs": 1}), 2)


def test_config_toml_records_round_trip(tmp_path):
    cfg = tiny_config(tmp_path)
    record = {"f.gz": {"path": "/d/f.gz", "sha256": "0" * 64, "content_sha256": "1" * 64, "content": "official",
                       "first_epoch": 1, "last_epoch": 2}}
    changes = [{"epoch": 2, "key": "train.lr", "old": [0.2, 0.1, 0.05], "new": 0.1},
               {"epoch": 3, "key": "train.epochs", "old": 3, "new": 4}]
    environment = [{"first_epoch": 1, "threads": 1, "numpy": "2.4", "python": "3.11", "blas": "openblas 0.3"}]
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg, record, changes, environment))
    assert config.resolve(path) == cfg and config.loads(path.read_text()) == cfg   # records are no settings
    tables = config.read_toml(path)
    assert (tables["data_files"], tables["changes"], tables["environment"]) == (record, changes, environment)


def test_average_last_is_a_train_setting_checked_against_the_phases(tmp_path):
    with pytest.raises(config.ConfigError, match="train.average_last = 99 is longer than the phases"):
        config.resolve(None, ["train.average_last=99"])
    for estimator in ("symmetric", "one-sided"):
        cfg = tiny_config(tmp_path / estimator, "train.average_last=3", f"train.estimator={estimator}")
        metrics = train_mod.train(cfg, progress=False, log=lambda *a: None)
        assert cfg.train.average_last == 3 and 0 <= metrics[0]["test_error"] <= 1


def test_build_network_documents_every_model_setting_with_its_default():
    import ast
    import dataclasses
    import re
    doc = mep.build_network.__doc__
    for f in dataclasses.fields(config.ModelConfig):
        entry = re.search(rf"^    {f.name} : .*?\n((?:        .*\n)+)", doc, re.M)
        assert entry, f"build_network's docstring has no entry for {f.name}"
        default = re.search(r"Default (.+?)\.?$", entry.group(1).strip(), re.S).group(1)
        value = ast.literal_eval(default)
        value = list(value) if isinstance(value, tuple) else value
        assert value == getattr(config.ModelConfig(), f.name), f.name


def test_validation_holds_out_the_last_training_images_and_never_reads_the_test_split(tmp_path, monkeypatch):
    """data.validation = V: the test images are the last V of the training split, the training images
    the first of the others; together the whole split, in order; the test split is not read."""
    full = train_mod.load_data(tiny_config(tmp_path, "data.train_size=0"), progress=False)
    read = []
    real = train_mod.datasets.load_dataset
    monkeypatch.setattr(train_mod.datasets, "load_dataset",
                        lambda *a, **k: read.append(k["splits"]) or real(*a, **k))
    held = train_mod.load_data(tiny_config(tmp_path, "data.train_size=0", "data.test_size=0",
                                           "data.validation=300"), progress=False)
    assert read == [("train",)]
    n = len(full.y_train)
    assert len(held.y_test) == 300 and len(held.y_train) == n - 300
    assert np.array_equal(np.concatenate([held.x_train, held.x_test]), full.x_train)
    assert np.array_equal(np.concatenate([held.y_train, held.y_test]), full.y_train)
    sized = train_mod.load_data(tiny_config(tmp_path, "data.validation=300"), progress=False)   # 60 / 40 of them
    assert np.array_equal(sized.x_train, full.x_train[:60]) and np.array_equal(sized.x_test, held.x_test[:40])
    for bad, message in (("data.validation=%d" % n, "train split has only"),
                         ("data.validation=30", "data.test_size = 40 but 30 validation images")):
        with pytest.raises(config.ConfigError, match=message):
            train_mod.load_data(tiny_config(tmp_path, bad), progress=False)


def test_a_validation_run_says_validation_and_measures_the_held_out_images(tmp_path):
    cfg = tiny_config(tmp_path, "data.validation=100")
    lines = []
    metrics = train_mod.train(cfg, progress=False, log=lines.append)
    assert any("40 validation images" in line for line in lines)
    assert any("validation error" in line for line in lines) and not any("test error" in line for line in lines)
    data = train_mod.load_data(cfg, progress=False)
    net = train_mod.network_from_config(cfg)
    for k, v in ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").params.items():
        net.params[k][...] = v
    assert train_mod.evaluate(net, data.x_test, data.y_test, cfg.train.T_free, 20) == metrics[0]["test_error"]
