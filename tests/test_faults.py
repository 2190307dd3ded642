"""Fault injection (issue 11): a user's runs, checkpoints and data are never silently lost or substituted.

Each numbered case of the issue is driven here as a hostile but fair user would: through the command
line (in-process, or as a subprocess where a process must die or two must run at once), checking
the exit status, that the message is one line naming the problem, and that no earlier output
changed. The networks are tiny (conv 2 -> dense 4 -> 10, 20 training images, a few steps): these
tests are about the files, not about learning.
"""
import errno
import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import minimal_ep as mep
import minimal_ep.checkpoints as ckpt_mod
import minimal_ep.train as train_mod
from minimal_ep import cli, config, datasets, runs
from minimal_ep.optim import SGD

from conftest import REPO

TINY = ["--set", "model.conv_channels=[2]", "--set", "model.hidden=[4]", "--set", "train.T_free=3",
        "--set", "train.T_nudge=2", "--set", "train.lr=0.2", "--set", "data.batch_size=10",
        "--train-size", "20", "--test-size", "10", "--no-progress"]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def run_cli(capsys, *argv):
    """(exit status, stdout, stderr) of ``minimal-ep *argv`` run in this process."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exc:                         # argparse errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def train_cli(capsys, out, *more, epochs=1):
    return run_cli(capsys, "train", "--out", out, "--epochs", epochs, *TINY, *more)


def one_line_error(err):
    """The CLI's contract for bad input: exactly one line on stderr, no traceback."""
    return err.count("\n") == 1 and "Traceback" not in err and "allow_pickle" not in err


def snapshot(folder, but=()):
    """{file name: bytes} of the files in ``folder`` except ``but``: 'no earlier output changed' is equality.

    A resumed run rewrites config.toml with its own settings (e.g. more epochs): compare without it.
    """
    folder = pathlib.Path(folder)
    if not folder.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and p.name not in but}


RESUMED = ("config.toml",)


