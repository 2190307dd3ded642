"""The reference solutions in tutorials/solutions/ pass the grader's checks.

Every check of ``tutorials/exercises/grader.py`` (the one ``make grade DIR=...`` runs on a
student's answers) is run here on the solutions, in quick mode, so the solutions, the stubs and
the grader cannot drift apart: the stubs' functions exist in the solutions with the same
arguments, and every exercise has a check.
"""
import importlib.util
import inspect
import pathlib
import re

import pytest

TUTORIALS = pathlib.Path(__file__).resolve().parents[1] / "tutorials"
SOLUTIONS = TUTORIALS / "solutions"
EXERCISES = TUTORIALS / "exercises"
SLOW = {"ex1_error_bars", "ex2_free_phase_length", "ex3_spiking_vs_continuous",
        "ex3_lam_against_distance"}           # checks over ~1.5 s on the 2-core machine


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grader = load(EXERCISES / "grader.py", "minimal_ep_grader")
_SOLUTIONS = {}


def solution(stem):
    if stem not in _SOLUTIONS:
        _SOLUTIONS[stem] = load(SOLUTIONS / f"{stem}.py", f"solution_{stem}")
    return _SOLUTIONS[stem]


def public_functions(module):
    return {name: f for name, f in vars(module).items()
            if inspect.isfunction(f) and f.__module__ == module.__name__ and not name.startswith("_")}


def test_every_tutorial_has_solutions_stubs_and_checks():
    tutorials = sorted(p.stem for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert tutorials == grader.STEMS
    assert tutorials == sorted(p.stem for p in SOLUTIONS.glob("[0-9][0-9]_*.py"))
    assert tutorials == sorted(p.stem for p in EXERCISES.glob("[0-9][0-9]_*.py"))
    for stem in tutorials:
        exercises = sorted(n for n in public_functions(solution(stem)) if n.startswith("exercise_"))
        assert 2 <= len(exercises) <= 4, f"{stem}: {exercises}"
        # the tutorial's text lists as many exercises as there are exercise_N functions
        text = (TUTORIALS / f"{stem}.py").read_text()
        listed = re.findall(r"^# (\d+)\. \*\*", text[text.index("## Exercises"):], re.M)
        assert [f"exercise_{n}" for n in listed] == exercises, (stem, listed, exercises)
        # one check per exercise, in order
        numbers = [re.match(r"ex(\d+)_", f.__name__).group(1) for f in grader.CHECKS[stem]]
        assert numbers == listed, (stem, numbers)


@pytest.mark.parametrize("stem", sorted(p.stem for p in EXERCISES.glob("[0-9][0-9]_*.py")))
def test_stubs_match_the_solutions(stem):
    """Every stub is a documented function with the solution's arguments, raising NotImplementedError."""
    stubs = public_functions(load(EXERCISES / f"{stem}.py", f"stub_{stem}"))
    solved = public_functions(solution(stem))
    for name, stub in stubs.items():
        assert name in solved, f"{stem}: the solution has no {name}"
        assert list(inspect.signature(stub).parameters) == \
            list(inspect.signature(solved[name]).parameters), f"{stem}.{name}: other arguments"
        assert stub.__doc__ and solved[name].__doc__, f"{stem}.{name}: no docstring"
        if "NotImplementedError" in inspect.getsource(stub):
            assert "Returns" in stub.__doc__, f"{stem}.{name}: its docstring documents no return"
    graded = {n for n in stubs if "NotImplementedError" in inspect.getsource(stubs[n])}
    assert {n for n in graded if n.startswith("exercise_")} == \
        {n for n in solved if n.startswith("exercise_")}, stem


CASES = [pytest.param(stem, f, id=f"{stem}-{f.__name__}",
                      marks=[pytest.mark.slow] if f.__name__ in SLOW else [])
         for stem in grader.STEMS for f in grader.CHECKS[stem]]


@pytest.mark.parametrize("stem, check", CASES)
def test_solution_passes_the_grader(stem, check):
    check(solution(stem))
