"""Run every benchmark, each in its own process with a fixed number of BLAS threads, then write summary.md.

Run from the repository root (``make bench`` calls this)::

    python benchmarks/run.py                  # network (with the A/B), ops, memory; then summary.md
    python benchmarks/run.py --quick          # smoke run into results/benchmarks/quick/ (seconds)
    python benchmarks/run.py --threads 1      # one BLAS thread (default 2,1: both, the A/B at each)
    python benchmarks/run.py --baseline HEAD~3 --only network
    python benchmarks/run.py --summary-only   # only rewrite summary.md from the JSON files there

The BLAS libraries read their thread count when NumPy is imported, so every benchmark runs as a
child process started with ``OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = MKL_NUM_THREADS`` = the first
count of ``--threads`` (default ``2,1``); the network benchmark's A/B runs its children at every
count given. ``summary.md`` beside the JSON files holds the tables and the issue's targets (one verdict
per thread count), all read from the JSON.
"""
import os
import pathlib
import subprocess
import sys

from benchmarks.benchlib import ab, common, nets, summary
from benchmarks.benchlib.common import Parser, UsageError, positive_int

HERE = pathlib.Path(__file__).resolve().parent

BENCHMARKS = ("network", "ops", "memory")


def child_command(name, args, out_dir):
    """The command line of benchmark ``name`` for this run."""
    cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--out", str(pathlib.Path(out_dir) / f"{name}.json")]
    if args.quick:
        cmd.append("--quick")
    if name == "network":
        cmd += ["--baseline", args.baseline, "--threads", ",".join(map(str, args.threads))]
        if args.ab_repeats:
            cmd += ["--ab-repeats", str(args.ab_repeats)]
    return cmd


def run_benchmark(name, args, out_dir):
    """Run one benchmark with the run's BLAS threads; UsageError / RuntimeError if it fails."""
    env = dict(os.environ, **common.thread_env(args.threads[0]))
    print(f"== {name} ({args.threads[0]} BLAS thread(s)) ==", flush=True)
    done = subprocess.run(child_command(name, args, out_dir), env=env)
    if done.returncode == 2:
        raise UsageError(f"bench_{name}.py rejected its arguments (see above)")
    if done.returncode != 0:
        raise RuntimeError(f"bench_{name}.py failed with status {done.returncode}")


def build_parser():
    p = Parser(prog="run.py", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="every benchmark's smoke run (seconds)")
    p.add_argument("--out-dir", help="where the JSON files and summary.md go (default results/benchmarks; "
                                     "--quick: results/benchmarks/quick)")
    p.add_argument("--only", default=",".join(BENCHMARKS),
                   help="comma-separated subset of " + ",".join(BENCHMARKS))
    p.add_argument("--threads", type=common.thread_counts, default=[2, 1],
                   help="BLAS threads, comma-separated: the first for every benchmark, all of them for the "
                        "A/B's children (default 2,1)")
    p.add_argument("--baseline", default=",".join(nets.DEFAULT_BASELINES),
                   help="commits the network benchmark A/Bs against, comma-separated (default "
                        f"{','.join(nets.DEFAULT_BASELINES)}; 'none' skips)")
    p.add_argument("--ab-repeats", type=positive_int, help="A/B pairs per net (default 5, --quick 2)")
    p.add_argument("--summary-only", action="store_true", help="run nothing; rewrite summary.md from the JSON")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    out_dir = pathlib.Path(args.out_dir or common.results_dir(args.quick))
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown or not names:
        raise UsageError(f"--only: unknown benchmark(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {','.join(BENCHMARKS)}")
    if not args.summary_only:
        if "network" in names:
            for ref in nets.parse_baselines(args.baseline):
                ab.resolve_commit(ref)                 # bad input: before anything runs
        start = common.usage()
        for name in names:
            run_benchmark(name, args, out_dir)
        common.warn_if_busy(common.load_record(start, max(args.threads)), sys.stdout)
    try:
        text = summary.markdown(out_dir)
    except FileNotFoundError as err:
        raise UsageError(str(err)) from None
    common.write_text(text, out_dir / "summary.md")
    print("== targets ==")
    for t in summary.targets(summary.load(out_dir, "network")):
        print(f"  {summary.verdict(t['met']).strip('*'):<12} {t['title']} ({t['threads']}): {t['target']}: "
              f"{t['measured']}")
    print(f"wrote {out_dir / 'summary.md'}")
    return text


if __name__ == "__main__":
    try:
        common.run_cli(main, None, "run.py")
    except RuntimeError as err:
        print(f"run.py: {err}", file=sys.stderr)
        sys.exit(1)
