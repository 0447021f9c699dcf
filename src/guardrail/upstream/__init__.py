"""Upstream LLM endpoints: request translation per dialect, and the HTTP client."""