def strip_times(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_second")} for r in rows]


def metrics_rows(folder):
    return [json.loads(line) for line in (pathlib.Path(folder) / "metrics.jsonl").read_text().splitlines()]


def spawn(*args):
    """A ``python`` subprocess of this interpreter, stdout piped (environment inherited)."""
    return subprocess.Popen([sys.executable, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO)


def kill_hard(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)                             # reaped: its pid no longer exists
    proc.stdout.close()
    proc.stderr.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch tiny run: its metrics rows and weights, to compare others with."""
    out = tmp_path_factory.mktemp("reference")
    assert cli.main(["train", "--out", str(out), "--epochs", "3", *TINY]) == 0
    ckpt = ckpt_mod.read_checkpoint(out / "checkpoint.npz")
    return strip_times(metrics_rows(out)), ckpt.params


def assert_same_as_reference(folder, reference):
    rows, params = reference
    assert strip_times(metrics_rows(folder)) == rows
    got = ckpt_mod.read_checkpoint(pathlib.Path(folder) / "checkpoint.npz").params
    assert all(np.array_equal(got[k], params[k]) for k in params)


# ----------------------------------------------------------------------------- 1. overwriting a run

def test_1_a_folder_holding_a_run_is_refused_then_replaced_on_purpose(tmp_path, capsys):
    assert train_cli(capsys, tmp_path)[0] == 0
    before = snapshot(tmp_path)
    code, out, err = train_cli(capsys, tmp_path, "--seed", 5)
    assert code == 2 and one_line_error(err) and "--resume" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before
    code, out, err = train_cli(capsys, tmp_path, "--seed", 5, "--resume", "--overwrite")
    assert code == 2 and "not allowed with" in err and snapshot(tmp_path) == before
    (tmp_path / "checkpoint.npz").unlink()                       # metrics.jsonl alone is a run too
    before = snapshot(tmp_path)
    assert train_cli(capsys, tmp_path, "--seed", 5)[0] == 2 and snapshot(tmp_path) == before
    code, out, err = train_cli(capsys, tmp_path, "--seed", 5, "--resume")
    assert code == 2 and "no checkpoint.npz" in err and "--overwrite" in err
    code, out, err = train_cli(capsys, tmp_path, "--seed", 5, "--overwrite")
    assert code == 0 and "removed the previous run" in out
    assert config.resolve(tmp_path / "config.toml")["train"]["seed"] == 5
    assert ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").config["train"]["seed"] == 5
    assert len(metrics_rows(tmp_path)) == 1 and not (tmp_path / runs.LOCK_NAME).exists()


# ----------------------------------------------------------------------------- 2. two runs, one folder

def test_2_a_second_run_is_refused_while_the_first_runs_and_a_dead_ones_lock_is_taken_over(tmp_path, capsys):
    first = spawn("-m", "minimal_ep", "train", "--out", tmp_path, "--epochs", 100000, *TINY)
    try:
        deadline = time.time() + 60
        while not (tmp_path / "checkpoint.npz").exists():       # the first run is under way
            assert first.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.05)
        code, out, err = train_cli(capsys, tmp_path, "--resume")
        assert code == 2 and one_line_error(err) and f"in use by process {first.pid}" in err
    finally:
        kill_hard(first)                                        # dies holding the lock
    assert int((tmp_path / runs.LOCK_NAME).read_text()) == first.pid
    done = ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").epoch
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=done + 1)
    assert code == 0, err
    assert f"took over the lock of {tmp_path}: process {first.pid} is no longer running" in out
    assert [r["epoch"] for r in metrics_rows(tmp_path)] == list(range(1, done + 2))
    assert not (tmp_path / runs.LOCK_NAME).exists() and not list(tmp_path.glob(".*"))


def test_2_the_lock_is_exclusive_and_only_its_owner_releases_it(tmp_path):
    lock = runs.RunLock(tmp_path).acquire()
    with pytest.raises(runs.RunFolderError, match=f"in use by process {os.getpid()}"):
        runs.RunLock(tmp_path).acquire()                        # even from the same process
    (tmp_path / runs.LOCK_NAME).write_text("999999999\n")       # a stale lock of a dead process
    messages = []
    runs.RunLock(tmp_path, messages.append).acquire().release()
    assert messages == [f"took over the lock of {tmp_path}: process 999999999 is no longer running"]
    lock.release()                                              # no longer its lock: nothing removed
    assert not (tmp_path / runs.LOCK_NAME).exists()


# ----------------------------------------------------------------------------- 3. one epoch, one commit

def test_3_an_interrupt_between_the_checkpoint_and_the_metrics_loses_nothing(tmp_path, capsys, monkeypatch,
                                                                              reference):
    real, calls = train_mod.write_metrics, {"n": 0}

    def interrupted_after_the_commit(folder, metrics):
        calls["n"] += 1
        if calls["n"] == 2:                                     # epoch 2: checkpoint renamed, metrics not
            raise KeyboardInterrupt
        real(folder, metrics)

    monkeypatch.setattr(train_mod, "write_metrics", interrupted_after_the_commit)
    code, out, err = train_cli(capsys, tmp_path, epochs=3)
    assert code == 130 and one_line_error(err) and "after epoch 2) is kept" in err
    assert len(metrics_rows(tmp_path)) == 1 and ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").epoch == 2
    monkeypatch.setattr(train_mod, "write_metrics", real)
    assert train_cli(capsys, tmp_path, "--resume", epochs=3)[0] == 0
    assert_same_as_reference(tmp_path, reference)


def test_3_an_interrupt_inside_a_checkpoint_write_keeps_the_previous_one(tmp_path, capsys, monkeypatch,
                                                                         reference):
    real, calls = os.replace, {"n": 0}

    def interrupted_rename(src, dst):
        if str(dst).endswith("checkpoint.npz"):
            calls["n"] += 1
            if calls["n"] == 2:                                 # the temporary file is complete
                raise KeyboardInterrupt
        return real(src, dst)

    assert train_cli(capsys, tmp_path)[0] == 0
    first = snapshot(tmp_path, but=RESUMED)
    monkeypatch.setattr(os, "replace", interrupted_rename)
    calls["n"] = 1
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=3)
    monkeypatch.setattr(os, "replace", real)
    assert code == 130 and "after epoch 1) is kept" in err
    assert snapshot(tmp_path, but=RESUMED) == first            # no temporary file, nothing changed
    assert train_cli(capsys, tmp_path, "--resume", epochs=3)[0] == 0
    assert_same_as_reference(tmp_path, reference)


KILL_DURING_WRITE = """
import sys, time
import numpy as np
from minimal_ep import cli
real, calls = np.savez, [0]
def stalled_savez(f, **arrays):     # the second checkpoint: half written, then the process is killed
    calls[0] += 1
    if calls[0] == 2:
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        print("writing", flush=True)
        time.sleep(600)
    real(f, **arrays)
np.savez = stalled_savez
sys.exit(cli.main(sys.argv[1:]))
"""


def test_3_kill_9_during_a_checkpoint_write(tmp_path, capsys, reference):
    out = tmp_path / "run"
    proc = spawn("-c", KILL_DURING_WRITE, "train", "--out", out, "--epochs", 3, *TINY)
    try:
        lines = iter(proc.stdout.readline, "")                  # the run's log, then "writing"
        assert "writing\n" in lines, "the run ended before its second checkpoint"
    finally:
        kill_hard(proc)
    assert [p.name for p in out.glob(".checkpoint.npz.tmp*")] == [f".checkpoint.npz.tmp{proc.pid}"]
    assert ckpt_mod.read_checkpoint(out / "checkpoint.npz").epoch == 1 and len(metrics_rows(out)) == 1
    code, stdout, err = train_cli(capsys, out, "--resume", epochs=3)
    assert code == 0, err
    assert f"removed {out / f'.checkpoint.npz.tmp{proc.pid}'}" in stdout and "took over the lock" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(runs.RUN_FILES)
    assert_same_as_reference(out, reference)


# ----------------------------------------------------------------------------- 4. damaged, foreign checkpoints

def _damage(kind, good, path):
    data = good.read_bytes()
    z = dict(np.load(good))
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bit-flipped":
        member = zipfile.ZipFile(good).getinfo("param.w1.npy")
        flipped = bytearray(data)
        flipped[member.header_offset + 200] ^= 0x10             # inside w1's data: CRC mismatch
        path.write_bytes(bytes(flipped))
    elif kind == "npy":                                         # a .npy saved under the checkpoint's name
        with open(path, "wb") as f:
            np.save(f, z["param.w1"])
    elif kind == "dataset":
        np.savez(path, train_images=np.zeros((2, 28, 28), np.uint8), train_labels=np.zeros(2, np.uint8))
    elif kind == "text":
        path.write_text("epoch = 3\n")
    elif kind == "pickled":
        np.savez(path, **z, extra=np.array([{"a": 1}], dtype=object))
    elif kind in ("missing w2", "nan weights", "wrong shape", "bad config"):
        if kind == "missing w2":
            del z["param.w2"]
        elif kind == "nan weights":
            z["param.w3"][0, 0] = np.nan
        elif kind == "wrong shape":
            z["param.b1"] = np.zeros(7, np.float32)
        else:
            z["config"] = np.array("[train]\nbeta = inf\n")
        np.savez(path, **z)
    return path


DAMAGES = {"truncated": "not an .npz archive", "empty": "is empty", "bit-flipped": "is damaged",
           "npy": "single .npy array", "dataset": "not a minimal-ep checkpoint: it lacks epoch",
           "text": "not an .npz archive", "pickled": "pickled Python objects",
           "missing w2": "missing param.w2", "nan weights": "param.w3 has 1 non-finite values",
           "wrong shape": "param.b1 has shape (7,), the network needs (2,)",
           "bad config": "stored config is invalid: bad value for train.beta: inf"}


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    assert cli.main(["train", "--out", str(out), "--epochs", "1", *TINY]) == 0
    return out / "checkpoint.npz"


@pytest.mark.parametrize("kind", DAMAGES)
def test_4_evaluate_and_resume_refuse_a_damaged_or_foreign_checkpoint(kind, tmp_path, capsys, good_checkpoint):
    path = _damage(kind, good_checkpoint, tmp_path / "checkpoint.npz")
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "evaluate", "--checkpoint", path)
    assert code == 2 and one_line_error(err), err
    assert str(path) in err and DAMAGES[kind] in err
    if path.name == "checkpoint.npz":                           # the same file as a run's checkpoint
        code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=2)
        assert code == 2 and one_line_error(err) and str(path) in err, err
    assert snapshot(tmp_path) == before


def test_4_a_bit_flip_anywhere_is_refused_or_harmless(tmp_path, good_checkpoint):
    data, original = good_checkpoint.read_bytes(), ckpt_mod.read_checkpoint(good_checkpoint)
    path = tmp_path / "flipped.npz"
    for position in np.random.default_rng(0).choice(len(data), 60, replace=False):
        flipped = bytearray(data)
        flipped[position] ^= 0x04
        path.write_bytes(bytes(flipped))
        try:
            loaded = ckpt_mod.read_checkpoint(path)
        except ckpt_mod.CheckpointError as err:
            assert str(path) in str(err)
            continue
        assert loaded.epoch == original.epoch and loaded.config == original.config   # zip metadata only
        assert all(np.array_equal(loaded.params[k], original.params[k]) for k in original.params)


@pytest.mark.parametrize("change, key", [("train.momentum=0.9", "train.momentum"),
                                         ("model.hidden=[5]", "model.hidden"),
                                         ("train.beta=0.5", "train.beta")])
def test_4_resume_with_other_settings_names_the_keys(change, key, tmp_path, capsys):
    assert train_cli(capsys, tmp_path)[0] == 0
    before = snapshot(tmp_path)
    code, out, err = train_cli(capsys, tmp_path, "--resume", "--set", change, epochs=2)
    assert code == 2 and one_line_error(err) and f"{key}:" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before


def test_4_a_checkpoint_in_the_old_format_still_loads_and_resumes(tmp_path, capsys, reference):
    """The format before issue 11: no metrics and no sign RNG inside; metrics.jsonl beside it."""
    assert train_cli(capsys, tmp_path)[0] == 0
    z = dict(np.load(tmp_path / "checkpoint.npz"))
    old = {k: v for k, v in z.items() if k not in ("metrics", "sign_rng_state")}
    np.savez(tmp_path / "checkpoint.npz", **old)
    assert ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").metrics is None
    assert run_cli(capsys, "evaluate", "--checkpoint", tmp_path / "checkpoint.npz")[0] == 0
    assert train_cli(capsys, tmp_path, "--resume", epochs=3)[0] == 0
    assert_same_as_reference(tmp_path, reference)


# ----------------------------------------------------------------------------- 5. divergence

def test_5_exploding_weights_stop_the_run_naming_layer_and_epoch(tmp_path, capsys):
    code, out, err = train_cli(capsys, tmp_path, "--set", "train.lr=1e36")
    assert code == 1 and one_line_error(err)
    assert re.search(r"training diverged: weight w(\d) of layer \1 reached \|w\1\| = [\d.]+e\+3\d at "
                     r"epoch 1, batch 1, beyond its divergence limit", err)
    assert "no checkpoint was written" in err and "kept" not in err
    assert not (tmp_path / "checkpoint.npz").exists()


def test_5_divergence_after_a_good_epoch_keeps_its_checkpoint(tmp_path, capsys, monkeypatch):
    assert train_cli(capsys, tmp_path)[0] == 0
    good = snapshot(tmp_path, but=RESUMED)
    real = train_mod.ep_gradients

    def exploding(*args, **kwargs):                             # from epoch 2, batch 1 on
        grads = real(*args, **kwargs)
        grads["w2"] *= 1e30
        return grads

    monkeypatch.setattr(train_mod, "ep_gradients", exploding)
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=3)
    assert code == 1 and one_line_error(err)
    assert "weight w2 of layer 2" in err and "epoch 2, batch 1" in err
    assert "the last good checkpoint" in err and "after epoch 1) is kept" in err
    assert snapshot(tmp_path, but=RESUMED) == good             # the epoch-1 run, byte for byte
    kept = ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz")
    assert kept.epoch == 1 and all(np.isfinite(v).all() for v in kept.params.values())


def test_5_a_non_finite_loss_stops_the_run(tmp_path, capsys, monkeypatch):
    real = train_mod.network_from_config

    def broken_loss(cfg):
        net = real(cfg)
        net.loss = lambda state, y: float("nan")
        return net

    monkeypatch.setattr(train_mod, "network_from_config", broken_loss)
    code, out, err = train_cli(capsys, tmp_path)
    assert code == 1 and "the loss is nan at epoch 1, batch 1" in err and "no checkpoint" in err


def test_5_divergence_limits_follow_the_stated_rule():
    net = mep.build_network(conv_channels=(2,), hidden=(4,), n_classes=10)
    limits = train_mod.divergence_limits(net.params, [1.0, 3.0, 0.5])
    assert limits["w1"] == limits["b1"] == pytest.approx(1000 / math.sqrt(1 * 3 * 3))
    assert limits["w2"] == pytest.approx(1000 * 3.0 / math.sqrt(2 * 13 * 13))
    assert limits["w3"] == limits["b3"] == pytest.approx(1000 / math.sqrt(4))
    assert all(float(np.abs(mep.to_numpy(p)).max()) < limits[k] / 100 for k, p in net.params.items())


# ----------------------------------------------------------------------------- 6. data

def write_idx_files(directory, n_train=20, n_test=10):
    """Uncompressed IDX files (no official checksum applies to them): a small 'full' data set."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, shape in (("train-images-idx3-ubyte", (n_train, 28, 28)), ("train-labels-idx1-ubyte", (n_train,)),
                        ("t10k-images-idx3-ubyte", (n_test, 28, 28)), ("t10k-labels-idx1-ubyte", (n_test,))):
        a = rng.integers(0, 256 if len(shape) == 3 else 10, shape, dtype=np.uint8)
        header = (0x0800 | a.ndim).to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in a.shape)
        (directory / stem).write_bytes(header + a.tobytes())


