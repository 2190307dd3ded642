"""The fast convolutions: the ops of :mod:`minimal_ep.conv`, the same numbers arranged for speed.

Read :mod:`minimal_ep.conv` first; this module changes how the arrays are laid out in memory, never
what is computed. Its callers are the fast layers (:mod:`minimal_ep.fast.layers`), which pass
arguments they have already checked; nothing in the readable core calls it. The tests compare every
op with the readable one.

The arrangements:

* **The batch next to the pixels.** With im2col's (N, C*KH*KW, OH*OW) layout a convolution is N
  matrix products, each only OH*OW columns wide (121 for the 11x11 maps of the paper's second conv
  layer), and BLAS runs such thin products far below its peak. The columns laid out as
  (C*KH*KW, N*OH*OW) make the whole batch ONE product with N*OH*OW columns. The price is one
  transposing copy of the image and one of the result, each C*KH*KW (or C_out) times smaller than
  the columns. Wide maps (256+ pixels per sample) are wide enough already and keep im2col's layout.
* **Reused buffers.** A phase calls the same convolutions on the same shapes hundreds of times; their
  column matrices (15-70 MB each for the paper's network at batch 125) are temporaries that never
  leave this module. A fresh allocation of that size costs page faults on every step (~20% of a
  2C2FC step), so they are kept in a small cache keyed by (role, shape, dtype, device) and reused.
  A buffer is never returned to the caller: every result is a new array.
* **Only what is read.** Max pooling reads the first (OH // F) F x (OW // F) F outputs of a
  convolution (6x6 of a 7x7 map, 2x2 of a 3x3 one): ``out_size`` computes only those columns, and
  the transposed convolution of such a block sums only them (col2im clipped to the image, the
  padding never computed, the centre offset written instead of zeroing the image first).
* **Windows as axes.** Max pooling and unpooling work on a reshaped view of the batch-last map,
  ``(C, OH, F, OW, F, N)``: the window offsets are axes, nothing is gathered; the offsets are kept
  in one byte (uint8) and blended with arithmetic.

And one helper for more than one BLAS thread: BLAS runs a product on all its threads, NumPy a copy
or a ufunc on one. :func:`by_channel` splits the large memory-bound passes of this module (im2col's
copies, col2im's sums, the batch-last transposes, max pooling and unpooling) into channel blocks run
on that many threads (NumPy releases the GIL inside each copy and ufunc); the blocks are disjoint,
so the numbers are the same as on one thread.
"""
import os
from concurrent.futures import ThreadPoolExecutor

from .. import conv as _conv
from ..backend import get_array_module


# ----------------------------------------------------------------------------- scratch buffers
_SCRATCH = {}                # (role, shape, dtype, backend, device) -> buffer, oldest first
SCRATCH_BYTES = 1 << 30      # at most this much kept; beyond it the oldest buffers are released


def _scratch(like, role, shape, dtype=None, zeroed=False):
    """A reusable uninitialised array for the temporary ``role``, on ``like``'s device, of ``like``'s dtype
    (or ``dtype``). ``zeroed``: filled with zeros when it is first made (then left to its users: a
    padded image whose border nobody writes stays zero)."""
    xp = get_array_module(like)
    dtype = like.dtype if dtype is None else xp.dtype(dtype)
    key = (role, tuple(shape), dtype, xp.__name__, getattr(like, "device", None))
    buf = _SCRATCH.pop(key, None)
    if buf is None:
        buf = xp.zeros(shape, dtype=dtype) if zeroed else xp.empty(shape, dtype=dtype)
        while _SCRATCH and sum(b.nbytes for b in _SCRATCH.values()) + buf.nbytes > SCRATCH_BYTES:
            del _SCRATCH[next(iter(_SCRATCH))]
    _SCRATCH[key] = buf                                  # now the most recently used
    return buf


def clear_scratch():
    """Release the scratch buffers (memory measurements start from an empty cache)."""
    _SCRATCH.clear()


