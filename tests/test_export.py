"""Export core: composition, clips (MP4/WebM/GIF), atomicity and cancel, sheets, tables, report."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from promptlab.errors import Cancelled, PromptlabError
from promptlab.export import (
    Comparison,
    Composer,
    Pane,
    Rendition,
    export_clip,
    export_frame,
    export_metrics,
    export_report,
    export_sheet,
    make_sheet,
    parse_overlay,
    worst_frames,
    write_clip,
)
from promptlab.export.clip import comparison_frames
from promptlab.export.comparison import note_template
from promptlab.export.svg import line_plot, nice_ticks
from promptlab.metrics import psnr


def sky(folder: Path, n: int, size: int) -> list[np.ndarray]:
    from promptlab.io.video import read_frames

    return list(read_frames(folder, frames=(0, n), size=size))


def synthetic(n: int, size: int) -> list[np.ndarray]:
    """Smooth moving gradients, so tests that do not need the sky clip still have texture."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = []
    for t in range(n):
        r = 127 + 100 * np.sin(6 * x + t * 0.3)
        g = 127 + 100 * np.cos(5 * y - t * 0.2)
        b = 127 + 80 * np.sin(4 * (x + y) + t * 0.1)
        out.append(np.clip(np.stack([r, g, b], -1), 0, 255).astype(np.uint8))
    return out


def blur(frames: list[np.ndarray]) -> list[np.ndarray]:
    return [cv2.GaussianBlur(f, (5, 5), 1.5) for f in frames]


def comparison(frames: list[np.ndarray], with_baseline: bool = False) -> Comparison:
    rend = [Rendition("promptlab", "promptlab tiny r8 · 210 kbps", blur(frames), 210.0,
                      frame_bytes=[875.0 + 10 * i for i in range(len(frames))])]
    if with_baseline:
        rend.append(Rendition("h265", "H.265 · 208 kbps", [255 - f for f in frames], 208.0))
    return Comparison(frames, rend, 30.0)


class PsnrOnly:
    """A FrameMetrics stand-in without LPIPS weights (as on a machine without them)."""

    has_lpips = False
    lpips_note = "LPIPS-alex: backbone weights missing"

    def compute_batch(self, refs, dists, **_):
        return [{"lpips": None, "psnr": psnr(r, d), "ssim": None, "ms_ssim": None} for r, d in zip(refs, dists)]


class FakeLpips(PsnrOnly):
    """Known per-frame 'LPIPS' so ranking can be checked exactly (not a real metric, never shown)."""

    has_lpips = True
    lpips_note = None

    def __init__(self, values):
        self.values = list(values)
        self.i = 0

    def compute_batch(self, refs, dists, **_):
        rows = super().compute_batch(refs, dists)
        for row in rows:
            row["lpips"] = self.values[self.i % len(self.values)]
            self.i += 1
        return rows


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if ".part" in p.name]


# --------------------------------------------------------------------------- clips


@pytest.mark.parametrize("labels", [False, True])
def test_side_by_side_mp4_panes_match_within_codec_error(sky_frames, tmp_path, labels):
    frames = sky(sky_frames, 21, 128)
    comp = comparison(frames)
    out = tmp_path / "cmp.mp4"
    overlay = ("kbps",) if labels else ()
    assert export_clip(out, comp, labels=labels, overlay=overlay) == 21
    got = decode(out)
    assert len(got) == 21
    h, w = got[0].shape[:2]
    assert w == 256 and (h == 128 if not labels else h > 128) and h % 2 == 0
    composer = Composer("side-by-side", labels=labels, notes=labels, note_template=note_template(overlay))
    ref = list(comparison_frames(comp, composer, overlay))
    for i, (a, b) in enumerate(zip(ref, got)):
        assert a.shape == b.shape
        # panes sit below the label strip, pixel-exact in the composed frame
        assert np.array_equal(a[h - 128:, :128], frames[i])
        assert np.array_equal(a[h - 128:, 128:], comp.renditions[0].frames[i])
        for x0 in (0, 128):
            assert psnr(a[h - 128:, x0:x0 + 128], b[h - 128:, x0:x0 + 128]) >= 35.0


def test_webm_and_gif_decode_to_all_frames(tmp_path):
    comp = comparison(synthetic(5, 64))
    for ext in (".webm", ".gif"):
        out = tmp_path / f"c{ext}"
        assert export_clip(out, comp, labels=True) == 5
        got = decode(out)
        assert len(got) == 5 and got[0].shape[1] == 128
        assert psnr(got[2][-64:, :64], comp.originals[2]) > 25


