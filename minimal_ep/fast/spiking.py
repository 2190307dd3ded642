"""The spiking channel of the fast path: :class:`minimal_ep.spiking.Channel` with fewer temporaries.

Read :class:`minimal_ep.spiking.Channel` first (predictive encoder, Sigma-Delta modulator, decoder;
paper Eq. 6-8). :func:`minimal_ep.fast.accelerate` swaps it in as a spiking network's ``channel``.
The same operations in the same order, so the same bits: only where the intermediate results live
changes. Each step the readable channel allocates three arrays per layer for ``send`` (the
innovation, the potential, the spikes) and two for ``receive``; here ``send`` computes the
innovation inside the array that becomes the new potential, and ``receive`` scales the input in a
reused buffer. Every array returned is new (a state never shares memory with another state).
"""
from ..backend import get_array_module
from ..spiking import Channel
from .ops import _scratch


class FastChannel(Channel):
    """:class:`~minimal_ep.spiking.Channel`, the same numbers with two allocations fewer per layer and step."""

    def send(self, r, r_prev, V):
        """(spikes, new potential) for signal r with previous value r_prev (Eq. 8, then Eq. 6).

        The potential V + e is built where the innovation e was computed: ((1 - lam) r_prev, then
        r - that, / lam, + V), the operations of predictive_encode and sigma_delta in their order.
        """
        xp = get_array_module(r, V)
        v = xp.multiply(r_prev, 1.0 - self.lam)         # (1 - lam) r_prev
        xp.subtract(r, v, out=v)                        # e = (r - (1 - lam) r_prev) / lam ...
        v /= self.lam
        v += V                                          # ... v = V + e
        s = xp.empty_like(v)
        xp.greater(v, self.v_th, out=s)                 # 1. where the threshold is crossed
        v -= s                                          # subtractive reset
        return s, v

    def receive(self, d_prev, received):
        """(1 - lam) d_prev + lam * received (Eq. 7), lam * received in a reused buffer."""
        xp = get_array_module(d_prev, received)
        d = xp.multiply(d_prev, 1.0 - self.lam)
        scaled = _scratch(received, "lam_received", received.shape)
        xp.multiply(received, self.lam, out=scaled)
        d += scaled
        return d
