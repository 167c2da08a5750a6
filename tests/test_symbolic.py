"""The symbolic designer: each operator makes the edit it names, deterministically, through the real checker."""

import pytest

from agents.base import (CoderContext, ObserverContext, ParentBrief, PlanContext, ProposalContext, ReviewContext)
from agents.mutations import (ROLE, Edit, RecipeError, apply_recipe, apply_unit_code, build_recipe,
                              candidate_edits, initial_tree, label, outside, rename_code)
from agents.schemas import Proposal, Review, UnitCode
from agents.symbolic import SymbolicDesigner
from designs.seeds import load_seed
from designs.tree import normalize_code
from verifier.checker import CheckOptions, check_tree
from verifier.report import CheckReport
from verifier.sandbox import Limits

# TTT-Linear and RWKV-6 time mixing loop over mini-batches and small chunks: correct, but their
# functional checks take minutes on a loaded 2-core machine, so the checker tests leave them out.
QUICK_DONORS = tuple(u for u in ROLE if u not in ("TTTLinear", "RWKV6TimeMix"))
BUSY_MACHINE = CheckOptions(limits=Limits(timeout_s=600, memory_mb=8192))


def brief(name: str) -> ParentBrief:
    tree = load_seed(name)
    return ParentBrief(name=name, tree=tree.to_dict(), view=tree.view())


def edit_of(operator: str, parents: list, **match) -> Edit:
    mode = "scratch" if operator == "scratch" else "crossover" if operator in ("graft", "cross_interleave") \
        else "mutation"
    for edit in candidate_edits(mode, parents):
        if edit.operator == operator and all(edit.params.get(k) == v for k, v in match.items()):
            return edit
    raise AssertionError(f"no {operator} edit with {match}")


def child_of(operator: str, parents: list, **match):
    recipe = build_recipe(edit_of(operator, parents, **match), parents)
    return recipe, apply_recipe(recipe, parents[0] if recipe["base"] else None)


def assert_kept(parent, child, selected):
    """Every unit of the parent outside the selected unit's subtree is unchanged in the child."""
    for name in outside(parent, selected):
        assert normalize_code(child.units[name].code) == normalize_code(parent.units[name].code), name
        assert child.units[name].args == parent.units[name].args, name


# ---------------------------------------------------------------- operators


def test_swap_puts_the_donor_in_the_slot():
    gpt2 = load_seed("gpt2")
    recipe, child = child_of("swap", [gpt2], donor="GatedLinearAttention")
    assert label(child, "MHA") == "GatedLinearAttention" and "class MHA(GAUBase)" in child.units["MHA"].code
    assert child.units["MHA"].args["gla_heads"] == 4 and "n_heads" not in child.units["MHA"].args
    assert_kept(gpt2, child, "MHA")
    assert child.fingerprint() != gpt2.fingerprint()


def test_swap_of_norm_and_ffn():
    _, child = child_of("swap", [load_seed("gpt2")], donor="RMSNorm")
    assert label(child, "LayerNorm") == "RMSNorm"
    _, child = child_of("swap", [load_seed("llama")], donor="GeluMLP")
    assert label(child, "SwiGLU") == "GeluMLP" and child.units["SwiGLU"].args["mlp_ratio"] == 4.0


def test_insert_conv_wraps_the_mixer_and_keeps_it():
    llama = load_seed("llama")
    recipe, child = child_of("insert_conv", [llama])
    assert label(child, "MHA") == "ConvMixer" and child.units["MHA"].args == {"short_conv_size": 4}
    assert child.units["MHA"].children == ["MHACore"] and label(child, "MHACore") == "MHA"
    assert child.units["MHACore"].args == llama.units["MHA"].args
    assert rename_code(child.units["MHACore"].code, {"MHACore": "MHA"}).count("class MHA(GAUBase)") == 1
    assert [(e["unit"], e["action"]) for e in recipe["units"]] == [("MHA", "modify"), ("MHACore", "new")]
    assert_kept(llama, child, "MHA")


def test_insert_gate_wraps_the_mixer():
    _, child = child_of("insert_gate", [load_seed("deltanet")])
    assert label(child, "DeltaNetMixer") == "GatedMixer"
    assert [label(child, c) for c in child.units["DeltaNetMixer"].children] == ["DeltaNetMixer"]


