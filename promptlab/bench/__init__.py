"""`promptlab bench`: generation and inversion speed against the plain diffusers way."""

from promptlab.bench.run import run_bench

__all__ = ["run_bench"]
