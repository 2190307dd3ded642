"""The benchmarks run, write the documented JSON keys, and replay the products the package computes.

No timing is asserted here: speed targets belong to the benchmarks (``benchmarks/run.py`` states
them in ``summary.md``), never to a timed test. ``--quick`` runs take a few seconds.
"""
import collections
import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from conftest import REPO
from minimal_ep import backend
from minimal_ep.ep import ep_gradients

sys.path.insert(0, str(REPO / "benchmarks"))
import bench_memory  # noqa: E402
import bench_network  # noqa: E402

# benchmarks/run.py under a name of its own ("run" is too common a module name to import bare)
_spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)


def positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def finite(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``benchmarks/run.py --quick --out-dir <tmp>``, once for the module; NumPy backend."""
    if backend.get_backend() != "numpy":
        pytest.skip("the quick benchmark run is checked on the NumPy backend")
    out = tmp_path_factory.mktemp("bench")
    bench_run.main(["--quick", "--out-dir", str(out)])
    return out


def load(out, name):
    with open(out / f"{name}.json") as f:
        return json.load(f)


def check_header(result):
    assert result["quick"] is True
    assert result["machine"]["cpu_count"] >= 1 and result["machine"]["numpy"]
    for k in ("before", "after"):
        assert finite(result["loadavg_1min"][k])


def test_ops_json(quick_run):
    r = load(quick_run, "ops")
    check_header(r)
    assert positive(r["gemm_peak"]["gflops"]) and positive(r["gemm_peak_end"]["gflops"])
    ops = {(row["layer"], row["op"]): row for row in r["ops"]}
    for op in ("conv2d", "conv_transpose2d", "conv2d_weight"):
        row = ops[("conv2", op)]
        assert positive(row["median_s"]) and positive(row["gflops"]) and positive(row["fraction_of_peak"])


def test_network_json(quick_run):
    r = load(quick_run, "network")
    check_header(r)
    assert positive(r["gemm_peak"]["gflops"]) and positive(r["gemm_peak_end"]["gflops"])
    cases = {(e["net"], e["kind"]): e for e in r["ep"]}
    assert set(cases) == {(n, k) for n in ("quickstart", "2c2fc") for k in ("CRNN", "SNN")}
    for (net, kind), e in cases.items():
        assert e["extrapolated"] is (net == "2c2fc")
        assert e["loss"] == ("ce" if kind == "CRNN" else "mse")
        for key in ("batch_s", "batch_median_s", "samples_per_s", "gemm_s", "gemm_flops",
                    "gemm_fraction", "gemm_gflops", "gemm_fraction_of_peak"):
            assert positive(e[key]), (net, kind, key, e[key])
        for ph in ("free", "nudged"):
            assert positive(e["step_s"][ph]) and positive(e["step_gemm_fraction"][ph])
        for ph in bench_network.PHASES:
            p = e["phases"][ph]
            for key in ("min_s", "median_s", "gemm_s", "gemm_flops", "gemm_fraction"):
                assert positive(p[key]), (net, kind, ph, key, p[key])
        assert e["batch_s"] == pytest.approx(sum(e["phases"][ph]["min_s"] for ph in bench_network.PHASES))
        for group in e["gemm_products"].values():
            for p in group:
                assert positive(p["best_s"]) and positive(p["gflops"]) and p["count"] >= 1
        if net == "quickstart":
            assert positive(e["ep_gradients_whole"]["min_s"])
            assert positive(e["extrapolation_check"]["ratio"])
    assert len(r["bptt"]) == 2
    for row in r["bptt"]:
        assert positive(row["batch_s"]) and positive(row["samples_per_s"]) and row["T"] >= 1
    for part in ("batch", "width"):
        assert len(r["scaling"][part]) >= 2
        for row in r["scaling"][part]:
            assert positive(row["batch_s"]) and positive(row["samples_per_s"])


def test_memory_json(quick_run):
    r = load(quick_run, "memory")
    check_header(r)
    sw = r["sweep"]
    assert len(sw["rows"]) == 4 * len(sw["Ts"])
    for row in sw["rows"]:
        assert positive(row["peak_mb"])
    for mode, m in sw["modes"].items():
        for key in ("min_mb", "max_mb", "growth"):
            assert positive(m[key])
        for key in ("slope_mb_per_step", "intercept_mb", "r2", "spread"):
            assert finite(m[key])
        if mode.endswith("EP"):
            assert isinstance(m["flat"], bool)
        else:
            assert isinstance(m["linear"], bool) and positive(m["tape_model_mb_per_step"])
    assert "table2" not in r                  # --quick skips Table II's protocol


def test_summary(quick_run):
    text = (quick_run / "summary.md").read_text()
    assert "--quick run" in text
    for section in ("## Targets", "## Ops", "## EP training batch", "## Share of the EP batch",
                    "## BPTT", "## Scaling", "## Peak memory"):
        assert section in text
    verdicts = bench_run.targets(*(load(quick_run, n) for n in ("ops", "network", "memory")))
    assert len(verdicts) == 10 and all(isinstance(t["met"], bool) for t in verdicts)
    # the summary can be rewritten from the JSON alone
    assert bench_run.main(["--summary-only", "--out-dir", str(quick_run)]) == \
        (quick_run / "summary.md").read_text()


def test_targets_without_results():
    assert all(t["met"] is None for t in bench_run.targets(None, None, None))


def test_memory_helpers():
    fit = bench_memory.line_fit([1, 2, 3, 4], [3.0, 5.0, 7.0, 9.0])
    assert fit["slope_mb_per_step"] == pytest.approx(2.0) and fit["intercept_mb"] == pytest.approx(1.0)
    assert fit["r2"] == pytest.approx(1.0)
    for T in (6, 25, 50, 150, 200):
        T_free, T_nudge = bench_memory.split_ep(T)
        assert T_free + 2 * T_nudge == T and T_nudge >= 1
    assert bench_memory.split_ep(150) == (100, 25)


# ----------------------------------------------------------------------------- the GEMM replay
# The replay of bench_network enumerates the matrix products of an EP batch from the architecture.
# Here every product the package really computes in ``ep_gradients`` is recorded (NumPy only): the
# weights are wrapped in an ndarray subclass that logs ``@`` (np.matmul is a ufunc) and spreads to
# everything computed from them, and the ``dot`` inside ``tensordot`` (the conv weight gradient)
# is wrapped. The two lists must agree product by product: shapes, layouts and counts.

def _layout(a):
    if a.ndim == 2 and not a.flags.c_contiguous and a.flags.f_contiguous:
        return "T"
    return "C" if a.flags.c_contiguous else "other"


def _key(a, b, call):
    return (tuple(a.shape), _layout(a), tuple(b.shape), _layout(b), call)


def _base(a):
    return a.view(np.ndarray) if isinstance(a, _Traced) else a


class _Traced(np.ndarray):
    log = []

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kw):
        inputs = tuple(_base(a) for a in inputs)
        if ufunc is np.matmul and method == "__call__":
            _Traced.log.append(_key(inputs[0], inputs[1], "matmul"))
        if out is not None:
            getattr(ufunc, method)(*inputs, out=tuple(_base(a) for a in out), **kw)
            return out[0] if len(out) == 1 else out
        res = getattr(ufunc, method)(*inputs, **kw)
        return res.view(_Traced) if isinstance(res, np.ndarray) else res

    def __array_function__(self, func, types, args, kwargs):
        args = tuple(_base(a) for a in args)
        out = kwargs.get("out")
        if out is not None:
            kwargs = dict(kwargs, out=_base(out))
        if func is np.dot:
            _Traced.log.append(_key(args[0], args[1], "dot"))
        res = func(*args, **kwargs)
        if out is not None:
            return out
        return res.view(_Traced) if type(res) is np.ndarray else res


def _replayed(groups, spiking, T_free, T_nudge):
    """The products of one symmetric EP gradient (no SGD step), as the replay counts them."""
    mult = {"once": 3, "step": T_free + 2 * T_nudge, "nudge": 2 * T_nudge, "update": 1}
    c = collections.Counter()
    for group, plist in groups.items():
        for p in plist:
            c[(tuple(p["a"]), p["a_layout"], tuple(p["b"]), p["b_layout"], p["call"])] += \
                p["count"] * mult[group]
    return c


@pytest.mark.parametrize("variant", ["quickstart", "wide conv2, max pool"])
@pytest.mark.parametrize("kind", ["CRNN", "SNN"])
def test_gemm_replay_matches_the_package(variant, kind):
    if backend.get_backend() != "numpy":
        pytest.skip("the products are traced on NumPy arrays")
    arch = dict(bench_network.QUICKSTART)
    if variant != "quickstart":   # 20x20 conv-2 maps: the one-product-per-sample route everywhere
        arch.update(input_shape=(1, 40, 40), padding=1, pool="max")
    spiking = kind == "SNN"
    net = bench_network.make_net(arch, spiking, "mse" if spiking else "ce")
    N, T_free, T_nudge = 3, 3, 2
    x, y = bench_network.make_batch(net, N)
    expected = _replayed(bench_network.gemm_products(net, N), spiking, T_free, T_nudge)
    net.params = {k: v.view(_Traced) for k, v in net.params.items()}
    tensordot = np.tensordot
    module_globals = getattr(tensordot, "__wrapped__", tensordot).__globals__
    if module_globals.get("dot") is not np.dot:     # NumPy internals: how tensordot reaches BLAS
        pytest.skip("this NumPy's tensordot does not call a module-level dot")
    dot = module_globals["dot"]

    def logged_dot(a, b, *args):
        _Traced.log.append(_key(a, b, "dot"))
        return dot(a, b, *args)

    _Traced.log = []
    module_globals["dot"] = logged_dot
    try:
        ep_gradients(net, x, y, 0.2, T_free, T_nudge)
    finally:
        module_globals["dot"] = dot
    assert collections.Counter(_Traced.log) == expected
