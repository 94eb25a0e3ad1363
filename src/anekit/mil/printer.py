"""IR -> MIL text (and weight.bin) in either dialect of docs/mil.md.

    text, files = emit(prog, dialect="ios18")   # files: {"weights/weight.bin": bytes} or {}

Dialects:
  ios18  `program(1.3)`, `func main<ios18>`, bare scalars `int32(1)`, `string("valid")`,
         buildInfo typed `dict<string, string>`.
  ios16  `program(1.0)`, `func main<ios16>` (ios15/ios17 tags kept when parsed), scalars as
         rank-0 tensors `tensor<int32, []>(1)`, buildInfo `dict<tensor<string, []>, tensor<string, []>>`.

Layout follows what coremlc writes: ops indented 12 spaces, keyword arguments sorted by name,
the `[...]` block sorted by key (so `name` sits in alphabetical place: `[name = ..., val = ...]`),
multi-output ops listing every output on the left. Every literal op argument is already a
named const in the IR. Constants of 10 or more elements whose dtype weight.bin can hold,
and every sub-byte constant of rank >= 1, go to `weights/weight.bin`; the rest are inline.

Floats are written so they parse back to identical bits (`format_float`): the shortest
decimal that round-trips in the value's own dtype is used when it equals the value exactly
and is at most 16 characters; otherwise a C99 hex float (`0x1.998p-4`). NaN is written `nan`
(sign and payload are not kept; weight.bin blobs keep them).

Output depends only on the program: op order, declaration-sorted arguments and sorted
attribute keys; no dict iteration order of callers or object ids.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal

import numpy as np

from .. import dialects
from ..dialects import DIALECTS, Dialect  # noqa: F401  (DIALECTS re-exported by anekit.mil)
from ..errors import AnekitError, MILEmitError
from ..ir import dtypes as _dt
from ..ir.graph import Function, Op, Program, Tensor
from . import minifloat
from .blobs import DTYPE_CODES, BlobWriter
from .lexer import quote

WEIGHT_FILE = "weights/weight.bin"
MODEL_PATH_PREFIX = "@model_path/"

# The smallest constant that goes to weight.bin (coremltools uses the same cut: 10 elements).
BLOB_MIN_ELEMENTS = 10
SUBBYTE_DTYPES = ("uint1", "uint2", "uint3", "uint4", "uint6", "int4")

# buildInfo written when a program carries none: the versions of docs/mil.md, the header that
# the private-API compile route is known to accept.
DEFAULT_BUILD_INFO = {"coremlc-component-MIL": "3510.2.1", "coremlc-version": "3505.4.1"}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_FUNC_INDENT, _OP_INDENT, _END_INDENT = " " * 4, " " * 12, " " * 8


# Which dialect applies is decided in anekit/dialects.py; these names stay for the parser.
dialect_of_version = dialects.of_version
dialect_of_opset = dialects.of_opset
_opset_number = dialects.opset_number
get_dialect = dialects.get


# ---------------------------------------------------------------------------- scalars

_SHORTEST_TYPES = {"fp16": np.float16, "fp32": np.float32, "bf16": np.float32, "fp64": np.float64}


def format_float(value, dtype: str = "fp32") -> str:
    """A float literal that parses back to the identical `dtype` value (see module doc)."""
    v = float(value)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    short = np.format_float_positional(_SHORTEST_TYPES.get(dtype, np.float64)(v), unique=True, trim="0")
    if len(short) <= 16 and Decimal(short) == Decimal(v):
        return short
    return hex_float(v)


def hex_float(v: float) -> str:
    """C99 hex float without trailing zero digits: 0.75 -> 0x1.8p-1, 1.0 -> 0x1p+0."""
    text = float(v).hex()
    mantissa, exponent = text.split("p")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}p{exponent}"


def _scalar_texts(arr: np.ndarray, dtype: str) -> list[str]:
    kind = _dt.get(dtype).kind
    flat = arr.reshape(-1)
    if kind == "float":
        if dtype == "bf16":   # keep inline bf16 consistent with weight.bin, which rounds
            flat = minifloat.decode_bf16(minifloat.encode_bf16(flat))
        return [format_float(x, dtype) for x in flat.tolist()]
    if kind == "bool":
        return ["true" if x else "false" for x in flat.tolist()]
    if kind == "string":
        return [quote(str(x)) for x in flat.tolist()]
    return [str(int(x)) for x in flat.tolist()]


# ---------------------------------------------------------------------------- emitter

class _Emitter:
    def __init__(self, dialect: Dialect):
        self.d = dialect
        self.blobs = BlobWriter()
        self.lines: list[str] = []

    # -- types and literals
    def type_text(self, dtype: str, shape) -> str:
        if not shape and self.d.bare_scalars:
            return dtype
        return f"tensor<{dtype}, [{', '.join(str(int(s)) for s in shape)}]>"

    def scalar(self, dtype: str, text: str) -> str:
        return f"{self.type_text(dtype, ())}({text})"

    def string(self, value: str) -> str:
        return self.scalar("string", quote(value))

    def literal(self, value, dtype: str, shape, where: str) -> str:
        """`TYPE(payload)` for a constant value, moving large ones to weight.bin."""
        shape = tuple(int(s) for s in shape)
        if dtype == "string" or isinstance(value, str):
            if isinstance(value, str):
                return self.string(value)
            arr = np.asarray(value)
            payload = f"[{', '.join(_scalar_texts(arr, 'string'))}]" if shape else _scalar_texts(arr, "string")[0]
            return f"{self.type_text('string', shape)}({payload})"
        arr = np.asarray(value)
        if arr.shape != shape:
            raise MILEmitError(f"{where}: value of shape {list(arr.shape)} does not match its type {list(shape)}")
        if shape and dtype in DTYPE_CODES and (arr.size >= BLOB_MIN_ELEMENTS or dtype in SUBBYTE_DTYPES):
            try:
                offset = self.blobs.add(arr, dtype)
            except AnekitError as err:
                raise MILEmitError(f"{where}: cannot store the value in weight.bin: {err}") from None
            ref = (f"BLOBFILE(path = {self.string(MODEL_PATH_PREFIX + WEIGHT_FILE)}, "
                   f"offset = {self.scalar('uint64', str(offset))})")
            return f"{self.type_text(dtype, shape)}({ref})"
        want = _dt.to_numpy(dtype)
        if arr.dtype != want:
            arr = arr.astype(want)
        texts = _scalar_texts(arr, dtype)
        payload = f"[{', '.join(texts)}]" if shape else texts[0]
        return f"{self.type_text(dtype, shape)}({payload})"

    def attr_value(self, value, where: str) -> str:
        """A program/function attribute or an op block attribute without a declared dtype."""
        if isinstance(value, dict):
            return self.dict_literal(value, where)
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, (bool, np.bool_)):
            return self.scalar("bool", "true" if value else "false")
        if isinstance(value, (int, np.integer)) and not isinstance(value, np.ndarray):
            return self.scalar("int32", str(int(value)))
        if isinstance(value, float):
            return self.scalar("fp32", format_float(value, "fp32"))
        arr = np.asarray(value)
        try:
            dtype = _dt.from_numpy(arr.dtype)
        except AnekitError:
            raise MILEmitError(f"{where}: cannot write a value of type {type(value).__name__}") from None
        return self.literal(arr, dtype, arr.shape, where)

    def dict_literal(self, value: dict, where: str) -> str:
        """`dict<string, V>({{"k", v}, ...})`, keys sorted; values all strings, bools, ints
        (int32) or floats (fp32), written raw as coremlc does."""
        kinds = {_dict_value_kind(v) for v in value.values()} or {"string"}
        if not all(isinstance(k, str) for k in value) or len(kinds) != 1 or None in kinds:
            raise MILEmitError(f"{where}: dict attributes need string keys and values all of one kind "
                               f"(str, bool, int or float)")
        kind = kinds.pop()
        raw = {"string": quote, "bool": lambda v: "true" if v else "false", "int32": lambda v: str(int(v)),
               "fp32": lambda v: format_float(v, "fp32")}[kind]
        items = ", ".join(f"{{{quote(k)}, {raw(value[k])}}}" for k in sorted(value))
        return f"dict<{self.type_text('string', ())}, {self.type_text(kind, ())}>({{{items}}})"

    @staticmethod
    def attr_block(items: dict) -> str:
        return "[" + ", ".join(f"{k} = {items[k]}" for k in sorted(items)) + "]"

    # -- structure
    def program(self, prog: Program):
        attributes = dict(prog.attributes)
        attributes.setdefault("buildInfo", DEFAULT_BUILD_INFO)
        self.lines.append(f"program({self.d.version})")
        block = {_ident(k, "program attribute"): self.attr_value(v, f"program attribute '{k}'")
                 for k, v in attributes.items()}
        self.lines.append(self.attr_block(block))
        self.lines.append("{")
        for i, fn in enumerate(prog.functions.values()):
            if i:
                self.lines.append("")
            self.function(fn)
        self.lines.append("}")

    def function(self, fn: Function):
        fname = _ident(fn.name, "function name")
        opset = fn.opset if fn.opset and dialect_of_opset(fn.opset) == self.d.name else self.d.name
        states = set(fn.states)
        if states and _opset_number(self.d.name) < 18:
            raise MILEmitError(f"function '{fname}': state inputs ({', '.join(fn.states)}) exist only from the "
                               "ios18 op set; emit with dialect='ios18'")
        defined: set[str] = set()
        params = []
        for t in fn.inputs:
            name = _define(defined, t, f"function '{fname}' input")
            ttype = self.type_text(t.dtype, t.shape)
            params.append(f"{'state<' + ttype + '>' if name in states else ttype} {name}")
        attrs = {_ident(k, "function attribute"): self.attr_value(v, f"function '{fname}' attribute '{k}'")
                 for k, v in fn.attributes.items()}
        block = f" {self.attr_block(attrs)}" if attrs else ""
        self.lines.append(f"{_FUNC_INDENT}func {fname}<{opset}>({', '.join(params)}){block} {{")
        self.body(fn, defined, fname, _OP_INDENT)
        self.lines.append(f"{_END_INDENT}}} -> ({self.outputs(fn, defined, fname)});")

    def body(self, fn: Function, defined: set, fname: str, indent: str):
        inlined = inlined_by_older(fn, self.d.name)
        for op in fn.ops:
            if id(op) not in inlined:
                self.lines.append(indent + self.statement(op, defined, fname, indent))

    @staticmethod
    def outputs(fn: Function, defined: set, fname: str) -> str:
        outs = []
        for t in fn.outputs:
            if t.name not in defined:
                raise MILEmitError(f"function '{fname}': output {t.name!r} is not produced by the function")
            outs.append(t.name)
        return ", ".join(outs)

    def nested(self, op: Op, blocks: list, fname: str, indent: str) -> str:
        """The nested blocks of a control-flow op (ir/ops/control.py), after its attribute block:
        ` {`, one `label(inputs) { ops } -> (outputs)` per block, `}`. Blocks are closed: each
        has its own names, its inputs being the op's loop variables and captures."""
        inner = indent + " " * 4
        for label, fn in blocks:
            defined: set = set()
            where = f"function '{fname}': op '{op.name}' block '{label}'"
            params = [f"{self.type_text(t.dtype, t.shape)} {_define(defined, t, where + ' input')}" for t in fn.inputs]
            self.lines.append(f"{inner}{label}({', '.join(params)}) {{")
            self.body(fn, defined, f"{fname}/{op.name}/{label}", inner + " " * 4)
            self.lines.append(f"{inner}}} -> ({self.outputs(fn, defined, where)})")
        return f"{indent}}};"

    def statement(self, op: Op, defined: set, fname: str, indent: str = _OP_INDENT) -> str:
        op_name = op.name if op.name is not None else (op.outputs[0].name if op.outputs else None)
        where = f"function '{fname}': op '{op_name}' ({op.type})"
        if op_name is None:
            raise MILEmitError(f"function '{fname}': a {op.type} op without outputs needs a name")
        older = older_spelling(op, self.d.name, where)
        block = {"name": self.string(str(op_name))}
        blocks: list = []
        if older is not None:
            block.update({k: self.attr_value(v, f"{where} attribute '{k}'") for k, v in older.items()})
            args = ""
        elif op.type == "const":
            if "val" not in op.attrs:
                raise MILEmitError(f"{where}: const without a value")
            out = op.outputs[0]
            block["val"] = self.literal(op.attrs["val"], out.dtype, out.shape, where)
            args = ""
        else:
            parts = []
            for pname in sorted(op.inputs):
                if op.spec.param(pname) is None:
                    raise MILEmitError(f"{where}: argument '{pname}' is not declared by the op")
                v = op.inputs[pname]
                if isinstance(v, tuple):
                    parts.append(f"{pname} = ({', '.join(_use(defined, t, where) for t in v)})")
                else:
                    parts.append(f"{pname} = {_use(defined, v, where)}")
            args = ", ".join(parts)
            for key, value in op.attrs.items():
                p = op.spec.param(key)
                if p is None or p.kind != "attr":
                    raise MILEmitError(f"{where}: block attribute '{key}' is not an attr parameter of the op")
                if isinstance(value, Function):
                    blocks.append((key, value))
                    continue
                block[key] = self.attr_value(value, f"{where} attribute '{key}'")
        outs = ", ".join(f"{self.type_text(t.dtype, t.shape)} {_define(defined, t, where)}" for t in op.outputs)
        lhs = f"{outs} = " if outs else ""   # ops without outputs (write_state) are bare calls
        head = f"{lhs}{op.type}({args}){self.attr_block(block)}"
        if not blocks:
            return head + ";"
        at = len(self.lines)            # the block lines go after this statement's own line
        tail = self.nested(op, blocks, fname, indent)
        lines = self.lines[at:]
        del self.lines[at:]
        return "\n".join([head + " {"] + lines + [tail])


