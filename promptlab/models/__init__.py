"""Generator backends behind one interface (see base.Model)."""

from promptlab.models.base import Model
from promptlab.models.registry import NAMES, available_models, load_model

__all__ = ["Model", "NAMES", "available_models", "load_model"]
