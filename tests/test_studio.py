"""LangGraph Studio's server (`langgraph dev`) serves the design graph of langgraph.json offline.

A real client: the test starts `langgraph dev --no-browser` on a free port and runs
one design session through the langgraph_sdk client to completion, with the
symbolic designer (the graph's default: no keys, no network) and the real checker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FAST_CHECK = {"efficiency": False, "train_steps": 10, "extra": {"batch_size": 4, "train_seq_len": 32}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"langgraph dev exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"langgraph dev did not answer in {timeout_s} s:\n{log.read_text()[-3000:]}")


@pytest.fixture()
def studio(tmp_path):
    """`langgraph dev` on a free port, run from the repository (it reads langgraph.json there)."""
    pytest.importorskip("agents.symbolic", reason="the symbolic designer is the graph's default designer")
    port = free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "true",
           "GENESYS_RUN_DIR": str(tmp_path / "run"), "PYTHONPATH": str(ROOT)}
    log = tmp_path / "langgraph-dev.log"
    cli = Path(sys.executable).with_name("langgraph")
    with log.open("w") as out:
        server = subprocess.Popen([str(cli), "dev", "--no-browser", "--no-reload", "--port", str(port),
                                   "--host", "127.0.0.1"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, server, log)
        yield url, tmp_path / "run", log
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.mark.slow
def test_design_graph_runs_to_completion_through_the_sdk(studio):
    from langgraph_sdk import get_sync_client

    url, run_dir, log = studio
    client = get_sync_client(url=url, api_key=None)
    assistants = client.assistants.search(graph_id="design")
    assert assistants, "langgraph.json exposes no 'design' graph"
    thread = client.threads.create()
    final = client.runs.wait(
        thread["thread_id"], assistants[0]["assistant_id"],
        input={"mode": "mutation", "parents": ["gpt2"], "seed": 3},
        config={"configurable": {"run_dir": str(run_dir), "design": {"check": FAST_CHECK}}},
    )
    assert isinstance(final, dict), final
    assert final.get("outcome") in ("implemented", "failed", "rejected"), (final, log.read_text()[-3000:])
    assert final.get("recorded"), final
    state = client.threads.get_state(thread["thread_id"])
    assert state["values"]["recorded"] == final["recorded"]
    # the session's design is in the run's archive, as it would be from the CLI
    from designs.archive import Archive

    with Archive.open(run_dir) as archive:
        record = archive.get_design(final["recorded"])
    assert record.meta["designer"] and record.meta["outcome"] == final["outcome"]
