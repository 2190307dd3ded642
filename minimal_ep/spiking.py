"""Spikes: Sigma-Delta modulation, predictive coding, and the spiking convergent RNN (paper Eq. 6-10).

The pieces, each usable on its own (tutorial 5 plots them on toy signals):

    Sigma-Delta modulator (Eq. 6)   s^t = 1[V^{t-1} + e^t > V_th],   V^t = V^{t-1} + e^t - s^t
    predictive encoder    (Eq. 8)   e^t = (r^t - (1 - lam) r^{t-1}) / lam
    predictive decoder    (Eq. 7)   d^t = (1 - lam) d^{t-1} + lam * (w s^{t-1})

The modulator's potential V carries what has not been sent yet, so the cumulative spike count differs
from the cumulative input by exactly V. While every input lies in [0, 1], V stays in (V_th - 1, V_th]
(from V = 0, for 0 <= V_th <= 1), so the count differs from the cumulative input by at most
max(V_th, 1 - V_th): 0.5 for the default V_th = 0.5. The encoder's innovations can leave [0, 1] when
r changes fast, and V then strays a little further until it has been worked off. The encoder
sends the innovation of r; the decoder, a low-pass filter with the same lam, undoes it, so a weighted
sum of spikes reconstructs the weighted signal w r.

The spiking network (Eq. 10) keeps, per layer n, the state xi_n, the decoded input d_n, the potential
V_n and the last spikes s_n; layers exchange only binary spikes. Each layer's :class:`Channel` holds
the encoder, the modulator and the decoder; between decoder and encoder sits the same update rule as
in the CRNN (:func:`minimal_ep.dynamics.update`):

    d_n^t  = (1 - lam) d_n^{t-1} + lam phi_n(s^{t-1})               phi of Eq. 9 on spikes, no bias
    xi_n^t = clip((1 - eps) xi_n^{t-1} + eps (d_n^t + b_n), 0, 1)
    e_n^t  = (xi_n^t - (1 - lam) xi_n^{t-1}) / lam
    s_n^t, V_n^t = SigmaDelta(e_n^t, V_n^{t-1})

The static image is sent the same way: encoder on x (whose previous value is 0 at rest), then a
Sigma-Delta modulator, every step. With ``pool="max"`` the backward route unpools the spikes of layer
n+1 with the indices of the forward route of the same step, computed on spikes of layer n: the
pooling-indices mismatch of the paper (Sec. II-E). ``pool="avg"`` needs no indices (the paper's fix).
"""
from dataclasses import dataclass

from .backend import get_array_module
from .dynamics import State, update
from .network import ConvergentRNN


# ---------------------------------------------------------------------- the pieces
def sigma_delta(e, V, v_th=0.5):
    """One step of the Sigma-Delta modulator (paper Eq. 6).

    Parameters
    ----------
    e : ndarray
        Input of this step.
    V : ndarray
        Potential carried from the previous step (same shape).
    v_th : float
        Threshold; 0.5 is O'Connor et al.'s rounding quantiser.

    Returns
    -------
    s : ndarray
        Binary spikes (0. or 1., the dtype of e).
    V : ndarray
        The new potential ``V + e - s`` (subtractive reset).
    """
    xp = get_array_module(e, V)
    v = V + e
    s = xp.empty_like(v)
    xp.greater(v, v_th, out=s)                    # 1. where the threshold is crossed, else 0.
    v -= s
    return s, v


def predictive_encode(r, r_prev, lam):
    """The innovation sent for signal r given its previous value (paper Eq. 8)."""
    e = (1.0 - lam) * r_prev
    get_array_module(e).subtract(r, e, out=e)     # r - (1 - lam) r_prev, without a temporary
    e /= lam
    return e


def predictive_decode(d_prev, received, lam):
    """Low-pass reconstruction from the (weighted) spikes received (paper Eq. 7)."""
    d = (1.0 - lam) * d_prev
    d += lam * received
    return d


