"""The LLM roles on scripted chat models: parsing, repair, tools, failures, costs, configuration."""

from __future__ import annotations

import json

import pytest
from fake_llm import (SESSION, ProviderError, ScriptedChatModel, answers, fake_knowledge_tools, scripted,
                      scripted_designer, structured)
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, ToolMessage

from agents.base import (CoderContext, ObserverContext, ParentBrief, PlanContext, ProposalContext, ReviewContext,
                         Usage)
from agents.costs import Budget, Ledger, Price, PriceTable, Totals, total
from agents.llm import (AgentsConfig, AgentsConfigError, ask, build_models, check_credentials, load_config,
                        model_label, parse_llm_flag)
from agents.llm_designer import LLMDesigner, load_designer
from agents.schemas import Observation, Plan, Proposal, Review, UnitCode, UnitTask
from designs.gau import UnitDecl, UnitSpec
from designs.seeds import load_seed
from designs.tree import UnitTree

PROTECTED = ["GPT2Block", "LayerNorm", "GeluMLP"]


@pytest.fixture(scope="module")
def gpt2() -> UnitTree:
    return load_seed("gpt2")


@pytest.fixture(scope="module")
def parent(gpt2) -> ParentBrief:
    return ParentBrief(name="gpt2", tree=gpt2.to_dict(), view=gpt2.view(), results="fitness 0.50 (seed)")


def answer(name: str, index: int) -> dict:
    """The args of the index-th structured answer in a transcript."""
    return answers(name)[index]


def proposal(index: int = 1) -> Proposal:
    return Proposal.model_validate(answer(SESSION["proposer"], index))


def plan() -> Plan:
    return Plan.model_validate(answer(SESSION["planner"], 0))


def coder_ctx(gpt2, task_index=0, **kw) -> CoderContext:
    task = plan().tasks[task_index]
    return CoderContext(proposal=proposal(), plan=plan(), task=task, tree=gpt2.to_dict(), view=gpt2.view(),
                        current_code=gpt2.units["MHA"].code, protected=PROTECTED, **kw)


# ---------------------------------------------------------------- a whole session's roles


def test_session_roles_parse_realistic_answers(gpt2, parent):
    designer = scripted_designer()
    first = designer.propose(ProposalContext(mode="mutation", parents=[parent]))
    assert first.ok and first.output.selected_unit == "MHA" and first.output.parents == ["gpt2"]
    assert first.output.recipe is None and "h3" in first.output.references
    proposer = designer.models["proposer"]
    assert "search_library" in proposer.requests[0]["tools"]  # searched before writing
    tool_replies = [m for m in proposer.requests[2]["messages"] if isinstance(m, ToolMessage)]
    assert len(tool_replies) == 3 and "Hungry Hungry Hippos" in tool_replies[-1].content
    assert [u.prompt_tokens for u in first.usage] == [6120, 6490, 6910, 7050]

    review = designer.review(ReviewContext(proposal=first.output, parents=[parent], nearest=["gpt2 (seed) 0.71"]))
    assert review.ok and review.output.verdict == "revise" and review.output.overall == 3.0
    assert len(review.output.suggestions) == 3

    second = designer.propose(ProposalContext(mode="mutation", parents=[parent], previous=first.output,
                                              reviews=[review.output]))
    assert second.ok and "zero-centred" in second.output.title
    sent = proposer.requests[4]["messages"][-1].content
    assert "State the gate's initialization" in sent and "Revise the proposal" in sent

    accepted = designer.review(ReviewContext(proposal=second.output, parents=[parent]))
    assert accepted.ok and accepted.output.verdict == "accept" and accepted.output.overall >= 4.0

    the_plan = designer.plan(PlanContext(proposal=second.output, parents=[parent]))
    assert the_plan.ok and [t.unit for t in the_plan.output.tasks] == ["MHA", "ShortConv"]

    mha = designer.implement(coder_ctx(gpt2))
    assert mha.ok and mha.output.new_children[0].name == "ShortConv"
    coder_prompt = designer.models["coder"].requests[0]["messages"]
    assert "class MHA(GAUBase)" in coder_prompt[0].content  # the example unit from the seed library
    assert "Protected units" in coder_prompt[1].content

    seen = designer.observe(ObserverContext(proposal=second.output, task=the_plan.output.tasks[0], code=mha.output,
                                            report="# Check report: PASSED", report_ok=True))
    assert seen.ok and seen.output.accept and seen.output.rating == 4.0
    assert designer.models["planner"].remaining == 0 and designer.models["reviewer"].remaining == 0


