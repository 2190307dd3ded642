"""Spikes: Sigma-Delta modulation, predictive coding, and the spiking convergent RNN (paper Eq. 6-10).

The pieces, each usable on its own (tutorial 5 plots them on toy signals):

    Sigma-Delta modulator (Eq. 6)   s^t = 1[V^{t-1} + e^t > V_th],   V^t = V^{t-1} + e^t - s^t
    predictive encoder    (Eq. 8)   e^t = (r^t - (1 - lam) r^{t-1}) / lam
    predictive decoder    (Eq. 7)   d^t = (1 - lam) d^{t-1} + lam * (w s^{t-1})

The modulator's potential V carries what has not been sent yet, so the cumulative spike count differs
from the cumulative input by exactly V. While every input lies in [0, 1], V stays in (V_th - 1, V_th]
(a drift of at most 1); the encoder's innovations can leave [0, 1] when r changes fast, and V then
strays a little further until it has been worked off. The encoder
sends the innovation of r; the decoder, a low-pass filter with the same lam, undoes it, so a weighted
sum of spikes reconstructs the weighted signal w r.

The spiking network (Eq. 10) keeps, per layer n, the state xi_n, the decoded input d_n, the potential
V_n and the last spikes s_n; layers exchange only binary spikes:

    d_n^t  = (1 - lam) d_n^{t-1} + lam phi_n(s^{t-1})               phi of Eq. 9 on spikes, no bias
    xi_n^t = clip((1 - eps) xi_n^{t-1} + eps (d_n^t + b_n), 0, 1)
    e_n^t  = (xi_n^t - (1 - lam) xi_n^{t-1}) / lam
    s_n^t, V_n^t = SigmaDelta(e_n^t, V_n^{t-1})

The static image is sent the same way: encoder on x (whose previous value is 0 at rest), then a
Sigma-Delta modulator, every step. With ``pool="max"`` the backward route unpools the spikes of layer
n+1 with the indices of the forward route of the same step, computed on spikes of layer n: the
pooling-indices mismatch of the paper (Sec. II-E). ``pool="avg"`` needs no indices (the paper's fix).
"""
from dataclasses import dataclass, field

from .backend import get_array_module
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
    v = V + e
    s = (v > v_th).astype(v.dtype)
    v -= s
    return s, v


def predictive_encode(r, r_prev, lam):
    """The innovation sent for signal r given its previous value (paper Eq. 8)."""
    return (r - (1.0 - lam) * r_prev) / lam


def predictive_decode(d_prev, received, lam):
    """Low-pass reconstruction from the (weighted) spikes received (paper Eq. 7)."""
    return (1.0 - lam) * d_prev + lam * received


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


# ---------------------------------------------------------------------- the network
@dataclass
class SpikingState:
    """Every internal variable of a spiking network, so that a phase can restart exactly from it.

    Attributes
    ----------
    xi : list of ndarray
        ``xi[0]`` the input x (N, C, H, W); ``xi[n]`` the continuous state of layer n.
    d : list of ndarray
        Decoded inputs (``d[0]`` unused).
    V : list of ndarray
        Sigma-Delta potentials; ``V[0]`` is the input's modulator.
    spikes : list of ndarray
        The last spikes of every layer, ``spikes[0]`` the input's.
    x_prev : ndarray
        The input encoder's previous value (0 at rest, x after the first step).
    idx : list
        Max-pooling indices of the last step's forward routes (None for avg pooling).
    spike_count, xi_sum : list of ndarray
        Per layer, spikes and states summed over the steps of the current phase (statistics).
    """
    xi: list
    d: list
    V: list
    spikes: list
    x_prev: object
    idx: list
    spike_count: list
    xi_sum: list
    residual: float = float("nan")
    steps: int = 0
    history: list = field(default_factory=list)

    def copy(self):
        c = lambda lst: [None if a is None else a.copy() for a in lst]
        return SpikingState(c(self.xi), c(self.d), c(self.V), c(self.spikes), self.x_prev.copy(),
                            c(self.idx), c(self.spike_count), c(self.xi_sum), self.residual,
                            self.steps, [])


