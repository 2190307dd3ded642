"""The exercises' grader (``make grade DIR=...``): the stubs fail it with "not done", a partial or
wrong answer gets a message a student can act on, and only a fully passing folder exits 0.

The reference solutions passing every check is tests/test_solutions.py.
"""
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
EXERCISES = REPO / "tutorials" / "exercises"
SOLUTIONS = REPO / "tutorials" / "solutions"
GRADER = EXERCISES / "grader.py"


def grade(folder, *args):
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("MINIMAL_EP_ANSWERS", None)
    proc = subprocess.run([sys.executable, str(GRADER), str(folder), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def rows(output):
    """{(tutorial, exercise number): (mark, the message line or '')} from the grader's table."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Exercises graded from"))
    table = {}
    for i, line in enumerate(lines[start + 1:], start + 1):
        parts = line.split()
        if len(parts) >= 4 and parts[0] in ("PASS", "FAIL", "----"):
            message = lines[i + 1].strip() if parts[0] != "PASS" else ""
            table[parts[1], parts[3].rstrip(":")] = (parts[0], message)
    return table


@pytest.mark.slow
def test_the_stubs_fail_every_check():
    status, out = grade(EXERCISES)
    assert status == 1, out
    table = rows(out)
    assert len(table) == 19 and "0 of 19 checks passed." in out, out
    for key, (mark, message) in table.items():
        assert mark == "FAIL" and message.startswith("not done: the stub still raises"), (key, message)
    assert "Traceback" not in out and "assert " not in out


@pytest.mark.slow
def test_partial_answers_get_messages(tmp_path):
    answers = tmp_path / "answers"
    shutil.copytree(EXERCISES, answers, ignore=shutil.ignore_patterns("grader.py", "*.md"))
    shutil.copy(SOLUTIONS / "01_convolution.py", answers)                  # all right
    text = (SOLUTIONS / "02_pooling.py").read_text()
    (answers / "02_pooling.py").write_text(text.replace("return float(F * F)", "return 2.0"))
    text = (SOLUTIONS / "05_spikes.py").read_text()                        # a crash
    (answers / "05_spikes.py").write_text(text.replace(
        "    return max(v_th, 1.0 - v_th)", "    return max(v_th, 1.0 - v_th) / 0"))
    (answers / "06_spiking_conv_ep.py").unlink()                           # not handed in
    status, out = grade(answers, "-k", "not 04_ and not 03_ and not ex2_rate and not ex3_lam")
    assert status == 1, out
    table = rows(out)
    assert all(table["01_convolution", n][0] == "PASS" for n in "123"), out
    assert table["02_pooling", "1"][0] == "PASS" and table["02_pooling", "3"][0] == "PASS"
    mark, message = table["02_pooling", "2"]
    assert mark == "FAIL" and message.startswith("wrong: adjoint_alpha(2) = 2.0 does not make")
    mark, message = table["05_spikes", "1"]
    assert mark == "FAIL" and "your code raised ZeroDivisionError" in message
    assert f"{answers / '05_spikes.py'}:" in message                        # where it happened
    assert all(table["06_spiking_conv_ep", n] == ("----", "not handed in") for n in "123")
    assert "5 of 10 checks passed." in out


@pytest.mark.slow
def test_a_passing_folder_exits_0(tmp_path):
    shutil.copy(SOLUTIONS / "01_convolution.py", tmp_path)
    status, out = grade(tmp_path, "-k", "01_convolution")
    assert status == 0 and "3 of 3 checks passed." in out, out
    status, out = grade(tmp_path)                   # the others are not handed in: not a pass
    assert status == 1 and "3 of 19 checks passed." in out, out


@pytest.mark.slow
def test_usage_errors():
    status, out = grade(REPO / "no-such-folder")
    assert status == 2 and "is not a folder" in out
    proc = subprocess.run([sys.executable, str(GRADER)], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage:" in proc.stderr


def test_make_grade_runs_the_grader_on_dir():
    make = shutil.which("make")
    if make is None:
        pytest.skip("no make")
    proc = subprocess.run([make, "-n", "grade", "DIR=some/answers"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "tutorials/exercises/grader.py some/answers" in proc.stdout