def test_coder_retry_sees_the_checker_report(gpt2):
    designer = scripted_designer()
    designer.implement(coder_ctx(gpt2))
    tree = _tree_after_mha(gpt2)
    ctx = dict(proposal=proposal(), plan=plan(), task=plan().tasks[1], tree=tree.to_dict(), view=tree.view(),
               declaration=tree.declares["ShortConv"].to_dict(), protected=PROTECTED)
    first = designer.implement(CoderContext(**ctx))
    assert first.ok and "padding=conv_kernel // 2" in first.output.code
    report = "- **causality** (ShortConv line 22): changing tokens at positions >= t changes outputs before t"
    fixed = designer.implement(CoderContext(**ctx, feedback=[report], attempt=2))
    assert fixed.ok and "F.pad" in fixed.output.code and "line 22" in fixed.output.rationale
    sent = designer.models["coder"].requests[-1]["messages"][-1].content
    assert "Attempt 2" in sent and "ShortConv line 22" in sent
    assert "MHA, which instantiates ShortConv" in sent  # the caller's code is shown


def _tree_after_mha(gpt2) -> UnitTree:
    mha = UnitCode.model_validate(answer(SESSION["coder"], 0))
    decl = mha.new_children[0]
    return gpt2.replace("MHA", mha.code, args=mha.args,
                        declares={decl.name: UnitDecl(decl.name, decl.requirements, decl.inputs, decl.outputs)})


def test_coder_transcript_code_composes_into_a_complete_tree(gpt2):
    """The transcript's units are real GAU code: they parse, and the tree they make is complete."""
    tree = _tree_after_mha(gpt2)
    assert tree.missing() == ["ShortConv"]
    for index in (1, 2):
        unit = UnitCode.model_validate(answer(SESSION["coder"], index))
        done = tree.replace("ShortConv", unit.code, args=unit.args, spec=UnitSpec("ShortConv", unit.document))
        assert done.validate(complete=True).missing() == []
        assert "class ShortConv" in done.compose()


@pytest.mark.slow
def test_coder_transcript_passes_and_fails_the_real_checker(gpt2):
    from verifier.checker import check_tree

    tree = _tree_after_mha(gpt2)
    reports = []
    for index in (1, 2):
        unit = UnitCode.model_validate(answer(SESSION["coder"], index))
        done = tree.replace("ShortConv", unit.code, args=unit.args, spec=UnitSpec("ShortConv", unit.document))
        reports.append(check_tree(done)[1])
    assert not reports[0].ok and "causality" in reports[0].to_markdown()
    assert reports[1].ok, reports[1].to_markdown()


# ---------------------------------------------------------------- schema failures and the repair round


def test_prose_gets_one_repair_round_then_parses(parent):
    model = scripted([{"content": "I think attention could use a convolution. It should help.",
                       "usage": {"input": 900, "output": 15}},
                      structured("Proposal", answer(SESSION["proposer"], 0))])
    call = LLMDesigner({r: model for r in ("proposer", "reviewer", "planner", "coder", "observer")}).propose(
        ProposalContext(mode="mutation", parents=[parent]))
    assert call.ok and call.error is None and len(call.usage) == 2
    repair = model.requests[1]["messages"]
    assert isinstance(repair[-2], AIMessage) and "convolution" in repair[-2].content
    assert "prose, not the Proposal object" in repair[-1].content


def test_repair_that_fails_is_a_recorded_failure():
    model = scripted([{"content": "Looks fine to me, accept."}, {"content": "Yes, I accept it, 5 out of 5."}])
    call = ask("reviewer", model, Review, [], prices=PriceTable())
    assert not call.ok and call.output is None and len(call.usage) == 2
    assert call.error.startswith("reviewer: no usable Review after one repair round")
    assert "prose" in call.error


