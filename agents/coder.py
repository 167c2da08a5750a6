"""The coder: one unit at a time, as GAU code, with the checker's report on retries.

Before an answer goes to the checker, the coder's own check catches what needs no
sandbox: code that does not parse, code with no class for the task's unit (code
for the wrong unit), and code that redefines a protected unit. Each gets the one
repair round of agents.llm.ask.
"""

from __future__ import annotations

import ast
from functools import partial

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from agents.base import CoderContext, RoleCall
from agents.llm import ask
from agents.prompts import render, unit_code
from agents.schemas import UnitCode


def messages(ctx: CoderContext) -> list[BaseMessage]:
    task = ctx.task
    parts = ["## The proposal\n\n" + ctx.proposal.to_markdown(),
             "## The plan\n" + "\n".join(f"{i}. {t.unit} ({t.action}): {t.description}"
                                          for i, t in enumerate(ctx.plan.tasks, 1))
             + (f"\n\nNotes: {ctx.plan.notes}" if ctx.plan.notes else ""),
             f"## The tree as it stands\n```\n{ctx.view}\n```"]
    for parent in _users(ctx.tree, task.unit):
        code = unit_code(ctx.tree, parent).strip()
        parts.append(f"## {parent}, which instantiates {task.unit}\n```python\n{code}\n```")
    if ctx.current_code:
        parts.append(f"## The current code of {task.unit}\n```python\n{ctx.current_code.strip()}\n```")
    if ctx.declaration:
        d = ctx.declaration
        parts.append(f"## The declaration of {task.unit}\nrequirements: {d.get('requirements', '')}\n"
                     f"inputs: {d.get('inputs', ['X'])}; outputs: {d.get('outputs', ['Y'])}")
    if ctx.protected:
        parts.append("Protected units (instantiate them if needed, never redefine them): " + ", ".join(ctx.protected))
    parts.append(f"## Your task: {task.unit} ({task.action})\n\n{task.description}"
                 + (f"\n\nChildren to declare: {', '.join(task.children)}" if task.children else ""))
    if ctx.feedback:
        parts.append(f"## Attempt {ctx.attempt}: what went wrong before\n\n" + "\n\n---\n\n".join(ctx.feedback))
        parts.append(f"Fix the problems above and write {task.unit} again.")
    else:
        parts.append(f"Write the UnitCode for {task.unit}.")
    return [SystemMessage(render("coder")), HumanMessage("\n\n".join(parts))]


def _users(tree: dict, unit: str) -> list[str]:
    """Units of the tree whose children include `unit`: the code that calls it."""
    return [name for name, u in (tree.get("units") or {}).items() if unit in u.get("children", []) and name != unit]


def check(ctx: CoderContext, answer: UnitCode) -> str | None:
    """What the coder must fix before the checker runs: parse, the right class, protected units untouched."""
    try:
        module = ast.parse(answer.code)
    except SyntaxError as e:
        return f"the code does not parse: line {e.lineno}: {e.msg}: {(e.text or '').strip()!r}"
    classes = [n.name for n in module.body if isinstance(n, ast.ClassDef)]
    if ctx.task.unit not in classes:
        wrote = f" (it defines {', '.join(classes)})" if classes else " (it defines no class)"
        return f"the task is unit {ctx.task.unit!r}: the code must define `class {ctx.task.unit}(GAUBase)`{wrote}"
    clash = sorted(set(classes) & set(ctx.protected) - {ctx.task.unit})
    if clash:
        return (f"the code redefines protected unit(s) {', '.join(clash)}; instantiate them by name instead "
                f"of defining them")
    return None


def implement(model: BaseChatModel, ctx: CoderContext, **kwargs) -> RoleCall[UnitCode]:
    call = ask("coder", model, UnitCode, messages(ctx), check=partial(check, ctx), **kwargs)
    if call.output is not None and call.output.unit != ctx.task.unit:
        call.output = call.output.model_copy(update={"unit": ctx.task.unit})
    return call
