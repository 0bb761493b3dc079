"""Annex-B elementary streams: split into NAL units, drop encoder-banner SEIs.

x264 always writes a "user data unregistered" SEI carrying its version and option string
(~600 bytes) in the first access unit; x265 does the same unless `info=0`. It carries no
picture data and a decoder ignores it, so a fair baseline does not pay for it.
"""

from __future__ import annotations

import re

_START = re.compile(b"\x00\x00\x01")
SEI_USER_DATA_UNREGISTERED = 5


def split_nals(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every NAL unit including its start code (3- or 4-byte)."""
    starts = []
    for m in _START.finditer(data):
        s = m.start()
        if s > 0 and data[s - 1] == 0:
            s -= 1
        starts.append(s)
    return [(s, starts[i + 1] if i + 1 < len(starts) else len(data)) for i, s in enumerate(starts)]


def _payload_offset(data: bytes, start: int) -> int:
    return start + (4 if data[start:start + 4] == b"\x00\x00\x00\x01" else 3)


def nal_type(data: bytes, start: int, codec: str) -> int:
    b = data[_payload_offset(data, start)]
    return (b >> 1) & 0x3F if codec == "h265" else b & 0x1F


def _is_banner_sei(data: bytes, start: int, end: int, codec: str) -> bool:
    t = nal_type(data, start, codec)
    header = 2 if codec == "h265" else 1
    if (codec == "h265" and t not in (39, 40)) or (codec == "h264" and t != 6):
        return False
    p = _payload_offset(data, start) + header
    # one SEI message whose payloadType is 5 (single-byte type as written by x264/x265)
    return p < end and data[p] == SEI_USER_DATA_UNREGISTERED


def strip_banner_sei(data: bytes, codec: str) -> bytes:
    """The access unit without user-data-unregistered SEI NAL units (encoder banners)."""
    nals = split_nals(data)
    if not nals:
        return data
    kept = [data[:nals[0][0]]] + [data[s:e] for s, e in nals if not _is_banner_sei(data, s, e, codec)]
    return b"".join(kept)


def nal_types(data: bytes, codec: str) -> list[int]:
    return [nal_type(data, s, codec) for s, _ in split_nals(data)]
