"""LLM backends for the roles, and the one way a role talks to its model.

Backends. Each role's model is a "provider:model" string for LangChain's
`init_chat_model` (openai:gpt-4.1, anthropic:claude-sonnet-4-5, ollama:qwen2.5-coder:7b,
or openai:<name> with a base_url for any OpenAI-compatible server such as vLLM or
llama.cpp). `AgentsConfig` holds one default model, per-role overrides, temperature
and token limits, and comes from a TOML/JSON file, environment variables
(GENESYS_LLM, GENESYS_LLM_PROPOSER, ..., GENESYS_LLM_BASE_URL) and CLI flags
("ROLE=provider:model"), later sources winning. `build_models` checks credentials
first, so a missing key fails at start with one message naming the variable.

Talking to a model (`ask`). A role sends its messages; the proposer and reviewer
may first call tools for a bounded number of rounds (a bad tool call gets the error
back as a ToolMessage); then the answer is requested as structured output in the
provider's native mode (OpenAI/ollama JSON schema, Anthropic tool use). An answer
that fails the schema, or the role's own check, gets exactly one repair round with
the error sent back; after that, or on a provider error or timeout, the role
returns a failed RoleCall with the reason. Nothing here raises for a model's
misbehaviour.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool
from langchain_core.utils.json import parse_json_markdown
from pydantic import BaseModel, Field, ValidationError

from agents.base import ROLES, RoleCall, Usage
from agents.costs import Budget, Price, PriceTable

M = TypeVar("M", bound=BaseModel)


class AgentsConfigError(ValueError):
    """The LLM configuration cannot work: the message says what to set or change."""


# ---------------------------------------------------------------- configuration

# Per-role defaults: ideas want some variety, code and judgement want focus.
ROLE_TEMPERATURE = {"proposer": 0.7, "reviewer": 0.3, "planner": 0.2, "coder": 0.2, "observer": 0.2}
ROLE_MAX_TOKENS = {"proposer": 4000, "reviewer": 2000, "planner": 2000, "coder": 8000, "observer": 1500}

# The variable each hosted provider reads its key from.
CREDENTIALS = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "google_genai": "GOOGLE_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistralai": "MISTRAL_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "fireworks": "FIREWORKS_API_KEY",
    "together": "TOGETHER_API_KEY",
    "xai": "XAI_API_KEY",
}
NO_KEY = "EMPTY"  # what an OpenAI-compatible local server gets as its api key when none is set


class RoleSettings(BaseModel):
    """One role's overrides; None falls back to the config's default."""

    model: str | None = Field(default=None, description="provider:model")
    temperature: float | None = None
    max_tokens: int | None = None
    base_url: str | None = None


class RoleModel(BaseModel):
    """What one role runs on, every default resolved."""

    role: str
    model: str
    temperature: float | None
    max_tokens: int | None
    base_url: str | None

    @property
    def provider(self) -> str:
        return self.model.split(":", 1)[0]

    @property
    def name(self) -> str:
        return self.model.split(":", 1)[1]


class AgentsConfig(BaseModel):
    """The LLM side of a run: models per role, sampling, limits, prices and budgets."""

    model: str | None = Field(default=None, description="provider:model for every role; None: no LLM")
    base_url: str | None = Field(default=None, description="OpenAI-compatible or ollama server for every role")
    temperature: float | None = Field(default=None, description="None: the role's default")
    max_tokens: int | None = Field(default=None, description="None: the role's default")
    timeout_s: float = 180.0
    max_retries: int = 2  # the provider client's own retries of transient HTTP errors
    max_tool_rounds: int = 3
    structured_method: str | None = Field(default=None, description="force function_calling/json_schema/json_mode")
    roles: dict[str, RoleSettings] = Field(default_factory=dict)
    prices: dict[str, Price] = Field(default_factory=dict, description="provider:model -> $/1M tokens in/out")
    budget_per_design: float | None = Field(default=None, description="dollars per design session")
    budget_per_run: float | None = Field(default=None, description="dollars per run")
    budget_tokens_per_design: int | None = None
    budget_tokens_per_run: int | None = None

    def model_post_init(self, _context) -> None:
        unknown = sorted(set(self.roles) - set(ROLES))
        if unknown:
            raise AgentsConfigError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
        for model in [self.model, *(r.model for r in self.roles.values())]:
            if model is not None:
                check_model_string(model)

    @property
    def enabled(self) -> bool:
        """Whether any role runs on an LLM (otherwise the symbolic designer designs)."""
        return self.model is not None or any(r.model for r in self.roles.values())

    def role(self, role: str) -> RoleModel:
        own = self.roles.get(role, RoleSettings())
        model = own.model or self.model
        if model is None:
            raise AgentsConfigError(
                f"the {role} has no model: set GENESYS_LLM=provider:model for every role, "
                f"GENESYS_LLM_{role.upper()} for this one, or --llm {role}=provider:model"
            )
        return RoleModel(
            role=role,
            model=model,
            temperature=_first(own.temperature, self.temperature, ROLE_TEMPERATURE[role]),
            max_tokens=_first(own.max_tokens, self.max_tokens, ROLE_MAX_TOKENS[role]),
            base_url=_first(own.base_url, self.base_url),
        )

    def price_table(self) -> PriceTable:
        return PriceTable(self.prices)

    def budget(self) -> Budget:
        return Budget(per_design=self.budget_per_design, per_run=self.budget_per_run,
                      per_design_tokens=self.budget_tokens_per_design, per_run_tokens=self.budget_tokens_per_run)

    @property
    def name(self) -> str:
        """The models used, for records: 'openai:gpt-4.1' or 'coder=..., proposer=...'."""
        models = {r: self.role(r).model for r in ROLES}
        if len(set(models.values())) == 1:
            return next(iter(models.values()))
        return ", ".join(f"{r}={m}" for r, m in models.items())


def _first(*values):
    return next((v for v in values if v is not None), None)


def _known_providers() -> set[str]:
    try:
        from langchain.chat_models.base import _BUILTIN_PROVIDERS
    except ImportError:  # a LangChain without the table: accept what init_chat_model accepts
        return set()
    return set(_BUILTIN_PROVIDERS)


def check_model_string(model: str) -> str:
    """'provider:model' or a clear error. The model part may hold colons (ollama tags)."""
    provider, sep, name = model.partition(":")
    if not sep or not provider or not name:
        raise AgentsConfigError(
            f"model {model!r} must be 'provider:model', e.g. openai:gpt-4.1, "
            f"anthropic:claude-sonnet-4-5 or ollama:qwen2.5-coder:7b"
        )
    known = _known_providers()
    if known and provider not in known:
        raise AgentsConfigError(f"unknown provider {provider!r} in {model!r}; known: {', '.join(sorted(known))}")
    return model


def parse_llm_flag(flag: str) -> tuple[str | None, str]:
    """'ROLE=provider:model' -> (role, model); 'provider:model' -> (None, model) for every role."""
    role, sep, model = flag.partition("=")
    if not sep:
        return None, check_model_string(flag.strip())
    role = role.strip().lower()
    if role not in ROLES:
        raise AgentsConfigError(f"--llm {flag!r}: unknown role {role!r}; roles are {', '.join(ROLES)}")
    return role, check_model_string(model.strip())


def load_config(path: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                flags: Sequence[str] = ()) -> AgentsConfig:
    """The config from a file (TOML or JSON, optionally under an [agents] table), then env, then flags.

    Environment: GENESYS_LLM_CONFIG (the file, when `path` is None), GENESYS_LLM (every
    role), GENESYS_LLM_<ROLE>, GENESYS_LLM_BASE_URL.
    """
    env = os.environ if env is None else env
    path = path or env.get("GENESYS_LLM_CONFIG")
    data = _read_config_file(Path(path)) if path else {}
    if env.get("GENESYS_LLM"):
        data["model"] = env["GENESYS_LLM"]
    if env.get("GENESYS_LLM_BASE_URL"):
        data["base_url"] = env["GENESYS_LLM_BASE_URL"]
    roles = {r: dict(v) for r, v in (data.get("roles") or {}).items()}
    for role in ROLES:
        if env.get(f"GENESYS_LLM_{role.upper()}"):
            roles.setdefault(role, {})["model"] = env[f"GENESYS_LLM_{role.upper()}"]
    for flag in flags:
        role, model = parse_llm_flag(flag)
        if role is None:
            data["model"] = model
        else:
            roles.setdefault(role, {})["model"] = model
    data["roles"] = roles
    try:
        return AgentsConfig.model_validate(data)
    except ValidationError as e:
        raise AgentsConfigError(f"LLM config{f' {path}' if path else ''}: {_explain(e)}") from None


def _read_config_file(path: Path) -> dict:
    if not path.is_file():
        raise AgentsConfigError(f"LLM config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise AgentsConfigError(f"LLM config file {path} does not parse: {e}") from None
    return dict(data.get("agents", data))


def missing_credentials(config: AgentsConfig, env: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Variables to set -> the roles that need them. Local servers (ollama, a base_url) need none."""
    env = os.environ if env is None else env
    missing: dict[str, list[str]] = {}
    for role in ROLES:
        rm = config.role(role)
        if rm.provider == "ollama" or (rm.provider == "openai" and rm.base_url):
            continue
        variable = CREDENTIALS.get(rm.provider)
        if variable and not env.get(variable):
            missing.setdefault(variable, []).append(f"{role} ({rm.model})")
    return missing


