"""promptlab: a lab for prompt-based generative video compression."""

__version__ = "0.1.0"
