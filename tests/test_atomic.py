"""The one atomic writer: a reader never sees half a file, and a render is never overwritten."""

from __future__ import annotations

import errno
import os

import pytest

from studio_nova import atomic


def test_when_a_write_fails_half_way_then_neither_the_output_nor_a_temp_is_left(tmp_path):
    target = tmp_path / "out" / "notes.json"
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(target) as temp:
            temp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_when_overwrite_is_off_then_an_existing_file_is_kept_byte_for_byte(tmp_path):
    target = tmp_path / "shot_v001.mov"
    target.write_bytes(b"the first render")
    with pytest.raises(FileExistsError):
        atomic.write_bytes(target, b"a second render", overwrite=False)
    assert target.read_bytes() == b"the first render"
    assert [p.name for p in tmp_path.iterdir()] == ["shot_v001.mov"]


def test_when_the_file_system_has_no_hard_links_then_publishing_falls_back_to_a_checked_rename(tmp_path, monkeypatch):
    def no_links(_src, _dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    target = atomic.write_bytes(tmp_path / "a.bin", b"abc", overwrite=False)
    assert target.read_bytes() == b"abc"
    with pytest.raises(FileExistsError):
        atomic.write_bytes(tmp_path / "a.bin", b"xyz", overwrite=False)
    assert target.read_bytes() == b"abc"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_a_folder_is_published_whole_and_replaces_the_previous_one(tmp_path):
    target = tmp_path / "step-000010"
    for generation in (1, 2):
        with atomic.atomic_path(target, folder=True) as temp:
            (temp / "weights.bin").write_bytes(bytes([generation]) * 4)
            assert not (target / "weights.bin").exists() or (target / "weights.bin").read_bytes() == b"\x01" * 4
    assert (target / "weights.bin").read_bytes() == b"\x02" * 4
    assert [p.name for p in tmp_path.iterdir()] == ["step-000010"]


def test_temp_names_keep_the_extension_and_hide_beside_the_output(tmp_path):
    temp = atomic.temp_sibling(tmp_path / "cut.fcpxml")
    assert temp.parent == tmp_path and temp.name.startswith(".cut.") and temp.suffix == ".fcpxml"
    assert atomic.temp_sibling(tmp_path / "cut.fcpxml") != temp


def test_json_and_text_round_trip(tmp_path):
    assert atomic.write_json(tmp_path / "a.json", {"b": [1, 2]}).read_text() == '{\n  "b": [\n    1,\n    2\n  ]\n}'
    assert atomic.write_text(tmp_path / "b.txt", "héllo").read_text(encoding="utf-8") == "héllo"


def test_partials_a_killed_writer_left_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "sh010_v001.mov"
    stale = atomic.temp_sibling(target)
    stale.write_bytes(b"half a master")
    other = atomic.temp_sibling(tmp_path / "sh010_v001_proxy.mp4")
    other.write_bytes(b"someone else's")
    target.write_bytes(b"whole")
    assert atomic.remove_partials(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([other.name, target.name])