def test_odd_sized_panes_give_even_frames(tmp_path):
    frames = synthetic(3, 63)
    comp = comparison(frames)
    img = Composer("side-by-side", labels=False).compose(*comp.panes(0))
    assert img.shape[0] % 2 == 0 and img.shape[1] % 2 == 0
    assert np.array_equal(img[:63, :63], frames[0])
    assert export_clip(tmp_path / "odd.mp4", comp, labels=False) == 3


def test_size_resizes_panes_for_display(tmp_path):
    comp = comparison(synthetic(2, 32))
    out = export_frame(tmp_path / "f.png", comp, 1, labels=False, size=64)
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert img.shape == (64, 128, 3)
    # whole-number enlargement is nearest-neighbour: each source pixel becomes a 2x2 block
    assert np.array_equal(img[::2, :64:2], comp.originals[1])


# --------------------------------------------------------------------------- layouts


def test_labels_go_on_a_strip_and_frame_size_is_constant():
    frames = synthetic(2, 64)
    composer = Composer("side-by-side", labels=True, notes=True, note_template=note_template(("lpips", "kbps")))
    a = composer.compose(Pane(frames[0], "original", "frame 0"), [Pane(frames[1], "promptlab tiny r8 · 1 kbps", "x")])
    b = composer.compose(Pane(frames[0], "original", "frame 1"),
                         [Pane(frames[1], "promptlab tiny r8 · 1 kbps", "LPIPS 0.123 · 1234.5 kbps")])
    assert a.shape == b.shape
    strip = a.shape[0] - 64
    assert strip > 0
    assert np.array_equal(a[strip:, :64], frames[0]) and np.array_equal(a[strip:, 64:], frames[1])
    assert a[:strip].std() > 0  # text was drawn


def test_split_layout_halves_and_divider():
    a, b = synthetic(2, 64)
    img = Composer("split", labels=False).compose(Pane(a), [Pane(b)])
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img[:, :31], a[:, :31])
    assert np.array_equal(img[:, 33:], b[:, 33:])
    assert (img[:, 31:33] == (255, 255, 0)).all()


def test_grid_layout_has_difference_cell():
    frames = synthetic(1, 32)
    comp = comparison(frames, with_baseline=True)
    composer = Composer("grid", labels=False, diff_gain=4)
    img = composer.compose(*comp.panes(0))
    assert img.shape == (64, 64, 3)
    assert np.array_equal(img[32:, :32], comp.renditions[1].frames[0])
    diff = np.clip(np.abs(frames[0].astype(int) - comp.renditions[0].frames[0].astype(int)) * 4, 0, 255)
    assert np.array_equal(img[32:, 32:], diff.astype(np.uint8))


def test_bad_layout_and_overlay_are_user_errors():
    with pytest.raises(PromptlabError, match="layout"):
        Composer("diagonal")
    with pytest.raises(PromptlabError, match="overlay"):
        parse_overlay("lpips,vmaf")
    assert parse_overlay("lpips, kbps,lpips") == ("lpips", "kbps")


# --------------------------------------------------------------------------- atomicity


def test_cancel_midway_leaves_nothing(tmp_path):
    comp = comparison(synthetic(12, 64))
    out = tmp_path / "c.mp4"
    cancel = threading.Event()
    seen = []

    def progress(stage, done, total):
        seen.append(done)
        if done == 4:
            cancel.set()

    with pytest.raises(Cancelled):
        export_clip(out, comp, progress=progress, cancel=cancel)
    assert seen[-1] == 4
    assert not out.exists() and no_temporaries(tmp_path)


def test_error_midway_leaves_nothing_and_keeps_old_file(tmp_path):
    def frames():
        for i, f in enumerate(synthetic(10, 64)):
            if i == 5:
                raise RuntimeError("source died")
            yield f

    out = tmp_path / "c.mp4"
    with pytest.raises(RuntimeError):
        write_clip(out, frames(), 30.0)
    assert not out.exists() and no_temporaries(tmp_path)
    out.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        write_clip(out, frames(), 30.0, force=True)
    assert out.read_bytes() == b"old" and no_temporaries(tmp_path)


def test_overwrite_needs_force(tmp_path):
    comp = comparison(synthetic(2, 32))
    out = tmp_path / "f.png"
    out.write_bytes(b"mine")
    with pytest.raises(PromptlabError, match="--force"):
        export_frame(out, comp, 0)
    assert out.read_bytes() == b"mine"
    export_frame(out, comp, 0, force=True)
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(PromptlabError, match="outside"):
        export_frame(tmp_path / "g.png", comp, 5)
    with pytest.raises(PromptlabError):
        export_clip(tmp_path / "c.avi", comp)


