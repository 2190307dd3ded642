"""Issue #30: the readings of the paper's spiking dynamics (Eq. 6-11) it leaves open, measured at init.

Lin, Bal & Sengupta (2024) give the spiking convergent RNN as Eq. 6-10 and its EP update as Eq. 11,
but leave several details open. Each *reading* below is one way to fill one of them; ``literal`` is
the library's (docs/equations.md §4). For a config (default Table I's 2C2FC), on random training
samples, every reading is measured at the initialisation, with the same weights and samples:

    settling    per layer and phase (free, +beta, -beta): the drift of the state, as figures/diagnose.py
                measures it (||mean of xi over the last W steps - mean over the W before|| / ||xi||,
                W = 10, the norms per sample), the residual ||xi^T - xi^(T-1)|| / ||xi||, the spike rate
                over the last 2W steps
    gradients   per weight and per *estimator*, cos(EP, reference) and |EP| / |reference| of the
                gradients summed over the samples (120 samples: about one Table I batch of 125), and
                the mean of the per-batch cosines

Estimators (all symmetric, Eq. 5 / Eq. 11, -(1/2beta) (dPhi/dw(+beta) - dPhi/dw(-beta))):

    last          dPhi/dw at the last state of each nudged phase: the paper's Eq. 11 read literally
    state_avg_K   dPhi/dw at the state xi averaged over the last K steps of each nudged phase
    dphi_avg_K    dPhi/dw averaged over the last K steps of each nudged phase

The paper neither states nor excludes the averages: Sec. II-B has each phase "settle to a stable state
xi^beta in T_nudge time steps" and bases the update on "the divergence of stable states"; a spiking
state keeps fluctuating, and its stable state can be read as its mean over the settled steps.

References (all three reported; same weights, samples, loss and T_free):

    crnn_ep       EP of the continuous network (CRNN) at the same eps, beta and phases (the library's
                  ``ep_gradients``): what the spiking estimate would be if spikes coded the states
                  perfectly; cos < 1 against it is what the spikes cost
    crnn          BPTT of the CRNN: the gradient the spiking net approximates (its decoder reconstructs
                  w . xi); CRNN EP tends to it as beta -> 0
    snn_bptt      spiking BPTT of the *literal* reading (``bptt_gradients``, a triangular surrogate of
                  the threshold): what diagnose.py compares with; a surrogate-gradient estimate, not a
                  ground truth, and not recomputed for the other readings' dynamics

The pseudo-reading ``crnn`` runs the CRNN through the same phase code and estimators (a control).

One JSON per reading (``--out DIR``: DIR/READING.json) holds the command that produced it, the CPU
seconds (the reading's and the references'), every number above, and the references compared with
each other. ``--cache DIR`` keeps the references (per weights, samples and the settings they depend
on) so that later runs reuse them; it changes no number. ``--table`` prints JSONs as markdown.

    python figures/readings.py --config configs/mnist_2c2fc_snn_ep.toml --samples 120 --batch-size 10 \\
        --seed 1 --data-dir data/mnist-10k --out results/readings/2c2fc          # every reading
    python figures/readings.py --config configs/mnist_2c2fc_snn_ep.toml --set model.eps=0.1 \\
        --set model.lam=0.1 --set train.T_nudge=100 --data-dir data/mnist-10k \\
        --out results/readings/2c2fc_eps0.1_lam0.1_Tnudge100 --readings crnn literal
    python figures/readings.py --config configs/quickstart.toml --out results/readings/quickstart
    python figures/readings.py --list                 # the readings and what each one reads
    python figures/readings.py --table results/readings/2c2fc/*.json --estimator avg

results/readings/VERDICT.md holds the measurements of issue #30 and what they mean.

The coupling to minimal_ep's internals (the fields of SpikingState, ``step``, ``total_inputs``, the
channel, ``dphi_dtheta``) is confined to the section marked INTERNALS below; the rest uses the public
API (``build_network`` through figures/nets.py, ``bptt_gradients``, ``ep_gradients``,
``gradcheck.cosine``).
"""
import copy
import json
import math
import pathlib
import sys
import time
import types

