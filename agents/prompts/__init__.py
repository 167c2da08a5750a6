"""The role prompts, one Markdown file per role, and what fills their $placeholders.

`$gau_contract` is the shared account of the unit contract (gau_contract.md);
`$example_unit` and `$example_parent` are real units from the seed library, read
from designs/seeds/units/ so the prompts never drift from the code they teach.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from string import Template

PROMPTS = Path(__file__).parent
SEED_UNITS = PROMPTS.parents[1] / "designs" / "seeds" / "units"


@lru_cache(maxsize=None)
def _read(name: str) -> str:
    return (PROMPTS / f"{name}.md").read_text()


@lru_cache(maxsize=None)
def _shared() -> dict[str, str]:
    return {
        "gau_contract": _read("gau_contract"),
        "example_unit": (SEED_UNITS / "MHA.py").read_text().strip(),
        "example_parent": (SEED_UNITS / "GPT2Block.py").read_text().strip(),
    }


def render(role: str, **values: str) -> str:
    """The system prompt of a role with the shared pieces and `values` filled in."""
    text = Template(_read(role)).safe_substitute(values)
    return Template(text).safe_substitute(_shared())


# ---------------------------------------------------------------- context pieces every role shows

MAX_TREE_CODE_CHARS = 24_000


def unit_code(tree: dict, unit: str) -> str | None:
    """A unit's code from a UnitTree JSON dict, or None when it has none (a placeholder)."""
    entry = (tree.get("units") or {}).get(unit)
    return entry.get("code") if entry else None


def tree_code(tree: dict, limit: int = MAX_TREE_CODE_CHARS) -> str:
    """Every unit's code as fenced blocks, root first, cut at `limit` characters."""
    parts, used = [], 0
    units = tree.get("units") or {}
    order = [tree.get("root")] + [n for n in units if n != tree.get("root")]
    for name in order:
        if name not in units:
            continue
        block = f"### {name}\n```python\n{units[name].get('code', '').strip()}\n```"
        if used + len(block) > limit:
            parts.append(f"(code of {len(units) - len(parts)} more units left out for length)")
            break
        parts.append(block)
        used += len(block)
    return "\n\n".join(parts)


def parent_markdown(parent, with_code: bool = True) -> str:
    """A parent design (agents.base.ParentBrief) as the roles read it."""
    parts = [f"## Parent design: {parent.name}", "Unit tree:", f"```\n{parent.view}\n```"]
    if parent.proposal:
        parts += ["Its proposal:", parent.proposal]
    if parent.results:
        parts += ["Its verification results:", parent.results]
    if with_code:
        parts += ["Its units' code:", tree_code(parent.tree)]
    return "\n\n".join(parts)