def encode(signal, lam=1.0, v_th=0.5):
    """Spike train of a signal: predictive encoder (Eq. 8) then Sigma-Delta (Eq. 6), step by step.

    Parameters
    ----------
    signal : (T, ...) ndarray
        One sample per step; the value before the first step is taken as 0.
    lam : float
        Prediction factor; ``lam = 1`` sends the signal itself (plain Sigma-Delta).
    v_th : float

    Returns
    -------
    spikes : (T, ...) ndarray
        Binary, the dtype of ``signal``.
    """
    xp = get_array_module(signal)
    spikes = xp.zeros_like(signal)
    V, prev = xp.zeros_like(signal[0]), xp.zeros_like(signal[0])
    for t in range(len(signal)):
        spikes[t], V = sigma_delta(predictive_encode(signal[t], prev, lam), V, v_th)
        prev = signal[t]
    return spikes


def decode(spikes, lam=1.0, weight=None):
    """Reconstruction of ``weight @ signal`` from a spike train by the predictive decoder (Eq. 7).

    Parameters
    ----------
    spikes : (T, D) ndarray
    lam : float
        Must match the encoder's.
    weight : (M, D) ndarray, optional
        Synaptic weights; default the identity.

    Returns
    -------
    d : (T, M) or (T, D) ndarray
        ``d[t]`` reconstructs ``weight @ signal[t]`` (the decoder output after receiving the spikes
        of step t).
    """
    xp = get_array_module(spikes)
    received = spikes if weight is None else spikes @ weight.T
    d = xp.zeros_like(received)
    prev = xp.zeros_like(received[0])
    for t in range(len(received)):
        d[t] = prev = predictive_decode(prev, received[t], lam)
    return d


# ---------------------------------------------------------------------- one layer's channel
class Channel:
    """What one layer sends and receives: the three pieces above, wrapped around the update rule.

    A layer encodes its state as spikes on the way out (predictive encoder, Eq. 8, then Sigma-Delta,
    Eq. 6) and decodes the weighted spikes it receives (Eq. 7). ``send_vjp`` and ``receive_vjp``, for
    spiking BPTT, replace the threshold's derivative by a triangular surrogate.

    Parameters
    ----------
    lam : float
        Prediction factor of encoder and decoder, in (0, 1].
    v_th : float
        Sigma-Delta threshold.
    surrogate_width : float
        Half-width of the triangular surrogate derivative (area 1).
    """

    def __init__(self, lam, v_th, surrogate_width):
        self.lam, self.v_th, self.surrogate_width = lam, v_th, surrogate_width

    def send(self, r, r_prev, V):
        """(spikes, new potential) for signal r with previous value r_prev: Eq. 8, then Eq. 6."""
        return sigma_delta(predictive_encode(r, r_prev, self.lam), V, self.v_th)

    def receive(self, d_prev, received):
        """The decoded input: low-pass of the weighted spikes received (Eq. 7)."""
        return predictive_decode(d_prev, received, self.lam)

    def surrogate(self, v):
        """``ds/dv ~= max(0, 1 - |v - V_th| / w) / w``, the triangular surrogate of the threshold."""
        w = self.surrogate_width
        xp = get_array_module(v)
        return xp.maximum(1.0 - abs(v - self.v_th) * (1.0 / w), 0.0) * (1.0 / w)

    def send_vjp(self, s, V, g_s, g_V):
        """Back through ``send``: cotangents (of r, of r_prev, of the old V) from those of s and the new V.

        ``V + s`` is the potential before the reset, where the threshold was applied.
        """
        sur = self.surrogate(V + s)
        g_v = g_s * sur + g_V * (1.0 - sur)                   # s = H(v - V_th), V' = v - s
        return g_v * (1.0 / self.lam), g_v * (-(1.0 - self.lam) / self.lam), g_v

    def receive_vjp(self, g_d):
        """Back through ``receive``: cotangents (of d_prev, of the received input)."""
        return (1.0 - self.lam) * g_d, self.lam * g_d


# ---------------------------------------------------------------------- the network
@dataclass
class SpikingState(State):
    """Every internal variable of a spiking network, so that a phase can restart exactly from it.

    Attributes
    ----------
    xi : list of ndarray
        ``xi[0]`` the input x (N, C, H, W); ``xi[n]`` the continuous state of layer n.
    idx : list
        As in :class:`~minimal_ep.dynamics.State`.
    d : list of ndarray
        Decoded inputs (``d[0]`` unused).
    V : list of ndarray
        Sigma-Delta potentials; ``V[0]`` is the input's modulator.
    spikes : list of ndarray
        The last spikes of every layer, ``spikes[0]`` the input's.
    x_prev : ndarray
        The input encoder's previous value (0 at rest, x after the first step).
    """
    d: list
    V: list
    spikes: list
    x_prev: object


