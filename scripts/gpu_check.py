"""GPU check: the test suite on CuPy, the op and network benchmarks on the GPU, a short 2C2FC SNN EP training.

    make gpu-check                                  # or: python scripts/gpu_check.py
    python scripts/gpu_check.py --data-dir ~/data   # Fashion-MNIST's files from there (as `train --data-dir`)
    python scripts/gpu_check.py --batches 100 --budget 300

On a machine with a CUDA GPU and CuPy (``pip install -e '.[gpu]'``), within ``--budget`` seconds
(default 600): (1) ``pytest`` on the whole suite with ``MINIMAL_EP_BACKEND=cupy``; (2)
``benchmarks/bench_ops.py`` and ``benchmarks/bench_network.py`` (no A/B, no profile) on the GPU,
their JSON in ``--out-dir``; (3) ``--batches`` batches (default 300, fewer if the budget runs out)
of symmetric EP training of the 2C2FC SNN of ``configs/fmnist_2c2fc_snn_ep.toml`` on Fashion-MNIST,
found as ``minimal-ep train`` finds it, then the test error on ``--test-images`` test images.
Then a one-page report: tests passed, ms per step, samples/s, test error, the peak GPU memory of
the CuPy memory pool. Exit status 0 when every part ran and every test passed, 1 otherwise; 2 with
one line when there is no usable GPU or an argument is wrong.
"""
import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

from minimal_ep.run.cli import Parser, int_at_least
from minimal_ep.run.runs import atomic_write

REPO = pathlib.Path(__file__).resolve().parents[1]
positive_int = int_at_least(1)

CONFIG = REPO / "configs" / "fmnist_2c2fc_snn_ep.toml"
SHARES = {"tests": 0.45, "ops": 0.10, "network": 0.15}          # of the budget; training: the rest


def _seconds(text):
    """An argparse type: a budget of at least 60 seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 60:
        raise argparse.ArgumentTypeError(f"must be at least 60 seconds, got {text}")
    return value


def build_parser():
    p = Parser(prog="gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="read Fashion-MNIST from DIR (or DIR/fashion-mnist), as train --data-dir")
    p.add_argument("--batches", type=positive_int, default=300, help="training batches (default 300)")
    p.add_argument("--test-images", type=positive_int, default=2000, help="test images (default 2000)")
    p.add_argument("--budget", type=_seconds, default=600.0, help="seconds in all (default 600)")
    p.add_argument("--out-dir", help="the benchmark JSON and gpu_check.json (default: a temporary dir)")
    return p


def gpu_problem():
    """None when CuPy sees a CUDA device, else why not (one line)."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install -e '.[gpu]' on a CUDA machine): nothing to check"
    except Exception as err:                       # CUDA libraries that fail to load
        return f"CuPy cannot be imported ({type(err).__name__}: {err}): nothing to check"
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0 and cupy.cuda.is_available():
            return None
    except Exception:
        pass
    return "no CUDA GPU: CuPy is installed but sees no usable device; nothing to check"


def commands(out_dir):
    """{part: (argv, env)} of the parts run as child processes, all with MINIMAL_EP_BACKEND=cupy."""
    env = dict(os.environ, MINIMAL_EP_BACKEND="cupy")
    bench = REPO / "benchmarks"
    out_dir = pathlib.Path(out_dir)
    return {
        "tests": ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(REPO / "tests")], env),
        "ops": ([sys.executable, str(bench / "bench_ops.py"), "--out", str(out_dir / "ops.json"),
                 "--repeats", "5"], env),
        "network": ([sys.executable, str(bench / "bench_network.py"), "--out",
                     str(out_dir / "network.json"), "--baseline", "none", "--no-profile", "--repeats", "2"], env),
    }


def pytest_counts(text):
    """{"passed": n, "failed": n, ...} from pytest's last summary line."""
    counts = {}
    for n, what in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)", text):
        counts["errors" if what.startswith("error") else what] = int(n)
    return counts


def run_part(name, argv, env, timeout):
    """Run one child; {"status": ok | failed | timeout, "seconds", "output" (its last lines)}."""
    t0 = time.perf_counter()
    try:
        done = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        status, text = ("ok" if done.returncode == 0 else "failed"), done.stdout + done.stderr
    except subprocess.TimeoutExpired as err:
        status = "timeout"
        text = err.stdout or ""
        text = text.decode(errors="replace") if isinstance(text, bytes) else text
    out = {"status": status, "seconds": time.perf_counter() - t0, "timeout_s": timeout,
           "output": "\n".join(text.strip().splitlines()[-5:])}
    if name == "tests":
        out["counts"] = pytest_counts(text.strip().splitlines()[-1] if text.strip() else "")
    return out