from figures import cli  # first: it pins BLAS to one thread before NumPy is imported
import numpy as np  # noqa: E402

import minimal_ep as mep  # noqa: E402
from minimal_ep import backend  # noqa: E402
from minimal_ep.run.gradcheck import cosine  # noqa: E402
from minimal_ep.spiking import Channel, SpikingConvergentRNN  # noqa: E402
from figures import nets  # noqa: E402

WINDOW = 10                         # drift window W, as figures/diagnose.py
STATE_KS = (1, 5, 10, 25, 50, 100, 200, 400)    # state_avg_K (K = 1 is "last"), K <= T_nudge
DPHI_KS = (10, 50)                  # dphi_avg_K, clipped to T_nudge


def state_ks(T_nudge):
    return sorted({min(k, T_nudge) for k in STATE_KS})


# =====================================================================================================
# INTERNALS: everything below this line down to "END OF INTERNALS" touches minimal_ep's internals
# (SpikingState fields xi, d, V, spikes, x_prev, idx; SpikingConvergentRNN.step, init_state,
# total_inputs, forward_route, backward_route, drive, bias, output.nudge, channel; Channel.send and
# receive; dynamics.update; network.check_input; ConvergentRNN.dphi_dtheta, input_route). A port to
# a new API changes only this section.
# =====================================================================================================
from minimal_ep.dynamics import update  # noqa: E402
from minimal_ep.network import ConvergentRNN, check_input  # noqa: E402


def nudge_drive(net, s_top, nudge):
    """-beta dL/ds_L, what a nudged phase adds to the output's drive (inside ``net.drive``)."""
    return net.output.nudge(net.params, s_top, nudge.target, nudge.beta)


class Literal(SpikingConvergentRNN):
    """The library's reading (docs/equations.md §4), unchanged: the reference point of every other one.

    Eq. 6 with V_th = 0.5 and the subtractive reset as printed (V^t = V^{t-1} + x^t - s^t); Eq. 7 and 9
    on the spikes of step t-1 (as printed: s^{t-1}), all layers updated synchronously; the free phase
    starts from rest (xi = d = V = 0, no spikes, the input encoder's previous value 0);
    both nudged phases restart from every internal variable of the free state; the nudge
    beta (y - xi_out) is added to the output's drive after the decoder (as in O'Connor et al.'s code,
    where it is an external "pressure" on the state); the input image is sent as spikes through the
    predictive encoder and a Sigma-Delta modulator; weights U(+-1/sqrt(fan_in)) (PyTorch's default
    "kaiming_uniform(a=sqrt(5))"); dPhi/dtheta at the last state of each nudged phase (Eq. 11).
    """
    minus_from = "free"             # where the -beta phase starts: the free state (Laborieux et al.)

    def nudged_start(self, free):
        """The state both nudged phases start from: the free state, every internal variable kept."""
        return free

    def send_input(self, state):
        """(the input's spikes, its new potential) at this step: Eq. 8 then Eq. 6 on the image (as
        the library's ``step`` does inline; used by the readings that rewrite ``step``)."""
        return self.channel.send(state.xi[0], state.x_prev, state.V[0])


class Continuous(ConvergentRNN):
    """Not a reading: the continuous network (CRNN) with the same weights, eps, beta and phases, run
    through the same EP code and estimators: what the spiking estimate would be without spikes."""
    minus_from = "free"

    def nudged_start(self, free):
        return free


class ResetToZero(Literal):
    """Eq. 6 with the reset of a LIF neuron: V^t = 0 after a spike (instead of V^{t-1} + x^t - s^t).

    Reads "the Sigma-Delta modulation mimics the subtractive LIF mechanism" loosely: a reset to zero
    forgets the residual above threshold (Eq. 6 as printed is subtractive, so this contradicts it).
    """
    class _Channel(Channel):
        def send(self, r, r_prev, V):
            s, V = super().send(r, r_prev, V)        # V = (V + e) - s
            V += s                                   # the potential before the spike ...
            V *= 1.0 - s                             # ... set to 0 where it spiked
            return s, V

    def reading_init(self):
        self.channel = self._Channel(self.lam, self.v_th, self.surrogate_width)


