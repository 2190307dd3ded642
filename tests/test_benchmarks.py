"""The benchmarks run, write sane JSON, count FLOPs right, and say a verdict for every target.

No timing is asserted: speed targets belong to the benchmarks (``benchmarks/run.py`` states them in
``summary.md``), never to a timed test. The ``--quick`` run of everything takes a few seconds.
"""
import importlib.util
import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from minimal_ep import backend, build_network, ep_gradients, fast

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_memory  # noqa: E402
import bench_network  # noqa: E402
import bench_ops  # noqa: E402
from benchlib import ab, breakdown, flops, nets, summary  # noqa: E402


def _load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_run = _load_script("bench_run", REPO / "benchmarks" / "run.py")      # "run" is too common a name
gpu_check = _load_script("gpu_check", REPO / "scripts" / "gpu_check.py")


def positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def baseline_available():
    try:
        ab.resolve_commit(ab.DEFAULT_BASELINE)
        return True
    except ab.UsageError:
        return False


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``benchmarks/run.py --quick --threads 1 --out-dir <tmp>``, once for the module; NumPy backend."""
    if backend.get_backend() != "numpy":
        pytest.skip("the quick benchmark run is checked on the NumPy backend")
    out = tmp_path_factory.mktemp("bench")
    extra = [] if baseline_available() else ["--baseline", "none"]
    bench_run.main(["--quick", "--threads", "1", "--out-dir", str(out)] + extra)
    return out


def load(out, name):
    with open(out / f"{name}.json") as f:
        return json.load(f)


def check_header(result):
    assert result["quick"] is True and result["threads"] == 1
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["numpy"]
    load = result["load"]
    assert isinstance(load["busy"], bool) and all(math.isfinite(load[k]) for k in ("before", "after"))
    assert load["other_cores"] is None or load["other_cores"] >= 0


# ----------------------------------------------------------------------------- the quick run's JSON
def test_network_json(quick_run):
    r = load(quick_run, "network")
    check_header(r)
    assert positive(r["gemm_peak"]["gflops"]) and positive(r["gemm_peak_end"]["gflops"])
    assert [row["name"] for row in r["nets"]] == [n.name for n in nets.NETS]
    for row in r["nets"]:
        times = row["measured"]["batch_s"] + row["measured"]["short_batch_s"]
        assert times and all(positive(t) for t in times)
        for key in ("batch_s", "step_s", "samples_per_s", "gflops", "fraction_of_peak"):
            assert positive(row[key]), (row["name"], key)
        assert row["batch_s"] == pytest.approx(min(row["measured"]["batch_s"]))     # not extrapolated in --quick
        assert row["batch_median_s"] >= row["batch_s"] == min(row["measured"]["batch_s"])
        f = row["flops"]
        assert f["batch"] == sum(i["flops"] * i["calls"] for i in f["items"]) > 0
        assert f["per_step"] == pytest.approx(f["batch"] / row["steps"])
        assert row["gflops"] == pytest.approx(f["batch"] / row["batch_s"] / 1e9)
        assert r["gemm_peak_gflops"] == max(r["gemm_peak"]["gflops"], r["gemm_peak_end"]["gflops"])
        assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / r["gemm_peak_gflops"])
        bd = row["breakdown"]
        assert set(bd["fraction"]) == set(breakdown.PARTS)
        assert sum(bd["fraction"].values()) == pytest.approx(1.0)
        assert sum(bd["seconds"].values()) == pytest.approx(bd["profiled_s"], rel=1e-3)
        assert sum(bd["seconds"].values()) == pytest.approx(bd["wall_s"], rel=0.25)   # the profile covers the call
        assert bd["seconds"]["gemm"] > 0 and bd["calls"] > 0


def test_ab_json(quick_run):
    r = load(quick_run, "network")["ab"]
    if r is None:
        pytest.skip(f"no baseline commit {ab.DEFAULT_BASELINE} in this clone")
    assert r["baseline"]["commit"].startswith(ab.DEFAULT_BASELINE) and r["threads"] == 1
    assert len(r["load"]) == r["repeats"] and all(isinstance(v["busy"], bool) for v in r["load"])
    assert [row["net"] for row in r["nets"]] == [n.name for n in nets.NETS]
    for row in r["nets"]:
        assert len(row["baseline_s"]) == len(row["current_s"]) == r["repeats"] >= 2
        assert all(positive(t) for t in row["baseline_s"] + row["current_s"])
        assert row["baseline_median_s"] == statistics.median(row["baseline_s"])
        assert row["current_median_s"] == statistics.median(row["current_s"])
        assert row["speedups"] == pytest.approx([b / c for b, c in zip(row["baseline_s"], row["current_s"])])
        assert row["speedup_median"] == pytest.approx(statistics.median(row["speedups"]))
        assert row["ratio_of_medians"] == pytest.approx(row["baseline_median_s"] / row["current_median_s"])


def test_ops_json(quick_run):
    r = load(quick_run, "ops")
    check_header(r)
    rows = {(row["layer"], row["op"], row["path"]): row for row in r["ops"]}
    for layer in bench_ops.LAYERS:
        for op in ("conv2d", "conv_transpose2d", "conv2d_weight"):
            for path in bench_ops.PATHS:
                row = rows[(layer, op, path)]
                assert positive(row["median_s"]) and positive(row["gflops"])
                assert row["gflops"] == pytest.approx(row["flops"] / row["median_s"] / 1e9)
        for pool in ("AvgPool", "MaxPool"):
            for route in ("forward", "backward", "dphi_dw"):
                for form in bench_ops.FORMS:
                    assert positive(rows[(layer, f"{pool} {route}", form)]["median_s"])
        # the fused avg layer computes fewer FLOPs than the two-step form (K+F-1)^2 / (F^2 K^2)
        fused, two_step = (rows[(layer, "AvgPool forward", form)]["flops"] for form in ("fused", "two-step"))
        assert fused < two_step
        assert positive(rows[(layer, "max_pool2d", "-")]["gbytes_per_s"])


def test_memory_json(quick_run):
    r = load(quick_run, "memory")
    check_header(r)
    sw = r["sweep"]
    assert len(sw["rows"]) == 4 * len(sw["Ts"]) and all(positive(row["peak_mb"]) for row in sw["rows"])
    for mode, m in sw["modes"].items():
        assert isinstance(m["flat" if mode.endswith("EP") else "linear"], bool)
    paths = {(row["net"], row["mode"], row["path"]) for row in r["paths"]["rows"]}
    assert paths == {(n, m, p) for n in r["paths"]["nets"] for m in ("SNN EP", "CRNN EP")
                     for p in ("fast", "readable")}
    assert all(positive(row["peak_mb"]) for row in r["paths"]["rows"])
    assert "table2" not in r                  # --quick skips Table II's protocol


def test_memory_helpers():
    fit = bench_memory.line_fit([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert fit["slope_mb_per_step"] == pytest.approx(2.0) and fit["intercept_mb"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    for T in (6, 25, 50, 150, 200):
        T_free, T_nudge = bench_memory.split_ep(T)
        assert T_free + 2 * T_nudge == T and T_nudge >= 1
    assert bench_memory.split_ep(150) == (100, 25)


def test_summary(quick_run):
    text = (quick_run / "summary.md").read_text()
    assert "--quick run" in text
    for section in ("## Targets", "## EP training batch per net", "## Where the time goes", "## Ops",
                    "## Peak memory"):
        assert section in text
    rows = summary.targets(load(quick_run, "network"))
    assert len(rows) == len(nets.TARGETS)
    for t in rows:
        line = next(line for line in text.splitlines() if line.startswith(f"| {t['title']} | {t['target']}"))
        if t["kind"] == "step_ms" or load(quick_run, "network")["ab"] is not None:
            assert isinstance(t["met"], bool) and summary.verdict(t["met"]) in line
    # the summary can be rewritten from the JSON alone (the timestamp line aside)
    again = bench_run.main(["--summary-only", "--out-dir", str(quick_run)])
    strip = lambda s: [line for line in s.splitlines() if not line.startswith("Written")]  # noqa: E731
    assert strip(again) == strip(text)


def test_targets_without_results():
    rows = summary.targets(None)
    assert len(rows) == len(nets.TARGETS) and all(t["met"] is None for t in rows)
    assert summary.verdict(None) == "not measured"


# ----------------------------------------------------------------------------- the FLOP count
def _count_gemm(monkeypatch):
    """Monkeypatch fast.gemm to add up 2 M K P (times the stacked batch) of every product; the counter."""
    count = [0]
    gemm = fast.gemm

    def counting(a, b, out=None):
        stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        count[0] += 2 * int(np.prod(stack, dtype=np.int64)) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        return gemm(a, b, out=out)

    monkeypatch.setattr(fast, "gemm", counting)
    return count


@pytest.mark.parametrize("shape, padding", [((1, 12, 12), 0), ((2, 20, 20), 1)])   # batch-last / per-sample
@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("spiking", [False, True])
def test_flops_match_the_products_computed(monkeypatch, spiking, pool, shape, padding):
    """One step and one whole EP batch of a conv-only net: the analytic count is what passes through fast.gemm."""
    if backend.get_backend() != "numpy":
        pytest.skip("counted on NumPy")
    net = build_network(input_shape=shape, conv_channels=(3, 4), kernel_size=3, padding=padding, pool=pool,
                        hidden=(), spiking=spiking, loss="ce", dtype="float32", seed=0)
    N = 5
    x = np.random.default_rng(0).random((N,) + shape, dtype=np.float32)
    y = np.arange(N) % 10
    count = _count_gemm(monkeypatch)
    state = net.step(net.init_state(x))
    count[0] = 0
    net.step(state)
    assert count[0] == flops.gemm_step_flops(net, N) > 0
    count[0] = 0
    ep_gradients(net, x, y, 0.2, 3, 2)
    expected = flops.batch_flops(net, N, 3, 2)
    assert count[0] == sum(i["flops"] * i["calls"] for i in expected["items"] if i["via"] == "gemm")


def test_fused_avg_layer_counts_fewer_flops():
    net = build_network(conv_channels=(4, 8), hidden=(), pool="avg", spiking=False, loss="mse")
    with fast.use(True):
        fused = flops.batch_flops(net, 10, 4, 2)
    with fast.use(False):
        two_step = flops.batch_flops(net, 10, 4, 2)
    assert 0 < fused["step_free"] < two_step["step_free"]


# ----------------------------------------------------------------------------- pieces and the command lines
def test_breakdown_is_a_partition():
    net = build_network(conv_channels=(2, 4), hidden=(8,), pool="max", spiking=True, loss="mse")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    out = breakdown.profile_batch(lambda: ep_gradients(net, x, np.arange(3), 0.2, 2, 1))
    assert sum(out["seconds"].values()) == pytest.approx(out["profiled_s"], rel=1e-3)
    assert out["seconds"]["gemm"] > 0 and out["seconds"]["pooling"] > 0 and out["seconds"]["elementwise"] > 0
    code = build_network.__code__
    entry = (code.co_filename, code.co_firstlineno, "build_network")
    assert breakdown.package_name(entry) == "build.build_network"


def test_ab_summarise_and_child_case():
    row = ab.summarise("n", [4.0, 2.0, 3.0], [2.0, 2.0, 1.0])
    assert row["speedups"] == [2.0, 1.0, 3.0] and row["speedup_median"] == 2.0
    assert row["ratio_of_medians"] == pytest.approx(3.0 / 2.0)
    case = ab.child_case(nets.BY_NAME["2c2fc-snn"])
    assert (case["T_free"], case["T_nudge"]) == nets.BY_NAME["2c2fc-snn"].extrapolate
    assert json.loads(json.dumps(case))["build"]["conv_channels"] == [128, 256]


@pytest.mark.parametrize("script, args", [
    ("benchmarks/bench_network.py", ["--quick", "--baseline", "no-such-commit-xyz"]),
    ("benchmarks/bench_network.py", ["--nets", "no-such-net", "--baseline", "none"]),
    ("benchmarks/bench_ops.py", ["--repeats", "0"]),
    ("benchmarks/run.py", ["--only", "nothing"]),
    ("benchmarks/run.py", ["--threads", "two"]),
])
def test_bad_input_exits_2_with_one_line(script, args, tmp_path):
    done = subprocess.run([sys.executable, str(REPO / script), "--out" if "run.py" not in script else "--out-dir",
                           str(tmp_path / "x.json"), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "error" in done.stderr
    assert not (tmp_path / "x.json").exists()


# ----------------------------------------------------------------------------- the GPU check
def test_gpu_check_without_a_gpu_exits_2_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "gpu_problem", lambda: "no CUDA GPU: nothing to check")
    assert gpu_check.main([]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["gpu_check.py: no CUDA GPU: nothing to check"]
    if not backend.gpu_available():
        assert gpu_check.gpu_problem() is not None
        done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py")], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1


def test_gpu_check_commands_are_well_formed(tmp_path):
    cmds = gpu_check.commands(tmp_path)
    assert set(cmds) == {"tests", "ops", "network"}
    for name, (argv, env) in cmds.items():
        assert argv[0] == sys.executable and env["MINIMAL_EP_BACKEND"] == "cupy"
    assert cmds["tests"][0][1:3] == ["-m", "pytest"] and (REPO / "tests").is_dir()
    for name, parser in (("ops", bench_ops.build_parser()), ("network", bench_network.build_parser())):
        argv = cmds[name][0]
        assert (REPO / "benchmarks" / f"bench_{name}.py") == gpu_check.pathlib.Path(argv[1])
        args = parser.parse_args(argv[2:])            # exits on an unknown flag
        assert str(tmp_path) in args.out
    assert bench_network.build_parser().parse_args(cmds["network"][0][2:]).baseline == "none"
    assert gpu_check.build_parser().parse_args(["--data-dir", "/d", "--batches", "5"]).batches == 5
    assert gpu_check.pytest_counts("3 failed, 120 passed, 7 skipped in 9.1s") == \
        {"failed": 3, "passed": 120, "skipped": 7}


def fake_result(training_ok=True, failed=0):
    parts = {"tests": {"status": "ok" if not failed else "failed", "seconds": 200.0,
                       "counts": {"passed": 480, "skipped": 10, **({"failed": failed} if failed else {})},
                       "output": "480 passed"},
             "ops": {"status": "ok", "seconds": 30.0}, "network": {"status": "ok", "seconds": 60.0}}
    parts["training"] = ({"status": "ok", "config": "configs/fmnist_2c2fc_snn_ep.toml", "batches": 300,
                          "batch_size": 125, "T_free": 350, "T_nudge": 50,
                          "seconds": 150.0, "samples_per_s": 250.0, "ms_per_step": 1.11, "train_error": 0.3,
                          "test_error": 0.2345, "test_images": 2000, "eval_seconds": 5.0, "data_source": "/d",
                          "peak_mb": 812.4, "in_use_mb": 300.0, "seconds_total": 155.0}
                         if training_ok else
                         {"status": "not run", "detail": "fashion-mnist not found", "seconds": 0.1})
    result = {"created": "2026-01-01 00:00:00", "budget_s": 600.0, "total_s": 450.0, "parts": parts,
              "gpu": {"name": "Fake GPU", "memory_gb": 16.0, "cuda_runtime": 12040, "cupy": "13.3.0"},
              "ops_rows": [{"layer": layer, "op": op, "median_s": 0.001, "gflops": 5000.0}
                           for layer in bench_ops.LAYERS for op in ("conv2d", "conv_transpose2d", "conv2d_weight")],
              "network_rows": [{"title": net.title, "step_s": 0.004, "batch_s": 1.5, "samples_per_s": 83.3,
                                "extrapolated": bool(net.extrapolate)} for net in nets.NETS]}
    result["passed"] = gpu_check.passed(parts)
    return result


def test_gpu_check_report():
    text = gpu_check.report(fake_result())
    assert len(text.splitlines()) <= 60                        # one page
    for piece in ("Fake GPU", "480 passed", "fmnist_2c2fc_snn_ep.toml", "250.0 samples/s", "1.11 ms per step",
                  "test error 23.45%",
                  "812 MB", "2C2FC SNN", "verdict: PASS"):
        assert piece in text, piece
    assert "verdict: FAIL" in gpu_check.report(fake_result(failed=2))
    bad = gpu_check.report(fake_result(training_ok=False))
    assert "training: not run: fashion-mnist not found" in bad and "verdict: FAIL" in bad


def test_gpu_check_training_runs_small_on_numpy():
    """The training part, on NumPy with a tiny quickstart net (the embedded data): its numbers are sane."""
    if backend.get_backend() != "numpy":
        pytest.skip("the small training is run on NumPy")
    args = gpu_check.build_parser().parse_args(["--batches", "3", "--test-images", "20"])
    try:
        out = gpu_check.train_briefly(args, gpu_check.time.perf_counter() + 120,
                                      REPO / "configs" / "quickstart.toml",
                                      ["model.conv_channels=[2, 4]", "model.hidden=[8]", "train.T_free=3",
                                       "train.T_nudge=2"], backend_name="numpy")
    finally:
        backend.set_backend("numpy")
    assert out["status"] == "ok" and out["batches"] == 3 and out["test_images"] == 20
    assert positive(out["samples_per_s"]) and positive(out["ms_per_step"]) and 0 <= out["test_error"] <= 1
    assert out["peak_mb"] is None                    # no CuPy pool on NumPy
    assert "n/a (not on CuPy)" in gpu_check.report(dict(fake_result(), parts={"training": out}))
