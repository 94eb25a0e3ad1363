"""`anekit generate MODEL --prompt TEXT`: text generation with the KV-cache decode programs."""
from __future__ import annotations

import codecs
import os
import sys

from ..errors import ModelFormatError, UsageError
from ._table import to_json


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate text with a language model (llama2.c .bin or Hugging Face folder)",
                       description="Encode the prompt, run one prefill program over it and one decode program "
                                   "per new token (KV cache kept as state), stream the text, then report "
                                   "prefill and decode tokens/s.")
    p.add_argument("model", help="llama2.c checkpoint (.bin) or Hugging Face model folder")
    p.add_argument("--prompt", "-p", default="", help="text to continue (default: empty, start from BOS)")
    p.add_argument("--steps", "-n", type=int, default=256, help="new tokens to generate at most (default 256; "
                                                               "stops earlier when the context is full)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    p.add_argument("--top-p", type=float, default=0.9, help="nucleus sampling mass; 0 or 1 = off (default 0.9)")
    p.add_argument("--seed", type=int, default=None, help="sampling seed (default: random)")
    p.add_argument("-t", "--target", default="m4", help="chip whose numerics the simulator uses (default m4)")
    p.add_argument("--numerics", default="profile", choices=["profile", "strict", "exact"],
                   help="simulator numerics: the chip's fp16 profile (default), strict, or exact fp32")
    p.add_argument("--tokenizer", default=None,
                   help="llama2.c tokenizer.bin (default: NAME.tokenizer.bin beside NAME.bin, "
                        "else tokenizer.bin there)")
    p.add_argument("--quantize", default=None, choices=["int8", "lut4", "lut6"],
                   help="store the programs' weights compressed: per-channel int8, or 4 / 6-bit palettes")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of streaming text")
    p.set_defaults(func=cmd_generate)


def _default_tokenizer(model_path: str) -> str:
    """MODEL.tokenizer.bin beside the model (what `anekit train stories` writes), else tokenizer.bin there."""
    folder, name = os.path.split(os.path.abspath(model_path))
    own = os.path.join(folder, os.path.splitext(name)[0] + ".tokenizer.bin")
    return own if os.path.isfile(own) else os.path.join(folder, "tokenizer.bin")


def _load(args):
    """(model, encode(text) -> ids, piece(prev, id) -> bytes, stop ids)."""
    path = args.model
    if os.path.isdir(path):
        from ..models import hf
        m = hf.load(path)
        ids = m.encode(args.prompt)
        return m, lambda _: ids, m.text_stream(ids), m.stop_tokens
    if not os.path.isfile(path):
        raise ModelFormatError(f"model '{path}' does not exist")
    from ..models import llama2c, tokenizer
    m = llama2c.load(path)
    tok_path = args.tokenizer or _default_tokenizer(path)
    if os.path.isdir(tok_path):
        raise UsageError(f"tokenizer '{tok_path}' is a folder; pass the tokenizer.bin file")
    if not os.path.isfile(tok_path):
        raise UsageError(f"no tokenizer: '{tok_path}' does not exist (pass --tokenizer tokenizer.bin)")
    tok = tokenizer.load(tok_path)
    tok.check_vocab(m.vocab_size)
    return m, tok.encode, tok.decode, (tokenizer.BOS,)    # run.c: BOS delimits sequences


def cmd_generate(args) -> int:
    if args.steps < 0:
        raise UsageError(f"--steps must be >= 0, got {args.steps}")
    from ..models.tokenizer import printable
    m, encode, piece, stop = _load(args)
    m.quantize = args.quantize
    ids = encode(args.prompt)
    gen = m.generate(ids, args.steps, temperature=args.temperature, top_p=args.top_p, seed=args.seed,
                     numerics=args.numerics, target=args.target)
    out = [] if args.json else None
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    prev, produced = ids[-1], []
    if out is None:             # the prompt first, as run.c prints it
        sys.stdout.write(args.prompt)
    for token in gen:
        if token in stop:
            break
        produced.append(token)
        text = utf8.decode(printable(piece(prev, token)))
        prev = token
        if out is not None:
            out.append(text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    tail = utf8.decode(b"", final=True)
    s = m.stats
    # What the same programs would take on the chip's engine (cost model), beside the simulator's speed.
    est = m.estimate(args.target, prompt_tokens=len(ids))
    if out is not None:
        print(to_json({"prompt": args.prompt, "prompt_tokens": ids, "tokens": produced, "text": "".join(out) + tail,
                       "target": args.target, "numerics": args.numerics, "quantize": args.quantize,
                       "prefill_tokens_per_s": s.prefill_tokens_per_s, "decode_tokens_per_s": s.decode_tokens_per_s,
                       "prefill_s": s.prefill_s, "decode_s": s.decode_s, "compile_s": s.compile_s,
                       "estimate": est.to_dict()}))
        return 0
    sys.stdout.write(tail + "\n")
    sys.stdout.flush()
    print(f"prefill: {s.prompt_tokens} tokens, {s.prefill_tokens_per_s:.1f} tok/s; decode: {s.decode_tokens} "
          f"tokens, {s.decode_tokens_per_s:.1f} tok/s (simulator, {args.target} {args.numerics} numerics, "
          f"{args.quantize or 'fp16'} weights; "
          f"compile {s.compile_s:.2f} s)", file=sys.stderr)
    d = est.decode
    print(f"estimate on the {est.target}'s engine (cost model, not a measurement): prefill "
          f"{est.prefill_tokens_per_s:.0f} tok/s over {est.prompt_tokens} tokens ({est.prefill_ms:.2f} ms); "
          f"decode {d.tokens_per_s:.0f} tok/s ({d.low_tokens_per_s:.0f}-{d.high_tokens_per_s:.0f})", file=sys.stderr)
    return 0
