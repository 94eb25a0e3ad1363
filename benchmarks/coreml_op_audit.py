"""Core ML op coverage audit (issue 15): every op of the Core ML op set iOS 15..18 and what
anekit does with it.

    python benchmarks/coreml_op_audit.py            # print the table (from the snapshot)
    python benchmarks/coreml_op_audit.py --collect  # re-read coremltools' op registry into the snapshot
    python benchmarks/coreml_op_audit.py --write    # rewrite the table in docs/coreml.md
    python benchmarks/coreml_op_audit.py --check    # snapshot == installed coremltools, docs == table

The op list comes from coremltools' own registry (`SSAOpRegistry.core_ops`, filled by
importing `coremltools.converters.mil.mil.ops.defs`: one entry per op name, with the opsets
that define it), and whether the PyTorch converter can emit an op from the
`mb.<op>(` calls in `coremltools/converters/mil/frontend/torch/`. Both are saved in
`coreml_ops.json` beside this script, so the table (and tests/test_coreml_audit.py, which
fails when docs/coreml.md drifts from what the code declares) needs neither coremltools nor
its internals: only `--collect` and `--check` read them.

Status of each op:
  simulated           declared in anekit/ir/ops, with a simulator kernel; the ANE column is
                      the support table (guide Appendix A) for the newest family, h16
  simulated, off-ANE  declared and simulated, but no engine family runs it: Core ML places
                      it on the CPU/GPU and `ak.check` reports it (`op-support`, with the
                      reason from Appendix A)
  refused             not declared: loading a model with it raises UnsupportedOpError naming
                      the op; the reason is in REFUSED below
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SNAPSHOT = pathlib.Path(__file__).with_name("coreml_ops.json")
DOC = ROOT / "docs" / "coreml.md"
BEGIN, END = "<!-- op-audit:begin (benchmarks/coreml_op_audit.py --write) -->", "<!-- op-audit:end -->"
OPSETS = ("iOS15", "iOS16", "iOS17", "iOS18")

# Why an op of the Core ML op set is not declared. Each entry is a reason a user can act on.
_DYNAMIC = "its output shape depends on the input values; anekit programs have static shapes"
_LISTS = "tensor lists exist only inside dynamic loops of scripted models; anekit has no list values"
_RANDOM = "draws random numbers; Core ML's generator cannot be reproduced, so no reference result exists"
_NOT_TORCH = "not implemented: the PyTorch converter never emits it (no mb.<op> call in its frontend)"
REFUSED = {
    "non_zero": _DYNAMIC,
    "non_maximum_suppression": "not implemented yet; the PyTorch converter follows it with a slice whose size "
                               "is the number of kept boxes, an output shape that depends on the scores",
    "make_list": _LISTS, "list_length": _LISTS, "list_read": _LISTS, "list_write": _LISTS,
    "list_gather": _LISTS, "list_scatter": _LISTS,
    "random_bernoulli": _RANDOM, "random_categorical": _RANDOM, "random_normal": _RANDOM, "random_uniform": _RANDOM,
    "classify": "the classifier wrapper of a model description, not a tensor op",
    "gru": _NOT_TORCH + " (torch.nn.GRU converts to while_loop, which is simulated)",
    "depth_to_space": _NOT_TORCH + " (it uses pixel_shuffle); the op set does not document its channel order",
    "space_to_depth": _NOT_TORCH + " (it uses pixel_unshuffle); the op set does not document its channel order",
    **{name: _NOT_TORCH for name in (
        "batch_to_space", "constexpr_cast", "conv_quantized", "crop_resize", "l2_norm", "l2_pool",
        "local_response_norm", "reshape_like", "resize", "resize_bilinear", "resize_nearest_neighbor",
        "reverse_sequence", "sliding_windows", "space_to_batch")},
}


def collect() -> dict:
    """The op set from the installed coremltools (needs coremltools; reads its internals)."""
    import coremltools
    import coremltools.converters.mil.mil.ops.defs  # noqa: F401  (fills the registry)
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry
    ops = {}
    for name, versions in SSAOpRegistry.core_ops.items():
        sets = sorted({f"iOS{int(str(v.name)[3:])}" for v in versions if str(v.name)[3:].isdigit()} & set(OPSETS))
        if sets and not name.startswith("_"):
            ops[name] = sets
    frontend = pathlib.Path(coremltools.__file__).parent / "converters" / "mil" / "frontend" / "torch"
    emitted = set()
    for path in [*frontend.rglob("*.py"), frontend.parent / "_utils.py"]:    # _utils: einsum, shared
        emitted.update(re.findall(r"\bmb\.([a-z_0-9]+)\(", path.read_text()))
    dialect = sorted(n for n in SSAOpRegistry.dialect_ops if n in emitted)
    return {"coremltools": coremltools.__version__,
            "ops": {n: {"opsets": ops[n], "torch": n in emitted} for n in sorted(ops)},
            "dialect_ops_emitted_by_torch": dialect}


def load_snapshot() -> dict:
    return json.loads(SNAPSHOT.read_text())


def status(name: str) -> tuple[str, str]:
    """(status, note) of one op from anekit's declarations and support table."""
    import anekit.sim  # noqa: F401  (files the kernels on the declarations)
    from anekit.ir.spec import REGISTRY
    from anekit.targets import support
    spec = REGISTRY.get(name)
    if spec is None:
        if name not in REFUSED:
            raise SystemExit(f"op '{name}' is neither declared nor listed in REFUSED: decide")
        return "refused", REFUSED[name]
    if spec.kernel is None:
        return "refused", "declared without a simulator kernel"
    try:
        cols = {c: support.status(name, c) for c in support.COLUMN_ORDER}
    except Exception:       # an op without a support row: the op-facts test catches that
        return "simulated", "no support row"
    why = support.reason(name) or ""
    if all(s == "unsupported" for s in cols.values()):
        return "simulated, off-ANE", f"Appendix A: {why}" if why else "Appendix A: no engine path"
    first = support.native_from(name)
    newest = cols[support.COLUMN_ORDER[-1]]
    if newest == "native":
        note = f"ANE: native from {first}" if first != support.COLUMN_ORDER[0] else "ANE: native"
    else:
        note = f"ANE h16: {newest}" + (f" ({why})" if why else "")
    return "simulated", note


