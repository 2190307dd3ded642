"""Write the numbers of a version of minimal_ep to an .npz, to compare two versions bit by bit.

For CRNN and SNN, avg and max pooling, MSE and CE, float32 and float64 (16 configurations of a small
conv 4-8 -> 16 -> 4 net on 12x12 inputs): the states of the free and both nudged phases, the
symmetric and one-sided EP gradients and the BPTT gradients: 552 arrays. Run it once per version,
each with that version on the path, then compare::

    PYTHONPATH=/path/to/old/checkout python scripts/snapshot_numbers.py old.npz
    python scripts/snapshot_numbers.py new.npz
    python scripts/snapshot_numbers.py --compare old.npz new.npz

``--readable`` snapshots the readable path (``build_network(..., fast=False)``; in versions before
the fast path became a build option, ``MINIMAL_EP_FAST=0``). Only API stable across versions is
used (build_network with explicit arguments, ep_gradients, bptt_gradients), so the script runs on
older checkouts too.
"""
import inspect
import os
import sys

import numpy as np

SMALL = dict(input_shape=(1, 12, 12), conv_channels=(4, 8), kernel_size=3, padding=1, hidden=(16,), n_classes=4)


def snapshot(path, readable=False):
    if readable:
        os.environ["MINIMAL_EP_FAST"] = "0"          # versions with a global switch read it at import
    import minimal_ep as mep
    path_kw = {"fast": False} if readable and "fast" in inspect.signature(mep.build_network).parameters else {}
    out = {}
    rng = np.random.default_rng(0)
    x, y = rng.random((6, 1, 12, 12)), rng.integers(0, 4, 6)
    for spiking in (False, True):
        for pool in ("avg", "max"):
            for loss in ("mse", "ce"):
                for dtype in ("float64", "float32"):
                    key = f"{'snn' if spiking else 'crnn'}-{pool}-{loss}-{dtype}"
                    kw = dict(SMALL, pool=pool, loss=loss, dtype=dtype, seed=3, spiking=spiking, eps=0.5)
                    if spiking:
                        kw["lam"] = 0.5
                    net = mep.build_network(**kw, **path_kw)
                    xx = x.astype(dtype)
                    g, states = mep.ep_gradients(net, xx, y, 0.2, 30, 10, return_states=True)
                    out.update({f"{key}/ep/{k}": v for k, v in g.items()})
                    for phase, s in states.items():
                        out.update({f"{key}/{phase}/xi{n}": a for n, a in enumerate(s.xi[1:], 1)})
                    out.update({f"{key}/bptt/{k}": v for k, v in mep.bptt_gradients(net, xx, y, 12).items()})
                    g1 = mep.ep_gradients(net, xx, y, 0.1, 30, 10, estimator="one-sided")
                    out.update({f"{key}/ep1/{k}": v for k, v in g1.items()})
    np.savez(path, **out)
    print(f"{len(out)} arrays written to {path}")


def compare(path_a, path_b):
    a, b = np.load(path_a), np.load(path_b)
    if set(a.files) != set(b.files):
        print(f"the two files hold different arrays: {sorted(set(a.files) ^ set(b.files))[:5]}", file=sys.stderr)
        sys.exit(2)
    worst = {}
    for k in a.files:
        d = float(np.abs(a[k] - b[k]).max() / max(np.abs(a[k]).max(), 1e-30))
        group = k.split("/")[0]
        worst[group] = max(worst.get(group, 0.0), d)
    for group, d in sorted(worst.items()):
        print(f"{group:22s} largest difference relative to the array's max: {d:.2e}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--compare"] and len(args) == 3:
        compare(args[1], args[2])
    elif len(args) in (1, 2) and not args[-1].startswith("-") and args[:-1] in ([], ["--readable"]):
        snapshot(args[-1], readable=args[:-1] == ["--readable"])
    else:
        print("usage: snapshot_numbers.py [--readable] OUT.npz | --compare A.npz B.npz", file=sys.stderr)
        sys.exit(2)
