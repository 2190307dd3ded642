"""The official MNIST and Fashion-MNIST files: names, SHA-256 checksums, IDX parsing, download.

Both data sets come as four IDX files (LeCun's format: a big-endian header, then raw uint8 data),
usually gzipped. A ``.gz`` file is checked against its official SHA-256 before it is parsed;
uncompressed files have no official checksum and are checked by their IDX header and size only.
Downloads go to a temporary file that is renamed once complete and verified, so an interrupted
download never leaves a file that looks whole. :mod:`minimal_ep.datasets` decides where the files are.
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
MIRRORS = {  # base URLs, tried in order; override here or with the `mirrors` argument
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"],
}
IDX_MAGIC = {2049: "labels", 2051: "images"}  # 0x0801: ubyte, 1 dim; 0x0803: ubyte, 3 dims


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