def rows(snap: dict) -> list[tuple[str, str, str, str, str]]:
    out = []
    for name, info in snap["ops"].items():
        st, note = status(name)
        sets = info["opsets"]
        since = sets[0] if sets else ""
        out.append((name, since, "yes" if info["torch"] else "", st, note))
    return out


def counts(snap: dict) -> dict:
    c = {"total": 0, "simulated": 0, "simulated, off-ANE": 0, "refused": 0}
    torch = dict(c)
    for name, _, emitted, st, _ in rows(snap):
        c["total"] += 1
        c[st] += 1
        if emitted:
            torch["total"] += 1
            torch[st] += 1
    return {"all": c, "torch": torch}


def table(snap: dict) -> str:
    n = counts(snap)
    a, t = n["all"], n["torch"]
    lines = [BEGIN,
             f"Core ML op set iOS 15..18 as coremltools {snap['coremltools']} registers it: **{a['total']} ops**; "
             f"{a['simulated']} simulated, {a['simulated, off-ANE']} simulated but off the ANE, "
             f"{a['refused']} refused. Of the {t['total']} the PyTorch converter can emit: {t['simulated']} "
             f"simulated, {t['simulated, off-ANE']} off-ANE, {t['refused']} refused.",
             "",
             "| op | since | PyTorch | status | note |",
             "| --- | --- | --- | --- | --- |"]
    for name, since, emitted, st, note in rows(snap):
        lines.append(f"| `{name}` | {since} | {emitted} | {st} | {note} |")
    lines.append("")
    dialect = snap.get("dialect_ops_emitted_by_torch", [])
    lines.append("coremltools dialect ops the PyTorch frontend builds and lowers before saving (never in a "
                 "saved model, except `coreml_update_state`, which is declared): "
                 + ", ".join(f"`{d}`" for d in dialect) + ".")
    lines.append(END)
    return "\n".join(lines)


def doc_section(text: str) -> str | None:
    i, j = text.find(BEGIN), text.find(END)
    return None if i < 0 or j < 0 else text[i:j + len(END)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--collect", action="store_true", help="re-read coremltools into the snapshot")
    ap.add_argument("--write", action="store_true", help="rewrite the table in docs/coreml.md")
    ap.add_argument("--check", action="store_true", help="snapshot matches coremltools; docs match the table")
    args = ap.parse_args(argv)
    if args.collect:
        SNAPSHOT.write_text(json.dumps(collect(), indent=1, sort_keys=True) + "\n")
    snap = load_snapshot()
    if args.check:
        live = collect()
        ok = live["ops"] == snap["ops"] and doc_section(DOC.read_text()) == table(snap)
        print("audit up to date" if ok else "audit out of date: run --collect and --write")
        return 0 if ok else 1
    if args.write:
        text = DOC.read_text()
        old = doc_section(text)
        if old is None:
            raise SystemExit(f"{DOC}: no '{BEGIN}' ... '{END}' markers")
        DOC.write_text(text.replace(old, table(snap)))
    print(table(snap))
    print(json.dumps(counts(snap)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
