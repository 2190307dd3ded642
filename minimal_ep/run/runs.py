"""The run folder: one run per folder, locked while it runs, written so that nothing is half-done.

A run owns its output folder (``run.out``) and writes four files there, and its lock::

    config.toml          the resolved configuration, and its records: the data files read (path,
                         SHA-256s, epochs), the settings changed by a resume, threads and versions
    checkpoint.npz       weights, optimiser, RNG states, config, records and every epoch's metrics
    metrics.jsonl        one JSON line per epoch, rewritten from the checkpoint
    learning_curves.png  train and test error against epoch
    run.lock             while it runs

The rules, in the order a run meets them (:func:`open_run_folder`):

1. **Lock.** ``run.lock`` is created exclusively and holds the process id. A second run in the same
   folder stops, naming the process that holds it. A lock left by a process that no longer exists
   (a crash, ``kill -9``) is taken over, with a message.
2. **Leftovers.** Temporary files of an interrupted write (``.checkpoint.npz.tmp<pid>``...) are
   removed: with the lock held no other run can be writing them.
3. **No silent overwrite.** A folder holding any file a run writes (the four above or a
   ``run.lock``, even one a dead process left, even a ``config.toml`` written by hand) is *taken*:
   it is continued only with ``resume``, replaced only with ``overwrite``, and refused otherwise,
   before anything in it changes.

Every file is written by :func:`atomic_write`: to a temporary name, then renamed, so a reader sees
the old file or the new one, never a part. The checkpoint is the one commit of an epoch: an
interrupt between its rename and the one of ``metrics.jsonl`` loses nothing, because the next
``resume`` rewrites ``metrics.jsonl`` from the checkpoint (:func:`write_metrics`).
"""
import json
import os
import pathlib
import re
import time

RUN_FILES = ("checkpoint.npz", "metrics.jsonl", "learning_curves.png", "config.toml")
LOCK_NAME = "run.lock"
RUN_MARKERS = RUN_FILES + (LOCK_NAME,)                  # a folder with any of them is taken
EPOCH_FILES = ("metrics.jsonl", "learning_curves.png")  # written once an epoch is done: need a checkpoint
_LEFTOVER = re.compile(r"^\.(" + "|".join(map(re.escape, RUN_FILES + (LOCK_NAME,)))
                       + r")\.(tmp|stale)(\d+)$")


class RunFolderError(ValueError):
    """The output folder cannot be used: it holds a run, another process uses it, it is not writable."""


def atomic_write(path, write):
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it to ``path``.

    The temporary file is ``.<name>.tmp<pid>``, removed if ``write`` fails or is interrupted; a
    process killed outright leaves it, and the next run in the folder removes it. An OSError (a
    full disk) always names ``path``.
    """
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        if err.filename is None:
            err.filename = str(path)
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_metrics(folder, metrics, held_out="test"):
    """Rewrite ``folder/metrics.jsonl`` (one JSON line per epoch) and ``learning_curves.png``.

    ``held_out``: what the ``test_error`` was measured on, the curve's label ("test", "validation").
    """
    folder = pathlib.Path(folder)
    text = "".join(json.dumps(row) + "\n" for row in metrics)
    atomic_write(folder / "metrics.jsonl", lambda f: f.write(text.encode()))
    if metrics:
        plot_learning_curves(metrics, folder / "learning_curves.png", held_out)


def read_metrics(folder):
    """The rows of ``folder/metrics.jsonl`` (for checkpoints written before they held the metrics)."""
    path = pathlib.Path(folder) / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except ValueError as err:
        raise RunFolderError(f"{path} is damaged ({err}); the checkpoint has no copy of the metrics "
                             "(it predates that); delete or repair the file to resume") from None


def plot_learning_curves(metrics, path, held_out="test"):
    """Train and test (or ``held_out``) error against epoch as a PNG, written atomically.

    Uses a bare matplotlib Figure (no pyplot), so the caller's plotting backend is left alone.
    """
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    epochs = [m["epoch"] for m in metrics]
    ax.plot(epochs, [100 * m["train_error"] for m in metrics], "o-", label="train")
    ax.plot(epochs, [100 * m["test_error"] for m in metrics], "s-", label=held_out)
    ax.set_xlabel("epoch")
    ax.set_ylabel("error (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))


def process_exists(pid):
    """True if a process with id ``pid`` exists (on Windows, where this cannot be asked safely: always)."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)                     # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:                 # it exists, owned by another user
        return True
    return True


