"""The agents' knowledge tools and the `library` CLI, on the shared indexed store.

External search is mocked with respx; the store is the one test_store.py builds once
per process (`shared_store`).
"""

import json
import re
from pathlib import Path

import httpx
import pytest
from langchain_core.messages import AIMessage, ToolMessage
from typer.testing import CliRunner

from knowledge.commands import app
from knowledge.search import ARXIV_URL, S2_URL, PaperSearch
from knowledge.store import load_records, user_records_dir
from knowledge.tools import make_tools
from test_store import N_PAPERS, no_chroma_default, shared_store  # noqa: F401 (module fixture)

DATA = Path(__file__).parent / "data" / "knowledge"
runner = CliRunner()


@pytest.fixture(scope="module")
def store():
    return shared_store()[0]


@pytest.fixture
def tools(store, tmp_path):
    search = PaperSearch(tmp_path / "cache", backoff=0.0, retries=1)
    return {t.name: t for t in make_tools(store, search=search)}


def test_tool_set_and_schemas(tools):
    assert sorted(tools) == ["get_paper", "search_library", "search_papers", "similar_designs", "similar_units"]
    assert set(tools["search_library"].args) == {"query", "k"}
    assert set(tools["get_paper"].args) == {"paper_id"}
    assert all(t.description for t in tools.values())


def test_search_library_returns_citable_ids(tools):
    out = tools["search_library"].invoke({"query": "gated linear attention with data-dependent decay", "k": 3})
    ids = re.findall(r"^\d+\. \[([a-z0-9-]+)\]", out, flags=re.M)
    assert len(ids) == 3 and "gla-2023" in ids
    assert "Mechanism:" in out and "similarity" in out and "arXiv:2312.06635" in out
    assert "Seed units: GatedLinearAttention" in out


def test_tools_answer_bad_input_with_a_message(tools):
    assert tools["search_library"].invoke({"query": " "}).startswith("error: empty query")
    assert tools["similar_units"].invoke({"description": ""}).startswith("error: empty query")
    bad_k = tools["search_library"].invoke({"query": "attention", "k": 500})
    assert bad_k.startswith("error: invalid arguments (k: ") and "less than or equal to 20" in bad_k


def test_get_paper_by_id_arxiv_and_unknown(tools, respx_mock):
    assert tools["get_paper"].invoke({"paper_id": "mamba2-2024"}).startswith("**[mamba2-2024]")
    assert "[gla-2023]" in tools["get_paper"].invoke({"paper_id": "arXiv:2312.06635v2"})
    out = tools["get_paper"].invoke({"paper_id": "mamba-2032"})
    assert "No library record" in out and "mamba-2023" in out  # close ids, no network for a non-arXiv id
    respx_mock.get(f"{S2_URL}/paper/arXiv:2502.13189").mock(return_value=httpx.Response(404, json={"error": "nf"}))
    respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text=(DATA / "arxiv_id_2502.13189.xml").read_text()))
    online = tools["get_paper"].invoke({"paper_id": "2502.13189"})
    assert online.startswith("Not in the library; from arxiv") and "MoBA" in online


def test_get_paper_offline_says_why(tools, respx_mock):
    respx_mock.get(url__startswith=S2_URL).mock(side_effect=httpx.ConnectError("offline"))
    respx_mock.get(ARXIV_URL).mock(side_effect=httpx.ConnectError("offline"))
    out = tools["get_paper"].invoke({"paper_id": "2502.13189"})
    assert "No library record" in out and "Online lookup unavailable" in out and "cannot reach" in out


def test_search_papers_marks_library_records(tools, respx_mock):
    respx_mock.get(f"{S2_URL}/paper/search").mock(
        return_value=httpx.Response(200, json=json.loads((DATA / "s2_search_gla.json").read_text())))
    out = tools["search_papers"].invoke({"query": "gated linear attention", "k": 3})
    assert "3 papers from semantic_scholar" in out
    assert "arXiv:2312.06635 is library record [gla-2023]" in out
    assert "arXiv:2503.02130 is library record [forgetting-transformer-2025]" in out