def check_credentials(config: AgentsConfig, env: Mapping[str, str] | None = None) -> None:
    """Fail at start, in one message, when a hosted backend has no key."""
    missing = missing_credentials(config, env)
    if missing:
        lines = [f"{var} is not set; needed by {', '.join(roles)}" for var, roles in missing.items()]
        raise AgentsConfigError(
            "; ".join(lines) + ". Export it (e.g. `export " + next(iter(missing)) + "=...`), or run the roles "
            "on a local server: ollama:MODEL, or openai:MODEL with base_url (GENESYS_LLM_BASE_URL)."
        )


def model_kwargs(rm: RoleModel, config: AgentsConfig, env: Mapping[str, str]) -> dict:
    """init_chat_model keyword arguments for one role; the provider classes name things differently."""
    kwargs: dict = {}
    if rm.temperature is not None:
        kwargs["temperature"] = rm.temperature
    if rm.provider == "ollama":
        if rm.max_tokens:
            kwargs["num_predict"] = rm.max_tokens
        if rm.base_url:
            kwargs["base_url"] = rm.base_url
        kwargs["client_kwargs"] = {"timeout": config.timeout_s}
        return kwargs
    kwargs.update(timeout=config.timeout_s, max_retries=config.max_retries)
    if rm.max_tokens:
        kwargs["max_tokens"] = rm.max_tokens
    variable = CREDENTIALS.get(rm.provider)
    if variable and env.get(variable):
        kwargs["api_key"] = env[variable]  # the mapping given wins over the process environment
    if rm.base_url:
        kwargs["base_url"] = rm.base_url
        if rm.provider == "openai" and "api_key" not in kwargs:
            kwargs["api_key"] = NO_KEY
    return kwargs


