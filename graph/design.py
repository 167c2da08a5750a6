"""The design graph: one design session, from proposal to an archive record.

    start -> proposer -> reviewer -(below threshold, up to N rounds)-> proposer
                            |-> [human, --interactive] -> planner -> coder -> checker -> observer
    observer -(unit failed, tree rolled back, up to K tries)-> coder
    observer -(unit done, more to do)-> coder
    observer -(all done)-> finish -> END          (every way out goes through finish)

The nodes live in graph.nodes; this module wires them and compiles the graph with
a SQLite checkpointer in the run directory, so a killed session resumes by its
thread id. Usage::

    with design_session(run_dir) as graph:
        config = session_config("t1", designer=my_designer, run_dir=run_dir)
        for update in graph.stream(initial_state("mutation", ["gpt2"]), config, stream_mode="updates"):
            ...
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agents.base import Designer
from graph import nodes
from graph.configuration import DesignConfig
from graph.state import DesignInput, DesignState

CHECKPOINTS = "checkpoints.sqlite"  # in the run directory


def build_graph(checkpointer: BaseCheckpointSaver | None = None, *, interrupt_before: list[str] | None = None):
    """The compiled design graph (without a designer bound: it comes from the runnable config)."""
    builder = StateGraph(DesignState, input_schema=DesignInput, context_schema=None)
    builder.add_node("start", nodes.start, destinations=("proposer", END))
    builder.add_node("proposer", nodes.proposer, destinations=("reviewer", "finish"))
    builder.add_node("reviewer", nodes.reviewer, destinations=("proposer", "human", "planner", "finish"))
    builder.add_node("human", nodes.human, destinations=("planner", "finish"))
    builder.add_node("planner", nodes.planner, destinations=("coder", "finish"))
    builder.add_node("coder", nodes.coder, destinations=("checker", "finish"))
    builder.add_node("checker", nodes.checker, destinations=("observer",))
    builder.add_node("observer", nodes.observer, destinations=("coder", "finish"))
    builder.add_node("finish", nodes.finish)
    builder.add_edge(START, "start")
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer, interrupt_before=interrupt_before, name="design")


def session_config(thread_id: str, *, designer: Designer | None = None, run_dir: str | Path | None = None,
                   llm: list[str] | None = None, design: DesignConfig | dict | None = None,
                   recursion_limit: int = 200) -> RunnableConfig:
    """The runnable config of one session: its thread, designer, run directory and settings."""
    conf: dict[str, Any] = {"thread_id": thread_id}
    if designer is not None:
        conf["designer"] = designer
    if run_dir is not None:
        conf["run_dir"] = str(run_dir)
    if llm:
        conf["llm"] = list(llm)
    if design is not None:
        conf["design"] = design.model_dump() if isinstance(design, DesignConfig) else dict(design)
    return {"configurable": conf, "recursion_limit": recursion_limit}


@contextmanager
def design_session(run_dir: str | Path, **compile_args: Any) -> Iterator[Any]:
    """The design graph checkpointed to RUN_DIR/checkpoints.sqlite (closed on exit)."""
    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path / CHECKPOINTS), check_same_thread=False)
    try:
        saver = SqliteSaver(conn)
        saver.setup()
        yield build_graph(saver, **compile_args)
    finally:
        conn.close()


def make_graph(config: RunnableConfig | None = None):
    """The graph `langgraph.json` exposes (Studio, `langgraph dev`): the platform checkpoints it.

    With no `llm` in the config the nodes use the symbolic designer, so it runs with
    no keys and no network.
    """
    return build_graph()
