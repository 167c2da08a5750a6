"""LangGraph wiring: typed state, the design graph, the evolution graph, selection.
Built by a later issue."""
