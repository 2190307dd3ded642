"""The README's Python examples run as written."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    namespace = {}
    for code in blocks:                       # the op examples build on each other, in order
        exec(compile(code, str(README), "exec"), namespace)
    assert namespace["col"].shape == (2, 27, 81)
    assert abs(float((namespace["y"] * namespace["g"]).sum()) - float((namespace["x"] * namespace["xt"]).sum())) < 1e-2