class RunLock:
    """The lock file ``<folder>/run.lock``, created exclusively, holding this process's id."""

    def __init__(self, folder, log=print):
        self.path = pathlib.Path(folder) / LOCK_NAME
        self.log = log

    def _holder(self, path=None):
        """The process id written in the lock file, or None if it is empty or unreadable."""
        try:
            return int((path or self.path).read_text().strip())
        except (OSError, ValueError):
            return None

    def acquire(self):
        """Create the lock file or take over a stale one; RunFolderError if a live process holds it."""
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None and time.time() - self._mtime() < 2.0:
                    time.sleep(0.05)        # another process is writing its id right now
                    continue
                if holder is not None and process_exists(holder):
                    raise RunFolderError(
                        f"{self.path.parent} is in use by process {holder} (lock file {self.path}); "
                        f"wait for that run to end, or delete the lock file if process {holder} is "
                        "not a minimal-ep run") from None
                self._take_over(holder)
                continue
            except OSError as err:
                raise RunFolderError(f"cannot write to output folder {self.path.parent}: "
                                     f"{err.strerror or err}") from None
            self._write_pid(fd)
            return self
        raise RunFolderError(f"could not lock {self.path.parent}: {self.path} keeps changing")

    def _write_pid(self, fd):
        """Write this process's id into the new lock file; if that fails (a full disk), remove it."""
        try:
            try:
                os.write(fd, f"{os.getpid()}\n".encode())
            finally:
                os.close(fd)
        except OSError as err:
            self.path.unlink(missing_ok=True)
            raise RunFolderError(f"cannot write the lock file {self.path}: {err.strerror or err}") from None

    def _mtime(self):
        try:
            return self.path.stat().st_mtime
        except OSError:
            return 0.0

    def _take_over(self, stale):
        """Remove the lock of process ``stale`` (no longer running) unless a live run replaced it."""
        aside = self.path.with_name(f".{LOCK_NAME}.stale{os.getpid()}")
        try:
            os.replace(self.path, aside)    # atomic: of several processes, one moves this file
        except FileNotFoundError:
            return                          # another process moved it first: try again
        moved = self._holder(aside)
        if moved != stale:                  # a live run locked the folder meanwhile: put it back
            try:
                os.link(aside, self.path)
            except OSError:
                pass
            aside.unlink()
            raise RunFolderError(f"{self.path.parent} is in use by process {moved} "
                                 f"(lock file {self.path})")
        aside.unlink()
        who = f"process {stale}" if stale is not None else "a process that had not written its id"
        self.log(f"took over the lock of {self.path.parent}: {who} is no longer running")

    def release(self):
        """Remove the lock file if it is still this process's."""
        if self._holder() == os.getpid():
            self.path.unlink()


def remove_leftovers(folder, log=print):
    """Delete temporary files left by an interrupted write of a process that no longer runs."""
    for path in sorted(pathlib.Path(folder).iterdir()):
        match = _LEFTOVER.match(path.name)
        if match and (int(match.group(3)) == os.getpid() or not process_exists(int(match.group(3)))):
            path.unlink(missing_ok=True)
            log(f"removed {path}, a temporary file left by an interrupted run")


def taken_by(folder):
    """The run files in ``folder`` (:data:`RUN_MARKERS`), in that order: empty if it is free."""
    folder = pathlib.Path(folder)
    return [name for name in RUN_MARKERS if (folder / name).exists()]


def _refuse_taken(folder, present):
    """The error for a taken folder without --resume/--overwrite; a live lock names its process."""
    holder = RunLock(folder)._holder() if LOCK_NAME in present else None
    if holder is not None and process_exists(holder):
        return RunFolderError(f"{folder} is in use by process {holder} (lock file {folder / LOCK_NAME}); "
                              "wait for that run to end")
    return RunFolderError(f"{folder} already holds a run ({', '.join(present)}); use --resume to "
                          "continue it or --overwrite to replace it (or another --out)")


def open_run_folder(folder, resume=False, overwrite=False, log=print):
    """Create and lock ``folder`` for a run, clean it, and refuse to overwrite a run in it.

    Parameters
    ----------
    folder : path-like
    resume : bool
        Continue the run in ``folder`` (a folder without any run file is started afresh).
    overwrite : bool
        Delete the run in ``folder`` first.

    Returns
    -------
    RunLock
        Held; call ``release()`` when the run ends (also after an error).

    Raises
    ------
    RunFolderError
        Naming ``--resume`` and ``--overwrite`` when the folder is taken (:func:`taken_by`) and
        neither is given, before anything in it changes; naming ``--overwrite`` when ``resume``
        finds the outputs of an epoch but no checkpoint; when another live process holds the lock;
        when the folder cannot be created or written. (A folder with only a config.toml, a run
        stopped before its first epoch, is resumed with the settings that file records.)
    """
    if resume and overwrite:
        raise RunFolderError("--resume continues the run in the folder, --overwrite replaces it: "
                             "give one of them")
    folder = pathlib.Path(folder)
    present = taken_by(folder) if folder.is_dir() else []
    if present and not (resume or overwrite):
        raise _refuse_taken(folder, present)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunFolderError(f"cannot create output folder {folder}: {err.strerror or err}") from None
    lock = RunLock(folder, log).acquire()
    try:
        remove_leftovers(folder, log)
        present = [name for name in RUN_FILES if (folder / name).exists()]
        epochs_without_checkpoint = [name for name in EPOCH_FILES if name in present]
        if resume and epochs_without_checkpoint and "checkpoint.npz" not in present:
            raise RunFolderError(f"{folder} has {', '.join(epochs_without_checkpoint)} but no checkpoint.npz "
                                 "to resume from; use --overwrite to start the run again")
        if overwrite and present:
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
            log(f"--overwrite: removed the previous run in {folder}")
    except BaseException:
        lock.release()
        raise
    return lock
