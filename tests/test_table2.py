"""The laptop-scale Table II: its configs, the campaign (``--quick``, end to end) and the report.

Properties, not numbers: the cells differ only in the keys that define them; the campaign runs,
skips what is done, resumes what is partial and records time and memory; the collector has one
row per cell, computes means and sample standard deviations over seeds at the common epoch, marks
missing and partial cells, and writes RESULTS.md atomically. Data: the embedded subsets only.
"""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from minimal_ep.run import cli, config as config_mod
from minimal_ep.run.campaign import read_json_lines
from table2 import laptop as campaign, measure as table2_measure, report as collect_table2, results

CELLS = campaign.cells()
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MPLBACKEND="Agg")


def differences(a, b):
    a, b = a.to_dict(), b.to_dict()
    return {(s, k) for s in a for k in a[s] if a[s][k] != b[s][k]}


def resolved(cell):
    return config_mod.resolve(campaign.CONFIG_DIR / f"{cell}.toml")


def test_twelve_cells_each_defined_only_by_its_column_and_data():
    assert len(CELLS) == 12 and sorted(CELLS) == sorted(f"{d}_{c}" for d in campaign.DATASETS
                                                        for c in campaign.COLUMNS)
    cfgs = {cell: resolved(cell) for cell in CELLS}
    for a in CELLS:
        for b in CELLS:
            diff = differences(cfgs[a], cfgs[b])
            assert diff <= campaign.DEFINING, (a, b, diff - campaign.DEFINING)
            if campaign.split_cell(a)[0] == campaign.split_cell(b)[0]:   # one data set: shared data,
                assert diff <= campaign.COLUMN_KEYS | {("run", "out")}, (a, b, diff)   # epochs, schedule...
            assert (a == b) == (not diff)
    for cell, cfg in cfgs.items():
        prefix, column = campaign.split_cell(cell)
        m, t = cfg.model, cfg.train
        assert m.spiking == column.startswith("snn")
        assert t.algorithm == ("bptt" if column.endswith("bptt") else "ep")
        assert m.pool == ("max" if column == "snn_ep_max" else "avg")
        assert m.loss == ("ce" if column in ("crnn_ep_ce", "crnn_bptt") else "mse")
        assert cfg.data.source == "full" and cfg.run.out == f"results/table2/laptop/{cell}"
        assert cfg.data.data_dir == ("data/mnist-10k" if prefix == "mnist" else "")


def test_cells_share_the_quickstart_architecture_and_dynamics():
    """Every cell is the quickstart's net and rule; only the row may lengthen the phases (all its columns alike)."""
    quick = config_mod.resolve(REPO / "configs" / "quickstart.toml")
    shared = [("model", k) for k in ("conv_channels", "kernel_size", "padding", "pool_size", "hidden", "eps",
                                     "lam", "v_th", "init_scale", "dtype")]
    shared += [("train", k) for k in ("estimator", "beta", "T_eval", "lr", "lr_schedule",
                                      "lr_final", "momentum")] + [("data", "batch_size")]
    phases = [("train", "T_free"), ("train", "T_nudge")]
    for cell in CELLS:
        cfg = resolved(cell)
        assert all(cfg.get(s, k) == quick.get(s, k) for s, k in shared), cell
        longer_or_equal = all(cfg.get(s, k) >= quick.get(s, k) for s, k in phases)
        assert longer_or_equal and (campaign.split_cell(cell)[0] == "fmnist" or
                                    all(cfg.get(s, k) == quick.get(s, k) for s, k in phases)), cell
        net_params = campaign_params(cfg)
        assert sorted(k for k in net_params if k[0] == "w") == ["w1", "w2", "w3", "w4"]   # 4 rates, 4 weights


def campaign_params(cfg):
    from minimal_ep.run.train import network_from_config
    return network_from_config(cfg).params


