"""Every declared op carries every fact the layers need, on its declaration (ir/spec.py), and
no table elsewhere names an op that is not declared."""
import ast
import pathlib

import pytest

import anekit.sim  # noqa: F401  (files the kernels on the declarations)
from anekit.ir.spec import MAC_PATHS, PATHS, REGISTRY, STATE_ROLES, ConstInput, MacWork
from anekit.preflight.rules import GATHER_OPS, KEYED_OPS, SLICE_OPS
from anekit.targets import support

SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "anekit"


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_op_has_every_fact(name):
    spec = REGISTRY[name]
    tensors = {p.name for p in spec.params if p.kind in ("tensor", "tensors")}
    assert spec.path in PATHS
    assert (spec.path == "const") == (spec.kind in ("const", "constexpr"))
    assert spec.kernel is not None and spec.kernel.op == name, "no simulator kernel"
    assert callable(spec.fp16_range), "no fp16 range rule (iv.unbounded says 'unbounded' explicitly)"
    assert isinstance(spec.vector_passes, int) and spec.vector_passes >= 1
    if spec.path in MAC_PATHS:
        assert callable(spec.mac_work), "a MAC-path op needs its work rule"
    else:
        assert spec.mac_work is None
    if spec.kind == "constexpr":
        assert callable(spec.stored_weight), "a compressed-weight op needs its stored form"
    assert (spec.state_role is None) == (spec.state_param is None)
    if spec.state_role is not None:
        assert spec.state_role in STATE_ROLES and spec.state_param in tensors
    for param, fact in spec.const_inputs.items():
        assert param in tensors and isinstance(fact, ConstInput) and fact.source.startswith(("ANE guide ch.", "coremltools MIL op definitions"))
    for param in spec.coreml_ignored:
        assert spec.param(param) is None, "an ignored Core ML parameter must not be one anekit declares"
    if spec.coreml_dtype_param is not None:
        assert spec.param(spec.coreml_dtype_param).dtypes == "string"
    assert hasattr(spec, "grad")    # the gradient slot (filled by @spec.defgrad)


def test_mac_work_of_every_mac_op_is_a_macwork():
    import anekit as ak
    import numpy as np
    x = ak.input("x", (1, 16, 8, 8))
    w = np.ones((16, 16, 3, 3), np.float16)
    a, b = ak.input("a", (1, 4, 8, 16)), ak.input("b", (1, 4, 16, 8))
    ops = [ak.conv(x, w), ak.conv_transpose(x, w), a @ b, ak.linear(ak.input("l", (4, 16)), np.ones((8, 16))),
           ak.scaled_dot_product_attention(a, a, a),
           ak.einsum((ak.input("e", (1, 3, 4, 5)), ak.input("f", (1, 5, 4, 6))), equation="nchw,nwhu->nchu")]
    seen = set()
    for t in ops:
        m = t.op.spec.mac_work(t.op)
        assert isinstance(m, MacWork) and m.macs > 0 and m.lanes > 0
        seen.add(t.op.type)
    assert seen == {n for n, s in REGISTRY.items() if s.path in MAC_PATHS}
    assert ak.conv(x, w).op.spec.mac_work(ak.conv(x, w).op).winograd       # 3x3 stride 1, 16 channels


def test_support_table_covers_the_registry_and_check_rules_name_declared_ops_only():
    # The support table is the guide's Appendix A: per family, the whole MIL op set (it also
    # lists ops anekit does not declare, e.g. lstm); every declared op must have its row.
    assert not set(REGISTRY) - support.ops(), sorted(set(REGISTRY) - support.ops())
    assert not (KEYED_OPS | set(SLICE_OPS) | set(GATHER_OPS)) - set(REGISTRY)


def _op_names_compared_to_types(tree):
    """String constants compared with `<something>.type` (== / in): inline tables of op names."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(isinstance(s, ast.Attribute) and s.attr == "type" for s in sides):
            continue
        for s in sides:
            for c in ast.walk(s):
                if isinstance(c, ast.Constant) and isinstance(c.value, str):
                    yield c.value, node.lineno


def test_no_module_names_an_undeclared_op():
    bad = []
    for path in SRC.rglob("*.py"):
        if "ir/ops" in path.as_posix() or path.parent.name == "hwx":   # hwx types are binary record kinds
            continue
        for name, line in _op_names_compared_to_types(ast.parse(path.read_text())):
            if name not in REGISTRY and name not in ("input", "output", "program"):
                bad.append(f"{path.relative_to(SRC)}:{line}: '{name}'")
    assert not bad, bad


def test_a_rule_slot_is_filled_once():
    from anekit.ir.spec import declare
    from anekit.ir.spec import tensor as t
    spec = declare("_facts_probe", kind="elementwise", infer=lambda a: [(a.T, a.x.shape)], x=t(),
                   fp16_range=lambda op, res: None)
    try:
        assert spec.path == "vector" and spec.vector_passes == 1 and not spec.mac_epilogue
        with pytest.raises(RuntimeError, match="two fp16_range rules"):
            spec.defrange(lambda op, res: None)
        with pytest.raises(RuntimeError, match="neither parameters nor facts"):
            declare("_facts_probe2", kind="elementwise", infer=spec.infer, x=t(), fp16range=None)
        with pytest.raises(RuntimeError, match="path 'gpu'"):
            declare("_facts_probe3", kind="elementwise", infer=spec.infer, x=t(), path="gpu")
    finally:
        for n in ("_facts_probe", "_facts_probe2", "_facts_probe3"):
            REGISTRY.pop(n, None)