@pytest.fixture
def no_other_data(tmp_path, monkeypatch):
    """Complete data in $MINIMAL_EP_DATA and the cache: a named --data-dir must not fall back to them."""
    write_idx_files(tmp_path / "elsewhere" / "mnist", 30, 15)
    monkeypatch.setenv("MINIMAL_EP_DATA", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "debian")


def test_6_a_named_data_dir_is_used_or_the_run_fails(tmp_path, capsys, no_other_data):
    mine, out = tmp_path / "mine", tmp_path / "run"
    code, stdout, err = train_cli(capsys, out, "--data-dir", mine)
    assert code == 2 and one_line_error(err) and str(mine) in err
    assert all(stem in err for stem in datasets.FILES) and not out.exists()
    write_idx_files(mine)
    (mine / "train-labels-idx1-ubyte").unlink()
    code, stdout, err = train_cli(capsys, out, "--data-dir", mine)
    assert code == 2 and "lacks train-labels-idx1-ubyte[.gz]" in err and not out.exists()
    code, stdout, err = train_cli(capsys, out, "--data-dir", mine, "--source", "embedded")
    assert code == 2 and "data.data_dir" in err and "data.source" in err


def test_6_the_run_records_the_files_it_read(tmp_path, capsys, no_other_data):
    mine, out = tmp_path / "mine", tmp_path / "run"
    write_idx_files(mine / "mnist")
    code, stdout, err = train_cli(capsys, out, "--data-dir", mine)
    assert code == 0, err
    record = config.read_toml(out / "config.toml")[config.RECORD_SECTION]
    assert set(record) == set(datasets.FILES)
    for name, entry in record.items():
        assert entry["path"] == str((mine / "mnist" / name).resolve())
        assert entry["sha256"] == datasets.sha256(mine / "mnist" / name)
    assert config.resolve(out / "config.toml")["data"]["source"] == "full"   # the record is no setting
    code, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", out / "checkpoint.npz")
    assert code == 0 and f"10 mnist test images ({mine / 'mnist'})" in stdout
    code, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", out / "checkpoint.npz", "--source", "embedded")
    assert code == 0 and "(embedded)" in stdout