class SpikesOfStepT(Literal):
    """Eq. 9 with the spikes of step t from below: layers updated in turn, input first, then 1..L.

    Eq. 7 and 9 print s^{t-1}, which in a synchronous update is the only causal choice; the other
    reading updates the layers one after the other (a forward sweep, O'Connor et al.'s "forward"
    direction, Gauss-Seidel): layer n hears the spikes layer n-1 emitted at this step t and the spikes
    layer n+1 emitted at step t-1. Average pooling only (the backward route uses no indices).
    """
    def step(self, state, nudge=None, input_route=None):
        if self.pool != "avg":
            raise ValueError("SpikesOfStepT supports average pooling only")
        L, ch, xi = self.n_layers, self.channel, state.xi
        s0, V0 = self.send_input(state)                                         # the input's spikes of t
        new = copy.copy(state)
        new.xi, new.d, new.V, new.spikes = [xi[0]], [None], [V0], [s0]
        new.x_prev, new.idx = xi[0], [None] * (L + 1)
        for n in range(1, L + 1):
            phi, _ = self.forward_route(n, new.spikes[n - 1])                    # spikes of step t
            if n < L:
                phi = phi + self.backward_route(n, state.spikes[n + 1], None)   # spikes of step t-1
            new.d.append(ch.receive(state.d[n], phi))
            drive = new.d[n] + self.bias(n)
            if n == L and nudge is not None:
                drive = drive + nudge_drive(self, xi[L], nudge)
            new.xi.append(update(xi[n], drive, self.eps))
            s, V = ch.send(new.xi[n], xi[n], state.V[n])
            new.spikes.append(s)
            new.V.append(V)
        return new


class RestartFromXi(Literal):
    """The nudged phases restart from the free state's xi only; d, V, the spikes and the input
    encoder are reset to rest. Reads Sec. II-B's "the neuron states" (xi) as all a phase inherits
    (Laborieux et al.'s code copies the neurons' states, which in a CRNN are all there is).
    """
    def nudged_start(self, free):
        start = self.init_state(free.xi[0])
        start.xi = [free.xi[0]] + [a.copy() for a in free.xi[1:]]
        return start


class MinusFromPlus(Literal):
    """The -beta phase continues from the end of the +beta phase instead of restarting from the free
    state (Eq. 5 says only "a third phase with a nudging factor of -beta is introduced")."""
    minus_from = "plus"


class NudgeThroughDecoder(Literal):
    """The nudge beta (y - xi_out) is an input of the output layer's decoder (Eq. 7), low-pass
    filtered with the spikes, instead of a term added to its drive after the decoder (Eq. 10 puts
    no nudge anywhere; Sec. II-B says only "a nudging term beta dL/dxi")."""
    def step(self, state, nudge=None, input_route=None):
        L, ch, xi = self.n_layers, self.channel, state.xi
        phi, idx = self.total_inputs(state.spikes)                          # Eq. 9 on the spikes of t-1
        if nudge is not None:
            phi[L] = phi[L] + nudge_drive(self, xi[L], nudge)                # the nudge enters Eq. 7
        d = [None] + [ch.receive(state.d[n], phi[n]) for n in range(1, L + 1)]
        drive = self.drive(d, xi[L], None)
        new_xi = [xi[0]] + [update(xi[n], drive[n], self.eps) for n in range(1, L + 1)]
        sent = [self.send_input(state)]
        sent += [ch.send(new_xi[n], xi[n], state.V[n]) for n in range(1, L + 1)]
        new = copy.copy(state)
        new.xi, new.idx, new.d, new.x_prev = new_xi, idx, d, xi[0]
        new.V, new.spikes = [v for _, v in sent], [s for s, _ in sent]
        return new


