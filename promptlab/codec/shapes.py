"""The built-in model names and what the codec depends on per model: prompt width and latent shape.

The one table of model names: rate arithmetic sizes streams from it before a model is loaded, a
stream header records one of these names, and the model registry loads them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelShape:
    """What the rate depends on besides settings: the model's prompt width and latent shape."""

    context_dim: int = 1024
    latent_channels: int = 4
    latent_factor: int = 8


SD_TURBO = ModelShape()
MODEL_SHAPES = {"tiny": ModelShape(128, 4, 8), "tiny2": ModelShape(128, 32, 8), "sd-turbo": SD_TURBO,
                "sd-turbo-arch": SD_TURBO}
NAMES = tuple(MODEL_SHAPES)


def shape_for(model: str) -> ModelShape:
    """A built-in model's shape; a path or hub id holds SD-Turbo weights."""
    return MODEL_SHAPES.get(model, SD_TURBO)


def recorded_name(model: str) -> str:
    """The name a stream header records: a built-in name, or "sd-turbo" for weights from a path or hub id."""
    return model if model in MODEL_SHAPES else "sd-turbo"