def test_6_datasets_verifies_what_it_reports(tmp_path, capsys, no_other_data):
    code, out, err = run_cli(capsys, "datasets")
    assert code == 0 and f"full: {tmp_path / 'elsewhere' / 'mnist'} (verified" in out
    images = tmp_path / "elsewhere" / "mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-100])
    code, out, err = run_cli(capsys, "datasets")
    assert code == 1 and "DAMAGED" in out and "t10k-images-idx3-ubyte: truncated" in out


# ----------------------------------------------------------------------------- 7. TOML and paths

HOSTILE = ["line\nbreak", "tab\there", 'quote " and \\ backslash', "nul \x00 del \x7f esc \x1b",
           "unicode é ∑ 😀 \u2028", "[section]\nkey = 1", "''' \"\"\""]


@pytest.mark.parametrize("text", HOSTILE)
def test_7_config_toml_round_trips_hostile_strings(text):
    cfg = config.defaults()
    cfg["run"]["out"] = text
    record = {"f.gz": {"path": text, "sha256": "0" * 64}}
    assert config.loads(config.dumps(cfg, record)) == cfg


def test_7_an_out_path_with_a_newline_gives_a_readable_run(tmp_path, capsys):
    out = tmp_path / "a\nb"
    assert train_cli(capsys, out)[0] == 0
    assert config.resolve(out / "config.toml")["run"]["out"] == str(out)
    assert ckpt_mod.read_checkpoint(out / "checkpoint.npz").config["run"]["out"] == str(out)
    assert run_cli(capsys, "evaluate", "--checkpoint", out / "checkpoint.npz")[0] == 0