class AnalogInput(Literal):
    """Layer 1 hears the image x itself, not its spikes ("a static input x is fed into the neural
    network", Sec. II-B; Sec. II-E says layer 1 "receives a quantized static image", the literal one)."""
    def init_state(self, x):
        state = super().init_state(x)
        state.spikes[0] = state.xi[0]
        return state

    def step(self, state, nudge=None, input_route=None):
        new = super().step(state, nudge, input_route)
        new.spikes[0] = new.xi[0]                      # what layer 1 hears at the next step: x
        return new

    def send_input(self, state):
        return state.xi[0], state.V[0]


class PlainSigmaDeltaInput(Literal):
    """The image is sent by a plain Sigma-Delta modulator (e = x at every step), without the
    predictive encoder's first-step burst x / lam: the encoder's previous value starts at x, not 0
    (the same from step 2 on)."""
    def init_state(self, x):
        state = super().init_state(x)
        state.x_prev = state.xi[0].copy()
        return state


def as_reading(net, cls, v_th=None, weight_gain=None):
    """A copy of the spiking network ``net`` that runs reading ``cls`` (sharing its layers).

    ``v_th`` replaces the threshold; ``weight_gain`` multiplies every weight (not the biases).
    """
    new = copy.copy(net)
    new.__class__ = cls
    new.params = dict(net.params)
    if v_th is not None:
        new.v_th = v_th
        new.channel = Channel(new.lam, v_th, new.surrogate_width)
    if weight_gain is not None:
        for k in new.params:
            if k.startswith("w"):
                new.params[k] = new.params[k] * weight_gain
    if hasattr(new, "reading_init"):
        new.reading_init()
    return new


def dphi_w(net, xi):
    """dPhi/dw_n of every weight at the continuous states ``xi`` (Eq. 11), batch-mean."""
    return {k: v for k, v in net.dphi_dtheta(types.SimpleNamespace(xi=xi)).items() if k.startswith("w")}


def run_phase(net, state, T, nudge, keep, sum_ks=()):
    """T steps from ``state``.

    Returns (last state, the (xi, spikes) of the last ``keep`` steps, {K: xi summed over the last K
    steps} for K in ``sum_ks``).
    """
    route = net.input_route(state)
    kept, sums = [], {}
    for t in range(T):
        state = net.step(state, nudge, input_route=route)
        if t >= T - keep:
            kept.append((state.xi, getattr(state, "spikes", state.xi)))      # a CRNN sends xi
        for K in sum_ks:
            if t >= T - K:
                sums[K] = ([a.copy() for a in state.xi] if K not in sums
                           else [a + b for a, b in zip(sums[K], state.xi)])
    return state, kept, sums


def ep_phases(net, x, y, beta, T_free, T_nudge, keep, sum_ks):
    """The three phases of symmetric EP for one batch; returns {phase: run_phase's triple}."""
    nudge = net.nudge_towards(y, beta)
    free = run_phase(net, net.init_state(check_input(net, x)), T_free, None, keep)
    start = net.nudged_start(free[0])
    plus = run_phase(net, start, T_nudge, nudge, keep, sum_ks)
    minus = run_phase(net, start if net.minus_from == "free" else plus[0], T_nudge, nudge.flipped(), keep, sum_ks)
    return {"free": free, "plus": plus, "minus": minus}
# =====================================================================================================
# END OF INTERNALS
# =====================================================================================================

SQRT6 = math.sqrt(6.0)
READINGS = {
    # name: (class, v_th, weight gain)
    "literal": (Literal, None, None),
    "vth1": (Literal, 1.0, None),
    "reset_zero": (ResetToZero, None, None),
    "reset_zero_vth1": (ResetToZero, 1.0, None),
    "spikes_of_t": (SpikesOfStepT, None, None),
    "restart_xi": (RestartFromXi, None, None),
    "minus_from_plus": (MinusFromPlus, None, None),
    "nudge_decoder": (NudgeThroughDecoder, None, None),
    "input_analog": (AnalogInput, None, None),
    "input_plain_sd": (PlainSigmaDeltaInput, None, None),
    "init_kaiming": (Literal, None, SQRT6),
    "crnn": (Continuous, None, None),
}
NOTES = {
    "vth1": "Eq. 6 with V_th = 1 (subtractive reset): the threshold of an integrate-and-fire neuron whose "
            "spike carries 1; the paper gives no value (O'Connor et al.'s code: 0.5).",
    "init_kaiming": "Kaiming's ReLU bound sqrt(6 / fan_in) for the weights (x sqrt(6) of PyTorch's default "
                    "1/sqrt(fan_in)); biases at the default. Sec. III: 'uniform Kaiming initialization [24]'.",
}