def test_search_papers_unavailable_tells_the_agent_to_carry_on(tools, respx_mock):
    respx_mock.get(f"{S2_URL}/paper/search").mock(return_value=httpx.Response(429, json={"message": "slow down"}))
    respx_mock.get(ARXIV_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    out = tools["search_papers"].invoke({"query": "gated linear attention"})
    assert out.startswith("External search unavailable") and "429" in out and "timed out" in out
    assert "search_library" in out


def test_similar_designs_and_units(tools, store):
    store.add_design("retnet_gated_tools_test", "RetNet retention whose fixed decay becomes a data-dependent gate",
                     {"title": "gated retention"})
    out = tools["similar_designs"].invoke({"description": "retention with a data-dependent decay gate", "k": 3})
    assert "[retnet_gated_tools_test] (archive) gated retention" in out and "(seed)" in out
    units = tools["similar_units"].invoke({"description": "swish-gated feed-forward layer", "k": 2})
    assert "[SwiGLU]" in units and "used by seeds:" in units and "glu-variants-2020" in units


def test_tool_call_message_round_trip(tools):
    """What a LangGraph ToolNode does: an AIMessage tool call in, a ToolMessage out."""
    call = AIMessage(content="", tool_calls=[{"name": "search_library", "id": "call_1",
                                                "args": {"query": "rotary position embedding", "k": 2}}])
    msg = tools["search_library"].invoke(call.tool_calls[0])
    assert isinstance(msg, ToolMessage) and msg.tool_call_id == "call_1" and "[rope-2021]" in msg.content


# ---------------------------------------------------------------------------- CLI


def test_cli_search_ranks_records_with_scores(store):
    result = runner.invoke(app, ["search", "selective state space model", "--k", "3", "--run-dir", str(store.run_dir)])
    assert result.exit_code == 0, result.output
    assert "mamba-2023" in result.output and re.search(r"0\.\d{3}", result.output)


def test_cli_show_and_errors(store):
    ok = runner.invoke(app, ["show", "gla-2023", "--run-dir", str(store.run_dir)])
    assert ok.exit_code == 0 and "Gated Linear Attention Transformers" in ok.output and "Seed units:" in ok.output
    unknown = runner.invoke(app, ["show", "gla-2032", "--run-dir", str(store.run_dir)])
    assert unknown.exit_code == 2 and "error: no library record" in unknown.output and "gla-2023" in unknown.output
    empty = runner.invoke(app, ["search", "  ", "--run-dir", str(store.run_dir)])
    assert empty.exit_code == 2 and "empty query" in empty.output


def test_cli_index_is_incremental(store):
    result = runner.invoke(app, ["index", "--run-dir", str(store.run_dir)])
    assert result.exit_code == 0, result.output
    assert "0 embedded" in result.output and f"'papers': {N_PAPERS}" in result.output


def test_cli_add_writes_a_valid_record_to_the_run(tmp_path, respx_mock):
    respx_mock.get(f"{S2_URL}/paper/arXiv:2502.13189").mock(return_value=httpx.Response(404, json={"error": "nf"}))
    respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text=(DATA / "arxiv_id_2502.13189.xml").read_text()))
    result = runner.invoke(app, ["add", "arXiv:2502.13189", "--run-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    path = user_records_dir(tmp_path) / "moba-2025.json"
    record = json.loads(path.read_text())
    assert record["title"] == "MoBA: Mixture of Block Attention for Long-Context LLMs" and record["arxiv"] == "2502.13189"
    assert {"attention", "moe", "long-context"} <= set(record["tags"]) and record["venue"] == "arXiv"
    assert "added with `library add`" in record["summary"]
    records, problems = load_records(tmp_path)
    assert "moba-2025" in records and problems == []
    shown = runner.invoke(app, ["show", "2502.13189", "--run-dir", str(tmp_path)])
    assert shown.exit_code == 0 and "[moba-2025]" in shown.output
    again = runner.invoke(app, ["add", "2502.13189", "--run-dir", str(tmp_path)])
    assert again.exit_code == 0 and "already in the library as [moba-2025]" in again.output


def test_cli_add_offline_and_bad_input(tmp_path, respx_mock):
    respx_mock.get(url__startswith=S2_URL).mock(side_effect=httpx.ConnectError("offline"))
    respx_mock.get(ARXIV_URL).mock(side_effect=httpx.ConnectError("offline"))
    offline = runner.invoke(app, ["add", "2502.13189", "--run-dir", str(tmp_path)])
    assert offline.exit_code == 2 and "cannot fetch metadata" in offline.output and "Offline?" in offline.output
    assert not user_records_dir(tmp_path).exists()
    known = runner.invoke(app, ["add", "2312.06635", "--run-dir", str(tmp_path)])
    assert known.exit_code == 0 and "[gla-2023]" in known.output
    bad = runner.invoke(app, ["add", "gla", "--run-dir", str(tmp_path)])
    assert bad.exit_code == 2 and "not an arXiv id" in bad.output
    tag = runner.invoke(app, ["add", "2502.13189", "--tag", "magic", "--run-dir", str(tmp_path)])
    assert tag.exit_code == 2 and "unknown tags" in tag.output
