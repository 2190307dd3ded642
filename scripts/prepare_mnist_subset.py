#!/usr/bin/env python
"""Write the 10000-image MNIST training subset and the official test set as a folder of IDX files.

The figure checkpoints (configs/figures/*.toml) train with ``source = "full"`` on the MNIST
training images available on the build machine: not the official 60000 (absent there) but
``train-subset-10k.npz``, 10000 random official training images (keys ``images`` uint8
(10000, 28, 28) and ``labels`` uint8 (10000,)), disjoint from the test set; the package's embedded
5000-image training subset is drawn from it. This script turns that file and the official t10k
files into the four files ``minimal_ep.run.datasets`` loads from a ``--data-dir``:

    OUT/train-images-idx3-ubyte      the 10000 subset images, uncompressed IDX (magic 2051)
    OUT/train-labels-idx1-ubyte      their labels, uncompressed IDX (magic 2049)
    OUT/t10k-images-idx3-ubyte.gz    the official test files, copied byte for byte
    OUT/t10k-labels-idx1-ubyte.gz    (the loader checks their official SHA-256)
    OUT/SOURCE.txt                   where the files came from, with SHA-256s

Every source file is checked against its SHA-256 first, the script checks that no training image
also appears in the test set, and every output is written to a temporary name and renamed. The
project never reads ../shared at run time: only this preparation step does. Usage::

    python scripts/prepare_mnist_subset.py                        # -> data/mnist-10k/
    python scripts/prepare_mnist_subset.py --out DIR --source ../shared/data/mnist
    minimal-ep train --config configs/figures/snn_avg.toml --data-dir data/mnist-10k
"""
import argparse
import hashlib
import os
import pathlib
import shutil
import struct
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
from minimal_ep.run.datasets import SHA256, load_idx  # noqa: E402

SUBSET = ("train-subset-10k.npz", "f1a23f2fb1a1c97bb00a811807ddd50a888dbcdcdead94147993273c22ee3f37")
TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def checked(path, expected):
    """``path`` if its SHA-256 is ``expected``; exit 2 with one line otherwise."""
    if not path.is_file():
        sys.exit(f"prepare_mnist_subset: error: {path} not found (give --source)")
    actual = sha256(path)
    if actual != expected:
        sys.exit(f"prepare_mnist_subset: error: {path}: SHA-256 {actual}, expected {expected}")
    return path


def idx_bytes(array):
    """An uncompressed IDX file: (N, 28, 28) uint8 images (magic 2051) or (N,) uint8 labels (2049)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = 2048 + array.ndim                          # 0x08 = unsigned byte, then the dimension count
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_atomic(path, data):
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def prepare(source, out):
    """Write the five files into ``out``; returns {file name: SHA-256}."""
    source, out = pathlib.Path(source), pathlib.Path(out)
    with np.load(checked(source / SUBSET[0], SUBSET[1])) as z:
        images, labels = z["images"], z["labels"]
    if images.shape != (10000, 28, 28) or labels.shape != (10000,) or int(labels.max()) > 9:
        sys.exit(f"prepare_mnist_subset: error: unexpected arrays {images.shape} {labels.shape}")
    test = [checked(source / f, SHA256["mnist"][f]) for f in TEST_FILES]
    test_images = load_idx(test[0])
    overlap = {row.tobytes() for row in images.reshape(len(images), -1)} & \
              {row.tobytes() for row in test_images.reshape(len(test_images), -1)}
    if overlap:
        sys.exit(f"prepare_mnist_subset: error: {len(overlap)} training images also appear in the test set")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "train-images-idx3-ubyte", idx_bytes(images))
    write_atomic(out / "train-labels-idx1-ubyte", idx_bytes(labels))
    for f in test:
        tmp = out / f".{f.name}.tmp{os.getpid()}"
        shutil.copyfile(f, tmp)
        os.replace(tmp, out / f.name)
    names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", *TEST_FILES]
    sums = {name: sha256(out / name) for name in names}
    counts = np.bincount(labels, minlength=10)
    text = (f"MNIST for the figure checkpoints, written by scripts/prepare_mnist_subset.py.\n"
            f"train: {SUBSET[0]} (sha256 {SUBSET[1]}), 10000 random official training images, "
            f"per class {counts.tolist()}; none of them is in the test set.\n"
            f"test: the official t10k files, copied.\n"
            + "".join(f"{name}  {s}\n" for name, s in sums.items()))
    write_atomic(out / "SOURCE.txt", text.encode())
    return sums


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=pathlib.Path, default=REPO / "data" / "mnist-10k",
                   help="output folder (default: %(default)s)")
    p.add_argument("--source", type=pathlib.Path, default=REPO.parent / "shared" / "data" / "mnist",
                   help=f"folder with {SUBSET[0]} and the official t10k .gz files (default: %(default)s)")
    args = p.parse_args(argv)
    for name, s in prepare(args.source, args.out).items():
        print(f"{args.out / name}  sha256 {s}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
