"""The first SGD steps of a figure net, one line per step: does it learn, collapse, or die?

Trains a configuration (``minimal_ep.run.train.train_epoch``, the training loop itself) on ``--steps``
batches of ``--batch-size`` training images (the first steps x batch-size images, shuffled by
``--seed``) and records, per step, on that batch's free state, before the step's SGD update:

    loss, error       of the batch (the loss is the config's, at the free state)
    mean, at0, at1    per layer n = 1..L (L: the output), the mean state and the fractions of units
                      clipped at 0 and at 1 (a layer with at0 near 1 has died, an output with it has
                      collapsed; a unit clipped in both nudged phases passes no gradient)
    grad              per weight w_n, ||dL/dw_n|| of the step's gradient estimate (EP's or BPTT's)
    update            per weight, lr_n ||dL/dw_n|| / ||w_n||: the size of the step relative to the weight
    cpu               CPU seconds since the previous record (the phases of this step and the update
                      of the previous one; the comparison below not included)
    cos_bptt          with ``--compare-bptt K``, every K-th step (and the first): per weight, the cosine
                      between the step's gradient estimate and BPTT's gradient of the same batch's loss
                      after the same free phase (``minimal_ep.bptt_gradients``, through the spikes with
                      the surrogate derivative for the SNN); null on the other steps

docs/FIGURES.md ("Training recipe") chooses the figure nets' batch size and learning rates with it:

    python -m figures.probe_steps --config configs/figures/crnn_avg.toml --steps 400 --batch-size 25 \\
        --set "train.lr=[0.25, 0.15, 0.1, 0.02, 0.02]" --json results/figures/probes/lr/NAME.json

    python -m figures.probe_steps --summarize results/figures/probes/lr/*.json   # the table

Bad input exits with status 2 and one line.
"""
import json
import pathlib
import shlex
import sys
import time

from figures import cli  # (first: it pins BLAS to one thread before NumPy is imported)
import numpy as np

from minimal_ep import backend, bptt_gradients
from minimal_ep.optim import SGD
from minimal_ep.run.config import resolve
from minimal_ep.run.gradcheck import cosine
from minimal_ep.run.train import load_data, network_from_config, train_epoch


def probe(cfg, steps, batch_size, seed=0, compare_bptt=0, log=print, after_step=None):
    """Train ``steps`` SGD steps of the configured net; returns (records, the config it trained).

    Parameters
    ----------
    cfg : Config
        A resolved configuration; the probe trains ``cfg.replace(...)`` with ``data.batch_size =
        batch_size``, ``data.shuffle = true`` and ``data.test_size = 1`` (it reads no test image).
    steps, batch_size : int
    seed : int
        Shuffles the steps x batch_size training images into batches (the weights come from
        ``train.seed``).
    compare_bptt : int
        Every this many steps (0: never), also the cosine of the step's gradient with BPTT's.
    after_step : callable, optional
        Called with the records so far and the config after every step (``--json`` rewrites its file
        there, so a probe stopped early leaves the steps it made).
    """
    cfg = cfg.replace(**{"data.batch_size": batch_size, "data.shuffle": True,
                         "data.test_size": 1})                                # no test images used
    data = load_data(cfg)
    n = steps * batch_size
    if n > len(data.y_train):
        raise ValueError(f"--steps {steps} x --batch-size {batch_size} = {n} images, but the training "
                         f"set has {len(data.y_train)}")
    net = network_from_config(cfg)
    opt = SGD(net.params, cfg.train.lr, cfg.train.momentum)
    records, clock = [], [time.process_time()]

    def record(b, xb, yb, free, grads):
        xi = [backend.to_numpy(a) for a in free.xi[1:]]
        rec = {"step": b + 1, "loss": float(net.loss(free, yb)),
               "error": float(np.mean(backend.to_numpy(net.predict(free)) != backend.to_numpy(yb))),
               "mean": [float(a.mean()) for a in xi], "at0": [float(np.mean(a <= 0)) for a in xi],
               "at1": [float(np.mean(a >= 1)) for a in xi]}
        ws = sorted((k for k in grads if k.startswith("w")), key=lambda k: int(k[1:]))
        g = {k: float(np.linalg.norm(backend.to_numpy(grads[k]).astype(np.float64))) for k in ws}
        rec["grad"] = [g[k] for k in ws]
        w_norm = {k: float(np.linalg.norm(backend.to_numpy(net.params[k]).astype(np.float64))) for k in ws}
        rec["update"] = [opt.lr(k) * g[k] / max(w_norm[k], 1e-30) for k in ws]
        now = time.process_time()
        rec["cpu"], rec["cos_bptt"] = now - clock[0], None
        if compare_bptt and b % compare_bptt == 0:
            bp = bptt_gradients(net, xb, yb, cfg.train.T_free)
            rec["cos_bptt"] = [cosine(backend.to_numpy(grads[k]).astype(np.float64),
                                      backend.to_numpy(bp[k]).astype(np.float64)) for k in ws]
        clock[0] = time.process_time()
        records.append(rec)
        if after_step is not None:
            after_step(records, cfg)
        log(f"step {rec['step']:4d}  loss {rec['loss']:.4f}  error {rec['error']:.2f}  "
            f"mean {' '.join(f'{m:.3f}' for m in rec['mean'])}  "
            f"at0 {' '.join(f'{a:.2f}' for a in rec['at0'])}  at1 {' '.join(f'{a:.2f}' for a in rec['at1'])}  "
            f"|g| {' '.join(f'{v:.2e}' for v in rec['grad'])}  {rec['cpu']:.1f}s"
            + (f"  cos {' '.join(f'{c:.2f}' for c in rec['cos_bptt'])}" if rec["cos_bptt"] else ""))

    train_epoch(net, opt, cfg, data.x_train[:n], data.y_train[:n], np.random.default_rng(seed), 0,
                progress=False, on_batch=record)
    return records, cfg


