"""The agents: one module per role (proposer, reviewer, planner, coder, observer), prompts as
files, LLM backend selection, and the symbolic (no-LLM) designer. Built by a later issue."""
