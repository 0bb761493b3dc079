"""VMAF: the real v0.6.1 model, per frame, in eval's JSON/CSV, and the same across batch splits."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from promptlab.errors import PromptlabError
from promptlab.io.video import read_frames
from promptlab.io.writer import write_frames
from promptlab.metrics import FrameMetrics, score


@pytest.fixture(scope="module")
def sky64(sky_mp4):
    return list(read_frames(sky_mp4, frames=(0, 10), size=64))


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


def test_vmaf_is_the_v061_model_from_the_package():
    from vmaf_torch.svm_predict import SVMPredict

    from promptlab.metrics.vmaf import Vmaf

    v = Vmaf()
    svm = v.model.svm
    assert svm.num_sv == 211 and svm.gamma == pytest.approx(0.04) and svm.rho == pytest.approx(-1.33133)
    # the very tensors the package ships (not re-initialised, not random)
    shipped = SVMPredict()
    assert np.array_equal(svm.support_vectors.numpy(), shipped.support_vectors.numpy())
    assert np.array_equal(svm.alpha.numpy(), shipped.alpha.numpy())


def test_vmaf_drops_when_quality_drops(sky64):
    fm = FrameMetrics(need_lpips=False, vmaf=True)
    same = [r["vmaf"] for r in score(fm, sky64, sky64)]
    jpeg = [r["vmaf"] for r in score(fm, sky64, [_jpeg(f, 40) for f in sky64])]
    worse = [r["vmaf"] for r in score(fm, sky64, [_jpeg(f, 8) for f in sky64])]
    blur = [r["vmaf"] for r in score(fm, sky64, [cv2.GaussianBlur(f, (0, 0), 2) for f in sky64])]
    assert all(v >= 97 for v in same)          # frame 0 has no motion feature: 97.4, as libvmaf
    for a, b, c in zip(same, jpeg, worse):
        assert 100 >= a > b > c >= 0
    assert np.mean(blur) < np.mean(jpeg)


def test_vmaf_motion_crosses_batches(sky64):
    """Frame i's motion looks at frames i-1 and i+1 of the reference, whatever the batch size."""
    fm = FrameMetrics(need_lpips=False, vmaf=True)
    dist = [_jpeg(f, 30) for f in sky64]
    whole = [r["vmaf"] for r in score(fm, sky64, dist, batch=len(sky64))]
    split = [r["vmaf"] for r in score(fm, sky64, dist, batch=3)]
    single = [r["vmaf"] for r in score(fm, sky64, dist, batch=1)]
    assert split == pytest.approx(whole, abs=0.01) and single == pytest.approx(whole, abs=0.01)  # float32 batching
    alone = [fm.compute(a, b)["vmaf"] for a, b in zip(sky64, dist)]  # no neighbours: no motion
    assert alone != pytest.approx(whole, abs=0.01)


def test_eval_writes_vmaf(sky_mp4, sky64, tmp_path):
    from promptlab.cli.eval import main

    write_frames(tmp_path / "ref", sky64, fps=30)
    write_frames(tmp_path / "good", [_jpeg(f, 60) for f in sky64], fps=30)
    write_frames(tmp_path / "bad", [_jpeg(f, 10) for f in sky64], fps=30)
    docs = {}
    for name in ("ref", "good", "bad"):
        out = tmp_path / f"{name}.json"
        assert main([str(tmp_path / "ref"), str(tmp_path / name), "--vmaf", "--no-lpips", "--json", str(out),
                     "--csv", str(tmp_path / f"{name}.csv"), "--quiet"]) == 0
        docs[name] = json.loads(out.read_text())
    for d in docs.values():
        assert 0 <= d["mean"]["vmaf"] <= 100 and len(d["frames"]) == len(sky64)
        assert all(0 <= r["vmaf"] <= 100 for r in d["frames"])
        assert d["settings"]["vmaf_model"] == "vmaf_v0.6.1"
    assert docs["ref"]["mean"]["vmaf"] > docs["good"]["mean"]["vmaf"] > docs["bad"]["mean"]["vmaf"]
    header, first = (tmp_path / "bad.csv").read_text().splitlines()[:2]
    assert header.split(",")[-1] == "vmaf"
    assert float(first.split(",")[-1]) == pytest.approx(docs["bad"]["frames"][0]["vmaf"], abs=1e-5)


def test_vmaf_without_the_package_says_what_to_install(monkeypatch):
    import promptlab.extras

    monkeypatch.setattr(promptlab.extras, "find_spec", lambda name: None)
    with pytest.raises(PromptlabError, match=r'pip install "promptlab\[vmaf\]"'):
        FrameMetrics(need_lpips=False, vmaf=True)


SMALL = ["--size", "64", "--rank", "2", "--interval", "5", "--iters", "2", "--first-iters", "2",
         "--perceptual", "none"]


@pytest.mark.slow
def test_run_vmaf_per_frame_and_a_stored_result_without_it_is_redone(sky64, make_clip, tmp_path, monkeypatch):
    from promptlab.cli.main import main

    monkeypatch.setenv("PROMPTLAB_CACHE_DIR", str(tmp_path / "cache"))
    clip = make_clip(tmp_path / "sky.mkv", sky64[:8])
    plain, with_vmaf = tmp_path / "a.json", tmp_path / "b.json"
    assert main(["run", str(clip), *SMALL, "--quiet", "--json", str(plain)]) == 0
    assert main(["run", str(clip), *SMALL, "--quiet", "--vmaf", "--baseline", "h265", "--json", str(with_vmaf)]) == 0
    a, b = json.loads(plain.read_text()), json.loads(with_vmaf.read_text())
    assert a["summary"]["vmaf"] is None and all(f["vmaf"] is None for f in a["frames"])
    vm = [f["vmaf"] for f in b["frames"]]
    assert all(0 <= v <= 100 for v in vm) and b["summary"]["vmaf"] == pytest.approx(np.mean(vm))
    assert [f["psnr"] for f in b["frames"]] == pytest.approx([f["psnr"] for f in a["frames"]])
    assert all(0 <= f["vmaf"] <= 100 for f in b["baseline"]["frames"])


@pytest.mark.slow
def test_sweep_and_export_report_carry_vmaf(sky_frames, sky64, tmp_path):
    import csv

    from promptlab.cli.main import main

    out = tmp_path / "sweep"
    assert main(["sweep", str(sky_frames), "--frames", "0:6", *SMALL, "--ranks", "2", "--intervals", "5",
                 "--vmaf", "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert [r["method"] for r in rows] == ["promptlab", "h265"]
    assert all(0 <= float(r["vmaf"]) <= 100 for r in rows)
    recon = tmp_path / "recon"
    write_frames(recon, [_jpeg(f, 20) for f in sky64[:6]], fps=30)
    report, table = tmp_path / "r.html", tmp_path / "m.json"
    assert main(["export", str(sky_frames), str(recon), "--frames", "0:6", "--kbps", "100", "--vmaf",
                 "--no-progress", "-o", str(report), "-o", str(table)]) == 0
    assert "VMAF (higher)" in report.read_text() and "VMAF per frame" in report.read_text()
    doc = json.loads(table.read_text())
    assert all(0 <= f["recon_vmaf"] <= 100 for f in doc["frames"])
