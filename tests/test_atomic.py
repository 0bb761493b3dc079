import os
import signal
import subprocess
import sys
import textwrap

import pytest

from promptlab.errors import PromptlabError
from promptlab.io.atomic import atomic_dir, atomic_path, check_target, write_bytes_atomic


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert oct(target.stat().st_mode & 0o777) != oct(0o600)


def test_atomic_dir(tmp_path):
    target = tmp_path / "frames"
    with atomic_dir(target) as tmp:
        (tmp / "a.png").write_bytes(b"1")
    with pytest.raises(ValueError), atomic_dir(target) as tmp:
        (tmp / "b.png").write_bytes(b"2")
        raise ValueError
    assert sorted(p.name for p in target.iterdir()) == ["a.png"]
    assert [p.name for p in tmp_path.iterdir()] == ["frames"]


def test_check_target(tmp_path):
    (tmp_path / "x").write_text("mine")
    with pytest.raises(PromptlabError, match="--force"):
        check_target(tmp_path / "x", force=False)
    with pytest.raises(PromptlabError, match="does not exist"):
        check_target(tmp_path / "nope" / "x", force=True)


def test_kill_9_leaves_nothing_and_stale_temporaries_are_cleaned(tmp_path):
    target = tmp_path / "big.bin"
    code = textwrap.dedent(f"""
        import sys, time
        from promptlab.io.atomic import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"x" * 1000); fh.flush()
                print("writing", flush=True)
                time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not target.exists()
    leftovers = list(tmp_path.iterdir())
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".big.")
    write_bytes_atomic(target, b"ok")  # the next writer sweeps the dead writer's temporary
    assert [p.name for p in tmp_path.iterdir()] == ["big.bin"]


def test_permissions_follow_the_umask_without_setting_it(tmp_path, monkeypatch):
    """Setting the umask to read it races other threads' file creation (the GUI exports in a thread)."""
    mask = os.umask(0o027)
    try:
        def no_umask(_mask):
            raise AssertionError("os.umask called while writing")

        monkeypatch.setattr(os, "umask", no_umask)
        write_bytes_atomic(tmp_path / "f.bin", b"x")
        with atomic_dir(tmp_path / "d") as d:
            (d / "a").write_bytes(b"a")
        monkeypatch.undo()
    finally:
        os.umask(mask)
    assert (tmp_path / "f.bin").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o750
