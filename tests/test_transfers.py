"""No host-device copies inside the time loop: the CuPy path runs the same code without syncs.

On a GPU every ``float(a)``, ``bool(a)``, ``a.get()``, ``a.item()``, ``to_numpy`` and every
``asarray`` of host data is a copy between host and device (and a synchronisation). The dynamics
must not do any of these per step. Checked two ways: statically, every function the time loop runs
is scanned for those constructs (the scanner is itself tested on a function that has them), and
dynamically, the host-facing helpers are counted while phases run.

Which functions the time loop runs is not typed by hand: it is found by tracing phases and a BPTT
pass (:func:`calls_per_function`) on a CRNN and an SNN, with average and max pooling, fast and
readable, so a new helper called from a step is scanned the day it is written.
"""
import ast
import collections
import inspect
import pathlib
import sys
import textwrap

import numpy as np
import pytest

import minimal_ep as mep
from minimal_ep import bptt, conv, dynamics, layers, network, spiking
from minimal_ep.fast import layers as fast_layers
from minimal_ep.fast import ops as fast_ops
from nets import random_batch, small_net

PACKAGE = pathlib.Path(mep.__file__).resolve().parent


# ----------------------------------------------------------------------------- what the time loop runs
def calls_per_function(run):
    """How often each code object of minimal_ep ran (was entered, or resumed) while ``run()`` ran.

    Returns
    -------
    collections.Counter
        ``{code object: number of calls}``, only code in files under ``minimal_ep/``.
    """
    calls = collections.Counter()

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(str(PACKAGE)):
            calls[frame.f_code] += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(previous)
    return calls


def function_index():
    """``{code object: function}`` for every function and method of the loaded minimal_ep modules.

    Code nested in a function (a closure, a lambda, a comprehension, a generator expression) maps
    to the module-level function or method whose source holds it, which is what the scanner reads.
    """
    index = {}

    def add(func):
        stack = [func.__code__]
        while stack:
            code = stack.pop()
            index.setdefault(code, func)
            stack += [c for c in code.co_consts if inspect.iscode(c)]

    modules = [m for name, m in sorted(sys.modules.items())
               if (name == "minimal_ep" or name.startswith("minimal_ep.")) and m is not None]
    for module in modules:
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj):
                add(obj)
            elif inspect.isclass(obj):
                for attr in vars(obj).values():
                    func = attr.__func__ if isinstance(attr, (staticmethod, classmethod)) else attr
                    func = func.fget if isinstance(func, property) else func
                    if inspect.isfunction(func):
                        add(func)
    return index


NETS = [(spiking_net, pool, loss, fast) for spiking_net in (False, True) for pool in ("avg", "max")
        for loss in ("mse", "ce") for fast in (True, False)]
T_SHORT, T_LONG = 2, 3


def _phases_and_bptt(net, T):
    """A free phase, a nudged phase from it, and a BPTT pass (forward and reverse), T steps each."""
    x, y = random_batch(3)
    free, _ = net.free_phase(x, T)
    net.nudged_phase(free, y, 0.2, T)
    mep.bptt_gradients(net, x, y, T)


def time_loop_functions(spiking_net, pool, loss, fast):
    """The functions of minimal_ep that run at every step of a phase or of the BPTT reverse pass.

    The rule: a function belongs to the time loop when it runs more often in phases of T_LONG steps
    than in phases of T_SHORT steps. What runs a fixed number of times per phase or per batch is
    left out by design, because it may cross to the host once per phase: the checks at the boundary
    (check_input, check_labels, check_steps, Nudge), relax's bookkeeping around its loop (the input
    route, the report, the NotSettledWarning), the residual (one float per phase, see the dynamic
    test below), loss_gradient (one float per batch), init_state, dphi_dtheta and the spike tally's
    set-up and statistics.
    """
    net = small_net(pool, loss, spiking=spiking_net, fast=fast)
    short = calls_per_function(lambda: _phases_and_bptt(net, T_SHORT))
    long = calls_per_function(lambda: _phases_and_bptt(net, T_LONG))
    index = function_index()
    unmapped = [c for c in long if c not in index]
    assert not unmapped, f"traced code that maps to no function of minimal_ep: {unmapped}"
    return {index[c] for c in long if long[c] > short[c]}


@pytest.fixture(scope="module")
def traced():
    """``{(spiking, pool, loss, fast): set of time-loop functions}`` for the 16 networks of NETS."""
    return {key: time_loop_functions(*key) for key in NETS}


def _name(func):
    return f"{func.__module__}.{func.__qualname__}"


