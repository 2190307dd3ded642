"""The child processes of the laptop-scale Table II campaign, and the small files kept beside a run.

:class:`Campaign` starts the runs still to do, ``jobs`` at a time, each as its own process
(``minimal-ep --threads 1 train ... --resume``) in a session of its own, and waits for them with
``os.wait4``, which gives each child's CPU time. SIGINT or SIGTERM to the campaign forwards SIGINT to
the children: each stops at once, keeps its last committed epoch and unlocks its folder, and the
campaign starts nothing more. Beside each run it writes (atomically):

    memory.json      peak memory of one training step of the run's config (at the campaign's start)
    campaign.jsonl   one line per child: start, wall and CPU seconds, exit code, epochs before/after
    train.log        the child's output, appended
    stopped.json     exit code and last output line of a child that stopped by itself (removed
                     when a later child finishes the run)
"""
import datetime
import json
import os
import pathlib
import shlex
import signal
import subprocess
import time

from minimal_ep.runs import atomic_write, process_exists

import table2_measure
from table2_results import read_json_lines


def shell_text(cmd):
    """A child's command as one would type it: ``minimal-ep --threads 1 train ...``."""
    return " ".join(["minimal-ep"] + [shlex.quote(str(a)) for a in cmd[3:]])


def epochs_done(out):
    """Completed epochs of the run in ``out``, from its ``metrics.jsonl`` (0 if none)."""
    return len(read_json_lines(pathlib.Path(out) / "metrics.jsonl"))


def append_json_line(path, row):
    """Add one JSON line to ``path``, rewriting the file atomically."""
    text = "".join(json.dumps(r) + "\n" for r in read_json_lines(path) + [row])
    atomic_write(path, lambda f: f.write(text.encode()))


def lock_holder(out):
    """The process id holding ``out/run.lock`` if it is alive, else None."""
    try:
        pid = int((pathlib.Path(out) / "run.lock").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_exists(pid) else None


def write_memory(run, cfg, cache):
    """Write ``memory.json`` into the run's folder unless it is there; ``cache``: cell -> record."""
    run["out"].mkdir(parents=True, exist_ok=True)
    if (run["out"] / "memory.json").exists():
        return
    if run["cell"] not in cache:
        cache[run["cell"]] = table2_measure.memory_record(cfg)
    text = json.dumps(cache[run["cell"]], indent=1).encode()
    atomic_write(run["out"] / "memory.json", lambda f: f.write(text))


class Campaign:
    """The runs still to do, started up to ``jobs`` at a time; SIGINT/SIGTERM stop it cleanly.

    Parameters
    ----------
    todo : list of dict
        Runs (``table2_laptop.plan``) with ``cmd``, the child's command line.
    cfgs : dict
        Run name -> resolved configuration (for the memory measurement).
    jobs : int
    log : callable
        ``log(text)``: one line of the campaign's log.
    """

    def __init__(self, todo, cfgs, jobs, log, repo):
        self.todo, self.cfgs, self.jobs, self.log, self.repo = list(todo), cfgs, jobs, log, repo
        self.live, self.stopping, self.memory, self.failed = {}, False, {}, []

    def stop(self, signum, frame):
        self.stopping = True
        self.log(f"signal {signum}: interrupting {len(self.live)} run(s); they keep their last epoch")
        for pid in self.live:
            os.kill(pid, signal.SIGINT)

    def start(self, run):
        """Start the run's child process."""
        before = epochs_done(run["out"])
        self.log(f"start {run['name']} ({before} of {self.cfgs[run['name']]['train']['epochs']} epochs done): "
                 + shell_text(run["cmd"]))
        with open(run["out"] / "train.log", "ab") as out:
            child = subprocess.Popen(run["cmd"], cwd=self.repo, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.live[child.pid] = (run, time.time(), before)

    def finish(self, pid, wait_status, usage):
        """Record a child that ended: campaign.jsonl, and stopped.json if it stopped by itself."""
        run, started, before = self.live.pop(pid)
        code, after = os.waitstatus_to_exitcode(wait_status), epochs_done(run["out"])
        row = {"started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
               "wall_seconds": round(time.time() - started, 2),
               "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "exit_code": code,
               "epochs_before": before, "epochs_after": after, "command": shell_text(run["cmd"])}
        append_json_line(run["out"] / "campaign.jsonl", row)
        self.log(f"end {run['name']}: exit {code}, epochs {before} -> {after}, "
                 f"{row['wall_seconds']:.0f} s wall, {row['cpu_seconds']:.0f} s CPU")
        if code != 0 and not self.stopping:
            lines = (run["out"] / "train.log").read_text(errors="replace").strip().splitlines()
            stopped = json.dumps({"exit_code": code, "epochs": after, "message": lines[-1] if lines else ""})
            atomic_write(run["out"] / "stopped.json", lambda f: f.write(stopped.encode()))
            self.failed.append(run["name"])
        elif code == 0:
            (run["out"] / "stopped.json").unlink(missing_ok=True)

    def run(self):
        """Run everything; 0 if every run finished, 1 if some stopped by themselves, 130 if stopped.

        The memory of every run still to do is measured first (a second or so per cell), so that the
        report has its memory column from the start."""
        for run in self.todo:
            write_memory(run, self.cfgs[run["name"]], self.memory)
        while (self.todo and not self.stopping) or self.live:
            while self.todo and not self.stopping and len(self.live) < self.jobs:
                self.start(self.todo.pop(0))
            if self.live:
                self.finish(*os.wait4(-1, 0))
        return 130 if self.stopping else (1 if self.failed else 0)
