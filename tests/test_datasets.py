"""Tests of minimal_ep.run.datasets: IDX parsing, checksums, lookup order, download, embedded subsets."""

import gzip
import hashlib
import importlib.util
import pathlib
import struct
import urllib.request

import numpy as np
import pytest

from minimal_ep import datasets
from minimal_ep.run import config, idx_files

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not present")


# ----------------------------------------------------------------------------- helpers

def idx_bytes(array):
    """A hand-written IDX file: magic (0x08 = ubyte, ndim), the sizes, then the data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def fake_arrays(seed=0, n_train=12, n_test=7):
    rng = np.random.default_rng(seed)
    return {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
            "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8)}


def write_fake(directory, arrays, gz=True):
    """Write the four files into `directory`; return {file name: sha256}."""
    directory.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for stem, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            data = gzip.compress(data, mtime=0)
        name = stem + (".gz" if gz else "")
        (directory / name).write_bytes(data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Keep every test away from the real cache, $MINIMAL_EP_DATA and /usr/share/datasets."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("MINIMAL_EP_DATA", raising=False)
    monkeypatch.setattr(datasets, "DEBIAN_DIR", tmp_path / "debian")


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch):
    """Small fake MNIST .gz files in tmp_path/src, with the checksum table patched to match."""
    arrays = fake_arrays()
    hashes = write_fake(tmp_path / "src", arrays)
    monkeypatch.setitem(datasets.SHA256, "mnist", hashes)
    return tmp_path / "src", arrays, hashes


# ----------------------------------------------------------------------------- names, IDX parsing

def test_canonical_name():
    assert datasets.canonical_name("MNIST") == "mnist"
    for alias in ("fashion-mnist", "fashion_mnist", "fmnist"):
        assert datasets.canonical_name(alias) == "fashion-mnist"
    with pytest.raises(ValueError, match="allowed: .*fmnist.*mnist"):
        datasets.canonical_name("cifar10")
    with pytest.raises(ValueError):
        datasets.canonical_name(None)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    for stem, array in (("im", images), ("lab", labels)):
        data = idx_bytes(array)
        path = tmp_path / (stem + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        loaded = datasets.load_idx(path)
        assert loaded.dtype == np.uint8 and loaded.shape == array.shape
        np.testing.assert_array_equal(loaded, array)


@pytest.mark.parametrize("case, message", [
    ("magic", "wrong magic number 2052"),
    ("truncated", "truncated, header promises 2352"),
    ("dims", "27 x 28, expected 28 x 28"),
    ("long", "too long"),
    ("header", "shorter than its 16-byte header"),
    ("badgzip", "cannot read"),
])
def test_idx_errors_name_the_file(tmp_path, case, message):
    good = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    data = {"magic": struct.pack(">I", 2052) + good[4:],
            "truncated": good[:-10],
            "dims": idx_bytes(np.zeros((3, 27, 28), np.uint8)),
            "long": good + b"\0",
            "header": good[:10],
            "badgzip": b"not gzip at all"}[case]
    path = tmp_path / f"bad-{case}.gz"
    path.write_bytes(data if case == "badgzip" else gzip.compress(data))
    with pytest.raises(ValueError, match=message) as err:
        datasets.load_idx(path)
    assert str(path) in str(err.value)


def test_truncated_gzip_stream_is_value_error(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))[:-20])
    with pytest.raises(ValueError, match="cut.gz"):
        datasets.load_idx(path)


# ----------------------------------------------------------------------------- local files

def test_load_full_from_data_dir(fake_mnist):
    src, arrays, _ = fake_mnist
    data = datasets.load_dataset("mnist", source="full", data_dir=src, download=False)
    assert data["source"] == str(src)
    np.testing.assert_array_equal(data["train_images"], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(data["test_labels"], arrays["t10k-labels-idx1-ubyte"])
    assert data["train_labels"].dtype == np.int64 and data["train_images"].dtype == np.uint8


def test_uncompressed_files_are_verified_by_their_content(tmp_path, monkeypatch):
    arrays = fake_arrays()
    write_fake(tmp_path / "raw", arrays, gz=False)  # no known content: refused, naming the file
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: not the mnist file .* content has SHA-256"):
        datasets.load_dataset("mnist", source="full", data_dir=tmp_path / "raw", download=False)
    table = {stem: dict(known) for stem, known in idx_files.KNOWN_CONTENT["mnist"].items()}
    for stem in arrays:
        table[stem][hashlib.sha256((tmp_path / "raw" / stem).read_bytes()).hexdigest()] = "a test subset"
    monkeypatch.setitem(idx_files.KNOWN_CONTENT, "mnist", table)
    data = datasets.load_dataset("mnist", source="full", data_dir=tmp_path / "raw", download=False)
    np.testing.assert_array_equal(data["test_images"], arrays["t10k-images-idx3-ubyte"])
    assert {f["content"] for f in data["files"].values()} == {"a test subset"}


def test_known_contents_are_the_decompressed_official_files():
    """Every official content checksum is that of a .gz whose official SHA-256 is known (both tables agree)."""
    for name, stems in idx_files.KNOWN_CONTENT.items():
        assert set(stems) == set(datasets.FILES)
        for stem, known in stems.items():
            assert all(len(sha) == 64 for sha in known) and f"{stem}.gz" in datasets.SHA256[name]
    assert idx_files.OFFICIAL not in idx_files.KNOWN_CONTENT["mnist"]["train-images-idx3-ubyte"].values()


@needs_shared
@pytest.mark.parametrize("name", datasets.DATASETS)
def test_gunzipped_official_files_are_verified(tmp_path, name):
    for gz in sorted((SHARED / name).glob("*.gz")):
        raw = tmp_path / gz.name[:-3]
        raw.write_bytes(gzip.decompress(gz.read_bytes()))
        array, record = idx_files.verify_file(name, raw)
        assert record["content"] == "official" and record["content_sha256"] == record["sha256"]
        assert record["content_sha256"] == idx_files.verify_file(name, gz)[1]["content_sha256"]


def _prepare_mnist_subset():
    path = REPO / "scripts" / "prepare_mnist_subset.py"
    spec = importlib.util.spec_from_file_location("prepare_mnist_subset", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_shared
def test_the_mnist_10k_subset_is_a_known_derived_set(tmp_path):
    """data/mnist-10k (scripts/prepare_mnist_subset.py) is not official: it is verified as what it is."""
    sums = _prepare_mnist_subset().prepare(SHARED / "mnist", tmp_path / "mnist-10k")
    data = datasets.load_dataset("mnist", source="full", data_dir=tmp_path / "mnist-10k", download=False)
    contents = {name: f["content"] for name, f in data["files"].items()}
    assert contents == {"train-images-idx3-ubyte": idx_files.MNIST_10K, "train-labels-idx1-ubyte": idx_files.MNIST_10K,
                        "t10k-images-idx3-ubyte.gz": "official", "t10k-labels-idx1-ubyte.gz": "official"}
    assert all(data["files"][name]["sha256"] == sha for name, sha in sums.items())
    assert data["train_images"].shape == (10000, 28, 28)


@pytest.mark.skipif(not (REPO / "data" / "mnist-10k").is_dir(), reason="data/mnist-10k not prepared")
@pytest.mark.parametrize("path", sorted((REPO / "configs" / "laptop").glob("mnist_*.toml")), ids=lambda p: p.stem)
def test_the_configs_reading_mnist_10k_load_it(path, monkeypatch):
    monkeypatch.chdir(REPO)                                  # data_dir is relative to the repository
    cfg = config.resolve(path)
    assert cfg.data.data_dir == "data/mnist-10k"
    data = datasets.load_dataset(cfg.data.dataset, source=cfg.data.source, data_dir=cfg.data.data_dir)
    assert data["files"]["train-images-idx3-ubyte"]["content"] == idx_files.MNIST_10K


def test_corrupt_gz_reports_expected_and_actual_hash(fake_mnist):
    src, _, hashes = fake_mnist
    bad = src / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:-5])  # truncated download
    actual = hashlib.sha256(bad.read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="SHA-256 mismatch") as err:
        datasets.load_dataset("mnist", source="full", data_dir=src, download=False)
    msg = str(err.value)
    assert str(bad) in msg and hashes[bad.name] in msg and actual in msg


def test_lookup_order(tmp_path, monkeypatch, fake_mnist):
    arrays = fake_mnist[1]
    env, xdg = tmp_path / "env", tmp_path / "xdg"
    places = [env / "mnist", env,  # <dir>/<name> and <dir> itself both work
              xdg / "minimal_ep" / "mnist", datasets.DEBIAN_DIR / "mnist"]
    for place in places:
        write_fake(place, arrays)
    monkeypatch.setenv("MINIMAL_EP_DATA", str(env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    assert datasets.search_dirs("mnist") == places
    for place in places:  # remove the winner each time: the next one in the order takes over
        assert datasets.find_dataset("mnist") == place
        for f in place.glob("*.gz"):
            f.unlink()
    assert datasets.find_dataset("mnist") is None


def test_a_named_data_dir_is_the_only_place_read(tmp_path, monkeypatch, fake_mnist):
    """--data-dir DIR: DIR or DIR/<name>, never a fallback to $MINIMAL_EP_DATA, the cache or a download."""
    src, arrays, _ = fake_mnist
    monkeypatch.setenv("MINIMAL_EP_DATA", str(src))               # complete files elsewhere
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [src.as_uri()])
    mine = tmp_path / "mine"
    assert datasets.search_dirs("mnist", mine) == [mine / "mnist", mine]
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load_dataset("mnist", source="full", data_dir=mine)
    msg = str(err.value)
    assert "\n" not in msg and str(mine) in msg and "does not exist" in msg
    assert all(stem in msg for stem in datasets.FILES)
    assert not (tmp_path / "home" / ".cache").exists()               # nothing was downloaded
    write_fake(mine, arrays)
    (mine / "t10k-labels-idx1-ubyte.gz").unlink()                     # a missing labels file is named
    with pytest.raises(datasets.DatasetNotFoundError, match=r"lacks t10k-labels-idx1-ubyte\[\.gz\]$"):
        datasets.load_dataset("mnist", source="full", data_dir=mine)
    with pytest.raises(ValueError, match="needs source='full'"):
        datasets.load_dataset("mnist", source="embedded", data_dir=mine)


def test_load_dataset_records_the_files_it_read(fake_mnist):
    src, _, hashes = fake_mnist
    data = datasets.load_dataset("mnist", source="full", data_dir=src, download=False)
    contents = {name: hashlib.sha256(gzip.decompress((src / name).read_bytes())).hexdigest() for name in hashes}
    assert data["files"] == {name: {"path": str((src / name).resolve()), "sha256": h,
                                    "content_sha256": contents[name], "content": "official"}
                             for name, h in hashes.items()}
    embedded = datasets.load_dataset("mnist")["files"]
    (record,) = embedded.values()
    path = pathlib.Path(record["path"])
    assert path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]


def test_status_verifies_what_it_reports_as_found(tmp_path, monkeypatch, fake_mnist):
    src, _, _ = fake_mnist
    status = {s["name"]: s for s in datasets.dataset_status(src)}
    assert status["mnist"]["found"] == src and status["mnist"]["problems"] == []
    labels = src / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-3])                     # damaged after the download
    status = {s["name"]: s for s in datasets.dataset_status(src)}
    (problem,) = status["mnist"]["problems"]
    assert "train-labels-idx1-ubyte.gz" in problem and "SHA-256 mismatch" in problem
    labels.unlink()
    status = {s["name"]: s for s in datasets.dataset_status(src)}
    assert status["mnist"]["found"] is None
    assert status["mnist"]["incomplete"] == [(src, ["train-labels-idx1-ubyte"])]


def test_cache_default_is_home_dot_cache(tmp_path, fake_mnist):
    cache = tmp_path / "home" / ".cache" / "minimal_ep" / "mnist"
    write_fake(cache, fake_mnist[1])
    assert datasets.find_dataset("mnist") == cache
    status = {s["name"]: s for s in datasets.dataset_status()}
    assert status["mnist"]["found"] == cache and cache in status["mnist"]["search_dirs"]
    assert status["fashion-mnist"]["found"] is None
    assert status["mnist"]["embedded"] == {"train": 5000, "test": 1000}


# ----------------------------------------------------------------------------- download

def test_download_second_mirror_and_atomic_rename(tmp_path, fake_mnist):
    src, arrays, hashes = fake_mnist
    mirrors = [(tmp_path / "nowhere").as_uri() + "/", src.as_uri()]
    dest = datasets.download("mnist", dest=tmp_path / "dl", mirrors=mirrors, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == sorted(hashes)  # no temporary files left
    for name, h in hashes.items():
        assert hashlib.sha256((dest / name).read_bytes()).hexdigest() == h


def test_load_full_downloads_into_cache(tmp_path, monkeypatch, fake_mnist):
    src, arrays, _ = fake_mnist
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [src.as_uri()])  # the module-level override
    data = datasets.load_dataset("mnist", source="full")
    cache = tmp_path / "home" / ".cache" / "minimal_ep" / "mnist"
    assert data["source"] == str(cache)
    np.testing.assert_array_equal(data["train_images"], arrays["train-images-idx3-ubyte"])


def test_download_checksum_mismatch_is_error_and_leaves_nothing(tmp_path, fake_mnist):
    src, _, hashes = fake_mnist
    (src / "train-labels-idx1-ubyte.gz").write_bytes(b"wrong content")
    dest = tmp_path / "dl"
    with pytest.raises(datasets.DatasetNotFoundError, match="SHA-256 mismatch"):
        datasets.download("mnist", dest=dest, mirrors=[src.as_uri()], progress=False)
    # the file before it in the table was completed; the bad one left no file, partial or final
    assert sorted(p.name for p in dest.iterdir()) == ["train-images-idx3-ubyte.gz"]


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch, fake_mnist):
    class Broken:
        headers = {"Content-Length": "1000000"}
        def __init__(self): self.calls = 0
        def read(self, n):
            self.calls += 1
            if self.calls > 2:
                raise ConnectionResetError("connection reset")
            return b"x" * n
        def __enter__(self): return self
        def __exit__(self, *exc): return False

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken())
    dest = tmp_path / "dl"
    with pytest.raises(datasets.DatasetNotFoundError, match="connection reset"):
        datasets.download("mnist", dest=dest, mirrors=["https://a.invalid/", "https://b.invalid/"],
                          progress=False)
    assert list(dest.iterdir()) == []


def test_offline_error_message(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIMAL_EP_DATA", str(tmp_path / "env"))
    mirrors = [(tmp_path / "m1").as_uri(), (tmp_path / "m2").as_uri()]
    with pytest.raises(datasets.DatasetNotFoundError) as err:
        datasets.load_dataset("fmnist", source="full", mirrors=mirrors)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    assert "'fashion-mnist'" in msg
    for d in datasets.search_dirs("fashion-mnist"):
        assert str(d) in msg
    for name, h in datasets.SHA256["fashion-mnist"].items():
        assert f"{name}  {h}" in msg
    assert str(tmp_path / "m1") in msg and str(tmp_path / "m2") in msg  # the download errors
    assert "mkdir -p" in msg and "MINIMAL_EP_DATA" in msg and "--data-dir" in msg
    with pytest.raises(datasets.DatasetNotFoundError, match="download disabled"):
        datasets.load_dataset("mnist", source="full", download=False)


def test_bad_source():
    with pytest.raises(ValueError, match="'embedded' or 'full'"):
        datasets.load_dataset("mnist", source="internet")


# ----------------------------------------------------------------------------- embedded subsets

@pytest.mark.parametrize("name", datasets.DATASETS)
def test_embedded_subset(name):
    data = datasets.load_dataset(name)
    assert data["source"] == "embedded"
    for split, n in (("train", 5000), ("test", 1000)):
        images, labels = data[f"{split}_images"], data[f"{split}_labels"]
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.int64
        np.testing.assert_array_equal(np.bincount(labels, minlength=10), [n // 10] * 10)
    with np.load(datasets.EMBEDDED_DIR / f"{name}-subset.npz") as z:
        assert all(z[k].dtype == np.uint8 for k in z.files)


def test_embedded_subsets_are_checked_against_their_sha256(monkeypatch):
    for name in datasets.DATASETS:
        path = datasets.EMBEDDED_DIR / f"{name}-subset.npz"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == datasets.EMBEDDED_SHA256[path.name]
    monkeypatch.setitem(datasets.EMBEDDED_SHA256, "mnist-subset.npz", "0" * 64)
    with pytest.raises(ValueError, match="mnist-subset.npz: SHA-256 .* is not the embedded subset's"):
        datasets.load_dataset("mnist")


def test_embedded_size_budget():
    total = sum((datasets.EMBEDDED_DIR / f"{n}-subset.npz").stat().st_size for n in datasets.DATASETS)
    assert total < 5 * 2**20


@needs_shared
@pytest.mark.parametrize("name", datasets.DATASETS)
def test_embedded_test_images_are_official(name):
    official = {}
    images = datasets.load_idx(SHARED / name / "t10k-images-idx3-ubyte.gz")
    labels = datasets.load_idx(SHARED / name / "t10k-labels-idx1-ubyte.gz")
    for image, label in zip(images, labels):
        official.setdefault(image.tobytes(), set()).add(int(label))
    data = datasets.load_dataset(name)
    for image, label in zip(data["test_images"], data["test_labels"]):
        assert int(label) in official[image.tobytes()]
    assert len({im.tobytes() for im in data["test_images"]} & {im.tobytes() for im in data["train_images"]}) == 0


@needs_shared
def test_embedded_mnist_train_images_come_from_the_10k_subset():
    with np.load(SHARED / "mnist" / "train-subset-10k.npz") as z:
        source = {im.tobytes(): int(y) for im, y in zip(z["images"], z["labels"])}
    data = datasets.load_dataset("mnist")
    assert all(source[im.tobytes()] == y for im, y in zip(data["train_images"], data["train_labels"]))


@needs_shared
def test_real_fashion_mnist_files():
    data = datasets.load_dataset("fashion-mnist", source="full", data_dir=SHARED, download=False)
    assert data["source"] == str(SHARED / "fashion-mnist")  # all four checksums were verified
    assert data["train_images"].shape == (60000, 28, 28) and data["test_images"].shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(data["test_labels"]), [1000] * 10)
    embedded = datasets.load_dataset("fashion-mnist")  # embedded train images come from here
    train = {im.tobytes() for im in data["train_images"]}
    assert all(im.tobytes() in train for im in embedded["train_images"])


# ----------------------------------------------------------------------------- batches

@pytest.mark.parametrize("dtype", ["float32", "float64", np.float32])
def test_to_float_images(dtype):
    row = np.tile(np.array([0, 127, 128, 255], np.uint8), 7)  # 28 pixels
    images = np.broadcast_to(row, (3, 28, 28)).copy()
    x = datasets.to_float_images(images, dtype=dtype)
    assert x.shape == (3, 1, 28, 28) and x.dtype == np.dtype(dtype)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_allclose(x[0, 0, 0, :4], [0, 127 / 255, 128 / 255, 1], rtol=1e-6)
    b = datasets.to_float_images(images, normalize="binary")
    assert b.dtype == np.float32 and set(np.unique(b)) == {0.0, 1.0}
    np.testing.assert_array_equal(b[0, 0, 0, :4], [0, 0, 1, 1])


def test_to_float_images_errors():
    images = np.zeros((2, 28, 28), np.uint8)
    with pytest.raises(ValueError, match="'unit' or 'binary'"):
        datasets.to_float_images(images, normalize="standard")
    with pytest.raises(ValueError, match="float32"):
        datasets.to_float_images(images, dtype="float16")
    with pytest.raises(ValueError, match="uint8"):
        datasets.to_float_images(images.astype(np.float32))


@pytest.mark.parametrize("n, batch_size", [(10, 3), (9, 3), (5, 8), (0, 4)])
def test_iterate_batches_covers_each_index_once(n, batch_size):
    for shuffle in (False, True):
        batches = list(datasets.iterate_batches(n, batch_size, shuffle, np.random.default_rng(0)))
        assert [len(b) for b in batches] == [min(batch_size, n - i) for i in range(0, n, batch_size)]
        np.testing.assert_array_equal(np.sort(np.concatenate(batches + [np.arange(0)])), np.arange(n))


def test_iterate_batches_reproducible_and_errors():
    runs = [np.concatenate(list(datasets.iterate_batches(100, 7, True, np.random.default_rng(s))))
            for s in (3, 3, 4)]
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
    np.testing.assert_array_equal(np.concatenate(list(datasets.iterate_batches(10, 4, False))), np.arange(10))
    with pytest.raises(ValueError, match="batch_size"):
        datasets.iterate_batches(10, 0, False)
    with pytest.raises(ValueError, match="Generator"):
        datasets.iterate_batches(10, 2, True, rng=None)
