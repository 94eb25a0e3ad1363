"""Control flow: `while_loop` and `cond`, with nested blocks (coremltools emits `while_loop`
for torch.nn.GRU and `cond` for a traced `if`).

Why nested blocks and not unrolling: Core ML runs these ops on the host as real loops and
branches (guide Appendix A: "no standalone code generation; unroll on the host"), and the
trip count of a converted loop may depend on data (a `less` against a computed length), so
an unrolled form would be a different program for some inputs. Carrying the blocks keeps one
program that runs for every input, and the op itself is what `ak.check` reports as leaving
the engine (the support table's `while_loop` / `cond` rows).

IR form: each block is an anekit `Function` held in the op's attribute of the same name
(`cond` / `body`, `true_block` / `false_block`), closed over its inputs: the loop variables
first (while_loop), then the op's `captures`, the outer values the blocks read, passed as
ordinary tensor inputs so every graph walk (dead-code removal, ranges, the simulator's
frees) sees the dependency. Constants an outer block defines are copied into the block (the
array is shared, not duplicated) so the block's simulator folds them as the outer one would.
Blocks are not parameters a user writes (`bind` takes literals only): the Core ML reader and
the MIL parser build these ops and call the shape rule with the blocks in `values`.
"""
from __future__ import annotations

from .. import intervals as iv
from ..builder import infer
from ..graph import Function, Op, Tensor, program
from ..spec import Param, attr, lookup, op, tensor

ANY = ("fp16", "fp32", "int32", "bool")


def _optional_tensors() -> Param:
    return Param("tensors", ANY, default=None)


def _block_types(a, arg: str, fn, want_inputs: list) -> list[tuple]:
    """Check a block's inputs against the values it is given; its output (dtype, shape)s."""
    if not isinstance(fn, Function):
        raise a.fail(arg, f"takes a block (a Function made with anekit.ir.ops.control.block), got "
                          f"{type(fn).__name__}; build the op with anekit.ir.ops.control.build")
    got = [(t.dtype, t.shape) for t in fn.inputs]
    want = [(t.dtype, t.shape) for t in want_inputs]
    if got != want:
        raise a.fail(arg, f"block '{fn.name}' takes {_spell(got)} but is given {_spell(want)}")
    return [(t.dtype, t.shape) for t in fn.outputs]


def _spell(types) -> str:
    return "(" + ", ".join(f"{d}{list(s)}" for d, s in types) + ")"


@op(kind="control", T=ANY, loop_vars=Param("tensors", ANY), captures=_optional_tensors(),
    cond=attr(None), body=attr(None), fp16_range=iv.unbounded)
def while_loop(a):
    """Repeat `body` on the loop variables while `cond` of them is true; returns their final
    values. Both blocks take (loop variables..., captures...); cond returns one bool, body the
    next loop variables, with the same dtypes and shapes."""
    caps = list(a.captures or ())
    ins = list(a.loop_vars) + caps
    cond = _block_types(a, "cond", a.cond, ins)
    if len(cond) != 1 or cond[0][0] != "bool" or len(cond[0][1]) > 1 or (cond[0][1] and cond[0][1][0] != 1):
        raise a.fail("cond", f"block '{a.cond.name}' must return one bool scalar, returns {_spell(cond)}")
    body = _block_types(a, "body", a.body, ins)
    state = [(t.dtype, t.shape) for t in a.loop_vars]
    if body != state:
        raise a.fail("body", f"block '{a.body.name}' returns {_spell(body)}, but the loop variables are "
                             f"{_spell(state)} (a loop whose values change type or shape is not supported)")
    return state


@op(kind="control", T=ANY, pred=tensor("bool"), captures=_optional_tensors(),
    true_block=attr(None), false_block=attr(None), fp16_range=iv.unbounded)
def cond(a):
    """`true_block` if pred else `false_block`, each taking the captures and returning values
    of the same dtypes and shapes. `pred` is one bool scalar."""
    if a.pred.size != 1:
        raise a.fail("pred", "must be one bool scalar")
    caps = list(a.captures or ())
    t = _block_types(a, "true_block", a.true_block, caps)
    f = _block_types(a, "false_block", a.false_block, caps)
    if t != f:
        raise a.fail("false_block", f"returns {_spell(f)}, the true block {_spell(t)}")
    return t


# No gradient rules: autodiff refuses a path through control flow, naming the op (unroll a
# loop, or use select for a branch, to train through it).


# --- building these ops from Python (the generic ak.<op> builder takes literals, not blocks) --

def block(name: str, inputs: list, outputs: list):
    """A closed block: a Function of graph tensors `inputs` (made with ak.input, in order,
    loop variables first, then captures) computing `outputs`. The graph is copied."""
    fn = program({f"{name}_out{i}": t for i, t in enumerate(outputs)}, name=name).main
    fn.name = name
    have = {t.name: t for t in fn.inputs}
    fn.inputs = [have.get(t.name) or Tensor(t.dtype, t.shape, name=t.name) for t in inputs]
    return fn


def build(op_type: str, inputs: dict, blocks: dict, name: str | None = None):
    """A while_loop / cond op from its tensor inputs and its blocks (Functions made with
    `block`); returns its outputs (a tuple when there are several)."""
    spec = lookup(op_type)
    outs = infer(spec, {**inputs, **blocks}, None)
    node = Op(spec, {p.name: inputs[p.name] for p in spec.params if p.name in inputs}, dict(blocks), name)
    node.outputs.extend(Tensor(d, s, node, i) for i, (d, s) in enumerate(outs))
    return node.outputs[0] if len(node.outputs) == 1 else tuple(node.outputs)
