"""Streaming over network traces: trace readers and a deterministic delivery simulator (Qt-free)."""
