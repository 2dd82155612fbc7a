"""
State files: atomic writes, and clear errors for what cannot be read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from chatroom.bans import BanList
from chatroom.state import StateError, clean_temporary_files, is_temporary_file, read_json, write_json
from chatroom.stores.files import STATE_FILE, load_bans

REPOSITORY = Path(__file__).resolve().parent.parent


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


def kill_during_write(path: Path, value: object) -> None:
    """
    Run L{write_json} in another process that is killed with SIGKILL once
    the new file is written and fsynced, just before its rename.
    """
    program = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from chatroom.state import write_json
        os.replace = lambda source, target: os.kill(os.getpid(), signal.SIGKILL)
        write_json(Path({str(path)!r}), {value!r})
        """
    )
    done = subprocess.run([sys.executable, "-c", program], cwd=REPOSITORY, check=False)
    assert done.returncode == -signal.SIGKILL


def test_kill_9_leaves_a_temporary_file_that_the_next_start_removes(tmp_path: Path) -> None:
    path = tmp_path / STATE_FILE
    write_json(path, {"version": "old"})
    kill_during_write(path, {"version": "new"})
    kill_during_write(path, {"version": "newer"})
    left = sorted(name for name in os.listdir(tmp_path) if name != STATE_FILE)
    assert len(left) == 2 and all(name.startswith(f".{STATE_FILE}.") for name in left)
    assert all(is_temporary_file(name) for name in left)
    assert read_json(path) == {"version": "old"}
    assert clean_temporary_files(tmp_path) == [tmp_path / name for name in left]
    assert os.listdir(tmp_path) == [STATE_FILE]
    assert read_json(path) == {"version": "old"}
    assert clean_temporary_files(tmp_path) == []


def test_only_its_own_temporary_files_are_removed(tmp_path: Path) -> None:
    ours = [".moderation.json.k2_9xq0z.tmp", ".other.json.abcdefgh.tmp", ".x.12345678.tmp"]
    others = [
        "moderation.json",
        "notes.tmp",
        ".moderation.json.tmp",
        "moderation.json.abcdefgh.tmp",
        ".moderation.json.ABCDEFGH.tmp",
        ".moderation.json.abcdefg.tmp",
        ".moderation.json.abcdefghi.tmp",
        ".moderation.json.abcdefgh.tmp.bak",
        ".moderation.json.abcd-fgh.tmp",
        "..abcdefgh.tmp",
    ]
    for name in ours + others:
        (tmp_path / name).write_text(name)
    # A directory, a symbolic link and a file in a subdirectory with the name are kept too.
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(tmp_path / "notes.tmp")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".moderation.json.abcdefgh.tmp").write_text("deeper")
    assert clean_temporary_files(tmp_path) == sorted(tmp_path / name for name in ours)
    left = set(os.listdir(tmp_path))
    assert left == set(others) | {".dir.abcdefgh.tmp", ".link.abcdefgh.tmp", "sub"}
    assert (tmp_path / "notes.tmp").read_text() == "notes.tmp"
    assert os.listdir(tmp_path / "sub") == [".moderation.json.abcdefgh.tmp"]


def test_cleaning_a_missing_or_unreadable_directory(tmp_path: Path) -> None:
    assert clean_temporary_files(tmp_path / "missing") == []
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match="cannot list the state directory"):
        clean_temporary_files(tmp_path / "file")


def test_the_temporary_files_of_write_json_match_the_pattern(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def crash(source: str, target: object) -> None:
        seen.append(Path(source).name)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", crash)
    for _ in range(50):
        with pytest.raises(OSError):
            write_json(tmp_path / STATE_FILE, [])
    assert len(seen) == 50 and all(is_temporary_file(name) for name in seen)
