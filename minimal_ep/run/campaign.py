"""Campaigns: many training runs in the background, resumable, a few at a time, one BLAS thread each.

A *run* is one config file with one seed (and ``--set`` overrides) in its own folder; a *campaign* is
a list of runs. Every run is trained by the ordinary command, in a child process of its own,

    python -m minimal_ep --threads 1 train --config CONFIG --resume --out OUT --seed S --no-progress
                         [--data-dir DIR] [--set KEY=VALUE ...] [--until EPOCH]

whose output is appended to ``OUT/train.log``. The library locks a run folder and commits it once per
epoch, so a campaign can be killed at any moment and started again: finished runs are skipped, an
interrupted one resumes after its last completed epoch. Two orders:

* ``step=None``: each child trains its run to the last epoch (the Table II campaign);
* ``step=k``: each child trains k more epochs (``--until``), and the run with the fewest completed
  epochs goes next, so stopping at any moment leaves every run within k epochs of the others (the
  figure nets). ``--until`` stops a run early without changing its schedule.

Beside each run the campaign writes, atomically, ``campaign.jsonl`` (one line per child: start, wall
and CPU seconds from ``os.wait4``, exit code, epochs before and after, the command) and, for a run
that stopped by itself (divergence, an error), ``stopped.json``, which keeps it from being retried
unless asked. SIGINT or SIGTERM to the campaign forwards SIGINT to the children: each keeps its last
committed epoch and unlocks its folder, and nothing more is started. With ``--finish-by TIME`` a
child is started only if it is expected to end by then (its run's last child's wall seconds per
epoch, else those of a run of the same config; a run with neither is started): a campaign stopped
that way loses no partial epoch, which a session of fixed length needs. One campaign at a time per
folder (``FOLDER/run.lock``). Used by ``figures/make_checkpoints.py`` and ``table2/laptop.py``.
"""
import argparse
import datetime
import json
import os
import pathlib
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from .runs import RunFolderError, RunLock, atomic_write, process_exists

STATES = ("done", "running", "stopped", "partial", "not started")
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CHANCE = 0.85                  # a test error at or above it: a ten-class net at chance


@dataclass
class Run:
    """One run of a campaign: a config file, a seed, overrides and a folder.

    Attributes
    ----------
    name : str
    config : path
        The TOML file, relative to ``root`` (so commands and the configs they write stay portable).
    out : path
        The run's folder, relative to ``root``.
    seed : int
    epochs : int
        The epoch the run is trained to (its config's ``train.epochs``, or fewer).
    sets : list of str
        ``section.key=value`` overrides.
    data_dir : str or None
        ``--data-dir`` for the child (the official files from there).
    root : path
        Where the children run (the repository); ``config``, ``out`` and ``data_dir`` are read from
        there, whatever the campaign's own working directory.
    """
    name: str
    config: pathlib.Path
    out: pathlib.Path
    seed: int
    epochs: int
    sets: list = field(default_factory=list)
    data_dir: str = None
    root: pathlib.Path = pathlib.Path(".")

    @property
    def folder(self):
        """The run's folder as this process finds it."""
        return pathlib.Path(self.root) / self.out

    def command(self, until=None):
        """The child's command line; ``until``: the epoch it stops after (``--until``)."""
        cmd = [sys.executable, "-m", "minimal_ep", "--threads", "1", "train", "--config", str(self.config),
               "--resume", "--out", str(self.out), "--seed", str(self.seed), "--no-progress"]
        if self.data_dir:
            cmd += ["--data-dir", str(self.data_dir)]
        for text in self.sets:
            cmd += ["--set", text]
        if until is not None:
            cmd += ["--until", str(until)]
        return cmd

    def done(self):
        """Completed epochs, from ``metrics.jsonl`` (0 if none)."""
        return len(read_json_lines(self.folder / "metrics.jsonl"))

    def seconds_per_epoch(self):
        """Wall seconds per epoch of this run's last child that trained, from campaign.jsonl, or None."""
        for row in reversed(read_json_lines(self.folder / "campaign.jsonl")):
            trained = row.get("epochs_after", 0) - row.get("epochs_before", 0)
            if trained > 0 and row.get("wall_seconds"):
                return row["wall_seconds"] / trained
        return None

    def status(self):
        """One of :data:`STATES`."""
        if self.done() >= self.epochs:
            return "done"
        if lock_holder(self.folder) is not None:
            return "running"
        if (self.folder / "stopped.json").exists():
            return "stopped"
        return "partial" if self.done() else "not started"


