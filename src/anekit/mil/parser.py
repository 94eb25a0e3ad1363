"""MIL text -> IR, for both dialects, the way coremlc and earlier direct-route projects write it.

Grammar (recursive descent over lexer tokens; whitespace and comments anywhere):

    program   := 'program' '(' VERSION ')' block? '{' function+ '}'
    function  := 'func' NAME ('<' OPSET '>')? '(' (type NAME (',' type NAME)*)? ')' block?
                 '{' statement* '}' '->' '(' (NAME (',' NAME)*)? ')' ';'?
    statement := type NAME (',' type NAME)* '=' OP '(' (ARG '=' arg (',' ...)*)? ')' block? ';'
    arg       := NAME | literal | '(' (NAME | literal) (',' ...)* ')'
    block     := '[' KEY '=' value (',' KEY '=' value)* ']'
    type      := 'tensor' '<' DTYPE ',' '[' dims ']' '>' | DTYPE | 'state' '<' type '>'
               | 'dict' '<' type ',' type '>'
    literal   := type '(' payload ')'   payload: scalar, [list], BLOBFILE(path = ..., offset = ...),
                                         or {{k, v}, ...} for dicts

Scalars are accepted bare (`int32(1)`, ios18) and as rank-0 tensors (`tensor<int32, []>(1)`,
ios16) in either dialect; floats as decimals, C99 hex floats, `inf`, `-inf`, `nan`;
BLOBFILE arguments typed or raw (`path = "@model_path/..."`, as hand-written direct-route MIL writes them).

Ops are rebuilt through their declarations in anekit.ir.ops: arguments are checked against
the declared parameters, literal arguments become const ops named `<op>_<param>`, omitted
parameters with declared defaults are materialized as consts (as the builder does), and each
op's declared output types must equal what its shape rule computes. Every error is an
AnekitError carrying line and column: MILParseError for malformed or inconsistent text,
UnknownOpError for an op no declaration defines, PathEscapeError / WeightFileError from the
weight resolver for BLOBFILE references.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import AnekitError, MILParseError, UnknownOpError
from ..ir import dtypes as _dt
from ..ir.builder import bind, infer
from ..ir.graph import Function, Op, Program, Tensor
from ..ir.spec import REGISTRY, OpSpec, Param
from . import minifloat
from .blobs import DTYPE_CODES
from .printer import dialect_of_version
from .lexer import EOF, FLOAT, IDENT, INT, PUNCT, STRING, Source, Token, tokenize, unquote

MAX_DEPTH = 64              # nesting of types, lists and dicts (guards Python's recursion limit)
MAX_DIM = 2 ** 31 - 1       # largest dimension a MIL shape may name
_TYPE_WORDS = ("tensor", "state", "dict", "tuple", "list")

# resolve_blob(path, offset, dtype, shape) -> array, raising PathEscapeError / WeightFileError
BlobResolver = Callable[[str, int, str, tuple], np.ndarray]


@dataclass(frozen=True)
class TType:
    dtype: str
    shape: tuple
    state: bool = False

    def __str__(self) -> str:
        inner = f"tensor<{self.dtype}, [{', '.join(map(str, self.shape))}]>"
        return f"state<{inner}>" if self.state else inner


@dataclass(frozen=True)
class DictType:
    key: object
    value: object

    def __str__(self) -> str:
        return f"dict<{self.key}, {self.value}>"


@dataclass
class Lit:
    """A parsed literal: its type and value (array, str for a string scalar, or dict)."""
    type: object
    value: object
    tok: Token


@dataclass
class Ref:
    """A reference to a named value."""
    name: str
    tok: Token


class _Parser:
    def __init__(self, source: Source, resolve_blob: BlobResolver | None):
        self.src = source
        self.toks = tokenize(source)
        self.i = 0
        self.depth = 0
        self.resolve_blob = resolve_blob

    # ------------------------------------------------------------------ tokens
    def peek(self, k: int = 0) -> Token:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Token:
        tok = self.toks[self.i]
        if tok.kind != EOF:
            self.i += 1
        return tok

    def at(self, text: str, k: int = 0) -> bool:
        tok = self.peek(k)
        return tok.kind in (PUNCT, IDENT) and tok.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.i += 1
            return True
        return False

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            raise self.error(f"expected '{text}' {context}, found {_describe(self.peek())}", self.peek())
        return self.next()

    def ident(self, what: str) -> Token:
        tok = self.peek()
        if tok.kind != IDENT:
            raise self.error(f"expected {what}, found {_describe(tok)}", tok)
        return self.next()

    def error(self, message: str, tok: Token) -> MILParseError:
        return self.src.error(message, tok.pos)

    def relocate(self, err: AnekitError, tok: Token) -> AnekitError:
        """The same error class with the source location in front of its message."""
        if isinstance(err, MILParseError):
            return err
        line, column = self.src.location(tok.pos)
        try:
            new = type(err)(f"{line}:{column}: {err}")
        except Exception:   # an error class with another constructor: fall back to a parse error
            new = MILParseError(str(err), line, column, self.src.text, self.src.path)
        new.line, new.column = line, column
        return new

    def enter(self, tok: Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting deeper than {MAX_DEPTH} levels", tok)

    def is_literal_start(self) -> bool:
        tok = self.peek()
        if tok.kind != IDENT:
            return False
        if tok.text in _TYPE_WORDS:
            return self.at("<", 1)
        return tok.text in _dt.DTYPES and self.at("(", 1)

    # ------------------------------------------------------------------ types
    def parse_type(self):
        tok = self.ident("a type")
        self.enter(tok)
        try:
            word = tok.text
            if word == "tensor":
                self.expect("<", "after 'tensor'")
                dtype = self.dtype_name()
                self.expect(",", "after the tensor dtype")
                shape = self.parse_dims()
                self.expect(">", "to close the tensor type")
                return TType(dtype, shape)
            if word == "state":
                self.expect("<", "after 'state'")
                inner = self.parse_type()
                if not isinstance(inner, TType) or inner.state:
                    raise self.error(f"state<...> must wrap a tensor type, got {inner}", tok)
                self.expect(">", "to close the state type")
                return TType(inner.dtype, inner.shape, state=True)
            if word == "dict":
                self.expect("<", "after 'dict'")
                key = self.parse_type()
                self.expect(",", "between the dict key and value types")
                value = self.parse_type()
                self.expect(">", "to close the dict type")
                return DictType(key, value)
            if word in ("tuple", "list"):
                raise self.error(f"type '{word}<...>' is not supported", tok)
            if word in _dt.DTYPES:
                return TType(word, ())
            raise self.error(f"unknown type '{word}'", tok)
        finally:
            self.depth -= 1

    def dtype_name(self) -> str:
        tok = self.ident("a dtype")
        if tok.text not in _dt.DTYPES:
            raise self.error(f"unknown type '{tok.text}'", tok)
        return tok.text

    def parse_dims(self) -> tuple:
        self.expect("[", "to open the shape")
        dims = []
        while not self.at("]"):
            tok = self.next()
            if tok.kind != INT:
                if tok.text == "?" or tok.kind == IDENT:
                    raise self.error(f"dynamic dimension {tok.text!r} is not supported (anekit needs static shapes)", tok)
                raise self.error(f"expected a dimension, found {_describe(tok)}", tok)
            dim = int(tok.text)
            if dim > MAX_DIM:
                raise self.error(f"dimension {dim} is larger than {MAX_DIM}", tok)
            dims.append(dim)
            if not self.accept(","):
                break
        self.expect("]", "to close the shape")
        return tuple(dims)

    # ------------------------------------------------------------------ values
    def parse_raw(self):
        """An untyped scalar: (kind, value, token) with kind str | bool | int | float."""
        tok = self.next()
        sign = 1
        if tok.kind == PUNCT and tok.text in ("+", "-"):
            sign = -1 if tok.text == "-" else 1
            start, tok = tok, self.next()
            if tok.kind not in (INT, FLOAT) and not (tok.kind == IDENT and tok.text in ("inf", "nan")):
                raise self.error(f"expected a number after '{start.text}', found {_describe(tok)}", tok)
        if tok.kind == STRING and sign == 1:
            return "str", unquote(self.src, tok), tok
        if tok.kind == INT:
            return "int", sign * int(tok.text), tok
        if tok.kind == FLOAT:
            try:
                value = float.fromhex(tok.text) if tok.text[:2] in ("0x", "0X") else float(tok.text)
            except (OverflowError, ValueError):
                raise self.error(f"number {tok.text} is out of range", tok) from None
            if math.isinf(value):
                raise self.error(f"number {tok.text} is out of range", tok)
            return "float", sign * value, tok
        if tok.kind == IDENT:
            if tok.text in ("inf", "nan"):
                return "float", sign * float(tok.text), tok
            if tok.text in ("true", "false"):
                return "bool", tok.text == "true", tok
        raise self.error(f"expected a value, found {_describe(tok)}", tok)

    def parse_value(self):
        """A typed literal (Lit) or an untyped scalar (tuple from parse_raw)."""
        return self.parse_literal() if self.is_literal_start() else self.parse_raw()

    def parse_literal(self) -> Lit:
        start = self.peek()
        self.enter(start)
        try:
            ty = self.parse_type()
            if isinstance(ty, DictType):
                return Lit(ty, self.parse_dict_payload(ty), start)
            if ty.state:
                raise self.error("a state type has no literal value", start)
            self.expect("(", f"after the type {ty}")
            if self.at("BLOBFILE") and self.at("(", 1):
                value = self.parse_blobfile(ty)
            else:
                value = self.parse_payload(ty)
            self.expect(")", "to close the literal")
            return Lit(ty, value, start)
        finally:
            self.depth -= 1

    def parse_payload(self, ty: TType):
        tok = self.peek()
        if self.at("["):
            raws: list = []
            self.parse_list(raws)
        elif ty.shape:
            raise self.error(f"expected '[' with the values of {ty}, found {_describe(tok)}", tok)
        else:
            raws = [self.parse_raw()]
        count = math.prod(ty.shape)
        if len(raws) != count:
            raise self.error(f"{ty} needs {count} values, found {len(raws)}", tok)
        return self.to_array(raws, ty)

    def parse_list(self, out: list):
        tok = self.expect("[", "to open a list")
        self.enter(tok)
        try:
            while not self.at("]"):
                if self.at("["):
                    self.parse_list(out)
                else:
                    out.append(self.parse_raw())
                if not self.accept(","):
                    break
            self.expect("]", "to close the list")
        finally:
            self.depth -= 1

    def to_array(self, raws: list, ty: TType):
        """Raw scalars -> a read-only array of ty, range-checked for its dtype."""
        dtype, kind = ty.dtype, _dt.get(ty.dtype).kind
        want = {"float": ("int", "float"), "int": ("int",), "uint": ("int",), "bool": ("bool",), "string": ("str",)}[kind]
        for k, _, tok in raws:
            if k not in want:
                raise self.error(f"{k} value where {ty} needs {'a number' if kind == 'float' else kind}", tok)
        values = [v for _, v, _ in raws]
        if kind == "string":
            if not ty.shape:
                return values[0]
            arr = np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")
        elif kind == "float":
            src = np.array(values, dtype=np.float64)
            with np.errstate(over="ignore", invalid="ignore"):
                if dtype == "bf16":
                    arr = minifloat.decode_bf16(minifloat.encode_bf16(src))
                else:
                    arr = src.astype(_dt.to_numpy(dtype))
            bad = np.flatnonzero(np.isfinite(src) & ~np.isfinite(arr))
            if bad.size:
                raise self.error(f"value {values[bad[0]]!r} is out of range for {dtype}", raws[bad[0]][2])
        elif kind == "bool":
            arr = np.array(values, dtype=np.bool_)
        else:
            info = _dt.get(dtype)
            lo, hi = (-(1 << (info.bits - 1)), (1 << (info.bits - 1)) - 1) if kind == "int" else (0, (1 << info.bits) - 1)
            for v, (_, _, tok) in zip(values, raws):
                if not lo <= v <= hi:
                    raise self.error(f"value {v} is out of range for {dtype} [{lo}, {hi}]", tok)
            arr = np.array(values, dtype=_dt.to_numpy(dtype))
        arr = arr.reshape(ty.shape)
        arr.flags.writeable = False
        return arr

    def parse_blobfile(self, ty: TType) -> np.ndarray:
        tok = self.next()   # BLOBFILE
        self.expect("(", "after BLOBFILE")
        args: dict = {}
        while not self.at(")"):
            key = self.ident("a BLOBFILE argument (path or offset)")
            if key.text not in ("path", "offset"):
                raise self.error(f"unknown BLOBFILE argument '{key.text}' (expected path and offset)", key)
            if key.text in args:
                raise self.error(f"BLOBFILE argument '{key.text}' given twice", key)
            self.expect("=", f"after '{key.text}'")
            args[key.text] = (self.scalar_value(self.parse_value()), self.peek())
            if not self.accept(","):
                break
        self.expect(")", "to close BLOBFILE")
        for need in ("path", "offset"):
            if need not in args:
                raise self.error(f"BLOBFILE needs a '{need}' argument", tok)
        path, offset = args["path"][0], args["offset"][0]
        if not isinstance(path, str):
            raise self.error("BLOBFILE path must be a string", tok)
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise self.error(f"BLOBFILE offset must be a non-negative integer, got {offset!r}", tok)
        if ty.dtype not in DTYPE_CODES:
            raise self.error(f"dtype {ty.dtype} cannot be stored in weight.bin", tok)
        if self.resolve_blob is None:
            raise self.error("BLOBFILE constant but no weights were given (pass weights= or load the model folder)", tok)
        try:
            arr = self.resolve_blob(path, offset, ty.dtype, ty.shape)
        except AnekitError as err:
            raise self.relocate(err, tok) from None
        return arr

    def scalar_value(self, value):
        """A Python scalar from a raw scalar or a rank-0 literal (for BLOBFILE and dict items)."""
        if isinstance(value, tuple):
            return value[1]
        if isinstance(value.type, TType) and not value.type.shape:
            v = value.value
            return v if isinstance(v, str) else v.item()
        raise self.error(f"expected a scalar, found a value of type {value.type}", value.tok)

    def parse_dict_payload(self, ty: DictType) -> dict:
        self.expect("(", f"after the type {ty}")
        self.expect("{", "to open the dict items")
        out: dict = {}
        while not self.at("}"):
            item = self.expect("{", "to open a dict item")
            key = self.scalar_value(self.parse_value())
            self.expect(",", "between a dict key and its value")
            value = _python(self.parse_value())
            self.expect("}", "to close a dict item")
            if key in out:
                raise self.error(f"dict key {key!r} given twice", item)
            out[key] = value
            if not self.accept(","):
                break
        self.expect("}", "to close the dict items")
        self.expect(")", "to close the dict literal")
        return out

    def parse_block(self) -> dict:
        """`[key = value, ...]` -> {key: (token, value)}."""
        self.expect("[", "to open an attribute block")
        return self.parse_keyed("]", "attribute", "", self.parse_value, "to close the attribute block")

    def parse_keyed(self, close: str, kind: str, owner: str, parse, closing: str) -> dict:
        """`key = value, ...` up to `close` -> {key: (token, value)}; a repeated key is an error."""
        out: dict = {}
        while not self.at(close):
            key = self.ident(f"an {kind} name")
            if key.text in out:
                raise self.error(f"{owner}{kind} '{key.text}' given twice", key)
            self.expect("=", f"after {kind} '{key.text}'")
            out[key.text] = (key, parse())
            if not self.accept(","):
                break
        self.expect(close, closing)
        return out

    def attribute_values(self, block: dict) -> dict:
        """Program/function attributes as Python values (str, bool, int, float, dict, array)."""
        return {key: _python(value) for key, (_, value) in block.items()}

    # ------------------------------------------------------------------ structure
    def parse_program(self) -> Program:
        tok = self.ident("'program'")
        if tok.text != "program":
            raise self.error(f"expected 'program', found {_describe(tok)}", tok)
        self.expect("(", "after 'program'")
        ver = self.next()
        if ver.kind != FLOAT or not ver.text.replace(".", "", 1).isdigit():
            raise self.error(f"expected a program version such as 1.3, found {_describe(ver)}", ver)
        self.expect(")", "after the program version")
        attributes = self.attribute_values(self.parse_block()) if self.at("[") else {}
        self.expect("{", "to open the program body")
        functions: dict[str, Function] = {}
        while not self.at("}"):
            fn_tok = self.peek()
            fn = self.parse_function()
            if fn.name in functions:
                raise self.error(f"function '{fn.name}' defined twice", fn_tok)
            functions[fn.name] = fn
        if not functions:
            raise self.error("a program needs at least one function", self.peek())
        self.expect("}", "to close the program body")
        if self.peek().kind != EOF:
            raise self.error(f"unexpected {_describe(self.peek())} after the program", self.peek())
        return Program(functions, version=ver.text, attributes=attributes, dialect=dialect_of_version(ver.text))

    def parse_function(self) -> Function:
        kw = self.ident("'func'")
        if kw.text != "func":
            raise self.error(f"expected 'func', found {_describe(kw)}", kw)
        fname = self.ident("a function name").text
        opset = None
        if self.accept("<"):
            opset = self.ident("an opset name such as ios18").text
            self.expect(">", "after the opset name")
        scope = _Scope(self)
        self.expect("(", "to open the function inputs")
        inputs, states = [], []
        while not self.at(")"):
            ty_tok = self.peek()
            ty = self.parse_type()
            name = self.ident("an input name")
            if not isinstance(ty, TType):
                raise self.error(f"input '{name.text}' has type {ty}; inputs must be tensors", ty_tok)
            if ty.dtype not in _dt.COMPUTE:
                raise self.error(f"input '{name.text}' has dtype {ty.dtype}; inputs may be {', '.join(_dt.COMPUTE)}", ty_tok)
            if any(d < 1 for d in ty.shape):
                raise self.error(f"input '{name.text}' has an empty dimension in {ty}", ty_tok)
            t = Tensor(ty.dtype, ty.shape, name=name.text)
            scope.define(t, name)
            inputs.append(t)
            if ty.state:
                states.append(name.text)
            if not self.accept(","):
                break
        self.expect(")", "to close the function inputs")
        attributes = self.attribute_values(self.parse_block()) if self.at("[") else {}
        self.expect("{", "to open the function body")
        while not self.at("}"):
            if self.peek().kind == EOF:
                raise self.error(f"function '{fname}' is not closed", self.peek())
            self.parse_statement(scope)
        self.next()
        self.expect("->", "after the function body")
        self.expect("(", "to open the function outputs")
        outputs, listed = [], set()
        while not self.at(")"):
            tok = self.peek()
            t = scope.lookup(self.ident("an output name"))
            if id(t) in listed:   # outputs are named by their tensor: each once
                raise self.error(f"output '{tok.text}' is listed twice", tok)
            outputs.append(t)
            listed.add(id(t))
            if not self.accept(","):
                break
        self.expect(")", "to close the function outputs")
        self.accept(";")
        scope.finish()
        return Function(fname, inputs, scope.ops, outputs, opset=opset, attributes=attributes, states=states)

    def parse_statement(self, scope: "_Scope"):
        outs = []
        while not (self.peek().kind == IDENT and self.at("(", 1)):   # `op(...)`: no outputs
            ty_tok = self.peek()
            ty = self.parse_type()
            name = self.ident("an output name")
            if not isinstance(ty, TType) or ty.state:
                raise self.error(f"op output '{name.text}' has type {ty}; op outputs must be tensors", ty_tok)
            outs.append((ty, name))
            if not self.accept(","):
                break
        if outs:
            self.expect("=", "after the op outputs")
        op_tok = self.ident("an op name")
        self.expect("(", f"after op '{op_tok.text}'")
        args = self.parse_keyed(")", "argument", f"op '{op_tok.text}': ", self.parse_arg,
                                f"to close the arguments of '{op_tok.text}'")
        block = self.parse_block() if self.at("[") else {}
        nested = self.parse_nested(op_tok) if self.at("{") else None
        self.expect(";", "at the end of the statement")
        name = outs[0][1].text if outs else None
        if "name" in block:
            ntok, nval = block.pop("name")
            name = self.scalar_value(nval)
            if not isinstance(name, str):
                raise self.error("the op's name attribute must be a string", ntok)
        if name is None:
            raise self.error(f"op '{op_tok.text}' without outputs needs a [name = ...] attribute", op_tok)
        if op_tok.text == "const":
            self.build_const(scope, op_tok, name, outs, args, block)
        else:
            self.build_op(scope, op_tok, name, outs, args, block, nested)

    def parse_nested(self, op_tok: Token) -> dict:
        """`{ label(inputs) { statements } -> (outputs) ... }`: the closed blocks of a
        control-flow op (see the printer's `nested`), each parsed as a Function of its own."""
        self.expect("{", f"to open the blocks of '{op_tok.text}'")
        blocks: dict = {}
        while not self.at("}"):
            if self.peek().kind == EOF:
                raise self.error(f"the blocks of '{op_tok.text}' are not closed", self.peek())
            label = self.ident("a block name")
            if label.text in blocks:
                raise self.error(f"block '{label.text}' is given twice", label)
            blocks[label.text] = (label, self.parse_body(label.text, label))
        self.next()
        return blocks

    def parse_body(self, fname: str, owner: Token) -> Function:
        """`(typed inputs) { statements } -> (outputs)` as a Function named `fname`."""
        scope = _Scope(self)
        self.expect("(", f"to open the inputs of '{fname}'")
        inputs = []
        while not self.at(")"):
            ty_tok = self.peek()
            ty = self.parse_type()
            name = self.ident("an input name")
            if not isinstance(ty, TType) or ty.state or ty.dtype not in _dt.COMPUTE:
                raise self.error(f"block input '{name.text}' has type {ty}; block inputs are tensors of "
                                 f"{', '.join(_dt.COMPUTE)}", ty_tok)
            t = Tensor(ty.dtype, ty.shape, name=name.text)
            scope.define(t, name)
            inputs.append(t)
            if not self.accept(","):
                break
        self.expect(")", f"to close the inputs of '{fname}'")
        self.expect("{", f"to open the body of '{fname}'")
        while not self.at("}"):
            if self.peek().kind == EOF:
                raise self.error(f"block '{fname}' is not closed", owner)
            self.parse_statement(scope)
        self.next()
        self.expect("->", f"after the body of '{fname}'")
        self.expect("(", f"to open the outputs of '{fname}'")
        outputs = []
        while not self.at(")"):
            outputs.append(scope.lookup(self.ident("an output name")))
            if not self.accept(","):
                break
        self.expect(")", f"to close the outputs of '{fname}'")
        scope.finish()
        return Function(fname, inputs, scope.ops, outputs)

    def parse_arg(self):
        if self.at("("):
            self.next()
            items = []
            while not self.at(")"):
                items.append(self.parse_single_arg())
                if not self.accept(","):
                    break
            self.expect(")", "to close the tuple")
            return tuple(items)
        return self.parse_single_arg()

    def parse_single_arg(self):
        if self.is_literal_start():
            return self.parse_literal()
        tok = self.peek()
        if tok.kind == IDENT:
            return Ref(self.next().text, tok)
        raise self.error(f"expected a name or a typed value, found {_describe(tok)}", tok)

    # ------------------------------------------------------------------ IR construction
    def build_const(self, scope, op_tok, name, outs, args, block):
        if args:
            raise self.error("const takes no arguments; its value goes in [val = ...]", op_tok)
        for key, (tok, _) in block.items():
            if key != "val":
                raise self.error(f"const has no attribute '{key}'", tok)
        if "val" not in block:
            raise self.error("const without a val attribute", op_tok)
        if len(outs) != 1:
            raise self.error(f"const has one output, {len(outs)} are declared", op_tok)
        vtok, lit = block["val"]
        if not isinstance(lit, Lit) or not isinstance(lit.type, TType):
            raise self.error("const val must be a typed tensor or scalar literal", vtok)
        declared, out_name = outs[0]
        if (declared.dtype, declared.shape) != (lit.type.dtype, lit.type.shape):
            raise self.error(f"const '{name}': declared type {declared} but the value has type {lit.type}", out_name)
        scope.define(_const_tensor(lit.value, lit.type.dtype, lit.type.shape, out_name.text, name), out_name)

    def build_op(self, scope, op_tok, name, outs, args, block, nested=None):
        spec = REGISTRY.get(op_tok.text)
        if spec is None:
            err = self.error(f"unknown op '{op_tok.text}'", op_tok)
            unknown = UnknownOpError(str(err))
            unknown.line, unknown.column = err.line, err.column
            raise unknown
        where = f"op '{name}' ({spec.name})"
        if nested is not None or spec.kind == "control":
            return self.build_control(scope, spec, op_tok, name, outs, args, block, nested or {})
        inputs: dict = {}
        attrs: dict = {}
        if spec.older_arguments(list(args) + list(block)):
            inputs = self.older_inputs(scope, spec, op_tok, where, name, {**args, **block})
            args, block = {}, {}
        for key, (ktok, value) in args.items():
            p = spec.param(key)
            if p is None:
                raise self.error(f"{where} has no argument '{key}' (declared: {_param_names(spec)})", ktok)
            if p.kind == "attr":
                attrs[key] = self.attr_array(where, p, value, ktok)
            else:
                inputs[key] = self.tensor_argument(scope, where, name, key, p, ktok, value)
        for key, (ktok, value) in block.items():
            p = spec.param(key)
            if p is None or p.kind != "attr":
                raise self.error(f"{where} has no attribute '{key}'", ktok)
            if key in attrs:
                raise self.error(f"{where}: '{key}' given both as argument and attribute", ktok)
            attrs[key] = self.attr_array(where, p, value, ktok)
        try:
            bound = bind(spec, inputs, attrs)
        except AnekitError as err:
            tok = (args.get(getattr(err, "param", None)) or block.get(getattr(err, "param", None)) or (op_tok,))[0]
            raise self.error(f"op '{name}': {err}", tok) from None
        except Exception as err:   # shape rules see untrusted values; report, never crash
            raise self.error(f"{where}: shape rule failed on these arguments: {type(err).__name__}: {err}", op_tok) from None
        for pname in bound.defaulted:   # defaults materialized as named consts, as the builder does
            scope.generated(bound.inputs[pname], f"{name}_{pname}")
        inputs, attrs, rule = bound.inputs, bound.attrs, bound.outputs
        if len(rule) != len(outs):
            raise self.error(f"{where} has {len(rule)} output(s), {len(outs)} are declared", outs[0][1] if outs else op_tok)
        op = Op(spec, inputs, attrs, name)
        for i, ((ty, ntok), (dtype, shape)) in enumerate(zip(outs, rule)):
            if (ty.dtype, ty.shape) != (dtype, tuple(shape)):
                raise self.error(f"{where}: output '{ntok.text}' is declared {ty} but the shape rule gives "
                                 f"{TType(dtype, tuple(shape))}", ntok)
            t = Tensor(dtype, shape, op, i, ntok.text)
            op.outputs.append(t)
        scope.add_op(op, outs)

    def tensor_argument(self, scope, where, name, key, p, ktok, value):
        """A tensor argument (one value) or a tensors argument (a non-empty tuple), resolved in scope."""
        if p.kind == "tensors":
            if not isinstance(value, tuple) or not value:
                raise self.error(f"{where}: argument '{key}' takes a non-empty tuple (a, b, ...)", ktok)
            return tuple(scope.tensor(v, f"{name}_{key}_{i}") for i, v in enumerate(value))
        if isinstance(value, tuple):
            raise self.error(f"{where}: argument '{key}' takes one value, not a tuple", ktok)
        return scope.tensor(value, f"{name}_{key}")

    def build_control(self, scope, spec, op_tok, name, outs, args, block, nested):
        """A control-flow op: tensor arguments as any op's, blocks as Functions; the shape rule
        sees both (blocks are not literals, so `bind` is not the door here)."""
        where = f"op '{name}' ({spec.name})"
        if block:
            key, (tok, _) = next(iter(block.items()))
            raise self.error(f"{where} has no attribute '{key}'", tok)
        inputs: dict = {}
        for key, (ktok, value) in args.items():
            p = spec.param(key)
            if p is None or p.kind not in ("tensor", "tensors"):
                raise self.error(f"{where} has no argument '{key}' (declared: {_param_names(spec)})", ktok)
            inputs[key] = self.tensor_argument(scope, where, name, key, p, ktok, value)
        labels = [p.name for p in spec.params if p.kind == "attr"]
        attrs = {}
        for label, (ltok, fn) in nested.items():
            if label not in labels:
                raise self.error(f"{where} has no block '{label}' (blocks: {', '.join(labels)})", ltok)
            attrs[label] = fn
        for p in spec.params:
            if p.name not in inputs and p.name not in attrs and not p.optional:
                raise self.error(f"{where}: missing {'block' if p.kind == 'attr' else 'argument'} '{p.name}'", op_tok)
        try:
            rule = infer(spec, {**inputs, **attrs}, None)
        except AnekitError as err:
            raise self.error(f"op '{name}': {err}", op_tok) from None
        if len(rule) != len(outs):
            raise self.error(f"{where} has {len(rule)} output(s), {len(outs)} are declared", outs[0][1] if outs else op_tok)
        op = Op(spec, {p.name: inputs[p.name] for p in spec.params if p.name in inputs}, attrs, name)
        for i, ((ty, ntok), (dtype, shape)) in enumerate(zip(outs, rule)):
            if (ty.dtype, ty.shape) != (dtype, tuple(shape)):
                raise self.error(f"{where}: output '{ntok.text}' is declared {ty} but the shape rule gives "
                                 f"{TType(dtype, tuple(shape))}", ntok)
            op.outputs.append(Tensor(dtype, shape, op, i, ntok.text))
        scope.add_op(op, outs)

    def older_inputs(self, scope, spec: OpSpec, op_tok, where: str, name: str, given: dict) -> dict:
        """The op's const inputs from its older spelling (ir/spec.py OlderForm: the iOS 16
        constexpr_lut_to_dense, its arguments as block attributes)."""
        form = spec.older_form
        missing = [k for k in form.params if k not in given]
        if missing:
            raise self.error(f"{where}: the {form.dialect} form needs {', '.join(missing)} "
                             f"(it takes {', '.join(form.params)})", op_tok)
        values = {k: self.attr_array(where, form.params[k], v, tok) for k, (tok, v) in given.items()}
        try:
            consts = form.read(values)
        except AnekitError as err:
            raise self.error(f"op '{name}': {err}", op_tok) from None
        return {p: scope.generated(_const_tensor(v, dtype, v.shape, None, None), f"{name}_{p}")
                for p, (v, dtype) in consts.items()}

    def attr_array(self, where: str, p: Param, value, tok: Token):
        if not isinstance(value, Lit) or not isinstance(value.type, TType):
            raise self.error(f"{where}: '{p.name}' needs a typed value", tok)
        dtype = value.type.dtype
        allowed = p.dtypes
        if allowed not in (None, "T") and (dtype != allowed if isinstance(allowed, str) else dtype not in allowed):
            raise self.error(f"{where}: '{p.name}' has dtype {dtype}, expected {allowed}", tok)
        if p.rank is not None and len(value.type.shape) != p.rank:
            raise self.error(f"{where}: '{p.name}' must have rank {p.rank}, got {value.type}", tok)
        return value.value


class _Scope:
    """Names defined in one function, its ops in order, and consts the parser generated."""

    def __init__(self, parser: _Parser):
        self.p = parser
        self.names: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.pending: list[Op] = []                 # generated consts waiting for their consumer
        self.made: list[tuple[Tensor, str]] = []

    def define(self, t: Tensor, tok: Token):
        if tok.text in self.names:
            raise self.p.error(f"name '{tok.text}' is defined twice", tok)
        self.names[tok.text] = t
        if t.op is not None:
            self.ops.append(t.op)

    def lookup(self, tok: Token) -> Tensor:
        t = self.names.get(tok.text)
        if t is None:
            raise self.p.error(f"undefined name '{tok.text}'", tok)
        return t

    def tensor(self, value, base: str) -> Tensor:
        if isinstance(value, Ref):
            return self.lookup(value.tok)
        if not isinstance(value.type, TType):
            raise self.p.error(f"a {value.type} value cannot be an op argument", value.tok)
        return self.generated_const(value.value, value.type, base)

    def generated_const(self, value, ty: TType, base: str) -> Tensor:
        return self.generated(_const_tensor(value, ty.dtype, ty.shape, None, None), base)

    def generated(self, t: Tensor, base: str) -> Tensor:
        self.pending.append(t.op)
        self.made.append((t, base))
        return t

    def add_op(self, op: Op, outs):
        self.ops.extend(self.pending)
        self.pending.clear()
        for t, (_, ntok) in zip(op.outputs, outs):
            if ntok.text in self.names:
                raise self.p.error(f"name '{ntok.text}' is defined twice", ntok)
            self.names[ntok.text] = t
        self.ops.append(op)

    def finish(self):
        """Name generated consts `<op>_<param>`, avoiding every name the text defines. The next
        suffix to try is remembered per base, so many ops sharing one name stay linear."""
        next_suffix: dict[str, int] = {}
        for t, base in self.made:
            base = re.sub(r"[^A-Za-z0-9_]", "_", base)
            base = base if re.match(r"[A-Za-z_]", base) else "c_" + base
            i = next_suffix.get(base, 0)
            name = base if i == 0 else f"{base}_{i}"
            while name in self.names:
                i += 1
                name = f"{base}_{i}"
            next_suffix[base] = i + 1
            self.names[name] = t
            t.name = t.op.name = name


def _const_tensor(value, dtype: str, shape, tname, op_name) -> Tensor:
    """A const op and its output without copying `value` (weight views stay views)."""
    op = Op(REGISTRY["const"], {}, {"val": value}, op_name)
    t = Tensor(dtype, shape, op, 0, tname, value)
    op.outputs.append(t)
    return t


def _python(value):
    """A raw scalar or a literal as a plain Python value (arrays of rank >= 1 stay arrays)."""
    if isinstance(value, tuple):
        return value[1]
    v = value.value
    if isinstance(v, np.ndarray) and v.ndim == 0:
        return v.item()
    return v


def _param_names(spec: OpSpec) -> str:
    return ", ".join(p.name for p in spec.params)


def _describe(tok: Token) -> str:
    return "end of input" if tok.kind == EOF else repr(tok.text)


def parse_program(text: str, resolve_blob: BlobResolver | None = None, path: str | None = None) -> Program:
    """Parse MIL text into a Program; BLOBFILE constants are read through `resolve_blob`."""
    if not isinstance(text, str):
        raise MILParseError(f"MIL text must be str, got {type(text).__name__}")
    return _Parser(Source(text, path), resolve_blob).parse_program()
