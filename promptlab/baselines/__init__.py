"""Classical-codec baselines (H.265/H.264 via PyAV) at a target bitrate, bytes counted exactly."""

from promptlab.baselines.h26x import CODECS, BaselineResult, decode_stream, encode_baseline

__all__ = ["CODECS", "BaselineResult", "decode_stream", "encode_baseline"]
