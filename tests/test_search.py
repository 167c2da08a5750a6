"""Semantic Scholar and arXiv clients: parsing recorded-format responses, degrading cleanly.

HTTP is mocked with respx at the httpx layer; any request without a route fails the test.
"""

import json
from pathlib import Path

import httpx
import pytest

from knowledge.search import (ARXIV_URL, S2_URL, Arxiv, PaperSearch, SemanticScholar, arxiv_query,
                              parse_arxiv_feed)

DATA = Path(__file__).parent / "data" / "knowledge"
S2_SEARCH = f"{S2_URL}/paper/search"


def fixture(name: str):
    text = (DATA / name).read_text()
    return json.loads(text) if name.endswith(".json") else text


@pytest.fixture
def s2(tmp_path):
    return SemanticScholar(tmp_path / "cache", api_key="", backoff=0.0, retries=2)


@pytest.fixture
def ax(tmp_path):
    return Arxiv(tmp_path / "cache", backoff=0.0, retries=2)


# ---------------------------------------------------------------------------- Semantic Scholar


def test_s2_search_parses_response_and_sends_fields(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json=fixture("s2_search_gla.json")))
    result = s2.search("gated linear attention", limit=3)
    assert result.available and not result.cached and result.source == "semantic_scholar"
    gla, hgrn2, fox = result.papers
    assert gla.title == "Gated Linear Attention Transformers with Hardware-Efficient Training"
    assert gla.arxiv == "2312.06635" and gla.year == 2023 and gla.authors[0] == "Songlin Yang"
    assert gla.venue == "International Conference on Machine Learning" and gla.citations == 412
    assert hgrn2.abstract == "" and hgrn2.venue == "" and "Xuyang Shen" in hgrn2.authors
    assert fox.arxiv == "2503.02130"
    params = route.calls[0].request.url.params
    assert params["query"] == "gated linear attention" and params["limit"] == "3"
    assert "externalIds" in params["fields"] and "x-api-key" not in route.calls[0].request.headers
    assert "2312.06635" in result.to_markdown() and "[" not in gla.citation()[:1]


def test_s2_api_key_is_sent_when_set(tmp_path, respx_mock, monkeypatch):
    monkeypatch.setenv("S2_API_KEY", "k-123")
    route = respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json=fixture("s2_search_empty.json")))
    result = SemanticScholar(tmp_path).search("anything")
    assert result.available and result.papers == []
    assert route.calls[0].request.headers["x-api-key"] == "k-123"
    assert "No papers found" in result.to_markdown()


def test_s2_missing_and_null_fields_are_tolerated(s2, respx_mock):
    respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json=fixture("s2_search_missing_fields.json")))
    result = s2.search("sparse", limit=10)
    assert result.available
    assert [p.title for p in result.papers] == ["A Sparse Record With Odd Spacing", "Authors As Strings"]
    sparse, weird = result.papers
    assert sparse.authors == [] and sparse.year is None and sparse.arxiv is None and sparse.venue == ""
    assert weird.authors == [] and weird.year is None and weird.arxiv is None
    assert "A Sparse Record" in result.to_markdown()


def test_s2_malformed_body_is_unavailable(s2, respx_mock):
    respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json={"unexpected": True}))
    result = s2.search("x")
    assert not result.available and "malformed" in result.reason
    respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, text="<html>maintenance</html>"))
    assert "not JSON" in s2.search("y").reason


