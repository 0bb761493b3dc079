"""Save a baseline's stream: raw Annex-B (exactly the bytes counted) or remuxed into a container.

The raw file is the measured object: its size equals BaselineResult.bytes. A container
(.mp4/.mkv/.mov) adds its own overhead on top, reported separately, never as codec bytes.
"""

from __future__ import annotations

from pathlib import Path

from promptlab.baselines.h26x import CODECS, BaselineResult
from promptlab.baselines.latent import LatentResult
from promptlab.errors import PromptlabError
from promptlab.io.atomic import atomic_path, check_target
from promptlab.io.video import fps_fraction
from promptlab.io.writer import even_size

RAW_EXTS = {"h265": (".hevc", ".h265", ".265"), "h264": (".h264", ".264", ".avc"), "vae": (".plva",),
            "thumbnail": (".plth",)}
# methods whose stream is the project's own (no container can hold it)
OWN_STREAMS = {"vae": "the VAE baseline's latent stream", "thumbnail": "the thumbnail baseline's stream"}
CONTAINER_EXTS = (".mp4", ".mkv", ".mov")


def check_output(out: str | Path, codec: str, force: bool) -> Path:
    """Validate the output name before any work is done."""
    p = Path(out)
    ext = p.suffix.lower()
    if codec in OWN_STREAMS and ext not in RAW_EXTS[codec]:
        raise PromptlabError(f"output {p.name}: use {RAW_EXTS[codec][0]} ({OWN_STREAMS[codec]})")
    if ext not in RAW_EXTS[codec] + CONTAINER_EXTS:
        raise PromptlabError(f"output {p.name}: use {', '.join(RAW_EXTS[codec])} (raw {codec} stream) "
                             f"or {', '.join(CONTAINER_EXTS)}")
    return check_target(p, force)


def write_stream(result: BaselineResult | LatentResult, out: str | Path, force: bool = False) -> int:
    """Write the stream atomically; returns the file size in bytes."""
    p = check_output(out, result.codec, force)
    with atomic_path(p) as tmp:
        if p.suffix.lower() in CONTAINER_EXTS:
            _mux(result, tmp)
        else:
            tmp.write_bytes(result.stream)
    return p.stat().st_size


def _mux(result: BaselineResult, path: Path) -> None:
    import av

    rate = fps_fraction(result.fps)
    tb = 1 / rate
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(CODECS[result.codec][1], rate=rate)
        stream.width, stream.height = even_size(result.width, result.height)
        stream.pix_fmt = "yuv420p"
        stream.time_base = tb
        for pk in result.packets:
            packet = av.Packet(pk.data)
            packet.pts, packet.dts, packet.time_base = pk.pts, pk.dts, tb
            packet.is_keyframe = pk.keyframe
            packet.stream = stream
            container.mux(packet)
