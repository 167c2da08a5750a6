"""Checking a design: the static format check here, the functional check in the sandbox.

    report = check_tree(tree)            # format (AST) -> auto-fixes -> functional (sandbox)
    report.ok, report.to_markdown()      # for the coder; report.to_dict() for the archive

`check_tree` never runs design code in this process. The functional check gets the
composed source with a line map (so failures name the unit and its line), a sample
of the embedded corpus for its short training run, and the GPT-2 seed's source for
the side-by-side efficiency comparison. A sandbox failure (timeout, out of memory,
crash) becomes an error finding with the sandbox's explanation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from designs.tree import TreeError, UnitTree
from verifier.report import CheckReport
from verifier.sandbox import Limits, SandboxResult, run_job

SANDBOX_ADVICE = {
    "timeout": "The check ran out of time: look for Python loops over sequence positions or unbounded loops; "
               "use vectorized (chunked or parallel-scan) forms.",
    "out_of_memory": "The check ran out of memory: avoid tensors of size seq x seq x channels or per-token states; "
                     "chunk the computation.",
    "killed": "The process was killed: do not print in the forward pass, spawn processes or threads, or signal.",
    "crashed": "The process died: do not call exit, os._exit, ctypes or native code from a unit.",
    "nonfinite": "Keep activations bounded: add eps to divisions and norms, clamp exponents.",
    "exception": "Fix the error at the line shown.",
}


@dataclass
class CheckOptions:
    """What the functional check does; the defaults check a design in about 15 s on 2 cores."""

    target_params: int | None = None  # the design must size to this within param_tolerance
    param_tolerance: float = 0.05
    efficiency: bool = True  # compare time, memory, FLOPs with the GPT-2 seed
    efficiency_target: int = 1_000_000
    error_ratio: float = 3.0
    warn_ratio: float = 1.5
    train_steps: int = 40
    corpus: str = "stdlib"
    extra: dict = field(default_factory=dict)  # any other verifier.functional.DEFAULTS key
    limits: Limits = field(default_factory=lambda: Limits(timeout_s=240, memory_mb=8192))

    def args(self) -> dict:
        return {"target_params": self.target_params, "param_tolerance": self.param_tolerance,
                "efficiency": self.efficiency, "efficiency_target": self.efficiency_target,
                "error_ratio": self.error_ratio, "warn_ratio": self.warn_ratio,
                "train_steps": self.train_steps, **self.extra}


@lru_cache(maxsize=4)
def _text_sample(corpus: str) -> tuple[str, str]:
    """Training and held-out text for the check's short run (split by file, never mixed)."""
    from verifier.data.corpus import load_corpus

    c = load_corpus(corpus)
    train = c.read_bytes("train", 200_000, seed=0).decode("utf-8", errors="replace")
    valid = c.read_bytes("validation", 20_000, seed=0).decode("utf-8", errors="replace")
    return train, valid


@lru_cache(maxsize=1)
def _baseline_source() -> str:
    from designs.seeds import load_seed

    return load_seed("gpt2").compose(include_tests=False)


def sandbox_finding(report: CheckReport, result: SandboxResult, stage: str = "sandbox") -> None:
    """Turn a failed sandbox result into an error finding, unit and line included when known."""
    unit = line = None
    for frame in reversed(result.frames or []):
        if frame.get("unit"):
            unit, line = frame["unit"], frame.get("unit_line")
            break
    message = result.error + (f"\n{result.traceback}" if result.traceback and result.frames else "")
    report.error(f"{stage}.{result.status}", message, SANDBOX_ADVICE.get(result.status, ""), unit, line)


def run_functional(source: str, name: str, options: CheckOptions | None = None,
                   line_map: dict | None = None) -> CheckReport:
    """The functional check of composed design source, in the sandbox."""
    options = options or CheckOptions()
    train, valid = _text_sample(options.corpus)
    args = {**options.args(), "train_tokens": train, "valid_tokens": valid, "baseline_source": _baseline_source()}
    args["line_map"] = {str(k): v for k, v in (line_map or {}).items()}
    result = run_job("check", source, name=name, args=args, limits=options.limits, line_map=line_map)
    if result.ok:
        report = CheckReport.from_dict(result.payload)
    else:
        report = CheckReport(design=name, stages=["functional"])
        sandbox_finding(report, result)
    report.isolation = result.isolation
    report.metrics["sandbox_seconds"] = result.wall_s
    return report


def check_tree(tree: UnitTree, options: CheckOptions | None = None, functional: bool = True
               ) -> tuple[UnitTree, CheckReport]:
    """Format-check (with safe auto-fixes), then functionally check a tree.

    Returns the tree with the auto-fixes applied and the combined report. The
    functional check runs only when the format check finds no errors.
    """
    from verifier.format_check import check_tree as format_check_tree

    fixed, report = format_check_tree(tree)
    if not report.ok or not functional:
        return fixed, report
    try:
        source, line_map = fixed.compose_with_map(include_tests=True)
    except TreeError as e:
        report.error("compose", str(e), "Make the tree complete: implement every declared unit, with unique "
                     "top-level names across units.")
        return fixed, report
    report.extend(run_functional(source, fixed.name, options, line_map))
    return fixed, report


def check_source(source: str, name: str, options: CheckOptions | None = None) -> CheckReport:
    """Functionally check an exported design module (no unit tree, so no format check)."""
    return run_functional(source, name, options)
