"""Runs of elementwise ops planned, once per Simulator, into one compiled call each.

A simulator step costs about 10 us of dispatch (argument binding, a numpy or numba call, the
storage rounding) whatever its size, and an optimizer update or a norm's backward is mostly
small elementwise ops. `plan` gathers them into regions: each region is one call of the tape
kernel (sim/_compiled_tape.py), which runs every member op block by block of elements,
rounding each op's result exactly as the op-by-op path does, and writes out only the values
something outside the region reads. The region runs where its first member stood; a later
op joins it only when every operand it reads is computed by then (by a member, or before
the region), so moving it earlier changes nothing (the kernels involved are pure).

Without the compiled kernels (numba missing, ANEKIT_NO_JIT=1, compiled.set_enabled(False)),
or when an operand is not what planning saw, a region runs its members one by one through
their ordinary kernels: the same bits, slower.
"""
from __future__ import annotations

import ctypes
import importlib
import math

import numpy as np

from . import compiled
from .fp16 import F32

_COPY = 5                                    # the tape's copy row (only with _EXACT_STORED)
_ROUND_CODES = (compiled.ADD, compiled.SUB, compiled.MUL, compiled.DIV, compiled.SQRT)   # elementwise_round's
_SCRATCH, _ARRAY, _SCALAR, _BROADCAST = 0, 1, 2, 3   # operand kinds (sim/_compiled_tape.py)
_EXACT, _CHIP, _CHIP_UNSIGNED_ZERO, _EXACT_STORED = 0, 1, 2, 3  # modes
_WIDTH = 1024                                # elements per block: the live scratch rows (a few, reused) stay in L1
_MIN_EXACT = 3                               # the shortest run worth a tape call in exact numerics

# A writable array's data address through ctypes (about 4x faster than ndarray.ctypes.data).
_addressof, _as_bytes = ctypes.addressof, ctypes.c_char.from_buffer


def _build_tape():
    tape = importlib.import_module("anekit.sim._compiled_tape")
    tape.warm_up()           # compiled (or loaded from numba's cache) here, not inside a run
    return tape.run


tape_kernel = compiled.LazyKernel("elementwise tape kernel", _build_tape)


def _broadcast(shape, out) -> tuple[int, int] | None:
    """How an operand of `shape` broadcasts to `out`, as (r, m): output element j reads
    operand element (j // r) % m. (0, 0) when it is of the output's size or of one element
    (the plain kinds); None when its kept axes are not one contiguous block of `out`."""
    if len(shape) > len(out):
        return None
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    if any(s != o and s != 1 for s, o in zip(padded, out)):
        return None                      # not numpy-broadcastable to out
    size = math.prod(shape)
    if size == math.prod(out) or size == 1:
        return (0, 0)
    kept = [i for i, (s, o) in enumerate(zip(padded, out)) if o != 1 and s == o]
    if any(padded[i] != 1 for i in range(kept[0], kept[-1] + 1) if i not in kept) \
            or any(out[i] != 1 for i in range(kept[0], kept[-1] + 1) if i not in kept):
        return None          # a broadcast axis between kept ones
    return math.prod(out[kept[-1] + 1:]), size


def _fusable(step, consts: dict):
    """(op code, mode, operand slots, their broadcasts) when `step` may run on the tape: the
    kernel declares its tape form (sim/registry.py, `tape=`), with one float output that the executor stores as computed
    (exact numerics) or rounds to fp16 with the NaN rule that makes NaN +0 (a chip profile: no
    NaN payload can show), float operands each of the output's shape, of one element, or
    broadcast along outer and inner axes (constants: float32 C-contiguous arrays, as folding
    leaves them), or a const parameter (inverse's epsilon): one value, nx.const(value), which
    is added to `consts` under the key ("const", its bits), the slot it is read from."""
    op, nx = step.call.op, step.call.nx
    entry = step.kernel.tape
    if entry is None or len(step.fin) != 1 or step.fin[0][2] != "float_round":
        return None
    if nx.fp16:
        if not nx.profile.indeterminate_to_zero:
            return None
        mode = _CHIP_UNSIGNED_ZERO if nx.profile.unsigned_zero_reciprocal else _CHIP
    else:
        mode = _EXACT
    out = tuple(step.fin[0][1].shape)
    slots, layouts = [], []
    for name in entry[1]:
        if name not in step.tensors:
            key = _const_operand(nx, step.consts.get(name), consts)
            if key is None:
                return None
            slots.append(key)
            layouts.append((0, 0))
            continue
        t, ref = op.inputs.get(name), step.tensors.get(name)
        if t is None or isinstance(t, tuple) or not isinstance(ref, int) or t.dtype not in ("fp16", "fp32"):
            return None
        layout = _broadcast(tuple(t.shape), out)
        if layout is None:
            return None
        if ref in consts:
            c = consts[ref]
            if type(c) is not np.ndarray or c.dtype != F32 or not c.flags.c_contiguous or c.size != math.prod(t.shape):
                return None
        slots.append(ref)
        layouts.append(layout)
    return entry[0], mode, slots, layouts


