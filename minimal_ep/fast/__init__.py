"""The fast path: the same numbers as the readable core, arranged for speed.

Entered at one seam, when a network is built: ``build_network(..., fast=True)`` (the default) calls
:func:`accelerate`, which swaps each conv layer for its fused twin of :mod:`minimal_ep.fast.layers`
(conv + pooling as one, the batch next to the pixels, reused buffers, :mod:`minimal_ep.fast.ops`)
and a spiking network's channel for :class:`~minimal_ep.fast.spiking.FastChannel` (fewer temporaries),
and asks glibc's allocator to keep freed memory (:func:`keep_freed_memory`). With more than one BLAS
thread the large memory-bound passes are split over as many threads (:func:`minimal_ep.fast.ops.threads`).
Nothing in the readable core imports this package, and nothing here checks a switch: a network is
fast or readable from the day it is built, and ``fast=False`` runs the code of ``minimal_ep/`` line by
line. The tests compare a fast and a readable network on every layer method, state and gradient.
"""
import ctypes
import ctypes.util
import sys

from .layers import ConvAvgPool, ConvMaxPool, box_kernel, box_kernel_adjoint
from .ops import clear_scratch, gemm
from .spiking import FastChannel
from ..layers import ConvPool
from ..pooling import AvgPool, MaxPool
from ..spiking import Channel

FAST_LAYERS = {AvgPool: ConvAvgPool, MaxPool: ConvMaxPool}     # pooling kind -> fused conv layer


def fast_layer(layer):
    """The fused twin of a readable conv layer (the same shapes and pooling); other layers as they are."""
    if type(layer) is not ConvPool or type(layer.pool) not in FAST_LAYERS:
        return layer
    return FAST_LAYERS[type(layer.pool)](layer.in_shape, layer.shape[0], layer.kernel_size,
                                         layer.padding, layer.pool)


def fast_channel(channel):
    """The fast twin of a readable spiking channel (the same lam, v_th and surrogate); others as they are."""
    if type(channel) is not Channel:
        return channel
    return FastChannel(channel.lam, channel.v_th, channel.surrogate_width)


# glibc's malloc gives large freed blocks back to the system and maps fresh zero pages for the next
# allocation: every array of a step then costs page faults (the states, the total inputs and the
# drives of a 50-image batch are 0.1-1 MB each, allocated and freed at every step: 8000 faults per
# quickstart batch, 5-30% of its time). The fast path asks it once to keep what it frees
# (mallopt(3): blocks below 32 MiB come from the heap, and 256 MiB freed at its top stay mapped);
# the process keeps the memory of its largest step instead of returning it between steps. Other C
# libraries, and platforms without mallopt, are left alone.
M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3
_MALLOC_TUNED = []


def keep_freed_memory(top_pad=256 << 20, mmap_threshold=32 << 20):
    """Ask glibc's malloc to keep freed memory for the next allocation (once per process); True if it did."""
    if not _MALLOC_TUNED:
        ok = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                ok = (libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
                      and libc.mallopt(M_TOP_PAD, top_pad) == 1)
            except (OSError, AttributeError):          # not glibc (musl has no mallopt), or no libc found
                ok = False
        _MALLOC_TUNED.append(ok)
    return _MALLOC_TUNED[0]


def accelerate(net):
    """Swap ``net``'s conv layers for their fused twins and a spiking net's channel for the fast one, in
    place (and tune the allocator once: :func:`keep_freed_memory`); returns ``net``."""
    keep_freed_memory()
    net.layers = [None] + [fast_layer(layer) for layer in net.layers[1:]]
    if getattr(net, "channel", None) is not None:
        net.channel = fast_channel(net.channel)
    return net


__all__ = ["accelerate", "fast_layer", "fast_channel", "keep_freed_memory", "clear_scratch", "gemm", "ConvAvgPool",
           "ConvMaxPool", "FastChannel", "box_kernel", "box_kernel_adjoint", "FAST_LAYERS"]
