"""Validate anekit's ANE latency model against every usable published measurement.

    python benchmarks/cost_validation.py            # fit, leave-one-source-out, report
    python benchmarks/cost_validation.py --write    # ... and write src/anekit/cost/fitted.json
    python benchmarks/cost_validation.py --json     # everything as JSON

The headline is the leave-one-source-out (LOSO) error: for each measurement campaign (one
author, machine and harness; anekit.cost.published), the model's parameters are fitted to all
the other campaigns and then predict this one's points. The in-sample error (one fit to every
point) is printed beside it; it is the optimistic number. The fit is the procedure documented
in anekit/cost/fit.py (least squares on log error with priors from the guide; needs scipy).
--write stores the full fit and the LOSO residual bands (the estimate intervals) that
`anekit.cost.estimate` then uses.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
from pathlib import Path

import numpy as np

from anekit import targets
from anekit.cost import fit as F
from anekit.cost.params import generation_of
from anekit.cost.published import MEASUREMENT_OUTLIERS, POINTS, UNUSABLE

FITTED_JSON = Path(__file__).resolve().parents[1] / "src" / "anekit" / "cost" / "fitted.json"


def _bounds(points, theta) -> list[str]:
    """The program-level bound of each point under the full fit (for the interval bands)."""
    from anekit.cost import estimate
    tab = F.table(theta)
    out = []
    import anekit.cost.params as P
    saved = P.fitted
    P.fitted = lambda: tab          # evaluate with the candidate table, not the stored one
    try:
        for p in points:
            _, prog = p.programs()[0]
            out.append(estimate(prog, p.chip, route=p.route).bound)
    finally:
        P.fitted = saved
    return out


def run() -> dict:
    ds = F.collect(POINTS)
    theta = F.fit(ds)
    insample = F.predict(ds, theta)
    loso = F.loso(ds)["predicted"]
    meas = ds.measured
    rows = []
    for p, a, b in zip(POINTS, insample, loso):
        gen, _ = generation_of(targets.get(p.chip))
        rows.append({"id": p.id, "chip": p.chip, "family": gen, "source": p.source, "what": p.what,
                     "published_ms": p.published_ms, "insample_ms": float(a), "loso_ms": float(b),
                     "insample_err_pct": 100 * (a / p.published_ms - 1), "loso_err_pct": 100 * (b / p.published_ms - 1),
                     "cite": p.cite, "assumption": p.assumption, "route": p.route})
    by_source, by_family = {}, {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
        by_family.setdefault(r["family"], []).append(r)

    def summ(rs):
        a = F.summary([r["insample_ms"] for r in rs], [r["published_ms"] for r in rs])
        b = F.summary([r["loso_ms"] for r in rs], [r["published_ms"] for r in rs])
        return {"n": a["n"], "sources": len({r["source"] for r in rs}),
                "insample_median_pct": a["median_abs_pct"], "insample_max_factor": a["max_factor"],
                "loso_median_pct": b["median_abs_pct"], "loso_max_factor": b["max_factor"]}

    bounds = _bounds(POINTS, theta)
    tab = F.table(theta)
    tab["intervals"] = F.intervals(POINTS, loso, bounds)
    tab["about"] = {"generated": datetime.date.today().isoformat(),
                    "procedure": "anekit.cost.fit: least squares on log error with published priors "
                                 "(python benchmarks/cost_validation.py --write)",
                    "points": len(POINTS), "sources": len(by_source)}
    return {"points": rows,
            "insample": F.summary(insample, meas), "loso": F.summary(loso, meas),
            "within_2x_loso": int(np.sum(np.abs(np.log(loso / meas)) <= math.log(2))),
            "by_source": {s: summ(v) for s, v in by_source.items()},
            "by_family": {f: summ(v) for f, v in sorted(by_family.items())},
            "fitted": tab,
            "outliers": MEASUREMENT_OUTLIERS,
            "within_2x_loso_unflagged": int(sum(abs(math.log(r["loso_ms"] / r["published_ms"])) <= math.log(2)
                                                for r in rows if r["id"] not in MEASUREMENT_OUTLIERS)),
            "worst_loso": sorted(({"id": r["id"], "factor": math.exp(abs(math.log(r["loso_ms"] / r["published_ms"]))),
                                   "flagged": r["id"] in MEASUREMENT_OUTLIERS} for r in rows),
                                 key=lambda w: -w["factor"])[:8],
            "unusable": [{"source": s, "measurement": m, "why": w} for s, m, w in UNUSABLE]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--write", action="store_true", help=f"write the fit and interval bands to {FITTED_JSON.name}")
    args = ap.parse_args(argv)
    res = run()
    if args.write:
        FITTED_JSON.write_text(json.dumps(res["fitted"], indent=1, sort_keys=True) + "\n", "utf-8")
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    hdr = f"{'point':28s} {'chip':8s} {'published':>10s} {'in-sample':>10s} {'LOSO':>10s} {'LOSO err':>9s}  source"
    print(hdr)
    print("-" * len(hdr))
    for r in res["points"]:
        unit = " /layer" if "slope" in r["id"] else ""
        print(f"{r['id']:28s} {r['chip']:8s} {r['published_ms']:9.3f}ms {r['insample_ms']:9.3f}ms "
              f"{r['loso_ms']:9.3f}ms {r['loso_err_pct']:+8.1f}%  {r['source']}{unit}")
    L, I = res["loso"], res["insample"]
    print(f"\nLEAVE-ONE-SOURCE-OUT (headline): n={L['n']}, median |error| {L['median_abs_pct']:.1f}%, "
          f"max {L['max_abs_pct']:.0f}% (worst factor {L['max_factor']:.2f}x); "
          f"{res['within_2x_loso']}/{L['n']} points within 2x")
    print(f"in-sample (one fit to every point): median |error| {I['median_abs_pct']:.1f}%, "
          f"max {I['max_abs_pct']:.0f}% (worst factor {I['max_factor']:.2f}x)")
    n_flag = len(MEASUREMENT_OUTLIERS)
    print(f"flagged measurement outliers ({n_flag}, kept in every figure above; anekit.cost.published): "
          f"{res['within_2x_loso_unflagged']}/{L['n'] - n_flag} of the other points within 2x")
    print("worst LOSO points: " + ", ".join(f"{w['id']} {w['factor']:.2f}x" + (" (flagged)" if w["flagged"] else "")
                                             for w in res["worst_loso"]))
    print(f"\n{'family':8s} {'points':>6s} {'sources':>7s} {'in-sample med':>13s} {'max x':>6s} {'LOSO med':>9s} {'max x':>6s}")
    for f, s in res["by_family"].items():
        print(f"{f:8s} {s['n']:6d} {s['sources']:7d} {s['insample_median_pct']:12.1f}% {s['insample_max_factor']:6.2f} "
              f"{s['loso_median_pct']:8.1f}% {s['loso_max_factor']:6.2f}")
    print(f"\n{'source (left out in turn)':42s} {'points':>6s} {'LOSO med':>9s} {'max x':>6s}")
    for src, s in res["by_source"].items():
        print(f"{src:42s} {s['n']:6d} {s['loso_median_pct']:8.1f}% {s['loso_max_factor']:6.2f}")
    print("\nfitted parameters (priors and their sources: anekit/cost/params.py):")
    for gen, vals in res["fitted"]["generations"].items():
        print(f"  {gen}: " + ", ".join(f"{k} {v:.4g}" for k, v in vals.items()))
    print("  shared: " + ", ".join(f"{k} {v:.3g}" for k, v in res["fitted"]["shared"].items()))
    print("\nassumptions where a source leaves the shape open:")
    for p in POINTS:
        if p.assumption:
            print(f"  {p.id}: {p.assumption}")
    print("\nflagged measurement outliers (non-monotone in work within their own run):")
    for pid, why in MEASUREMENT_OUTLIERS.items():
        print(f"  {pid}: {why}")
    print("\nmeasurements found but not usable:")
    for u in res["unusable"]:
        print(f"  {u['source']}: {u['measurement']} ({u['why']})")
    if args.write:
        print(f"\nwrote {FITTED_JSON}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
