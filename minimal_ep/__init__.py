"""minimal_ep: Equilibrium Propagation for convolutional convergent RNNs, continuous and spiking.

A pure NumPy/CuPy reference implementation of Lin, Bal & Sengupta (2024), "Scaling SNNs Trained
Using Equilibrium Propagation to Convolutional Architectures".

Three wings (docs/ARCHITECTURE.md):

* the teaching core, the modules of this folder: backend, conv, pooling, layers, dynamics, network,
  spiking, ep, bptt, optim. Read them top to bottom; none imports the other two wings;
* :mod:`minimal_ep.fast`: the same numbers, arranged for speed, entered at one seam
  (``build_network(..., fast=True)``);
* :mod:`minimal_ep.run`: configs, ``build_network``, data sets, training, checkpoints, the command line.

This file only gathers the public names from the three.
"""
from .backend import get_backend, set_backend, to_numpy, to_device, gpu_available
from .conv import im2col, col2im, conv2d, conv_transpose2d, conv2d_weight, conv_output_size
from .pooling import (max_pool2d, max_unpool2d, gather_pool2d, avg_pool2d, avg_unpool2d,
                      upsample_nearest2d, pool_output_size)
from .network import ConvergentRNN, NotSettledWarning
from .dynamics import State, PhaseReport, Nudge
from .spiking import SpikingConvergentRNN, SpikingState
from .ep import ep_gradients
from .bptt import bptt_gradients
from . import fast, optim
from .run import datasets
from .run.build import build_network
from .run.config import Config, ModelConfig

__version__ = "0.1.0"

__all__ = ["get_backend", "set_backend", "to_numpy", "to_device", "gpu_available",
           "im2col", "col2im", "conv2d", "conv_transpose2d", "conv2d_weight", "conv_output_size",
           "max_pool2d", "max_unpool2d", "gather_pool2d", "avg_pool2d", "avg_unpool2d",
           "upsample_nearest2d", "pool_output_size", "ConvergentRNN", "State", "PhaseReport",
           "NotSettledWarning", "build_network", "Config", "ModelConfig", "SpikingConvergentRNN",
           "SpikingState", "ep_gradients", "bptt_gradients", "datasets", "optim", "fast", "Nudge"]
