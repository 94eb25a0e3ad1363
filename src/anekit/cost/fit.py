"""Fitting the model's named parameters to the published points, and validating by source.

Procedure (re-run: `python benchmarks/cost_validation.py --fit --write`):

  minimise  sum_i  w_i^2 log(predicted_i / measured_i)^2            (data: log error)
          + sum_k  ((log theta_k - log prior_k) / log spread_k)^2   (each parameter's published prior)

over theta = the FITTED parameters of every generation (anekit.cost.params) plus the shared
host-copy rate, with scipy.optimize.least_squares (trust region, numeric Jacobian).
w_i = sqrt(N / (S n_s)) for a point of a source with n_s of the N points from S sources, so each
measurement campaign weighs the same however many rows it published. The prior term keeps a parameter no point constrains at its published
value, and says how far the data may move one that is. Leave-one-source-out (loso) refits
without each source in turn and predicts that source's points.

The model is evaluated here over numpy arrays of every op of every point (model.op_times), so a
full fit takes about a second. scipy is imported only when fitting.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import numpy as np

from ..errors import DependencyError
from . import params as P
from .model import features_array, op_times, walk
from .. import targets

_FIELDS = P.FITTED
_GENS = tuple(P.GENERATIONS)
# log bounds: factors never above 1 (a spill cannot speed the array up); rates within 100x.
_UPPER_ONE = P.FRACTIONS
# Where the search starts when it is not the prior: the single-row share enters through a min()
# with the engine's own rate, so at its prior (0.75) the cap binds on no chip and the search sees no
# slope; starting low, where the cap binds, lets the data move it (the prior still pulls it back
# where no point constrains it).
_START = {"gemv_share": 0.25}


@dataclass
class Dataset:
    """Every op of every point's programs, as feature columns, plus the tables to sum them."""
    points: list
    cols: dict            # op feature columns
    op_prog: np.ndarray   # program index of each op
    prog_point: np.ndarray
    prog_sign: np.ndarray
    prog_chip: np.ndarray
    prog_host: np.ndarray     # 1.0 where the program runs on a host-copy route
    prog_floor: np.ndarray    # the route's dispatch-floor ratio (params.ROUTE_FLOOR)
    chips: list           # chip records, indexed by prog_chip
    chip_gen: np.ndarray
    chip_scale: np.ndarray    # rate scale to the generation's reference chip (params.chip_scale)
    chip_cap: np.ndarray      # DRAM cap on the streams (GB/s; inf when unknown)
    chip_dram: np.ndarray     # the chip's DRAM bandwidth (GB/s; inf when unknown): caps the single-row stream
    chip_band: np.ndarray     # weight stream of a 16 MiB-multiple weight (GB/s; inf: no slow band)
    chip_host: np.ndarray     # the chip's host-copy rate relative to the shared one (params.host_copy_scale)
    measured: np.ndarray      # published ms per point
    sources: list             # source of each point

    def subset(self, keep: np.ndarray) -> "Dataset":
        """The points where keep is True (op rows and programs follow)."""
        pk = keep[self.prog_point]
        ok = pk[self.op_prog]
        new_prog = -np.ones(len(self.prog_point), int)
        new_prog[pk] = np.arange(pk.sum())
        new_point = -np.ones(len(self.points), int)
        new_point[keep] = np.arange(keep.sum())
        return Dataset([p for p, k in zip(self.points, keep) if k], {c: v[ok] for c, v in self.cols.items()},
                       new_prog[self.op_prog[ok]], new_point[self.prog_point[pk]], self.prog_sign[pk],
                       self.prog_chip[pk], self.prog_host[pk], self.prog_floor[pk], self.chips, self.chip_gen, self.chip_scale,
                       self.chip_cap, self.chip_dram, self.chip_band, self.chip_host, self.measured[keep],
                       [s for s, k in zip(self.sources, keep) if k])


