import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from promptlab.cli.main import main
from promptlab.codec.container import read_stream


def test_import_is_smaller_and_export_is_bit_exact(sky_prompts, tmp_path, capsys):
    out = tmp_path / "sky.plab"
    assert main(["import-official", str(sky_prompts), "-o", str(out)]) == 0
    s = read_stream(out)
    originals = sum(p.stat().st_size for p in sky_prompts.glob("*.prompt"))
    assert originals == 169_680
    assert sum(s.keyframe_bytes) <= 0.70 * originals
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["rank"], info["interval"], info["keyframes"]) == (8, 10, 15)
    assert info["total_bytes"] == out.stat().st_size
    assert len(info["keyframe_bytes"]) == 15
    assert info["init_bytes"] == 9 + 65536
    exp = tmp_path / "exported"
    assert main(["export-official", str(out), "-o", str(exp)]) == 0
    for orig in sorted(sky_prompts.glob("*.prompt")):
        a = torch.load(orig, weights_only=True, map_location="cpu")
        b = torch.load(exp / orig.name, weights_only=True, map_location="cpu")
        assert list(a) == list(b)
        for k in a:
            assert torch.equal(a[k].cpu(), b[k]), (orig.name, k)
    assert torch.equal(torch.load(sky_prompts / "init.pth", weights_only=True, map_location="cpu").cpu(),
                       torch.load(exp / "init.pth", weights_only=True))


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['PROMPTLAB_PWNED']}",))


def _evil_folder(tmp_path: Path, as_zip: bool) -> Path:
    d = tmp_path / "evil"
    d.mkdir()
    target = d / "frame_00000.prompt"
    if as_zip:
        # a torch-style zip archive whose data.pkl runs code
        with zipfile.ZipFile(target, "w") as z:
            z.writestr("frame_00000/data.pkl", pickle.dumps(_Evil(), protocol=2))
            z.writestr("frame_00000/version", "3\n")
            z.writestr("frame_00000/byteorder", "little")
    else:
        target.write_bytes(pickle.dumps(_Evil(), protocol=2))
    torch.save(torch.zeros(1, 4, 8, 8), d / "init.pth")
    return d


@pytest.mark.parametrize("as_zip", [False, True])
def test_pickled_code_is_refused_and_never_runs(tmp_path, monkeypatch, capsys, as_zip):
    flag = tmp_path / "pwned"
    monkeypatch.setenv("PROMPTLAB_PWNED", str(flag))
    d = _evil_folder(tmp_path, as_zip)
    out = tmp_path / "x.plab"
    assert main(["import-official", str(d), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and len(err.strip().splitlines()) == 1
    assert not flag.exists(), "pickled code ran"
    assert not out.exists()
    # sanity: the payload really does run code under a plain unpickler
    pickle.loads(pickle.dumps(_Evil(), protocol=2))
    assert flag.exists()


def test_import_errors_are_one_line(tmp_path, capsys):
    assert main(["import-official", str(tmp_path / "nope"), "-o", str(tmp_path / "o.plab")]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["import-official", str(tmp_path / "empty"), "-o", str(tmp_path / "o.plab")]) == 2
    assert "no frame_NNNNN.prompt" in capsys.readouterr().err
    bad = tmp_path / "bad.plab"
    bad.write_bytes(b"PLAB\x01garbage")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("promptlab info: error:") and len(err.strip().splitlines()) == 1