def test_out_of_range_rating_is_sent_back_by_field():
    bad = answer(SESSION["reviewer"], 0) | {"ratings": {"novelty": 7, "soundness": 3, "feasibility": 4,
                                                         "expected_gain": 3}}
    model = scripted([structured("Review", bad), structured("Review", answer(SESSION["reviewer"], 0))])
    call = ask("reviewer", model, Review, [], prices=PriceTable())
    assert call.ok and call.output.ratings.novelty == 3
    repair = model.requests[1]["messages"][-1].content
    assert "ratings.novelty: Input should be less than or equal to 5 (got 7)" in repair


def test_json_text_answer_is_accepted_without_repair():
    """json_schema-mode providers answer with JSON text (sometimes fenced) instead of a tool call."""
    text = "```json\n" + json.dumps(answer(SESSION["planner"], 0)) + "\n```"
    model = scripted([{"content": text, "usage": {"input": 10, "output": 5}}])
    call = ask("planner", model, Plan, [], prices=PriceTable())
    assert call.ok and call.output.tasks[0].unit == "MHA" and len(call.usage) == 1


def test_model_without_native_structured_output_answers_in_text():
    model = FakeMessagesListChatModel(responses=[AIMessage(json.dumps(answer(SESSION["observer"], 1)))])
    call = ask("observer", model, Observation, [], prices=PriceTable())
    assert call.ok and call.output.accept is False and call.output.rating == 2.0


def test_coder_wrong_unit_and_protected_unit_are_repaired(gpt2):
    short_conv = answer(SESSION["coder"], 2)
    gelu = gpt2.units["GeluMLP"].code
    model = scripted([structured("UnitCode", short_conv),  # code for the wrong unit
                      structured("UnitCode", answer(SESSION["coder"], 0) | {"code": answer(SESSION["coder"], 0)["code"]
                                                                          + "\n\n" + gelu})])
    call = LLMDesigner({r: model for r in ("proposer", "reviewer", "planner", "coder", "observer")}).implement(
        coder_ctx(gpt2))
    assert not call.ok
    first, second = model.requests[1]["messages"][-1].content, call.error
    assert "the task is unit 'MHA'" in first and "it defines ShortConv" in first
    assert "redefines protected unit(s) GeluMLP" in second


def test_coder_code_that_does_not_parse_is_repaired(gpt2):
    broken = answer(SESSION["coder"], 0) | {"code": "class MHA(GAUBase):\n    def _forward(self, X, **Z)\n"}
    model = scripted([structured("UnitCode", broken), structured("UnitCode", answer(SESSION["coder"], 0))])
    from agents.coder import implement

    call = implement(model, coder_ctx(gpt2), prices=PriceTable())
    assert call.ok and "does not parse: line 2" in model.requests[1]["messages"][-1].content


def test_mutation_must_select_a_unit_of_the_parent(parent):
    wrong = answer(SESSION["proposer"], 0) | {"selected_unit": "Attention"}
    model = scripted([structured("Proposal", wrong), structured("Proposal", wrong)])
    from agents.proposer import propose

    call = propose(model, ProposalContext(mode="mutation", parents=[parent]), prices=PriceTable())
    assert not call.ok and "must select one unit of gpt2: GPT2Block, GeluMLP, LayerNorm, MHA" in call.error


# ---------------------------------------------------------------- tools


def test_bad_tool_calls_go_back_to_the_model_as_errors():
    tools = fake_knowledge_tools()
    model = scripted([
        {"tool_calls": [{"name": "search_library", "args": {"k": 3}, "id": "a"},           # query missing
                        {"name": "search_library", "args": {"query": "x", "k": "many"}, "id": "b"},
                        {"name": "search_arxiv", "args": {"query": "ssm"}, "id": "c"}]},  # no such tool
        {"content": "The searches failed; I will answer from what I know."},
        structured("Review", answer(SESSION["reviewer"], 1)),
    ])
    call = ask("reviewer", model, Review, [], prices=PriceTable(), tools=tools, max_tool_rounds=3)
    assert call.ok
    replies = [m for m in model.requests[1]["messages"] if isinstance(m, ToolMessage)]
    assert [m.status for m in replies] == ["error"] * 3
    assert "query: field required" in replies[0].content
    assert "k: Input should be a valid integer" in replies[1].content
    assert "no tool named 'search_arxiv'" in replies[2].content
    assert model.requests[2]["tools"] == ["Review"]  # then the structured answer, tools no longer offered


