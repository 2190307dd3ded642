"""MNIST and Fashion-MNIST: find, verify, download and load them with NumPy only.

Two sources are available:

* ``source="embedded"``: a class-stratified subset shipped inside the package
  (5000 training and 1000 test images per data set, see ``minimal_ep/data/README.md``).
  It needs no file on disk and no network.
* ``source="full"``: the four official IDX files. A ``data_dir`` argument names the one place they
  are read from (``<data_dir>/<name>/`` or ``<data_dir>/`` itself): if they are not there, loading
  fails, naming the files expected. Without ``data_dir`` they are looked for, in this order, in

  1. ``$MINIMAL_EP_DATA`` (``<dir>/<name>/`` or ``<dir>/`` itself),
  2. the user cache ``$XDG_CACHE_HOME/minimal_ep/<name>`` (default ``~/.cache/minimal_ep/<name>``),
  3. Debian's ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist``),

  and, if none holds them, downloaded into the user cache from public mirrors.

Each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``);
:mod:`minimal_ep.run.idx_files` verifies every file before it is used (a ``.gz`` file by the official
SHA-256 of the file, an uncompressed one by the SHA-256 of its content, which must be the official
file's or a known derived subset's, such as data/mnist-10k) and parses it. The embedded subsets are
checked against their SHA-256 too. ``INPUT_SHAPE`` and ``N_CLASSES`` say what a network for each data
set takes in and puts out.
"""
import os
import pathlib

import numpy as np

from .batches import iterate_batches, to_float_images
from .idx_files import (FILES, KNOWN_CONTENT, MIRRORS, SHA256, download_missing, load_idx, record_path, sha256,
                        verify_file)

__all__ = ["DATASETS", "INPUT_SHAPE", "N_CLASSES", "FILES", "SHA256", "KNOWN_CONTENT", "EMBEDDED_SHA256",
           "MIRRORS", "DatasetNotFoundError",
           "canonical_name", "load_idx", "search_dirs", "find_dataset", "incomplete_dirs", "download",
           "load_dataset", "verify_dataset", "dataset_status", "to_float_images", "iterate_batches"]

DATASETS = ("mnist", "fashion-mnist")
INPUT_SHAPE = {"mnist": (1, 28, 28), "fashion-mnist": (1, 28, 28)}   # (C, H, W) of one image
N_CLASSES = {"mnist": 10, "fashion-mnist": 10}
ALIASES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist",
           "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist"}
DEBIAN_DIR = pathlib.Path("/usr/share/datasets")
EMBEDDED_DIR = pathlib.Path(__file__).resolve().parents[1] / "data"
EMBEDDED_SHA256 = {  # the subsets inside the package (minimal_ep/data/README.md)
    "mnist-subset.npz": "b27c743135f25b97c0b0f60028bdc02784410c61422104da20a47ffba78815f6",
    "fashion-mnist-subset.npz": "71e1e743e5663fd8f3243b43bff2b60625ea1f21f36ce7515f3ff89eb1194c19",
}
SPLITS = ("train", "test")


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are nowhere on disk and could not be downloaded."""


def canonical_name(name):
    """Return the canonical data-set name (``"mnist"`` or ``"fashion-mnist"``) for `name` or an alias."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in ALIASES:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(sorted(ALIASES))}")
    return ALIASES[key]


# ----------------------------------------------------------------------------- lookup

def _cache_dir(name):
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return base / "minimal_ep" / name