class SpikeTally:
    """Per layer, the spikes and the states summed over the steps of one phase."""

    def __init__(self, state):
        xp = get_array_module(state.xi[0])
        self.spike_count = [None] + [xp.zeros_like(a) for a in state.xi[1:]]
        self.xi_sum = [None] + [xp.zeros_like(a) for a in state.xi[1:]]

    def add(self, state):
        for n in range(1, len(self.xi_sum)):
            self.spike_count[n] += state.spikes[n]
            self.xi_sum[n] += state.xi[n]

    def stats(self, T):
        """[{"layer", "rate", "rate_error"}] over T steps (:meth:`PhaseReport.spike_stats`)."""
        out = []
        for n in range(1, len(self.xi_sum)):
            rate = self.spike_count[n] / T
            out.append({"layer": n, "rate": float(rate.mean()),
                        "rate_error": float(abs(rate - self.xi_sum[n] / T).mean())})
        return out


class SpikingConvergentRNN(ConvergentRNN):
    """A convolutional spiking convergent RNN (the paper's "SNN"). Build it with ``build_network``.

    Shares the layers, routes, loss, update rule and dPhi/dtheta of :class:`ConvergentRNN`; only the
    messages (spikes), the state and the channel around the update differ.

    Parameters
    ----------
    lam : float
        Prediction factor lambda of encoder and decoder (Eq. 7-8).
    v_th : float
        Sigma-Delta threshold (Eq. 6).
    surrogate_width : float
        Half-width of the triangular surrogate derivative spiking BPTT uses.
    **kwargs
        As :class:`~minimal_ep.network.ConvergentRNN`.
    """

    spiking = True

    def __init__(self, lam, v_th, surrogate_width, **kwargs):
        super().__init__(**kwargs)
        self.lam, self.v_th, self.surrogate_width = lam, v_th, surrogate_width
        self.channel = Channel(lam, v_th, surrogate_width)

    def init_state(self, x):
        zeros = lambda sh: self.xp.zeros((len(x),) + sh, dtype=self.dtype)     # noqa: E731
        layers = self.shapes[1:self.n_layers + 1]
        return SpikingState(xi=[x] + [zeros(sh) for sh in layers], idx=[None] * (self.n_layers + 1),
                            d=[None] + [zeros(sh) for sh in layers],
                            V=[zeros(self.input_shape)] + [zeros(sh) for sh in layers],
                            spikes=[zeros(self.input_shape)] + [zeros(sh) for sh in layers],
                            x_prev=self.xp.zeros_like(x))

    def messages(self, state):
        """The last spikes of every layer, ``[input spikes, s_1, ..., s_L]``: all layers exchange."""
        return state.spikes

    def input_route(self, state):
        return None                    # the input arrives as spikes, different at every step

    def step(self, state, nudge=None, input_route=None):
        """One synchronous step of Eq. 10 for every layer; returns a new :class:`SpikingState`.

        ``state`` is not changed; the new state's ``idx`` holds the pooling indices this step used.
        """
        L, ch, xi = self.n_layers, self.channel, state.xi
        phi, idx = self.total_inputs(state.spikes)                          # Eq. 9 on the spikes of t-1
        d = [None] + [ch.receive(state.d[n], phi[n]) for n in range(1, L + 1)]      # Eq. 7: decoder
        drive = self.drive(d, xi[L], nudge)
        new_xi = [xi[0]] + [update(xi[n], drive[n], self.eps) for n in range(1, L + 1)]   # Eq. 10
        sent = [ch.send(xi[0], state.x_prev, state.V[0])]                  # the static image, as spikes
        sent += [ch.send(new_xi[n], xi[n], state.V[n]) for n in range(1, L + 1)]       # Eq. 8, Eq. 6
        return SpikingState(xi=new_xi, idx=idx, d=d, V=[v for _, v in sent],
                            spikes=[s for s, _ in sent], x_prev=xi[0])

    def relax(self, state, T, nudge=None, record=False, on_step=None):
        """As :meth:`ConvergentRNN.relax`; the report also tallies the spikes (``spike_stats()``)."""
        tally = SpikeTally(state)

        def observe(new):
            tally.add(new)
            if on_step is not None:
                on_step(new)

        state, report = super().relax(state, T, nudge, record, observe)
        report.spikes = tally
        return state, report