def test_s2_429_is_retried_then_succeeds(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(side_effect=[
        httpx.Response(429, json=fixture("s2_429.json")),
        httpx.Response(200, json=fixture("s2_search_gla.json"))])
    result = s2.search("gated linear attention")
    assert result.available and len(result.papers) == 3 and route.call_count == 2


@pytest.mark.parametrize("response, words", [
    (httpx.Response(429, json=fixture("s2_429.json")), "rate limited the request (HTTP 429)"),
    (httpx.Response(500, text="<html><body>Internal Server Error</body></html>"), "server error (HTTP 500)"),
    (httpx.Response(503, text=""), "server error (HTTP 503)"),
])
def test_s2_persistent_errors_give_up_after_bounded_retries(s2, respx_mock, response, words):
    route = respx_mock.get(S2_SEARCH).mock(return_value=response)
    result = s2.search("gated linear attention")
    assert not result.available and result.papers == []
    assert words in result.reason and "gave up after 3 attempts" in result.reason
    assert route.call_count == 3  # retries=2: one try and two retries, no more


def test_s2_timeouts_are_retried_and_bounded(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(side_effect=httpx.ReadTimeout("read timed out"))
    result = s2.search("gated linear attention")
    assert not result.available and "timed out" in result.reason and route.call_count == 3


def test_offline_connection_error_is_not_retried(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(side_effect=httpx.ConnectError("[Errno -3] name resolution failed"))
    result = s2.search("gated linear attention")
    assert not result.available and "cannot reach api.semanticscholar.org" in result.reason
    assert route.call_count == 1
    assert result.to_markdown().startswith("External search unavailable")


def test_retry_after_beyond_the_budget_stops_at_once(tmp_path, respx_mock):
    client = SemanticScholar(tmp_path, deadline=2.0, retries=5)
    route = respx_mock.get(S2_SEARCH).mock(
        return_value=httpx.Response(429, headers={"Retry-After": "60"}, json=fixture("s2_429.json")))
    result = client.search("q")
    assert not result.available and route.call_count == 1 and "429" in result.reason


def test_answers_are_cached_failures_are_not(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(side_effect=[
        httpx.Response(500, text="oops"), httpx.Response(500, text="oops"), httpx.Response(500, text="oops"),
        httpx.Response(200, json=fixture("s2_search_gla.json"))])
    assert not s2.search("Gated  linear attention").available
    first = s2.search("Gated  linear attention")
    again = s2.search("gated linear ATTENTION")  # same query once normalized
    assert first.available and not first.cached and again.cached and route.call_count == 4
    assert [p.title for p in again.papers] == [p.title for p in first.papers]


def test_damaged_cache_entry_is_a_miss(s2, respx_mock):
    route = respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json=fixture("s2_search_gla.json")))
    s2.search("gla")
    for path in s2.cache_dir.glob("*.json"):
        path.write_text("{not json")
    assert s2.search("gla").available and route.call_count == 2


def test_offline_mode_skips_the_network_but_reads_the_cache(s2, respx_mock, monkeypatch):
    route = respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(200, json=fixture("s2_search_gla.json")))
    s2.search("gla")
    monkeypatch.setenv("GENESYS_OFFLINE", "1")
    assert s2.search("gla").cached
    result = s2.search("something new")
    assert not result.available and "offline mode" in result.reason and route.call_count == 1


def test_s2_lookup_by_arxiv_id_and_not_found(s2, respx_mock):
    respx_mock.get(f"{S2_URL}/paper/arXiv:2312.06635").mock(
        return_value=httpx.Response(200, json=fixture("s2_paper_2312.06635.json")))
    respx_mock.get(f"{S2_URL}/paper/arXiv:2999.99999").mock(return_value=httpx.Response(404, json=fixture("s2_404.json")))
    (paper,) = s2.lookup("2312.06635").papers
    assert paper.s2_id and len(paper.s2_id) == 40 and paper.abstract.startswith("Linear attention")
    missing = s2.lookup("2999.99999")
    assert missing.available and missing.papers == []


# ---------------------------------------------------------------------------- arXiv


def test_arxiv_query_keeps_content_words():
    assert arxiv_query("Gated linear attention with (decay)!") == "all:Gated AND all:linear AND all:attention AND all:decay"


def test_arxiv_search_parses_atom_feed(ax, respx_mock):
    route = respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text=fixture("arxiv_search_gla.xml")))
    result = ax.search("gated linear attention", limit=2)
    assert result.available and [p.arxiv for p in result.papers] == ["2312.06635", "2409.07146"]
    gla, gsa = result.papers
    assert gla.title == "Gated Linear Attention Transformers with Hardware-Efficient Training"
    assert gla.authors == ["Songlin Yang", "Bailin Wang", "Yikang Shen", "Rameswar Panda", "Yoon Kim"]
    assert gla.year == 2023 and gla.venue == "ICML 2024" and gsa.venue == "arXiv"
    assert gla.url == "https://arxiv.org/abs/2312.06635" and "\n" not in gla.abstract
    params = route.calls[0].request.url.params
    assert params["search_query"] == "all:gated AND all:linear AND all:attention" and params["max_results"] == "2"