def gemm(a, b, out=None):
    """``a @ b`` (``out``: where to write it): every matrix product of the fast path goes through
    here, the one place a benchmark needs to time or count to see how much of a step is GEMM."""
    return get_array_module(a, b).matmul(a, b, out=out)


# ----------------------------------------------------------------------------- passes split over threads
PARALLEL_MIN = 1 << 17       # elements: a smaller pass stays on one thread (a dispatch costs ~25 us)
_THREADS = []                # [threads, executor or None], set on first use
if hasattr(os, "register_at_fork"):                  # a forked child has no worker threads: ask again
    os.register_at_fork(after_in_child=_THREADS.clear)


def threads(n=None):
    """The threads the memory-bound passes are split over: ``n`` if given (from now on), else the BLAS
    library's thread count when first asked (``minimal-ep --threads N``, OPENBLAS_NUM_THREADS=N)."""
    if n is not None or not _THREADS:
        if n is None:
            try:
                from threadpoolctl import threadpool_info
                n = min([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] or [1])
            except Exception:                        # no threadpoolctl or no BLAS it knows: one thread
                n = 1
            n = max(1, min(n, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else n))
        if _THREADS and _THREADS[1] is not None:
            _THREADS[1].shutdown()
        _THREADS[:] = [n, ThreadPoolExecutor(n - 1, thread_name_prefix="minimal_ep") if n > 1 else None]
    return _THREADS[0]


