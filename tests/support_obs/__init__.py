"""Test helpers for the observability sinks: a real Prometheus, an OTLP/HTTP receiver, sample calls."""
