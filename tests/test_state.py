"""
State files: atomic writes, and clear errors for what cannot be read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from chatroom.bans import BanList
from chatroom.state import StateError, read_json, write_json
from chatroom.stores.files import STATE_FILE, load_bans


def test_write_then_read(tmp_path: Path) -> None:
    path = tmp_path / "thing.json"
    assert read_json(path) is None
    write_json(path, {"a": [1, 2], "b": "é"})
    assert read_json(path) == {"a": [1, 2], "b": "é"}
    write_json(path, {"a": 3})
    assert read_json(path) == {"a": 3}
    assert os.listdir(tmp_path) == ["thing.json"]
    assert path.stat().st_mode & 0o077 == 0


def test_a_failed_rename_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "thing.json"
    write_json(path, {"version": "old"})
    before = path.read_bytes()
    written: list[bytes] = []

    def crash(source: str, target: object) -> None:
        # The new state is complete on disk, but the process dies before the rename.
        written.append(Path(source).read_bytes())
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="Input/output error"):
        write_json(path, {"version": "new"})
    assert json.loads(written[0]) == {"version": "new"}
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["thing.json"]


def test_a_failed_write_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "thing.json"
    write_json(path, [1])

    def no_space(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        write_json(path, [2])
    assert read_json(path) == [1]
    assert os.listdir(tmp_path) == ["thing.json"]


def test_corrupt_and_unreadable_files_are_errors(tmp_path: Path) -> None:
    torn = tmp_path / "torn.json"
    torn.write_text('{"version": 1, "bans": [')
    with pytest.raises(StateError, match=r"torn\.json is corrupt"):
        read_json(torn)
    directory = tmp_path / "dir.json"
    directory.mkdir()
    with pytest.raises(StateError, match=r"cannot read the state file .*dir\.json"):
        read_json(directory)


def test_loading_bans(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    assert load_bans(path).active(0.0) == []
    document = {
        "version": 1,
        "bans": [{"name": "bob", "network": None, "by": "a", "at": 1.0, "expires": None, "reason": ""}],
    }
    write_json(path, document)
    assert [ban.target for ban in load_bans(path).active(0.0)] == ["bob"]
    assert BanList.from_json(document["bans"]).active(0.0) == load_bans(path).active(0.0)


@pytest.mark.parametrize(
    "content",
    [
        "",
        "[]",
        '{"version": 2, "bans": []}',
        '{"version": 1}',
        '{"version": 1, "bans": [{"name": "bob"}]}',
        "\xff\xfe",
    ],
)
def test_loading_a_bad_state_file_is_an_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / STATE_FILE
    path.write_text(content, encoding="latin-1")
    with pytest.raises(StateError, match=r"moderation\.json is corrupt"):
        load_bans(path)
