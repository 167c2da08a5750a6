"""LangGraph wiring: typed state, the design graph, the evolution graph, selection.

- state.py: what a design session checkpoints (hashes of trees and code, not code)
- configuration.py: the session's settings (review threshold, tries per unit, beam, checks, budgets)
- nodes.py: the steps (propose, review, plan, code, check, observe, finish)
- design.py: the design graph, compiled with a SQLite checkpointer in the run directory
- commands.py: `python cli.py design ...`
"""
