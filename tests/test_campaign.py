"""The campaign runner's deadline (``--finish-by``): which children start, and how the time is read.

The children here are stand-ins (a Python process that exits at once), so the tests check the
runner's decisions only; tests/test_figures.py and tests/test_table2.py run real campaigns.
"""
import argparse
import datetime
import json
import sys
import time

import pytest

from minimal_ep.run.campaign import Campaign, Run, finish_time, read_json_lines


def make_run(tmp_path, name, config, seconds_per_epoch=None, epochs=3):
    """A run of ``config`` whose child does nothing; with a campaign.jsonl if ``seconds_per_epoch``."""
    run = Run(name=name, config=config, out=name, seed=0, epochs=epochs, root=tmp_path)
    run.folder.mkdir()
    if seconds_per_epoch is not None:
        row = {"wall_seconds": 2 * seconds_per_epoch, "epochs_before": 0, "epochs_after": 2}
        (run.folder / "campaign.jsonl").write_text(json.dumps(row) + "\n")
        (run.folder / "metrics.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    run.command = lambda until=None: [sys.executable, "-c", "pass", "--until", str(until)]
    return run


def test_children_expected_to_end_after_the_deadline_are_not_started(tmp_path):
    runs = [make_run(tmp_path, "slow", "a.toml", seconds_per_epoch=3600.0),   # 1 h per epoch
            make_run(tmp_path, "slow_seed1", "a.toml"),                       # a.toml's time: 1 h
            make_run(tmp_path, "unknown", "b.toml"),                          # nothing says: started
            make_run(tmp_path, "fast", "c.toml", seconds_per_epoch=1.0, epochs=5)]
    lines = []
    campaign = Campaign(runs, jobs=2, log=lines.append, cwd=tmp_path, step=1, deadline=time.time() + 600)
    assert campaign.run() == 0
    started = {line.split()[1] for line in lines if line.startswith("start ")}
    assert started == {"unknown", "fast"}
    assert campaign.late == {"slow", "slow_seed1"}
    assert {r.name for r in campaign.todo} == {"slow", "slow_seed1"}
    assert sum(line.startswith("not starting slow") for line in lines) == 2      # said once per run
    assert campaign.expected_seconds(runs[1]) == pytest.approx(3600.0)           # one epoch of a.toml
    assert campaign.expected_seconds(runs[0]) == pytest.approx(3600.0)           # epoch 3 of 3 (--until)
    for run in runs[2:]:                                   # the stand-in children were recorded
        (row,) = read_json_lines(run.folder / "campaign.jsonl")[-1:]
        assert row["exit_code"] == 0


def test_without_a_deadline_every_run_starts(tmp_path):
    runs = [make_run(tmp_path, "slow", "a.toml", seconds_per_epoch=1e9),
            make_run(tmp_path, "other", "b.toml")]
    lines = []
    assert Campaign(runs, jobs=1, log=lines.append, cwd=tmp_path).run() == 0
    assert [line.split()[1] for line in lines if line.startswith("start ")] == ["slow", "other"]


def test_finish_time_reads_a_clock_time_or_a_date(monkeypatch):
    soon = datetime.datetime.now() + datetime.timedelta(minutes=90)
    when = finish_time(f"{soon:%H:%M}")
    assert 0 < when - time.time() <= 24 * 3600                     # the next such time, today or tomorrow
    assert datetime.datetime.fromtimestamp(when).strftime("%H:%M") == f"{soon:%H:%M}"
    minute = soon.replace(second=0, microsecond=0)
    assert finish_time(f"{soon:%Y-%m-%dT%H:%M}") == pytest.approx(minute.timestamp())
    for bad in ("25:00", "noon", "2020-01-01T10:00", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            finish_time(bad)