def by_channel(like, C, size, run):
    """``run(c0, c1)`` over channel blocks covering 0..C-1: one call, or one block per thread when there
    are several (:func:`threads`), the pass moves ``size`` elements or more and ``like`` is a NumPy array.
    ``run`` must touch only channels c0..c1-1 of what it writes."""
    n = threads()
    if n == 1 or C < 2 or size < PARALLEL_MIN or get_array_module(like).__name__ != "numpy":
        run(0, C)
        return
    n = min(n, C)
    bounds = [C * k // n for k in range(n + 1)]
    jobs = [_THREADS[1].submit(run, bounds[k], bounds[k + 1]) for k in range(1, n)]
    run(bounds[0], bounds[1])
    for job in jobs:
        job.result()


def per_sample(OH, OW):
    """Whether one product per sample is already wide enough for BLAS (maps of 256+ pixels)."""
    return OH * OW >= 256


# ----------------------------------------------------------------------------- batch-last columns
def to_batch_last(x, padding=0, role="img"):
    """(N, C, H, W) -> (C, H + 2*padding, W + 2*padding, N), zero-padded: the batch innermost.

    A scratch buffer (valid until the next call with the same role, padding and shape). Its border
    is zeroed once, when the buffer is made: every call writes the same interior and nothing else.
    """
    N, C, H, W = x.shape
    img = _scratch(x, (role, padding), (C, H + 2 * padding, W + 2 * padding, N), zeroed=padding > 0)

    def block(c0, c1):
        img[c0:c1, padding:padding + H, padding:padding + W, :] = x[:, c0:c1].transpose(1, 2, 3, 0)
    by_channel(x, C, x.size, block)
    return img


def from_batch_last(y):
    """(C, H, W, N) -> (N, C, H, W), a new array."""
    out = get_array_module(y).empty((y.shape[3],) + y.shape[:3], dtype=y.dtype)

    def block(c0, c1):
        out[:, c0:c1] = y[c0:c1].transpose(3, 0, 1, 2)
    by_channel(y, y.shape[0], y.size, block)
    return out


def im2col_batched(x, KH, KW, stride, padding, out_size=None):
    """:func:`minimal_ep.conv.im2col` for the whole batch at once, the batch innermost.

    Parameters
    ----------
    x : (N, C, H, W) ndarray
    KH, KW, stride, padding : int
        As in im2col (already validated by the caller).
    out_size : (OH, OW), optional
        Only the columns of the first OH x OW outputs (default: all of them). Max pooling reads
        only the outputs its windows cover: floor pooling of a 7x7 map needs the first 6x6.

    Returns
    -------
    col : (C*KH*KW, OH*OW*N) ndarray
        ``col[(c*KH + p)*KW + q, (i*OW + j)*N + n] == xpad[n, c, i*stride + p, j*stride + q]``.
        A scratch buffer: valid until the next call with the same shape.
    """
    N, C, H, W = x.shape
    OH, OW = out_size or _out_size(x.shape, KH, KW, stride, padding)
    img = to_batch_last(x, padding)                                   # (C, Hp, Wp, N)
    col = _scratch(x, "col", (C * KH * KW, OH * OW * N)).reshape(C, KH, KW, OH, OW, N)

    def block(c0, c1):
        for p in range(KH):                  # one kernel offset at a time: a strided slice
            for q in range(KW):
                col[c0:c1, p, q] = img[c0:c1, p:p + stride * OH:stride, q:q + stride * OW:stride, :]
    by_channel(x, C, col.size, block)
    return col.reshape(C * KH * KW, OH * OW * N)


def col2im_batched(col, x_shape, KH, KW, stride, padding, out_size=None):
    """:func:`minimal_ep.conv.col2im` for the columns of :func:`im2col_batched`.

    col : (C*KH*KW, OH*OW*N) ndarray  ->  x : (N, C, H, W) ndarray (a new array).

    ``out_size`` as in im2col_batched: the columns of the first OH x OW outputs only (the others
    taken as zero). Each kernel offset's block is added straight onto the unpadded image, clipped
    to it (what would fall on the padding is never computed). Instead of zeroing the image first,
    one offset per row and column phase (``stride`` x ``stride`` offsets whose blocks tile the image
    without overlap: the centre of a 'same' convolution) is written, only what they leave
    uncovered is zeroed, and the other offsets are added: col2im's sums, in another order.
    """
    N, C, H, W = x_shape
    OH, OW = out_size or _out_size(x_shape, KH, KW, stride, padding)
    col = col.reshape(C, KH, KW, OH, OW, N)
    rows, first_rows, covered_rows = _col2im_plan(KH, stride, padding, OH, H)
    cols, first_cols, covered_cols = _col2im_plan(KW, stride, padding, OW, W)
    img = _scratch(col, "col2im_out", (C, H, W, N))
    (y0, y1), (x0, x1) = covered_rows, covered_cols
    blocks = [(p, q) for p in range(KH) for q in range(KW) if rows[p][1] > rows[p][0] and cols[q][1] > cols[q][0]]
    first = [(p, q) for p, q in blocks if p in first_rows and q in first_cols]
    order = first + [b for b in blocks if b not in first]            # the first blocks written, then the rest added

    def block(k0, k1):
        out = img[k0:k1]
        out[:, :y0] = 0                              # what the first blocks leave uncovered
        out[:, y1:] = 0
        out[:, y0:y1, :x0] = 0
        out[:, y0:y1, x1:] = 0
        for p, q in order:
            (r0, r1, i0, i1), (c0, c1, j0, j1) = rows[p], cols[q]
            target = out[:, r0:r1:stride, c0:c1:stride]
            if (p, q) in first:
                target[...] = col[k0:k1, p, q, i0:i1, j0:j1]
            else:
                target += col[k0:k1, p, q, i0:i1, j0:j1]
    by_channel(col, C, col.size, block)
    return from_batch_last(img)


_PLANS = {}


def _col2im_plan(K, stride, padding, n_out, size):
    """Along one axis: where each kernel offset's outputs land, which offsets go first, what they cover.

    Offset p puts output i on pixel ``stride*i + p - padding``; clipped to the image that is pixels
    ``r0:r1:stride`` from outputs ``i0:i1``. The first offsets: per phase ``(p - padding) % stride``
    the one reaching most pixels, kept only if together they cover a contiguous range of pixels
    exactly once (else none goes first and the whole image is zeroed). Returns
    (``[(r0, r1, i0, i1)]`` per offset, the set of first offsets, the covered range ``(a, b)``).
    """
    key = (K, stride, padding, n_out, size)
    if key not in _PLANS:
        spans = []
        for p in range(K):
            shift = p - padding
            i0 = max(0, -(shift // stride))                      # first output landing at pixel >= 0
            i1 = min(n_out, (size - 1 - shift) // stride + 1) if size - 1 - shift >= 0 else 0
            i1 = max(i1, i0)
            spans.append((stride * i0 + shift, stride * (i1 - 1) + shift + 1 if i1 > i0 else stride * i0 + shift,
                          i0, i1))
        best = {}
        for p, (r0, r1, i0, i1) in enumerate(spans):
            phase = (p - padding) % stride
            if i1 > i0 and (phase not in best or i1 - i0 > spans[best[phase]][3] - spans[best[phase]][2]):
                best[phase] = p
        covered = [0] * size
        for p in best.values():
            r0, r1, i0, i1 = spans[p]
            for r in range(r0, r1, stride):
                covered[r] += 1
        hit = [r for r in range(size) if covered[r]]
        if hit and all(covered[r] == 1 for r in range(hit[0], hit[-1] + 1)):
            _PLANS[key] = (spans, set(best.values()), (hit[0], hit[-1] + 1))
        else:
            _PLANS[key] = (spans, set(), (0, 0))
    return _PLANS[key]


# ----------------------------------------------------------------------------- the three ops
# Each op has a batch-last core (``*_bl``: maps as (C, H, W, N)) and the NCHW wrapper the public
# ops call; the fused layers below chain the cores and transpose only their small pooled maps.
def conv2d_bl(x, w, stride, padding, out_size=None):
    """The convolution of NCHW ``x`` with w, batch last: (C_out, OH, OW, N), a scratch buffer
    (``out_size``: the first OH x OW outputs only, as in im2col_batched)."""
    C_out, C, KH, KW = w.shape
    out_size = out_size or _out_size(x.shape, KH, KW, stride, padding)
    col = im2col_batched(x, KH, KW, stride, padding, out_size)       # (C*KH*KW, OH*OW*N)
    y = gemm(w.reshape(C_out, -1), col, out=_scratch(x, "gemm_out", (C_out, col.shape[1])))
    return y.reshape((C_out,) + tuple(out_size) + (len(x),))


def conv_transpose2d_bl(y, w, x_shape, stride, padding):
    """The transposed convolution of batch-last y (C_out, OH, OW, N) onto an NCHW ``x_shape`` image; y
    may hold only the first OH x OW outputs of the convolution (the rest taken as zero)."""
    C_out = y.shape[0]
    w_mat_T = w.reshape(C_out, -1).T                                  # (C*KH*KW, C_out)
    col = gemm(w_mat_T, y.reshape(C_out, -1), out=_scratch(y, "col", (w_mat_T.shape[0], y[0].size)))
    return col2im_batched(col, x_shape, w.shape[2], w.shape[3], stride, padding, y.shape[1:3])


def conv2d_weight_bl(x, gy, KH, KW, stride, padding):
    """The weight gradient of NCHW ``x`` and batch-last gy (C_out, OH, OW, N); gy may hold only the first
    OH x OW outputs (the rest taken as zero)."""
    C_out, C = gy.shape[0], x.shape[1]
    col = im2col_batched(x, KH, KW, stride, padding, gy.shape[1:3])  # (C*KH*KW, OH*OW*N)
    gw = gemm(gy.reshape(C_out, -1), col.T)                           # (C_out, C*KH*KW): one product
    return gw.reshape(C_out, C, KH, KW)


def conv2d(x, w, stride, padding):
    """:func:`minimal_ep.conv.conv2d` without the bias; x (N, C, H, W), w (C_out, C, KH, KW)."""
    C_out, C, KH, KW = w.shape
    OH, OW = _out_size(x.shape, KH, KW, stride, padding)
    if per_sample(OH, OW):                   # wide maps: one product per sample, straight into NCHW
        col = _conv.im2col(x, KH, KW, stride, padding)               # (N, C*KH*KW, OH*OW)
        return gemm(w.reshape(C_out, -1), col).reshape(len(x), C_out, OH, OW)
    return from_batch_last(conv2d_bl(x, w, stride, padding))         # (N, C_out, OH, OW)


def conv_transpose2d(y, w, x_shape, stride, padding):
    """:func:`minimal_ep.conv.conv_transpose2d` onto an image of shape ``x_shape`` (N, C, H, W)."""
    N, C_out, OH, OW = y.shape
    if per_sample(OH, OW):
        col = gemm(w.reshape(C_out, -1).T, y.reshape(N, C_out, OH * OW))   # (N, C*KH*KW, OH*OW)
        return _conv.col2im(col, x_shape, w.shape[2], w.shape[3], stride, padding)
    return conv_transpose2d_bl(to_batch_last(y, role="gemm_in"), w, x_shape, stride, padding)


def conv2d_weight(x, gy, KH, KW, stride, padding):
    """:func:`minimal_ep.conv.conv2d_weight`; x (N, C, H, W), gy (N, C_out, OH, OW)."""
    N, C_out, OH, OW = gy.shape
    if per_sample(OH, OW):
        col = _conv.im2col(x, KH, KW, stride, padding)               # (N, C*KH*KW, OH*OW)
        gy_mat = gy.reshape(N, C_out, OH * OW).transpose(1, 0, 2).reshape(C_out, N * OH * OW)
        gw = gemm(gy_mat, col.transpose(0, 2, 1).reshape(N * OH * OW, -1))   # sums over n and pixels
        return gw.reshape(C_out, x.shape[1], KH, KW)
    return conv2d_weight_bl(x, to_batch_last(gy, role="gemm_in"), KH, KW, stride, padding)


def _out_size(x_shape, KH, KW, stride, padding):
    return (_conv.conv_output_size(x_shape[2], KH, stride, padding),
            _conv.conv_output_size(x_shape[3], KW, stride, padding))


# ----------------------------------------------------------------------------- max pooling, batch last
# The F x F windows of a batch-last map z (C, H, W, N) are axes of a view, never a copy:
#     window_view(z, F)[c, i, p, j, q, n] == z[c, F*i + p, F*j + q, n].
# Max pooling finds the first maximum of every window in two rounds over that view: along each window
# row (over q), then down the window's column of row maxima (over p). A row precedes the next one in
# row-major order, so the first maximum of the first row that holds the window's maximum is the first
# maximum of the window, as in max_pool2d. A round is one strict comparison and one maximum per
# candidate (a later candidate wins only if it is greater); the offsets are small integers blended
# with arithmetic, never ``where`` (NumPy's where on an irregular mask is 20x slower than the
# comparison that made the mask).
def index_dtype(F, xp):
    """The dtype of the fast path's pooling offsets: uint8 while F*F fits in it (one byte), else int32."""
    return xp.dtype(xp.uint8 if F * F <= 256 else xp.int32)


def window_view(z, F):
    """The F x F windows of a batch-last map z (C, H, W, N): a view (C, OH, F, OW, F, N), OH = H // F and
    OW = W // F (floor pooling leaves out the last rows and columns that fill no window)."""
    C, H, W, N = z.shape
    OH, OW = H // F, W // F
    return z[:, :OH * F, :OW * F, :].reshape(C, OH, F, OW, F, N)


def max_pool_bl(z, F, out=None):
    """:func:`minimal_ep.pooling.max_pool2d` of a batch-last map z (C, H, W, N): (y, idx), batch last.

    Returns
    -------
    y : (C, OH, OW, N) ndarray
        The window maxima: ``out`` if given, else a new array.
    idx : (C, OH, OW, N) ndarray of :func:`index_dtype`
        The offset ``p*F + q`` of the first maximum of each window (a new array): max_pool2d's indices.
    """
    xp = get_array_module(z)
    v = window_view(z, F)
    C, OH, _, OW, _, N = v.shape
    dtype = index_dtype(F, xp)
    y = xp.empty((C, OH, OW, N), dtype=z.dtype) if out is None else out
    idx = xp.empty((C, OH, OW, N), dtype=dtype)
    if F == 1:
        y[...] = v[:, :, 0, :, 0, :]
        idx.fill(0)
        return y, idx
    rows = _scratch(z, "pool_rows", (C, OH, F, OW, N))           # the maximum of each window row
    later_q = _scratch(z, "pool_later_q", rows.shape, xp.bool_)
    pairs = F == 2 and dtype == xp.uint8             # one comparison per row: its mask is the offset q
    q_all = later_q.view(xp.uint8) if pairs else _scratch(z, "pool_q", rows.shape, dtype)
    later_p = _scratch(z, "pool_later_p", y.shape, xp.bool_)
    offset = _scratch(z, "pool_offset", y.shape, dtype)

    def block(c0, c1):
        # round 1, along every window row: rows[c, i, p, j, n] = the row's maximum, q_at = its first q
        r, later, q_at, w = rows[c0:c1], later_q[c0:c1], q_all[c0:c1], v[c0:c1]
        best = w[:, :, :, :, 0, :]
        for q in range(1, F):
            xp.greater(w[:, :, :, :, q, :], best, out=later)    # strict: an equal later value never wins
            best = xp.maximum(best, w[:, :, :, :, q, :], out=r)
            if not pairs:
                _blend(q_at, q, later, first=q == 1)
        # round 2, down the rows of each window: the first row holding the maximum, where in that row
        later, off, at, top = later_p[c0:c1], offset[c0:c1], idx[c0:c1], y[c0:c1]
        at[...] = q_at[:, :, 0]
        best = r[:, :, 0]
        for p in range(1, F):
            xp.greater(r[:, :, p], best, out=later)
            best = xp.maximum(best, r[:, :, p], out=top)
            xp.add(q_at[:, :, p], dtype.type(p * F), out=off)   # offset p*F + q of row p's maximum
            _blend(at, off, later)
    by_channel(z, C, z.size, block)
    return y, idx


def _blend(old, new, later, first=False):
    """``old = new where later, else old``, in place: ``old += later * (new - old)`` in the integers of
    ``old`` (exact, also where unsigned arithmetic wraps). ``new`` is an int or an array of old's dtype;
    ``first``: old holds nothing yet (it becomes ``later * new``)."""
    xp = get_array_module(old)
    if first:
        xp.multiply(later, old.dtype.type(new), out=old)
        return
    diff = xp.subtract(new, old, dtype=old.dtype)   # new - old (a temporary of the pooled size)
    diff *= later
    old += diff


def max_unpool_bl(y, idx, F, size):
    """:func:`minimal_ep.pooling.max_unpool2d` of batch-last y, idx (C, OH, OW, N) onto (C, H, W, N).

    Each offset's values are written straight into their place in the window view, ``y * (idx == k)``
    (F*F products, no zero fill); only the rows and columns that floor pooling dropped are zeroed
    separately. A scratch buffer: valid until the next call with the same shape.
    """
    xp = get_array_module(y)
    C, OH, OW, N = y.shape
    x = _scratch(y, "unpool", (C,) + tuple(size) + (N,))
    v = window_view(x, F)

    def block(c0, c1):
        x[c0:c1, OH * F:] = 0
        x[c0:c1, :, OW * F:] = 0
        for p in range(F):
            for q in range(F):
                xp.multiply(y[c0:c1], idx[c0:c1] == p * F + q, out=v[c0:c1, :, p, :, q, :])
    by_channel(y, C, x.size, block)
    return x


def gather_pool_bl(z, idx, F):
    """:func:`minimal_ep.pooling.gather_pool2d` of batch-last z at batch-last offsets idx (a new array)."""
    xp = get_array_module(z)
    v = window_view(z, F)
    y = xp.multiply(v[:, :, 0, :, 0, :], idx == 0)
    for k in range(1, F * F):
        p, q = divmod(k, F)
        y += v[:, :, p, :, q, :] * (idx == k)
    return y
