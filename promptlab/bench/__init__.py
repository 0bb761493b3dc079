"""`promptlab bench`: generation and inversion speed against the plain diffusers way (issue 8)."""

from promptlab.bench.run import run_bench

__all__ = ["run_bench"]
