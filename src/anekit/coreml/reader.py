"""A Core ML ML-program protobuf (Model.mlProgram) -> an anekit Program.

Each Core ML op becomes an anekit Op of the same declaration: arguments bound by parameter
name, constants as const ops (inline values, or weight.bin blobs read through `Weights`),
declared defaults materialized as named consts the way anekit's builder does, and the output
types checked against what anekit's shape rule computes, so a program that loads is one the
simulator, checker and cost model understand. Ops anekit has no declaration for, and nested
blocks (control flow), are refused with UnsupportedOpError naming the op and its position.
"""
from __future__ import annotations

from ..errors import AnekitError, ModelFormatError, UnsupportedOpError
from ..ir.builder import bind, make_const
from ..ir.graph import Function, Op, Program, Tensor
from ..ir.spec import REGISTRY
from . import mapping, opsets, shapes as flex, values

INPUT_DTYPES = ("fp16", "fp32", "int32", "bool")


def read_program(model, mil_pb2, weights, function: str | None = None, source: str = "model",
                 shapes: dict | None = None) -> Program:
    """The ML program in Model proto `model`; `function` picks one function (default: all,
    the model's default function first); `shapes` pins flexible inputs ({name: shape})."""
    kind = model.WhichOneof("Type")
    if kind != "mlProgram":
        raise ModelFormatError(f"{source}: a {kind or 'empty'} model; only ML programs (mlprogram) can be loaded")
    prog = model.mlProgram
    names = list(prog.functions.keys())
    if not names:
        raise ModelFormatError(f"{source}: the ML program has no functions")
    default = model.description.defaultFunctionName or ("main" if "main" in names else sorted(names)[0])
    if default not in names:
        raise ModelFormatError(f"{source}: default function '{default}' is not among {sorted(names)}")
    chosen = choose_functions(sorted(names), function, default, source)
    pins = flex.normalize(shapes, source)
    allowed = flex.declared(model.description)
    flex.unused(pins, {nvt.name for n in chosen for nvt in prog.functions[n].inputs}, source)
    fns = {n: FunctionReader(mil_pb2, weights, n, prog.functions[n], source, pins, allowed).read() for n in chosen}
    version, dialect = opsets.dialect_for(fns[chosen[0]].opset)
    return Program(fns, version=version, attributes=_program_attributes(mil_pb2, prog, source), dialect=dialect)


def choose_functions(names: list[str], function: str | None, default: str, source: str) -> list[str]:
    """Which functions to load, in order: `function` alone when given; otherwise all, the
    default first, except that the default is loaded alone when another function is named
    "main" (Program.main picks a function by that name, so it would shadow the default)."""
    if function is not None:
        if function not in names:
            raise ModelFormatError(f"{source}: no function '{function}' (functions: {', '.join(names)})")
        return [function]
    if default != "main" and "main" in names:
        return [default]
    return [default] + [n for n in names if n != default]


def _program_attributes(mil_pb2, prog, source: str) -> dict:
    out = {}
    info = prog.attributes.get("buildInfo") if "buildInfo" in prog.attributes else None
    if info is not None and info.immediateValue.WhichOneof("value") == "dictionary":
        pairs = {}
        for kv in info.immediateValue.dictionary.values:
            try:
                k = values.decode_immediate(mil_pb2, kv.key, f"{source}: buildInfo key")
                v = values.decode_immediate(mil_pb2, kv.value, f"{source}: buildInfo value")
            except AnekitError:
                continue            # build metadata is informational; a bad entry is skipped
            if isinstance(k, str) and isinstance(v, str):
                pairs[k] = v
        out["buildInfo"] = pairs
    return out


def _accepts(spec, p, dtype: str) -> bool:
    if p.dtypes == "T":
        return dtype in spec.T
    if p.dtypes is None:
        return True
    return dtype == p.dtypes if isinstance(p.dtypes, str) else dtype in p.dtypes


