"""The real langchain-openai client against a local OpenAI-compatible stub server on 127.0.0.1.

The stub serves /v1/chat/completions from a queue of canned replies (a tool call,
prose, a structured JSON answer, an HTTP error, a stall) and records each request
body, so the tests see exactly what the roles put on the wire: tools, tool results,
the JSON-schema response_format, and the repair message.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fake_llm import SESSION, answers, fake_knowledge_tools

from agents.base import ParentBrief, PlanContext, ProposalContext, ReviewContext
from agents.llm import AgentsConfig, build_models, model_label
from agents.llm_designer import LLMDesigner
from designs.seeds import load_seed


class Stub:
    """Canned chat-completion replies, served in order; every request body recorded."""

    def __init__(self):
        self.replies: list[dict] = []
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _handler(self):
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                reply = stub.replies.pop(0) if stub.replies else {"status": 500, "error": "no reply queued"}
                time.sleep(reply.get("delay", 0))
                status = reply.get("status", 200)
                payload = ({"error": {"message": reply["error"], "type": "server_error"}} if status != 200
                           else completion(body, reply))
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
                    pass

            def log_message(self, *args):  # keep pytest output clean
                pass

        return Handler

    def queue(self, *replies: dict) -> None:
        self.replies.extend(replies)


def completion(request: dict, reply: dict) -> dict:
    """An OpenAI chat.completion object for a canned reply."""
    message = {"role": "assistant", "content": reply.get("content")}
    if "json" in reply:
        message["content"] = json.dumps(reply["json"])
    if "tool_calls" in reply:
        message["tool_calls"] = [{"id": c["id"], "type": "function",
                                  "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
                                 for c in reply["tool_calls"]]
    prompt, done = reply.get("usage", (1000, 100))
    return {"id": f"chatcmpl-{len(request.get('messages', []))}", "object": "chat.completion",
            "created": int(time.time()), "model": request["model"],
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if "tool_calls" in reply else "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}}


@pytest.fixture
def stub(monkeypatch):
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    server = Stub()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def designer_on(stub: Stub, timeout_s: float = 10.0) -> LLMDesigner:
    config = AgentsConfig(model="openai:stub-model", base_url=stub.url, max_retries=0, timeout_s=timeout_s,
                          prices={"openai-compatible:stub-model": {"input": 1.0, "output": 2.0}})
    models = build_models(config, env={})
    return LLMDesigner(models, tools=fake_knowledge_tools(), prices=config.price_table())


def structured_answer(role: str, index: int) -> dict:
    return answers(SESSION[role])[index]


@pytest.fixture(scope="module")
def parent() -> ParentBrief:
    tree = load_seed("gpt2")
    return ParentBrief(name="gpt2", tree=tree.to_dict(), view=tree.view())


def test_propose_searches_then_answers_in_json_schema_mode(stub, parent):
    designer = designer_on(stub)
    assert model_label(designer.models["proposer"]) == "openai-compatible:stub-model"
    stub.queue({"tool_calls": [{"id": "call_1", "name": "search_library",
                                "args": {"query": "short convolution attention", "k": 3}}], "usage": (6100, 40)},
               {"content": "H3's shift convolution is the closest idea; I will propose it for MHA.",
                "usage": (6500, 30)},
               {"json": structured_answer("proposer", 0), "usage": (6600, 600)})
    call = designer.propose(ProposalContext(mode="mutation", parents=[parent]))
    assert call.ok, call.error
    assert call.output.selected_unit == "MHA" and call.output.parents == ["gpt2"]
    first, second, third = (r["body"] for r in stub.requests)
    assert {t["function"]["name"] for t in first["tools"]} >= {"search_library", "similar_designs"}
    assert first["messages"][0]["role"] == "system" and "GAU contract" in first["messages"][0]["content"]
    tool_result = next(m for m in second["messages"] if m["role"] == "tool")
    assert tool_result["tool_call_id"] == "call_1" and "Hungry Hungry Hippos" in tool_result["content"]
    assert third["response_format"]["type"] == "json_schema"
    assert third["response_format"]["json_schema"]["name"] == "Proposal"
    assert "recipe" not in json.dumps(third["response_format"])  # not the LLM's to write
    assert [(u.prompt_tokens, u.completion_tokens) for u in call.usage] == [(6100, 40), (6500, 30), (6600, 600)]
    assert sum(u.dollars for u in call.usage) == pytest.approx((6100 + 6500 + 6600) * 1e-6 + 670 * 2e-6)


def test_review_with_a_bad_tool_call_then_a_json_answer(stub, parent):
    designer = designer_on(stub)
    proposal = designer_proposal()
    stub.queue({"tool_calls": [{"id": "call_9", "name": "similar_designs", "args": {"k": 2}}]},
               {"content": json.dumps(structured_answer("reviewer", 0))})
    call = designer.review(ReviewContext(proposal=proposal, parents=[parent], nearest=["gpt2 (seed) 0.71"]))
    assert call.ok and call.output.verdict == "revise" and len(stub.requests) == 2
    error = next(m for m in stub.requests[1]["body"]["messages"] if m["role"] == "tool")
    assert error["tool_call_id"] == "call_9" and "description: field required" in error["content"]


def designer_proposal():
    from agents.schemas import Proposal

    return Proposal.model_validate(structured_answer("proposer", 1))


def test_prose_instead_of_json_is_repaired_through_the_client(stub, parent):
    designer = designer_on(stub)
    stub.queue({"content": "Plan: first rewrite MHA, then write ShortConv."},
               {"json": structured_answer("planner", 0)})
    call = designer.plan(PlanContext(proposal=designer_proposal(), parents=[parent]))
    assert call.ok and [t.unit for t in call.output.tasks] == ["MHA", "ShortConv"]
    repair = stub.requests[1]["body"]["messages"]
    assert repair[-2] == {"role": "assistant", "content": "Plan: first rewrite MHA, then write ShortConv."}
    assert "could not be used" in repair[-1]["content"] and "Plan" in repair[-1]["content"]


def test_server_error_is_a_failed_role_call(stub, parent):
    designer = designer_on(stub)
    stub.queue({"status": 500, "error": "the model crashed"})
    call = designer.plan(PlanContext(proposal=designer_proposal(), parents=[parent]))
    assert not call.ok and call.error.startswith("planner: openai-compatible:stub-model failed:")
    assert "the model crashed" in call.error


def test_stalled_server_is_a_timeout(stub, parent):
    designer = designer_on(stub, timeout_s=0.5)
    stub.queue({"delay": 2.0, "json": structured_answer("planner", 0)})
    call = designer.plan(PlanContext(proposal=designer_proposal(), parents=[parent]))
    assert not call.ok and "timed out" in call.error