def test_interleave_routes_layers_by_block_loc():
    gpt2 = load_seed("gpt2")
    _, child = child_of("interleave", [gpt2], donor="Mamba2Mixer")
    router = child.units["MHA"]
    assert label(child, "MHA") == "LayerRouter" and router.args == {"mha_every": 2}
    assert "self.block_loc[0]" in router.code and "mha_every" in router.code
    assert sorted(label(child, c) for c in router.children) == ["MHA", "Mamba2Mixer"]
    assert child.kwarg_all()["mamba2_state_size"] == 32
    assert_kept(gpt2, child, "MHA")


def test_hyper_changes_one_argument_only():
    gpt2 = load_seed("gpt2")
    _, child = child_of("hyper", [gpt2], key="n_heads", value=8)
    assert child.units["MHA"].args == {**gpt2.units["MHA"].args, "n_heads": 8}
    assert child.units["MHA"].code == gpt2.units["MHA"].code
    assert_kept(gpt2, child, "MHA")


def test_crossover_grafts_a_unit_of_the_second_parent():
    gpt2, mamba2 = load_seed("gpt2"), load_seed("mamba2")
    recipe, child = child_of("graft", [gpt2, mamba2], donor_slot="Mamba2Mixer")
    assert recipe["parents"] == ["gpt2", "mamba2"] and recipe["selected"] == "MHA"
    assert label(child, "MHA") == "Mamba2Mixer" and child.units["MHA"].args == mamba2.units["Mamba2Mixer"].args
    assert_kept(gpt2, child, "MHA")


def test_crossover_interleaves_both_parents_mixers():
    llama, gla = load_seed("llama"), load_seed("gla")
    _, child = child_of("cross_interleave", [llama, gla], donor_slot="GatedLinearAttention")
    assert sorted(label(child, c) for c in child.units["MHA"].children) == ["GatedLinearAttention", "MHA"]
    assert child.units["GatedLinearAttention"].args == gla.units["GatedLinearAttention"].args


def test_scratch_assembles_a_new_block():
    recipe, child = child_of("scratch", [], norm="RMSNorm", ffn="GeluMLP", mixers=["MultiScaleRetention"])
    assert child.root == "RetGeluBlock" and label(child, child.root) == "PreNormBlock"
    assert sorted(child.units[child.root].children) == ["GeluMLP", "MultiScaleRetention", "RMSNorm"]
    assert recipe["parents"] == [] and recipe["units"][0]["action"] == "new"


def test_scratch_never_rebuilds_a_seed():
    titles = {e.title for e in candidate_edits("scratch", [])}
    assert "From scratch: RMSNorm + MHA + SwiGLU" not in titles  # that is llama
    assert "From scratch: RMSNorm + MHA + GeluMLP" in titles


def test_wrapping_twice_keeps_names_unique():
    """A second generation wraps a wrapped mixer: the old subtree moves under fresh names."""
    llama = load_seed("llama")
    _, first = child_of("insert_conv", [llama])
    # the slot now holds a ConvMixer, not a library mixer: no second wrapper of the same kind is offered
    assert not [e for e in candidate_edits("mutation", [first]) if e.operator in ("insert_conv", "insert_gate")]
    recipe, second = child_of("interleave", [first], donor="GatedLinearAttention")
    labels = sorted(label(second, n) for n in second.reachable())
    assert labels.count("MHA") == 1 and labels.count("ConvMixer") == 1 and "LayerRouter" in labels
    assert {"MHACore", "MHACore2"} <= set(second.units)  # the old wrapper moved to a fresh name
    assert len(second.reachable()) == len(set(second.reachable()))


def test_rename_code_leaves_attributes_and_strings():
    code = 'x = nn.LayerNorm(4)\ny = LayerNorm(**kw)  # LayerNorm\nz = "LayerNorm"\n'
    assert rename_code(code, {"LayerNorm": "RMSNorm"}) == \
        'x = nn.LayerNorm(4)\ny = RMSNorm(**kw)  # LayerNorm\nz = "LayerNorm"\n'


# ---------------------------------------------------------------- the roles


