"""`anekit sweep`: check and estimate many models on many chips, in parallel.

One task per model: it loads the model once, then checks it (does it run on the engine, and if
not, the first reason) and estimates its latency on every target. Tasks run in a local process
pool (--jobs) or on a Ray cluster (--ray ADDRESS, or --ray local to start one here; Ray is the
optional extra `anekit[ray]`). A model that fails to load is one row carrying its error; the
sweep goes on.
"""
from __future__ import annotations

import csv
import sys

from ..errors import AnekitError, DependencyError
from ._table import format_table, to_json

FIELDS = ("model", "target", "compiler", "verdict", "reason", "est_us", "low_us", "high_us", "bound", "error")


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="check and estimate many models on many chips (table, CSV, heatmap)",
                              description="For every model and target: does it run on the ANE (or fall off, with "
                                          "the first reason), and its predicted latency with an interval. Exit 0 "
                                          "when every model loaded, 1 when some did not, 2 on bad input.")
    p.add_argument("models", nargs="+", metavar="MODEL", help="models: .mlpackage, .mlmodelc, MIL folder or .mil file")
    p.add_argument("--targets", default="all", help="comma list of chips or compiler targets, or 'all' "
                                                    "(every chip; default)")
    p.add_argument("--function", help="function to check (default: main)")
    p.add_argument("--jobs", "-j", type=int, default=1, help="local worker processes (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the tasks on a Ray cluster ('local' starts one here; "
                                                    "needs anekit[ray])")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print every row as JSON")
    out.add_argument("--csv", metavar="FILE", help="write every row to a CSV file")
    p.add_argument("--plot", metavar="PNG", help="write a heatmap of predicted latency (needs matplotlib)")
    p.set_defaults(func=run_sweep)


def resolve_targets(spec: str) -> list[str]:
    """Chip names for a --targets value; unknown names fail before any model is read."""
    from .. import targets
    from .check import split_targets
    if spec.strip().lower() == "all":
        return [c.name for c in targets.all_chips()]
    names = split_targets(spec)
    if not names:
        raise AnekitError("--targets is empty")
    return [targets.get(n).name for n in names]


def sweep_model(path: str, target_names: list[str], function: str | None = None) -> list[dict]:
    """The rows of one model: one per target, or one row with the error if it does not load.
    Runs in a worker process or a Ray task, so it returns plain dicts."""
    try:
        from ..io import load
        prog = load(path)
    except Exception as e:          # any load failure is this model's row, not the sweep's end
        return [_row(path, "*", error=f"{type(e).__name__}: {_one_line(e)}")]
    rows = []
    for name in target_names:
        try:
            rows.append(_check_and_estimate(prog, path, name, function))
        except Exception as e:
            rows.append(_row(path, name, error=f"{type(e).__name__}: {_one_line(e)}"))
    return rows


def _check_and_estimate(prog, path, name, function) -> dict:
    from .. import targets
    from ..cost import estimate
    from ..preflight import OFF_ENGINE, check
    chip = targets.get(name)
    rep = check(prog, chip, function=function)
    blocking = [f for f in rep.findings if f.verdict in OFF_ENGINE]
    est = estimate(prog, chip, function=function)
    first = blocking[0] if blocking else None
    return _row(path, chip.name, compiler=chip.compiler, verdict="runs on ANE" if rep.ok else "falls off",
                reason="" if first is None else f"{first.op} ({first.op_type}): {first.reason}",
                est_us=est.total_us, low_us=est.low_us, high_us=est.high_us, bound=est.bound)


def _row(model, target, **kw) -> dict:
    row = {f: "" for f in FIELDS}
    row.update(model=str(model), target=target, **kw)
    return row


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def run_tasks(paths: list[str], target_names: list[str], function=None, jobs: int = 1, ray_address=None,
              progress: bool = True) -> list[dict]:
    """Every model's rows, in the order of `paths`, computed locally or on Ray."""
    if jobs < 1:
        raise AnekitError(f"--jobs must be at least 1, got {jobs}")
    bar = _progress(len(paths), progress)
    results: dict[int, list[dict]] = {}
    try:
        if ray_address:
            _run_ray(paths, target_names, function, ray_address, results, bar)
        elif jobs == 1 or len(paths) == 1:
            for i, path in enumerate(paths):
                results[i] = sweep_model(path, target_names, function)
                bar.update(1)
        else:
            from concurrent.futures import ProcessPoolExecutor, as_completed
            with ProcessPoolExecutor(max_workers=jobs) as pool:
                futs = {pool.submit(sweep_model, path, target_names, function): i for i, path in enumerate(paths)}
                for fut in as_completed(futs):
                    results[futs[fut]] = fut.result()
                    bar.update(1)
    finally:
        bar.close()
    return [row for i in range(len(paths)) for row in results[i]]


