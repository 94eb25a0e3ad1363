"""Validate anekit's ANE latency model against every usable published measurement.

    python benchmarks/cost_validation.py [--json]

For each point (guide ch. 7, 9, 10, 11, 13, 18, 20 and seed 001) it rebuilds the measured
program in the IR, estimates it on the chip it was measured on, and prints published vs
predicted with the source. Points flagged CAL set a model constant (see
anekit/cost/params.py); the headline error is over the held-out points only. For the M1 and
M5 points the guide's own analytic model (ch. 18: max(flops / peak, bytes / bandwidth) + floor
with its fitted anchors) is printed alongside as the baseline. Measurements that could not be
rebuilt are listed at the end with the reason.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

from anekit.cost.opwork import op_work
from anekit.cost.published import POINTS, UNUSABLE

# The guide's fitted anchors for its three-stage model (ch. 18, tbl:c18-chip-params).
GUIDE_MODEL = {"M1 Max": (3.25e12, 9.0e9, 0.23e-3), "M5 Pro": (8.9e12, 57e9, 0.11e-3)}


def guide_model_ms(point) -> float | None:
    """ch. 18: t = max(sum flops / peak, sum operand bytes / bandwidth) + floor."""
    if point.chip not in GUIDE_MODEL or point.slope:
        return None
    peak, bw, floor = GUIDE_MODEL[point.chip]
    fn = point.build().main
    flops = nbytes = 0.0
    for op in fn.ops:
        w = op_work(op, ())
        if w.path in ("const", "free"):
            continue
        flops += w.flops
        nbytes += w.bytes
    return (max(flops / peak, nbytes / bw) + floor) * 1e3


def rederive() -> dict:
    """Recompute the constants the calibration points set, from the points themselves."""
    from anekit.cost import params_for
    pts = {p.id: p for p in POINTS}

    def weight_mb(point):
        return sum(op_work(op, ()).weight_bytes for op in point.build().main.ops) / 1e6

    a, b = pts["m2-fp16-4096"], pts["m2-fp16-8192"]
    wa, wb = weight_mb(a), weight_mb(b)
    stream = (wb - wa) / (b.published_ms - a.published_ms)          # MB per ms = GB/s
    floor_us = (a.published_ms - wa / stream) * 1e3
    m2 = params_for("M2 Pro")
    chain = pts["m4max-conv-chain-128"]
    m4 = params_for("M4 Max")
    budget_ms = chain.published_ms - m4.dispatch_us / 1e3
    return {"m2_floor_us": floor_us, "m2_stream_gbs": stream,
            "m2_params": (m2.dispatch_us, m2.matmul_weight_gbs),
            "m4max_min_weight_gbs": weight_mb(chain) / budget_ms, "m4max_params": m4.conv_weight_gbs}


def _stats(errs):
    return {"n": len(errs), "median_abs_pct": statistics.median(errs), "max_abs_pct": max(errs)}


def pct(pred: float, pub: float) -> float:
    return 100.0 * (pred - pub) / pub


def run() -> dict:
    rows = []
    for p in POINTS:
        pred = p.predict_ms()
        base = guide_model_ms(p)
        rows.append({"id": p.id, "chip": p.chip, "what": p.what, "published_ms": p.published_ms,
                     "predicted_ms": pred, "error_pct": pct(pred, p.published_ms),
                     "guide_model_ms": base, "guide_model_error_pct": None if base is None else pct(base, p.published_ms),
                     "calibrates": p.calibrates or None, "source": p.source, "assumption": p.assumption})
    held = [abs(r["error_pct"]) for r in rows if not r["calibrates"]]
    every = [abs(r["error_pct"]) for r in rows]
    per_chip = {}
    for r in rows:
        if not r["calibrates"]:
            per_chip.setdefault(r["chip"], []).append(abs(r["error_pct"]))
    base_pairs = [(abs(r["error_pct"]), abs(r["guide_model_error_pct"])) for r in rows
                  if r["guide_model_error_pct"] is not None and not r["calibrates"]]
    return {
        "points": rows,
        "held_out": {"n": len(held), "median_abs_pct": statistics.median(held), "max_abs_pct": max(held)},
        "all": {"n": len(every), "median_abs_pct": statistics.median(every), "max_abs_pct": max(every)},
        "held_out_without_m2": _stats([abs(r["error_pct"]) for r in rows
                                       if not r["calibrates"] and r["chip"] != "M2 Pro"]),
        "held_out_by_chip": {c: {"n": len(v), "median_abs_pct": statistics.median(v), "max_abs_pct": max(v)}
                             for c, v in per_chip.items()},
        "vs_guide_model": None if not base_pairs else {
            "n": len(base_pairs), "anekit_median_abs_pct": statistics.median(a for a, _ in base_pairs),
            "guide_median_abs_pct": statistics.median(b for _, b in base_pairs)},
        "calibration_points": [r["id"] for r in rows if r["calibrates"]],
        "rederived": rederive(),
        "unusable": [{"source": s, "measurement": m, "why": w} for s, m, w in UNUSABLE],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)
    res = run()
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    hdr = f"{'point':24s} {'chip':7s} {'published':>10s} {'predicted':>10s} {'error':>8s} {'guide ch18':>10s}  use   source"
    print(hdr)
    print("-" * len(hdr))
    for r in res["points"]:
        base = "" if r["guide_model_error_pct"] is None else f"{r['guide_model_error_pct']:+.0f}%"
        use = "CAL " if r["calibrates"] else "held"
        unit = " /layer" if r["id"].startswith("m1-conv1-slope") else ""
        print(f"{r['id']:24s} {r['chip']:7s} {r['published_ms']:9.3f}ms {r['predicted_ms']:9.3f}ms "
              f"{r['error_pct']:+7.1f}% {base:>10s}  {use}  {r['source']}{unit}")
    h, a = res["held_out"], res["all"]
    print(f"\nheld-out points: n={h['n']}, median |error| {h['median_abs_pct']:.1f}%, max {h['max_abs_pct']:.1f}%")
    print(f"all points:      n={a['n']}, median |error| {a['median_abs_pct']:.1f}%, max {a['max_abs_pct']:.1f}%")
    w = res["held_out_without_m2"]
    print(f"held out, without the M2 points (which share a harness with their calibration points): "
          f"n={w['n']}, median {w['median_abs_pct']:.1f}%, max {w['max_abs_pct']:.1f}%")
    for chip, s in res["held_out_by_chip"].items():
        print(f"  held out on {chip:7s}: n={s['n']:2d}, median {s['median_abs_pct']:5.1f}%, max {s['max_abs_pct']:5.1f}%")
    v = res["vs_guide_model"]
    if v:
        print(f"guide ch. 18 analytic model on the same {v['n']} held-out M1/M5 points: median |error| "
              f"{v['guide_median_abs_pct']:.1f}% (anekit {v['anekit_median_abs_pct']:.1f}%)")
    print("\ncalibration points (set a constant in anekit/cost/params.py):")
    for p in POINTS:
        if p.calibrates:
            print(f"  {p.id}: {p.calibrates}")
    d = res["rederived"]
    print(f"  re-derived: M2 floor {d['m2_floor_us']:.0f} us and weight stream {d['m2_stream_gbs']:.1f} GB/s "
          f"(params.py {d['m2_params'][0]:g} us, {d['m2_params'][1]:g} GB/s); the M4 Max chain needs >= "
          f"{d['m4max_min_weight_gbs']:.0f} GB/s of weight stream (params.py {d['m4max_params']:g})")
    print("\nassumptions where a source leaves the shape open:")
    for p in POINTS:
        if p.assumption and not p.calibrates:
            print(f"  {p.id}: {p.assumption}")
    print("\nmeasurements found but not usable:")
    for u in res["unusable"]:
        print(f"  {u['source']}: {u['measurement']} ({u['why']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