def _const_operand(nx, value, consts: dict):
    """The key under which `consts` holds a scalar const parameter as the engine holds it."""
    if value is None or np.ndim(value) != 0 or not np.isrealobj(value):
        return None
    try:
        v = np.array([nx.const(value)], F32)
    except (TypeError, ValueError):
        return None
    key = ("const", int(v.view(np.uint32)[0]))
    consts.setdefault(key, v)
    return key


class _Group:
    """Members of one element count, run together block by block."""
    __slots__ = ("n", "index", "members")

    def __init__(self, n: int, index: int):
        self.n, self.index, self.members = n, index, []


class Region:
    """Member steps run as one tape call. `reads`: the slots it reads from outside; `outputs`:
    the member outputs it writes (read elsewhere or function outputs); `internal`: the rest."""
    __slots__ = ("members", "start", "groups", "group_of", "reads", "outputs", "internal", "tape", "free",
                 "addrs", "dynamic", "out_specs", "rows", "width", "const_refs", "stores", "stored")

    def __init__(self, start: int):
        self.members: list = []
        self.start = start
        self.groups: list[_Group] = []
        self.group_of: dict = {}          # member output slot -> its group
        self.stores: tuple = ()           # outputs the tape leaves in stored form (exact numerics)
        self.stored = False               # whether the last run did (the compiled route ran)

    # --- planning -----------------------------------------------------------------------

    def admit(self, step, slots, producer: dict) -> bool:
        """Add `step` if everything it reads is ready where the region runs."""
        n = math.prod(step.fin[0][1].shape)
        deps = []
        for s in slots:
            if s in self.group_of:
                deps.append(self.group_of[s])
            elif producer.get(s, -1) >= self.start:
                return False          # computed after the region's start by a non-member
        group = next((g for g in reversed(self.groups) if g.n == n), None)
        if group is None or any(d.index > group.index for d in deps):
            group = _Group(n, len(self.groups))
            self.groups.append(group)
        group.members.append(step)
        self.members.append(step)
        self.group_of[step.fin[0][0]] = group
        return True

    def finish(self, plans: dict, readers: dict, keep: set, consts: dict, store16: frozenset = frozenset()) -> None:
        """Build the tape once every member is known. readers: slot -> ids of the steps that
        read it; keep: slots that must exist after the run (function outputs); store16: the
        fp16 function outputs, which an exact-numerics tape rounds as it writes them when no
        op reads them (Simulator.run_stored then takes them as they are)."""
        ids = {id(st) for st in self.members}
        materialise, copies = set(), set()
        for st in self.members:
            slot = st.fin[0][0]
            if any(r not in ids for r in readers.get(slot, ())):
                materialise.add(slot)
            elif slot in keep:
                # An fp16 output that members read too (exact numerics): they read the float32
                # value from scratch, and a copy row writes the output in stored form.
                stored_copy = plans[id(st)][1] == _EXACT and slot in store16 and readers.get(slot)
                (copies if stored_copy else materialise).add(slot)
            group = self.group_of[slot]
            for s in plans[id(st)][2]:       # read by a member of another group: through memory
                if s in self.group_of and self.group_of[s] is not group:
                    materialise.add(s)
        copies -= materialise
        ext: dict[int, int] = {}            # outside slot -> address index
        for st in self.members:
            for s in plans[id(st)][2]:
                if s not in self.group_of and s not in ext:
                    ext[s] = len(ext)
        self.reads = tuple(s for s in ext if type(s) is not tuple)     # (not the const parameters' keys)
        outs = [st.fin[0] for st in self.members if st.fin[0][0] in materialise or st.fin[0][0] in copies]
        out_index = {slot: len(ext) + i for i, (slot, _, _) in enumerate(outs)}
        self.outputs = tuple(slot for slot, _, _ in outs)
        self.out_specs = tuple((out_index[slot], slot, tuple(t.shape)) for slot, t, _ in outs)
        self.internal = tuple(st.fin[0][0] for st in self.members if st.fin[0][0] not in out_index)
        sizes = {}
        for st in self.members:
            for name, s in zip(st.kernel.tape[1], plans[id(st)][2]):
                sizes[s] = consts[s].size if type(s) is tuple else math.prod(st.call.op.inputs[name].shape)
        self.addrs = np.zeros(len(ext) + len(outs), np.int64)
        self.const_refs = tuple(consts[s] for s in ext if s in consts)     # kept alive with the plan
        for s, j in ext.items():
            if s in consts:
                self.addrs[j] = consts[s].ctypes.data
        self.dynamic = tuple((j, s, sizes[s]) for s, j in ext.items() if s not in consts)
        rows, tape, group_rows, stores = {}, [], [], []
        for g in self.groups:
            first = len(tape)
            # Scratch rows by liveness: a value's row is free again once the last member that
            # reads it has run, so a group needs rows for its live values only, not one per
            # member (a smaller footprint, hence wider blocks in cache). A member's result
            # never shares a row with its own operands: it gets its row before they are freed.
            last = {}
            for j, st in enumerate(g.members):
                last.setdefault(st.fin[0][0], j)
                for s in plans[id(st)][2]:
                    last[s] = j
            free, used = [], 0
            for j, st in enumerate(g.members):
                code, mode, slots, layouts = plans[id(st)]
                operands = []
                for s, (r, m) in zip(slots, layouts):
                    kind = _BROADCAST if r else _ARRAY if sizes[s] == g.n else _SCALAR
                    if s in ext:
                        operands += [kind, ext[s], r, m]
                    elif s in materialise:
                        operands += [kind, out_index[s], r, m]
                    else:
                        operands += [_SCRATCH, rows[s], 0, 0]
                slot = st.fin[0][0]
                if mode == _EXACT and slot in store16 and not readers.get(slot):
                    mode = _EXACT_STORED
                    stores.append(slot)
                if slot in materialise:
                    dest = [_ARRAY, out_index[slot]]
                else:
                    if free:
                        rows[slot] = free.pop()
                    else:
                        rows[slot] = used
                        used += 1
                    dest = [_SCRATCH, rows[slot]]
                tape.append([code, *operands, *dest, mode, int(mode in (_EXACT, _EXACT_STORED) and slot in materialise)])
                if slot in copies:
                    tape.append([_COPY, *dest, 0, 0, *dest, 0, 0, _ARRAY, out_index[slot], _EXACT_STORED, 1])
                    stores.append(slot)
                for s in {*slots, slot}:             # values whose last reader this member is
                    if last.get(s) == j and s in rows and s not in materialise and s not in ext:
                        free.append(rows[s])
            group_rows.append(used)
            g.members = [(first, len(tape))]      # only the tape range is needed from here on
        self.stores = tuple(stores)
        self.tape = np.array(tape, np.int64).reshape(-1, 13)
        self.groups = np.array([[g.n, *g.members[0]] for g in self.groups], np.int64)
        self.rows = max(group_rows) + 2                  # + the two broadcast fill rows
        self.width = max(1, min(_WIDTH, int(self.groups[:, 0].max())))
        self.group_of = None

    # --- running ------------------------------------------------------------------------

    def run(self, env, execute) -> None:
        """Run the region on `env`; `execute(step, env)` runs one member the ordinary way."""
        jit = tape_kernel()
        if jit is not None and self._run_compiled(jit, env):
            self.stored = True
            return
        self.stored = False
        for st in self.members:
            execute(st, env)
        for slot in self.internal:
            env[slot] = None

    def _run_compiled(self, jit, env) -> bool:
        addrs = self.addrs.copy()
        held = []
        for j, slot, size in self.dynamic:
            a = env[slot]
            if type(a) is not np.ndarray or a.dtype != F32 or a.size != size:
                return False           # not what planning saw: the kernels report or handle it
            flags = a.flags
            if not flags.c_contiguous:
                a = np.ascontiguousarray(a)
                held.append(a)
            if size:                   # (the tape reads nothing of an empty operand)
                addrs[j] = _addressof(_as_bytes(a)) if flags.writeable else a.ctypes.data
        for j, slot, shape in self.out_specs:
            out = env[slot] = np.empty(shape, F32)
            if out.size:
                addrs[j] = _addressof(_as_bytes(out))
        # An exact-numerics NaN: numba's operand order need not keep numpy's NaN payload, so
        # the members run again the ordinary way.
        return not jit(self.groups, self.tape, addrs, self.rows, self.width)


