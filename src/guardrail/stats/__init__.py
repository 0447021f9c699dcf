"""Conformance stats: what every request's outcome was, kept as per-minute rollups.

``model`` holds the plain values (records, rollups, samples, histograms) that the registry's
stats store persists; ``recorder`` turns requests into them off the request path; ``report``
computes the figures ``/guardrail/stats`` serves; ``metrics`` is the Prometheus export.
This module imports none of them, so ``registry`` can import ``stats.model`` without a cycle.
"""
