"""Helpers for the dashboard tests: the real service on a private bus (service), tmux, rendering, events."""
