"""HTTP routes: proxy (OpenAI-compatible), admin (/guardrail/*) and ops (health, metrics)."""