def search_dirs(name, data_dir=None):
    """The directories where the files of data set `name` are looked for, in lookup order.

    With ``data_dir`` only ``<data_dir>/<name>`` and ``<data_dir>``: a place the user names is
    the place used. Without it: ``$MINIMAL_EP_DATA``, the user cache, Debian's directory.

    Returns
    -------
    dirs : list of pathlib.Path
    """
    name = canonical_name(name)
    roots = [data_dir] if data_dir else [os.environ.get("MINIMAL_EP_DATA") or None]
    dirs = []
    for root in roots:
        if root is not None:
            root = pathlib.Path(root).expanduser()
            dirs += [root / name, root]
    if not data_dir:
        dirs += [_cache_dir(name), DEBIAN_DIR / name]
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def _stems(splits=SPLITS):
    """The file stems of ``splits`` ("train", "test"), in the order of FILES."""
    unknown = set(splits) - set(SPLITS)
    if unknown or not splits:
        raise ValueError(f"splits must be a non-empty subset of {SPLITS}, got {splits!r}")
    return tuple(stem for stem in FILES if ("train" if stem.startswith("train") else "test") in splits)


def _present(directory, stems=FILES):
    """Map each of ``stems`` found in `directory` to its path (``.gz`` preferred)."""
    found = {}
    for stem in stems:
        for candidate in (directory / (stem + ".gz"), directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
    return found


def _files_in(directory, stems=FILES):
    """Map each of ``stems`` to its path (``.gz`` preferred), or return None if one is missing."""
    found = _present(directory, stems)
    return found if len(found) == len(stems) else None


def find_dataset(name, data_dir=None, splits=SPLITS):
    """The first directory of :func:`search_dirs` holding the files of ``splits``, or None (no download)."""
    for directory in search_dirs(name, data_dir):
        if _files_in(directory, _stems(splits)) is not None:
            return directory
    return None


def incomplete_dirs(name, data_dir=None, splits=SPLITS):
    """``[(directory, [missing file stems])]`` for the searched directories holding some files only."""
    stems, out = _stems(splits), []
    for directory in search_dirs(name, data_dir):
        found = _present(directory, stems)
        if 0 < len(found) < len(stems):
            out.append((directory, [stem for stem in stems if stem not in found]))
    return out


def _not_in_data_dir(name, data_dir, splits=SPLITS):
    """The error for a ``data_dir`` that does not hold the files: one line, every file named."""
    data_dir, stems = pathlib.Path(data_dir).expanduser(), _stems(splits)
    partial = incomplete_dirs(name, data_dir, splits)
    missing = (f"; {partial[0][0]} lacks " + ", ".join(f"{m}[.gz]" for m in partial[0][1])
               if partial else "")
    state = ("" if data_dir.is_dir() else " (it is not a directory)" if data_dir.exists()
             else " (it does not exist)")
    return DatasetNotFoundError(
        f"{name} not found in data directory {data_dir}{state}: expected the files "
        + ", ".join(f"{stem}[.gz]" for stem in stems) + f" in {data_dir / name} or {data_dir}"
        + missing)


# ----------------------------------------------------------------------------- download

def _not_found(name, data_dir, errors, dest):
    lines = [f"Data set {name!r} was not found and could not be downloaded.",
             "Looked in (in this order):"]
    partial = dict(incomplete_dirs(name, data_dir))
    for d in search_dirs(name, data_dir):
        note = "" if d.is_dir() else "  (does not exist)"
        if d in partial:
            note = "  (incomplete: missing " + ", ".join(partial[d]) + ")"
        lines.append(f"  {d}{note}")
    lines.append("Expected files (SHA-256 of the .gz; the uncompressed name without .gz also works):")
    lines += [f"  {f}  {h}" for f, h in SHA256[name].items()]
    lines.append(f"Download errors (downloading into {dest}):")
    lines += [f"  {e}" for e in errors]
    cache = _cache_dir(name)
    lines += ["To fix: get the four files on a machine with internet access, then either",
              f"  mkdir -p {cache} && cp *.gz {cache}/",
              "or pass --data-dir DIR (Python: data_dir=DIR) or set MINIMAL_EP_DATA=DIR, where DIR",
              f"holds the files or a {name}/ folder with them. The embedded subset "
              "(source='embedded') needs no files."]
    return DatasetNotFoundError("\n".join(lines))


def download(name, dest=None, mirrors=None, progress=True):
    """Download the four ``.gz`` files of `name` into `dest` (default: the user cache).

    Files already in `dest` with the right SHA-256 are kept. Each file is written to a temporary
    file in `dest`, verified, then renamed; the next mirror is tried if one fails.

    Parameters
    ----------
    mirrors : list of str, optional
        Base URLs (``https://``, ``file://``...) tried in order; default ``MIRRORS[name]``.

    Returns
    -------
    dest : pathlib.Path
    """
    name = canonical_name(name)
    dest = _cache_dir(name) if dest is None else pathlib.Path(dest).expanduser()
    errors = download_missing(name, dest, mirrors, progress)
    if errors:
        raise _not_found(name, None, errors, dest)
    return dest


# ----------------------------------------------------------------------------- loading

def load_dataset(name, source="embedded", data_dir=None, download=True, mirrors=None, splits=SPLITS,
                 progress=True):
    """Load a data set as NumPy arrays, every file verified.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"`` (aliases ``"fashion_mnist"``, ``"fmnist"``).
    source : {"embedded", "full"}
        The subset shipped with the package, or the official files (looked up, then downloaded
        if `download` is true).
    data_dir : str or path-like, optional
        ``source="full"`` only: the one directory to read (``<data_dir>/<name>/`` or ``<data_dir>/``);
        no other place is searched and nothing is downloaded.
    splits : tuple of {"train", "test"}
        ``source="full"``: the splits whose files are read (``minimal-ep evaluate`` reads the test
        split only); the other split's keys are absent from the result.
    progress : bool
        Progress bars of a download.

    Returns
    -------
    data : dict
        ``train_images`` (N, 28, 28) uint8, ``train_labels`` (N,) int64, ``test_images``
        (M, 28, 28) uint8, ``test_labels`` (M,) int64, ``source`` (str): ``"embedded"`` or the
        directory the files came from, and ``files``: {file name: record} of every file read, the
        record holding ``path``, ``sha256`` (of the file), ``content_sha256`` (of its uncompressed
        content) and ``content`` (``"official"``, the embedded subset, or the derived subset it is).

    Raises
    ------
    DatasetNotFoundError
        The files are not in ``data_dir``, or (without it) nowhere and not downloadable.
    ValueError
        A file is damaged or not the one expected (checksum, IDX header or size), or ``data_dir``
        is given with ``source="embedded"``.
    """
    name = canonical_name(name)
    if source == "embedded":
        if data_dir:
            raise ValueError(f"data_dir {str(data_dir)!r} needs source='full'; the embedded subset "
                             "reads no directory")
        arrays, files = _load_embedded(name)
        where = "embedded"
    elif source == "full":
        directory = _full_directory(name, data_dir, download, mirrors, splits, progress)
        arrays, files = {}, {}
        for stem, path in _files_in(directory, _stems(splits)).items():
            split = "train" if stem.startswith("train") else "test"
            array, files[path.name] = verify_file(name, path)
            arrays[f"{split}_{'images' if 'images' in stem else 'labels'}"] = array
        where = str(directory)
    else:
        raise ValueError(f"source must be 'embedded' or 'full', not {source!r}")
    for split in SPLITS:
        if f"{split}_images" in arrays:
            arrays[f"{split}_labels"] = _checked_split(name, where, split, arrays)
    arrays["source"], arrays["files"] = where, files
    return arrays


def _load_embedded(name):
    """The arrays of the embedded subset of ``name`` and its record, its SHA-256 checked."""
    path = EMBEDDED_DIR / f"{name}-subset.npz"
    if not path.is_file():
        raise DatasetNotFoundError(f"embedded subset {path} is missing; reinstall minimal_ep "
                                   "or rebuild it with scripts/build_embedded_data.py")
    actual = sha256(path)
    if actual != EMBEDDED_SHA256[path.name]:
        raise ValueError(f"{path}: SHA-256 {actual} is not the embedded subset's "
                         f"{EMBEDDED_SHA256[path.name]} (a damaged or replaced file); reinstall minimal_ep")
    with np.load(path) as z:
        arrays = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
    record = {"path": record_path(path), "sha256": actual, "content_sha256": actual,
              "content": f"the embedded {name} subset"}
    return arrays, {path.name: record}


def _full_directory(name, data_dir, download, mirrors, splits, progress):
    """The directory holding the files of ``splits``: ``data_dir``'s, a searched one, or the cache."""
    directory = find_dataset(name, data_dir, splits)
    if directory is None and data_dir:
        raise _not_in_data_dir(name, data_dir, splits)
    if directory is None:
        errors = ["download disabled (download=False)"]
        if download:
            errors = download_missing(name, _cache_dir(name), mirrors, progress=progress)
        if errors:
            raise _not_found(name, data_dir, errors, _cache_dir(name))
        directory = _cache_dir(name)
    return directory


def _checked_split(name, where, split, arrays):
    """The int64 labels of ``split``, once the images and labels agree (N images, N labels in 0..9)."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    if (images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels)
            or labels.max(initial=0) > 9):
        raise ValueError(f"{name} ({where}): {split} split has images {images.shape} and "
                         f"labels {labels.shape} up to {labels.max(initial=0)}; expected "
                         "(N, 28, 28) images, (N,) labels in 0..9")
    return labels.astype(np.int64)


def verify_dataset(name, directory):
    """Check the four files of `name` in `directory` as loading would; return the problems found.

    Every file is verified (:func:`~minimal_ep.run.idx_files.verify_file`: the official SHA-256 of a
    ``.gz`` file, a known content SHA-256 of an uncompressed one) and parsed (IDX header, image size,
    length), with labels in 0..9 and as many labels as images per split.

    Returns
    -------
    problems : list of str
        Empty when the files are complete and sound.
    """
    name, directory = canonical_name(name), pathlib.Path(directory)
    found = _present(directory)
    problems = [f"missing {stem}[.gz]" for stem in FILES if stem not in found]
    arrays = {}
    for stem, path in found.items():
        try:
            arrays[stem] = verify_file(name, path)[0]
        except (OSError, ValueError) as err:
            problems.append(" ".join(str(err).split()))
    for prefix in ("train", "t10k"):
        images, labels = arrays.get(f"{prefix}-images-idx3-ubyte"), arrays.get(f"{prefix}-labels-idx1-ubyte")
        if images is not None and labels is not None and (len(images) != len(labels)
                                                          or labels.max(initial=0) > 9):
            problems.append(f"{prefix}: {len(images)} images but {len(labels)} labels "
                            f"(up to {labels.max(initial=0)}; expected one per image, in 0..9)")
    return problems


def dataset_status(data_dir=None, verify=True):
    """For each data set: where its files are (no download), the embedded subset sizes, the dirs searched.

    Parameters
    ----------
    verify : bool
        Check the files found with :func:`verify_dataset` (checksums and parsing; about a second).

    Returns
    -------
    status : list of dict
        Keys ``name``, ``found`` (pathlib.Path or None), ``problems`` (list of str from
        :func:`verify_dataset`, None if not verified or not found), ``incomplete`` (from
        :func:`incomplete_dirs`), ``embedded`` (dict ``{"train": N, "test": M}`` or None if the
        subset file is missing) and ``search_dirs``.
    """
    status = []
    for name in DATASETS:
        path, embedded = EMBEDDED_DIR / f"{name}-subset.npz", None
        if path.is_file():
            with np.load(path) as z:
                embedded = {"train": len(z["train_labels"]), "test": len(z["test_labels"])}
        found = find_dataset(name, data_dir)
        problems = verify_dataset(name, found) if verify and found is not None else None
        status.append({"name": name, "found": found, "problems": problems,
                       "incomplete": incomplete_dirs(name, data_dir),
                       "embedded": embedded, "search_dirs": search_dirs(name, data_dir)})
    return status
