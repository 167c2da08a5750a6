"""The check report: what the checkers found, in a form a coder and the archive can use.

One `CheckReport` per checked design holds findings (errors and warnings), the
auto-fixes the format checker applied, and metrics (parameter counts, speed and
memory ratios against the GPT-2 seed, losses). It renders as markdown for an LLM
coder (`to_markdown`) and as JSON for the archive (`to_dict` / `from_dict`).

A finding names the check that produced it, the unit and line when it knows them,
what is wrong, and what to write instead.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

ERROR = "error"
WARNING = "warning"


@dataclass
class Finding:
    """One thing a checker found."""

    check: str  # e.g. "format.forbidden-import", "causality", "gradients"
    severity: str  # ERROR or WARNING
    message: str  # what is wrong
    fix: str = ""  # what to write instead
    unit: str | None = None  # the unit it is in, when known
    line: int | None = None  # line in that unit's code (1-based), when known

    def __post_init__(self):
        if self.severity not in (ERROR, WARNING):
            raise ValueError(f"severity must be {ERROR!r} or {WARNING!r}, got {self.severity!r}")

    def where(self) -> str:
        if self.unit and self.line:
            return f"{self.unit} line {self.line}"
        return self.unit or ""

    def to_markdown(self) -> str:
        where = f" ({self.where()})" if self.where() else ""
        text = f"- **{self.check}**{where}: {self.message}"
        return text + (f"\n  Fix: {self.fix}" if self.fix else "")


@dataclass
class AutoFix:
    """A safe change the format checker made to a unit's code on its own."""

    unit: str
    line: int | None
    description: str

    def to_markdown(self) -> str:
        where = f" line {self.line}" if self.line else ""
        return f"- {self.unit}{where}: {self.description}"


class HasFindings:
    """Errors, warnings and the verdict of anything holding a `findings` list."""

    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        """No error findings (warnings are fine)."""
        return not self.errors


@dataclass
class CheckReport(HasFindings):
    """Everything the checkers said about one design."""

    design: str
    findings: list[Finding] = field(default_factory=list)
    autofixes: list[AutoFix] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    isolation: dict = field(default_factory=dict)  # what the sandbox enforced while checking
    stages: list[str] = field(default_factory=list)  # checks that ran, in order

    def error(self, check: str, message: str, fix: str = "", unit: str | None = None, line: int | None = None):
        self.findings.append(Finding(check, ERROR, message, fix, unit, line))

    def warn(self, check: str, message: str, fix: str = "", unit: str | None = None, line: int | None = None):
        self.findings.append(Finding(check, WARNING, message, fix, unit, line))

    def extend(self, other: "CheckReport") -> "CheckReport":
        """Add another report's findings, fixes, metrics and stages to this one."""
        self.findings += other.findings
        self.autofixes += other.autofixes
        self.metrics.update(other.metrics)
        self.isolation.update(other.isolation)
        self.stages += [s for s in other.stages if s not in self.stages]
        return self

    def has(self, check: str, severity: str | None = None) -> bool:
        """Whether some finding's check is `check` (or starts with `check.`)."""
        return any((f.check == check or f.check.startswith(check + ".")) and severity in (None, f.severity)
                   for f in self.findings)

    def to_dict(self) -> dict:
        return {
            "design": self.design,
            "ok": self.ok,
            "findings": [asdict(f) for f in self.findings],
            "autofixes": [asdict(a) for a in self.autofixes],
            "metrics": self.metrics,
            "isolation": self.isolation,
            "stages": self.stages,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "CheckReport":
        return cls(
            design=data["design"],
            findings=[Finding(**f) for f in data.get("findings", [])],
            autofixes=[AutoFix(**a) for a in data.get("autofixes", [])],
            metrics=dict(data.get("metrics", {})),
            isolation=dict(data.get("isolation", {})),
            stages=list(data.get("stages", [])),
        )

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    def to_markdown(self) -> str:
        """The report as a coder reads it: verdict, errors first, then warnings, fixes, metrics."""
        verdict = "PASSED" if self.ok else f"FAILED ({len(self.errors)} error(s))"
        lines = [f"# Check report: {self.design}: {verdict}", ""]
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings), ("Auto-fixes applied", self.autofixes)):
            if items:
                lines += [f"## {title}", *(item.to_markdown() for item in items), ""]
        if self.metrics:
            lines += ["## Metrics", *(f"- {k}: {_fmt(v)}" for k, v in self.metrics.items()), ""]
        if self.stages:
            lines += [f"Checks run: {', '.join(self.stages)}."]
        return "\n".join(lines).rstrip() + "\n"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    return str(value)
