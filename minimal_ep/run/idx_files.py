"""The official MNIST and Fashion-MNIST files: names, SHA-256 checksums, IDX parsing, download.

Both data sets come as four IDX files (LeCun's format: a big-endian header, then raw uint8 data),
usually gzipped. Every file is verified before it is used (:func:`verify_file`): a ``.gz`` file
against the official SHA-256 of the file, an uncompressed one against the SHA-256 of its content
(:data:`KNOWN_CONTENT`: the decompressed official files, and the derived subsets this project makes,
each named). Downloads go to a temporary file that is renamed once complete and verified, so an
interrupted download never leaves a file that looks whole. :mod:`minimal_ep.run.datasets` decides
where the files are.
"""
import gzip
import hashlib
import os
import pathlib
import struct
import tempfile
import urllib.request

import numpy as np

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
# SHA-256 of the *content* of each file (the uncompressed IDX bytes): what an uncompressed copy must
# match, with what it is. The official MNIST training images are missing: their uncompressed checksum
# is not known here (use the official .gz file). "mnist-10k" is the 10000-image training subset that
# scripts/prepare_mnist_subset.py writes (data/mnist-10k/, for configs/laptop/mnist_*.toml and
# configs/figures/*.toml), a derived set accepted and recorded as such.
OFFICIAL = "official"
MNIST_10K = "mnist-10k: the 10000-image training subset of scripts/prepare_mnist_subset.py"
KNOWN_CONTENT = {
    "mnist": {
        "train-images-idx3-ubyte": {
            "87ff80b1af14cbb3cd72b14f87b48775177b2bbd6ad1b2645c25bd389d95c284": MNIST_10K},
        "train-labels-idx1-ubyte": {
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5": OFFICIAL,
            "abc1ca0c0af29e09d56751fab3baff6f96ac830fe542e7e091e7f3ed8afce81d": MNIST_10K},
        "t10k-images-idx3-ubyte": {
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7": OFFICIAL},
        "t10k-labels-idx1-ubyte": {
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2": OFFICIAL},
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": {
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888": OFFICIAL},
        "train-labels-idx1-ubyte": {
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9": OFFICIAL},
        "t10k-images-idx3-ubyte": {
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b": OFFICIAL},
        "t10k-labels-idx1-ubyte": {
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34": OFFICIAL},
    },
}
MIRRORS = {  # base URLs, tried in order; override here or with the `mirrors` argument
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"],
}
IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x0801: ubyte, 1 dim; 0x0803: ubyte, 3 dims


def read_idx(path):
    """The IDX bytes of ``path``, decompressed if its name ends in ``.gz``.

    Raises
    ------
    ValueError
        Naming the file, if it is not valid gzip (FileNotFoundError and other OSErrors pass through).
    """
    path = pathlib.Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        if isinstance(e, FileNotFoundError):
            raise
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from e


def parse_idx(data, path):
    """The array in the IDX bytes ``data`` (read from ``path``), checking its header.

    Returns
    -------
    array : (N, 28, 28) or (N,) uint8 ndarray
        Images (magic number 2051) or labels (magic number 2049).

    Raises
    ------
    ValueError
        Naming the file, for a wrong magic number, images that are not 28 x 28, or a size different
        from what the header promises.
    """
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


def load_idx(path):
    """Parse one IDX file (gzipped if its name ends in ``.gz``), checking its header (no checksum).

    Returns
    -------
    array : (N, 28, 28) or (N,) uint8 ndarray

    Raises
    ------
    ValueError
        Naming the file, if it is not valid gzip, has a wrong magic number, images that are not
        28 x 28, or a size different from what its header promises.
    """
    return parse_idx(read_idx(path), path)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verified_sha256(name, path):
    """Check a ``.gz`` file against the official checksum; return its SHA-256 (hex)."""
    path = pathlib.Path(path)
    actual = sha256(path)
    if path.suffix == ".gz":
        expected = SHA256[name][path.name]
        if actual != expected:
            raise ValueError(f"{path}: SHA-256 mismatch (corrupt or truncated file?)\n"
                             f"  expected {expected}\n  actual   {actual}")
    return actual


def stem_of(path):
    """The IDX file name without ``.gz``: ``train-images-idx3-ubyte``."""
    name = pathlib.Path(path).name
    return name[:-3] if name.endswith(".gz") else name


def identify(content_sha256):
    """``(data set, file stem, what)`` of a known content checksum, or None."""
    for name, stems in KNOWN_CONTENT.items():
        for stem, known in stems.items():
            if content_sha256 in known:
                return name, stem, known[content_sha256]
    return None


def verify_file(name, path):
    """Read, verify and parse one IDX file of data set ``name``; return ``(array, record)``.

    A ``.gz`` file must have the official SHA-256 (:data:`SHA256`); an uncompressed one must have a
    known content SHA-256 (:data:`KNOWN_CONTENT`): the official file's, or a derived subset's.

    Returns
    -------
    array : uint8 ndarray
    record : dict
        ``path`` (resolved), ``sha256`` (of the file), ``content_sha256`` (of the uncompressed IDX
        bytes) and ``content`` (``"official"`` or the derived subset it is).

    Raises
    ------
    ValueError
        One line naming the file: a checksum that matches nothing known (naming what the file is
        when it is another known file), a damaged gzip stream or IDX header.
    """
    path = pathlib.Path(path)
    stem = stem_of(path)
    file_sha = verified_sha256(name, path)
    data = read_idx(path)
    array = parse_idx(data, path)                     # a damaged header is named as such first
    content_sha = hashlib.sha256(data).hexdigest()
    what = OFFICIAL if path.suffix == ".gz" else KNOWN_CONTENT.get(name, {}).get(stem, {}).get(content_sha)
    if what is None:
        raise ValueError(_unknown_content(name, stem, path, content_sha))
    record = {"path": record_path(path), "sha256": file_sha, "content_sha256": content_sha,
              "content": what}
    return array, record


def record_path(path):
    """How a run's record names a file it read: relative to the working directory when the file lies
    below it (a campaign runs in the repository, so its committed records name no machine path), else
    the absolute path."""
    path = pathlib.Path(path).resolve()
    here = pathlib.Path.cwd().resolve()
    return str(path.relative_to(here)) if path.is_relative_to(here) else str(path)


def _unknown_content(name, stem, path, content_sha):
    """The one-line error for an uncompressed file whose content is not a known one."""
    known = identify(content_sha)
    if known is not None:
        hint = f"it is the {known[0]} file {known[1]} ({known[2]})"
    elif OFFICIAL not in KNOWN_CONTENT.get(name, {}).get(stem, {}).values():
        hint = ("the SHA-256 of the uncompressed official file is not known to minimal_ep: "
                f"use the official {stem}.gz, which is verified")
    else:
        hint = "a damaged, modified or foreign file"
    return (f"{path}: not the {name} file {stem}: its content has SHA-256 {content_sha}, which is "
            f"neither the official file's nor a known subset's ({hint})")


def fetch(url, target, expected, progress):
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


def download_missing(name, dest, mirrors, progress):
    """Fetch the missing files into `dest`; return a list of short error strings (empty on success)."""
    dest.mkdir(parents=True, exist_ok=True)
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    for fname, expected in SHA256[name].items():
        target = dest / fname
        if target.is_file() and sha256(target) == expected:
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                fetch(url, target, expected, progress)
                break
            except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
                errors.append(f"{url}: {type(e).__name__}: {getattr(e, 'reason', e)}"[:300])
        else:
            return errors or [f"{fname}: no mirror configured"]
    return []
