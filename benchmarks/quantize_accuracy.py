"""Accuracy of compressed weights (ak.quantize) on a Stories15M-shaped llama2.c model.

    python benchmarks/quantize_accuracy.py [--tokens 128] [--seed 0] [--numerics profile] [--json]

No trained checkpoint ships with the project (nor can one be fetched here), so the model is
`llama2c.new(STORIES15M)`: random weights. Perplexity of random weights on real text means
nothing, so the text is "held in": `--tokens` tokens sampled (temperature 1) from the fp16 model
itself, then each variant's perplexity on that text and its logits against the fp16 model's
(relative error ||l - l16|| / ||l16||, and how often the top-1 token agrees). Everything runs on
the simulator with the chip's fp16 numerics (M4 profile) unless --numerics says otherwise.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from anekit.models import llama2c


def perplexity(logits: np.ndarray, tokens: list[int]) -> float:
    """exp(mean next-token NLL): logits[i] predicts tokens[i + 1]."""
    z = logits[:-1].astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.exp(-logp[np.arange(len(tokens) - 1), tokens[1:]].mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--numerics", default="profile", choices=["profile", "exact"])
    ap.add_argument("--target", default="m4")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    m = llama2c.new(llama2c.STORIES15M, seed=args.seed)
    text = [1] + list(m.generate([1], args.tokens - 1, temperature=1.0, seed=args.seed,
                                 numerics=args.numerics, target=args.target))
    rows = []
    ref = None
    for fmt in (None, "int8", "lut6", "lut4"):
        m.quantize = fmt
        t0 = time.perf_counter()
        logits = m.logits(text, numerics=args.numerics, target=args.target)
        secs = time.perf_counter() - t0
        if ref is None:
            ref = logits
        rel = float(np.linalg.norm(logits - ref) / np.linalg.norm(ref))
        top1 = float(np.mean(logits.argmax(axis=1) == ref.argmax(axis=1)))
        prog = m.decode_program()
        from anekit.ir.weights import program_weight_bytes
        rows.append({"weights": fmt or "fp16", "perplexity": perplexity(logits, text), "logit_rel_err": rel,
                     "top1_agree": top1, "weight_mb": program_weight_bytes(prog.main) / 1e6, "seconds": secs})
    if args.json:
        print(json.dumps({"model": "Stories15M-shaped, random init", "tokens": len(text), "numerics": args.numerics,
                          "target": args.target, "rows": rows}, indent=1))
        return
    print(f"Stories15M-shaped random model, {len(text)} held-in tokens sampled from the fp16 model, "
          f"{args.target} {args.numerics} numerics")
    print(f"{'weights':8} {'perplexity':>10} {'logit rel err':>13} {'top-1 agree':>11} {'stored MB':>9}")
    for r in rows:
        print(f"{r['weights']:8} {r['perplexity']:10.2f} {r['logit_rel_err']:13.4f} {r['top1_agree']:11.3f} "
              f"{r['weight_mb']:9.2f}")


if __name__ == "__main__":
    main()