def read_json_lines(path):
    """The JSON rows of ``path`` (none if it is missing; a damaged line ends the list)."""
    rows = []
    try:
        for line in pathlib.Path(path).read_text().splitlines():
            rows.append(json.loads(line))
    except (OSError, ValueError):
        pass
    return rows


def append_json_line(path, row):
    """Add one JSON line to ``path``, rewriting the file atomically."""
    text = "".join(json.dumps(r) + "\n" for r in read_json_lines(path) + [row])
    atomic_write(path, lambda f: f.write(text.encode()))


def at_chance(run, epochs):
    """Whether ``run`` has trained ``epochs`` epochs and its test error was >= CHANCE after each."""
    rows = read_json_lines(run.folder / "metrics.jsonl")[:epochs]
    return len(rows) == epochs and all(row.get("test_error", 0.0) >= CHANCE for row in rows)


def stop_at_chance(runs, epochs, may_stop):
    """``--chance-stop``: end at ``epochs`` the runs ``may_stop(run)`` allows that were at chance until then.

    A run so ended has ``run.epochs = epochs`` (its schedule is unchanged: the config's ``train.epochs``).
    """
    for run in runs:
        if may_stop(run) and run.epochs > epochs and at_chance(run, epochs):
            run.epochs = epochs


def lock_holder(folder):
    """The process id holding ``folder/run.lock`` if it is alive, else None."""
    try:
        pid = int((pathlib.Path(folder) / "run.lock").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_exists(pid) else None


def repo_relative(path, root):
    """``path`` relative to ``root`` when it lies inside it, else absolute (commands stay portable)."""
    path, root = pathlib.Path(path).resolve(), pathlib.Path(root).resolve()
    return path.relative_to(root) if path.is_relative_to(root) else path


def shell_text(cmd):
    """A child's command as one would type it: ``minimal-ep --threads 1 train ...``."""
    return " ".join(["minimal-ep"] + [shlex.quote(str(a)) for a in cmd[3:]])


class Campaign:
    """The runs still to do, started up to ``jobs`` at a time; SIGINT/SIGTERM stop it cleanly.

    Parameters
    ----------
    runs : list of Run
        The runs still to do, in order.
    jobs : int
    log : callable
        ``log(text)``: one line of the campaign's log.
    cwd : path
        Where the children run (the repository: the runs' paths are relative to it).
    step : int or None
        Epochs per child (round-robin), or None (each child runs to the end).
    after_child : callable, optional
        ``after_child(run)`` when a child ended well (the figure campaign keeps stage checkpoints).
    deadline : float or None
        A time (``time.time()``) by which every child should have ended: a child expected to end
        later is not started (see :meth:`expected_seconds`).
    """

    def __init__(self, runs, jobs, log, cwd, step=None, after_child=None, deadline=None):
        self.todo, self.jobs, self.log, self.cwd = list(runs), jobs, log, cwd
        self.step, self.after_child, self.deadline = step, after_child, deadline
        self.live, self.stopping, self.failed = {}, False, []
        self.late = set()                       # names of runs not started for the deadline

    def stop(self, signum, frame):
        self.stopping = True
        self.log(f"signal {signum}: interrupting {len(self.live)} run(s); they keep their last epoch")
        for pid in self.live:                   # no poll(): os.wait4 below is the one that reaps
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def expected_seconds(self, run):
        """Wall seconds a child of ``run`` started now should take, or None if nothing says.

        Its run's last child's seconds per epoch, else the longest of the runs of the same config
        still in the campaign, times the epochs the child would train.
        """
        per_epoch = run.seconds_per_epoch()
        if per_epoch is None:
            alike = [r.seconds_per_epoch() for r in self.todo + [v[0] for v in self.live.values()]
                     if r.config == run.config]
            per_epoch = max([t for t in alike if t is not None], default=None)
        if per_epoch is None:
            return None
        before = run.done()
        return per_epoch * (self.until(run, before) - before)

    def in_time(self, run):
        """False if a deadline is set and ``run``'s child is expected to end after it."""
        if self.deadline is None:
            return True
        expected = self.expected_seconds(run)
        if expected is None or time.time() + expected <= self.deadline:
            return True
        if run.name not in self.late:
            self.late.add(run.name)
            self.log(f"not starting {run.name}: expected {expected / 60:.0f} min, "
                     f"it would end after {datetime.datetime.fromtimestamp(self.deadline):%Y-%m-%d %H:%M}")
        return False

    def _next(self):
        """The run to start next (the fewest epochs first when round-robin), or None."""
        busy = {run.name for run, *_ in self.live.values()}
        ready = [r for r in self.todo if r.name not in busy]
        if self.step:
            ready.sort(key=Run.done)                # stable: the campaign's order among equals
        run = next((r for r in ready if self.in_time(r)), None)
        if run is not None:
            self.todo.remove(run)
        return run

    def until(self, run, before):
        """The epoch a child started now stops after: ``step`` more, or the run's last."""
        return run.epochs if self.step is None else min(before + self.step, run.epochs)

    def start(self, run):
        before = run.done()
        cmd = run.command(self.until(run, before))
        self.log(f"start {run.name} ({before} of {run.epochs} epochs done): {shell_text(cmd)}")
        run.folder.mkdir(parents=True, exist_ok=True)
        with open(run.folder / "train.log", "ab") as out:
            child = subprocess.Popen(cmd, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True,
                                     env=dict(os.environ, **ONE_THREAD))
        self.live[child.pid] = (run, time.time(), before, child)   # keep the Popen: never reaped elsewhere

    def finish(self, pid, wait_status, usage):
        """Record a child that ended: campaign.jsonl, and stopped.json if it stopped by itself."""
        run, started, before, child = self.live.pop(pid)
        child.returncode = os.waitstatus_to_exitcode(wait_status)      # reaped here, by os.wait4
        out = run.folder
        code, after = os.waitstatus_to_exitcode(wait_status), run.done()
        row = {"started": datetime.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
               "wall_seconds": round(time.time() - started, 2),
               "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2), "exit_code": code,
               "epochs_before": before, "epochs_after": after,
               "command": shell_text(run.command(self.until(run, before)))}
        append_json_line(out / "campaign.jsonl", row)
        self.log(f"end {run.name}: exit {code}, epochs {before} -> {after}, "
                 f"{row['wall_seconds']:.0f} s wall, {row['cpu_seconds']:.0f} s CPU")
        if code != 0 and not self.stopping:
            lines = (out / "train.log").read_text(errors="replace").strip().splitlines()
            stopped = json.dumps({"exit_code": code, "epochs": after, "message": lines[-1] if lines else ""})
            atomic_write(out / "stopped.json", lambda f: f.write(stopped.encode()))
            self.failed.append(run.name)
            return
        if code == 0:
            (out / "stopped.json").unlink(missing_ok=True)
            if self.after_child is not None:
                self.after_child(run)
            if after < run.epochs and after > before:
                self.todo.append(run)                    # round-robin: it goes back in the queue

    def run(self):
        """Run everything; 0 if every run finished (or what is left would end after the deadline), 1 if
        some stopped by themselves, 130 if stopped.

        If the campaign itself fails (an exception here or in ``after_child``), the children are
        interrupted and waited for before the exception goes on: none is left running unwatched.
        """
        try:
            while (self.todo and not self.stopping) or self.live:
                while not self.stopping and len(self.live) < self.jobs and (run := self._next()) is not None:
                    self.start(run)
                if not self.live:
                    break                           # what is left would end after the deadline
                self.finish(*os.wait4(-1, 0))
        except BaseException:
            for run, _, _, child in self.live.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGINT)
            for run, _, _, child in self.live.values():
                child.wait()
            raise
        return 130 if self.stopping else (1 if self.failed else 0)