def test_7_tilde_in_config_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "c.toml"
    path.write_text('[run]\nout = "~/runs/x"\n[data]\nsource = "full"\ndata_dir = "~/data"\n')
    cfg = config.resolve(path)
    assert cfg["run"]["out"] == str(tmp_path / "runs" / "x") and cfg["data"]["data_dir"] == str(tmp_path / "data")


# ----------------------------------------------------------------------------- 8. rejected input

@pytest.mark.parametrize("toml, key", [("[train]\nbeta = inf", "train.beta"), ("[train]\nbeta = nan", "train.beta"),
                                       ("[model]\nv_th = nan", "model.v_th"),
                                       ("[model]\ninit_scale = inf", "model.init_scale"),
                                       ("[train]\nlr = [0.1, nan, 0.1]", "train.lr")])
def test_8_non_finite_numbers_in_a_config_are_rejected_before_anything_is_written(toml, key, tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text(toml + "\n")
    code, out, err = train_cli(capsys, tmp_path / "run", "--config", path)
    assert code == 2 and one_line_error(err) and f"bad value for {key}" in err
    assert not (tmp_path / "run").exists()


def test_8_an_lr_list_of_the_wrong_length_leaves_no_folder(tmp_path, capsys):
    code, out, err = train_cli(capsys, tmp_path / "run", "--set", "train.lr=[0.1, 0.2]")
    assert code == 2 and one_line_error(err) and "train.lr has 2 values" in err and "3 weight layers" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv, message", [
    (["evaluate", "--test-size", "-1"], "argument --test-size: must be an integer >= 0, got -1"),
    (["evaluate", "--T", "0"], "argument --T: must be an integer >= 1, got 0"),
    (["gradcheck", "--fd-entries", "0"], "argument --fd-entries: must be an integer >= 1, got 0"),
    (["gradcheck", "--beta", "nan"], "argument --beta: must be a finite non-zero number"),
    (["gradcheck", "--eps", "1.5"], "argument --eps: must be a finite number in (0, 1]"),
])
def test_8_bad_numbers_on_the_command_line(argv, message, capsys, good_checkpoint):
    if argv[0] == "evaluate":
        argv = argv + ["--checkpoint", str(good_checkpoint)]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and one_line_error(err) and message in err


