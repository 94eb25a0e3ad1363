"""Tests for anekit.targets: the 28 compiler targets, chip lookup, per-family limits and op
support, and that every number carries a source.

Expected values are the guide's (ch. 4, 12, 34, Appendix A); where the shared reference
folder is present the tables are also parsed straight from the guide and compared in full.
"""
from __future__ import annotations

import json
import re
from importlib import resources

import pytest
from conftest import SHARED

from anekit import targets
from anekit.errors import AnekitError, TargetError, UnknownOpError
from anekit.ir.ops import REGISTRY
from anekit.targets import _data, support

GUIDE = SHARED / "reference" / "ane-guide"


def guide(rel: str) -> str:
    path = GUIDE / rel
    if not path.is_file():
        pytest.skip(f"guide chapter {path} not found (set ANEKIT_SHARED to the shared folder)")
    return path.read_text("utf-8")


# ---- the 28 targets -------------------------------------------------------------------------

CH34_TARGETS = ["H11", "H12", "M9", "T0", "H13", "H13g", "T1", "H14", "H14g", "H14c", "H15", "H15g", "H15c",
                "H16", "H16g", "H16s", "H16c", "H17", "H17a", "H17g", "H17s", "H17c", "H17d", "H18", "M11",
                "U1", "U2", "U3"]


def test_all_28_compiler_targets_in_guide_order():
    assert [t.name for t in targets.all_targets()] == CH34_TARGETS


def test_target_core_counts_follow_the_suffix_rule():
    suffix = {"": 4, "g": 8, "s": 16, "c": 32, "d": 64}
    for t in targets.all_targets():
        m = re.fullmatch(r"H1\d([a-z]?)", t.name)
        if m and m.group(1) in suffix:
            assert t.ne_cores == suffix[m.group(1)], t.name
    assert targets.get("m9").ne_cores == 1 and targets.get("m11").ne_cores == 1


def test_targets_match_the_guide_table():
    text = guide("part-9-cross-silicon/34-the-28-targets.md")
    table = text[text.index("| Target | Silicon and class | NE cores |"):text.index("{#tbl:c34-targets}")]
    rows = re.findall(r"^\| (`[^|]+) \| [^|]+ \| ([^|]+) \|$", table, re.M)
    names, cores = [], {}
    for cell, count in rows:
        for n in re.findall(r"`([A-Za-z0-9]+)`", cell):
            names.append(n)
            if count.strip().isdigit():
                cores[n] = int(count)
    assert sorted(names) == sorted(CH34_TARGETS)
    ours = {t.name: t.ne_cores for t in targets.all_targets()}
    for n, c in cores.items():
        assert ours[n] == c, n


def test_family_membership():
    fams = targets.families()
    assert set(fams) == {"h11", "h13", "h14", "h15", "h16", "m11", "ref"}
    members = sorted(n for f in fams.values() for n in f.targets)
    assert members == sorted(CH34_TARGETS)
    for f in fams.values():
        for n in f.targets:
            assert targets.get(n.lower()).family == f.key


# ---- chips and lookup -----------------------------------------------------------------------

@pytest.mark.parametrize("spelling,name,compiler,family", [
    ("m4max", "M4 Max", "h16g", "h16"), ("M4 Max", "M4 Max", "h16g", "h16"), ("m4-MAX", "M4 Max", "h16g", "h16"),
    ("h16g", "M4 Max", "h16g", "h16"), ("H16G", "M4 Max", "h16g", "h16"), ("a17pro", "A17 Pro", "h17", "h16"),
    ("A17 Pro", "A17 Pro", "h17", "h16"), ("m1", "M1", "h13", "h13"), ("M1 Ultra", "M1 Ultra", "h13g", "h13"),
    ("h13g", "M1 Max", "h13g", "h13"), ("m2", "M2", "h14", "h14"), ("M3 Pro", "M3 Pro", "h15g", "h15"),
    ("m5", "M5", "h17", "h16"), ("m5 pro", "M5 Pro", "h17s", "h16"), ("a13 bionic", "A13", "h13", "h13"),
    ("A12", "A12", "h12", "h11"), ("a18pro", "A18 Pro", "h18", "h16"), ("  m2_max ", "M2 Max", "h14g", "h14"),
])
def test_lookup_is_case_and_space_insensitive(spelling, name, compiler, family):
    c = targets.get(spelling)
    assert (c.name, c.compiler, c.family) == (name, compiler, family)


def test_every_generation_is_present():
    have = {c.name for c in targets.all_chips()}
    for gen in range(1, 6):
        for tier in ("", " Pro", " Max"):
            assert f"M{gen}{tier}" in have
    assert {"M1 Ultra", "M2 Ultra", "M3 Ultra"} <= have
    assert {"A11", "A12", "A13", "A14", "A15", "A16", "A17 Pro", "A18"} <= have