def test_unparsable_tool_arguments_are_answered():
    bad = AIMessage(content="", invalid_tool_calls=[{"name": "search_library", "args": "{query: 'ssm'",
                                                      "id": "bad1", "error": "not JSON", "type": "invalid_tool_call"}])
    model = ScriptedChatModel(script=[bad, AIMessage("done"), AIMessage(json.dumps(answer(SESSION["planner"], 0)))])
    call = ask("planner", model, Plan, [], prices=PriceTable(), tools=fake_knowledge_tools(), max_tool_rounds=2)
    assert call.ok
    reply = next(m for m in model.requests[1]["messages"] if isinstance(m, ToolMessage))
    assert reply.tool_call_id == "bad1" and "not valid JSON" in reply.content


def test_tool_rounds_are_bounded():
    search = {"tool_calls": [{"name": "search_library", "args": {"query": "more"}}]}
    model = scripted([search, search, structured("Review", answer(SESSION["reviewer"], 1))])
    call = ask("reviewer", model, Review, [], prices=PriceTable(), tools=fake_knowledge_tools(), max_tool_rounds=2)
    assert call.ok and call.output.verdict == "accept"
    assert [len(r["tools"]) for r in model.requests[:3]] == [5, 5, 1]  # two rounds, then the answer is asked for
    assert "do not call any more tools" in model.requests[2]["messages"][-1].content


# ---------------------------------------------------------------- provider failures


@pytest.mark.parametrize("entry, words", [
    ({"error": "timeout", "message": "Request timed out after 180 s"}, "timed out"),
    ({"error": "provider", "message": "502 Bad Gateway"}, "ProviderError: 502 Bad Gateway"),
])
def test_provider_failure_is_a_failed_role_call(entry, words):
    model = scripted([{"tool_calls": [{"name": "similar_designs", "args": {"description": "x"}}],
                       "usage": {"input": 500, "output": 20}}, entry], model_name="scripted-reviewer")
    call = ask("reviewer", model, Review, [], prices=PriceTable(), tools=fake_knowledge_tools(), max_tool_rounds=3)
    assert not call.ok and words in call.error and call.error.startswith("reviewer: fake:scripted-reviewer failed")
    assert [u.prompt_tokens for u in call.usage] == [500]  # what was spent before the failure is kept


def test_provider_failure_in_the_repair_round():
    model = ScriptedChatModel(script=[AIMessage("prose"), ProviderError("overloaded")])
    call = ask("planner", model, Plan, [], prices=PriceTable())
    assert not call.ok and "ProviderError: overloaded" in call.error and len(call.usage) == 1


# ---------------------------------------------------------------- costs


def test_usage_is_priced_per_model():
    table = PriceTable({"fake:scripted-proposer": (3.0, 15.0)})
    usage = table.usage("proposer", "fake:scripted-proposer", 7050, 612)
    assert usage.dollars == pytest.approx((7050 * 3 + 612 * 15) / 1e6)
    assert table.lookup("openai:gpt-4.1-2025-04-14")[0] == Price(2.0, 8.0)  # dated snapshot by prefix
    assert table.lookup("openai:gpt-4.1-mini")[0] == Price(0.4, 1.6)  # the longest prefix wins
    price, note = table.lookup("ollama:qwen2.5-coder:7b")
    assert price.cost(10**6, 10**6) == 0 and "local model" in note
    price, note = table.lookup("openai:gpt-9")
    assert price == Price(0, 0) and "no price in the table" in note