def build_models(config: AgentsConfig, env: Mapping[str, str] | None = None) -> dict[str, BaseChatModel]:
    """One chat model per role (shared between roles with identical settings)."""
    from langchain.chat_models import init_chat_model

    env = os.environ if env is None else env
    check_credentials(config, env)
    built: dict[str, BaseChatModel] = {}
    models: dict[str, BaseChatModel] = {}
    for role in ROLES:
        rm = config.role(role)
        key = rm.model_dump_json(exclude={"role"})
        if key not in built:
            try:
                built[key] = init_chat_model(rm.model, **model_kwargs(rm, config, env))
            except ImportError as e:
                raise AgentsConfigError(f"{role}: {rm.model} needs a package that is not installed: {e}") from None
            except Exception as e:  # the provider class refused its settings
                raise AgentsConfigError(f"{role}: cannot set up {rm.model}: {type(e).__name__}: {e}") from None
        models[role] = built[key]
    return models


def model_label(model: BaseChatModel) -> str:
    """'provider:model' for a chat model instance, as the price table and records name it."""
    name = getattr(model, "model_name", None) or getattr(model, "model", None) or "unknown"
    kind = model._llm_type
    provider = next((p for p in ("openai", "anthropic", "ollama", "fake") if p in kind), kind)
    base = getattr(model, "openai_api_base", None)
    if provider == "openai" and base and "api.openai.com" not in base:
        provider = "openai-compatible"
    return f"{provider}:{name}"


# ---------------------------------------------------------------- talking to a model

MAX_TOOL_CALLS_PER_ROUND = 4
MAX_TOOL_RESULT_CHARS = 6000

FINAL_ANSWER = ("Now give your final answer as the {schema} object. Put everything in its fields; "
                "do not call any more tools.")
REPAIR = ("Your answer could not be used: {problem}\n\nReply again with the complete {schema} object, "
          "fixing exactly this and keeping the rest.")
TEXT_FORMAT = ("Answer with one JSON object, and nothing else, matching this JSON schema:\n```json\n{schema}\n```")