def reading_doc(name):
    cls = READINGS[name][0]
    return NOTES.get(name) or " ".join((cls.__doc__ or "").split())


def combo(*names):
    """A reading made of several: the classes are mixed in (left first), v_th and gain taken from any.

    Two readings that each rewrite ``step`` (spikes_of_t, nudge_decoder) cannot be combined, nor the
    continuous control with a spiking reading: a ValueError says so.
    """
    classes = [READINGS[n][0] for n in names if READINGS[n][0] is not Literal]
    rewrites = [c for c in classes if c in (SpikesOfStepT, NudgeThroughDecoder)]
    if len(rewrites) > 1 or (Continuous in classes and len(classes) > 1):
        raise cli.FigureError(f"readings {'+'.join(names)} cannot be combined (each rewrites the step)")
    cls = type("+".join(names), tuple(classes), {}) if len(classes) > 1 else (classes or [Literal])[0]
    v_th = next((READINGS[n][1] for n in names if READINGS[n][1] is not None), None)
    gain = next((READINGS[n][2] for n in names if READINGS[n][2] is not None), None)
    return cls, v_th, gain


def resolve_reading(name):
    """'a+b' combines readings a and b."""
    parts = name.split("+")
    unknown = [p for p in parts if p not in READINGS]
    if unknown:
        raise cli.FigureError(f"unknown reading(s) {unknown}; --list shows them")
    return READINGS[parts[0]] if len(parts) == 1 else combo(*parts)


# ----------------------------------------------------------------------------- measurements
def _f64(a):
    return backend.to_numpy(a).astype(np.float64)


def _sq(a):
    a = _f64(a)
    return float((a * a).sum())


def estimates(net, phases, beta, T_nudge):
    """{estimator: {w_n: gradient estimate}} for one batch, from the kept steps of the nudged phases."""
    out, scale = {}, -1.0 / (2.0 * beta)
    p, m = phases["plus"][1], phases["minus"][1]
    for K in state_ks(T_nudge):
        dp, dm = (dphi_w(net, [x / K for x in phases[ph][2][K]]) for ph in ("plus", "minus"))
        out["last" if K == 1 else f"state_avg_{K}"] = {k: scale * (_f64(dp[k]) - _f64(dm[k])) for k in dp}
    kd = sorted({min(k, T_nudge) for k in DPHI_KS})
    sums = {K: {} for K in kd}
    for sign, kept in ((1.0, p), (-1.0, m)):
        for j, (xi, _) in enumerate(reversed(kept[-kd[-1]:])):          # j = 0: the last step
            d = {k: sign * _f64(v) for k, v in dphi_w(net, xi).items()}
            for K in kd:
                if j < K:
                    for k, v in d.items():
                        sums[K][k] = sums[K].get(k, 0.0) + v
    for K in kd:
        out[f"dphi_avg_{K}"] = {k: scale * v / K for k, v in sums[K].items()}
    return out


def settling(net, phases):
    """Per phase and layer: squared drift, squared residual, squared size (sums over the batch), rate."""
    L, out = net.n_layers, {}
    for ph, (_, kept, _) in phases.items():
        xs = [xi for xi, _ in kept[-2 * WINDOW:]]
        mean = lambda a: [sum(x[n] for x in a) / len(a) for n in range(L + 1)]   # noqa: E731
        late, early = mean(xs[-WINDOW:]), mean(xs[:-WINDOW] or xs)             # phases of < 2W steps:
        out[ph] = {"drift_sq": [_sq(late[n] - early[n]) if len(xs) == 2 * WINDOW else float("nan")
                                for n in range(1, L + 1)],
                   "residual_sq": [_sq(xs[-1][n] - xs[-2][n]) for n in range(1, L + 1)],
                   "size_sq": [_sq(xs[-1][n]) for n in range(1, L + 1)],
                   "rate": [float(np.mean([_f64(s[n]).mean() for _, s in kept[-2 * WINDOW:]]))
                            for n in range(1, L + 1)]}
    return out


