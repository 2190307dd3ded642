"""The committed evidence (results/) is what its manifest lists, and carries no machine's paths."""
import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("manifest", REPO / "scripts" / "manifest.py")
manifest = importlib.util.module_from_spec(spec)
spec.loader.exec_module(manifest)


def test_results_match_their_manifest():
    listed = manifest.read()
    assert listed, "results/MANIFEST.sha256 is missing or empty: python scripts/manifest.py"
    assert manifest.differences(listed, manifest.current()) == []


def test_no_committed_result_names_an_absolute_machine_path():
    assert manifest.absolute_paths() == []


def test_the_checks_can_fail(tmp_path, monkeypatch):
    (tmp_path / "a.json").write_text('{"path": "/home/me/run"}\n')
    (tmp_path / "b.toml").write_text('out = "runs/x"\n')
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c.json").write_text("{}")
    monkeypatch.setattr(manifest, "RESULTS", tmp_path)
    monkeypatch.setattr(manifest, "MANIFEST", tmp_path / "MANIFEST.sha256")
    now = manifest.current()
    assert sorted(now) == ["a.json", "b.toml"]                      # the cache is no evidence
    assert manifest.absolute_paths() == ["a.json:1"]
    listed = dict(now, **{"b.toml": "0" * 64, "gone.npz": "1" * 64})
    del listed["a.json"]
    assert manifest.differences(listed, now) == ["changed: b.toml", "missing: gone.npz", "not listed: a.json"]