def test_8_unwritable_output_folders(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, out, err = train_cli(capsys, blocker / "run")
    assert code == 2 and one_line_error(err) and "cannot create output folder" in err


@pytest.mark.skipif(ROOT or os.name == "nt", reason="root writes into read-only folders")
def test_8_read_only_output_folder(tmp_path, capsys):
    tmp_path.chmod(0o555)
    try:
        code, out, err = train_cli(capsys, tmp_path)
    finally:
        tmp_path.chmod(0o755)
    assert code == 2 and one_line_error(err) and "cannot write to output folder" in err


def test_8_a_full_disk_mid_run_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    assert train_cli(capsys, tmp_path)[0] == 0
    before = snapshot(tmp_path, but=RESUMED)

    def full(f, **arrays):
        f.write(b"PK partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "checkpoint.npz"))

    monkeypatch.setattr(ckpt_mod.np, "savez", full)
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=2)
    assert code == 1 and one_line_error(err) and "No space left on device" in err
    assert "after epoch 1) is kept" in err and snapshot(tmp_path, but=RESUMED) == before


# ----------------------------------------------------------------------------- 9. library API

def test_9_sgd_rejects_non_finite_rates_and_unknown_gradients():
    params = {"w1": np.ones(3), "b1": np.ones(1), "w2": np.ones(2), "b2": np.ones(1)}
    for lrs in ([float("nan"), 0.1], [0.1, float("inf")], float("inf"), [-0.1, 0.1]):
        with pytest.raises(ValueError, match="finite and >= 0"):
            SGD(params, lrs)
    with pytest.raises(ValueError, match="momentum"):
        SGD(params, 0.1, momentum=float("nan"))
    opt = SGD(params, 0.1)
    with pytest.raises(ValueError, match="unknown parameters w3"):
        opt.step({"w1": np.ones(3), "w3": np.ones(2)})
    assert np.array_equal(params["w1"], np.ones(3))          # nothing was updated


@pytest.mark.parametrize("kwargs, name", [
    ({"conv_channels": "16"}, "conv_channels"),
    ({"conv_channels": (2.7,)}, "conv_channels"),
    ({"hidden": 8}, "hidden"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"padding": -1}, "padding"),
    ({"init_scale": float("inf")}, "init_scale"),
    ({"init_scale": 0.0}, "init_scale"),
    ({"v_th": float("nan"), "spiking": True}, "v_th"),
    ({"lam": float("nan"), "spiking": True}, "lam"),
])
def test_9_build_network_names_the_bad_argument(kwargs, name):
    with pytest.raises(ValueError, match=name):
        mep.build_network(**{"conv_channels": (2,), "hidden": (4,), **kwargs})


