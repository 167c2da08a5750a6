"""Where a design session's time goes: wall time and the checker's share of it, on this machine.

    python benchmarks/design_session.py [--full-check] [--runs 1]

Two sessions, one after the other, each in a fresh run directory:
- symbolic: the default designer (no LLM) mutating gpt2;
- scripted LLM: agents.llm_designer.LLMDesigner on chat models replaying a realistic
  session (tests/fake_llm.py): proposal, review, plan, one unit written twice (the
  first try leaks the future and fails the causality check), two observations.
A replayed model answers at once, so the second figure is the graph's own cost
(prompts, structured output, archive, artifacts, checkpoints) plus the checker.
By default the checks are the tests' fast ones (no efficiency comparison, 10
training steps); --full-check uses the checker's defaults.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph import nodes  # noqa: E402
from graph.design import design_session, session_config  # noqa: E402
from graph.state import initial_state  # noqa: E402

FAST_CHECK = {"efficiency": False, "train_steps": 10, "extra": {"batch_size": 4, "train_seq_len": 32}}


def scripted_llm_designer():
    """The LLM designer on replayed replies: the test suite's causality-then-fixed session."""
    from agents.llm_designer import LLMDesigner
    from tests.fake_llm import scripted
    from tests.test_design_graph import CAUSAL_MLP, LEAKY_MLP, code, observation, plan, proposal, review, task

    replies = {"proposer": [proposal("Running-mean context MLP")],
               "reviewer": [review(4.3, "accept", "causal and cheap")],
               "planner": [plan(task("GeluMLP"))],
               "coder": [code("GeluMLP", LEAKY_MLP), code("GeluMLP", CAUSAL_MLP)],
               "observer": [observation("GeluMLP", 2, False, "the mean sees the future"),
                            observation("GeluMLP", 4, True)]}
    return LLMDesigner({r: scripted(v, model_name=f"fake:{r}") for r, v in replies.items()}, tools=[])


def symbolic_designer():
    from agents.symbolic import SymbolicDesigner

    return SymbolicDesigner()


def one_session(label: str, designer, check: dict | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        design = {"check": check} if check else {}
        started = time.perf_counter()
        with design_session(run_dir) as graph:
            config = session_config(label, designer=designer, run_dir=run_dir, design=design)
            graph.invoke(initial_state("mutation", ["gpt2"], seed=1), config)
            state = graph.get_state(config).values
        wall = time.perf_counter() - started
        nodes.close_archives()
    checker = (state.get("costs") or {}).get("compute_s", 0.0)
    tries = len({(a["unit"], a["attempt"]) for a in state.get("attempt_log", [])})
    return {"label": label, "outcome": state.get("outcome"), "wall_s": wall, "checker_s": checker, "tries": tries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full-check", action="store_true", help="the checker's default options")
    parser.add_argument("--runs", type=int, default=1, help="sessions of each kind")
    args = parser.parse_args()
    check = None if args.full_check else FAST_CHECK
    makers = {"symbolic": symbolic_designer, "scripted LLM": scripted_llm_designer}
    rows = []
    for i in range(args.runs):
        for label, make in makers.items():
            try:
                designer = make()
            except ImportError as e:
                print(f"{label}: skipped ({e})")
                continue
            rows.append(one_session(f"{label.replace(' ', '-')}-{i}", designer, check))
            r = rows[-1]
            print(f"{label:>13}: {r['outcome']:<11} wall {r['wall_s']:6.1f} s, checker {r['checker_s']:6.1f} s "
                  f"({100 * r['checker_s'] / r['wall_s']:4.1f}%), {r['tries']} check round(s), "
                  f"other {r['wall_s'] - r['checker_s']:5.1f} s")


if __name__ == "__main__":
    main()