def _reads(st):
    for ref in st.tensors.values():
        yield from (ref if isinstance(ref, tuple) else (ref,)) if ref is not None else ()


def _sunk(steps: list, plans: dict, keep: set) -> list:
    """steps with each tape-fusable step whose one output has a single reader, itself
    fusable, moved to just before that reader (with whatever is moved to it in turn), so that
    the two share a region. A program lists an op where its inputs are ready, which can be
    far from its use: a decode step's `old_cache * keep` sits beside the cache read, its
    `+ new * onehot` after the projections, and the [heads, hd, T] product in between was
    written out and read back per cache. Values never change once computed (state ops
    rebind the state, they do not write into arrays), so running a step later changes
    nothing but where its result lives. plans: id(step) -> its _fusable result."""
    fusable = [plans[id(st)] is not None for st in steps]
    readers: dict[int, list[int]] = {}
    for j, st in enumerate(steps):
        for s in set(_reads(st)):
            readers.setdefault(s, []).append(j)
    moved: dict[int, list[int]] = {}
    for i, st in enumerate(steps):
        if not fusable[i] or len(st.outputs) != 1:
            continue
        slot = st.outputs[0][0]
        use = readers.get(slot, ())
        if slot not in keep and len(use) == 1 and fusable[use[0]] and use[0] > i + 1:
            moved.setdefault(use[0], []).append(i)
    if not moved:
        return steps
    placed = {i for group in moved.values() for i in group}
    order: list = []

    def emit(j: int) -> None:
        for i in moved.get(j, ()):
            emit(i)
        order.append(steps[j])

    for j in range(len(steps)):
        if j not in placed:
            emit(j)
    return order


