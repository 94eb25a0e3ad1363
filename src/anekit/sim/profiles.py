"""Numerics profiles: what the simulator models, as data, per ANE family.

Every behaviour that differs between chips is a field here, never a constant in a kernel.
Values come from the ANE guide (arXiv 2606.22283) ch. 3 "Numerics" and its constants table
(tbl:c3-constants), ch. 20 "Datapath and MAC geometry", and brief §5; docs/numerics.md
explains each field and lists what is not modelled.

    profile_for("m1")       # by chip or compiler name, via anekit.targets
    profile_for("exact")    # float32 reference semantics (EXACT)
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import TargetError
from .tables import TableSpec


@dataclass(frozen=True)
class NumericsProfile:
    name: str
    family: str | None = None          # anekit.targets family key; None for EXACT
    description: str = ""
    # Storage: every float op output rounds to fp16, half to even (ch. 3 "fp16 datapath").
    fp16_storage: bool = True
    # The engine never produces NaN: NaN inputs become +inf, indeterminate forms +0 (ch. 3).
    nan_inputs_to_inf: bool = True
    indeterminate_to_zero: bool = True
    # Zeros lose their sign before the reciprocal path: 1/(-0) = rsqrt(-0) = +inf (ch. 3).
    unsigned_zero_reciprocal: bool = True
    log_of_zero: float | None = -45440.0   # log(+0) sentinel (ch. 3); None: IEEE -inf
    # Activation tables that collapse +inf to +0 (ch. 3: softplus, softsign).
    inf_collapse: tuple[str, ...] = ("softplus", "softsign")
    # MAC: lanes of fp16 products reduce in tiles of `mac_tile_lanes` (0: no tile stage); each
    # in-tile add rounds to `mac_tile_guard_bits` below the fp16 grid of its larger operand;
    # tiles sum in a float32 accumulator (ch. 3 "Wide accumulator", ch. 20 radix-4).
    mac_tile_lanes: int = 4
    mac_tile_guard_bits: int = 1
    mac_round_products: bool = True        # "the fp16 multiply runs" before accumulation
    # A matmul/conv output row of N outputs over K lanes runs the exact lane/tile emulation
    # when N * K is at most this; longer rows take the fast route (the exact sum of the fp16
    # products rounded to float32, then fp16: the wide accumulator without the product and
    # in-tile roundings). Per row, never per call, so a row's bits do not depend on the batch
    # (ch. 3 "Determinism"). 2048 keeps dot products up to K = 2048 equal to mul + reduce_sum
    # and bounds the lane work of an attention score matmul (M = N keys) by heads * 2048**2 / K.
    tile_emulation_max_products: int = 1 << 11
    mac_output_ceiling: float | None = 32768.0   # 2**15: matmul, linear, multi-tap conv
    mac_flush_subnormals: bool = False           # M1 flushes subnormals inside the MAC
    width_slice_gain: float = 1.0                # crop gain on width slices with an offset
    # Activation tables (ch. 3 "Activation functions"): the engine's values match the
    # fp16-rounded exact function to about half an ulp, so that is the model; on top of it
    # only what was measured, where it was measured: the sigmoid domain clamp
    # (tbl:c3-constants) and the gelu and swish origin biases, measured at x = 0 only.
    activation_tables: bool = True
    sigmoid_domain: tuple[float, float] | None = (-9.938, 8.320)
    gelu_origin_bias: float = -0.000543          # gelu table at x = 0 (ch. 3)
    silu_origin_bias: float = -0.001259          # swish table at x = 0 (ch. 3)
    # Half-width over which an origin bias tapers linearly to zero, as a bias on the origin
    # knot of a piecewise-linear table would; 0 keeps it at x = 0, the one measured point
    # (the knot spacing of these tables is not published).
    origin_bias_width: float = 0.0
    # Optional 33-knot piecewise-linear tables (tables.py) for studies of the table mechanism
    # (ch. 3, ch. 25); None (the default) evaluates the rounded exact function.
    sigmoid_table: TableSpec | None = None
    gelu_table: TableSpec | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def exact(self) -> bool:
        return not self.fp16_storage


EXACT = NumericsProfile(
    name="exact", description="float32 compute, the reference semantics of each MIL op",
    fp16_storage=False, nan_inputs_to_inf=False, indeterminate_to_zero=False,
    unsigned_zero_reciprocal=False, log_of_zero=None, inf_collapse=(), mac_tile_lanes=0,
    mac_round_products=False, tile_emulation_max_products=0, mac_output_ceiling=None,
    activation_tables=False, sigmoid_domain=None, gelu_origin_bias=0.0, silu_origin_bias=0.0)

_ANE = NumericsProfile(name="ane")

FAMILY_PROFILES: dict[str, NumericsProfile] = {
    "h11": replace(_ANE, name="h11", family="h11", description="pre-A13 engines (A11, A12)",
                   notes=("numerics not measured on this family; M1 behaviour assumed except the "
                          "MAC subnormal flush",)),
    "h13": replace(_ANE, name="h13", family="h13", description="A13 / M1 family (the guide's measured part)",
                   mac_flush_subnormals=True),
    "h14": replace(_ANE, name="h14", family="h14", description="A14 / M2 family",
                   notes=("MAC subnormal flush not measured on M2-M4; modelled as preserved",)),
    "h15": replace(_ANE, name="h15", family="h15", description="A15 / M3 family",
                   notes=("width-slice crop gain fixed from A15 on",)),
    "h16": replace(_ANE, name="h16", family="h16", description="A16 and later (M4, M5, A17, A18)",
                   notes=("M5 preserves subnormals in the MAC",)),
}
# Families outside silicon generations share the newest engine's behaviour.
FAMILY_PROFILES["m11"] = replace(FAMILY_PROFILES["h16"], name="m11", family="m11",
                                 description="small embedded engine (A16-class features)")
FAMILY_PROFILES["ref"] = replace(FAMILY_PROFILES["h16"], name="ref", family="ref",
                                 description="reference validation profiles (not silicon)")

WIDTH_SLICE_GAIN = 16.0   # the crop-DMA gain, ch. 3 tbl:c3-constants (4094 x 16 = 65504)


def _width_slice_gains(profiles: dict) -> dict:
    """Which families saturate width slices is a target feature (anekit.targets, guide ch. 3
    and 35: up to A14/M2); the simulator reads it from there rather than keeping a second list."""
    from .. import targets
    fams = targets.families()
    return {k: replace(p, width_slice_gain=WIDTH_SLICE_GAIN if fams[k].features.width_slice_saturates else 1.0)
            if k in fams else p for k, p in profiles.items()}


FAMILY_PROFILES = _width_slice_gains(FAMILY_PROFILES)


def profile_for(target=None) -> NumericsProfile:
    """The numerics profile for a chip or compiler name ("m1", "m4max", "h16g"), "exact",
    a family key ("h13"), or a NumericsProfile (returned as is). None means "m1"."""
    if isinstance(target, NumericsProfile):
        return target
    if target is None:
        target = "m1"
    if not isinstance(target, str):
        raise TargetError(f"numerics profile: expected a chip or compiler name, got {target!r}")
    if target.strip().lower() == "exact":
        return EXACT
    from .. import targets
    family = targets.get(target).family
    try:
        return FAMILY_PROFILES[family]
    except KeyError:
        raise TargetError(f"no numerics profile for family '{family}' (target '{target}')") from None
