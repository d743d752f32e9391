"""LLM scene summaries: per-window observation counts, a durable backlog, the summariser."""
