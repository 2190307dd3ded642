"""The benchmarks run, write sane JSON, count FLOPs right, and say a verdict for every target.

No timing is asserted: speed targets belong to the benchmarks (``benchmarks/run.py`` states them in
``summary.md``), never to a timed test. The ``--quick`` run of everything takes a few seconds.
"""
import importlib.util
import inspect
import json
import math
import statistics
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import ab_child, bench_memory, bench_network, bench_ops
from benchmarks import run as bench_run
from benchmarks.benchlib import ab, breakdown, flops, nets, summary
from conftest import REPO
from minimal_ep import backend, build_network, ep_gradients, fast
from minimal_ep.run import config


def _load_script(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script("gpu_check", REPO / "scripts" / "gpu_check.py")     # scripts/ is not a package


def positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def available_baselines():
    """The default baselines this clone has (a shallow clone may have none)."""
    out = []
    for ref in nets.DEFAULT_BASELINES:
        try:
            ab.resolve_commit(ref)
            out.append(ref)
        except ab.UsageError:
            pass
    return out


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``benchmarks/run.py --quick --threads 1 --out-dir <tmp>``, once for the module; NumPy backend."""
    if backend.get_backend() != "numpy":
        pytest.skip("the quick benchmark run is checked on the NumPy backend")
    out = tmp_path_factory.mktemp("bench")
    bench_run.main(["--quick", "--threads", "1", "--out-dir", str(out),
                    "--baseline", ",".join(available_baselines()) or "none"])
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
    """Every available baseline was compared (the first on every net, fbe01e1 on the Laborieux nets), with
    the old commits' exported packages imported by the child (it checks), at the one thread asked for."""
    r = load(quick_run, "network")["ab"]
    refs = available_baselines()
    if r is None:
        assert not refs
        pytest.skip(f"no baseline commit of {nets.DEFAULT_BASELINES} in this clone")
    assert r["threads"] == [1] and [c["ref"] for c in r["comparisons"]] == refs
    assert len(r["load"]) == r["repeats"] and all(isinstance(v["busy"], bool) for v in r["load"])
    for comp in r["comparisons"]:
        assert comp["commit"].startswith(comp["ref"]) and comp["threads"] == 1
        expected = [n.name for n in nets.ab_plan(nets.NETS, refs)[comp["ref"]]]
        assert [row["net"] for row in comp["nets"]] == expected
        check_ab_rows(comp["nets"], r["repeats"])
    first = r["comparisons"][0]
    assert [row["net"] for row in first["nets"]] == [n.name for n in nets.NETS]


def check_ab_rows(rows, repeats):
    for row in rows:
        assert len(row["baseline_s"]) == len(row["current_s"]) == repeats >= 2
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
        fused, readable = (rows[(layer, "AvgPool forward", form)]["flops"] for form in ("fused", "readable"))
        assert fused < readable
        for path in bench_ops.PATHS:
            for op in ("max_pool2d", "max_unpool2d"):
                assert positive(rows[(layer, op, path)]["gbytes_per_s"])


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
    refs = available_baselines()
    assert {(t["net"], t["target"]) for t in rows} == {(n, f">= {x:g}x faster than {ref}")
                                                       for n, _, x, ref in nets.TARGETS}
    for t in rows:
        line = next(line for line in text.splitlines()
                    if line.startswith(f"| {t['title']} | {t['target']} | {t['threads']} |"))
        if t["ref"] in refs:
            assert t["threads"] == 1 and isinstance(t["met"], bool) and summary.verdict(t["met"]) in line
        else:
            assert t["met"] is None and "not measured" in line
    # the summary can be rewritten from the JSON alone (the timestamp line aside)
    again = bench_run.main(["--summary-only", "--out-dir", str(quick_run)])
    strip = lambda s: [line for line in s.splitlines() if not line.startswith("Written")]  # noqa: E731
    assert strip(again) == strip(text)


def test_targets_without_results():
    rows = summary.targets(None)
    assert len(rows) == len(nets.TARGETS) * len(nets.TARGET_THREADS) and all(t["met"] is None for t in rows)
    assert summary.verdict(None) == "not measured"


def test_targets_are_issue_25s():
    """Max-pooling figure nets 1.5x and the avg/quickstart nets 1.2x over 9374924, Laborieux 5x5 2.2x over
    fbe01e1, every other net >= 0.95x over 9374924; each at one and two BLAS threads."""
    by = {(n, ref): x for n, kind, x, ref in nets.TARGETS if kind == "speedup"}
    assert by[("figure-snn-max", "9374924")] == by[("figure-crnn-max", "9374924")] == 1.5
    for n in ("figure-snn-avg", "figure-crnn-avg", "five-layer-snn-avg", "five-layer-crnn-avg", "quickstart-snn",
              "quickstart-crnn"):
        assert by[(n, "9374924")] == 1.2
    assert by[("laborieux-5x5", "fbe01e1")] == 2.2
    assert {n for n, ref in by if ref == "9374924"} == set(nets.BY_NAME)
    assert set(nets.TARGET_THREADS) == {1, 2}
    plan = nets.ab_plan(nets.NETS, ["9374924", "fbe01e1"])
    assert plan["9374924"] == nets.NETS and {n.name for n in plan["fbe01e1"]} == {"laborieux-5x5", "laborieux-3x3"}
    assert nets.parse_baselines("none") == [] and nets.parse_baselines("a, b,a") == ["a", "b"]


@pytest.mark.parametrize("name", nets.FIGURE_NETS)
def test_figure_nets_are_the_campaigns(name):
    """The figure nets are configs/figures/<name>.toml's: the same model, batch and phases."""
    cfg = config.resolve(REPO / "configs" / "figures" / f"{name}.toml")
    net = nets.BY_NAME[f"figure-{name.replace('_', '-')}"]
    assert (net.batch, net.T_free, net.T_nudge) == (cfg.data.batch_size, cfg.train.T_free, cfg.train.T_nudge) \
        == (25, 250, 50)
    built, expected = nets.make_net(net).model, build_network(cfg.model).model
    assert built == expected and built.eps == built.lam == 0.1


def test_ab_child_passes_fast_only_where_build_network_takes_it():
    def old(input_shape=(1, 28, 28), conv_channels=(16,), init_scale=1.0):
        pass

    def new(model=None, *, fast=True, **settings):
        pass

    build = {"input_shape": [1, 28, 28], "conv_channels": [16], "init_scale": [2.0, 1.0], "fast": True}
    assert ab_child.build_arguments(build, old) == {"input_shape": (1, 28, 28), "conv_channels": (16,),
                                                     "init_scale": (2.0, 1.0)}
    assert ab_child.build_arguments(build, new)["fast"] is True
    assert "fast" in inspect.signature(build_network).parameters


# ----------------------------------------------------------------------------- the FLOP count
def _count_gemm(monkeypatch):
    """Monkeypatch fast.gemm (in every module of minimal_ep.fast that uses it) to add up 2 M K P (times the
    stacked batch) of every product; the counter."""
    count = [0]
    gemm = fast.gemm

    def counting(a, b, out=None):
        stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        count[0] += 2 * int(np.prod(stack, dtype=np.int64)) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        return gemm(a, b, out=out)

    patched = [m for name, m in sys.modules.items()
               if name == "minimal_ep.fast" or name.startswith("minimal_ep.fast.") if getattr(m, "gemm", None) is gemm]
    assert {"minimal_ep.fast.ops", "minimal_ep.fast.layers"} <= {m.__name__ for m in patched}
    for module in patched:
        monkeypatch.setattr(module, "gemm", counting)
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
    fused, readable = (flops.batch_flops(build_network(conv_channels=(4, 8), hidden=(), pool="avg", spiking=False,
                                                       loss="mse", fast=f), 10, 4, 2) for f in (True, False))
    assert 0 < fused["step_free"] < readable["step_free"]
    assert {i["via"] for i in readable["items"]} == {"@"} and "gemm" in {i["via"] for i in fused["items"]}


# ----------------------------------------------------------------------------- pieces and the command lines
def test_breakdown_is_a_partition():
    net = build_network(conv_channels=(2, 4), hidden=(8,), pool="max", spiking=True, loss="mse")
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    out = breakdown.profile_batch(lambda: ep_gradients(net, x, np.arange(3), 0.2, 2, 1))
    assert sum(out["seconds"].values()) == pytest.approx(out["profiled_s"], rel=1e-3)
    assert out["seconds"]["gemm"] > 0 and out["seconds"]["pooling"] > 0 and out["seconds"]["elementwise"] > 0
    code = build_network.__code__
    entry = (code.co_filename, code.co_firstlineno, "build_network")
    assert breakdown.package_name(entry) == "run.build.build_network"


def test_ab_summarise_and_child_case():
    row = ab.summarise("n", [4.0, 2.0, 3.0], [2.0, 2.0, 1.0])
    assert row["speedups"] == [2.0, 1.0, 3.0] and row["speedup_median"] == 2.0
    assert row["ratio_of_medians"] == pytest.approx(3.0 / 2.0)
    case = ab.child_case(nets.BY_NAME["2c2fc-snn"])
    assert ab.child_case(nets.BY_NAME["figure-snn-max"])["T_free"] == 250
    assert (case["T_free"], case["T_nudge"]) == nets.BY_NAME["2c2fc-snn"].extrapolate
    assert json.loads(json.dumps(case))["build"]["conv_channels"] == [128, 256]


@pytest.mark.parametrize("script, args", [
    ("benchmarks/bench_network.py", ["--quick", "--baseline", "no-such-commit-xyz"]),
    ("benchmarks/bench_network.py", ["--nets", "no-such-net", "--baseline", "none"]),
    ("benchmarks/bench_ops.py", ["--repeats", "0"]),
    ("benchmarks/run.py", ["--only", "nothing"]),
    ("benchmarks/run.py", ["--threads", "two"]),
    ("benchmarks/run.py", ["--threads", "2,0"]),
    ("benchmarks/run.py", ["--baseline", "9374924,no-such-commit-xyz", "--only", "network"]),
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