def llm_schema(schema: type[BaseModel], omit: Sequence[str] = ()) -> dict:
    """The JSON schema a model is asked to fill: the pydantic schema less fields the LLM must not set.

    Passing a dict (not the class) keeps validation here, where its errors can be sent
    back for the repair round, and lets OpenAI's non-strict JSON-schema mode accept the
    free-form dict fields (args) that its strict mode refuses.
    """
    js = schema.model_json_schema()
    for name in omit:
        js.get("properties", {}).pop(name, None)
        if name in js.get("required", []):
            js["required"].remove(name)
    js["title"] = schema.__name__
    js.setdefault("description", (schema.__doc__ or schema.__name__).strip().splitlines()[0])
    return js


def ask(role: str, model: BaseChatModel, schema: type[M], messages: Sequence[BaseMessage], *,
        prices: PriceTable, tools: Sequence[BaseTool] = (), max_tool_rounds: int = 0,
        check: Callable[[M], str | None] | None = None, omit: Sequence[str] = (),
        method: str | None = None) -> RoleCall[M]:
    """Run one role: optional tool rounds, a structured answer, one repair round; never raises.

    `check` is the role's own test of a parsed answer (e.g. the coder wrote code for
    the wrong unit); its complaint gets the same single repair round as a schema error.
    """
    call = _Call(role, model, schema, prices, check, llm_schema(schema, omit), method)
    try:
        return call.run(list(messages), tools, max_tool_rounds)
    except Exception as e:  # provider errors, timeouts, refusals: a failed role, recorded
        return RoleCall(None, call.usage, f"{role}: {call.label} failed: {describe_error(e)}")


def describe_error(e: BaseException) -> str:
    kind = type(e).__name__
    text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
    if isinstance(e, TimeoutError) or "timeout" in kind.lower():
        return f"timed out ({kind}{': ' + text if text else ''})"
    return f"{kind}: {text}" if text else kind


class _Call:
    """The state of one role call: the model, the schema, and the usage recorded so far."""

    def __init__(self, role, model, schema, prices, check, json_schema, method):
        self.role, self.model, self.schema, self.prices = role, model, schema, prices
        self.check, self.json_schema, self.method = check, json_schema, method
        self.label = model_label(model)
        self.usage: list[Usage] = []

    def run(self, messages: list[BaseMessage], tools: Sequence[BaseTool], max_tool_rounds: int) -> RoleCall:
        if tools and max_tool_rounds > 0:
            last = self.research(messages, tools, max_tool_rounds)
            if last is not None:
                answer, problem = self.early_answer(messages, last)
                if answer is not None:
                    return RoleCall(answer, self.usage)
            messages.append(HumanMessage(FINAL_ANSWER.format(schema=self.schema.__name__)))
        answer, problem, raw = self.structured(messages)
        if problem is None:
            return RoleCall(answer, self.usage)
        messages += [AIMessage(_answer_text(raw)),
                     HumanMessage(REPAIR.format(problem=problem, schema=self.schema.__name__))]
        answer, second, _ = self.structured(messages)
        if second is None:
            return RoleCall(answer, self.usage)
        return RoleCall(None, self.usage, f"{self.role}: no usable {self.schema.__name__} after one repair "
                                          f"round: {second} (first answer: {problem})")

    def record(self, message: AIMessage) -> None:
        meta = getattr(message, "usage_metadata", None) or {}
        self.usage.append(self.prices.usage(self.role, self.label, int(meta.get("input_tokens", 0)),
                                            int(meta.get("output_tokens", 0))))

    # ---- tool rounds

    def research(self, messages: list[BaseMessage], tools: Sequence[BaseTool], rounds: int) -> AIMessage | None:
        """Let the model call tools for up to `rounds` rounds; returns its last message if it stopped on its own."""
        by_name = {t.name: t for t in tools}
        bound = self.model.bind_tools(list(tools))
        for _ in range(rounds):
            ai = bound.invoke(messages)
            self.record(ai)
            messages.append(ai)
            calls = list(ai.tool_calls) + [c for c in ai.invalid_tool_calls if c.get("id")]
            if not calls or any(c.get("name") == self.schema.__name__ for c in calls):
                return ai  # done searching (or answered already, by calling the schema as a tool)
            messages.extend(run_tool_calls(calls, by_name))
        return None

    def early_answer(self, messages: list[BaseMessage], last: AIMessage) -> tuple[BaseModel | None, str | None]:
        """The answer when the model gave it while it could still search: as the schema's tool, or as JSON text.

        A failed early answer is not a repair round: its tool calls are answered (so the
        conversation stays valid for the provider) and the structured request follows.
        """
        own = [c for c in last.tool_calls if c.get("name") == self.schema.__name__]
        if own:
            answer, problem = self.validate(own[0].get("args"), None, last)
            if answer is None:
                messages.extend(ToolMessage(f"error: {problem}" if c in own else "not run: answer first",
                                            tool_call_id=c.get("id") or "", name=c.get("name"), status="error")
                                for c in last.tool_calls)
            return answer, problem
        if last.text.strip().startswith(("{", "```")):
            return self.validate(None, None, last)
        return None, None

    # ---- the structured answer

    def structured(self, messages: list[BaseMessage]) -> tuple[BaseModel | None, str | None, AIMessage]:
        kwargs = {"method": self.method} if self.method else {}
        try:
            runnable = self.model.with_structured_output(self.json_schema, include_raw=True, **kwargs)
        except NotImplementedError:  # no native mode: ask for JSON in the text
            instruction = TEXT_FORMAT.format(schema=json.dumps(self.json_schema, indent=1))
            raw = self.model.invoke([*messages, HumanMessage(instruction)])
            self.record(raw)
            return *self.validate(None, None, raw), raw
        out = runnable.invoke(messages)
        raw = out["raw"]
        self.record(raw)
        return *self.validate(out.get("parsed"), out.get("parsing_error"), raw), raw

    def validate(self, parsed, parsing_error, raw: AIMessage) -> tuple[BaseModel | None, str | None]:
        """The answer as the schema's object, or why not, in words a model can act on."""
        data = parsed
        if data is None:
            data = _json_in_text(raw.text)
        if data is None:
            if parsing_error is not None:
                return None, f"the reply is not valid JSON for the schema ({describe_error(parsing_error)})"
            return None, f"the reply was prose, not the {self.schema.__name__} object"
        try:
            answer = self.schema.model_validate(data)
        except ValidationError as e:
            return None, _explain(e)
        problem = self.check(answer) if self.check else None
        return (None, problem) if problem else (answer, None)


