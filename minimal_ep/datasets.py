"""MNIST and Fashion-MNIST: find, verify, download and load them with NumPy only.

Two sources are available:

* ``source="embedded"``: a class-stratified subset shipped inside the package
  (5000 training and 1000 test images per data set, see ``minimal_ep/data/README.md``).
  It needs no file on disk and no network.
* ``source="full"``: the four official IDX files. They are looked for, in this order, in

  1. the ``data_dir`` argument (``<data_dir>/<name>/`` or ``<data_dir>/`` itself),
  2. ``$MINIMAL_EP_DATA`` (``<dir>/<name>/`` or ``<dir>/`` itself),
  3. the user cache ``$XDG_CACHE_HOME/minimal_ep/<name>`` (default ``~/.cache/minimal_ep/<name>``),
  4. Debian's ``/usr/share/datasets/<name>`` (package ``dataset-fashion-mnist``),

  and, if none holds them, downloaded into the user cache from public mirrors.

Each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).
A ``.gz`` file is checked against its official SHA-256 before it is parsed; uncompressed files
have no official checksum and are checked by their IDX header and size only.
"""

import gzip
import hashlib
import os
import pathlib
import struct
import tempfile
import urllib.request

import numpy as np

DATASETS = ("mnist", "fashion-mnist")
ALIASES = {"mnist": "mnist", "fashion-mnist": "fashion-mnist",
           "fashion_mnist": "fashion-mnist", "fmnist": "fashion-mnist"}
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SHA256 = {  # SHA-256 of the official .gz files
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
}
MIRRORS = {  # base URLs, tried in order; override here or with the `mirrors` argument
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"],
}
DEBIAN_DIR = pathlib.Path("/usr/share/datasets")
EMBEDDED_DIR = pathlib.Path(__file__).resolve().parent / "data"
IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x0801: ubyte, 1 dim; 0x0803: ubyte, 3 dims


class DatasetNotFoundError(FileNotFoundError):
    """The files of a data set are nowhere on disk and could not be downloaded."""


def canonical_name(name):
    """Return the canonical data-set name (``"mnist"`` or ``"fashion-mnist"``) for `name` or an alias."""
    key = name.strip().lower() if isinstance(name, str) else None
    if key not in ALIASES:
        raise ValueError(f"unknown data set {name!r}; allowed: {', '.join(sorted(ALIASES))}")
    return ALIASES[key]


# ----------------------------------------------------------------------------- IDX files