def train_briefly(args, deadline, config=CONFIG, overrides=(), backend_name="cupy"):
    """EP training as ``config`` says, for ``args.batches`` batches or until the deadline; the numbers.

    ``overrides`` (``--set`` strings) and ``backend_name`` let the tests run it small on NumPy.
    """
    from minimal_ep import backend, datasets
    from minimal_ep.run import config as config_mod
    from minimal_ep.optim import SGD
    from minimal_ep.run.train import (divergence_limits, evaluate, load_data, make_rngs, network_from_config,
                                  train_epoch)
    backend.set_backend(backend_name)
    sets = {"data.data_dir": args.data_dir, "data.test_size": args.test_images}
    bs = config_mod.resolve(config, overrides, **sets).data.batch_size
    cfg = config_mod.resolve(config, overrides, **sets, **{"data.train_size": bs * args.batches})
    t = cfg.train
    try:
        data = load_data(cfg)
    except datasets.DatasetNotFoundError as err:
        return {"status": "not run", "detail": str(err).splitlines()[0]}
    pool = backend.get_xp().get_default_memory_pool() if backend_name == "cupy" else None
    if pool is not None:
        pool.free_all_blocks()
    net = network_from_config(cfg)
    opt, (rng, sign_rng) = SGD(net.params, t.lr, t.momentum), make_rngs(t.seed)
    limits = divergence_limits(net.params, cfg.model.init_scale)
    done, seconds, errors, chunk = 0, 0.0, 0.0, 5            # chunk: batches between deadline checks

    def time_left():        # for another chunk and the evaluation (about a fifth of the training so far)
        return done == 0 or time.perf_counter() + (chunk + 0.2 * done) * seconds / done < deadline

    while done < args.batches and time_left():
        n, lo = min(chunk, args.batches - done), done * bs
        err, _, _, secs = train_epoch(net, opt, cfg, data.x_train[lo:lo + n * bs], data.y_train[lo:lo + n * bs],
                                      rng, 0, progress=False, sign_rng=sign_rng, limits=limits)
        done, seconds, errors = done + n, seconds + secs, errors + err * n * bs
    t0 = time.perf_counter()
    test_err = evaluate(net, data.x_test, data.y_test, t.T_eval or t.T_free, 500)
    return {"status": "ok", "config": str(config), "batches": done, "batch_size": bs, "T_free": t.T_free,
            "T_nudge": t.T_nudge, "seconds": seconds, "samples_per_s": done * bs / seconds,
            "ms_per_step": 1e3 * seconds / (done * (t.T_free + 2 * t.T_nudge)),
            "train_error": errors / (done * bs), "test_error": test_err, "test_images": len(data.y_test),
            "eval_seconds": time.perf_counter() - t0, "data_source": str(data.source),
            "peak_mb": None if pool is None else pool.total_bytes() / 2 ** 20,      # the pool keeps every block
            "in_use_mb": None if pool is None else pool.used_bytes() / 2 ** 20}


def gpu_info():
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    return {"name": props["name"].decode(), "memory_gb": props["totalGlobalMem"] / 2 ** 30,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(), "cupy": cupy.__version__}


# ----------------------------------------------------------------------------- the report
def _part_line(name, part):
    head = f"{name:<9} {part['status']:<8} {part.get('seconds', 0):6.0f} s"
    if part["status"] not in ("ok", "not run") and part.get("output"):
        head += "   " + part["output"].splitlines()[-1][:90]
    return head