REFS = ("snn_bptt", "crnn", "crnn_ep")
DYNAMICS_KEYS = ("model.eps", "model.lam", "model.v_th", "train.beta", "train.T_free", "train.T_nudge")


def references(src, batches, dyn, cache_dir=None, key=""):
    """Per batch, {reference: {w_n: gradient}} (float32, host) for the weights of ``src``; CPU s of each.

    snn_bptt and crnn are BPTT through the T_free-step free phase of the literal spiking net and of the
    CRNN; crnn_ep is the CRNN's own EP estimate at the same beta and phases (Eq. 11 at the last state).
    ``cache_dir``: each reference is read from / written to ``REF-KEY-DYN.npz`` there, DYN the settings
    it depends on (``key`` names the weights and samples).
    """
    m = src.cfg.model
    bptt_dyn = f"e{dyn['eps']}-l{dyn['lam']}-v{dyn['v_th']}-T{dyn['T_free']}-{m.dtype}"
    depends = {"snn_bptt": bptt_dyn, "crnn": bptt_dyn, "crnn_ep": f"{bptt_dyn}-b{dyn['beta']}-n{dyn['T_nudge']}"}
    snn, crnn = src.network(), src.network(nets.config_of(False, m.pool))
    runs = {"snn_bptt": lambda x, y: mep.bptt_gradients(snn, x, y, dyn["T_free"]),
            "crnn": lambda x, y: mep.bptt_gradients(crnn, x, y, dyn["T_free"]),
            "crnn_ep": lambda x, y: mep.ep_gradients(crnn, x, y, dyn["beta"], dyn["T_free"], dyn["T_nudge"])}
    out, cpu = [dict() for _ in batches], {}
    for r in REFS:
        path = cache_dir and pathlib.Path(cache_dir) / f"{r}-{key}-{depends[r]}.npz"
        if path and path.is_file():
            z = np.load(path)
            cpu[r] = float(z["_cpu"])
            for i, ref in enumerate(out):
                ref[r] = {k.split(".")[1]: z[k] for k in z.files if k.startswith(f"{i}.")}
            continue
        t0 = time.process_time()
        for (x, y), ref in zip(batches, out):
            g = runs[r](backend.to_device(x), backend.to_device(y))
            ref[r] = {k: backend.to_numpy(v).astype(np.float32) for k, v in g.items() if k.startswith("w")}
        cpu[r] = time.process_time() - t0
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(path, _cpu=cpu[r], **{f"{i}.{k}": v for i, ref in enumerate(out) for k, v in ref[r].items()})
    return out, cpu


def compare(ep_batches, ref_batches, shares):
    """Per weight: cos and norm ratio of the share-weighted sums, and the mean per-batch cosine."""
    out = {}
    for k in ep_batches[0]:
        e = sum(s * b[k] for s, b in zip(shares, ep_batches))
        r = sum(s * b[k].astype(np.float64) for s, b in zip(shares, ref_batches))
        out[k] = {"cos": cosine(e, r), "norm_ratio": float(np.linalg.norm(e) / max(np.linalg.norm(r), 1e-300)),
                  "batch_cos_mean": float(np.mean([cosine(b[k], rb[k]) for b, rb in zip(ep_batches, ref_batches)]))}
    return out


