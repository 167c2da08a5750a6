"""Knowledge store: time to build it from scratch, and query latency after warm-up.

Side by side in one run, in a fresh temporary run directory:
  load_s        loading the packaged MiniLM (transformers, local files), once per process
  index_s       embedding and storing everything from an empty store: every library
                record, every seed unit, every seed design. Target: under 60 s.
  noop_s        index() again: hashes compared, nothing embedded (the incremental path)
  query_ms      search_library(query, 5) end to end (embed the query, Chroma top 5),
                median and p95 over the queries, after warm-up. Target: under 100 ms.
  nearest_ms    nearest(text, 5): one embedding, two collections
  embed_ms      the query embedding alone (the rest of query_ms is Chroma)

    python benchmarks/knowledge.py                 # 10 rounds over the test queries
    python benchmarks/knowledge.py --rounds 20 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from knowledge.embeddings import _minilm, embed_minilm  # noqa: E402
from knowledge.store import KnowledgeStore  # noqa: E402

QUERIES = ROOT / "tests" / "data" / "knowledge" / "retrieval_queries.json"


def _ms(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"median": round(statistics.median(ordered) * 1000, 1), "p95": round(p95 * 1000, 1)}


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def run(rounds: int) -> dict:
    queries = [q["query"] for q in json.loads(QUERIES.read_text())]
    run_dir = Path(tempfile.mkdtemp(prefix="genesys-bench-knowledge-"))
    try:
        load_s = _timed(_minilm)
        store = KnowledgeStore(run_dir)
        start = time.perf_counter()
        report = store.index()
        index_s = time.perf_counter() - start
        noop_s = _timed(store.index)
        for q in queries[:3]:  # warm-up
            store.search_library(q, 5)
        query, nearest, embed = [], [], []
        for _ in range(rounds):
            for q in queries:
                query.append(_timed(store.search_library, q, 5))
                embed.append(_timed(embed_minilm, [q]))
            nearest.append(_timed(store.nearest, queries[0], 5))
        return {
            "entries": store.counts(), "embedded": report.embedded,
            "load_s": round(load_s, 2), "index_s": round(index_s, 2), "noop_s": round(noop_s, 3),
            "query_ms": _ms(query), "nearest_ms": _ms(nearest), "embed_ms": _ms(embed),
            "queries": len(query), "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="passes over the test queries")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = run(args.rounds)
    print(f"entries {result['entries']} ({result['embedded']} embedded), {result['cores']} cores, "
          f"{result['torch_threads']} torch threads, load average {result['load_avg_1m']}")
    print(f"model load   {result['load_s']:7.2f} s")
    print(f"full index   {result['index_s']:7.2f} s   (target < 60 s)")
    print(f"no-op index  {result['noop_s']:7.3f} s")
    for key, label in (("query_ms", "query"), ("nearest_ms", "nearest"), ("embed_ms", "embed only")):
        print(f"{label:<12} median {result[key]['median']:6.1f} ms  p95 {result[key]['p95']:6.1f} ms"
              + ("   (target < 100 ms)" if key == "query_ms" else ""))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
