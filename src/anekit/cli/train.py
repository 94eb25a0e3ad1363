"""`anekit train digits`: the guide's digit-classifier experiment (ch. 15) on the simulator.

Offline by default on scikit-learn's 8x8 digits; `--data DIR` reads MNIST IDX files and runs
the guide's 28x28 setting, printing the guide's per-step test accuracy beside ours.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from .train_stories import check_run_args, loss_scale_arg

# Guide ch. 15, tbl:c15-parity: test accuracy of the seeded 28x28 digit network (M1, M5).
GUIDE_ACCURACY = {0: (0.0850, 0.0850), 50: (0.8790, 0.8810), 100: (0.9020, 0.9020), 150: (0.9050, 0.9030),
                  200: (0.9070, 0.9070), 250: (0.9080, 0.9070), 300: (0.9080, 0.9070)}
EVAL_EVERY = 50
DEFAULTS = {"batch_size": 32, "lr": 1e-2, "seed": 0}


def register(subparsers) -> None:
    top = subparsers.add_parser("train", help="train a model on the simulator (digits CNN, Stories transformer)",
                                description="Train on the simulator: forward, backward and update as ANE programs.")
    models = top.add_subparsers(dest="model", metavar="MODEL")
    p = models.add_parser("digits", help="the guide's digit-classifier experiment (ch. 15)",
                          description="Train the small seeded digit CNN of the ANE guide (ch. 15) with "
                                      "forward, backward and Adam update as simulated ANE programs.")
    p.add_argument("--target", "-t", default="m1", help="chip whose numerics to simulate (default m1)")
    p.add_argument("--steps", type=int, default=300, help="total optimizer steps (default 300)")
    p.add_argument("--data", metavar="DIR", help="folder with MNIST IDX files (train-images-idx3-ubyte[.gz], ...): "
                                                 "28x28 setting; default: scikit-learn's 8x8 digits, offline")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"], help="minibatch size (default 32)")
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="Adam learning rate (default 1e-2)")
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="seed for weights, split and data order")
    p.add_argument("--loss-scale", default="dynamic", help="'dynamic' (start 1024, halve on overflow) or a power of two")
    p.add_argument("--numerics", choices=["profile", "exact"], default="profile",
                   help="the chip's fp16 numerics (default) or fp32 reference semantics")
    p.add_argument("--checkpoint", metavar="DIR", help="write checkpoints and metrics.jsonl here")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint DIR")
    p.add_argument("--plot", metavar="PNG", help="write the loss curve (needs matplotlib)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)
    from .train_stories import register as register_stories
    register_stories(models)
    top.set_defaults(func=lambda _args: _usage(top))


def _usage(parser) -> int:
    """`anekit train` without a model: its own help, exit 2."""
    parser.print_help(sys.stderr)
    return 2


def run_train(args) -> int:
    from ..models import digits
    from ..runtime import resolve_target
    from ..train import Trainer, data, optim
    from ..train.estimate import estimate_step

    chip = resolve_target(args.target)
    check_run_args(args, steps=(args.steps, 0), batch_size=(args.batch_size, 1))
    ds = data.load_mnist(args.data) if args.data else data.load_digits(split_seed=args.seed)
    size = ds.image_size
    loss, params, _ = digits.build(size, args.batch_size, seed=args.seed)
    opt = optim.Adam(params, lr=args.lr)
    trainer = Trainer(loss, params, opt, target=chip.name, loss_scale=loss_scale_arg(args.loss_scale),
                      checkpoint_dir=args.checkpoint, numerics=args.numerics,
                      progress=not (args.no_progress or args.json))
    if args.resume:
        trainer.resume()
    batches = data.Batches(ds.train_x, ds.train_y, args.batch_size, seed=args.seed)
    evaluate = _evaluator(ds, size, chip.name, args.numerics)
    accuracy = {}
    if trainer.step == 0:
        accuracy[0] = evaluate(opt.params)

    def on_step(tr, row):
        if tr.step % EVAL_EVERY == 0 or tr.step == args.steps:
            accuracy[tr.step] = evaluate(tr.opt.params)
    t0 = time.perf_counter()
    result = trainer.fit(batches, args.steps, callback=on_step)
    wall = time.perf_counter() - t0
    if trainer.step not in accuracy:
        accuracy[trainer.step] = evaluate(opt.params)
    est = estimate_step(trainer)
    if args.plot and trainer.history:
        trainer.plot(args.plot)
    report = {
        "test_accuracy": accuracy[trainer.step], "steps": trainer.step, "final_loss": result.final_loss,
        "step_ms": result.step_ms, "loss_scale": result.loss_scale, "overflow_steps": result.overflow_steps,
        "target": chip.name, "numerics": args.numerics, "dataset": ds.name, "train_size": len(ds.train_y),
        "test_size": len(ds.test_y), "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "accuracy_by_step": {str(k): v for k, v in sorted(accuracy.items())},
        "estimated_step_us": round(est["total_us"], 1), "wall_s": round(wall, 2),
        "interrupted": result.interrupted, "checkpoint": str(trainer.checkpoint_path) if args.checkpoint else None,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report, ds, size, chip.name)
    if result.interrupted:
        print(f"anekit: interrupted after step {trainer.step}"
              + (f"; checkpoint in {args.checkpoint} (--resume continues)" if args.checkpoint else ""),
              file=sys.stderr)
        return 130
    return 0


def _evaluator(ds, size, target, numerics):
    from .. import runtime
    from ..models import digits
    exe = runtime.compile(digits.eval_program(size, len(ds.test_y), target), backend="sim", target=target,
                          numerics=numerics)

    def evaluate(params) -> float:
        logits = exe({"x": ds.test_x, **params})["logits"]
        return float((np.argmax(logits, axis=1) == ds.test_y).mean())
    return evaluate


def _print_report(r, ds, size, target) -> None:
    print(f"dataset   {ds.describe()}  (batch {r['batch_size']}, seed {r['seed']}, Adam lr {r['lr']:g})")
    guide = size == 28
    head = f"{'step':>6}  {'test acc':>9}" + (f"  {'guide M1':>9}  {'guide M5':>9}" if guide else "")
    print(head)
    for k, acc in r["accuracy_by_step"].items():
        line = f"{k:>6}  {acc:>9.4f}"
        if guide and int(k) in GUIDE_ACCURACY:
            m1, m5 = GUIDE_ACCURACY[int(k)]
            line += f"  {m1:>9.4f}  {m5:>9.4f}"
        print(line)
    if not guide:
        print("(the guide's per-step table is for 28x28 MNIST: pass --data DIR to compare)")
    print(f"test accuracy {r['test_accuracy']:.4f} after {r['steps']} steps on {target} ({r['numerics']} numerics)")
    print(f"final loss {r['final_loss']}, step {r['step_ms']} ms on the simulator (median), "
          f"loss scale {r['loss_scale']:g}, overflow steps {r['overflow_steps']}")
    print(f"estimated step on the {target} ANE: {r['estimated_step_us'] / 1000:.3f} ms "
          "(cost model, forward+backward and update programs; not measured)")