def test_proposal_is_deterministic_by_seed_and_varies_across_seeds():
    designer = SymbolicDesigner(measure=False)
    ctx = ProposalContext(mode="mutation", parents=[brief("retnet")], seed=7)
    first, again = designer.propose(ctx).output, designer.propose(ctx).output
    assert first.model_dump() == again.model_dump()
    titles = {designer.propose(ctx.model_copy(update={"seed": s})).output.title for s in range(12)}
    assert len(titles) >= 5  # operators with a single edit (a conv, a gate) repeat; siblings rule those out
    assert {t.split(" ")[0] for t in titles} >= {"Replace", "Interleave"}


def test_proposal_text_and_recipe():
    proposal = SymbolicDesigner(measure=False).propose(
        ProposalContext(mode="mutation", parents=[brief("gpt2")], seed=1, references=["gla-2023", "no-such-id"])).output
    assert proposal.mode == "mutation" and proposal.parents == ["gpt2"] and proposal.selected_unit
    assert len(proposal.motivation) > 60 and len(proposal.idea) > 60 and proposal.expected_effect and proposal.risks
    assert "gla-2023" in proposal.references and "no-such-id" not in proposal.references
    restored = Proposal.model_validate_json(proposal.model_dump_json())
    assert apply_recipe(restored.recipe, load_seed("gpt2")).fingerprint() == \
        apply_recipe(proposal.recipe, load_seed("gpt2")).fingerprint()


def test_siblings_and_the_reviewed_proposal_are_not_repeated():
    designer = SymbolicDesigner(measure=False)
    ctx = ProposalContext(mode="mutation", parents=[brief("gla")], seed=3)
    first = designer.propose(ctx).output
    assert designer.propose(ctx.model_copy(update={"siblings": [first.title]})).output.title != first.title
    review = Review.model_validate({"ratings": {"novelty": 1, "soundness": 4, "feasibility": 3, "expected_gain": 1},
                                    "overall": 2, "verdict": "reject", "summary": "Duplicate of an archived design."})
    revised = designer.propose(ctx.model_copy(update={"previous": first, "reviews": [review]})).output
    assert revised.title != first.title and revised.motivation.startswith("Revised after review")


def test_review_rejects_a_duplicate_fingerprint():
    designer = SymbolicDesigner(measure=False)
    parents = [brief("llama")]
    proposal = designer.propose(ProposalContext(mode="mutation", parents=parents, seed=0)).output
    fingerprint = apply_recipe(proposal.recipe, load_seed("llama")).fingerprint()
    fresh = designer.review(ReviewContext(proposal=proposal, parents=parents)).output
    assert fresh.verdict == "accept" and fresh.overall >= 4.0
    dup = designer.review(ReviewContext(proposal=proposal, parents=parents, known_fingerprints=[fingerprint])).output
    assert dup.verdict == "reject" and dup.ratings.novelty == 1 and dup.overall <= 2 and dup.suggestions
    near = designer.review(ReviewContext(proposal=proposal, parents=parents,
                                         nearest=["- llama-gated (similarity 0.98)"])).output
    assert near.ratings.novelty < fresh.ratings.novelty and near.verdict == "revise"


def test_review_measures_parameters_and_flops_in_the_sandbox():
    parents = [brief("gpt2")]
    proposal = SymbolicDesigner(measure=False).propose(
        ProposalContext(mode="mutation", parents=parents, seed=0)).output
    review = SymbolicDesigner(measure=True).review(ReviewContext(proposal=proposal, parents=parents)).output
    assert "Measured in the sandbox at d_model 128" in review.summary and "MFLOPs per token" in review.summary
    assert 1 <= review.ratings.feasibility <= 5


