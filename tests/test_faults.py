"""Fault injection (issues 11 and 26): a user's runs, checkpoints and data are never silently lost or substituted.

Each numbered case of issue 11 (``test_<n>_...``) and each failure of issue 26 (``test_26_<n>_...``,
numbered as in the issue) is driven here as a hostile but fair user would: through the command
line (in-process, or as a subprocess where a process must die or two must run at once), checking
the exit status, that the message is one line naming the problem, and that no earlier output
changed. The networks are tiny (conv 2 -> dense 4 -> 10, 20 training images, a few steps): these
tests are about the files, not about learning.
"""
import errno
import gzip
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
import minimal_ep.run.checkpoints as ckpt_mod
import minimal_ep.run.train as train_mod
from minimal_ep import datasets
from minimal_ep.run import cli, config, idx_files, memory, runs
from minimal_ep.optim import SGD

from conftest import REPO, SHARED_DATA

TINY = ["--set", "model.conv_channels=[2]", "--set", "model.hidden=[4]", "--set", "train.T_free=3",
        "--set", "train.T_nudge=2", "--set", "train.lr=0.2", "--set", "data.batch_size=10",
        "--train-size", "20", "--test-size", "10", "--no-progress"]
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"{SHARED_DATA} not present")


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
    assert config.resolve(tmp_path / "config.toml").train.seed == 5
    assert ckpt_mod.read_checkpoint(tmp_path / "checkpoint.npz").config.train.seed == 5
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
    code, out, err = train_cli(capsys, tmp_path, "--resume", "--until", done + 1, epochs=100000)
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

    def interrupted_after_the_commit(folder, metrics, held_out="test"):
        calls["n"] += 1
        if calls["n"] == 2:                                     # epoch 2: checkpoint renamed, metrics not
            raise KeyboardInterrupt
        real(folder, metrics, held_out)

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
from minimal_ep.run import cli
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

def write_idx_files(directory, n_train=20, n_test=10, seed=0):
    """Uncompressed IDX files (no official content): a small 'full' data set; returns {stem: content SHA-256}.

    A run refuses them until :func:`known` declares their content.
    """
    directory.mkdir(parents=True, exist_ok=True)
    rng, sums = np.random.default_rng(seed), {}
    for stem, shape in (("train-images-idx3-ubyte", (n_train, 28, 28)), ("train-labels-idx1-ubyte", (n_train,)),
                        ("t10k-images-idx3-ubyte", (n_test, 28, 28)), ("t10k-labels-idx1-ubyte", (n_test,))):
        a = rng.integers(0, 256 if len(shape) == 3 else 10, shape, dtype=np.uint8)
        header = (0x0800 | a.ndim).to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in a.shape)
        (directory / stem).write_bytes(header + a.tobytes())
        sums[stem] = datasets.sha256(directory / stem)
    return sums


def known(monkeypatch, sums, name="mnist", what="a test data set"):
    """Declare the contents ``sums`` ({stem: SHA-256}) as known files of ``name`` (as data/mnist-10k is)."""
    table = {stem: dict(v) for stem, v in idx_files.KNOWN_CONTENT[name].items()}
    for stem, sha in sums.items():
        table[stem][sha] = what
    monkeypatch.setitem(idx_files.KNOWN_CONTENT, name, table)


@pytest.fixture
def no_other_data(tmp_path, monkeypatch):
    """Complete data in $MINIMAL_EP_DATA and the cache: a named --data-dir must not fall back to them."""
    known(monkeypatch, write_idx_files(tmp_path / "elsewhere" / "mnist", 30, 15))
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


def test_6_the_run_records_the_files_it_read(tmp_path, capsys, monkeypatch, no_other_data):
    mine, out = tmp_path / "mine", tmp_path / "run"
    known(monkeypatch, write_idx_files(mine / "mnist"))
    code, stdout, err = train_cli(capsys, out, "--data-dir", mine)
    assert code == 0, err
    record = config.read_toml(out / "config.toml")[config.RECORD_SECTION]
    assert set(record) == set(datasets.FILES)
    for name, entry in record.items():
        assert entry["path"] == str((mine / "mnist" / name).resolve())
        assert entry["sha256"] == entry["content_sha256"] == datasets.sha256(mine / "mnist" / name)
        assert (entry["content"], entry["first_epoch"], entry["last_epoch"]) == ("a test data set", 1, 1)
    assert config.resolve(out / "config.toml").data.source == "full"   # the record is no setting
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
    cfg.run.out = text
    record = {"f.gz": {"path": text, "sha256": "0" * 64}}
    assert config.loads(config.dumps(cfg, record)) == cfg


