"""Run every benchmark, each in its own process with a fixed number of BLAS threads, then write summary.md.

Run from the repository root (``make bench`` calls this)::

    python benchmarks/run.py                  # network (with the A/B), ops, memory; then summary.md
    python benchmarks/run.py --quick          # smoke run into benchmarks/results/quick/ (seconds)
    python benchmarks/run.py --threads 1      # one BLAS thread (the targets are set for 2)
    python benchmarks/run.py --baseline HEAD~3 --only network
    python benchmarks/run.py --summary-only   # only rewrite summary.md from the JSON files there

The BLAS libraries read their thread count when NumPy is imported, so every benchmark runs as a
child process started with ``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS = --threads``
(default 2, the issue's setting). ``summary.md`` beside the JSON files holds the tables and the
issue's targets, each with its verdict, all read from the JSON.
"""
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from benchlib import ab, common, summary  # noqa: E402
from benchlib.common import Parser, UsageError, positive_int  # noqa: E402

BENCHMARKS = ("network", "ops", "memory")


def child_command(name, args, out_dir):
    """The command line of benchmark ``name`` for this run."""
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--out", str(pathlib.Path(out_dir) / f"{name}.json")]
    if args.quick:
        cmd.append("--quick")
    if name == "network":
        cmd += ["--baseline", args.baseline, "--threads", str(args.threads)]
        if args.ab_repeats:
            cmd += ["--ab-repeats", str(args.ab_repeats)]
    return cmd


def run_benchmark(name, args, out_dir):
    """Run one benchmark with the run's BLAS threads; UsageError / RuntimeError if it fails."""
    env = dict(os.environ, **common.thread_env(args.threads))
    print(f"== {name} ({args.threads} BLAS thread(s)) ==", flush=True)
    done = subprocess.run(child_command(name, args, out_dir), env=env)
    if done.returncode == 2:
        raise UsageError(f"bench_{name}.py rejected its arguments (see above)")
    if done.returncode != 0:
        raise RuntimeError(f"bench_{name}.py failed with status {done.returncode}")


def build_parser():
    p = Parser(prog="run.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark's smoke run (seconds)")
    p.add_argument("--out-dir", help="where the JSON files and summary.md go (default benchmarks/results; "
                                     "--quick: benchmarks/results/quick)")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help="comma-separated subset of " + ",".join(BENCHMARKS))
    p.add_argument("--threads", type=positive_int, default=2, help="BLAS threads of every benchmark (default 2)")
    p.add_argument("--baseline", default=ab.DEFAULT_BASELINE,
                   help=f"commit the network benchmark A/Bs against (default {ab.DEFAULT_BASELINE}; 'none' skips)")
    p.add_argument("--ab-repeats", type=positive_int, help="A/B pairs per net (default 5, --quick 2)")
    p.add_argument("--summary-only", action="store_true", help="run nothing; rewrite summary.md from the JSON")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out_dir = pathlib.Path(args.out_dir or (common.QUICK_RESULTS if args.quick else common.RESULTS))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        raise UsageError(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(BENCHMARKS)}")
    if not args.summary_only:
        if "network" in names and args.baseline.lower() != "none":
            ab.resolve_commit(args.baseline)           # bad input: before anything runs
        start = common.usage()
        for name in names:
            run_benchmark(name, args, out_dir)
        common.warn_if_busy(common.load_record(start, args.threads), sys.stdout)
    try:
        text = summary.markdown(out_dir)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    common.write_text(text, out_dir / "summary.md")
    print("== targets ==")
    for t in summary.targets(summary.load(out_dir, "network")):
        print(f"  {summary.verdict(t['met']).strip('*'):<12} {t['title']}: {t['target']}: {t['measured']}")
    print(f"wrote {out_dir / 'summary.md'}")
    return text


if __name__ == "__main__":
    try:
        common.run_cli(main, None, "run.py")
    except RuntimeError as err:
        print(f"run.py: {err}", file=sys.stderr)
        sys.exit(1)
