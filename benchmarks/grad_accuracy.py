"""Gradient accuracy per op: cosine and relative error against PyTorch float64 autograd.

    python benchmarks/grad_accuracy.py [--target m1] [--markdown]

Runs every case of tests/test_grad.py (one per rule, broadcasting and batch axes included)
twice: in exact numerics with fp32 inputs (the test bound is cosine >= 0.9999) and on the
target's profile with fp16 inputs and fp16 storage, the ANE's numerics as the simulator
models them (guide ch. 3), with runtime-weight convs in the lowered form the engine takes
(anekit.train.lowering). The fp16 inputs are given to the reference too, so the figure is
the error of the gradient computation, not of the input rounding. Needs torch.
"""
from __future__ import annotations

import argparse
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))

import test_grad  # noqa: E402  (the cases live with the tests)


def rows(target: str):
    for case in test_grad.CASES:
        exact = test_grad.case_accuracy(case, target, "exact", "fp32")
        chip = test_grad.case_accuracy(case, target, "profile", "fp16")
        yield case.id, exact, chip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="m1")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args(argv)
    out = list(rows(args.target))
    if args.markdown:
        print(f"| case | cosine, exact | rel. error, exact | cosine, {args.target} fp16 | rel. error, {args.target} fp16 |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for cid, (ce, re_), (cc, rc) in out:
            print(f"| `{cid}` | {ce:.6f} | {re_:.1e} | {cc:.6f} | {rc:.1e} |")
    else:
        for cid, (ce, re_), (cc, rc) in out:
            print(f"{cid:30s} exact cos {ce:.6f} rel {re_:.1e}   {args.target} cos {cc:.6f} rel {rc:.1e}")
    worst = min(out, key=lambda r: r[2][0])
    print(f"\n{len(out)} cases; worst {args.target} cosine {worst[2][0]:.6f} ({worst[0]}); "
          f"worst exact cosine {min(r[1][0] for r in out):.6f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