class FunctionReader:
    """Reads one function of the program into anekit ops, in file order."""

    def __init__(self, mil_pb2, weights, name: str, fn, source: str, pins=None, allowed=None):
        self.pb, self.weights, self.name, self.fn = mil_pb2, weights, name, fn
        self.pins, self.allowed = pins or {}, allowed or {}    # flexible shapes: the user's, the model's
        self.where = f"{source}: function '{name}'"
        self.env: dict[str, Tensor] = {}
        self.ops: list[Op] = []
        self.used_names: set[str] = set()
        self.next_suffix: dict[str, int] = {}
        self.states: set[int] = set()      # ids of state inputs
        self.widened: dict[int, Tensor] = {}   # id of a narrow-int const -> its int32 copy

    def read(self) -> Function:
        tag = opsets.tag_for(self.fn.opset, self.where)
        if self.fn.opset not in self.fn.block_specializations:
            raise ModelFormatError(f"{self.where}: no block for its opset '{self.fn.opset}'")
        block = self.fn.block_specializations[self.fn.opset]
        inputs = [self._input(nvt) for nvt in self.fn.inputs]
        if len(block.inputs):
            raise ModelFormatError(f"{self.where}: the function body block declares its own inputs")
        for index, op in enumerate(block.operations):
            self._op(index, op)
        if not len(block.outputs):
            raise ModelFormatError(f"{self.where}: declares no outputs")
        outputs, listed = [], set()
        for out in block.outputs:
            if out not in self.env:
                raise ModelFormatError(f"{self.where}: output '{out}' is never computed")
            t = self.env[out]
            if id(t) in self.states:
                raise ModelFormatError(f"{self.where}: output '{out}' is a state, not a tensor")
            if id(t) in listed:
                raise ModelFormatError(f"{self.where}: output '{out}' is listed twice")
            outputs.append(t)
            listed.add(id(t))
        states = tuple(t.name for t in inputs if id(t) in self.states)
        return Function(self.name, inputs, self.ops, outputs, opset=tag,
                        states=states)

    # --- inputs ----------------------------------------------------------------------------

    def _define(self, name: str, t: Tensor, where: str) -> None:
        if not name:
            raise ModelFormatError(f"{where}: a value without a name")
        if name in self.env:
            raise ModelFormatError(f"{where}: '{name}' is defined twice")
        self.env[name] = t

    def _input(self, nvt) -> Tensor:
        where = f"{self.where} input '{nvt.name}'"
        vt = nvt.type
        state = vt.WhichOneof("type") == "stateType"
        if state:
            vt = vt.stateType.wrappedType
        dtype, shape = values.tensor_type(self.pb, vt, where, flexible=True)
        shape = flex.pin(nvt.name, shape, self.pins.get(nvt.name), self.allowed.get(nvt.name), where)
        if dtype not in INPUT_DTYPES:
            raise ModelFormatError(f"{where}: dtype {dtype} is not a supported input dtype ({', '.join(INPUT_DTYPES)})")
        if any(s <= 0 for s in shape):
            raise ModelFormatError(f"{where}: shape {list(shape)} must be positive")
        t = Tensor(dtype, shape, name=nvt.name)
        if state:
            self.states.add(id(t))
        self._define(nvt.name, t, where)
        return t

    # --- ops ------------------------------------------------------------------------------

    def _op_name(self, op, index: int) -> str:
        name = None
        if "name" in op.attributes:
            try:
                v = values.decode_immediate(self.pb, op.attributes["name"], f"{self.where} op {index}")
                name = v if isinstance(v, str) else None
            except AnekitError:
                name = None
        name = name or (op.outputs[0].name if len(op.outputs) else f"{op.type}_{index}")
        return self._unique(name, lambda n: n in self.used_names)

    def _op(self, index: int, op) -> None:
        label = op.outputs[0].name if len(op.outputs) else (op.type or "?")
        where = f"{self.where} op {index} ('{label}', type '{op.type}')"
        if len(op.blocks):
            raise UnsupportedOpError(f"{where}: ops with nested blocks (control flow) are not supported")
        spec = REGISTRY.get(op.type)
        if spec is None:
            raise UnsupportedOpError(f"{where}: op type '{op.type}' is not supported by anekit "
                                     f"(no declaration, so the simulator cannot execute it)")
        name = self._op_name(op, index)
        if op.type == "const":
            self._const(op, name, where)
            return
        inputs, attrs = self._arguments(op, spec, name, where)
        try:
            bound = bind(spec, inputs, attrs)
        except AnekitError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        for pname in bound.defaulted:   # declared defaults become named consts, as the builder makes them
            c = bound.inputs[pname]
            c.name = c.op.name = self._fresh(f"{name}_{pname}")
            self.ops.append(c.op)
        outs = bound.outputs
        if len(outs) != len(op.outputs):
            raise ModelFormatError(f"{where}: declares {len(op.outputs)} outputs, '{op.type}' produces {len(outs)}")
        node = Op(spec, bound.inputs, bound.attrs, name)
        for i, (nvt, (dtype, shape)) in enumerate(zip(op.outputs, outs)):
            declared = values.tensor_type(self.pb, nvt.type, f"{where} output '{nvt.name}'", flexible=True)
            declared = (mapping.widened(declared[0]), declared[1])
            if declared[0] != dtype or not flex.fits(declared[1], shape):   # flexible dims follow the pinned inputs
                spelled = ["?" if d is None else d for d in declared[1]]
                raise ModelFormatError(f"{where}: output '{nvt.name}' is declared {declared[0]}{spelled} "
                                       f"but '{op.type}' computes {dtype}{list(shape)}")
            t = Tensor(dtype, shape, node, i, nvt.name)
            node.outputs.append(t)
            self._define(nvt.name, t, where)
        self.ops.append(node)

    def _arguments(self, op, spec, name: str, where: str) -> tuple[dict, dict]:
        """(op inputs, block attributes) from the op's bindings."""
        inputs, attrs = {}, {}
        for pname in op.inputs:
            p = spec.param(pname)
            bound = tuple(self._binding(b, f"{where} argument '{pname}'", f"{name}_{pname}")
                          for b in op.inputs[pname].arguments)
            if p is None:
                if mapping.ignorable(op.type, pname, bound[0].const if len(bound) == 1 else None):
                    continue
                raise UnsupportedOpError(f"{where}: argument '{pname}' is not supported by anekit's '{op.type}' "
                                         f"(parameters: {', '.join(q.name for q in spec.params)})")
            if not bound:
                raise ModelFormatError(f"{where}: argument '{pname}' binds no value")
            if p.kind in ("tensor", "tensors"):
                bound = tuple(self._widen(spec, p, t, where) for t in bound)
            if p.kind == "tensors":
                inputs[pname] = bound
                continue
            if len(bound) != 1:
                raise ModelFormatError(f"{where}: argument '{pname}' binds {len(bound)} values, expected one")
            t = bound[0]
            if (id(t) in self.states) != (spec.state_param == pname):
                state_ops = ", ".join(n for n, s in REGISTRY.items() if s.state_param)
                raise ModelFormatError(f"{where}: argument '{pname}' is '{t.name}': states go only to "
                                       f"the state argument of {state_ops}, and nothing else does")
            if p.kind == "tensor":
                inputs[pname] = t
                continue
            if t.const is None:
                raise ModelFormatError(f"{where}: argument '{pname}' must be a compile-time constant, "
                                       f"but '{t.name}' is computed")
            replaced = mapping.dtype_argument(op.type, pname, t.const)
            if replaced is not t.const:
                t = self._new_const(replaced, "string", f"{name}_{pname}")
            if p.kind == "attr":
                attrs[pname] = t.const
            else:
                inputs[pname] = t
        for key in op.attributes:
            p = spec.param(key) if key != "name" else None
            if p is not None and p.kind == "attr":
                attrs[key] = self._attribute(op.attributes[key], f"{where} attribute '{key}'")
        return inputs, attrs

    def _widen(self, spec, p, t: Tensor, where: str) -> Tensor:
        """A narrow-integer constant as int32 where the parameter does not take its dtype."""
        if t.dtype not in mapping.NARROW_INTS or _accepts(spec, p, t.dtype):
            return t
        if t.const is None:     # computed narrow values were already retyped int32
            raise ModelFormatError(f"{where}: argument '{p.name}' has dtype {t.dtype}")
        key = id(t)
        if key not in self.widened:
            self.widened[key] = self._new_const(t.const.astype("int32"), "int32", f"{t.name}_int32")
        return self.widened[key]

    def _new_const(self, value, dtype: str, base: str) -> Tensor:
        c = make_const(value, dtype, name=self._fresh(base))
        c.name = c.op.name
        self.ops.append(c.op)
        return c

    def _fresh(self, base: str) -> str:
        return self._unique(base, lambda n: n in self.used_names or n in self.env)

    def _unique(self, base: str, taken) -> str:
        """`base`, else `base_<i>` for the first free i; the next i to try is remembered per
        base, so 100k ops sharing one name cost linear time, not quadratic."""
        i = self.next_suffix.get(base, 0)
        name = base if i == 0 else f"{base}_{i}"
        while taken(name):
            i += 1
            name = f"{base}_{i}"
        self.next_suffix[base] = i + 1
        self.used_names.add(name)
        return name

    def _binding(self, b, where: str, const_name: str) -> Tensor:
        kind = b.WhichOneof("binding")
        if kind == "name":
            if b.name not in self.env:
                raise ModelFormatError(f"{where}: '{b.name}' is used before it is defined")
            return self.env[b.name]
        if kind == "value":     # an inline literal: becomes a const op of its own
            c = self._make_const(b.value, self._fresh(const_name), where)
            return c
        raise ModelFormatError(f"{where}: an empty argument binding")

    # --- constants ------------------------------------------------------------------------

    def _const(self, op, name: str, where: str) -> None:
        if len(op.outputs) != 1:
            raise ModelFormatError(f"{where}: a const must have one output, has {len(op.outputs)}")
        if "val" not in op.attributes:
            raise ModelFormatError(f"{where}: const without a 'val' attribute")
        if len(op.inputs):
            raise ModelFormatError(f"{where}: const takes no arguments")
        out = op.outputs[0]
        t = self._make_const(op.attributes["val"], name, where)
        declared = values.tensor_type(self.pb, out.type, f"{where} output")
        if declared != (t.dtype, t.shape):
            raise ModelFormatError(f"{where}: output is declared {declared[0]}{list(declared[1])} but its value "
                                   f"is {t.dtype}{list(t.shape)}")
        t.name = out.name
        self._define(out.name, t, where)

    def _decode(self, value, where: str):
        """(array or str, dtype) of an inline or weight.bin Value."""
        kind = value.WhichOneof("value")
        if kind == "immediateValue":
            arr = values.decode_immediate(self.pb, value, where)
            return arr, "string" if isinstance(arr, str) else values.tensor_type(self.pb, value.type, where)[0]
        if kind == "blobFileValue":
            dtype, shape = values.tensor_type(self.pb, value.type, where)
            bf = value.blobFileValue
            return self.weights.read(bf.fileName, int(bf.offset), dtype, shape, where), dtype
        raise ModelFormatError(f"{where}: a value with neither inline data nor a weight reference")

    def _attribute(self, value, where: str):
        """An op attribute (the iOS 16 constexpr ops keep their data in attributes)."""
        return self._decode(value, where)[0]

    def _make_const(self, value, name: str, where: str) -> Tensor:
        arr, dtype = self._decode(value, where)
        try:
            t = make_const(arr, dtype, name=name, copy=False)   # weight.bin views stay views
        except AnekitError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        t.name = name
        self.ops.append(t.op)
        return t