def inlined_by_older(fn: Function, dialect: str) -> set[int]:
    """ids of the const ops that only ops written in their older spelling read (that spelling
    holds the values in its own attributes): they are left out, not written twice."""
    older = {id(op) for op in fn.ops if op.spec.older_form is not None
             and _opset_number(op.spec.since) > _opset_number(dialect)}
    if not older:
        return set()
    readers: dict[int, set] = {}
    for op in fn.ops:
        for v in op.inputs.values():
            for t in (v if isinstance(v, tuple) else (v,)):
                readers.setdefault(id(t), set()).add(id(op))
    outputs = {id(t) for t in fn.outputs}
    return {id(op) for op in fn.ops if op.type == "const" and op.outputs and id(op.outputs[0]) not in outputs
            and readers.get(id(op.outputs[0])) and readers[id(op.outputs[0])] <= older}


def older_spelling(op: Op, dialect: str, where: str) -> dict | None:
    """The block attributes of `op`'s older spelling where `dialect` predates the op's own form
    (ir/spec.py OlderForm), None where the op's own form is written; MILEmitError where the
    op has no spelling in that dialect."""
    since = op.spec.since
    if _opset_number(since) <= _opset_number(dialect):
        return None
    form = op.spec.older_form
    if form is None or _opset_number(form.dialect) > _opset_number(dialect):
        raise MILEmitError(f"{where} exists only from the {since} op set; emit with "
                           f"dialect='{since}' (a chip whose private route takes that dialect)")
    try:
        return form.write(op)
    except AnekitError as e:
        raise MILEmitError(f"{where}: {e}; emit with dialect='{since}'") from None


