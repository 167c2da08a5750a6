"""A scripted chat model and the transcripts it replays, for tests of the agents and the design graph.

`ScriptedChatModel` is a real LangChain BaseChatModel: it supports `bind_tools`
and `with_structured_output` (function-calling mode, as Anthropic and many OpenAI
setups answer), returns AIMessages with `usage_metadata`, and records every request
(messages, bound tools) so tests can see what a role sent. Each call takes the next
entry of its script; an entry may be an exception (a provider error or timeout).

Transcripts live in tests/transcripts/*.json: {"description": ..., "model": ...,
"replies": [entry, ...]}, an entry being one of
  {"tool_calls": [{"name", "args", "id"}], "content": "...", "usage": {"input", "output"}}
  {"structured": "Proposal", "args": {...}, "usage": ...}   the answer as a schema tool call
  {"json": {...}, "usage": ...}                             the answer as JSON text (json_schema mode)
  {"content": "prose", "usage": ...}
  {"error": "timeout" | "provider" | "rate_limit", "message": "..."}

    designer = scripted_designer()       # the gated short-conv MHA session on gpt2
    call = designer.propose(ctx)         # replays tests/transcripts/proposer_gated_conv.json
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field

TRANSCRIPTS = Path(__file__).parent / "transcripts"

# The transcripts of one full design session (gpt2 -> gated short-conv attention):
# proposal rejected once then accepted, MHA rewritten, ShortConv non-causal then fixed.
SESSION = {
    "proposer": "proposer_gated_conv",
    "reviewer": "reviewer_revise_then_accept",
    "planner": "planner_gated_conv",
    "coder": "coder_gated_conv",
    "observer": "observer_gated_conv",
}


class TranscriptExhausted(RuntimeError):
    """The model was called more often than its transcript has replies."""


class ProviderError(RuntimeError):
    """What a hosted API's 5xx looks like to a role."""


class RateLimitError(RuntimeError):
    """What a hosted API's 429 looks like to a role."""


class ScriptedChatModel(BaseChatModel):
    """Replays a script of AIMessages (or exceptions), one per call, and records the requests."""

    script: list[Any] = Field(default_factory=list)
    model_name: str = "scripted"
    requests: list[dict] = Field(default_factory=list)
    position: int = 0

    @property
    def _llm_type(self) -> str:
        return "fake"

    @property
    def remaining(self) -> int:
        return len(self.script) - self.position

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs) -> ChatResult:
        tools = [t["function"]["name"] for t in kwargs.get("tools") or []]
        self.requests.append({"messages": list(messages), "tools": tools, "tool_choice": kwargs.get("tool_choice")})
        if self.position >= len(self.script):
            raise TranscriptExhausted(f"{self.model_name}: called {self.position + 1} times, "
                                      f"the transcript has {len(self.script)} replies")
        item = self.script[self.position]
        self.position += 1
        if isinstance(item, BaseException):
            raise item
        return ChatResult(generations=[ChatGeneration(message=item.model_copy(deep=True))])

    def bind_tools(self, tools: Sequence, *, tool_choice: str | None = None, **kwargs):
        formatted = [convert_to_openai_tool(t) for t in tools]
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)


# ---------------------------------------------------------------- transcripts


def reply(entry: Mapping, index: int = 0) -> AIMessage | BaseException:
    """One transcript entry as the AIMessage (or exception) a provider would produce."""
    if "error" in entry:
        kinds = {"timeout": TimeoutError, "provider": ProviderError, "rate_limit": RateLimitError}
        return kinds[entry["error"]](entry.get("message", entry["error"]))
    usage = entry.get("usage", {})
    meta = {"input_tokens": usage.get("input", 0), "output_tokens": usage.get("output", 0),
            "total_tokens": usage.get("input", 0) + usage.get("output", 0)}
    calls = [{"name": c["name"], "args": c.get("args", {}), "id": c.get("id", f"call_{index}_{i}"),
              "type": "tool_call"} for i, c in enumerate(entry.get("tool_calls", []))]
    content = entry.get("content", "")
    if "structured" in entry:
        calls.append({"name": entry["structured"], "args": entry["args"], "id": f"call_{index}_answer",
                      "type": "tool_call"})
    if "json" in entry:
        content = json.dumps(entry["json"], indent=1)
    return AIMessage(content=content, tool_calls=calls, usage_metadata=meta)