# ----------------------------------------------------------------------------- the command line of a campaign
def add_arguments(p):
    """The options every campaign script shares."""
    p.add_argument("--jobs", type=_positive, default=1, help="runs at a time, each one BLAS thread")
    p.add_argument("--log", type=pathlib.Path, help="append the campaign's log to this file (default stdout)")
    p.add_argument("--status", action="store_true", help="print each run's state and exit")
    p.add_argument("--dry-run", action="store_true", help="print what would run, and exit")
    p.add_argument("--retry-stopped", action="store_true", help="also rerun runs that stopped by themselves")
    p.add_argument("--finish-by", type=finish_time, metavar="TIME",
                   help="start only children expected to end by TIME (HH:MM, the next one, or YYYY-MM-DDTHH:MM)")


def finish_time(text):
    """An argparse type: ``HH:MM`` (its next occurrence) or ``YYYY-MM-DDTHH:MM``, as ``time.time()``."""
    now = datetime.datetime.now()
    try:
        if "T" in text:
            when = datetime.datetime.fromisoformat(text)
        else:
            clock = datetime.datetime.strptime(text, "%H:%M")
            when = now.replace(hour=clock.hour, minute=clock.minute, second=0, microsecond=0)
            if when <= now:
                when += datetime.timedelta(days=1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM or YYYY-MM-DDTHH:MM") from None
    if when <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the past")
    return when.timestamp()


def _positive(text):
    from .cli import int_at_least
    return int_at_least(1)(text)


def status_lines(runs, folder):
    """What ``--status`` prints: the campaign's lock, then each run's state and epochs."""
    holder = lock_holder(folder)
    lines = [f"campaign in {folder}: " + (f"running (process {holder})" if holder else "not running")]
    lines += [f"{r.name:28s} {r.status():12s} {r.done()}/{r.epochs} epochs" for r in runs]
    return lines


def run_campaign(runs, args, folder, cwd, step=None, after_child=None, prog="campaign"):
    """``--status``, ``--dry-run`` or the campaign itself, under ``folder``'s lock; an exit status.

    Parameters
    ----------
    runs : list of Run
        Every run of the campaign, done or not.
    args : argparse.Namespace
        With the options of :func:`add_arguments`.
    folder : path
        The campaign's folder (its lock, its log).
    """
    if args.status:
        print("\n".join(status_lines(runs, folder)))
        return 0
    skip = {"done", "running"} | (set() if args.retry_stopped else {"stopped"})
    todo = [r for r in runs if r.status() not in skip]
    if args.dry_run:
        print(f"{prog}: {len(runs)} runs in {folder}, {len(todo)} to do:")
        for r in todo:
            print("  " + shell_text(r.command(r.epochs if step is None else min(r.done() + step, r.epochs))))
        return 0
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    logfile = open(args.log, "a", buffering=1) if args.log else sys.stdout

    def log(text):
        print(f"{datetime.datetime.now():%Y-%m-%d %H:%M:%S} {text}", file=logfile, flush=True)
    try:
        lock = RunLock(folder, log).acquire()          # one campaign per folder
    except RunFolderError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        campaign = Campaign(todo, args.jobs, log, cwd, step, after_child, args.finish_by)
        for sig in handlers:
            signal.signal(sig, campaign.stop)
        log(f"campaign in {folder}: {len(runs)} runs, {len(todo)} to do, {args.jobs} at a time")
        code = campaign.run()
        ended = "stopped" if code == 130 else ("paused for the deadline" if campaign.todo else "finished")
        log(f"campaign {ended}; "
            + (f"stopped by themselves: {', '.join(campaign.failed)}" if campaign.failed else "no run failed"))
        return code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        lock.release()
        if logfile is not sys.stdout:
            logfile.close()


def parser(description):
    """An argparse parser whose errors are one line and exit status 2, with :func:`add_arguments`."""
    from .cli import Parser
    p = Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    return p