def test_7_an_out_path_with_a_newline_gives_a_readable_run(tmp_path, capsys):
    out = tmp_path / "a\nb"
    assert train_cli(capsys, out)[0] == 0
    assert config.resolve(out / "config.toml").run.out == str(out)
    assert ckpt_mod.read_checkpoint(out / "checkpoint.npz").config.run.out == str(out)
    assert run_cli(capsys, "evaluate", "--checkpoint", out / "checkpoint.npz")[0] == 0


def test_7_tilde_in_config_paths_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    path = tmp_path / "c.toml"
    path.write_text('[run]\nout = "~/runs/x"\n[data]\nsource = "full"\ndata_dir = "~/data"\n')
    cfg = config.resolve(path)
    assert cfg.run.out == str(tmp_path / "runs" / "x") and cfg.data.data_dir == str(tmp_path / "data")


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


def test_build_network_takes_every_model_setting_and_nothing_else():
    import dataclasses
    names = [f.name for f in dataclasses.fields(config.ModelConfig)]
    net = mep.build_network(input_shape=(1, 12, 12), **{k: getattr(config.ModelConfig(), k) for k in names})
    assert net.model == config.ModelConfig()
    with pytest.raises(TypeError, match="not_a_setting"):
        mep.build_network(not_a_setting=1)


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


# ============================================================================= issue 26
# Q options of the issue, tinier: TINY. Each test names the failure it reproduces (26.<n>, as numbered
# in the issue) and checks the fixed behaviour.

def checkpoint_of(folder):
    return ckpt_mod.read_checkpoint(pathlib.Path(folder) / "checkpoint.npz")


# ----------------------------------------------------------------------------- 26.1 a user's files

HAND_WRITTEN = "# my settings, with comments\n[train]\nbeta = 0.3\n"


@pytest.mark.parametrize("files", [("config.toml",), ("learning_curves.png",), ("config.toml", "learning_curves.png"),
                                   ("run.lock",)])
def test_26_1_any_file_a_run_writes_makes_the_folder_taken(files, tmp_path, capsys):
    """26.1: OUT/config.toml written by hand and OUT/learning_curves.png were replaced without --overwrite."""
    contents = {"config.toml": HAND_WRITTEN, "learning_curves.png": "my plot", "run.lock": "999999999\n"}
    for name in files:
        (tmp_path / name).write_text(contents[name])
    before = snapshot(tmp_path)
    config_arg = ["--config", tmp_path / "config.toml"] if "config.toml" in files else []
    code, out, err = train_cli(capsys, tmp_path, *config_arg)
    assert code == 2 and one_line_error(err) and "already holds a run" in err and files[0] in err, err
    assert "--resume" in err and "--overwrite" in err
    assert snapshot(tmp_path) == before                         # nothing replaced, no lock taken over


def test_26_1_a_live_lock_names_its_process_even_without_resume(tmp_path, capsys):
    (tmp_path / runs.LOCK_NAME).write_text(f"{os.getpid()}\n")
    code, out, err = train_cli(capsys, tmp_path)
    assert code == 2 and one_line_error(err) and f"in use by process {os.getpid()}" in err
    assert (tmp_path / runs.LOCK_NAME).read_text() == f"{os.getpid()}\n"


def test_26_1_overwrite_replaces_them_on_purpose(tmp_path, capsys):
    (tmp_path / "config.toml").write_text(HAND_WRITTEN)
    code, out, err = train_cli(capsys, tmp_path, "--config", tmp_path / "config.toml", "--overwrite")
    assert code == 0, err
    assert checkpoint_of(tmp_path).config.train.beta == 0.3     # the file was read before it was replaced


# ----------------------------------------------------------------------------- 26.2 resume keeps the settings