def load_idx(path):
    """Parse one IDX file (gzipped if its name ends in ``.gz``), checking its header.

    Returns
    -------
    array : (N, 28, 28) or (N,) uint8 ndarray
        Images (magic number 2051) or labels (magic number 2049).

    Raises
    ------
    ValueError
        Naming the file, if it is not valid gzip, has a wrong magic number, images that are not
        28 x 28, or a size different from what its header promises.
    """
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from e
    if len(data) < 4:
        raise ValueError(f"{path}: truncated, {len(data)} bytes is shorter than the IDX header")
    magic, = struct.unpack(">I", data[:4])
    if magic not in IDX_MAGIC:
        raise ValueError(f"{path}: wrong magic number {magic} "
                         "(expected 2051 for images or 2049 for labels)")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated, {len(data)} bytes is shorter than its {header}-byte header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if ndim == 3 and shape[1:] != (28, 28):
        raise ValueError(f"{path}: images are {shape[1]} x {shape[2]}, expected 28 x 28")
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        what = "truncated" if len(data) - header < expected else "too long"
        raise ValueError(f"{path}: {what}, header promises {expected} bytes of data "
                         f"(shape {shape}) but the file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(name, path):
    """Check a ``.gz`` file against the official checksum; return `path`."""
    path = pathlib.Path(path)
    if path.suffix == ".gz":
        expected = SHA256[name][path.name]
        actual = _sha256(path)
        if actual != expected:
            raise ValueError(f"{path}: SHA-256 mismatch (corrupt or truncated file?)\n"
                             f"  expected {expected}\n  actual   {actual}")
    return path


# ----------------------------------------------------------------------------- lookup

def _cache_dir(name):
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = pathlib.Path(xdg) if os.path.isabs(xdg) else pathlib.Path.home() / ".cache"
    return base / "minimal_ep" / name


def search_dirs(name, data_dir=None):
    """The directories where the files of data set `name` are looked for, in lookup order.

    Returns
    -------
    dirs : list of pathlib.Path
    """
    name = canonical_name(name)
    dirs = []
    for root in (data_dir, os.environ.get("MINIMAL_EP_DATA") or None):
        if root is not None:
            root = pathlib.Path(root).expanduser()
            dirs += [root / name, root]
    dirs += [_cache_dir(name), DEBIAN_DIR / name]
    return list(dict.fromkeys(dirs))  # drop duplicates, keep order


def _files_in(directory):
    """Map each of the four file stems to its path (``.gz`` preferred), or return None."""
    found = {}
    for stem in FILES:
        for candidate in (directory / (stem + ".gz"), directory / stem):
            if candidate.is_file():
                found[stem] = candidate
                break
        else:
            return None
    return found


def find_dataset(name, data_dir=None):
    """The first directory of :func:`search_dirs` holding all four files, or None (no download)."""
    for directory in search_dirs(name, data_dir):
        if _files_in(directory) is not None:
            return directory
    return None


# ----------------------------------------------------------------------------- download

def _fetch(url, target, expected, progress):
    """Download `url` into `target` through a temporary file renamed once complete and verified."""
    from tqdm import tqdm  # imported here: only downloads need it

    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = tqdm(total=total, desc=target.name, unit="B", unit_scale=True,
                       unit_divisor=1024, leave=False, disable=not progress)
            try:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
            finally:
                bar.close()
        if h.hexdigest() != expected:
            raise ValueError(f"SHA-256 mismatch: expected {expected}, got {h.hexdigest()}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _download(name, dest, mirrors, progress):
    """Fetch the missing files into `dest`; return a list of short error strings (empty on success)."""
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    for fname, expected in SHA256[name].items():
        target = dest / fname
        if target.is_file() and _sha256(target) == expected:
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                _fetch(url, target, expected, progress)
                break
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
                errors.append(f"{url}: {type(e).__name__}: {getattr(e, 'reason', e)}"[:300])
        else:
            return errors or [f"{fname}: no mirror configured"]
    return []


def _not_found(name, data_dir, errors, dest):
    lines = [f"Data set {name!r} was not found and could not be downloaded.",
             "Looked in (in this order):"]
    lines += [f"  {d}" + ("" if d.is_dir() else "  (does not exist)") for d in search_dirs(name, data_dir)]
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
    errors = _download(name, dest, mirrors, progress)
    if errors:
        raise _not_found(name, None, errors, dest)
    return dest


# ----------------------------------------------------------------------------- loading

def load_dataset(name, source="embedded", data_dir=None, download=True, mirrors=None):
    """Load a data set as NumPy arrays.

    Parameters
    ----------
    name : str
        ``"mnist"`` or ``"fashion-mnist"`` (aliases ``"fashion_mnist"``, ``"fmnist"``).
    source : {"embedded", "full"}
        The subset shipped with the package, or the official files (looked up, then downloaded
        if `download` is true).

    Returns
    -------
    data : dict
        ``train_images`` (N, 28, 28) uint8, ``train_labels`` (N,) int64, ``test_images``
        (M, 28, 28) uint8, ``test_labels`` (M,) int64, and ``source`` (str): ``"embedded"``
        or the directory the files came from.
    """
    name = canonical_name(name)
    if source == "embedded":
        path = EMBEDDED_DIR / f"{name}-subset.npz"
        if not path.is_file():
            raise DatasetNotFoundError(f"embedded subset {path} is missing; reinstall minimal_ep "
                                       "or rebuild it with scripts/build_embedded_data.py")
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("train_images", "train_labels", "test_images", "test_labels")}
        where = "embedded"
    elif source == "full":
        directory = find_dataset(name, data_dir)
        if directory is None:
            errors = ["download disabled (download=False)"]
            if download:
                errors = _download(name, _cache_dir(name), mirrors, progress=True)
            if errors:
                raise _not_found(name, data_dir, errors, _cache_dir(name))
            directory = _cache_dir(name)
        files = _files_in(directory)
        arrays = {f"{split}_{kind}": load_idx(_verified(name, files[f"{prefix}-{kind}-idx{d}-ubyte"]))
                  for split, prefix in (("train", "train"), ("test", "t10k"))
                  for kind, d in (("images", 3), ("labels", 1))}
        where = str(directory)
    else:
        raise ValueError(f"source must be 'embedded' or 'full', not {source!r}")
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if (images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels)
                or labels.max(initial=0) > 9):
            raise ValueError(f"{name} ({where}): {split} split has images {images.shape} and "
                             f"labels {labels.shape} up to {labels.max(initial=0)}; expected "
                             "(N, 28, 28) images, (N,) labels in 0..9")
        arrays[f"{split}_labels"] = labels.astype(np.int64)
    arrays["source"] = where
    return arrays


