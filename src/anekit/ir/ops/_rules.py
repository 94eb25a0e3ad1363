"""Shape-rule helpers shared by the op declarations."""
from __future__ import annotations

from ..spec import Args


def broadcast(a: Args, *names: str) -> tuple[int, ...]:
    """numpy / MIL broadcasting of the named tensor arguments."""
    return broadcast_shapes(a, names[-1], *(getattr(a, n).shape for n in names))


def broadcast_shapes(a: Args, arg: str, *shapes) -> tuple[int, ...]:
    """numpy broadcasting of shapes; a failure is reported against argument `arg`."""
    rank = max(len(s) for s in shapes)
    out = []
    for i in range(rank):
        dims = {s[i - rank + len(s)] for s in shapes if i - rank + len(s) >= 0} - {1}
        if len(dims) > 1:
            raise a.fail(arg, "shapes " + " and ".join(str(list(s)) for s in shapes) + " do not broadcast")
        out.append(dims.pop() if dims else 1)
    return tuple(out)


def axis(a: Args, arg: str, value: int, rank: int, extra: int = 0) -> int:
    """Normalize a possibly negative axis against rank (+extra for ops that add an axis)."""
    n = rank + extra
    if not -n <= value < n:
        raise a.fail(arg, f"axis {value} is out of range for rank {rank}")
    return value % n


def axes(a: Args, arg: str, values, rank: int) -> tuple[int, ...]:
    out = tuple(axis(a, arg, v, rank) for v in values)
    if len(set(out)) != len(out):
        raise a.fail(arg, f"repeated axis in {list(values)}")
    return out


def spatial_default(value):
    """A default of `value` per spatial axis of `x` (for strides, dilations, kernel sizes)."""
    return lambda a: (value,) * max(a.x.rank - 2, 0)


def pad_default(a: Args):
    return (0,) * (2 * max(a.x.rank - 2, 0))


def window_out(a: Args, size: int, k: int, stride: int, dil: int, pad_type: str, pb: int, pe: int,
               ceil_mode: bool = False) -> int:
    """Output length of a conv/pool window along one spatial axis (MIL conv/pool rules)."""
    eff = dil * (k - 1) + 1
    if pad_type == "same" or pad_type == "same_lower":
        return -(-size // stride)
    if pad_type == "valid":
        pb = pe = 0
    span = size + pb + pe - eff
    if span < 0:
        raise a.fail("x", f"spatial size {size} (padded {size + pb + pe}) is smaller than the window {eff}")
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def check_spatial(a: Args, names: tuple[str, ...], n: int):
    """Per-spatial-axis arguments: the right count, pads >= 0, strides/dilations/kernels >= 1."""
    for name in names:
        v = getattr(a, name)
        if v is None:
            continue
        want = 2 * n if name == "pad" else n
        if len(v) != want:
            raise a.fail(name, f"needs {want} values for {n} spatial axes, got {list(v)}")
        least = 0 if name == "pad" else 1
        if any(x < least for x in v):
            raise a.fail(name, f"values must be >= {least}, got {list(v)}")