def test_26_2_a_hand_edited_config_toml_is_refused_on_resume(tmp_path, capsys):
    """26.2: beta edited in OUT/config.toml, then --resume without --config trained with 0.2 and rewrote it."""
    assert train_cli(capsys, tmp_path, "--until", 1, epochs=2)[0] == 0
    path = tmp_path / "config.toml"
    path.write_text(path.read_text().replace("beta = 0.2", "beta = 0.5"))
    before = snapshot(tmp_path)
    code, out, err = run_cli(capsys, "train", "--epochs", 2, "--out", tmp_path, "--resume", "--no-progress")
    assert code == 2 and one_line_error(err), err
    assert str(path) in err and "train.beta: 0.2 -> 0.5" in err and "--set" in err
    assert snapshot(tmp_path) == before


def test_26_2_resume_without_a_checkpoint_keeps_the_settings_of_the_first_start(tmp_path, capsys, monkeypatch):
    """26.2: killed before epoch 1 ended, `--resume --out OUT` then trained the default quickstart."""
    real = train_mod.train_epoch

    def killed(*args, **kwargs):
        (tmp_path / runs.LOCK_NAME).write_text("999999999\n")   # as kill -9 leaves it: a dead process's lock
        raise SystemExit(137)

    monkeypatch.setattr(train_mod, "train_epoch", killed)
    code, out, err = train_cli(capsys, tmp_path, "--set", "train.beta=0.5", "--set", "model.hidden=[6]", epochs=2)
    assert code == 137
    monkeypatch.setattr(train_mod, "train_epoch", real)
    assert not (tmp_path / "checkpoint.npz").exists() and (tmp_path / "config.toml").exists()
    code, out, err = run_cli(capsys, "train", "--resume", "--out", tmp_path, "--no-progress")
    assert code == 0, err
    assert f"starting at epoch 1 with the settings of {tmp_path / 'config.toml'}" in out
    assert "took over the lock" in out
    cfg = checkpoint_of(tmp_path).config
    assert (cfg.train.beta, cfg.model.hidden, cfg.data.train_size, cfg.train.epochs) == (0.5, [6], 20, 2)
    assert config.resolve(tmp_path / "config.toml") == cfg and len(metrics_rows(tmp_path)) == 2


def test_26_2_the_number_of_epochs_cannot_change_the_past_learning_rates(tmp_path, capsys, reference):
    """26.2: `--epochs 2` then `--resume --epochs 3` gave the lr schedule [1.0, 0.1, 0.1], silently."""
    assert train_cli(capsys, tmp_path, epochs=2)[0] == 0
    before = snapshot(tmp_path)
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=3)
    assert code == 2 and one_line_error(err) and "train.epochs: 2 -> 3" in err and "--until" in err
    assert "learning rates of completed epoch(s) 2 would change" in err and snapshot(tmp_path) == before
    split = tmp_path / "split"                                   # the way: fix the schedule, stop early
    assert train_cli(capsys, split, "--until", 2, epochs=3)[0] == 0
    assert [r["lr_scale"] for r in metrics_rows(split)] == [1.0, 0.55]
    assert train_cli(capsys, split, "--resume", epochs=3)[0] == 0
    assert_same_as_reference(split, reference)


def test_26_2_more_epochs_are_a_recorded_change_where_no_past_rate_changes(tmp_path, capsys):
    """A constant schedule (the figure nets) may grow, explicitly (--epochs or --set), and it is recorded."""
    constant = ["--set", "train.lr_schedule=constant"]
    assert train_cli(capsys, tmp_path, *constant, epochs=1)[0] == 0
    code, out, err = train_cli(capsys, tmp_path, *constant, "--resume", epochs=2)
    assert code == 0 and "train.epochs changes from 1 to 2 from epoch 2 (recorded)" in out, err
    change = {"epoch": 2, "key": "train.epochs", "old": 1, "new": 2}
    assert checkpoint_of(tmp_path).changes == [change]
    assert config.read_toml(tmp_path / "config.toml")["changes"] == [change]


