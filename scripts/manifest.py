"""The manifest of the committed evidence: results/MANIFEST.sha256, one line per file under results/.

Every number a document cites comes from a file under ``results/`` (checkpoints, metrics, JSON,
probes, figures). The manifest lists each with its SHA-256, so a reader can tell that the files are
the ones the documents were written from, and ``tests/test_results.py`` checks that the tree and the
manifest agree (no file changed, missing or unlisted) and that no committed file carries an absolute
path of the machine that made it. After a campaign or ``make figures`` changed the results, write the
manifest again::

    python scripts/manifest.py            # rewrite results/MANIFEST.sha256
    python scripts/manifest.py --check    # exit 1 and list the differences
"""
import pathlib
import re
import sys

from minimal_ep.run.idx_files import sha256

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
MANIFEST = RESULTS / "MANIFEST.sha256"
# what is not evidence: caches, smoke runs, locks, temporary files of an interrupted write
IGNORED = re.compile(r"(^|/)(\.cache|quick|__pycache__)(/|$)|(^|/)run\.lock$|(^|/)\.[^/]*\.(tmp|stale)\d+$")
TEXT = {".json", ".jsonl", ".toml", ".log", ".md", ".txt", ".csv"}
ABSOLUTE = re.compile(r"(?<![\w.])/(?:home|root|work|tmp|Users|mnt|private)/")


def files():
    """Paths of the evidence under results/, relative to it, sorted (the manifest itself excluded)."""
    out = []
    for path in sorted(RESULTS.rglob("*")):
        rel = path.relative_to(RESULTS).as_posix()
        if path.is_file() and path != MANIFEST and not IGNORED.search(rel):
            out.append(rel)
    return out


def current():
    """{relative path: SHA-256} of the files as they are now."""
    return {rel: sha256(RESULTS / rel) for rel in files()}


def read():
    """{relative path: SHA-256} as the manifest lists them (``sha256sum`` format)."""
    if not MANIFEST.exists():
        return {}
    pairs = (line.split(None, 1) for line in MANIFEST.read_text().splitlines() if line.strip())
    return {name.strip(): digest for digest, name in pairs}


def differences(listed, now):
    """Lines saying which files changed, are missing, or are not listed."""
    out = [f"changed: {p}" for p in sorted(set(listed) & set(now)) if listed[p] != now[p]]
    out += [f"missing: {p}" for p in sorted(set(listed) - set(now))]
    out += [f"not listed: {p}" for p in sorted(set(now) - set(listed))]
    return out


def absolute_paths():
    """``path: line`` of every committed text file that names an absolute machine path."""
    hits = []
    for rel in files():
        if pathlib.PurePosixPath(rel).suffix in TEXT:
            for k, line in enumerate((RESULTS / rel).read_text(errors="replace").splitlines(), 1):
                if ABSOLUTE.search(line):
                    hits.append(f"{rel}:{k}")
                    break
    return hits


def write():
    from minimal_ep.run.runs import atomic_write
    text = "".join(f"{digest}  {rel}\n" for rel, digest in current().items())
    atomic_write(MANIFEST, lambda f: f.write(text.encode()))
    print(f"{MANIFEST.relative_to(REPO)}: {text.count(chr(10))} files")


def main(argv):
    if argv not in ([], ["--check"]):
        print("usage: manifest.py [--check]", file=sys.stderr)
        return 2
    if not argv:
        write()
        return 0
    problems = differences(read(), current()) + [f"absolute path in {h}" for h in absolute_paths()]
    print("\n".join(problems) or "results/ matches its manifest")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