def report(result):
    """The one-page text report of a check's ``result`` dict (see :func:`main`)."""
    g, parts = result["gpu"], result["parts"]
    lines = [f"minimal_ep GPU check, {result['created']}",
             f"GPU: {g['name']} ({g['memory_gb']:.1f} GB), CUDA runtime {g['cuda_runtime']}, CuPy {g['cupy']}",
             f"total {result['total_s']:.0f} s of a {result['budget_s']:.0f} s budget", "",
             "part      status   time"]
    lines += [_part_line(n, parts[n]) for n in ("tests", "ops", "network", "training") if n in parts]
    counts = parts.get("tests", {}).get("counts")
    if counts is not None:
        lines += ["", "tests (MINIMAL_EP_BACKEND=cupy): "
                  + (", ".join(f"{v} {k}" for k, v in counts.items()) or "no pytest summary line")]
    ops = result.get("ops_rows") or []
    if ops:
        lines += ["", "ops (fast path, median ms, GFLOP/s):"]
        lines += [f"  {r['layer']:<16} {r['op']:<18} {1e3 * r['median_s']:8.3f} ms {r.get('gflops', 0):9.1f}"
                  for r in ops]
    nets = result.get("network_rows") or []
    if nets:
        lines += ["", f"network (EP batch, * extrapolated): {'ms/step':>8} {'ms/batch':>10} {'samples/s':>10}"]
        lines += [f"  {r['title']:<33} {1e3 * r['step_s']:8.2f} {1e3 * r['batch_s']:10.1f}"
                  f"{'*' if r['extrapolated'] else ' '}{r['samples_per_s']:10.1f}" for r in nets]
    tr = parts.get("training", {})
    if tr.get("status") == "ok":
        memory = ("n/a (not on CuPy)" if tr["peak_mb"] is None else
                  f"{tr['peak_mb']:.0f} MB, in use at the end {tr['in_use_mb']:.0f} MB")
        lines += ["", f"training: {pathlib.Path(tr['config']).name} ({tr['data_source']}), {tr['batches']} "
                  f"batches of {tr['batch_size']}, T {tr['T_free']} + 2x{tr['T_nudge']}",
                  f"  {tr['seconds']:.1f} s, {tr['samples_per_s']:.1f} samples/s, {tr['ms_per_step']:.2f} ms per "
                  f"step, train error {100 * tr['train_error']:.2f}%",
                  f"  test error {100 * tr['test_error']:.2f}% on {tr['test_images']} test images "
                  f"({tr['eval_seconds']:.1f} s)",
                  f"  peak GPU memory (CuPy pool total) {memory}"]
    elif tr:
        lines += ["", f"training: {tr['status']}: {tr.get('detail', '')}"]
    lines += ["", "verdict: " + ("PASS" if result["passed"] else "FAIL")]
    return "\n".join(lines)


def passed(parts):
    """Every part ran and no test failed."""
    tests = parts.get("tests", {}).get("counts", {})
    return (all(p["status"] == "ok" for p in parts.values())
            and tests.get("passed", 0) > 0 and not tests.get("failed") and not tests.get("errors"))


def _load_rows(path, key):
    try:
        with open(path) as f:
            return json.load(f)[key]
    except (OSError, ValueError, KeyError):
        return []


def main(argv=None):
    args = build_parser().parse_args(argv)
    problem = gpu_problem()
    if problem is not None:
        print(f"gpu_check.py: {problem}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    deadline = start + args.budget
    out_dir = pathlib.Path(args.out_dir or tempfile.mkdtemp(prefix="minimal_ep_gpu_check_"))
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = {}
    for name, (argv_, env) in commands(out_dir).items():
        timeout = max(10.0, min(SHARES[name] * args.budget, deadline - time.perf_counter() - 60))
        print(f"gpu_check: {name} (up to {timeout:.0f} s) ...", flush=True)
        parts[name] = run_part(name, argv_, env, timeout)
    print("gpu_check: training ...", flush=True)
    t0 = time.perf_counter()
    try:
        parts["training"] = train_briefly(args, deadline)
    except Exception as err:                       # report it: the rest of the page is still useful
        parts["training"] = {"status": "failed", "detail": f"{type(err).__name__}: {err}"}
    parts["training"].setdefault("seconds", time.perf_counter() - t0)
    ops = [r for r in _load_rows(out_dir / "ops.json", "ops")
           if r.get("path") == "fast" and r["op"] in ("conv2d", "conv_transpose2d", "conv2d_weight")]
    result = {"created": time.strftime("%Y-%m-%d %H:%M:%S"), "gpu": gpu_info(), "budget_s": args.budget,
              "total_s": time.perf_counter() - start, "parts": parts, "ops_rows": ops,
              "network_rows": _load_rows(out_dir / "network.json", "nets"), "out_dir": str(out_dir)}
    result["passed"] = passed(parts)
    text = json.dumps(result, indent=1)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / "gpu_check.json", lambda f: f.write(text.encode()))
    print(report(result))
    print(f"(JSON in {out_dir})")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