def dataset_status(data_dir=None):
    """For each data set: where its files are (no download), the embedded subset sizes, the dirs searched.

    Returns
    -------
    status : list of dict
        Keys ``name``, ``found`` (pathlib.Path or None), ``embedded`` (dict ``{"train": N,
        "test": M}`` or None if the subset file is missing) and ``search_dirs``.
    """
    status = []
    for name in DATASETS:
        path, embedded = EMBEDDED_DIR / f"{name}-subset.npz", None
        if path.is_file():
            with np.load(path) as z:
                embedded = {"train": len(z["train_labels"]), "test": len(z["test_labels"])}
        status.append({"name": name, "found": find_dataset(name, data_dir),
                       "embedded": embedded, "search_dirs": search_dirs(name, data_dir)})
    return status


# ----------------------------------------------------------------------------- batches

def to_float_images(images, dtype="float32", normalize="unit"):
    """Convert uint8 images to floats with a channel axis.

    Parameters
    ----------
    images : (N, 28, 28) uint8 ndarray
    dtype : {"float32", "float64"}
    normalize : {"unit", "binary"}
        ``"unit"``: divide by 255; ``"binary"``: 1.0 where the pixel is >= 128, else 0.0.

    Returns
    -------
    x : (N, 1, 28, 28) ndarray of `dtype`, values in [0, 1]
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(f"images must be a (N, H, W) uint8 array, got {images.dtype} {images.shape}")
    if dtype not in ("float32", "float64", np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', not {dtype!r}")
    dtype = np.dtype(dtype)
    if normalize == "unit":
        x = images.astype(dtype)
        x /= dtype.type(255)
    elif normalize == "binary":
        x = (images >= 128).astype(dtype)
    else:
        raise ValueError(f"normalize must be 'unit' or 'binary', not {normalize!r}")
    return x[:, None, :, :]


def iterate_batches(n, batch_size, shuffle, rng=None):
    """Yield index arrays covering ``range(n)`` once, in batches; the last partial batch is kept.

    Parameters
    ----------
    n : int
        Number of examples.
    batch_size : int
        At least 1.
    shuffle : bool
        Visit the examples in a random order drawn from `rng`.
    rng : numpy.random.Generator
        Required when `shuffle` is true.

    Yields
    ------
    idx : (batch_size,) int64 ndarray (the last one may be shorter)
    """
    if not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}")
    if shuffle and not isinstance(rng, np.random.Generator):
        raise ValueError(f"shuffle=True needs rng=numpy.random.Generator, not {rng!r}")
    order = rng.permutation(n) if shuffle else np.arange(n)
    return (order[i:i + batch_size] for i in range(0, n, batch_size))