def _dict_value_kind(v) -> str | None:
    if isinstance(v, str):
        return "string"
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, (int, np.integer)):
        return "int32"
    if isinstance(v, (float, np.floating)):
        return "fp32"
    return None


def _ident(name, what: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name):
        raise MILEmitError(f"{what} {name!r} is not a MIL identifier ([A-Za-z_][A-Za-z0-9_]*)")
    return name


def _define(defined: set, t: Tensor, where: str) -> str:
    name = _ident(t.name, f"{where}: tensor name")
    if name in defined:
        raise MILEmitError(f"{where}: name '{name}' is defined twice")
    defined.add(name)
    return name


def _use(defined: set, t: Tensor, where: str) -> str:
    if not isinstance(t, Tensor):
        raise MILEmitError(f"{where}: argument is {type(t).__name__}, not a graph tensor")
    if t.name not in defined:
        raise MILEmitError(f"{where}: uses {t.name!r} before it is defined in the function")
    return t.name


def render(prog: Program, dialect: str = dialects.DEFAULT) -> tuple[str, BlobWriter]:
    """MIL text and the weight.bin writer holding its blobs (arrays referenced, not copied)."""
    if not isinstance(prog, Program):
        raise MILEmitError(f"emit needs a Program, got {type(prog).__name__}")
    em = _Emitter(get_dialect(dialect))
    em.program(prog)
    return "\n".join(em.lines) + "\n", em.blobs


def emit(prog: Program, dialect: str = dialects.DEFAULT) -> tuple[str, dict[str, bytes]]:
    """MIL text of `prog` and its files: {"weights/weight.bin": bytes}, or {} without blobs."""
    text, blobs = render(prog, dialect)
    return text, ({WEIGHT_FILE: blobs.getvalue()} if blobs.count else {})