def run_tool_calls(calls: list[dict], tools: Mapping[str, BaseTool]) -> list[ToolMessage]:
    """Run a round of tool calls; every failure (unknown tool, bad arguments, tool error) is a ToolMessage."""
    out = []
    for i, call in enumerate(calls):
        name, call_id = call.get("name") or "?", call.get("id") or f"call_{i}"
        error = None
        if i >= MAX_TOOL_CALLS_PER_ROUND:
            error = f"not run: at most {MAX_TOOL_CALLS_PER_ROUND} tool calls per round"
        elif call.get("type") == "invalid_tool_call" or call.get("error"):
            error = f"the arguments are not valid JSON: {call.get('args')!r}"
        elif name not in tools:
            error = f"there is no tool named {name!r}; the tools are {', '.join(tools) or 'none'}"
        if error is None:
            try:
                content = _as_text(tools[name].invoke(call.get("args") or {}))
            except ValidationError as e:
                error = f"bad arguments {json.dumps(call.get('args'))}: {_explain(e)}"
            except Exception as e:  # a tool's own failure (network down, bad id) goes back to the model
                error = f"{name} failed: {describe_error(e)}"
        if error is not None:
            out.append(ToolMessage(f"error: {error}. Fix the call or go on without it.", tool_call_id=call_id,
                                   name=name, status="error"))
        else:
            out.append(ToolMessage(content[:MAX_TOOL_RESULT_CHARS], tool_call_id=call_id, name=name))
    return out


def _as_text(result) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json(indent=1)
    try:
        return json.dumps(result, indent=1, default=str)
    except TypeError:
        return str(result)


def _json_in_text(text: str):
    """The JSON object in a reply's text (bare or in a ```json fence), or None."""
    text = (text or "").strip()
    if "{" not in text:
        return None
    try:
        data = parse_json_markdown(text)
    except Exception:
        try:
            data = parse_json_markdown(text[text.index("{"): text.rindex("}") + 1])
        except Exception:
            return None
    return data if isinstance(data, dict) else None


def _answer_text(raw: AIMessage) -> str:
    """What the model said, to show it back in the repair round (tool-call answers as their JSON)."""
    if raw.tool_calls:
        return json.dumps(raw.tool_calls[0].get("args"), indent=1)
    return raw.text or "(empty reply)"


def _explain(e: ValidationError) -> str:
    """Pydantic errors as one line each: the field, what is wrong, what was given."""
    lines = []
    for err in e.errors()[:8]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "the object"
        given = repr(err.get("input"))
        given = given if len(given) <= 80 else given[:77] + "..."
        lines.append(f"{where}: {err.get('msg')} (got {given})" if err.get("type") != "missing"
                     else f"{where}: field required")
    return "; ".join(lines)
