"""
The built wheel carries the twistd plugin the right way.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tests.daemon import REPO


def test_wheel_holds_the_plugin_and_no_twisted_init(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("chatroom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "twisted/plugins/chatroom_plugin.py" in names
    assert "chatroom/tap.py" in names
    assert "chatroom/client/app.py" in names
    (entry_points,) = (name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "chatroom-client = chatroom.client.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "twisted/__init__.py" not in names
    assert "twisted/plugins/__init__.py" not in names

    # Installed from the wheel alone, away from this checkout, twistd finds it.
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    found = subprocess.run(
        [
            sys.executable,
            "-c",
            "from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "import chatroom\n"
            "print(chatroom.__file__)\n"
            "print(sorted(p.tapname for p in getPlugins(IServiceMaker)))\n",
        ],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    module_file, tapnames = found.stdout.splitlines()
    assert module_file.startswith(str(target))
    assert "'chatroom'" in tapnames


def test_installed_twistd_lists_chatroom(tmp_path: Path) -> None:
    twistd = Path(sys.executable).parent / "twistd"
    result = subprocess.run(
        [str(twistd), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert "chatroom" in result.stdout
    options = subprocess.run(
        [str(twistd), "-n", "chatroom", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    for option in ("--port", "--interface", "--cert", "--key", "--state"):
        assert option in options.stdout