def measure(name, src, batches, refs, dyn):
    """Every number of the module doc for reading ``name`` (on the weights of the nets.Net ``src``)."""
    cls, v_th, gain = resolve_reading(name)
    spiking = issubclass(cls, SpikingConvergentRNN)
    base = src.network(None if spiking else nets.config_of(False, src.cfg.model.pool))
    net = as_reading(base, cls, v_th, gain)
    beta, T_free, T_nudge = dyn["beta"], dyn["T_free"], dyn["T_nudge"]
    keep = max(min(max(DPHI_KS), T_nudge), 2 * WINDOW)
    t0 = time.process_time()
    shares = [len(b[1]) / sum(len(c[1]) for c in batches) for b in batches]
    ests, sett = {}, []
    for x, y in batches:
        ph = ep_phases(net, backend.to_device(x), backend.to_device(y), beta, T_free, T_nudge, keep,
                       state_ks(T_nudge))
        for est, g in estimates(net, ph, beta, T_nudge).items():
            ests.setdefault(est, []).append(g)
        sett.append(settling(net, ph))
        del ph
    cpu = time.process_time() - t0
    L = net.n_layers
    settle = {}
    for p in ("free", "plus", "minus"):
        tot = {q: [sum(s[p][q][n] for s in sett) for n in range(L)] for q in ("drift_sq", "residual_sq", "size_sq")}
        settle[p] = {"drift_relative": [math.sqrt(d / max(z, 1e-300)) for d, z in zip(tot["drift_sq"], tot["size_sq"])],
                     "residual_relative": [math.sqrt(d / max(z, 1e-300))
                                           for d, z in zip(tot["residual_sq"], tot["size_sq"])],
                     "size": [math.sqrt(z / sum(len(b[1]) for b in batches)) for z in tot["size_sq"]],
                     "rate": [float(np.average([s[p]["rate"][n] for s in sett], weights=shares)) for n in range(L)]}
    grads = {est: {r: compare(g, [rb[r] for rb in refs], shares) for r in REFS}
             for est, g in ests.items()}
    return {"reading": name, "doc": " | ".join(reading_doc(p) for p in name.split("+")),
            "settling": settle, "gradients": grads, "cpu_seconds": cpu}


def references_compared(refs, shares):
    """Per weight and pair of references, cos and norm ratio of their sums over the samples."""
    tot = {r: {k: sum(s * b[r][k].astype(np.float64) for s, b in zip(shares, refs)) for k in refs[0][r]}
           for r in REFS}
    return {f"{a}_vs_{b}": {k: {"cos": cosine(tot[a][k], tot[b][k]),
                                "norm_ratio": float(np.linalg.norm(tot[a][k]) / np.linalg.norm(tot[b][k]))}
                            for k in tot[a]}
            for i, a in enumerate(REFS) for b in REFS[i + 1:]}


def summary_line(d, est="last", ref="crnn"):
    g = d["gradients"][est][ref]
    cos = "/".join(f"{v['cos']:+.2f}" for v in g.values())
    ratio = "/".join(f"{v['norm_ratio']:.3g}" for v in g.values())
    drift = "/".join(f"{100 * v:.0f}%" for v in d["settling"]["free"]["drift_relative"])
    return f"{d['reading']:>28s} {est:>13s} vs {ref:8s} cos {cos:>24s}  ratio {ratio:>26s}  free drift {drift}"


def table(paths, est="last", refs=REFS):
    """Markdown rows, one per JSON in ``paths``: its settings, the drift of the free phase, then cos of
    estimator ``est`` with each reference and |EP| / |ref| for the first (``avg``: the state average
    over the whole nudged phase). Every "a/b/c/d" lists layers or weights 1..4."""
    def fmt(vals, spec):
        return "/".join(format(v, spec) for v in vals)
    rows = [f"| reading | settings | free drift % | " + " | ".join(f"cos vs {r}" for r in refs)
            + f" | \\|EP\\| / \\|{refs[0]}\\| |", "|" + "---|" * (4 + len(refs))]
    for path in paths:
        d = json.loads(pathlib.Path(path).read_text())
        e = f"state_avg_{d['dynamics']['T_nudge']}" if est == "avg" else est
        g = d["gradients"][e]
        dyn = d["dynamics"]
        setting = f"eps {dyn['eps']} lam {dyn['lam']} beta {dyn['beta']} T {dyn['T_free']}+{dyn['T_nudge']}"
        drift = fmt([100 * v for v in d["settling"]["free"]["drift_relative"]], ".0f")
        rows.append(f"| {d['reading']} | {setting} | {drift} | "
                    + " | ".join(fmt([v["cos"] for v in g[r].values()], "+.2f") for r in refs)
                    + f" | {fmt([v['norm_ratio'] for v in g[refs[0]].values()], '.3g')} |")
    return "\n".join(rows)