@pytest.mark.skipif(cli.usable_cpus() < 2, reason="needs 2 CPUs for a second thread count")
def test_26_2_threads_and_versions_are_recorded_and_another_thread_count_warns(tmp_path, capsys):
    """26.2: BLAS threads change the numbers and were not recorded; a resume with others was silent."""
    assert run_cli(capsys, "--threads", 1, "train", "--out", tmp_path, "--epochs", 2, "--until", 1, *TINY)[0] == 0
    (env,) = checkpoint_of(tmp_path).environment
    assert env["threads"] == 1 and env["numpy"] == np.__version__ and env["blas"] and env["first_epoch"] == 1
    assert config.read_toml(tmp_path / "config.toml")["environment"] == [env]
    code, out, err = run_cli(capsys, "--threads", 2, "train", "--out", tmp_path, "--epochs", 2, "--resume", *TINY)
    assert code == 0, err
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 BLAS thread(s)" in warnings[0] and "this resume has 2" in warnings[0]
    assert [e["threads"] for e in checkpoint_of(tmp_path).environment] == [1, 2]
    run_cli(capsys, "--threads", 1, "datasets")                  # back to one thread for the other tests


# ----------------------------------------------------------------------------- 26.3 data verified by content

@pytest.fixture
def data_dirs(tmp_path, monkeypatch):
    """Two small known data sets, 'mnist' (seed 0) and 'fashion-mnist' (seed 1), uncompressed."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MINIMAL_EP_DATA", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "debian")
    known(monkeypatch, write_idx_files(tmp_path / "mnist-files", seed=0), "mnist", "a test MNIST")
    known(monkeypatch, write_idx_files(tmp_path / "fashion-files", seed=1), "fashion-mnist", "a test Fashion-MNIST")
    return tmp_path / "mnist-files", tmp_path / "fashion-files"


def test_26_3_uncompressed_files_of_another_data_set_are_refused(tmp_path, capsys, data_dirs):
    """26.3: gunzipped Fashion-MNIST as DIR/mnist/ trained as "mnist", and `datasets` said "verified"."""
    mnist, fashion = data_dirs
    (tmp_path / "DIR").mkdir()
    fashion.rename(tmp_path / "DIR" / "mnist")
    code, out, err = train_cli(capsys, tmp_path / "run", "--dataset", "mnist", "--data-dir", tmp_path / "DIR")
    assert code == 2 and one_line_error(err) and "it is the fashion-mnist file train-images-idx3-ubyte" in err
    assert not (tmp_path / "run").exists()
    code, out, err = run_cli(capsys, "datasets", "--data-dir", tmp_path / "DIR")
    assert code == 1 and "DAMAGED" in out and "it is the fashion-mnist file" in out


def test_26_3_a_modified_uncompressed_file_is_refused(tmp_path, capsys, data_dirs):
    mnist, _ = data_dirs
    labels = mnist / "train-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10                               # one label changed: the file still parses
    labels.write_bytes(bytes(data))
    code, out, err = train_cli(capsys, tmp_path / "run", "--data-dir", mnist)
    assert code == 2 and one_line_error(err) and str(labels) in err and "its content has SHA-256" in err


@needs_shared
def test_26_3_real_gunzipped_fashion_mnist_is_not_mnist(tmp_path):
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(gzip.decompress((SHARED_DATA / "fashion-mnist" / f"{stem}.gz").read_bytes()))
        with pytest.raises(ValueError, match=f"it is the fashion-mnist file {stem} \\(official\\)"):
            idx_files.verify_file("mnist", tmp_path / stem)
        assert idx_files.verify_file("fashion-mnist", tmp_path / stem)[1]["content"] == "official"


def test_26_3_resume_onto_other_data_is_refused_and_the_record_kept(tmp_path, capsys, monkeypatch, data_dirs):
    """26.3: a resume onto shuffled-label files was accepted, and config.toml's record of epoch 1 rewritten."""
    mnist, _ = data_dirs
    out = tmp_path / "run"
    assert train_cli(capsys, out, "--data-dir", mnist, "--until", 1, epochs=2)[0] == 0
    other = tmp_path / "shuffled"
    other.mkdir()
    for f in mnist.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    labels = np.frombuffer((mnist / "train-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    shuffled = (other / "train-labels-idx1-ubyte").read_bytes()[:8] + labels[::-1].tobytes()
    (other / "train-labels-idx1-ubyte").write_bytes(shuffled)
    known(monkeypatch, {"train-labels-idx1-ubyte": datasets.sha256(other / "train-labels-idx1-ubyte")})
    before = snapshot(out)                                       # a known file, but not the run's
    code, stdout, err = train_cli(capsys, out, "--resume", "--data-dir", other, epochs=2)
    assert code == 2 and one_line_error(err) and "is not the data the run trained on" in err
    assert str(other / "train-labels-idx1-ubyte") in err and snapshot(out) == before


def test_26_3_the_record_keeps_each_epochs_files(tmp_path, capsys, data_dirs):
    mnist, _ = data_dirs
    out = tmp_path / "run"
    assert train_cli(capsys, out, "--data-dir", mnist, "--until", 1, epochs=2)[0] == 0
    moved = mnist.rename(tmp_path / "moved")                     # the same files, elsewhere: allowed
    assert train_cli(capsys, out, "--resume", "--data-dir", moved, epochs=2)[0] == 0
    record = checkpoint_of(out).data_files
    assert config.read_toml(out / "config.toml")[config.RECORD_SECTION] == record
    name = "train-images-idx3-ubyte"
    assert (record[name]["path"], record[name]["first_epoch"], record[name]["last_epoch"]) == \
        (str(mnist / name), 1, 1)
    later = record[f"{name} (from epoch 2)"]
    assert (later["path"], later["first_epoch"], later["last_epoch"]) == (str(moved / name), 2, 2)
    assert later["content_sha256"] == record[name]["content_sha256"]


# ----------------------------------------------------------------------------- 26.4 crafted checkpoints

def _crafted(good, path, **fields):
    z = dict(np.load(good))
    for key, value in fields.items():
        if value is None:
            del z[key]
        else:
            z[key] = value if isinstance(value, np.ndarray) else np.array(value)
    np.savez(path, **z)
    return path


MT19937 = json.dumps(np.random.MT19937(0).state, default=lambda a: a.tolist())   # the issue's foreign RNG
CRAFTED = {
    "metrics of strings": ({"metrics": '["a"]'}, "metrics row 1 is str 'a', not a table of metrics"),
    "metrics of two rows": ({"metrics": '["a", "b"]'}, "metrics holds 2 row(s) but 1 epoch(s) are completed"),
    "metrics empty": ({"metrics": "[]"}, "metrics holds 0 row(s) but 1 epoch(s)"),
    "metrics a number": ({"metrics": "5"}, "metrics is int 5, not a list of rows"),
    "metrics with a nan": ({"metrics": json.dumps([{"epoch": 1, "train_error": 0.5, "test_error": float("nan"),
                                                    "loss": 1.0, "seconds": 1.0}])}, "test_error = nan"),
    "rng_state a list": ({"rng_state": "[1, 2, 3]"}, "rng_state is not a state of NumPy's PCG64 generator"),
    "rng_state of MT19937": ({"rng_state": MT19937}, "rng_state is not a state of NumPy's PCG64 generator"),
    "sign_rng_state without state": ({"sign_rng_state": '{"bit_generator": "PCG64"}'},
                                     "sign_rng_state is not a state of NumPy's PCG64"),
    "epoch 1000000": ({"epoch": np.int64(1000000)}, "epoch is array(1000000), not a count of completed epochs"),
    "a foreign field": ({"extra": "hello"}, "unknown field 'extra'"),
    "optim scale nan": ({"optim.scale": np.float64("nan")}, "optim.scale is"),
    "config not text": ({"config": np.zeros(3)}, "config is not a TOML text"),
    "data_files malformed": ({"data_files": '{"f": {"path": 1}}'}, "data_files entry f has a missing, unknown"),
    "changes of beta": ({"changes": '[{"epoch": 2, "key": "train.beta", "old": 0.2, "new": 0.5}]'},
                        "changes entry 1 has a missing, unknown or invalid field 'key'"),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_26_4_crafted_checkpoints_are_refused_before_anything_is_written(kind, tmp_path, capsys, good_checkpoint):
    """26.4: crafted fields gave tracebacks after metrics.jsonl was replaced, or dropped rows with exit 0."""
    for name in ("metrics.jsonl", "config.toml", "learning_curves.png"):
        (tmp_path / name).write_bytes((good_checkpoint.parent / name).read_bytes())
    fields, message = CRAFTED[kind]
    path = _crafted(good_checkpoint, tmp_path / "checkpoint.npz", **fields)
    before = snapshot(tmp_path)
    for argv in (["evaluate", "--checkpoint", path], ["train", "--out", tmp_path, "--epochs", 2, "--resume", *TINY]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and one_line_error(err), (argv[0], err)
        assert str(path) in err and message in err, (argv[0], err)
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- 26.5 memory

@pytest.mark.parametrize("sets, key", [
    (["model.padding=1000"], "model.padding = 1000"),
    (["model.hidden=[3000000]"], "model.hidden = [3000000]"),
    (["model.conv_channels=[200000]"], "model.conv_channels = [200000]"),
    (["model.padding=1000000000"], "model.padding = 1000000000"),
])
def test_26_5_sizes_beyond_memory_are_refused_before_allocating(sets, key, tmp_path, capsys, monkeypatch):
    """26.5: sizes that passed validation ended in MemoryError tracebacks, or a NumPy error naming no key."""
    monkeypatch.setattr(memory, "physical_memory", lambda: 2 ** 30)
    argv = [a for s in sets for a in ("--set", s)] + ["--set", "train.lr=0.1"]
    code, out, err = train_cli(capsys, tmp_path / "run", *argv)
    assert code == 2 and one_line_error(err) and key in err and "one training step needs about" in err
    assert "more than this machine's 1 GB" in err and not (tmp_path / "run").exists()


def test_26_5_the_memory_command_checks_its_sizes(capsys, monkeypatch):
    monkeypatch.setattr(memory, "physical_memory", lambda: 8 * 2 ** 30)
    code, out, err = run_cli(capsys, "memory", "--batch", 100000)
    assert code == 2 and one_line_error(err) and "batch = 100000" in err and "needs about" in err


def test_26_5_a_memory_error_is_one_line_naming_the_config(tmp_path, capsys, monkeypatch):
    def out_of_memory(cfg):
        raise MemoryError

    monkeypatch.setattr(train_mod, "network_from_config", out_of_memory)
    code, out, err = train_cli(capsys, tmp_path, "--config", REPO / "configs" / "quickstart.toml")
    assert code == 2 and one_line_error(err) and "out of memory" in err and "quickstart.toml" in err


def test_26_5_the_estimate_follows_the_measured_peak():
    kw = dict(conv_channels=(8, 16), hidden=(64,), input_shape=(1, 28, 28), n_classes=10)
    for mode in ("SNN EP", "CRNN BPTT"):
        spiking, algorithm = mode.startswith("SNN"), mode.split()[1].lower()
        measured = memory.training_step_peak_mb(mode, batch=20, T_free=20, T_nudge=5, T_bptt=30, **kw)
        estimate = memory.step_estimate(batch=20, spiking=spiking, algorithm=algorithm, T=30,
                                        loss="mse" if spiking else "ce", **kw)[0] / 2 ** 20
        assert 0.5 < estimate / measured < 2, (mode, estimate, measured)


# ----------------------------------------------------------------------------- 26.6 a full disk at the lock

def test_26_6_a_full_disk_while_writing_the_lock_names_it_and_leaves_none(tmp_path, capsys, monkeypatch):
    """26.6: `minimal-ep: error: : No space left on device` and an empty run.lock left behind."""
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runs.os, "write", full)
    code, out, err = train_cli(capsys, tmp_path)
    assert code == 2 and one_line_error(err)
    assert f"cannot write the lock file {tmp_path / runs.LOCK_NAME}: No space left on device" in err
    assert not (tmp_path / runs.LOCK_NAME).exists()


def test_26_6_an_os_error_without_a_path_is_not_an_empty_name(capsys, monkeypatch):
    def no_name(args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cli, "_datasets", no_name)
    code, out, err = run_cli(capsys, "datasets")
    assert code == 2 and one_line_error(err) and ": :" not in err and "No space left on device" in err


# ----------------------------------------------------------------------------- 26.7 the divergence advice

def test_26_7_the_divergence_advice_can_be_followed_and_is_recorded(tmp_path, capsys, monkeypatch):
    """26.7: the stop said "lower train.lr", but --resume refused any change of train.lr."""
    assert train_cli(capsys, tmp_path, "--until", 1, epochs=3)[0] == 0
    real = train_mod.ep_gradients

    def exploding(*args, **kwargs):
        grads = real(*args, **kwargs)
        grads["w2"] *= 1e30
        return grads

    monkeypatch.setattr(train_mod, "ep_gradients", exploding)
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=3)
    assert code == 1 and "lower train.lr (--resume --set train.lr=...)" in err
    monkeypatch.setattr(train_mod, "ep_gradients", real)
    code, out, err = train_cli(capsys, tmp_path, "--resume", "--set", "train.lr=0.1", "--until", 2, epochs=3)
    assert code == 0 and "train.lr changes from 0.2 to 0.1 from epoch 2 (recorded)" in out, err
    change = {"epoch": 2, "key": "train.lr", "old": 0.2, "new": 0.1}
    assert checkpoint_of(tmp_path).changes == [change]
    assert config.read_toml(tmp_path / "config.toml")["changes"] == [change]
    assert config.resolve(tmp_path / "config.toml").train.lr == 0.1
    code, out, err = train_cli(capsys, tmp_path, "--resume", "--set", "train.beta=0.3", epochs=3)
    assert code == 2 and "train.beta: 0.2 -> 0.3" in err      # other settings stay the run's
    code, out, err = run_cli(capsys, "train", "--out", tmp_path, "--resume", "--no-progress")
    assert code == 0, err                                        # the run's own settings: lr 0.1 stays
    ckpt = checkpoint_of(tmp_path)
    assert ckpt.epoch == 3 and ckpt.config.train.lr == 0.1 and ckpt.changes == [change]


def test_26_7_a_changed_lr_survives_a_commit_that_config_toml_missed(tmp_path, capsys, monkeypatch):
    assert train_cli(capsys, tmp_path, "--until", 1, epochs=3)[0] == 0
    stale = (tmp_path / "config.toml").read_bytes()
    assert train_cli(capsys, tmp_path, "--resume", "--set", "train.lr=0.1", "--until", 2, epochs=3)[0] == 0
    (tmp_path / "config.toml").write_bytes(stale)              # as if killed between the two renames
    code, out, err = train_cli(capsys, tmp_path, "--resume", epochs=3)
    assert code == 0, err


# ----------------------------------------------------------------------------- 26.8 the library API

def test_26_8_sgd_checks_gradient_shapes_and_values_before_updating():
    """26.8: SGD.step({'w1': np.ones(3)}) broadcast a wrong-shape gradient into the weight."""
    params = {"w1": np.zeros((2, 3)), "b1": np.zeros(2)}
    opt = SGD(params, 0.1)
    with pytest.raises(ValueError, match=r"the gradient of w1 has shape \(3,\), the parameter \(2, 3\)"):
        opt.step({"w1": np.ones(3)})
    with pytest.raises(ValueError, match="the gradient of w1 has NaN or infinite values"):
        opt.step({"b1": np.ones(2), "w1": np.full((2, 3), np.nan)})
    assert not params["w1"].any() and not params["b1"].any()    # nothing was updated


@pytest.fixture(scope="module")
def tiny_net():
    net = mep.build_network(conv_channels=(2,), hidden=(4,), n_classes=10)
    rng = np.random.default_rng(0)
    return net, rng.random((6, 1, 28, 28)), np.arange(6) % 10


def test_26_8_beta_is_a_finite_real_number_the_dtype_can_hold(tiny_net):
    """26.8: beta=1e300 gave all-NaN gradients with warnings only; beta="0.1" was accepted."""
    net, x, y = tiny_net
    with pytest.raises(ValueError, match=r"beta must be a finite non-zero number with \|beta\| <= 3.4e\+38"):
        mep.ep_gradients(net, x, y, 1e300, 3, 2)
    for beta in ("0.1", True, None):
        with pytest.raises(TypeError, match="beta must be a real number"):
            mep.ep_gradients(net, x, y, beta, 3, 2)
    g = mep.ep_gradients(net, x, y, np.float32(0.1), np.int64(3), 2)      # numpy scalars are numbers
    assert all(np.isfinite(v).all() for v in g.values())


def test_26_8_array_likes_are_converted_and_other_inputs_named(tiny_net):
    """26.8: x as a list gave an AttributeError."""
    net, x, y = tiny_net
    listed = net.free_phase(x.tolist(), 3)[0]
    assert np.array_equal(listed.xi[1], net.free_phase(x, 3)[0].xi[1])
    g = mep.ep_gradients(net, x.tolist(), y.tolist(), 0.1, 3, 2)
    assert np.array_equal(g["w1"], mep.ep_gradients(net, x, y, 0.1, 3, 2)["w1"])
    assert set(mep.bptt_gradients(net, x.tolist(), list(y), 2)) == set(net.params)
    with pytest.raises(TypeError, match="^x must be an array of numbers"):
        net.free_phase([["a"]], 3)
    with pytest.raises(TypeError, match="^x must be an array of numbers"):
        mep.bptt_gradients(net, {"x": 1}, y, 2)
    with pytest.raises(TypeError, match="^y must be an array of integer labels"):
        mep.ep_gradients(net, x, None, 0.1, 3, 2)


def test_26_8_a_free_state_must_be_of_x(tiny_net):
    """26.8: a free_state of batch 12 with an x of batch 6 silently ignored x."""
    net, x, y = tiny_net
    other = net.free_phase(np.concatenate([x, x]), 3)[0]
    with pytest.raises(ValueError, match="free_state has a batch of 12 but x has 6"):
        mep.ep_gradients(net, x, np.concatenate([y, y]), 0.1, 3, 2, free_state=other)
    with pytest.raises(ValueError, match="state has a batch of 12 but x has 6"):
        mep.bptt_gradients(net, x, y, 2, state=other)


def test_26_8_predict_and_loss_take_a_state(tiny_net):
    """26.8: ``net.predict(x)`` (an array, not a state) raised AttributeError."""
    net, x, y = tiny_net
    for call in (lambda: net.predict(x), lambda: net.loss(x, y), lambda: net.predict(net.free_phase(x, 2))):
        with pytest.raises(TypeError, match="takes a State of this network's"):
            call()
    state = net.free_phase(x, 2)[0]
    assert net.predict(state).shape == (len(x),) and np.isfinite(net.loss(state, y))


def test_26_8_numpy_scalars_are_accepted_for_model_settings():
    net = mep.build_network(conv_channels=(np.int64(2),), hidden=(4,), eps=np.float32(0.5), lam=np.float64(0.3))
    assert net.model.eps == 0.5 and isinstance(net.model.eps, float) and net.model.conv_channels == [2]


# ----------------------------------------------------------------------------- 26.9 minor

def test_26_9_a_data_dir_that_is_a_file_is_called_so(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    code, out, err = train_cli(capsys, tmp_path / "run", "--data-dir", tmp_path / "afile")
    assert code == 2 and one_line_error(err) and "(it is not a directory)" in err


def test_26_9_ctrl_c_before_the_command_runs_is_one_line(capsys, monkeypatch):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    code, out, err = run_cli(capsys, "datasets")
    assert code == 130 and err == "minimal-ep: interrupted\n"


def test_26_9_more_threads_than_cpus_are_refused(capsys):
    code, out, err = run_cli(capsys, "--threads", 100000, "datasets")
    assert code == 2 and one_line_error(err) and "argument --threads: must be at most" in err


def test_26_9_evaluate_reads_the_test_files_only_and_has_no_progress(tmp_path, capsys, data_dirs):
    mnist, _ = data_dirs
    out = tmp_path / "run"
    assert train_cli(capsys, out, "--data-dir", mnist)[0] == 0
    for f in mnist.glob("train-*"):
        f.unlink()                                               # only the test split is left
    code, stdout, err = run_cli(capsys, "evaluate", "--checkpoint", out / "checkpoint.npz", "--no-progress")
    assert code == 0 and f"10 mnist test images ({mnist})" in stdout, err