def test_plan_and_coder_rebuild_the_recipe_unit_by_unit():
    designer = SymbolicDesigner(measure=False)
    parents = [brief("hyena"), brief("gla")]
    proposal = designer.propose(ProposalContext(mode="crossover", parents=parents, seed=2)).output
    plan = designer.plan(PlanContext(proposal=proposal, parents=parents)).output
    assert plan.tasks[0].unit == proposal.selected_unit and plan.tasks[0].action == "modify"
    for task in plan.tasks[1:]:  # "reuse" only for code the graph could graft from "design:Unit" as is
        assert task.action == "new" or task.source.split(":")[1] == task.unit
    tree = initial_tree(proposal.recipe, load_seed("hyena"))
    for task in plan.tasks:
        ctx = CoderContext(proposal=proposal, plan=plan, task=task, tree=tree.to_dict(), view=tree.view())
        code = designer.implement(ctx).output
        assert code.unit == task.unit and f"class {task.unit}(GAUBase)" in code.code
        tree = apply_unit_code(tree, code)
    assert not tree.missing()
    assert tree.fingerprint() == apply_recipe(proposal.recipe, load_seed("hyena")).fingerprint()


def test_scratch_plan_starts_from_a_declared_root():
    designer = SymbolicDesigner(measure=False)
    proposal = designer.propose(ProposalContext(mode="scratch", seed=5)).output
    plan = designer.plan(PlanContext(proposal=proposal)).output
    tree = initial_tree(proposal.recipe, None)
    assert tree.missing() == [tree.root]
    code = designer.implement(CoderContext(proposal=proposal, plan=plan, task=plan.tasks[0], tree=tree.to_dict(),
                                           view=tree.view())).output
    tree = apply_unit_code(tree, code)
    assert sorted(tree.missing()) == sorted(c.name for c in code.new_children) == sorted(plan.tasks[0].children)


def test_coder_honors_protected_units_and_does_not_loop():
    designer = SymbolicDesigner(measure=False)
    parents = [brief("gpt2")]
    proposal = designer.propose(ProposalContext(mode="mutation", parents=parents, seed=4)).output
    plan = designer.plan(PlanContext(proposal=proposal, parents=parents)).output
    tree = load_seed("gpt2").to_dict()
    base = dict(proposal=proposal, plan=plan, task=plan.tasks[0], tree=tree, view="")
    protected = designer.implement(CoderContext(**base, protected=[plan.tasks[0].unit]))
    assert not protected.ok and "protected" in protected.error
    retry = designer.implement(CoderContext(**base, attempt=2, feedback=["- **causality**: the future leaks"]))
    assert not retry.ok and "retry" in retry.error
    transient = designer.implement(CoderContext(**base, attempt=2, feedback=["- **sandbox.timeout**: ran out"]))
    assert transient.ok


def test_observer_rates_from_the_report():
    designer = SymbolicDesigner(measure=False)
    proposal = designer.propose(ProposalContext(mode="scratch", seed=0)).output
    task = designer.plan(PlanContext(proposal=proposal)).output.tasks[0]
    code = UnitCode(unit=task.unit, code="class X: pass")
    report = CheckReport(design="d", stages=["format", "functional"], metrics={"warnings_seen": 0})
    good = designer.observe(ObserverContext(proposal=proposal, task=task, code=code, report=report.to_markdown(),
                                            report_ok=True)).output
    assert good.accept and good.rating == 5
    report.warn("efficiency.memory", "training memory 2.1x what GPT-2 needs")
    warned = designer.observe(ObserverContext(proposal=proposal, task=task, code=code, report=report.to_markdown(),
                                              report_ok=True)).output
    assert warned.accept and warned.rating == 4 and "efficiency.memory" in warned.notes
    report.error("causality", "position 3 changes when token 7 changes", "mask the future", "MHA", 12)
    bad = designer.observe(ObserverContext(proposal=proposal, task=task, code=code, report=report.to_markdown(),
                                           report_ok=False)).output
    assert not bad.accept and bad.rating <= 2 and "causality" in bad.notes and "MHA line 12" in bad.notes


def test_bad_input_is_a_failed_role_call():
    designer = SymbolicDesigner(measure=False)
    assert "needs a parent" in designer.propose(ProposalContext(mode="mutation")).error
    assert "two parents" in designer.propose(ProposalContext(mode="crossover", parents=[brief("gpt2")])).error
    prose = Proposal(title="t", mode="mutation", motivation="m", idea="i", expected_effect="e")
    assert not designer.review(ReviewContext(proposal=prose)).ok
    assert not designer.plan(PlanContext(proposal=prose)).ok
    with pytest.raises(RecipeError, match="edits design 'gpt2'"):
        recipe = build_recipe(edit_of("hyper", [load_seed("gpt2")]), [load_seed("gpt2")])
        apply_recipe(recipe, load_seed("llama"))


