"""No host-device copies inside the time loop: the CuPy path runs the same code without syncs.

On a GPU every ``float(a)``, ``bool(a)``, ``a.get()``, ``a.item()``, ``to_numpy`` and every
``asarray`` of host data is a copy between host and device (and a synchronisation). The dynamics
must not do any of these per step. Checked two ways: statically, every function a step calls is
scanned for those constructs (the scanner is itself tested on a function that has them), and
dynamically, the host-facing helpers are counted while phases run.
"""
import ast
import inspect
import textwrap

import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep import bptt, conv, dynamics, fast, fused, layers, network, pooling, spiking
from nets import random_batch, small_net

# Every function the time loop calls (step -> total inputs -> layers -> ops), and the BPTT reverse pass.
def _methods(cls):
    return [f for name, f in vars(cls).items() if inspect.isfunction(f)]


def _functions(module):
    return [f for name, f in inspect.getmembers(module, inspect.isfunction) if f.__module__ == module.__name__]


LOOP = [network.ConvergentRNN.step, network.ConvergentRNN.drive, network.ConvergentRNN.total_inputs,
        network.ConvergentRNN.total_inputs_vjp, network.ConvergentRNN.messages,
        network.ConvergentRNN.forward_route, network.ConvergentRNN.backward_route,
        network.ConvergentRNN.bias, network.ConvergentRNN.nudge_drive, network.ConvergentRNN.logits,
        network.ConvergentRNN.w, network.ConvergentRNN.b, network.ConvergentRNN.is_conv,
        spiking.SpikingConvergentRNN.step, spiking.SpikingConvergentRNN.messages,
        spiking.SpikeTally.add, spiking.sigma_delta, spiking.predictive_encode,
        spiking.predictive_decode, bptt._backward_crnn, bptt._backward_spiking]
for cls in (layers.ConvPool, layers.Dense, layers.MSEOutput, layers.SoftmaxReadout, pooling.MaxPool,
            pooling.AvgPool, spiking.Channel, fused.ConvAvgPool, fused.ConvMaxPool):
    LOOP += [f for f in _methods(cls) if f.__name__ != "__init__"]
for module in (conv, fast, fused, pooling, dynamics):
    LOOP += _functions(module)
LOOP = [f for f in LOOP if f.__name__ not in ("loss_gradient", "use", "fused")]   # per batch / at build time

SYNC_CALLS = {"float", "bool", "to_numpy", "to_device"}
SYNC_METHODS = {"get", "item", "tolist", "asarray", "asnumpy"}
HOST_MODULES = {"np", "numpy"}


def host_syncs(func):
    """The constructs in ``func``'s source that copy between host and device, as strings."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SYNC_CALLS:
            found.append(f"{node.func.id}() at line {node.lineno}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SYNC_METHODS:
            found.append(f".{node.func.attr}() at line {node.lineno}")
        if isinstance(node, ast.Name) and node.id in HOST_MODULES:
            found.append(f"host module {node.id} at line {node.lineno}")
    return found


def test_the_scanner_finds_host_syncs():
    def bad(xp, a):
        total = float(xp.sum(a))
        host = a.get()
        return np.asarray(host) if bool(a.any()) else total
    found = " ".join(host_syncs(bad))
    for construct in ("float()", ".get()", "bool()", "host module np", ".asarray()"):
        assert construct in found


@pytest.mark.parametrize("func", LOOP, ids=lambda f: f.__qualname__)
def test_no_host_device_copy_in_the_time_loop(func):
    assert host_syncs(func) == []


@pytest.mark.parametrize("spiking_net", [False, True])
def test_a_phase_syncs_once_not_per_step(monkeypatch, spiking_net):
    """The residual (a float on the host) is computed once per phase, and nothing else crosses."""
    calls = {"residual": 0, "to_numpy": 0, "to_device": 0}
    net = small_net(spiking=spiking_net)
    real_residual = net.residual

    def counted_residual(old, new):
        calls["residual"] += 1
        return real_residual(old, new)

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(net, "residual", counted_residual)
    for module in (mep.backend, network, spiking):
        for name in ("to_numpy", "to_device"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, counted(name, getattr(mep.backend, name)))
    x, y = random_batch(4)
    free = net.free_phase(x, 25)
    net.nudged_phase(free, y, 0.1, 10)
    assert calls == {"residual": 2, "to_numpy": 0, "to_device": 0}
