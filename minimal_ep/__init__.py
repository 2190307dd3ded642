"""minimal_ep: Equilibrium Propagation for convolutional convergent RNNs, continuous and spiking.

A pure NumPy/CuPy reference implementation of Lin, Bal & Sengupta (2024), "Scaling SNNs Trained
Using Equilibrium Propagation to Convolutional Architectures".
"""
from .backend import get_backend, set_backend, to_numpy, to_device, gpu_available
from . import fast
from .conv import im2col, col2im, conv2d, conv_transpose2d, conv2d_weight, conv_output_size
from .pooling import (max_pool2d, max_unpool2d, gather_pool2d, avg_pool2d, avg_unpool2d,
                      upsample_nearest2d, pool_output_size)
from .network import ConvergentRNN, NotSettledWarning
from .dynamics import State, Nudge
from .build import build_network
from .spiking import SpikingConvergentRNN, SpikingState
from .ep import ep_gradients
from .bptt import bptt_gradients
from . import datasets, optim

__version__ = "0.1.0"

__all__ = ["get_backend", "set_backend", "to_numpy", "to_device", "gpu_available",
           "im2col", "col2im", "conv2d", "conv_transpose2d", "conv2d_weight", "conv_output_size",
           "max_pool2d", "max_unpool2d", "gather_pool2d", "avg_pool2d", "avg_unpool2d",
           "upsample_nearest2d", "pool_output_size", "ConvergentRNN", "State", "NotSettledWarning",
           "build_network", "SpikingConvergentRNN", "SpikingState", "ep_gradients", "bptt_gradients",
           "datasets", "optim", "fast", "Nudge"]