def test_chips_sold_under_each_target():
    assert set(targets.get("h13g").target.chips) == {"M1 Pro", "M1 Max", "M1 Ultra"}
    assert set(targets.get("h13").target.chips) == {"M1", "A13"}
    assert targets.get("h17s").target.chips == ("M5 Pro", "M5 Max")


def test_target_without_a_chip_gives_a_target_only_record():
    c = targets.get("h17d")
    assert not c.is_chip and c.name == "H17d" and c.ne_cores == 64
    assert c.tops is None and c.dram_gbs is None
    assert targets.get("m1").is_chip


def test_vendor_figures_and_their_sources():
    m1 = targets.get("m1")
    assert m1.tops == 11 and m1.marketed_ne_cores == 16 and m1.ne_cores == 4
    assert "Apple" in m1.source("tops")
    assert targets.get("m4 max").dram_gbs == 546 and targets.get("m4").tops == 38
    # Unknown figures stay unknown and say so, rather than being made up.
    m5 = targets.get("m5")
    assert m5.tops is None and "no figure" in m5.source("tops")


def test_unknown_name_is_a_clear_error():
    with pytest.raises(TargetError, match="unknown chip or compiler target 'm4 maxx'.*M4 Max|m4max"):
        targets.get("m4 maxx")
    with pytest.raises(TargetError, match="non-empty string"):
        targets.get("")
    with pytest.raises(TargetError):
        targets.get(None)
    assert issubclass(TargetError, AnekitError)


def test_get_passes_a_chip_record_through():
    c = targets.get("m2")
    assert targets.get(c) is c


# ---- limits and features ---------------------------------------------------------------------

def test_shape_limits_per_family():
    expect = {  # guide ch. 4 tbl:c4-shape-limits / Appendix A tbl:apa-numeric-limits
        "a12": (16384, 13, 1), "m1": (16384, 13, 16), "m2": (16384, 16, 16), "m3": (16384, 16, 16),
        "m4": (65536, 16, 16), "m5 pro": (65536, 16, 16), "a18": (65536, 16, 16),
    }
    for name, (dim, kw, kd) in expect.items():
        L = targets.get(name).limits
        assert (L.max_dim, L.max_kernel_width_fp16, L.max_kernel_depth) == (dim, kw, kd), name
        assert L.max_rank == 5 and L.matmul_max_depth == 1
        assert L.mac_output_ceiling == 32768 and L.fp16_max == 65504 and L.exp_input_max == pytest.approx(11.09)
    assert targets.get("m11").limits.max_kernel_width_fp16 == 15
    assert targets.get("m1").limits.reduction_transpose_threshold == 192
    assert targets.get("m3").limits.reduction_transpose_threshold == 384


def test_features_per_family():
    rows = {"m1": (False, False, True, False), "m2": (True, False, True, True),
            "m3": (True, True, False, True), "m4": (True, True, False, True), "m5": (True, True, False, True)}
    for name, want in rows.items():
        f = targets.get(name).features
        assert (f.texture_engine, f.native_sin_cos, f.width_slice_saturates, f.cast_to_int32) == want, name


def test_streaming_formats_by_generation():
    assert targets.get("a12").streams == ()
    assert set(targets.get("m1").streams) == {"lut", "sparse"}
    assert "int8" in targets.get("m2").streams and "blockwise" not in targets.get("m2").streams
    assert "blockwise" in targets.get("m3").streams


def test_working_set_per_target():
    assert targets.get("m1").working_set_bytes == 2 * 1024 * 1024
    assert targets.get("m5 pro").working_set_bytes == 4_720_000
    assert targets.get("m9").working_set_bytes == 1024 * 1024


def test_every_limit_and_feature_has_a_source():
    for c in [*targets.all_chips(), targets.get("u1"), targets.get("h17d")]:
        for name in c.limits.__dataclass_fields__:
            if name != "sources":
                assert c.limits.source(name), (c.name, name)
        for name in ("texture_engine", "native_sin_cos", "width_slice_saturates", "cast_to_int32"):
            assert c.features.source(name)
        assert c.source("ne_cores") and c.source("working_set_bytes")


def test_every_number_in_the_data_file_is_a_sourced_pair():
    doc = json.loads(resources.files("anekit.targets").joinpath("data/targets.json").read_text("utf-8"))
    sources = doc["sources"]
    pairs = 0

    def walk(node, path):
        nonlocal pairs
        if isinstance(node, list) and len(node) == 2 and isinstance(node[1], str) and node[1] in sources:
            pairs += 1
            return
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif isinstance(node, (int, float)) and not isinstance(node, bool):
            # the only bare numbers allowed: schema version and an Ultra's die count
            assert path in ("$.schema",) or path.endswith(".dies"), f"unsourced number at {path}"

    walk({k: v for k, v in doc.items() if k != "sources"}, "$")
    assert pairs > 300


