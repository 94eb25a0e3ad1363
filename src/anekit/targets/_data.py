"""Loads and validates data/targets.json once; builds the records."""
from __future__ import annotations

from functools import lru_cache

from ..errors import TargetError
from ._raw import raw
from .records import Chip, CompilerTarget, Family, Features, Limits

_LIMIT_FIELDS = tuple(f for f in Limits.__dataclass_fields__ if f != "sources")
_FEATURE_FIELDS = tuple(f for f in Features.__dataclass_fields__ if f != "sources")


def _cite(doc: dict, pair, where: str):
    """A [value, source key] pair -> (value, citation); anything else is a data error."""
    if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], str)):
        raise TargetError(f"targets.json: {where} must be [value, source key], got {pair!r}")
    if pair[1] not in doc["sources"]:
        raise TargetError(f"targets.json: {where} cites unknown source '{pair[1]}'")
    return pair[0], doc["sources"][pair[1]]


def _sourced(doc: dict, rec: dict, names, where: str) -> tuple[dict, dict]:
    values, cites = {}, {}
    for n in names:
        if n not in rec:
            raise TargetError(f"targets.json: {where} lacks '{n}'")
        values[n], cites[n] = _cite(doc, rec[n], f"{where}.{n}")
    return values, cites


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    doc = raw()
    out = {}
    for key, f in doc["families"].items():
        lv, lc = _sourced(doc, f["limits"], _LIMIT_FIELDS, f"families.{key}.limits")
        fv, fc = _sourced(doc, f["features"], _FEATURE_FIELDS, f"families.{key}.features")
        streams, ssrc = _cite(doc, f["streams"], f"families.{key}.streams")
        out[key] = Family(key, f["label"], tuple(f["targets"]), Limits(**lv, sources=lc),
                          Features(**fv, sources=fc), tuple(streams), ssrc, f["support_column"])
    return out


@lru_cache(maxsize=1)
def targets() -> dict[str, CompilerTarget]:
    doc = raw()
    fams = families()
    sold: dict[str, list[str]] = {}
    for c in doc["chips"]:
        sold.setdefault(c["compiler"][0].lower(), []).append(c["name"])
    out = {}
    for name, t in doc["targets"].items():
        if t["family"] not in fams:
            raise TargetError(f"targets.json: target {name} names unknown family '{t['family']}'")
        cores, cc = _cite(doc, t["ne_cores"], f"targets.{name}.ne_cores")
        cites = {"ne_cores": cc}
        runtime = None
        if t.get("runtime_arch"):
            runtime, cites["runtime_arch"] = _cite(doc, t["runtime_arch"], f"targets.{name}.runtime_arch")
        key = name.lower()
        out[key] = CompilerTarget(name, key, t["family"], int(cores), t["silicon"], runtime,
                                  tuple(sold.get(key, ())), t.get("representative_chip"), cites)
    return out


def _record(tgt: CompilerTarget, chip: dict | None) -> Chip:
    doc = raw()
    fam = families()[tgt.family]
    trec = doc["targets"][tgt.name]
    cites = dict(tgt.sources)
    vals: dict = {}
    for opt in ("working_set_bytes", "clock_ghz"):
        if opt in trec:
            vals[opt], cites[opt] = _cite(doc, trec[opt], f"targets.{tgt.name}.{opt}")
    if "working_set_bytes" not in vals:
        vals["working_set_bytes"] = fam.limits.working_set_bytes
        cites["working_set_bytes"] = fam.limits.source("working_set_bytes")
    vals.setdefault("clock_ghz", None)
    cv = {"marketed_ne_cores": None, "tops": None, "dram_gbs": None, "soc": None}
    name, note, dies = tgt.name, None, 1
    if chip is not None:
        name, note, dies = chip["name"], chip.get("note"), int(chip.get("dies", 1))
        for n in ("marketed_ne_cores", "tops", "dram_gbs", "compiler"):
            v, cites[n] = _cite(doc, chip[n], f"chips.{name}.{n}")
            if n != "compiler":
                cv[n] = v
        if chip.get("soc"):
            cv["soc"], cites["soc"] = _cite(doc, chip["soc"], f"chips.{name}.soc")
    return Chip(name=name, compiler=tgt.key, family=tgt.family, ne_cores=tgt.ne_cores, dies=dies,
                note=note, limits=fam.limits, features=fam.features, streams=fam.streams, target=tgt,
                support_column=fam.support_column, is_chip=chip is not None, sources=cites, **cv, **vals)


@lru_cache(maxsize=1)
def chips() -> dict[str, Chip]:
    """Chip records by name, in data-file order."""
    tg = targets()
    out = {}
    for c in raw()["chips"]:
        comp = c["compiler"][0].lower()
        if comp not in tg:
            raise TargetError(f"targets.json: chip {c['name']} names unknown compiler target '{comp}'")
        out[c["name"]] = _record(tg[comp], c)
    return out


def normalize(name: str) -> str:
    """Lookup key: case, spaces, hyphens and underscores do not matter."""
    return "".join(ch for ch in str(name).lower() if ch not in " -_\t")


@lru_cache(maxsize=1)
def index() -> dict[str, Chip]:
    """Every accepted spelling -> record: chip names and aliases, then compiler target names."""
    doc = raw()
    by_name = chips()
    idx: dict[str, Chip] = {}
    for c in doc["chips"]:
        for alias in [c["name"], *c.get("aliases", ())]:
            idx[normalize(alias)] = by_name[c["name"]]
    for key, tgt in targets().items():
        if key in idx:
            raise TargetError(f"targets.json: compiler target '{tgt.name}' collides with a chip name")
        rep = tgt.representative_chip
        if rep and rep not in by_name:
            raise TargetError(f"targets.json: target {tgt.name}'s representative chip '{rep}' is not a chip")
        idx[key] = by_name[rep] if rep else _record(tgt, None)
    return idx
