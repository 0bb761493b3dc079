"""The prompt codec: low-rank factors, quantiser, keyframe schedule, rates, .plab container."""
