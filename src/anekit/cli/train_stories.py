"""`anekit train stories`: a llama2.c (Stories) transformer trained through the seed projects'
static or dynamic kernel pipeline on the simulator; prints a sample and saves a run.c .bin."""
from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

from ..errors import UsageError

CONFIG_NAMES = ("tiny", "15M", "42M", "110M")
# The attention kernels hold [heads, S, S] float32 scores, mask, probabilities and their
# cotangent at once; past this the simulator would die allocating them, so refuse first.
MAX_ATTENTION_BYTES = 2 << 30


def register(models) -> None:
    p = models.add_parser("stories", help="a llama2.c Stories transformer (static or dynamic ANE pipeline)",
                          description="Train a llama2.c model with next-token cross-entropy, AdamW, a cosine "
                                      "schedule and loss scaling; layers run as simulated ANE kernels.")
    p.add_argument("--config", choices=CONFIG_NAMES, default="tiny",
                   help="model size (default tiny: dim 64, 2 layers, seq 64, trains in a minute or two)")
    p.add_argument("--data", metavar="FILE", help="UTF-8 text to train on (default: a built-in procedural "
                                                  "story corpus, seeded)")
    p.add_argument("--tokenizer", metavar="BIN", help="llama2.c tokenizer.bin (default: byte-level, vocab 259)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--target", "-t", default="m4", help="chip whose numerics to simulate (default m4)")
    p.add_argument("--pipeline", choices=["dynamic", "static"], default="dynamic",
                   help="dynamic: weights as inputs, kernels compiled once; static: weights baked, "
                        "recompiled every step")
    p.add_argument("--backend", choices=["sim", "ane"], default="sim",
                   help="where the kernels run: the simulator (default) or the ANE (macOS; never tried on hardware)")
    p.add_argument("--head", choices=["cpu", "engine"], default="cpu",
                   help="where the final norm, classifier and cross-entropy run (default cpu, as the seeds; "
                        "engine: one more kernel, if its vocab-wide tensors fit the target)")
    p.add_argument("--seq-len", type=int, help="context length (default: the config's)")
    p.add_argument("--lr", type=float, default=3e-3, help="peak AdamW learning rate (default 3e-3)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights, corpus and batches")
    p.add_argument("--loss-scale", default="dynamic", help="'dynamic' (start 1024) or a power of two")
    p.add_argument("--numerics", choices=["profile", "exact"], default="profile",
                   help="the chip's fp16 numerics (default) or fp32 reference semantics")
    p.add_argument("--checkpoint", metavar="DIR", help="write checkpoints here (every 50 steps and at the end)")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --checkpoint DIR")
    p.add_argument("--out", metavar="BIN", help="where to save the run.c model (default: DIR/model.bin with "
                                                "--checkpoint, else stories-<config>.bin)")
    p.add_argument("--sample-tokens", type=int, default=200, help="tokens of sample text to print (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_stories)


def check_run_args(args, **counts) -> None:
    """The checks both `anekit train` commands make: counts that must not be negative (or below
    the given minimum), a seed numpy accepts, and --resume only with --checkpoint."""
    counts.setdefault("seed", (args.seed, 0))        # numpy's generators refuse negative seeds
    for flag, (value, least) in counts.items():
        if value < least:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= {least}, got {value}")
    if args.resume and not args.checkpoint:
        raise UsageError("--resume needs --checkpoint DIR")


def loss_scale_arg(text: str):
    """--loss-scale: "dynamic" or a number (both `anekit train` commands)."""
    if text == "dynamic":
        return text
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--loss-scale {text!r}: expected 'dynamic' or a power of two") from None


def run_stories(args) -> int:
    from ..models.tokenizer import load as load_tokenizer
    from ..runtime import resolve_target
    from ..train.pipelines import corpus
    from ..train.pipelines.stories import estimate_step_ms
    from ..train.pipelines.trainer import CONFIGS, StoriesTrainer

    chip = resolve_target(args.target)
    check_run_args(args, steps=(args.steps, 0), sample_tokens=(args.sample_tokens, 0))
    tok = load_tokenizer(args.tokenizer) if args.tokenizer else corpus.byte_tokenizer()
    config = dataclasses.replace(CONFIGS[args.config], vocab_size=tok.vocab_size)
    if args.seq_len is not None:
        if args.seq_len < 2:
            raise UsageError("--seq-len must be >= 2")
        config = dataclasses.replace(config, seq_len=args.seq_len)
        need = 4 * config.n_heads * config.seq_len ** 2 * 4
        if need > MAX_ATTENTION_BYTES:
            raise UsageError(f"--seq-len {args.seq_len}: attention for {config.n_heads} heads needs about "
                             f"{need / 2**30:.3g} GiB, over the {MAX_ATTENTION_BYTES / 2**30:g} GiB limit of the "
                             "simulated kernels; lower --seq-len")
    text = corpus.read_text(args.data) if args.data else corpus.procedural_corpus(seed=args.seed)
    ids = corpus.encode(tok, text)
    windows = corpus.Windows(ids, config.seq_len, seed=args.seed)
    trainer = StoriesTrainer(config, args.pipeline, chip.name, steps=args.steps, lr=args.lr,
                             loss_scale=loss_scale_arg(args.loss_scale), numerics=args.numerics,
                             checkpoint_dir=args.checkpoint, seed=args.seed, head=args.head,
                             backend=args.backend)
    if args.resume:
        trainer.resume()
    bar = None
    if not (args.json or args.no_progress) and trainer.step < args.steps:
        try:
            from tqdm import tqdm
            bar = tqdm(total=args.steps, initial=trainer.step, unit="step", file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            bar = None

    def on_step(row):
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", ms=f"{row['step_ms']:.0f}", scale=f"{row['loss_scale']:g}",
                            refresh=False)
    t0 = time.perf_counter()
    try:
        rows = trainer.fit(windows, on_step)
    except KeyboardInterrupt:
        if args.checkpoint:
            trainer.save()
        print(f"anekit: interrupted after step {trainer.step}"
              + (f"; checkpoint in {args.checkpoint} (--resume continues)" if args.checkpoint else ""),
              file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - t0
    out = Path(args.out) if args.out else (Path(args.checkpoint) / "model.bin" if args.checkpoint
                                           else Path(f"stories-{args.config}.bin"))
    model = trainer.model()
    model.save(out)
    tok_out = None
    if not args.tokenizer:                # run.c needs a tokenizer.bin beside the model
        tok_out = out.with_name(out.stem + ".tokenizer.bin")
        tok.save(tok_out)
    sample = ""
    if args.sample_tokens:
        gen = model.generate([1], steps=min(args.sample_tokens, config.seq_len - 1), temperature=0.8,
                             seed=args.seed, numerics="exact", target=chip.name)
        sample = tok.decode_all(list(gen)).decode("utf-8", errors="replace")
    steady = rows[1:]                     # this run's first step compiles the kernels (also after --resume)
    first = trainer.history[0] if trainer.history else None
    report = {
        "config": args.config, "dim": config.dim, "n_layers": config.n_layers, "vocab_size": config.vocab_size,
        "seq_len": config.seq_len, "params": model.n_params(), "pipeline": args.pipeline, "target": chip.name,
        "numerics": args.numerics, "steps": trainer.step,
        "first_step": first["step"] if first else None, "first_loss": first["loss"] if first else None,
        "final_loss": _mean_last([r["loss"] for r in rows], 10),
        "step_ms": statistics.median(r["step_ms"] for r in steady) if steady else None,
        "compiles_per_step": trainer.pipe.compiles_per_step, "kernels_per_step": trainer.pipe.kernels_per_step,
        "compiles_total": trainer.pipe.compiles, "kernels_checked": sorted(trainer.pipe.checked), "worker_recycles": trainer.pipe.worker_recycles,
        "estimated_engine_ms": round(estimate_step_ms(config, args.pipeline, chip.name, args.head)["total"], 3),
        "overflow_steps": trainer.scaler.overflow_steps, "loss_scale": trainer.scaler.scale,
        "dataset": args.data or "procedural stories (built in)", "tokens": int(len(ids)),
        "tokenizer": args.tokenizer or "byte-level (259)", "model": str(out),
        "tokenizer_out": str(tok_out) if tok_out else None, "wall_s": round(wall, 2), "sample": sample,
        "head": args.head,
        "cpu": "embedding gather and scatter-add, " + ("" if args.head == "engine" else
                                                        "final RMSNorm, classifier, cross-entropy, ")
               + "AdamW (fp32 master)",
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_report(report)
    return 0


def _mean_last(xs, n):
    return sum(xs[-n:]) / len(xs[-n:]) if xs else None


def _print_report(r) -> None:
    print(f"model     {r['config']}: dim {r['dim']}, {r['n_layers']} layers, vocab {r['vocab_size']}, "
          f"seq {r['seq_len']}, {r['params']:,} parameters")
    print(f"data      {r['dataset']}, {r['tokens']:,} tokens ({r['tokenizer']})")
    print(f"pipeline  {r['pipeline']} on {r['target']} ({r['numerics']} numerics, simulator): "
          f"{r['kernels_per_step']} kernels/step, {r['compiles_per_step']} compiles/step, "
          f"{r['compiles_total']} compiles in all, {r['worker_recycles']} worker recycles")
    print(f"cpu       {r['cpu']}")
    if r["first_loss"] is not None:
        print(f"loss      {r['first_loss']:.3f} at step {r['first_step']} -> {r['final_loss']:.3f} "
              "(mean of the last 10) "
              f"after {r['steps']} steps; step {r['step_ms'] or 0:.0f} ms (median), loss scale "
              f"{r['loss_scale']:g}, {r['overflow_steps']} overflow steps")
    print(f"estimate  {r['estimated_engine_ms']:.2f} ms per step for the kernels on the {r['target']} ANE "
          "(cost model; host work and compiles not included; not measured)")
    print(f"saved     {r['model']}" + (f" (+ {r['tokenizer_out']})" if r["tokenizer_out"] else ""))
    if r["sample"]:
        print("sample    " + r["sample"].replace("\n", "\n          "))