def main(argv=None):
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="configs/mnist_2c2fc_snn_ep.toml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    p.add_argument("--readings", nargs="+", default=None, help="names, or a+b for a combination (default: all)")
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--seed", type=int, default=1, help="seed of the random choice of samples")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default="results/readings", help="folder for READING.json")
    p.add_argument("--cache", default=None, help="a folder to keep the references in (reused when present)")
    p.add_argument("--list", action="store_true", help="print the readings and exit")
    p.add_argument("--table", nargs="+", default=None, metavar="JSON",
                   help="print a markdown table of these result files and exit (see --estimator)")
    p.add_argument("--estimator", default="last", help="with --table: last, state_avg_K, dphi_avg_K or avg")
    p.add_argument("--refs", nargs="+", default=list(REFS), choices=REFS, help="with --table: these references")
    args = p.parse_args(argv)
    if args.table:
        print(table(args.table, args.estimator, args.refs))
        return {}
    if args.list:
        for name in READINGS:
            print(f"{name}: {reading_doc(name)}\n")
        return {}
    names = args.readings or list(READINGS)
    for n in names:
        resolve_reading(n)
    src = nets.from_config(args.config, args.overrides)
    if not src.cfg.model.spiking:
        raise cli.FigureError(f"{args.config} is not a spiking config")
    dyn = src.dynamics
    (x, y), = nets.sample_sets(src.cfg, args.samples, 1, args.seed, args.data_dir)[0]
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, len(y), args.batch_size)]
    argv = list(argv if argv is not None else sys.argv[1:])
    if "--cache" in argv:                     # where the references are cached changes no number
        i = argv.index("--cache")
        argv = argv[:i] + argv[i + 2:]
    command = "python figures/readings.py " + " ".join(argv)
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    shares = [len(b[1]) / len(y) for b in batches]
    results, ref_sets = {}, {}
    for name in names:
        gain = resolve_reading(name)[2]
        if gain not in ref_sets:            # other weights (init_kaiming): their own references
            params = {k: (v * gain if gain and k.startswith("w") else v) for k, v in src.params.items()}
            src_g = nets.Net(src.cfg, params, 0, src.path + (f" (weights x {gain:.4g})" if gain else ""))
            other = [o for o in args.overrides if o.split("=")[0] not in DYNAMICS_KEYS]    # in DYN already
            key = (f"{pathlib.Path(args.config).stem}-{'-'.join(other)}-s{args.samples}-b{args.batch_size}"
                   f"-seed{args.seed}-g{gain or 1:.4g}")
            refs, ref_cpu = references(src_g, batches, dyn, args.cache, key.replace("/", "_"))
            ref_sets[gain] = src_g, refs, ref_cpu, references_compared(refs, shares)
        _, refs, ref_cpu, ref_vs = ref_sets[gain]
        d = measure(name, src, batches, refs, dyn)            # the reading applies the gain itself
        d["reference_cpu_seconds"] = ref_cpu
        d.update(command=command, config=args.config, overrides=args.overrides, dynamics=dyn,
                 samples=args.samples, batch_size=args.batch_size, sample_seed=args.seed,
                 references_vs_each_other=ref_vs,
                 net=src.describe(), estimators_note=__doc__.split("Estimators")[1].split("References")[0].strip())
        results[name] = d
        path = out_dir / f"{name}.json"
        path.write_text(json.dumps(d, indent=1) + "\n")
        for ref in REFS:
            for est in ("last", f"state_avg_{min(50, dyn['T_nudge'])}", f"dphi_avg_{min(50, dyn['T_nudge'])}"):
                print(summary_line(d, est, ref), flush=True)
        print(f"  -> {path} ({d['cpu_seconds']:.0f} CPU s)", flush=True)
    return results


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
