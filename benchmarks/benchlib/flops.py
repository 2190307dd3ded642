"""The FLOPs of one EP batch, counted from ``net.layers`` at the shapes the library computes.

A matrix product of an (M, K) by a (K, P) matrix is 2 M K P FLOPs; a convolution is one product
per call (C_out x C*KH*KW by C*KH*KW x N*OH*OW). Which convolution a layer computes depends on
its class and on the fast-path switch:

* ``fused.ConvAvgPool`` (fast path on): conv + average pooling as ONE stride-F convolution with the
  (K+F-1)^2 box-averaged kernel, on the pooled grid; each route also makes the box kernel from w
  (a (C_out*C, K*K) by (K*K, (K+F-1)^2) product, and its adjoint for dPhi/dw).
* every other conv layer: the K x K convolution at stride 1 on the full map (OH x OW), then pooling;
  with max pooling dPhi/dw also reruns the forward convolution for the pooling indices.
* ``Dense``: one product per route; the softmax readout of the CE loss: the logits and
  ``(y - o) w_K`` in every nudged step, three products per nudged state in the weight update.

Products of the conv layers go through ``fast.gemm`` on the fast path (``via == "gemm"``; the
tests count them there and compare); the dense layers and the readout use ``@`` (``via == "@"``).
"""
from minimal_ep import fast, fused
from minimal_ep.layers import Dense


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
    if isinstance(layer, fused.ConvAvgPool) and fast.ENABLED:
        Kp = K + layer.pool.F - 1
        return 2 * N * C_out * C * Kp * Kp * _prod(layer.shape[1:]), 2 * C_out * C * K * K * Kp * Kp
    return 2 * N * C_out * C * K * K * _prod(layer.conv_size), 0


def layer_routes(layer, N):
    """{"forward", "backward", "dphi_dw"}: the products of one call of each, as (what, FLOPs, via)."""
    if isinstance(layer, Dense):
        f = 2 * N * _prod(layer.weight_shape)
        return {"forward": [("dense", f, "@")], "backward": [("dense", f, "@")],
                "dphi_dw": [("dense", f, "@")]}
    via = "gemm" if fast.ENABLED else "@"
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