# --------------------------------------------------------------------------- sheets, tables, report


def test_worst_frames_order():
    rows = [{"lpips": v, "psnr": 40 - i} for i, v in enumerate([0.1, 0.5, 0.3, 0.5, 0.2])]
    assert worst_frames(rows, 3, "lpips") == [1, 3, 2]
    assert worst_frames(rows, 2, "psnr") == [4, 3]
    assert worst_frames(rows, 10, "psnr") == [4, 3, 2, 1, 0]
    with pytest.raises(PromptlabError):
        worst_frames([{"lpips": None}], 1, "lpips")


def test_sheet_ranks_by_lpips_when_measured(tmp_path):
    frames = synthetic(6, 32)
    comp = comparison(frames)
    comp.compute_metrics(FakeLpips([0.1, 0.4, 0.2, 0.9, 0.3, 0.05]))
    assert comp.ranking_metric() == "lpips"
    sheet = make_sheet(comp, 2)
    # the last row is the second-worst frame (index 1): original pane at the bottom-left
    assert np.array_equal(sheet[-32:, :32], frames[1])
    assert np.array_equal(sheet[-32:, 32:64], comp.renditions[0].frames[1])


def test_sheet_falls_back_to_psnr_and_says_so(tmp_path):
    frames = synthetic(5, 32)
    comp = comparison(frames)
    comp.renditions[0].frames[3] = 255 - frames[3]  # by far the worst PSNR
    comp.compute_metrics(PsnrOnly())
    assert comp.ranking_metric() == "psnr" and comp.lpips_note
    out = export_sheet(tmp_path / "w.png", comp, 1)
    img = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(img[-32:, :32], frames[3])
    from promptlab.export.sheet import sheet_title

    assert "PSNR" in sheet_title("psnr", 1, comp.lpips_note) and "LPIPS weights absent" in sheet_title("psnr", 1, None)


def test_metrics_csv_and_json(tmp_path):
    comp = comparison(synthetic(4, 32), with_baseline=True)
    comp.first_frame = 10
    comp.compute_metrics(PsnrOnly())
    csv_text = export_metrics(tmp_path / "m.csv", comp).read_text()
    lines = csv_text.strip().splitlines()
    header = lines[0].split(",")
    assert header[0] == "frame" and "promptlab_psnr" in header and "h265_psnr" in header
    assert len(lines) == 5 and lines[1].startswith("10,")
    row = dict(zip(header, lines[1].split(",")))
    assert row["promptlab_lpips"] == "" and float(row["promptlab_bytes"]) == 875.0
    assert float(row["promptlab_kbps"]) == pytest.approx(875 * 8 * 30 / 1000)
    doc = json.loads(export_metrics(tmp_path / "m.json", comp).read_text())
    assert doc["lpips_available"] is False and doc["frames"][3]["frame"] == 13
    assert doc["frames"][0]["promptlab_lpips"] is None
    assert doc["frames"][2]["promptlab_psnr"] == pytest.approx(comp.renditions[0].metrics[2]["psnr"])
    with pytest.raises(PromptlabError):
        export_metrics(tmp_path / "m.txt", comp)


def test_report_is_self_contained(tmp_path):
    comp = comparison(synthetic(6, 32), with_baseline=True)
    comp.info = {"settings": {"rank": 8}, "model": "tiny"}
    comp.compute_metrics(PsnrOnly())
    html = export_report(tmp_path / "r.html", comp).read_text()
    assert html.count("<svg") >= 3 and "data:image/png;base64," in html
    assert "lower is better" in html and "higher is better" in html
    assert "src=\"http" not in html and "<link" not in html and "<script" not in html
    assert "ranked by PSNR" in html and "torch" in html
    assert "promptlab tiny r8" in html and "H.265" in html


def test_svg_plot_has_axes_legend_and_gaps():
    assert nice_ticks(0, 1)[0] <= 0 and nice_ticks(0, 1)[-1] >= 1
    svg = line_plot([("a", [0, 1, 2, 3], [1.0, None, 2.0, 3.0])], title="t", xlabel="frame", ylabel="dB",
                    note="higher is better")
    assert svg.count("<polyline") == 2 and "frame" in svg and "higher is better" in svg
    assert "no data" in line_plot([("a", [], [])], title="t", xlabel="x", ylabel="y")