def test_arxiv_lookup_error_feed_and_empty_feed(ax, respx_mock):
    respx_mock.get(ARXIV_URL, params={"id_list": "2312.06635"}).mock(
        return_value=httpx.Response(200, text=fixture("arxiv_id_2312.06635.xml")))
    respx_mock.get(ARXIV_URL, params={"id_list": "2312.066"}).mock(
        return_value=httpx.Response(200, text=fixture("arxiv_error.xml")))
    respx_mock.get(ARXIV_URL, params={"id_list": "2999.99999"}).mock(
        return_value=httpx.Response(200, text=fixture("arxiv_empty.xml")))
    assert ax.lookup("2312.06635").papers[0].authors[-1] == "Yoon Kim"
    bad = ax.lookup("2312.066")
    assert not bad.available and "incorrect id format" in bad.reason
    empty = ax.lookup("2999.99999")
    assert empty.available and empty.papers == []


def test_arxiv_malformed_xml_is_unavailable(ax, respx_mock):
    respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text="<feed><entry>"))
    result = ax.search("gla")
    assert not result.available and "malformed XML" in result.reason
    with pytest.raises(Exception):
        parse_arxiv_feed("not xml")


# ---------------------------------------------------------------------------- both


def test_paper_search_falls_back_to_arxiv(tmp_path, respx_mock):
    respx_mock.get(S2_SEARCH).mock(return_value=httpx.Response(429, json=fixture("s2_429.json")))
    respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text=fixture("arxiv_search_gla.xml")))
    result = PaperSearch(tmp_path, backoff=0.0, retries=1).search("gated linear attention", 2)
    assert result.available and result.source == "arxiv" and len(result.papers) == 2


def test_paper_search_reports_both_reasons_when_both_fail(tmp_path, respx_mock):
    respx_mock.get(S2_SEARCH).mock(side_effect=httpx.ConnectError("no route"))
    respx_mock.get(ARXIV_URL).mock(side_effect=httpx.ConnectError("no route"))
    result = PaperSearch(tmp_path).search("gated linear attention")
    assert not result.available
    assert "Semantic Scholar: cannot reach" in result.reason and "arXiv: cannot reach" in result.reason
    assert not PaperSearch(tmp_path).search("   ").available


def test_lookup_merges_s2_metadata_with_the_arxiv_abstract(tmp_path, respx_mock):
    paper = fixture("s2_paper_2312.06635.json") | {"abstract": None}
    respx_mock.get(f"{S2_URL}/paper/arXiv:2312.06635").mock(return_value=httpx.Response(200, json=paper))
    respx_mock.get(ARXIV_URL).mock(return_value=httpx.Response(200, text=fixture("arxiv_id_2312.06635.xml")))
    search = PaperSearch(tmp_path, backoff=0.0)
    (merged,) = search.lookup("2312.06635").papers
    assert merged.s2_id == paper["paperId"] and merged.venue == "International Conference on Machine Learning"
    assert merged.abstract.startswith("Linear attention can be trained")
    bad = search.lookup("not-an-id")
    assert not bad.available and "not an arXiv id" in bad.reason