def test_9_free_phase_rejects_pixels_outside_0_1():
    net = mep.build_network(conv_channels=(2,), hidden=(4,))
    with pytest.raises(ValueError, match=r"\[0, 1\].*255"):
        net.free_phase(np.full((1, 1, 28, 28), 255.0), 2)


# ----------------------------------------------------------------------------- issue 12: defaults, random sign

def test_defaults_are_the_quickstart():
    assert config.resolve(None) == config.resolve(REPO / "configs" / "quickstart.toml")


def test_model_config_names_are_build_network_keywords():
    import dataclasses
    import inspect
    keywords = inspect.signature(mep.build_network).parameters
    assert [f.name for f in dataclasses.fields(config.ModelConfig) if f.name not in keywords] == []


def test_random_sign_needs_the_one_sided_estimator():
    with pytest.raises(config.ConfigError, match=r"train.random_sign.*train.estimator"):
        config.resolve(None, ["train.random_sign=true"])
    with pytest.raises(config.ConfigError, match=r"train.algorithm"):
        config.resolve(None, ["train.random_sign=true", "train.estimator=one-sided", "train.algorithm=bptt"])


def test_random_sign_has_its_own_rng_and_resumes_exactly(tmp_path, capsys):
    one_sided = ["--set", "train.estimator=one-sided"]
    assert train_cli(capsys, tmp_path / "plain", *one_sided, epochs=2)[0] == 0
    signed = one_sided + ["--set", "train.random_sign=true"]
    assert train_cli(capsys, tmp_path / "whole", *signed, epochs=2)[0] == 0
    assert train_cli(capsys, tmp_path / "split", *signed, epochs=1)[0] == 0
    assert train_cli(capsys, tmp_path / "split", "--resume", epochs=2)[0] == 0
    plain, whole, split = (ckpt_mod.read_checkpoint(tmp_path / d / "checkpoint.npz")
                           for d in ("plain", "whole", "split"))
    assert whole.rng_state == plain.rng_state                  # the batch order is not touched
    assert whole.sign_rng_state != train_mod.make_rngs(0)[1].bit_generator.state
    assert split.sign_rng_state == whole.sign_rng_state
    assert strip_times(metrics_rows(tmp_path / "split")) == strip_times(metrics_rows(tmp_path / "whole"))
    assert all(np.array_equal(split.params[k], whole.params[k]) for k in whole.params)