def test_tracing_finds_the_core_of_the_time_loop(traced):
    """The traced sets hold the obvious functions, and leave out the once-per-phase ones by rule."""
    every = set().union(*traced.values())
    core = [network.ConvergentRNN.step, network.ConvergentRNN.total_inputs, network.ConvergentRNN.drive,
            spiking.SpikingConvergentRNN.step, spiking.Channel.send, spiking.Channel.send_vjp,
            spiking.sigma_delta, spiking.SpikeTally.add, dynamics.update, dynamics.update_vjp,
            bptt.total_inputs_vjp, bptt._backward_crnn, bptt._backward_spiking, layers.Dense.forward,
            layers.Dense.backward_vjp, layers.ConvPool.forward, layers.ConvPool.forward_vjp,
            layers.SoftmaxReadout.nudge, layers.MSEOutput.nudge, fast_layers.ConvAvgPool.forward,
            fast_layers.ConvMaxPool.backward, fast_layers.ConvMaxPool.backward_vjp, fast_ops.gemm,
            conv.im2col, conv.col2im]
    missing = [_name(f) for f in core if f not in every]
    assert not missing, f"the trace missed functions every step runs: {missing}"
    once = [network.ConvergentRNN.relax, network.ConvergentRNN.residual, network.ConvergentRNN.init_state,
            network.ConvergentRNN.loss_gradient, layers.SoftmaxReadout.loss_gradient, network.check_input,
            network.check_labels, network.check_steps, bptt.bptt_gradients, spiking.SpikeTally.__init__]
    wrongly = [_name(f) for f in once if f in every]
    assert not wrongly, f"once-per-phase functions counted as per-step: {wrongly}"


def test_the_fast_choice_decides_which_code_a_step_runs(traced):
    """A readable network never enters minimal_ep.fast; a fast one never runs ConvPool's own routes."""
    readable_routes = {layers.ConvPool.forward, layers.ConvPool.backward, layers.ConvPool.forward_vjp,
                       layers.ConvPool.backward_vjp}
    for (spiking_net, pool, loss, fast), funcs in traced.items():
        in_fast = sorted(_name(f) for f in funcs if f.__module__.startswith("minimal_ep.fast"))
        if fast:
            assert in_fast and not funcs & readable_routes, (spiking_net, pool, loss)
        else:
            assert in_fast == [] and funcs >= readable_routes, (spiking_net, pool, loss, in_fast)


SYNC_CALLS = {"float", "bool", "to_numpy", "to_device"}
SYNC_METHODS = {"get", "item", "tolist", "asarray", "asnumpy"}
HOST_MODULES = {"np", "numpy"}
# The host module is fine where it only describes types, never holds data: np.dtype(...), np.finfo(...),
# np.iinfo(...), and a scalar type used as a dtype, uncalled (np.uint8; np.float32(a) converts a).
TYPE_FUNCTIONS = {"dtype", "finfo", "iinfo"}
SCALAR_TYPES = {"bool_", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                "float16", "float32", "float64"}


def host_syncs(func):
    """The constructs in ``func``'s source that copy between host and device, as strings."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    parent = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in SYNC_CALLS:
            found.append(f"{node.func.id}() at line {node.lineno}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in SYNC_METHODS:
            found.append(f".{node.func.attr}() at line {node.lineno}")
        if isinstance(node, ast.Name) and node.id in HOST_MODULES:
            attr = parent.get(node)
            called = isinstance(parent.get(attr), ast.Call) and parent[attr].func is attr
            if isinstance(attr, ast.Attribute) and (attr.attr in TYPE_FUNCTIONS
                                                    or (attr.attr in SCALAR_TYPES and not called)):
                continue
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

    def types_only(xp, a):
        return xp.empty(a.shape, dtype=np.dtype(np.uint8 if a.size < 256 else np.int32)), np.finfo(a.dtype).max

    def host_data(xp, a):
        return xp.multiply(a, np.float32(a)), np.zeros(3), np.float64
    assert host_syncs(types_only) == []
    assert host_syncs(host_data) == ["host module np at line 2", "host module np at line 2"]
    # and on the functions the rule leaves out: the residual and the loss do cross, once per phase
    assert host_syncs(network.ConvergentRNN.residual) and host_syncs(layers.MSEOutput.loss_gradient)


# Where the scanner's constructs are not transfers (checked by hand; each one must still be traced).
NOT_TRANSFERS = {
    mep.backend.get_array_module: "sys.modules.get is a dict lookup, and numpy is returned, not applied",
}


def test_no_host_device_copy_in_the_time_loop(traced):
    every = sorted(set().union(*traced.values()), key=_name)
    assert len(every) >= 40, f"the trace found too few functions to be working: {[_name(f) for f in every]}"
    assert set(NOT_TRANSFERS) <= set(every), "an exception for a function the time loop no longer runs"
    offenders = {_name(f): host_syncs(f) for f in every if f not in NOT_TRANSFERS and host_syncs(f)}
    assert not offenders, "host-device copies in functions the time loop runs:\n" + "\n".join(
        f"  {name}: {', '.join(found)}" for name, found in offenders.items())


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
    free, _ = net.free_phase(x, 25)
    net.nudged_phase(free, y, 0.1, 10)
    assert calls == {"residual": 2, "to_numpy": 0, "to_device": 0}