def test_plan_seeds_order_and_folders(tmp_path):
    runs = campaign.plan(runs_dir=tmp_path)
    assert len(runs) == 18 and len({r.out for r in runs}) == 18
    for cell in CELLS:
        mine = [r for r in runs if r.cell == cell]
        n = 3 if cell in ("fmnist_snn_ep_avg", "fmnist_snn_ep_max", "fmnist_snn_bptt") else 1
        assert [r.seed for r in mine] == list(range(n))
        assert [r.name for r in mine] == ([cell] if n == 1 else [f"{cell}_seed{k}" for k in range(n)])
    prefixes = [campaign.split_cell(r.cell)[0] for r in runs]
    assert prefixes[:6] == ["mnist"] * 6 and [r.seed for r in runs[6:12]] == [0] * 6   # a full table first


MIDSCALE = REPO / "configs" / "midscale"


def test_midscale_cells_differ_only_by_column_and_are_the_probes_net_a_at_b05():
    """configs/midscale/: one row per data set, the columns differ only in their defining keys, and the
    shared settings are the probe A_b05 (net A, beta 0.05, T 100 + 40, the nudged phase averaged)."""
    cells = campaign.cells(MIDSCALE)
    assert {campaign.split_cell(c)[1] for c in cells} == set(campaign.COLUMNS) - {"crnn_ep_mse"}
    cfgs = {c: config_mod.resolve(MIDSCALE / f"{c}.toml") for c in cells}
    for a in cells:
        for b in cells:
            diff = differences(cfgs[a], cfgs[b])
            same_row = campaign.split_cell(a)[0] == campaign.split_cell(b)[0]
            assert diff <= (campaign.COLUMN_KEYS | {("run", "out")} if same_row else campaign.DEFINING), (a, b, diff)
    probe = config_mod.resolve(REPO / "results" / "table2" / "midscale" / "probes" / "accuracy" / "A_b05" /
                               "config.toml")
    for cell, cfg in cfgs.items():
        m, t = cfg.model, cfg.train
        assert (m.conv_channels, m.hidden, m.eps, m.lam, t.beta) == (probe.model.conv_channels,
                                                                        probe.model.hidden, 0.3, 0.3, 0.05)
        assert t.average_last == t.T_nudge and t.lr == probe.train.lr
        assert cfg.run.out == f"results/table2/midscale/{cell}"
        if campaign.split_cell(cell)[0] == "mnist":
            assert (t.T_free, t.T_nudge) == (probe.train.T_free, probe.train.T_nudge)
    runs = campaign.plan(runs_dir=REPO / "results" / "table2" / "midscale", config_dir=MIDSCALE, seeds=3)
    assert sorted((r.cell, r.seed) for r in runs) == sorted((c, k) for c in cells for k in range(3))


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    for argv in (["--cells", "nope"], ["--set", "train.T_free=9"], ["--jobs", "0"]):
        with pytest.raises(SystemExit) as e:
            campaign.main(argv + ["--runs-dir", str(tmp_path)])
        assert e.value.code == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert campaign.main(["--runs-dir", str(tmp_path), "--cells", "mnist_crnn_bptt", "--mnist-dir",
                          str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prepare_mnist_subset" in err[0]
    for argv, word in ((["--config-dir", str(MIDSCALE)], "--runs-dir"),          # never into the laptop runs
                       (["--config-dir", str(tmp_path / "none"), "--runs-dir", str(tmp_path)], "not a folder")):
        with pytest.raises(SystemExit) as e:
            campaign.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and len(err) == 1 and word in err[0]


def run_campaign(runs_dir, *cells):
    return subprocess.run([sys.executable, "-m", "table2.laptop", "--quick", "--runs-dir",
                           str(runs_dir), "--cells", *cells], env=ENV, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """Two cells in --quick mode (4 runs), started twice: the second start has nothing to do."""
    runs_dir = tmp_path_factory.mktemp("laptop-quick")
    first = run_campaign(runs_dir, "fmnist_snn_ep_avg", "mnist_crnn_ep_ce")
    second = run_campaign(runs_dir, "fmnist_snn_ep_avg", "mnist_crnn_ep_ce")
    return runs_dir, first, second


def test_quick_campaign_trains_records_and_skips_what_is_done(quick):
    runs_dir, first, second = quick
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0 and "0 to do" in second.stdout
    names = ["mnist_crnn_ep_ce"] + [f"fmnist_snn_ep_avg_seed{k}" for k in range(3)]
    assert sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) == sorted(names)
    for name in names:
        out = runs_dir / name
        metrics = read_json_lines(out / "metrics.jsonl")
        assert [m["epoch"] for m in metrics] == [1, 2]
        assert all(0 <= m["test_error"] <= 1 and m["seconds"] > 0 for m in metrics)
        memory = json.loads((out / "memory.json").read_text())
        assert memory["peak_mb"] > 0 and memory["batch_size"] == 50
        calls = read_json_lines(out / "campaign.jsonl")          # one child: the second start skipped it
        assert len(calls) == 1 and calls[0]["exit_code"] == 0
        assert (calls[0]["epochs_before"], calls[0]["epochs_after"]) == (0, 2) and calls[0]["cpu_seconds"] > 0
        assert "--resume" in calls[0]["command"] and "--threads 1" in calls[0]["command"]
        assert not (out / "run.lock").exists() and not (out / "stopped.json").exists()
    seeds = {config_mod.loads((runs_dir / f"fmnist_snn_ep_avg_seed{k}" / "config.toml").read_text()).train.seed
             for k in range(3)}
    assert seeds == {0, 1, 2}
    assert not (runs_dir / "run.lock").exists()


def test_quick_campaign_resumes_a_partial_run(tmp_path):
    out = tmp_path / "mnist_crnn_bptt"
    argv = ["train", "--config", str(campaign.CONFIG_DIR / "mnist_crnn_bptt.toml"), "--out", str(out),
            "--no-progress"] + [a for o in campaign.QUICK for a in ("--set", o)] + ["--epochs", "1"]
    assert cli.main(argv) == 0                                       # a run stopped after epoch 1
    proc = run_campaign(tmp_path, "mnist_crnn_bptt")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = read_json_lines(out / "campaign.jsonl")
    assert [(c["epochs_before"], c["epochs_after"]) for c in calls] == [(1, 2)]
    assert [m["epoch"] for m in read_json_lines(out / "metrics.jsonl")] == [1, 2]


def test_quick_snn_bptt_cell_trains(tmp_path):
    proc = run_campaign(tmp_path, "mnist_snn_bptt")
    assert (tmp_path / "mnist_snn_bptt" / "stopped.json").exists() == (proc.returncode == 1)
    assert proc.returncode == 0, proc.stdout
    assert len(read_json_lines(tmp_path / "mnist_snn_bptt" / "metrics.jsonl")) == 2


def test_report_from_the_quick_campaign(quick, tmp_path):
    runs_dir = quick[0]
    doc = tmp_path / "RESULTS.md"
    assert collect_table2.main(["--runs-dir", str(runs_dir), "--out", str(doc), "--midscale-dir", "none"]) == 0
    text = doc.read_text()
    assert "No campaign results yet" in text and "--quick" in text and "mid scale" not in text
    for prefix in campaign.DATASETS:
        png = tmp_path / f"table2_{prefix}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png.name})" in text
    rows = [line for line in text.splitlines() if line.startswith("| ") and "/" in line.split("|")[3]]
    labels = [line.split("|")[1].strip() for line in rows if line.split("|")[1].strip() in
              campaign.COLUMNS.values()]
    assert labels == list(campaign.COLUMNS.values()) * 2                       # one row per cell
    assert sum("missing (0/2)" in line for line in rows) == 10                 # 10 cells not run
    assert "8.89 ± 2.45" in text and "0.97 ± 0.32" in text                     # the paper beside ours
    assert not list(tmp_path.glob(".*tmp*"))


def write_run(folder, test_errors, train_errors=None, seconds=2.0, peak=5.0):
    folder.mkdir(parents=True)
    rows = [{"epoch": k + 1, "test_error": e, "train_error": (train_errors or test_errors)[k], "loss": 0.1,
             "seconds": seconds, "samples_per_second": 100 / seconds, "lr_scale": 1.0}
            for k, e in enumerate(test_errors)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "memory.json").write_text(json.dumps({"peak_mb": peak}))


def test_means_and_stds_over_seeds_at_the_common_epoch(tmp_path):
    errors = [[0.30, 0.20, 0.10], [0.40, 0.25, 0.15], [0.50, 0.35]]   # seed 2 is one epoch behind
    for k, e in enumerate(errors):
        write_run(tmp_path / f"s{k}", e, seconds=1.0 + k)
    runs = [results.read_run(tmp_path / f"s{k}") for k in range(3)]
    row = results.summarize("fmnist_snn_ep_avg", runs, epochs_planned=3)
    assert (row["epoch"], row["seeds"], row["status"]) == (2, 3, "partial")
    final = [100 * e[1] for e in errors]
    assert row["final_test"][0] == pytest.approx(np.mean(final))
    assert row["final_test"][1] == pytest.approx(np.std(final, ddof=1))
    assert row["best_test"][0] == pytest.approx(np.mean(final))          # best up to the common epoch
    assert row["seconds_per_epoch"][0] == pytest.approx(2.0) and row["peak_mb"] == (5.0, 0.0)
    epochs, mean, std = row["curve"]
    assert epochs == [1, 2, 3] and mean[2] == pytest.approx(12.5) and std[2] == pytest.approx(np.std([10, 15], ddof=1))
    one = results.summarize("mnist_crnn_bptt", [runs[0]], epochs_planned=3)
    assert one["status"] == "complete" and one["final_test"] == (pytest.approx(10.0), None)
    assert collect_table2.fmt(one["final_test"]) == "10.00"
    none = results.summarize("mnist_crnn_bptt", [results.read_run(tmp_path / "absent")], epochs_planned=3)
    assert none["status"] == "missing" and collect_table2.fmt(none["final_test"]) == "—"


def test_partial_results_are_marked_and_the_doc_is_written_atomically(tmp_path, monkeypatch):
    runs_dir, docs = tmp_path / "runs", tmp_path / "docs"
    docs.mkdir()
    planned = {prefix: resolved(f"{prefix}_snn_ep_avg").train.epochs for prefix in campaign.DATASETS}
    write_run(runs_dir / "mnist_snn_ep_avg", [0.5] * planned["mnist"])
    write_run(runs_dir / "fmnist_snn_ep_avg_seed0", [0.4] * (planned["fmnist"] - 1))
    argv = ["--runs-dir", str(runs_dir), "--out", str(docs / "RESULTS.md"), "--midscale-dir", "none"]
    assert collect_table2.main(argv) == 0
    text = (docs / "RESULTS.md").read_text()
    assert "Partial results" in text and "1 of 12 cells complete" in text
    m, f = planned["mnist"], planned["fmnist"]
    assert f"| SNN EP (avg) | 1 seed | {m}/{m} |" in text and f"| SNN EP (avg) | 1/3 | {f - 1}/{f} (partial) |" in text
    assert text.count(f"missing (0/{m})") == 5 and text.count(f"missing (0/{f})") == 5

    class Failing(str):
        def encode(self, *args):
            raise OSError("disk full")
    monkeypatch.setattr(collect_table2, "render", lambda *args: Failing("half"))
    with pytest.raises(OSError):
        collect_table2.main(argv)
    assert (docs / "RESULTS.md").read_text() == text                     # the old file, whole
    assert sorted(p.name for p in docs.iterdir()) == ["RESULTS.md", "table2_fmnist.png", "table2_mnist.png"]


def test_the_hand_written_analysis_survives_a_new_report(tmp_path):
    runs_dir, doc = tmp_path / "runs", tmp_path / "RESULTS.md"
    write_run(runs_dir / "mnist_snn_ep_avg", [0.5, 0.4])
    assert collect_table2.main(["--runs-dir", str(runs_dir), "--out", str(doc), "--midscale-dir", "none"]) == 0
    analysis = f"{collect_table2.HAND_WRITTEN}\n## What the runs show\n\nSNN EP (max) stays at chance.\n"
    doc.write_text(doc.read_text() + "\n" + analysis)
    write_run(runs_dir / "mnist_crnn_bptt", [0.3])                          # a new result, then a new report
    assert collect_table2.main(["--runs-dir", str(runs_dir), "--out", str(doc), "--midscale-dir", "none"]) == 0
    text = doc.read_text()
    assert text.endswith(analysis) and text.count(collect_table2.HAND_WRITTEN) == 1
    assert "| CRNN BPTT | 1 seed | 1/20 (partial) | 30.00 |" in text             # the table was rewritten


def test_measure_cost_and_memory(tmp_path):
    out = tmp_path / "cost.json"
    assert campaign.main(["--quick", "--measure-cost", "--cells", "mnist_crnn_ep_ce", "--runs-dir", str(tmp_path),
                          "--cost-size", "50", "50", "--cost-out", str(out)]) == 0
    cell = json.loads(out.read_text())["cells"]["mnist_crnn_ep_ce"]
    assert cell["train_cpu_s"] > 0 and cell["test_cpu_s"] > 0 and cell["full_size"] == [100, 50]
    assert cell["epoch_cpu_s"] == pytest.approx(2 * cell["train_cpu_s"] + cell["test_cpu_s"], abs=0.1)
    ep, bptt = (config_mod.resolve(campaign.CONFIG_DIR / f"mnist_{c}.toml", ["data.batch_size=10"])
                for c in ("crnn_ep_ce", "crnn_bptt"))
    peak_ep, peak_bptt = table2_measure.step_peak_mb(ep), table2_measure.step_peak_mb(bptt)
    assert 0 < peak_ep < peak_bptt and math.isfinite(peak_bptt)        # BPTT keeps a tape of T_free states


def test_the_committed_results_are_those_of_the_committed_runs(tmp_path):
    """docs/RESULTS.md, up to its hand-written part, is what table2.report makes of results/table2/laptop/
    and results/table2/midscale/."""
    runs_dir, doc = REPO / "results" / "table2" / "laptop", REPO / "docs" / "RESULTS.md"
    if not (runs_dir / "campaign.json").exists():
        pytest.skip("no campaign runs in this checkout")
    text = collect_table2.render(runs_dir, tmp_path / "RESULTS.md")
    assert doc.read_text().split(collect_table2.HAND_WRITTEN)[0].rstrip() == text.rstrip()


def test_midscale_probes_change_only_the_net_the_dynamics_and_the_held_out_images(tmp_path, capsys):
    """table2/midscale_probes.py: every probe is the laptop SNN EP cell with its net's widths, its
    dynamics and (the accuracy runs) 2000 held-out training images instead of the test set."""
    from table2 import midscale_probes as probes
    base = config_mod.resolve(REPO / probes.BASE)
    net_keys = {("model", "conv_channels"), ("model", "hidden")}
    dyn_keys = {("model", "eps"), ("model", "lam"), ("train", "beta"), ("train", "T_free"),
                ("train", "T_nudge"), ("train", "average_last")}
    for name in (f"{n}_{d}" for n in probes.NETS for d in probes.DYNAMICS):
        cfg = config_mod.resolve(REPO / probes.BASE, probes.overrides(name))
        assert differences(cfg, base) <= net_keys | dyn_keys, name
    runs = probes.accuracy_runs(tmp_path / "probes")
    assert [r.name for r in runs] == probes.ACCURACY
    for run in runs:
        cfg = config_mod.resolve(REPO / run.config, run.sets)
        assert cfg.data.validation == 2000 and cfg.train.epochs == run.epochs == probes.EPOCHS
        assert differences(cfg, base) <= net_keys | dyn_keys | {("data", "validation"), ("train", "epochs")}
    # the summary reads what the probes write
    (tmp_path / "probes" / "init").mkdir(parents=True)
    grads = {f"w{n}": {"cos": 0.5, "norm_ep": 2.0, "norm_bptt": 1.0} for n in (1, 2, 3, 4)}
    (tmp_path / "probes" / "init" / "A_qs_snn.json").write_text(json.dumps({"net": {"gradients": grads}}))
    runs[0].folder.mkdir(parents=True)
    row = {"epoch": 1, "test_error": 0.1, "train_error": 0.2}
    (runs[0].folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    (runs[0].folder / "campaign.jsonl").write_text(
        "".join(json.dumps({"exit_code": code, "cpu_seconds": cpu, "epochs_before": 0, "epochs_after": after})
                + "\n" for code, cpu, after in ((130, 5.0, 0), (0, 41.0, 1))))
    text = probes.summary(tmp_path / "probes")
    assert "| A | qs | +0.50 / +0.50 / +0.50 / +0.50 | 2.00 / 2.00 / 2.00 / 2.00 |  |  |" in text
    assert f"| {runs[0].name} | 10.00% | 20.00% | 41 |" in text
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        probes.main(["accuracy", "--names", "Z_qs"])
    assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_lr_search_runs_every_scale_on_held_out_images_and_chooses_the_lowest_error(tmp_path, capsys):
    """table2/lr_search.py on two tiny cells: one run per (cell, scale), the cell's rates times the
    scale, tested on held-out training images; the report's choice is the lowest validation error."""
    from table2 import lr_search
    configs = tmp_path / "configs"
    configs.mkdir()
    tiny = ('[data]\nsource = "embedded"\ntrain_size = 40\ntest_size = 20\nbatch_size = 20\n'
            '[model]\nconv_channels = [3]\nhidden = [6]\n[train]\nT_free = 6\nT_nudge = 3\nlr = {lr}\n')
    (configs / "a.toml").write_text(tiny.format(lr="[0.2, 0.1, 0.05]"))
    (configs / "b.toml").write_text(tiny.format(lr="[0.4, 0.2, 0.1]") + 'algorithm = "bptt"\n')
    out = tmp_path / "search"
    argv = ["--configs", str(configs), "--out", str(out), "--scales", "0.5", "2", "--epochs", "1",
            "--validation", "100"]
    assert lr_search.main(argv + ["--jobs", "2"]) == 0
    runs = lr_search.plan(configs, out, [0.5, 2.0], 1, 100)
    assert sorted(r.name for r in runs) == ["a_lr0.5", "a_lr2", "b_lr0.5", "b_lr2"]
    for run in runs:
        cfg = config_mod.resolve(run.folder / "config.toml")
        base = config_mod.resolve(configs / f"{run.cell}.toml")
        assert cfg.data.validation == 100 and cfg.train.epochs == 1
        assert cfg.train.lr == pytest.approx([r * run.scale for r in base.train.lr])
        assert "validation error" in (run.folder / "train.log").read_text()
    capsys.readouterr()
    assert lr_search.main(argv + ["--report"]) == 0
    found = json.loads((out / "search.json").read_text())
    assert found == json.loads(capsys.readouterr().out)
    for cell, lr in (("a", [0.2, 0.1, 0.05]), ("b", [0.4, 0.2, 0.1])):
        errors = {s: read_json_lines(out / f"{cell}_lr{s}" / "metrics.jsonl")[-1]["test_error"]
                  for s in ("0.5", "2")}
        assert found[cell]["errors"] == errors and found[cell]["lr"] == lr
        best = min(errors, key=lambda s: (errors[s], float(s)))
        assert found[cell]["chosen"] == float(best)
        assert found[cell]["chosen_lr"] == pytest.approx([r * float(best) for r in lr])
    for bad in (["--scales", "0"], ["--cells", "zz"], ["--data-dir", "nodir"]):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            lr_search.main(argv + bad)
        assert exc.value.code == 2 and capsys.readouterr().err.count("\n") == 1


def test_midscale_campaign_round_robin_and_chance_stop(tmp_path):
    """--epochs-per-child 1: every child trains one epoch, the runs advance together; --chance-stop E
    ends after epoch E the SNN EP (max) runs at chance after each epoch so far, and no other column."""
    runs_dir = tmp_path / "quick"
    proc = subprocess.run([sys.executable, "-m", "table2.laptop", "--quick", "--config-dir", "configs/midscale",
                           "--runs-dir", str(runs_dir), "--seeds", "2", "--cells", "mnist_crnn_ep_ce",
                           "--epochs-per-child", "1"], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for k in range(2):
        calls = read_json_lines(runs_dir / f"mnist_crnn_ep_ce_seed{k}" / "campaign.jsonl")
        assert [(c["epochs_before"], c["epochs_after"]) for c in calls] == [(0, 1), (1, 2)]
        assert "--until 1" in calls[0]["command"] and "--until 2" in calls[1]["command"]
    record = json.loads((runs_dir / "campaign.json").read_text())
    assert (record["config_dir"], record["seeds"], record["chance_stop"]) == ("configs/midscale", 2, None)

    fake = tmp_path / "fake"
    config_dir = REPO / "configs" / "midscale"
    runs = campaign.plan(runs_dir=fake, config_dir=config_dir, seeds=3)
    planned = {r.name: r.epochs for r in runs}
    chance, learns = [0.90, 0.88, 0.91], [0.90, 0.60, 0.30]
    for k in range(3):
        write_run(fake / f"mnist_snn_ep_max_seed{k}", chance if k < 2 else [0.9, 0.5, 0.9])
        write_run(fake / f"mnist_snn_ep_avg_seed{k}", chance)            # at chance, but not the max column
    write_run(fake / "mnist_crnn_bptt_seed0", learns)
    campaign.chance_stop(runs, 3)
    ended = {r.name for r in runs if r.epochs != planned[r.name]}
    assert ended == {"mnist_snn_ep_max_seed0", "mnist_snn_ep_max_seed1"}
    assert all(r.epochs == 3 for r in runs if r.name in ended)

    (fake / "search").mkdir()
    search = {"mnist_snn_ep_avg": {"lr": [0.5, 0.3], "errors": {"0.5": 0.1, "1": 0.05, "2": None},
                                   "chosen": 1.0, "chosen_lr": [0.5, 0.3]}}
    (fake / "search" / "search.json").write_text(json.dumps(search))
    text = collect_table2.midscale_section(fake, tmp_path / "RESULTS.md", config_dir)
    m = resolved_in(config_dir, "mnist_snn_ep_max").train.epochs
    assert f"| SNN EP (max) | 3/3 | 3/{m} (partial) (at chance: stopped) |" in text      # seed 2 goes on
    assert "| mnist_snn_ep_avg | [0.5, 0.3] | 10.00% | 5.00% | stopped | x 1: [0.5, 0.3] |" in text
    assert "| mnist_crnn_bptt_seed0 | partial | 3/" in text and "missing" in text
    for prefix in campaign.DATASETS:
        assert (tmp_path / f"table2_midscale_{prefix}.png").read_bytes()[:4] == b"\x89PNG"


def resolved_in(config_dir, cell):
    return config_mod.resolve(config_dir / f"{cell}.toml")