def load_transcript(name: str) -> dict:
    return json.loads((TRANSCRIPTS / f"{name}.json").read_text())


def answers(name: str) -> list[dict]:
    """The structured answers (their args) of a transcript, in order: to build variations of it."""
    return [r["args"] for r in load_transcript(name)["replies"] if "structured" in r]


def structured(schema: str, args: Mapping, usage: tuple[int, int] = (1000, 200)) -> dict:
    """A transcript entry: the answer as a call of the schema's tool (function-calling mode)."""
    return {"structured": schema, "args": dict(args), "usage": {"input": usage[0], "output": usage[1]}}


def script(name_or_entries: str | Sequence[Mapping]) -> list:
    entries = load_transcript(name_or_entries)["replies"] if isinstance(name_or_entries, str) else name_or_entries
    return [reply(e, i) for i, e in enumerate(entries)]


def scripted(name_or_entries: str | Sequence[Mapping], model_name: str | None = None) -> ScriptedChatModel:
    """A scripted model replaying a transcript file (by name) or a list of entries."""
    name = model_name or (load_transcript(name_or_entries).get("model") if isinstance(name_or_entries, str)
                          else None) or "scripted"
    return ScriptedChatModel(script=script(name_or_entries), model_name=name)


# ---------------------------------------------------------------- knowledge tools with canned answers


def fake_knowledge_tools() -> list[BaseTool]:
    """Stand-ins for knowledge.tools with the same names, for transcripts that search."""

    @tool
    def search_library(query: str, k: int = 5) -> str:
        """Search the reference library of architecture papers; returns id, title, year and summary."""
        return ("1. hyena (arXiv 2302.10866, 2023) Hyena Hierarchy: long convolutions and gating replace "
                "attention. 2. h3 (arXiv 2212.14052, 2022) Hungry Hungry Hippos: a shift (short) convolution "
                "before the SSM helps recall. 3. canon (2025) short causal convolutions on q, k, v ease "
                "local token mixing.")[: 200 * k]

    @tool
    def search_papers(query: str, k: int = 5) -> str:
        """Search Semantic Scholar and arXiv for papers (offline: unavailable)."""
        return "unavailable: offline"

    @tool
    def get_paper(paper_id: str) -> str:
        """The record of one library paper or arXiv id: summary, tags, linked seed units."""
        return f"{paper_id}: no such record" if paper_id != "h3" else (
            "h3: Hungry Hungry Hippos (2022). A shift SSM (short causal conv) then a diagonal SSM, "
            "multiplicative gates; closes the recall gap to attention on synthetic tasks.")

    @tool
    def similar_designs(description: str, k: int = 5) -> str:
        """Archived designs nearest to a text (a proposal or an idea), with similarity."""
        return "gpt2 (seed) 0.71; llama (seed) 0.64; hybrid (seed) 0.52"

    @tool
    def similar_units(description: str, k: int = 5) -> str:
        """Units of the library nearest to a text, with their design and docstring."""
        return ("HyenaOperator (hyena) 0.62: implicit long convolution with gates; "
                "Mamba2Mixer (mamba2) 0.55: short conv then SSD scan")

    return [search_library, search_papers, get_paper, similar_designs, similar_units]


def scripted_models(transcripts: Mapping[str, str] | None = None) -> dict[str, ScriptedChatModel]:
    return {role: scripted(name) for role, name in {**SESSION, **(transcripts or {})}.items()}


def scripted_designer(transcripts: Mapping[str, str] | None = None, *, tools: Sequence[BaseTool] | None = None,
                      prices: Mapping | None = None, max_tool_rounds: int = 3):
    """An LLMDesigner on scripted models: the SESSION transcripts, any role overridden by name.

    The proposer and reviewer transcripts call tools, so the fake knowledge tools are
    bound unless `tools` is given.
    """
    from agents.llm_designer import LLMDesigner

    return LLMDesigner(scripted_models(transcripts), tools=fake_knowledge_tools() if tools is None else tools,
                       prices=prices, max_tool_rounds=max_tool_rounds)
