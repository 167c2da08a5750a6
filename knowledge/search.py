"""External paper search: Semantic Scholar and arXiv, cached on disk, never in the way.

Both are called through their public HTTP APIs with httpx: the Semantic Scholar Graph
API (`/graph/v1/paper/search`, `/graph/v1/paper/arXiv:<id>`; the key in `S2_API_KEY`
is optional) and the arXiv Atom API (`export.arxiv.org/api/query`). The `arxiv`
package uses requests; the `semanticscholar` package does use httpx but retries a 429
up to ten times with 5-60 s waits, reads 502/503 as "no results" and fails on a non-JSON
500 body, so it is not used: every outcome here is classified by its status code.

A call has a time budget (`deadline`, default 20 s): timeouts, 429 and 5xx are retried
at most `retries` times with exponential backoff (or the server's Retry-After) while
the budget lasts; a connection failure (offline) is not retried. Whatever goes wrong,
the caller gets a `SearchResult` with `available=False` and the reason, and carries
on. `GENESYS_OFFLINE=1` skips the network altogether (the cache still answers).

Answers (including "no such paper") are cached under `<cache_dir>/<source>/`, one
JSON file per query, keyed by the normalized query; failures are never cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

S2_URL = "https://api.semanticscholar.org/graph/v1"
S2_FIELDS = "paperId,title,abstract,year,venue,authors,externalIds,citationCount,url,publicationDate"
ARXIV_URL = "https://export.arxiv.org/api/query"
ATOM = {"a": "http://www.w3.org/2005/Atom", "arxiv": "http://arxiv.org/schemas/atom",
        "os": "http://a9.com/-/spec/opensearch/1.1/"}
USER_AGENT = "genesys-knowledge/0.1 (architecture discovery; mailto:none)"
STOP_WORDS = {"a", "an", "and", "as", "at", "by", "for", "from", "in", "into", "is", "of", "on", "or",
              "the", "to", "with", "that", "which", "its", "their", "using", "via"}


class Unavailable(Exception):
    """The source could not answer (the message is the reason shown to callers)."""


@dataclass
class Paper:
    """One paper as an external source describes it."""

    title: str
    authors: list[str] = field(default_factory=list)
    year: int | None = None
    venue: str = ""
    abstract: str = ""
    arxiv: str | None = None
    s2_id: str | None = None
    url: str = ""
    citations: int | None = None
    source: str = ""

    def citation(self) -> str:
        authors = ", ".join(self.authors[:3]) + (" et al." if len(self.authors) > 3 else "")
        where = [w for w in (authors, str(self.year or ""), self.venue) if w]
        where += [f"arXiv:{self.arxiv}"] if self.arxiv else []
        return f"{self.title} ({', '.join(where)})"

    def to_markdown(self, abstract_chars: int = 400) -> str:
        lines = [f"**{self.citation()}**"]
        if self.citations is not None:
            lines.append(f"Citations: {self.citations}")
        if self.abstract:
            text = self.abstract if len(self.abstract) <= abstract_chars else \
                self.abstract[:abstract_chars].rsplit(" ", 1)[0] + " ..."
            lines.append(text)
        return "\n".join(lines)


@dataclass
class SearchResult:
    """What a source answered: papers, or why it could not (`available=False`, `reason`)."""

    source: str
    query: str
    papers: list[Paper] = field(default_factory=list)
    available: bool = True
    reason: str | None = None
    cached: bool = False

    def to_markdown(self) -> str:
        if not self.available:
            return f"External search unavailable ({self.source}): {self.reason}"
        if not self.papers:
            return f"No papers found on {self.source} for {self.query!r}."
        head = f"{len(self.papers)} papers from {self.source} for {self.query!r}" + (" (cached)" if self.cached else "")
        return "\n\n".join([head] + [f"{i}. {p.to_markdown()}" for i, p in enumerate(self.papers, 1)])


def _offline() -> bool:
    return os.environ.get("GENESYS_OFFLINE", "").lower() in ("1", "true", "yes")


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class _Source:
    """HTTP with a time budget, bounded retries and an on-disk cache; subclasses parse."""

    name = ""

    def __init__(self, cache_dir: str | Path | None = None, *, timeout: float = 8.0, retries: int = 2,
                 backoff: float = 1.0, deadline: float = 20.0):
        self.cache_dir = Path(cache_dir) / self.name if cache_dir else None
        self.timeout, self.retries, self.backoff, self.deadline = timeout, retries, backoff, deadline
        self._client = httpx.Client(headers={"User-Agent": USER_AGENT}, follow_redirects=True)

    # -- cache

    def _cache_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")

    def _cached(self, key: str) -> list[Paper] | None:
        path = self._cache_path(key)
        try:
            data = json.loads(path.read_text()) if path else None
            return [Paper(**p) for p in data["papers"]] if data and data.get("key") == key else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged cache entry is a miss, not an error

    def _store(self, key: str, papers: list[Paper]) -> None:
        path = self._cache_path(key)
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "time": time.time(), "papers": [asdict(p) for p in papers]}))
            tmp.replace(path)

    def _answer(self, kind: str, query: str, fetch) -> SearchResult:
        """The cached answer, or `fetch()` within the budget, or why there is none."""
        key = f"{kind}:{' '.join(query.lower().split())}"
        cached = self._cached(key)
        if cached is not None:
            return SearchResult(self.name, query, cached, cached=True)
        if _offline():
            return SearchResult(self.name, query, available=False, reason="offline mode (GENESYS_OFFLINE=1)")
        try:
            papers = fetch()
        except Unavailable as e:
            return SearchResult(self.name, query, available=False, reason=str(e))
        self._store(key, papers)
        return SearchResult(self.name, query, papers)

    # -- HTTP

    def _get(self, url: str, params: dict, headers: dict | None = None,
             not_found_ok: bool = False) -> httpx.Response | None:
        """A 200 response (None for a 404 when `not_found_ok`), or Unavailable with the reason."""
        start, reason, attempt = time.monotonic(), "", 0
        host = httpx.URL(url).host
        for attempt in range(1, self.retries + 2):
            remaining = self.deadline - (time.monotonic() - start)
            if remaining <= 0.05:
                break
            try:
                response = self._client.get(url, params=params, headers=headers,
                                            timeout=min(self.timeout, remaining))
            except httpx.TimeoutException:
                reason, wait = f"{host} timed out", self.backoff * 2 ** (attempt - 1)
            except httpx.TransportError as e:
                raise Unavailable(f"cannot reach {host} (offline?): {type(e).__name__}: {e}") from None
            else:
                code = response.status_code
                if code == 200:
                    return response
                if code == 404 and not_found_ok:
                    return None
                if code != 429 and code < 500:
                    raise Unavailable(f"{host} answered HTTP {code}: {response.text[:200].strip()}")
                reason = f"{host} rate limited the request (HTTP 429)" if code == 429 else \
                    f"{host} server error (HTTP {code})"
                wait = _retry_after(response)
                wait = self.backoff * 2 ** (attempt - 1) if wait is None else wait
            if attempt > self.retries or wait >= self.deadline - (time.monotonic() - start):
                break
            time.sleep(wait)
        return self._give_up(reason or f"{host}: no time left", attempt, start)

    def _give_up(self, reason: str, attempts: int, start: float):
        raise Unavailable(f"{reason}; gave up after {attempts} attempt{'s' * (attempts != 1)} "
                          f"in {time.monotonic() - start:.1f} s")


# ---------------------------------------------------------------------------- Semantic Scholar


def parse_s2_paper(data: dict) -> Paper | None:
    """A Graph API paper object as a Paper; None when it lacks a title (fields may be missing or null)."""
    if not isinstance(data, dict) or not isinstance(data.get("title"), str) or not data["title"].strip():
        return None
    ext = data.get("externalIds") or {}
    authors = [a["name"] for a in data.get("authors") or [] if isinstance(a, dict) and a.get("name")]
    year = data.get("year")
    return Paper(title=" ".join(data["title"].split()), authors=authors,
                 year=year if isinstance(year, int) else None, venue=data.get("venue") or "",
                 abstract=" ".join((data.get("abstract") or "").split()),
                 arxiv=ext.get("ArXiv") if isinstance(ext, dict) else None, s2_id=data.get("paperId"),
                 url=data.get("url") or "", citations=data.get("citationCount"), source="semantic_scholar")


class SemanticScholar(_Source):
    """Semantic Scholar Graph API: relevance search and lookup by arXiv id."""

    name = "semantic_scholar"

    def __init__(self, cache_dir=None, api_key: str | None = None, **kwargs):
        super().__init__(cache_dir, **kwargs)
        self.api_key = api_key if api_key is not None else os.environ.get("S2_API_KEY")

    @property
    def _headers(self) -> dict:
        return {"x-api-key": self.api_key} if self.api_key else {}

    def search(self, query: str, limit: int = 5) -> SearchResult:
        def fetch() -> list[Paper]:
            response = self._get(f"{S2_URL}/paper/search", {"query": query, "limit": limit, "fields": S2_FIELDS},
                                 self._headers)
            data = _json(response)
            if not isinstance(data, dict) or ("data" not in data and "total" not in data):
                raise Unavailable("Semantic Scholar returned a malformed search response (no 'data')")
            return [p for p in map(parse_s2_paper, data.get("data") or []) if p][:limit]

        return self._answer(f"search{limit}", query, fetch)

    def lookup(self, arxiv_id: str) -> SearchResult:
        """The paper with this arXiv id ([] when Semantic Scholar has none)."""
        def fetch() -> list[Paper]:
            response = self._get(f"{S2_URL}/paper/arXiv:{arxiv_id}", {"fields": S2_FIELDS}, self._headers,
                                 not_found_ok=True)
            if response is None:
                return []
            paper = parse_s2_paper(_json(response))
            if paper is None:
                raise Unavailable("Semantic Scholar returned a paper without a title")
            return [paper]

        return self._answer("arxiv", arxiv_id, fetch)


def _json(response: httpx.Response):
    try:
        return response.json()
    except ValueError:
        raise Unavailable(f"{response.url.host} returned a body that is not JSON") from None


# ---------------------------------------------------------------------------- arXiv


def arxiv_query(query: str, max_terms: int = 8) -> str:
    """Free text as an arXiv `search_query`: content words, each required in any field."""
    words = [w for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9\-]*", query) if w.lower() not in STOP_WORDS]
    if not words:
        raise Unavailable(f"no searchable words in {query!r}")
    return " AND ".join(f"all:{w}" for w in words[:max_terms])


def parse_arxiv_feed(text: str) -> list[Paper]:
    """The entries of an arXiv Atom feed; Unavailable for malformed XML or an API error entry."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as e:
        raise Unavailable(f"arXiv returned malformed XML: {e}") from None
    papers = []
    for entry in root.findall("a:entry", ATOM):
        entry_id = entry.findtext("a:id", "", ATOM).strip()
        if "/api/errors" in entry_id:
            raise Unavailable(f"arXiv rejected the query: {entry.findtext('a:summary', '', ATOM).strip()}")
        title = " ".join(entry.findtext("a:title", "", ATOM).split())
        if not title:
            continue
        published = entry.findtext("a:published", "", ATOM)
        arxiv = re.sub(r"v\d+$", "", entry_id.rsplit("/abs/", 1)[-1]) if "/abs/" in entry_id else None
        papers.append(Paper(
            title=title, authors=[" ".join(a.findtext("a:name", "", ATOM).split())
                                  for a in entry.findall("a:author", ATOM)],
            year=int(published[:4]) if published[:4].isdigit() else None,
            venue=(entry.findtext("arxiv:journal_ref", "", ATOM) or "arXiv").strip(),
            abstract=" ".join(entry.findtext("a:summary", "", ATOM).split()), arxiv=arxiv,
            url=f"https://arxiv.org/abs/{arxiv}" if arxiv else entry_id, source="arxiv"))
    return papers


