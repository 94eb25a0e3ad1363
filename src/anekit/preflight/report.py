"""What a check returns: findings (one per rule that fired) and a verdict per op."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Verdicts, worst first. The first two mean the op does not run on the engine as written.
VERDICTS = ("over_limit", "unsupported", "risk", "demoted", "decomposed", "native")
OFF_ENGINE = frozenset({"over_limit", "unsupported"})
_RANK = {v: i for i, v in enumerate(VERDICTS)}


@dataclass(frozen=True)
class Finding:
    op: str                 # op name (or input name, or "(program)" for program-wide rules)
    op_type: str
    verdict: str
    rule: str               # stable rule id, e.g. "conv-kernel-width"
    reason: str
    limit: object           # the limit the rule compares against (number or short text)
    value: object = None    # what the program has (e.g. the offending size or bound)
    source: str = ""        # where the limit comes from

    def __iter__(self):     # unpacks as (op name, verdict, reason, limit)
        return iter((self.op, self.verdict, self.reason, self.limit))


@dataclass
class OpVerdict:
    name: str
    type: str
    verdict: str = "native"
    findings: list[Finding] = field(default_factory=list)

    def add(self, f: Finding) -> None:
        self.findings.append(f)
        if _RANK[f.verdict] < _RANK[self.verdict]:
            self.verdict = f.verdict


@dataclass
class CheckReport:
    target: str
    compiler: str
    family: str
    ops: list[OpVerdict]
    program_findings: list[Finding] = field(default_factory=list)
    function: str = "main"

    @property
    def findings(self) -> list[Finding]:
        return self.program_findings + [f for o in self.ops for f in o.findings]

    @property
    def ok(self) -> bool:
        """True when every op runs on the engine (risks and demotions are reported, not fatal)."""
        return not any(f.verdict in OFF_ENGINE for f in self.findings)

    def verdict(self, op_name: str) -> str:
        for o in self.ops:
            if o.name == op_name:
                return o.verdict
        raise KeyError(op_name)

    def by_rule(self, rule: str) -> list[Finding]:
        return [f for f in self.findings if f.rule == rule]

    def to_dict(self) -> dict:
        return {"target": self.target, "compiler": self.compiler, "family": self.family,
                "function": self.function, "ok": self.ok,
                "findings": [_jsonable(asdict(f)) for f in self.findings],
                "ops": [{"name": o.name, "type": o.type, "verdict": o.verdict,
                         "rules": [f.rule for f in o.findings]} for o in self.ops]}


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, float) and v != v:
            v = None
        elif hasattr(v, "item"):
            v = v.item()
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return out
