#!/usr/bin/env python
"""Build the embedded data subsets ``minimal_ep/data/{mnist,fashion-mnist}-subset.npz``.

Each subset holds a class-stratified random sample (fixed seed) of 500 training and 100 test
images per class: ``train_images`` uint8 (5000, 28, 28), ``train_labels`` uint8 (5000,),
``test_images`` uint8 (1000, 28, 28), ``test_labels`` uint8 (1000,).

Sources (in ``--source``, by default ``../shared/data`` next to the repository):

* Fashion-MNIST: the four official IDX files in ``fashion-mnist/``.
* MNIST: the official test IDX files in ``mnist/`` for the test split and, because the full
  training images are not available on the build machine, ``mnist/train-subset-10k.npz``
  (10000 random official training images, keys ``images`` and ``labels``) for the training split.

Every source file is checked against its SHA-256 first. The .npz files are written like
``numpy.savez_compressed`` but with fixed zip timestamps, so a rebuild gives identical bytes; each is
written to a temporary name and then renamed. Usage::

    python scripts/build_embedded_data.py --source ../shared/data
"""

import argparse
import hashlib
import os
import pathlib
import sys
import zipfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
from minimal_ep.run.datasets import SHA256, load_idx  # noqa: E402

SEED = 20240607
TRAIN_PER_CLASS, TEST_PER_CLASS = 500, 100
MNIST_TRAIN_SUBSET = ("train-subset-10k.npz",
                      "f1a23f2fb1a1c97bb00a811807ddd50a888dbcdcdead94147993273c22ee3f37")


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def checked(path, expected):
    actual = sha256(path)
    if actual != expected:
        sys.exit(f"{path}: SHA-256 {actual}, expected {expected}")
    return path


def read_sources(source, name):
    """Return (train_images, train_labels, test_images, test_labels) of the source files."""
    d = source / name
    idx = {f: load_idx(checked(d / f, h)) for f, h in SHA256[name].items() if (d / f).exists()}
    test = idx["t10k-images-idx3-ubyte.gz"], idx["t10k-labels-idx1-ubyte.gz"]
    if name == "fashion-mnist":
        return idx["train-images-idx3-ubyte.gz"], idx["train-labels-idx1-ubyte.gz"], *test
    fname, expected = MNIST_TRAIN_SUBSET
    with np.load(checked(d / fname, expected)) as z:
        return z["images"], z["labels"], *test


def stratified(labels, per_class, rng):
    """Indices of `per_class` examples of each class 0..9 drawn without replacement, shuffled."""
    idx = np.concatenate([np.sort(rng.choice(np.flatnonzero(labels == c), per_class, replace=False))
                          for c in range(10)])
    return idx[rng.permutation(len(idx))]


def write_npz(path, arrays):
    """Like ``np.savez_compressed`` but reproducible (fixed timestamps); atomic (temp, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                with zf.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(value), allow_pickle=False)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=pathlib.Path, default=REPO.parent / "shared" / "data",
                        help="directory with mnist/ and fashion-mnist/ (default: %(default)s)")
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "minimal_ep" / "data",
                        help="output directory (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=SEED, help="default: %(default)s")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    total = 0
    for k, name in enumerate(("mnist", "fashion-mnist")):
        rng = np.random.default_rng([args.seed, k])
        train_x, train_y, test_x, test_y = read_sources(args.source, name)
        tr, te = stratified(train_y, TRAIN_PER_CLASS, rng), stratified(test_y, TEST_PER_CLASS, rng)
        arrays = {"train_images": train_x[tr], "train_labels": train_y[tr],
                  "test_images": test_x[te], "test_labels": test_y[te]}
        assert all(a.dtype == np.uint8 for a in arrays.values())
        path = args.out / f"{name}-subset.npz"
        write_npz(path, arrays)
        size = path.stat().st_size
        total += size
        print(f"{path}  {size} bytes  sha256 {sha256(path)}")
    print(f"total {total} bytes ({total / 2**20:.2f} MiB)")


if __name__ == "__main__":
    main()
