"""Property: mutated MIL text (and mutated weight.bin) gives a Program or an AnekitError,
never another exception. Mutations: character and token deletions, insertions, duplications,
token swaps, replacements and truncation, applied to valid text in both dialects."""
from __future__ import annotations

import os
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anekit as ak
from anekit.errors import AnekitError
from anekit.ir.graph import Program
from test_mil_roundtrip import CORPUS

# A few seconds in CI; set ANEKIT_FUZZ_EXAMPLES higher for a longer local run.
FUZZ_EXAMPLES = int(os.environ.get("ANEKIT_FUZZ_EXAMPLES", "400"))

from test_mil_roundtrip import CASES  # noqa: E402

_BASES = [ak.mil.emit(CORPUS[name], dialect)
          for name in ("stories_layer", "const_dtypes", "states", "op_split", "op_constexpr_affine_dequantize",
                       "op_constexpr_lut_to_dense", "op_conv", "multi_function")
          for dialect in ("ios18", "ios16") if (name, dialect) in CASES]
# Shorter texts so that mutations also hit their structure, not only the long Stories body.
_BASES += [(text[:4000] + "\n} -> (y);\n}\n", files) for text, files in _BASES[:2]]

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|0[xX][0-9a-fA-F.]+[pP][+-]?\d+|\d+\.?\d*|\w+|->|\S')
_SNIPPETS = ["(", ")", "[", "]", "{", "}", "<", ">", ",", "=", ";", "->", '"', "\\", "-", "+", "?", "/*", "*/",
             "//", "\n", " ", "0", "-1", "1.5", "0x1p-3", "0x1p99999", "1e400", "99999999999999999999999", "inf",
             "nan", "true", "x", "fp16", "int32", "bool", "string", "uint4", "tensor", "state", "dict",
             "tensor<fp16, []>", "BLOBFILE", "const", "conv", "name", "val", "@model_path/../x", "é", "\x00"]

mutation = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10 ** 6), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 10 ** 6), st.sampled_from(_SNIPPETS)),
    st.tuples(st.just("insert_char"), st.integers(0, 10 ** 6), st.characters(min_codepoint=0, max_codepoint=0x2FF)),
    st.tuples(st.just("duplicate"), st.integers(0, 10 ** 6), st.integers(1, 200)),
    st.tuples(st.just("swap_tokens"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
    st.tuples(st.just("delete_token"), st.integers(0, 10 ** 6), st.integers(1, 4)),
    st.tuples(st.just("replace_token"), st.integers(0, 10 ** 6), st.sampled_from(_SNIPPETS)),
    st.tuples(st.just("truncate"), st.integers(0, 10 ** 6), st.just(0)),
)


def mutate(text: str, op) -> str:
    kind, a, b = op
    if not text:
        return text
    i = a % (len(text) + 1)
    if kind == "delete":
        return text[:i] + text[i + b:]
    if kind in ("insert", "insert_char"):
        return text[:i] + b + text[i:]
    if kind == "duplicate":
        return text[:i] + text[i:i + b] + text[i:]
    if kind == "truncate":
        return text[:i]
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if not spans:
        return text
    s, e = spans[a % len(spans)]
    if kind == "delete_token":
        e = spans[min(a % len(spans) + b, len(spans)) - 1][1]
        return text[:s] + text[e:]
    if kind == "replace_token":
        return text[:s] + b + text[e:]
    s2, e2 = spans[b % len(spans)]
    if (s, e) == (s2, e2):
        return text
    (s, e), (s2, e2) = sorted([(s, e), (s2, e2)])
    if s2 < e:
        return text
    return text[:s] + text[s2:e2] + text[e:s2] + text[s:e] + text[e2:]


def _parse_only_anekit_errors(text: str, files: dict):
    try:
        prog = ak.mil.parse(text, files)
    except AnekitError:
        return
    assert isinstance(prog, Program)
    try:   # whatever parses must also emit, or fail cleanly
        ak.mil.emit(prog, "ios16")
    except AnekitError:
        pass


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(range(len(_BASES))), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_text_raises_only_anekit_errors(base, ops):
    text, files = _BASES[base]
    for op in ops:
        text = mutate(text, op)
    _parse_only_anekit_errors(text, files)


@settings(max_examples=150, deadline=None)
@given(base=st.sampled_from(range(len(_BASES))), edits=st.lists(
    st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 10 ** 6)))
def test_mutated_weight_file_raises_only_anekit_errors(base, edits, cut):
    text, files = _BASES[base]
    if not files:
        return
    data = bytearray(files["weights/weight.bin"])
    for pos, value in edits:
        data[pos % len(data)] = value
    if cut is not None:
        del data[cut % (len(data) + 1):]
    _parse_only_anekit_errors(text, {"weights/weight.bin": bytes(data)})


def test_mutator_changes_text():
    """The strategies do reach the parser with altered text (guards against a no-op mutator)."""
    text = _BASES[0][0]
    changed = {mutate(text, (k, 123, 7)) != text for k in ("delete", "duplicate", "delete_token", "truncate")}
    assert changed == {True}
    assert mutate(text, ("swap_tokens", 5, 40)) != text
    assert len(mutate(text, ("truncate", 100, 0))) == 100