def collect(points) -> Dataset:
    """Build every point's programs once and extract their op features on their chip."""
    chips, chip_index = [], {}
    cols_list, op_prog, prog_point, prog_sign, prog_chip, prog_host, prog_floor = [], [], [], [], [], [], []
    for i, pt in enumerate(points):
        chip = targets.get(pt.chip)
        if chip.name not in chip_index:
            chip_index[chip.name] = len(chips)
            chips.append(chip)
        pp = P.params_for(chip, table={})     # capacities are published constants, never fitted
        for sign, prog in pt.programs():
            feats = walk(prog, prog.main, pp.streams, pp.working_set_bytes, pp.weight_sram_bytes, pp.resident_bytes,
                         pp.ocg_channels, pp.smooth_crossing)
            cols_list.append(features_array(feats))
            prog_host.append(pt.route in P.HOST_COPY_ROUTES)
            prog_floor.append(P.ROUTE_FLOOR[pt.route])
            op_prog.extend([len(prog_point)] * len(feats))
            prog_point.append(i)
            prog_sign.append(sign)
            prog_chip.append(chip_index[chip.name])
    cols = {c: np.concatenate([x[c] for x in cols_list]) for c in cols_list[0]}
    gens, scales, caps, drams, bands, hosts = [], [], [], [], [], []
    for chip in chips:
        gen, _ = P.generation_of(chip)
        gens.append(_GENS.index(gen))
        scales.append(P.chip_scale(chip, gen)[0])
        caps.append(P.DRAM_SHARE * chip.dram_gbs if chip.dram_gbs else np.inf)
        drams.append(chip.dram_gbs or np.inf)
        bands.append(P.slow_band(chip)[0] or np.inf)
        hosts.append(P.host_copy_scale(chip))
    return Dataset(list(points), cols, np.array(op_prog), np.array(prog_point), np.array(prog_sign),
                   np.array(prog_chip), np.array(prog_host, float), np.array(prog_floor), chips, np.array(gens), np.array(scales), np.array(caps), np.array(drams), np.array(bands), np.array(hosts),
                   np.array([p.published_ms for p in points]), [p.source for p in points])