def test_session_costs_add_up_per_role_design_and_run(parent):
    prices = {"fake:scripted-proposer": (2.0, 8.0), "fake:scripted-reviewer": (1.0, 4.0)}
    designer = scripted_designer(prices=prices)
    ledger = Ledger()
    p = designer.propose(ProposalContext(mode="mutation", parents=[parent]))
    r = designer.review(ReviewContext(proposal=p.output))
    ledger.add("d1", p.usage + r.usage)
    ledger.add("d2", [Usage("coder", "openai:gpt-4.1", 1000, 1000, 0.01)])
    proposer_dollars = (6120 + 6490 + 6910 + 7050) * 2e-6 + (48 + 96 + 87 + 612) * 8e-6
    reviewer_dollars = (5230 + 5410) * 1e-6 + (44 + 386) * 4e-6
    assert ledger.by_role("d1")["proposer"].dollars == pytest.approx(proposer_dollars)
    assert ledger.by_role("d1")["reviewer"].calls == 2
    assert ledger.design("d1").dollars == pytest.approx(proposer_dollars + reviewer_dollars)
    assert ledger.run().dollars == pytest.approx(proposer_dollars + reviewer_dollars + 0.01)
    assert set(ledger.by_design()) == {"d1", "d2"}
    assert Ledger.from_list(json.loads(json.dumps(ledger.to_list()))).run() == ledger.run()


def test_budgets_say_why_spending_stops():
    budget = Budget(per_design=0.05, per_run=1.0, per_design_tokens=20_000)
    assert budget.over_budget(0.01, 0.5) is None
    assert "design budget reached: $0.0500 spent of $0.0500" in budget.over_budget(0.05, 0.5)
    assert budget.over_budget(0.01, 1.2).startswith("run budget reached")
    spent = total([Usage("coder", "ollama:x", 15_000, 6_000, 0.0)])
    assert spent == Totals(1, 15_000, 6_000, 0.0)
    assert "design token budget reached: 21000 tokens" in budget.over_budget(spent)


# ---------------------------------------------------------------- configuration


def test_config_from_file_env_and_flags(tmp_path):
    path = tmp_path / "llm.toml"
    path.write_text('[agents]\nmodel = "openai:gpt-4.1"\nmax_tool_rounds = 2\n'
                    '[agents.roles.coder]\nmodel = "anthropic:claude-sonnet-4-5"\n'
                    'temperature = 0.0\nmax_tokens = 12000\n'
                    '[agents.prices."openai:gpt-4.1"]\ninput = 1.0\noutput = 4.0\n')
    config = load_config(path, env={"GENESYS_LLM_OBSERVER": "ollama:qwen2.5:7b"},
                         flags=["reviewer=openai:gpt-4.1-mini"])
    coder = config.role("coder")
    assert (coder.model, coder.temperature, coder.max_tokens) == ("anthropic:claude-sonnet-4-5", 0.0, 12000)
    assert config.role("proposer").model == "openai:gpt-4.1" and config.role("proposer").temperature == 0.7
    assert config.role("observer").model == "ollama:qwen2.5:7b" and config.role("observer").name == "qwen2.5:7b"
    assert config.role("reviewer").model == "openai:gpt-4.1-mini" and config.max_tool_rounds == 2
    assert config.price_table().lookup("openai:gpt-4.1")[0] == Price(1.0, 4.0)
    assert load_config(path, env={"GENESYS_LLM": "ollama:llama3.1:8b"}).role("planner").model == "ollama:llama3.1:8b"


def test_config_json_and_defaults(tmp_path):
    path = tmp_path / "llm.json"
    path.write_text(json.dumps({"model": "ollama:qwen2.5-coder:7b", "base_url": "http://127.0.0.1:11434",
                                "budget_per_design": 0.5}))
    config = load_config(path, env={})
    assert config.role("coder").base_url == "http://127.0.0.1:11434" and config.budget().per_design == 0.5
    assert not load_config(env={}).enabled


@pytest.mark.parametrize("flag, words", [
    ("gpt-4.1", "must be 'provider:model'"),
    ("coder=openia:gpt-4.1", "unknown provider 'openia'"),
    ("writer=openai:gpt-4.1", "unknown role 'writer'"),
])
def test_bad_flags_are_clear_errors(flag, words):
    with pytest.raises(AgentsConfigError, match=words):
        load_config(env={}, flags=[flag])


