"""The op coverage audit in docs/coreml.md stays true (issue 15): the table between the
op-audit markers must be what benchmarks/coreml_op_audit.py renders from the committed
snapshot of coremltools' op registry and anekit's own declarations, kernels and support
table. Declaring an op, removing one, or changing its support row without regenerating
the docs (`python benchmarks/coreml_op_audit.py --write`) fails here. The snapshot is
compared with the installed coremltools separately (coremltools-marked), so this test does
not depend on coremltools' internals."""
from __future__ import annotations

import importlib.util
import pathlib

import pytest

from anekit.ir.spec import REGISTRY

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _audit():
    spec = importlib.util.spec_from_file_location("coreml_op_audit", ROOT / "benchmarks" / "coreml_op_audit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_docs_table_matches_the_code():
    audit = _audit()
    section = audit.doc_section((ROOT / "docs" / "coreml.md").read_text())
    assert section is not None, "docs/coreml.md lost its op-audit markers"
    assert section == audit.table(audit.load_snapshot()), "run: python benchmarks/coreml_op_audit.py --write"


def test_every_op_has_a_decision_and_refusals_are_real():
    audit = _audit()
    snap = audit.load_snapshot()
    for name in snap["ops"]:
        st, note = audit.status(name)
        assert st in ("simulated", "simulated, off-ANE", "refused") and note, name
        assert (st == "refused") == (name not in REGISTRY), name
    assert not set(audit.REFUSED) & set(REGISTRY), "a declared op is still listed as refused"
    assert set(audit.REFUSED) <= set(snap["ops"]), "REFUSED names an op outside the op set"
    n = audit.counts(snap)["all"]
    assert n["total"] == len(snap["ops"]) == n["simulated"] + n["simulated, off-ANE"] + n["refused"]


def test_control_flow_and_recurrent_ops_are_listed_off_ane():
    audit = _audit()
    for name in ("while_loop", "cond", "lstm", "rnn"):
        st, note = audit.status(name)
        assert st == "simulated, off-ANE" and note.startswith("Appendix A"), (name, st, note)


@pytest.mark.coremltools
def test_snapshot_matches_the_installed_coremltools():
    audit = _audit()
    live = audit.collect()
    snap = audit.load_snapshot()
    assert live["ops"] == snap["ops"], "run: python benchmarks/coreml_op_audit.py --collect --write"
