"""The FLOPs of one EP batch, counted from ``net.layers`` at the shapes the library computes.

A matrix product of an (M, K) by a (K, P) matrix is 2 M K P FLOPs; a convolution is one product
per call (C_out x C*KH*KW by C*KH*KW x N*OH*OW). Which convolution a layer computes depends on
its class (a network built with ``fast=True`` has the fused layers of :mod:`minimal_ep.fast.layers`,
one built with ``fast=False`` the readable :class:`~minimal_ep.layers.ConvPool`):

* ``ConvAvgPool`` (the fast path): conv + average pooling as ONE stride-F convolution with the
  (K+F-1)^2 box-averaged kernel, on the pooled grid; each route also makes the box kernel from w
  (a (C_out*C, K*K) by (K*K, (K+F-1)^2) product, and its adjoint for dPhi/dw).
* ``ConvMaxPool`` (the fast path): the K x K convolution at stride 1 on the outputs max pooling
  reads (``layer.crop``: (OH // F) F x (OW // F) F, 6x6 of a 7x7 map), then pooling; dPhi/dw also
  reruns the forward convolution for the pooling indices.
* the readable ``ConvPool``: the K x K convolution at stride 1 on the full map (OH x OW), then pooling
  (max pooling: dPhi/dw reruns the forward convolution too).
* ``Dense``: one product per route; the softmax readout of the CE loss: the logits and
  ``(y - o) w_K`` in every nudged step, three products per nudged state in the weight update.

Products of the fast conv layers go through ``minimal_ep.fast.gemm`` (``via == "gemm"``; the tests
count them there and compare); the readable layers, the dense layers and the readout use ``@`` or
``tensordot`` (``via == "@"``).
"""
from minimal_ep.fast import FAST_LAYERS
from minimal_ep.fast.layers import ConvAvgPool, ConvMaxPool
from minimal_ep.layers import Dense


def is_fast(layer):
    """Whether ``layer`` is one of the fast path's conv layers (its products go through fast.gemm)."""
    return isinstance(layer, tuple(FAST_LAYERS.values()))


def _prod(shape):
    out = 1
    for v in shape:
        out *= int(v)
    return out


def conv_products(layer, N):
    """FLOPs of one call of a conv layer's convolution over N samples, and of its box-kernel product.

    Returns
    -------
    conv, box : int
        ``box`` is 0 unless the layer is the fused conv + average pooling of the fast path.
    """
    C_out, C, K, _ = layer.weight_shape
    if isinstance(layer, ConvAvgPool):
        Kp = K + layer.pool.F - 1
        return 2 * N * C_out * C * Kp * Kp * _prod(layer.shape[1:]), 2 * C_out * C * K * K * Kp * Kp
    size = layer.crop if isinstance(layer, ConvMaxPool) else layer.conv_size   # fast max: what pooling reads
    return 2 * N * C_out * C * K * K * _prod(size), 0


def layer_routes(layer, N):
    """{"forward", "backward", "dphi_dw"}: the products of one call of each, as (what, FLOPs, via)."""
    if isinstance(layer, Dense):
        f = 2 * N * _prod(layer.weight_shape)
        return {"forward": [("dense", f, "@")], "backward": [("dense", f, "@")],
                "dphi_dw": [("dense", f, "@")]}
    via = "gemm" if is_fast(layer) else "@"
    conv, box = conv_products(layer, N)
    route = [("conv", conv, via)] + ([("box kernel", box, via)] if box else [])
    if box:                                          # conv2d_weight at (K+F-1)^2, then A^T
        dphi = [("conv weight", conv, via), ("box kernel adjoint", box, via)]
    elif layer.pool.needs_indices:                   # the forward route again, for the indices
        dphi = [("conv (pooling indices)", conv, via), ("conv weight", conv, via)]
    else:
        dphi = [("conv weight", conv, via)]
    return {"forward": route, "backward": route, "dphi_dw": dphi}


def batch_flops(net, N, T_free, T_nudge):
    """Every product of one symmetric EP batch (``ep_gradients`` + SGD step) and their FLOPs.

    Parameters
    ----------
    net : ConvergentRNN or SpikingConvergentRNN
    N, T_free, T_nudge : int

    Returns
    -------
    dict
        ``items``: (``when``, ``layer``, ``route``, ``what``, ``flops`` per call, ``calls`` per
        batch, ``via``), ``when`` one of "step" (every step), "nudged step", "phase" (once per
        phase: a CRNN's layer-1 forward route of the static image) and "update" (the weight
        update at the two nudged states); the totals ``step_free``, ``step_nudged``, ``phase``,
        ``update``, ``batch`` and ``per_step`` (``batch`` over the T_free + 2 T_nudge steps).
    """
    L = net.n_layers
    calls = {"step": T_free + 2 * T_nudge, "nudged step": 2 * T_nudge, "phase": 3, "update": 2}
    items = []

    def add(when, n, route, products):
        for what, f, via in products:
            items.append(dict(when=when, layer=n, route=route, what=what, flops=int(f),
                              calls=calls[when], via=via))

    for n in range(1, L + 1):
        routes = layer_routes(net.layers[n], N)
        add("phase" if n == 1 and not net.spiking else "step", n, "forward", routes["forward"])
        if n > 1:                                    # layer n's backward route into layer n-1
            add("step", n, "backward", routes["backward"])
        add("update", n, "dphi_dw", routes["dphi_dw"])
    if net.readout:
        K, f = net.output.K, 2 * N * _prod(net.output.weight_shape)
        add("nudged step", K, "nudge", [("readout logits", f, "@"), ("readout w^T (y - o)", f, "@")])
        add("update", K, "loss_gradient", [("readout logits", f, "@"), ("readout g_top", f, "@"),
                                           ("readout weight gradient", f, "@")])
    total = {when: sum(i["flops"] for i in items if i["when"] == when) for when in calls}
    batch = sum(i["flops"] * i["calls"] for i in items)
    return {"items": items, "step_free": total["step"], "step_nudged": total["step"] + total["nudged step"],
            "phase": total["phase"], "update": 2 * total["update"], "batch": batch,
            "per_step": batch / calls["step"]}


def gemm_step_flops(net, N, input_route=False):
    """FLOPs through ``fast.gemm`` in one ``net.step`` (``input_route``: layer 1's forward given)."""
    out = 0
    for n in range(1, net.n_layers + 1):
        routes = layer_routes(net.layers[n], N)
        if n > 1 or not input_route:
            out += sum(f for _, f, via in routes["forward"] if via == "gemm")
        if n > 1:
            out += sum(f for _, f, via in routes["backward"] if via == "gemm")
    return out