def summarize(path, window=50):
    """One row of the recipe table from a ``--json`` file: the probe's settings, the mean batch error
    per ``window`` steps, the mean cosine with BPTT per weight, and the final at0 of every layer."""
    d = json.loads(pathlib.Path(path).read_text())
    c, steps = d["config"], d["steps"]
    errors = [r["error"] for r in steps]
    cos = np.array([r["cos_bptt"] for r in steps if r.get("cos_bptt")])
    m, t = c["model"], c["train"]
    return {"probe": pathlib.Path(path).stem, "net": f"{'SNN' if m['spiking'] else 'CRNN'}+{m['pool']}",
            "batch": c["data"]["batch_size"], "lr": t["lr"], "eps": m["eps"], "lam": m["lam"],
            "beta": t["beta"], "algorithm": t["algorithm"], "steps": len(steps),
            "error": [float(np.mean(errors[i:i + window])) for i in range(0, len(errors), window)],
            "cos_bptt": cos.mean(axis=0).tolist() if len(cos) else None, "at0_last": steps[-1]["at0"],
            "cpu_seconds": d["cpu_seconds"]}


def print_summary(paths, window=50, log=print):
    log(f"mean batch error per {window} steps; cos: mean per-batch cosine with BPTT, w1..w5; "
        "at0: fraction of units at 0 at the last step, layers 1..5")
    rows = [summarize(p, window) for p in paths]
    for r in rows:
        lr = "[" + ", ".join(f"{v:g}" for v in r["lr"]) + "]"
        log(f"{r['probe']}: {r['net']} {r['algorithm'].upper()} batch {r['batch']} lr {lr} "
            f"eps {r['eps']:g} lam {r['lam']:g} beta {r['beta']:g}, {r['steps']} steps "
            f"({r['cpu_seconds'] / 60:.0f} CPU-min)\n"
            f"    error {' '.join(f'{e:.2f}' for e in r['error'])}"
            + (f"  cos {' '.join(f'{v:.2f}' for v in r['cos_bptt'])}" if r["cos_bptt"] else "")
            + f"  at0 {' '.join(f'{a:.2f}' for a in r['at0_last'])}")
    return rows


def main(argv=None):
    p = cli.Parser(description=__doc__.split("\n")[0])
    p.add_argument("--summarize", nargs="+", default=None, metavar="JSON",
                   help="print the table of these --json files (mean error per 50 steps, mean cosines); "
                        "train nothing")
    p.add_argument("--config", help="the configuration to train (TOML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a key of the config (repeatable)")
    p.add_argument("--steps", type=cli.int_at_least(1), help="SGD steps")
    p.add_argument("--batch-size", type=cli.int_at_least(1), help="images per step")
    p.add_argument("--seed", type=cli.int_at_least(0), default=0, help="seed of the batches (not of the weights)")
    p.add_argument("--data-dir", default=None, help="MNIST folder (default: the config's data_dir)")
    p.add_argument("--compare-bptt", type=cli.int_at_least(0), default=0, metavar="K",
                   help="every K steps, the cosine of the gradient estimate with BPTT's (0: never)")
    p.add_argument("--json", default=None, help="write the command, config and records here")
    args = p.parse_args(argv)
    if args.summarize:
        return print_summary(args.summarize)
    if not (args.config and args.steps and args.batch_size):
        p.error("give --config, --steps and --batch-size (or --summarize)")
    cfg = resolve(args.config, args.overrides, **{"data.data_dir": args.data_dir})
    start = time.process_time()
    command = shlex.join(argv if argv is not None else sys.argv[1:])

    def save(records, trained):
        """The JSON so far: ``complete`` once all --steps are made."""
        cli.save_json(args, {"command": f"python figures/probe_steps.py {command}",
                             "cpu_seconds": time.process_time() - start, "config": trained.to_dict(),
                             "steps_planned": args.steps, "complete": len(records) == args.steps,
                             "steps": records})
    records, cfg = probe(cfg, args.steps, args.batch_size, args.seed, args.compare_bptt, after_step=save)
    save(records, cfg)
    return records


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
