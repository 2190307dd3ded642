"""Measure the tutorials' run times, as the syllabus quotes them.

    python tutorials/run_times.py [--repeat N] [--write]

Runs every ``tutorials/NN_*.py`` exactly as a student would, ``python tutorials/NN_*.py`` in
normal mode (MINIMAL_EP_QUICK unset, MINIMAL_EP_SEED unset), with one BLAS thread and a
non-interactive matplotlib backend, and reports for each the CPU time of the process (user +
system, Python's start-up and imports included): with one thread, the wall time on a free core,
and unlike the wall time it does not grow when other jobs share the machine (the wall time is
recorded too). The best of ``--repeat`` runs (default 3) counts. ``--write`` records them in
``docs/course/run_times.json``, which the syllabus's table must match (``tests/test_tutorials.py``).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
RECORD = HERE.parent / "docs" / "course" / "run_times.json"


def measure(script, repeat):
    env = dict(os.environ, MPLBACKEND="Agg", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    for var in ("MINIMAL_EP_QUICK", "MINIMAL_EP_SEED"):
        env.pop(var, None)
    cpu, wall = [], []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, str(script)], env=env, cwd=HERE.parent, check=True,
                       stdout=subprocess.DEVNULL)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(cpu), min(wall)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per tutorial (the best counts)")
    parser.add_argument("--write", action="store_true", help=f"record them in {RECORD.name}")
    args = parser.parse_args()
    seconds, wall_seconds = {}, {}
    for script in sorted(HERE.glob("[0-9][0-9]_*.py")):
        cpu, wall = measure(script, args.repeat)
        seconds[script.stem], wall_seconds[script.stem] = round(cpu, 1), round(wall, 1)
        print(f"{script.stem:28s} CPU {cpu:6.1f} s   wall {wall:6.1f} s", flush=True)
    if args.write:
        record = {"command": "python tutorials/run_times.py", "repeat": args.repeat,
                  "date": datetime.date.today().isoformat(), "cpus": os.cpu_count(),
                  "machine": platform.machine(), "python": platform.python_version(),
                  "seconds": seconds, "wall_seconds": wall_seconds}
        RECORD.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {RECORD}")


if __name__ == "__main__":
    main()
