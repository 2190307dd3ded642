"""From uint8 images to float batches: the two steps between a data set and a network.

``to_float_images`` scales pixels into [0, 1] (the range the networks' states live in) and adds the
channel axis; ``iterate_batches`` visits the examples once per epoch, shuffled by a seeded RNG.
"""
import numpy as np


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
