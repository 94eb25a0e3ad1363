"""numpy-style indexing of graph tensors, planned as one slice_by_index, then a squeeze for
integer indices and an expand_dims for None (numpy's newaxis)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError


@dataclass
class IndexPlan:
    begin: list[int]
    end: list[int]
    stride: list[int]
    begin_mask: list[bool]
    end_mask: list[bool]
    squeeze: list[int]        # axes (of the sliced tensor) that integer indices drop
    new_axes: list[int]       # output positions of None entries
    identity: bool            # the slice selects everything, in order


def plan(shape: tuple[int, ...], key) -> IndexPlan:
    """What `x[key]` selects from a tensor of `shape` (ints, slices, ..., None)."""
    key = key if isinstance(key, tuple) else (key,)
    if sum(k is Ellipsis for k in key) > 1:
        raise ShapeError("slice_by_index: an index can have only one '...'")
    used = sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > len(shape):
        raise ShapeError(f"slice_by_index: {used} indices for a tensor of rank {len(shape)} (shape {list(shape)})")
    rest = (slice(None),) * (len(shape) - used)
    dots = [i for i, k in enumerate(key) if k is Ellipsis]
    key = key[:dots[0]] + rest + key[dots[0] + 1:] if dots else key + rest
    p = IndexPlan([], [], [], [], [], [], [], True)
    axis, out_pos = 0, 0
    for k in key:
        if k is None:
            p.new_axes.append(out_pos)
            out_pos += 1
            continue
        n = shape[axis]
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer, slice)):
            raise ShapeError(f"slice_by_index: index {k!r} on axis {axis}: use ints, slices, '...' or None "
                             "(gather takes index tensors)")
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            if step > 0:
                b, e, bm, em = start, stop, False, False
            else:   # a reverse slice: an open end runs to the front of the axis
                b, e, bm, em = start, stop, False, k.stop is None or stop < 0
            if len(range(start, stop, step)) == 0:
                raise ShapeError(f"slice_by_index: {k} selects nothing from axis {axis} of size {n}")
            if (start, stop, step) != (0, n, 1):
                p.identity = False
            p.begin.append(b)
            p.end.append(0 if em else e)
            p.stride.append(step)
            p.begin_mask.append(bm)
            p.end_mask.append(em)
            out_pos += 1
        else:
            i = int(k)
            if not -n <= i < n:
                raise ShapeError(f"slice_by_index: index {i} is out of range for axis {axis} of size {n}")
            i %= n
            p.begin.append(i)
            p.end.append(i + 1)
            p.stride.append(1)
            p.begin_mask.append(False)
            p.end_mask.append(False)
            p.squeeze.append(axis)
            if n != 1:
                p.identity = False
        axis += 1
    return p