class SpikingConvergentRNN(ConvergentRNN):
    """A convolutional spiking convergent RNN (the paper's "SNN"). Build it with ``build_network``.

    Shares the parameters, routes, loss and dPhi/dtheta of :class:`ConvergentRNN`; only the state
    and the step differ.
    """

    spiking = True

    def __init__(self, lam=0.6, v_th=0.5, surrogate_width=1.0, **kwargs):
        if not 0 < lam <= 1:
            raise ValueError(f"lam must be in (0, 1], got {lam}")
        if not surrogate_width > 0:
            raise ValueError(f"surrogate_width must be > 0, got {surrogate_width}")
        super().__init__(**kwargs)
        self.lam, self.v_th, self.surrogate_width = float(lam), float(v_th), float(surrogate_width)

    def init_state(self, x):
        zeros = lambda sh: self.xp.zeros((len(x),) + sh, dtype=self.dtype)
        layers = self.shapes[1:self.n_layers + 1]
        return SpikingState(xi=[x] + [zeros(sh) for sh in layers], d=[None] + [zeros(sh) for sh in layers],
                            V=[zeros(self.input_shape)] + [zeros(sh) for sh in layers],
                            spikes=[zeros(self.input_shape)] + [zeros(sh) for sh in layers],
                            x_prev=self.xp.zeros_like(x), idx=[None] * (self.n_layers + 1),
                            spike_count=[None] + [zeros(sh) for sh in layers],
                            xi_sum=[None] + [zeros(sh) for sh in layers])

    def messages(self, state):
        """The last spikes of every layer, ``[input spikes, s_1, ..., s_L]``: all layers exchange."""
        return state.spikes

    def surrogate(self, v):
        """Triangular surrogate of the threshold's derivative, half-width ``surrogate_width`` (area 1).

        ``d s / d v ~= max(0, 1 - |v - V_th| / w) / w``; used by spiking BPTT only.
        """
        w = self.surrogate_width
        return self.xp.maximum(1.0 - abs(v - self.v_th) * (1.0 / w), 0.0) * (1.0 / w)

    def input_route(self, state):
        return None                    # the input arrives as spikes, different at every step

    def step(self, state, target=None, beta=0.0, tape=None, input_route=None):
        """One synchronous step of Eq. 10 for every layer, in place on ``state``; returns the new xi list.

        With a ``tape``, appends what spiking BPTT needs: the spikes the step read, its pooling
        indices, the masks of the unsaturated clip, and the surrogate derivatives of its spikes.
        """
        L, eps, lam, xp = self.n_layers, self.eps, self.lam, self.xp
        s_prev = self.messages(state)
        phi, state.idx = self.total_inputs(s_prev)                 # Eq. 9 on the spikes of t-1
        xi = state.xi
        new_xi, new_spikes = [xi[0]], [None]
        masks, sur = [None], [None]
        for n in range(1, L + 1):
            d = state.d[n]
            d *= 1.0 - lam
            d += lam * phi[n]                                       # Eq. 7 / 10: decoder
            u = d + self.bias(n)
            if n == L and beta:
                u += self.nudge(xi[L], target, beta)
            u *= eps
            u += (1.0 - eps) * xi[n]
            if tape is not None:
                masks.append((u > 0) & (u < 1))
            x_new = xp.clip(u, 0.0, 1.0, out=u)                     # Eq. 10: state
            e = predictive_encode(x_new, xi[n], lam)                 # Eq. 8: encoder
            if tape is not None:
                sur.append(self.surrogate(state.V[n] + e))
            s, state.V[n] = sigma_delta(e, state.V[n], self.v_th)   # Eq. 6: spikes
            new_xi.append(x_new)
            new_spikes.append(s)
            state.spike_count[n] += s
            state.xi_sum[n] += x_new
        e0 = predictive_encode(xi[0], state.x_prev, lam)            # the static image, as spikes
        new_spikes[0], state.V[0] = sigma_delta(e0, state.V[0], self.v_th)
        state.x_prev = xi[0]
        state.spikes = new_spikes
        if tape is not None:
            tape.append((s_prev, state.idx, masks, sur))
        return new_xi

    def _run(self, state, T, target=None, beta=0.0, record=False):
        for n in range(1, self.n_layers + 1):                         # statistics are per phase
            state.spike_count[n][...] = 0
            state.xi_sum[n][...] = 0
        return super()._run(state, T, target, beta, record)

    def spike_stats(self, state):
        """Per layer: firing rate and mean |spike rate - rho(xi)| over the phase that made ``state``.

        Returns
        -------
        list of dict
            ``{"layer": n, "rate": mean spikes per neuron per step, "rate_error": mean over neurons
            of |spike_count / T - mean_t xi|}``. Predictive coding makes the spike count telescope:
            ``count - sum_t xi = (1 - lam)/lam (xi^T - xi^0) - (V^T - V^0)``, so the error is O(1/T).
        """
        T = max(state.steps, 1)
        out = []
        for n in range(1, self.n_layers + 1):
            rate = state.spike_count[n] / T
            out.append({"layer": n, "rate": float(rate.mean()),
                        "rate_error": float(abs(rate - state.xi_sum[n] / T).mean())})
        return out
