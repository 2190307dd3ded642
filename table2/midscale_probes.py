#!/usr/bin/env python
"""Mid-scale Table II, step 1 (issue #28): which net and which dynamics, by probes.

Two probes of candidate nets (``NETS``, conv C1-C2 -> dense H, 3x3 kernels, average pooling) at
candidate dynamics (``DYNAMICS``), every run on MNIST (the 10000-image subset), from
``configs/laptop/mnist_snn_ep_avg.toml`` (the laptop table's SNN EP cell) with ``--set`` overrides:

* ``init``: ``figures/diagnose.py`` at initialisation, 50 training images: how close EP's estimate
  is to BPTT's gradient per weight (cosine and norm ratio), spiking and continuous (the same net and
  dynamics with ``model.spiking = false``), one JSON per (net, dynamics, kind) in ``OUT/init/``;
* ``accuracy``: three epochs of ``minimal-ep train`` on 8000 training images (the laptop table's
  rates, decaying linearly to 10%), the error measured after each on the 2000 held out
  (``data.validation``; the test set is never read), through the campaign runner (CPU seconds in
  each run's ``campaign.jsonl``), one run folder per (net, dynamics) in ``OUT/accuracy/``.

``summary`` prints both as Markdown tables (docs/RESULTS.md, "Mid-scale: choosing the net"). Runs
already written are skipped, so each command resumes. Usage::

    python -m table2.midscale_probes init
    python -m table2.midscale_probes accuracy
    python -m table2.midscale_probes summary
"""
import json
import pathlib
import sys

from figures import diagnose
from minimal_ep.run import campaign as runner

REPO = pathlib.Path(__file__).resolve().parents[1]
BASE = "configs/laptop/mnist_snn_ep_avg.toml"
OUT = REPO / "results" / "table2" / "midscale" / "probes"
DATA_DIR = "data/mnist-10k"
NETS = {"Q": ["model.conv_channels=[16, 32]", "model.hidden=[128]"],       # the laptop table's net
        "A": ["model.conv_channels=[32, 64]", "model.hidden=[256]"],
        "B": ["model.conv_channels=[64, 128]", "model.hidden=[512]"]}
DYNAMICS = {                                    # the laptop table's: eps = lam = 0.3, beta 0.2, T 40 + 15
    "qs": [],
    "b1": ["train.beta=0.1", "train.T_free=100", "train.T_nudge=40", "train.average_last=40"],
    "b05": ["train.beta=0.05", "train.T_free=100", "train.T_nudge=40", "train.average_last=40"],
    "b001": ["train.beta=0.001", "train.T_free=100", "train.T_nudge=40", "train.average_last=40"],   # the limit
    "e1b05": ["model.eps=0.1", "model.lam=0.1", "train.beta=0.05", "train.T_free=250", "train.T_nudge=100",
              "train.average_last=100"],
    "e1b02": ["model.eps=0.1", "model.lam=0.1", "train.beta=0.02", "train.T_free=250", "train.T_nudge=100",
              "train.average_last=100"]}
ACCURACY = ["Q_qs", "A_qs", "Q_e1b05", "A_b05", "A_e1b05"]        # cheapest first
EPOCHS = 3
HELD_OUT = ["data.validation=2000", f"train.epochs={EPOCHS}"]


def overrides(name):
    """The ``--set`` texts of probe ``NET_DYNAMICS``."""
    net, dyn = name.split("_", 1)
    return NETS[net] + DYNAMICS[dyn]