def test_parse_llm_flag_keeps_colons_of_ollama_tags():
    assert parse_llm_flag("coder=ollama:qwen2.5-coder:7b") == ("coder", "ollama:qwen2.5-coder:7b")
    assert parse_llm_flag("anthropic:claude-sonnet-4-5") == (None, "anthropic:claude-sonnet-4-5")


def test_bad_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / "llm.toml"
    path.write_text('model = "openai:gpt-4.1"\ntemperature = "warm"\n')
    with pytest.raises(AgentsConfigError, match="temperature: Input should be a valid number"):
        load_config(path, env={})
    with pytest.raises(AgentsConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_missing_credentials_fail_at_start_naming_the_variable():
    config = load_config(env={"GENESYS_LLM": "openai:gpt-4.1", "GENESYS_LLM_CODER": "anthropic:claude-sonnet-4-5"})
    with pytest.raises(AgentsConfigError) as error:
        build_models(config, env={"OPENAI_API_KEY": "sk-test"})
    message = str(error.value)
    assert message.startswith("ANTHROPIC_API_KEY is not set; needed by coder (anthropic:claude-sonnet-4-5)")
    assert "OPENAI_API_KEY" not in message
    with pytest.raises(AgentsConfigError, match="OPENAI_API_KEY is not set; needed by proposer"):
        check_credentials(config, env={})


def test_local_backends_need_no_key():
    local = load_config(env={"GENESYS_LLM": "openai:Qwen2.5-7B-Instruct",
                             "GENESYS_LLM_BASE_URL": "http://127.0.0.1:8000/v1",
                             "GENESYS_LLM_OBSERVER": "ollama:qwen2.5:7b"})
    models = build_models(local, env={})
    assert model_label(models["coder"]) == "openai-compatible:Qwen2.5-7B-Instruct"
    assert models["planner"].max_tokens == 2000 and models["proposer"].temperature == 0.7
    assert models["coder"].max_tokens == 8000 and models["coder"].openai_api_base == "http://127.0.0.1:8000/v1"
    assert model_label(models["observer"]) == "ollama:qwen2.5:7b" and models["observer"].num_predict == 1500


def test_hosted_backends_build_with_keys():
    config = AgentsConfig(model="anthropic:claude-sonnet-4-5", roles={"coder": {"model": "openai:gpt-4.1"}})
    models = build_models(config, env={"ANTHROPIC_API_KEY": "sk-ant-test", "OPENAI_API_KEY": "sk-test"})
    assert model_label(models["proposer"]) == "anthropic:claude-sonnet-4-5"
    assert model_label(models["coder"]) == "openai:gpt-4.1"


def test_load_designer_picks_symbolic_without_an_llm():
    symbolic = pytest.importorskip("agents.symbolic")
    assert isinstance(load_designer(env={}), symbolic.SymbolicDesigner)


def test_load_designer_builds_llm_designer_and_fails_cleanly_without_keys():
    designer = load_designer(env={"GENESYS_LLM": "ollama:qwen2.5:7b"})
    assert isinstance(designer, LLMDesigner) and designer.name == "ollama:qwen2.5:7b"
    with pytest.raises(AgentsConfigError, match="OPENAI_API_KEY"):
        load_designer(env={"GENESYS_LLM": "openai:gpt-4.1"})


def test_designer_needs_every_role():
    with pytest.raises(ValueError, match="missing: coder, observer"):
        LLMDesigner({r: scripted([]) for r in ("proposer", "reviewer", "planner")})


def test_unit_task_names_are_checked_by_the_planner(parent):
    bad = Plan(tasks=[UnitTask(unit="Short Conv", action="new", description="x")]).model_dump()
    model = scripted([structured("Plan", bad), structured("Plan", answer(SESSION["planner"], 0))])
    from agents.planner import plan as run_plan

    call = run_plan(model, PlanContext(proposal=proposal(), parents=[parent]), prices=PriceTable())
    assert call.ok and "must be Python class names: 'Short Conv'" in model.requests[1]["messages"][-1].content