def test_a_bad_source_key_is_refused():
    doc = {"sources": {"a": "somewhere"}}
    assert _data._cite(doc, [3, "a"], "x") == (3, "somewhere")
    with pytest.raises(TargetError, match="unknown source 'b'"):
        _data._cite(doc, [3, "b"], "x")
    with pytest.raises(TargetError, match=r"must be \[value, source key\]"):
        _data._cite(doc, 3, "x")


# ---- op support ------------------------------------------------------------------------------

def test_support_table_covers_every_registry_op():
    missing = sorted(set(REGISTRY) - support.ops())
    assert not missing, f"ops declared in anekit.ir.ops with no support entry: {missing}"


@pytest.mark.parametrize("op,m1,m2,m3,m4", [
    ("conv", "native", "native", "native", "native"),
    ("sin", "unsupported", "unsupported", "native", "native"),
    ("reduce_prod", "unsupported", "unsupported", "unsupported", "unsupported"),
    ("upsample_nearest_neighbor", "decomposed", "native", "native", "native"),
    ("topk", "unsupported", "native", "native", "native"),
    ("reduce_argmin", "decomposed", "decomposed", "native", "native"),
    ("logical_and", "unsupported", "unsupported", "unsupported", "unsupported"),
])
def test_support_spot_checks(op, m1, m2, m3, m4):
    got = tuple(targets.get(c).supports(op) for c in ("m1", "m2", "m3", "m4"))
    assert got == (m1, m2, m3, m4)


def test_support_of_unknown_op_is_an_error():
    with pytest.raises(UnknownOpError):
        targets.get("m1").supports("no_such_op")


def test_native_from_and_reasons():
    assert support.native_from("sin") == "h15"
    assert support.native_from("topk") == "h14"
    assert support.native_from("reduce_prod") is None
    assert "log-sum-exp" in support.reason("reduce_prod")


def test_support_matches_appendix_a_row_by_row():
    text = guide("appendices/a-op-device-matrix.md")
    mark = {"Native": "native", "Bridge": "decomposed", "Family-gated": "unsupported", "No path": "unsupported"}
    rows = re.findall(r"^\|\s*`([a-z0-9_]+)`\s*\|\s*([^|]+)\|\s*([^|]+)\|\s*([^|]+)\|\s*([^|]+)\|", text, re.M)
    assert len(rows) == 187
    table = support.table()
    for op, *cells in rows:
        want = [mark[c.strip()] for c in cells]
        got = [table[op][col] for col in ("h13", "h14", "h15", "h16")]
        if want != got:
            # Only ever stricter than the guide's mark, where its note says the op is not
            # run on the engine (host fallback, CPU/GPU placement, compiler-internal).
            assert all(g == w or (w == "decomposed" and g == "unsupported") for g, w in zip(got, want)), op
            assert table[op].get("why"), op


# ---- chips people own: M6, names as pasted -------------------------------------------------------

def test_m6_is_a_chip_with_only_public_facts():
    m6 = targets.get("M6")
    assert m6.is_chip and m6.compiler == "h18" and m6.family == "h16"     # naming rule M(n) -> H(n+12)
    assert m6.tops is None and m6.dram_gbs is None and m6.marketed_ne_cores is None   # nobody published them
    assert "naming rule" in m6.source("compiler") and "ANEForge" in m6.note
    assert targets.get("Mac18,5") is m6


@pytest.mark.parametrize("pasted,name", [
    ("Apple M5 Pro", "M5 Pro"), ("Apple M1", "M1"), ("apple m4 max", "M4 Max"),
    ("Mac16,12", "M4"), ("Mac16,6", "M4 Max"), ("Mac14,12", "M2 Pro"), ("MacBookPro18,2", "M1 Max"),
    ("Mac15,14", "M3 Ultra"), ("Mac17,8", "M5 Pro"), ("mac16,1", "M4"),
])
def test_names_users_paste(pasted, name):
    assert targets.get(pasted).name == name


def test_unknown_name_lists_the_known_chips():
    with pytest.raises(TargetError) as e:
        targets.get("Apple M9 Hyper")
    msg = str(e.value)
    assert "known chips: M1, M1 Pro" in msg and "M6" in msg and "Mac16,12" in msg


def test_model_identifiers_are_unique():
    seen = {}
    for c in _data.raw()["chips"]:
        for a in c.get("aliases", ()):
            key = _data.normalize(a)
            assert key not in seen, (a, c["name"], seen.get(key))
            seen[key] = c["name"]