def plan(steps: list, consts: dict, keep: set, store16: frozenset = frozenset()) -> list:
    """The execution units for `steps`: each step, or the Region that replaces a run of them
    (at its first member's place). store16: see Region.finish."""
    consts = dict(consts)                 # (plus the const parameters tape rows read: _fusable)
    plans = {id(st): _fusable(st, consts) for st in steps}
    steps = _sunk(steps, plans, keep)
    producer, readers = {}, {}
    for i, st in enumerate(steps):
        for slot, _ in st.outputs:
            producer[slot] = i
        for s in _reads(st):
            readers.setdefault(s, set()).add(id(st))
    regions, region = [], None
    for i, st in enumerate(steps):
        p = plans[id(st)]
        if p is None:
            continue
        if region is None or not region.admit(st, p[2], producer):
            region = Region(i)
            regions.append(region)
            region.admit(st, p[2], producer)
    first = {}
    for r in regions:
        code, mode, slots, layouts = plans[id(r.members[0])]
        # A call of the tape costs a few us more than a numpy op in exact numerics, and about
        # as much as compiled.elementwise_round with one op: short runs stay op by op there
        # (a lone chip op through elementwise_round, unless an operand broadcasts or
        # elementwise_round lacks its code: then a region of one).
        if len(r.members) < (_MIN_EXACT if mode == _EXACT else 2):
            if mode == _EXACT:
                continue
            if code in _ROUND_CODES and not any(rm[0] for rm in layouts):
                r.members[0].fused = (code, slots[0], slots[1], mode == _CHIP_UNSIGNED_ZERO)
                continue
        r.finish(plans, readers, keep, consts, store16)
        first[id(r.members[0])] = r
    regions = list(first.values())
    member = {id(st) for r in regions for st in r.members}
    return [first.get(id(st), st) for st in steps if id(st) in first or id(st) not in member]
