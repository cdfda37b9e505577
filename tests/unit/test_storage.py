"""platform.storage: the one way the project rewrites a file in place."""

from __future__ import annotations

import os
import stat

import pytest

from include.modelops.platform.storage import atomic_file, write_atomic


def test_write_replaces_the_whole_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "sub" / "record.json"
    write_atomic(target, '{"stage": "canary_10"}')
    write_atomic(target, '{"stage": "promoted"}')
    assert target.read_text() == '{"stage": "promoted"}'
    assert sorted(p.name for p in target.parent.iterdir()) == ["record.json"]


def test_bytes_are_written_as_given(tmp_path):
    target = write_atomic(tmp_path / "ckpt.pt", b"\x00\x01\xff", fsync=True)
    assert target.read_bytes() == b"\x00\x01\xff"


def test_a_write_that_fails_part_way_keeps_the_old_file_and_removes_its_temporary(tmp_path):
    target = tmp_path / "card.md"
    target.write_text("old card")
    with pytest.raises(RuntimeError, match="disk full"), atomic_file(target) as fh:
        fh.write("half a new ca")
        raise RuntimeError("disk full")
    assert target.read_text() == "old card"
    assert [p.name for p in tmp_path.iterdir()] == ["card.md"]


def test_an_existing_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "spec.yaml"
    target.write_text("a")
    os.chmod(target, 0o640)
    write_atomic(target, "b")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_new_file_gets_what_open_would_give_it_not_0600(tmp_path):
    target = write_atomic(tmp_path / "report.html", "<p>ok</p>")
    (tmp_path / "opened.html").write_text("<p>ok</p>")
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE((tmp_path / "opened.html").stat().st_mode)


def test_only_whole_file_modes_are_accepted(tmp_path):
    with pytest.raises(ValueError, match="mode 'w' or 'wb'"), atomic_file(tmp_path / "x", "a"):
        pass