# ---------------------------------------------------------------- through the checker


def distinct_designs(count: int, donors=QUICK_DONORS) -> list:
    """`count` designs with distinct fingerprints, proposed by the designer across seeds, modes and parents."""
    designer = SymbolicDesigner(measure=False, donors=donors)
    contexts = [("mutation", [s]) for s in ("gpt2", "llama", "gla", "retnet", "deltanet", "mamba2", "hyena",
                                             "gated_deltanet", "hybrid")]
    contexts += [("crossover", ["gpt2", "gla"]), ("crossover", ["retnet", "mamba2"]), ("scratch", [])]
    designs, seen, seed = [], set(), 0
    while len(designs) < count:
        mode, names = contexts[seed % len(contexts)]
        proposal = designer.propose(ProposalContext(mode=mode, parents=[brief(n) for n in names], seed=seed)).output
        tree = apply_recipe(proposal.recipe, load_seed(names[0]) if names and mode != "scratch" else None)
        if tree.fingerprint() not in seen:
            seen.add(tree.fingerprint())
            designs.append((proposal.title, tree))
        seed += 1
    return designs


def test_many_designs_pass_the_format_check():
    designs = distinct_designs(36, donors=None)
    for title, tree in designs:
        _, report = check_tree(tree, functional=False)
        assert report.ok, f"{title}: {report.to_markdown()}"
    assert len({tree.fingerprint() for _, tree in designs}) == 36


@pytest.mark.slow  # the 20-design run (slow too) covers every operator; ~45 s of checks
@pytest.mark.parametrize("operator, parents, match", [
    ("insert_conv", ["gpt2"], {}),
    ("cross_interleave", ["llama", "gla"], {"donor_slot": "GatedLinearAttention"}),
])
def test_designs_pass_the_functional_check(operator, parents, match):
    _, child = child_of(operator, [load_seed(p) for p in parents], **match)
    _, report = check_tree(child, BUSY_MACHINE)
    assert report.ok, report.to_markdown()


@pytest.mark.slow
@pytest.mark.timeout(3600)  # 20 functional checks: about 5 minutes on a quiet machine, 15+ on a loaded one
def test_twenty_distinct_designs_pass_the_checker():
    designs = distinct_designs(20)
    failed = []
    for title, tree in designs:
        _, report = check_tree(tree, BUSY_MACHINE)
        print(f"{'ok  ' if report.ok else 'FAIL'} {report.metrics.get('sandbox_seconds', 0):6.1f} s  {title}")
        if not report.ok:
            failed.append(f"{title}: {report.to_markdown()[:600]}")
    assert not failed, "\n".join(failed)
    assert len({tree.fingerprint() for _, tree in designs}) == 20


def test_feasibility_rejects_what_the_checker_would_refuse_on_flops():
    """A design whose compute per token at matched parameters is past the checker's limit against GPT-2
    (3.0x, with a 10% margin for the estimate) is rated 1 even when its parent is just as costly."""
    from agents.symbolic import _feasibility

    gpt2 = {"non_embedding_params": 800_000, "flops_train_per_token": 5_000_000}
    parent = {"non_embedding_params": 800_000, "flops_train_per_token": 12_000_000}  # 2.4x GPT-2
    heavy = {"non_embedding_params": 800_000, "flops_train_per_token": 13_600_000}  # 2.72x GPT-2
    light = {"non_embedding_params": 800_000, "flops_train_per_token": 12_400_000}  # 2.48x GPT-2
    score, sentence = _feasibility({"child": heavy, "reference": parent, "reference_name": "gdn", "gpt2": gpt2})
    assert score == 1 and "2.72x" in sentence and "refuses more than 3.0x" in sentence
    score, sentence = _feasibility({"child": light, "reference": parent, "reference_name": "gdn", "gpt2": gpt2})
    assert score == 5 and "Against GPT-2: about 2.48x" in sentence
    assert _feasibility({"child": heavy, "reference": parent, "reference_name": "gdn"})[0] == 5  # no GPT-2 figure