class Arxiv(_Source):
    """The arXiv Atom API: search by words and lookup by id."""

    name = "arxiv"

    def search(self, query: str, limit: int = 5) -> SearchResult:
        def fetch() -> list[Paper]:
            response = self._get(ARXIV_URL, {"search_query": arxiv_query(query), "start": 0,
                                              "max_results": limit, "sortBy": "relevance"})
            return parse_arxiv_feed(response.text)[:limit]

        return self._answer(f"search{limit}", query, fetch)

    def lookup(self, arxiv_id: str) -> SearchResult:
        def fetch() -> list[Paper]:
            response = self._get(ARXIV_URL, {"id_list": arxiv_id, "max_results": 1})
            return [p for p in parse_arxiv_feed(response.text) if p.arxiv == arxiv_id]

        return self._answer("id", arxiv_id, fetch)


# ---------------------------------------------------------------------------- both


class PaperSearch:
    """Semantic Scholar first, arXiv when it cannot answer; one cache folder for both."""

    def __init__(self, cache_dir: str | Path | None = None, **kwargs):
        self.s2 = SemanticScholar(cache_dir, **kwargs)
        self.arxiv = Arxiv(cache_dir, **kwargs)

    def search(self, query: str, limit: int = 5) -> SearchResult:
        if not query.strip():
            return SearchResult("search", query, available=False, reason="empty query")
        first = self.s2.search(query, limit)
        if first.available:
            return first
        second = self.arxiv.search(query, limit)
        if second.available:
            return second
        return SearchResult("semantic_scholar+arxiv", query, available=False,
                            reason=f"Semantic Scholar: {first.reason}; arXiv: {second.reason}")

    def lookup(self, arxiv_id: str) -> SearchResult:
        """One paper by arXiv id, merged from both sources (S2 for venue and id, arXiv for the abstract)."""
        if not re.fullmatch(r"\d{4}\.\d{4,5}", arxiv_id):
            return SearchResult("search", arxiv_id, available=False,
                                reason=f"{arxiv_id!r} is not an arXiv id like 2312.06635")
        s2 = self.s2.lookup(arxiv_id)
        if s2.papers and s2.papers[0].abstract:
            return s2
        ax = self.arxiv.lookup(arxiv_id)
        if s2.papers and ax.papers:  # S2 knows the venue and id; arXiv supplies the abstract
            paper = s2.papers[0]
            paper.abstract, paper.authors = ax.papers[0].abstract, paper.authors or ax.papers[0].authors
            return SearchResult("semantic_scholar+arxiv", arxiv_id, [paper])
        if ax.papers or (ax.available and not s2.papers):
            return ax
        if s2.available:
            return s2
        return SearchResult("semantic_scholar+arxiv", arxiv_id, available=False,
                            reason=f"Semantic Scholar: {s2.reason}; arXiv: {ax.reason}")