def init_probes(out, samples=50, names=None):
    """``diagnose`` of every (net, dynamics), spiking and continuous, at initialisation."""
    for net in NETS:
        for dyn in DYNAMICS:
            for kind in ("snn", "crnn"):
                name = f"{net}_{dyn}_{kind}"
                path = out / "init" / f"{name}.json"
                if (names and f"{net}_{dyn}" not in names) or path.exists():
                    continue
                sets = overrides(f"{net}_{dyn}") + (["model.spiking=false"] if kind == "crnn" else [])
                argv = ["--config", str(REPO / BASE), "--samples", str(samples), "--sets", "1", "--no-plot",
                        "--data-dir", str(REPO / DATA_DIR), "--json", str(path)]
                for text in sets:
                    argv += ["--set", text]
                path.parent.mkdir(parents=True, exist_ok=True)
                diagnose.main(argv)


def accuracy_runs(out, names=None):
    """The one-epoch runs (:class:`minimal_ep.run.campaign.Run`) of ``names`` (default ``ACCURACY``)."""
    folder = runner.repo_relative(out, REPO)
    return [runner.Run(name, pathlib.Path(BASE), folder / "accuracy" / name, 0, EPOCHS,
                       overrides(name) + HELD_OUT, DATA_DIR, root=REPO) for name in names or ACCURACY]


def summary(out):
    """The Markdown tables of both probes."""
    lines = ["| net | dynamics | SNN: cos(EP, BPTT) w1-w4 | SNN: \\|EP\\| / \\|BPTT\\| | "
             "CRNN: cos(EP, BPTT) | CRNN: \\|EP\\| / \\|BPTT\\| |", "|---|---|---|---|---|---|"]
    for net in NETS:
        for dyn in DYNAMICS:
            cells = []
            for kind in ("snn", "crnn"):
                path = out / "init" / f"{net}_{dyn}_{kind}.json"
                if not path.exists():
                    cells += ["", ""]
                    continue
                g = next(iter(json.loads(path.read_text()).values()))["gradients"]
                cells += [" / ".join(f"{g[k]['cos']:+.2f}" for k in g),
                          " / ".join(f"{g[k]['norm_ep'] / g[k]['norm_bptt']:.2f}" for k in g)]
            if any(cells):
                lines.append(f"| {net} | {dyn} | " + " | ".join(cells) + " |")
    lines += ["", "| run | validation error after each epoch | train error, last epoch | CPU s |",
              "|---|---|---|---|"]
    for run in accuracy_runs(out):
        metrics = runner.read_json_lines(run.folder / "metrics.jsonl")
        cpu = sum(c["cpu_seconds"] for c in runner.read_json_lines(run.folder / "campaign.jsonl")
                  if c["epochs_after"] > c["epochs_before"])          # the children that trained
        if metrics:
            lines.append(f"| {run.name} | " + " / ".join(f"{100 * m['test_error']:.2f}%" for m in metrics)
                         + f" | {100 * metrics[-1]['train_error']:.2f}% | {cpu:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = runner.parser(__doc__.split("\n")[0])          # with the campaign's --jobs, --log, --finish-by
    p.add_argument("probe", choices=("init", "accuracy", "summary"))
    p.add_argument("--out", type=pathlib.Path, default=OUT, help="where the probes go")
    p.add_argument("--names", nargs="+", metavar="NET_DYNAMICS", help="only these (e.g. A_qs)")
    p.add_argument("--samples", type=int, default=50, help="init: images measured")
    args = p.parse_args(argv)
    bad = [n for n in args.names or ()
           if n.split("_", 1)[0] not in NETS or n.split("_", 1)[-1] not in DYNAMICS]
    if bad:
        p.error(f"unknown probe {bad[0]!r}: NET_DYNAMICS with NET in {', '.join(NETS)} and DYNAMICS in "
                f"{', '.join(DYNAMICS)}")
    out = args.out.absolute()
    if args.probe == "init":
        init_probes(out, args.samples, args.names)
        return 0
    if args.probe == "summary":
        print(summary(out))
        return 0
    runs = [r for r in accuracy_runs(out, args.names) if r.status() != "done"]
    return runner.run_campaign(runs, args, out / "accuracy", REPO, prog="midscale_probes")


if __name__ == "__main__":
    sys.exit(main())
