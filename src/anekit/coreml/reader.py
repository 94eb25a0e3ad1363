"""A Core ML ML-program protobuf (Model.mlProgram) -> an anekit Program.

Each Core ML op becomes an anekit Op of the same declaration: arguments bound by parameter
name, constants as const ops (inline values, or weight.bin blobs read through `Weights`),
declared defaults materialized as named consts the way anekit's builder does, and the output
types checked against what anekit's shape rule computes, so a program that loads is one the
simulator, checker and cost model understand. Ops anekit has no declaration for are refused
with UnsupportedOpError naming the op and its position.

Control flow (`while_loop`, `cond`) keeps its nested blocks: each block becomes a closed
anekit Function whose inputs are its own block inputs and then the op's captures, the outer
values the blocks read (see ir/ops/control.py for why blocks and not unrolling).
"""
from __future__ import annotations

from ..errors import AnekitError, ModelFormatError, UnsupportedOpError
from ..ir.builder import bind, infer, make_const
from ..ir.graph import Function, Op, Program, Tensor
from ..ir.spec import REGISTRY
from . import mapping, opsets, shapes as flex, values

INPUT_DTYPES = ("fp16", "fp32", "int32", "bool")


class _Frame:
    """A block being read: its values and ops; for a nested block, the outer values its op
    captures (shared by the op's blocks) and this block's inputs standing for them."""

    def __init__(self, env: dict, ops: list, captures: dict | None):
        self.env, self.ops, self.captures = env, ops, captures
        self.inputs: dict[str, Tensor] = {}


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
        self.frames = [_Frame(self.env, self.ops, None)]   # the blocks being read, outermost first

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
        spec = REGISTRY.get(op.type)
        if spec is None:
            raise UnsupportedOpError(f"{where}: op type '{op.type}' is not supported by anekit "
                                     f"(no declaration, so the simulator cannot execute it)")
        if len(op.blocks) and spec.kind != "control":
            raise UnsupportedOpError(f"{where}: nested blocks are supported on while_loop and cond only")
        name = self._op_name(op, index)
        if spec.kind == "control":
            self._control(op, spec, name, where)
            return
        if op.type == "const":
            self._const(op, name, where)
            return
        if spec.older_arguments(list(op.inputs) + list(op.attributes)):
            inputs, attrs = self._older_inputs(op, spec, name, where), {}
        else:
            inputs, attrs = self._arguments(op, spec, name, where)
        try:
            bound = bind(spec, inputs, attrs)
        except AnekitError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        for pname in bound.defaulted:   # declared defaults become named consts, as the builder makes them
            c = bound.inputs[pname]
            c.name = c.op.name = self._fresh(f"{name}_{pname}")
            self.ops.append(c.op)
        self._finish_op(Op(spec, bound.inputs, bound.attrs, name), op, bound.outputs, where)

    def _finish_op(self, node: Op, op, outs: list, where: str) -> None:
        """Check the declared output types against the shape rule's, define the outputs, keep the op."""
        if len(outs) != len(op.outputs):
            raise ModelFormatError(f"{where}: declares {len(op.outputs)} outputs, '{op.type}' produces {len(outs)}")
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

    def _older_inputs(self, op, spec, name: str, where: str) -> dict:
        """The op's const inputs from its older spelling's attributes (ir/spec.py OlderForm:
        the iOS 16 constexpr_lut_to_dense of coremltools' iOS 16 and 17 programs)."""
        form, given = spec.older_form, {}
        for key in form.params:
            if key in op.attributes:
                given[key] = self._attribute(op.attributes[key], f"{where} attribute '{key}'")
            elif key in op.inputs and len(op.inputs[key].arguments) == 1:
                t = self._binding(op.inputs[key].arguments[0], f"{where} argument '{key}'", f"{name}_{key}")
                if t.const is None:
                    raise ModelFormatError(f"{where}: argument '{key}' must be a compile-time constant")
                given[key] = t.const
            else:
                raise ModelFormatError(f"{where}: the {form.dialect} form of {op.type} needs '{key}' "
                                       f"(it takes {', '.join(form.params)})")
        try:
            values = form.read(given)
        except AnekitError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        return {p: self._new_const(v, dtype, f"{name}_{p}") for p, (v, dtype) in values.items()}

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
            return self._lookup(b.name, where)
        if kind == "value":     # an inline literal: becomes a const op of its own
            c = self._make_const(b.value, self._fresh(const_name), where)
            return c
        raise ModelFormatError(f"{where}: an empty argument binding")

    # --- control flow: nested blocks -------------------------------------------------------

    def _lookup(self, name: str, where: str) -> Tensor:
        t = self._resolve(name, len(self.frames) - 1, where)
        if t is None:
            raise ModelFormatError(f"{where}: '{name}' is used before it is defined")
        return t

    def _resolve(self, name: str, level: int, where: str) -> Tensor | None:
        """`name` as block `level` sees it: its own value, else an outer one brought in (a
        constant is copied into the block sharing its array; anything else becomes a capture)."""
        f = self.frames[level]
        if name in f.env:
            return f.env[name]
        if level == 0:
            return None
        if name in f.inputs:
            return f.inputs[name]
        outer = self._resolve(name, level - 1, where)
        if outer is None:
            return None
        if id(outer) in self.states:
            raise UnsupportedOpError(f"{where}: a block reads the state '{name}'; states are read and "
                                     f"written in the function body only")
        if outer.op is not None and outer.op.spec.kind == "const":
            c = Op(outer.op.spec, {}, dict(outer.op.attrs), self._fresh(name))
            t = Tensor(outer.dtype, outer.shape, c, 0, name, outer.const)
            c.outputs.append(t)
            f.ops.append(c)
            f.env[name] = t
            return t
        f.captures.setdefault(name, outer)
        t = f.inputs[name] = Tensor(outer.dtype, outer.shape, name=name)
        return t

    def _control(self, op, spec, name: str, where: str) -> None:
        """while_loop (blocks cond, body over loop_vars) or cond (blocks true, false over pred)."""
        loop = spec.param("loop_vars") is not None
        main = "loop_vars" if loop else "pred"
        extra = [k for k in op.inputs if k != main]
        if extra:
            raise UnsupportedOpError(f"{where}: argument '{extra[0]}' is not supported by anekit's '{op.type}'")
        if main not in op.inputs or not len(op.inputs[main].arguments):
            raise ModelFormatError(f"{where}: missing argument '{main}'")
        args = tuple(self._widen(spec, spec.param(main), self._binding(b, f"{where} argument '{main}'",
                                                                       f"{name}_{main}"), where)
                     for b in op.inputs[main].arguments)
        if len(op.blocks) != 2:
            raise ModelFormatError(f"{where}: {op.type} needs 2 blocks, has {len(op.blocks)}")
        captures: dict[str, Tensor] = {}
        labels = ("cond", "body") if loop else ("true_block", "false_block")
        blocks = [self._block(b, f"{name}_{label}", captures, f"{where} block '{label}'")
                  for b, label in zip(op.blocks, labels)]
        caps = tuple(captures.values())
        for fn, cap_inputs in blocks:      # every block takes every capture, in one order
            fn.inputs += [cap_inputs.get(n) or Tensor(t.dtype, t.shape, name=n) for n, t in captures.items()]
        inputs = {main: args if loop else args[0]}
        if len(args) != 1 and not loop:
            raise ModelFormatError(f"{where}: 'pred' binds {len(args)} values, expected one")
        if caps:
            inputs["captures"] = caps
        attrs = {label: fn for label, (fn, _) in zip(labels, blocks)}
        try:
            outs = infer(spec, {**inputs, **attrs}, None)
        except AnekitError as e:
            raise ModelFormatError(f"{where}: {e}") from None
        self._finish_op(Op(spec, inputs, attrs, name), op, outs, where)

    def _block(self, block, fname: str, captures: dict, where: str) -> tuple[Function, dict]:
        """A nested block as a Function of its block inputs (capture inputs are added by the
        caller once every block of the op is read); also its capture inputs by name."""
        frame = _Frame({}, [], captures)
        outer_env, outer_ops = self.env, self.ops
        self.frames.append(frame)
        self.env, self.ops = frame.env, frame.ops
        try:
            inputs = []
            for nvt in block.inputs:
                dtype, shape = values.tensor_type(self.pb, nvt.type, f"{where} input '{nvt.name}'")
                t = Tensor(mapping.widened(dtype), shape, name=nvt.name)
                self._define(nvt.name, t, where)
                inputs.append(t)
            for index, inner in enumerate(block.operations):
                self._op(index, inner)
            if not len(block.outputs):
                raise ModelFormatError(f"{where}: declares no outputs")
            outputs = [self._lookup(out, f"{where} output") for out in block.outputs]
        finally:
            self.frames.pop()
            self.env, self.ops = outer_env, outer_ops
        return Function(fname, inputs, frame.ops, outputs), frame.inputs

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