def _theta0() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Initial values (log priors), prior log-spreads and names of the parameter vector."""
    vals, sig, names = [], [], []
    starts = []
    for g in _GENS:
        for f in _FIELDS:
            pr = P.prior(g, f)
            vals.append(math.log(pr.value))
            starts.append(math.log(_START.get(f, pr.value)))
            sig.append(pr.sigma)
            names.append(f"{g}.{f}")
    pr = P.SHARED_PRIORS["host_copy_gbs"]
    vals.append(math.log(pr.value))
    sig.append(pr.sigma)
    names.append("host_copy_gbs")
    starts.append(vals[-1])
    return np.array(vals), np.array(sig), np.array(starts), names


def predict(ds: Dataset, theta: np.ndarray) -> np.ndarray:
    """Predicted ms of every point for a parameter vector."""
    nf = len(_FIELDS)
    g = _tied(np.exp(theta[:-1]).reshape(len(_GENS), nf))
    host_gbs = math.exp(theta[-1])
    scale = ds.chip_scale
    per_chip = {f: g[ds.chip_gen, j] for j, f in enumerate(_FIELDS)}
    for f in ("conv_tflops", "matmul_tflops", "weight_gbs", "conv_load_gbs", "io_gbs"):
        per_chip[f] = per_chip[f] * scale
    engine_gbs = per_chip["weight_gbs"]
    for f in P.CAPPED_STREAMS:
        per_chip[f] = np.minimum(per_chip[f], ds.chip_cap)
    per_chip["spill_stall"] = engine_gbs / per_chip["weight_gbs"]      # params.SPILL_STALL_SOURCE
    per_chip["gemv_gbs"] = np.minimum(per_chip["gemv_gbs"], per_chip["gemv_share"] * ds.chip_dram)
    per_chip["vector_gbs"] = P.VECTOR_RATIO * per_chip["io_gbs"]
    per_chip["slow_band_gbs"] = ds.chip_band
    op_chip = ds.prog_chip[ds.op_prog]
    t = op_times(ds.cols, {k: v[op_chip] for k, v in per_chip.items()})
    prog_us = np.bincount(ds.op_prog, weights=t["us"], minlength=len(ds.prog_point))
    prog_io = np.bincount(ds.op_prog, weights=ds.cols["io_bytes"], minlength=len(ds.prog_point))
    prog_us = prog_us + per_chip["dispatch_us"][ds.prog_chip] * ds.prog_floor + ds.prog_host * prog_io / (host_gbs * ds.chip_host[ds.prog_chip] * 1e3)
    point_us = np.bincount(ds.prog_point, weights=prog_us * ds.prog_sign, minlength=len(ds.points))
    return np.maximum(point_us, 1e-3) / 1e3


def _tied(g: np.ndarray) -> np.ndarray:
    """The generation x field value matrix with tied entries (params.TIED) taken from their source."""
    for (gen, f), src in P.TIED.items():
        g[_GENS.index(gen), _FIELDS.index(f)] = g[_GENS.index(src), _FIELDS.index(f)]
    return g


def _weights(ds: Dataset) -> np.ndarray:
    count: dict[str, int] = {}
    for s in ds.sources:
        count[s] = count.get(s, 0) + 1
    # each source weighs the same in total; overall the data weigh as many points as there are
    return np.array([math.sqrt(len(ds.sources) / (len(count) * count[s])) for s in ds.sources])


def fit(ds: Dataset, theta0: np.ndarray | None = None) -> np.ndarray:
    """The least-squares parameter vector for a dataset (see the module docstring)."""
    try:
        from scipy.optimize import least_squares
    except ImportError:
        raise DependencyError("fitting the cost model needs scipy: pip install scipy") from None
    prior, sig, start, names = _theta0()
    x0 = start if theta0 is None else theta0
    w = _weights(ds)
    logm = np.log(ds.measured)

    def resid(th):
        return np.concatenate([w * (np.log(predict(ds, th)) - logm), (th - prior) / sig])

    lo = np.full(len(x0), -np.inf)
    hi = np.full(len(x0), np.inf)
    for k, n in enumerate(names):
        if n.split(".")[-1] in _UPPER_ONE:
            hi[k] = 0.0
            lo[k] = math.log(0.05)
        else:
            lo[k], hi[k] = prior[k] - math.log(100), prior[k] + math.log(100)
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    res = least_squares(resid, x0, bounds=(lo, hi), x_scale=1.0, max_nfev=2000)
    return res.x


def table(theta: np.ndarray) -> dict:
    """A fitted.json-shaped table of a parameter vector."""
    nf = len(_FIELDS)
    g = _tied(np.exp(theta[:-1]).reshape(len(_GENS), nf))
    return {"generations": {gen: {f: float(g[i, j]) for j, f in enumerate(_FIELDS)} for i, gen in enumerate(_GENS)},
            "shared": {"host_copy_gbs": math.exp(float(theta[-1]))}}


def loso(ds: Dataset) -> dict[str, np.ndarray]:
    """Leave-one-source-out predictions: for each source, fit on the rest, predict it."""
    out = np.zeros(len(ds.points))
    srcs = list(dict.fromkeys(ds.sources))
    src_arr = np.array(ds.sources)
    for s in srcs:
        keep = src_arr != s
        th = fit(ds.subset(keep))
        out[~keep] = predict(ds.subset(~keep), th)
    return {"predicted": out}


def log_errors(pred, measured) -> np.ndarray:
    return np.log(np.asarray(pred) / np.asarray(measured))


def summary(pred, measured) -> dict:
    """n, median and max |relative error| (percent), and the largest factor off."""
    r = np.abs(np.asarray(pred) / np.asarray(measured) - 1.0) * 100
    f = np.exp(np.abs(log_errors(pred, measured)))
    return {"n": int(len(r)), "median_abs_pct": float(statistics.median(r)) if len(r) else float("nan"),
            "max_abs_pct": float(r.max()) if len(r) else float("nan"),
            "max_factor": float(f.max()) if len(f) else float("nan")}


def intervals(points, loso_pred, bounds: list[str]) -> dict:
    """Log-residual bands (10th/90th percentile) by generation/bound, bound and overall."""
    groups: dict[str, list[float]] = {}
    for p, pr, b in zip(points, loso_pred, bounds):
        gen, _ = P.generation_of(targets.get(p.chip))
        r = math.log(pr / p.published_ms)
        for key in (f"{gen}/{b}", f"*/{b}", "*/*"):
            groups.setdefault(key, []).append(r)
    out = {k: {"n": len(v), "r10": float(np.percentile(v, 10)), "r90": float(np.percentile(v, 90))}
           for k, v in groups.items()}
    out["_measured"] = sorted({P.generation_of(targets.get(p.chip))[0] for p in points})
    return out