def _run_ray(paths, target_names, function, address, results, bar) -> None:
    try:
        import ray
    except ImportError:
        raise DependencyError("--ray needs Ray: pip install 'anekit[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(sweep_model)
        refs = {task.remote(path, target_names, function): i for i, path in enumerate(paths)}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                results[refs[ref]] = ray.get(ref)
                bar.update(1)
    finally:
        if started:
            ray.shutdown()


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, enabled: bool):
    if not enabled or not sys.stderr.isatty():
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="model", desc="sweep", file=sys.stderr)


def plot_heatmap(rows: list[dict], path: str) -> str:
    """A PNG: models down, targets across, colour = log predicted latency; cells of models that
    fall off the engine are hatched, failed loads are blank."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
    except ImportError:
        raise DependencyError("--plot needs matplotlib: pip install 'anekit[plot]'") from None
    models = list(dict.fromkeys(r["model"] for r in rows))
    chips = list(dict.fromkeys(r["target"] for r in rows if r["target"] != "*"))
    grid = np.full((len(models), max(1, len(chips))), np.nan)
    off = []
    for r in rows:
        if r["target"] == "*" or r["est_us"] == "":
            continue
        i, j = models.index(r["model"]), chips.index(r["target"])
        grid[i, j] = float(r["est_us"]) / 1e3
        if r["verdict"] == "falls off":
            off.append((i, j))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.5 + 0.55 * len(chips)), 1.8 + 0.45 * len(models)))
    im = ax.imshow(np.log10(grid), aspect="auto", cmap="viridis_r")
    for (i, j) in off:
        ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="xx", edgecolor="red", lw=0))
    finite = grid[np.isfinite(grid)]
    mid = float(np.log10(finite).mean()) if finite.size else 0.0
    for i in range(len(models)):
        for j in range(len(chips)):
            if np.isfinite(grid[i, j]):   # dark text on the light (fast) end of the colour map
                ax.text(j, i, f"{grid[i, j]:.2g}", ha="center", va="center", fontsize=6,
                        color="black" if np.log10(grid[i, j]) < mid else "white")
    for r in rows:
        if r["target"] == "*":
            ax.text((len(chips) - 1) / 2, models.index(r["model"]), "failed to load (see the table)",
                    ha="center", va="center", fontsize=7, color="red")
    ax.set_xticks(range(len(chips)), chips, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(models)), [m.rsplit("/", 1)[-1] for m in models], fontsize=7)
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("log10 predicted ms")
    ax.set_title("predicted latency (ms)\nhatched: falls off the ANE", fontsize=8)
    fig.tight_layout()
    try:
        fig.savefig(str(path), dpi=110)
    except OSError as e:
        raise AnekitError(f"cannot write heatmap to {path}: {e}") from None
    finally:
        plt.close(fig)
    return str(path)


def run_sweep(args) -> int:
    names = resolve_targets(args.targets)
    rows = run_tasks(args.models, names, args.function, args.jobs, args.ray)
    if args.plot:
        plot_heatmap(rows, args.plot)
    if args.csv:
        try:
            with open(args.csv, "w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=FIELDS)
                w.writeheader()
                w.writerows(rows)
        except OSError as e:
            raise AnekitError(f"cannot write {args.csv}: {e}") from None
    if args.json:
        print(to_json({"targets": names, "rows": rows}))
    else:
        table = [[r["model"], r["target"], r["verdict"] or "-",
                  round(r["est_us"] / 1e3, 3) if r["est_us"] != "" else "-",
                  (f"{r['low_us'] / 1e3:.3g}-{r['high_us'] / 1e3:.3g}" if r["est_us"] != "" else "-"),
                  r["error"] or r["reason"]] for r in rows]
        print(format_table(["model", "target", "verdict", "ms", "likely ms", "first reason / error"], table))
        if args.csv:
            print(f"\nrows written to {args.csv}")
        if args.plot:
            print(f"heatmap written to {args.plot}")
    return 1 if any(r["error"] and r["target"] == "*" for r in rows) else 0
