"""
The systemd unit in C{contrib/}: it parses, it asks for the hardening the
README promises, and its command line is one the daemon really runs.
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatroom.tap import Options
from tests.daemon import REPO, daemon_env

UNIT = REPO / "contrib" / "chatroom.service"
ENV_FILE = REPO / "contrib" / "chatroom.env"
INSTALLED_TWISTD = "/opt/chatroom/bin/twistd"
STATE = "/var/lib/chatroom"
TWISTD = Path(sys.executable).with_name("twistd")
TIMEOUT = 30.0

Unit = dict[str, dict[str, list[str]]]


def parse_unit(text: str) -> Unit:
    """
    A unit file's sections and their keys, each with its values in order
    (a key may be given more than once); backslash-continued lines joined.

    @raise ValueError: For a line that is neither a section, a key, a
        comment nor blank.
    """
    sections: Unit = {}
    current: dict[str, list[str]] | None = None
    for line in re.sub(r"\\\n", " ", text).splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if match := re.fullmatch(r"\[([A-Za-z]+)\]", stripped):
            if match.group(1) in sections:
                raise ValueError(f"section [{match.group(1)}] given twice")
            current = sections[match.group(1)] = {}
        elif (match := re.fullmatch(r"([A-Za-z]+)=(.*)", stripped)) and current is not None:
            current.setdefault(match.group(1), []).append(match.group(2).strip())
        else:
            raise ValueError(f"not a unit file line: {line!r}")
    return sections


def test_the_parser_refuses_what_is_not_a_unit_file() -> None:
    assert parse_unit("[Service]\nUser=x\n# c\nUser=y \\\n z\n") == {"Service": {"User": ["x", "y   z"]}}
    for broken in ("User=x\n", "[Service]\nUser x\n", "[Service]\n[Service]\n"):
        with pytest.raises(ValueError):
            parse_unit(broken)


@pytest.fixture(scope="module")
def unit() -> Unit:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def one(unit: Unit, key: str, section: str = "Service") -> str:
    values = unit[section][key]
    assert len(values) == 1, (key, values)
    return values[0]


def test_the_unit_runs_the_daemon_as_its_own_user_in_a_read_only_system(unit: Unit) -> None:
    assert set(unit) == {"Unit", "Service", "Install"}
    assert (one(unit, "User"), one(unit, "Group")) == ("chatroom", "chatroom")
    assert one(unit, "StateDirectory") == "chatroom"
    assert one(unit, "WorkingDirectory") == STATE
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "UMask": "0077",
        "KillSignal": "SIGTERM",
    }
    assert {key: one(unit, key) for key in expected} == expected
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"


def exec_start(unit: Unit) -> tuple[list[str], list[str]]:
    """
    The unit's command line: twistd's own options and the daemon's.
    """
    argv = shlex.split(one(unit, "ExecStart"))
    assert argv[0] == INSTALLED_TWISTD
    split = argv.index("chatroom")
    return argv[1:split], argv[split + 1 :]


def long_options(help_text: str) -> set[str]:
    return set(re.findall(r"^\s+(?:-\w, )?(--[\w-]+)", help_text, re.MULTILINE))


@pytest.fixture(scope="module")
def daemon_options() -> set[str]:
    # What the installed daemon itself says it takes.
    done = subprocess.run(
        [str(TWISTD), "-n", "chatroom", "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    found = long_options(done.stdout)
    assert "--state" in found and "--shutdown-grace" in found, done.stdout
    return found


def option_names(argv: list[str]) -> list[str]:
    return [word.split("=")[0] for word in argv if word.startswith("--")]


def test_the_command_line_names_options_the_daemon_has(unit: Unit, daemon_options: set[str]) -> None:
    twistd_argv, chatroom_argv = exec_start(unit)
    done = subprocess.run(
        [str(TWISTD), "--help"], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert set(option_names(twistd_argv)) <= long_options(done.stdout)
    assert {"--nodaemon", "--pidfile"} <= set(option_names(twistd_argv))
    assert chatroom_argv[-1] == "$CHATROOM_OPTIONS"
    assert set(option_names(chatroom_argv)) <= daemon_options
    # The same as the options class the plugin uses.
    declared = {f"--{o[0]}" for o in Options.optParameters} | {f"--{o[0]}" for o in Options.optFlags}
    assert set(option_names(chatroom_argv)) <= declared
    state = chatroom_argv[chatroom_argv.index("--state") + 1]
    assert Path(state).is_relative_to(STATE)


def test_the_example_environment_file_names_options_the_daemon_has(daemon_options: set[str]) -> None:
    text = ENV_FILE.read_text(encoding="utf-8")
    assert re.search(r"^CHATROOM_OPTIONS=", text, re.MULTILINE)
    named = set(re.findall(r"--[\w-]+", text))
    assert named and named <= daemon_options


def test_the_stop_timeout_outlasts_the_shutdown_grace(unit: Unit) -> None:
    _, chatroom_argv = exec_start(unit)
    grace = float(Options().defaults["shutdown-grace"])
    if "--shutdown-grace" in chatroom_argv:
        grace = float(chatroom_argv[chatroom_argv.index("--shutdown-grace") + 1])
    # Draining, then saving the state and exiting, with room to spare.
    assert float(one(unit, "TimeoutStopSec")) >= grace + 10


def local_copy(tmp_path: Path) -> Path:
    """
    The unit with this machine's twistd in it, as systemd would see it installed.
    """
    copy = tmp_path / "chatroom.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace(INSTALLED_TWISTD, str(TWISTD)), encoding="utf-8")
    return copy


needs_systemd = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed (Debian: systemd)"
)


@needs_systemd
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    # Unknown keys, bad values and missing programs are warnings: no output at all is the pass.
    done = subprocess.run(
        ["systemd-analyze", "verify", str(local_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@needs_systemd
def test_systemd_rates_the_unit_well_hardened(tmp_path: Path) -> None:
    # systemd's exposure score, 0 (locked down) to 10 (none; --threshold counts tenths); the unit is at 1.3.
    done = subprocess.run(
        [
            "systemd-analyze",
            "security",
            "--offline=yes",
            "--threshold=20",
            "--no-pager",
            str(local_copy(tmp_path)),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Overall exposure level for chatroom\.service: [01]\.\d", done.stdout), done.stdout


class Output:
    """
    A process's output, read in a thread; L{wait_for} waits for a line.
    """

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()

    def wait_for(self, pattern: str) -> re.Match[str]:
        with self._changed:
            found: list[re.Match[str]] = []

            def seen() -> bool:
                found.extend(m for line in self.lines if (m := re.search(pattern, line)))
                return bool(found)

            assert self._changed.wait_for(seen, timeout=TIMEOUT), (
                f"{pattern!r} not in:\n{''.join(self.lines)}"
            )
            return found[0]


@pytest.fixture
def unit_process(unit: Unit, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Output]]:
    """
    The daemon run with the unit's command line, as systemd would run it
    (in its working directory, C{$CHATROOM_OPTIONS} split into words), but
    in a temporary directory and on a free port of 127.0.0.1.
    """
    command = one(unit, "ExecStart").replace(STATE, str(tmp_path)).replace(INSTALLED_TWISTD, str(TWISTD))
    options = "--port 0 --interface 127.0.0.1"
    argv = shlex.split(command.replace("$CHATROOM_OPTIONS", options))
    process = subprocess.Popen(
        argv, cwd=tmp_path, env=daemon_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        yield process, Output(process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=TIMEOUT)


def test_the_daemon_runs_reloads_and_stops_as_the_unit_says(
    unit: Unit, unit_process: tuple[subprocess.Popen[str], Output], tmp_path: Path
) -> None:
    process, output = unit_process
    output.wait_for(r"chatroom listening on 127\.0\.0\.1:\d+")
    assert (tmp_path / "certs" / "ca.pem").exists() and (tmp_path / "state").is_dir()
    assert not list(tmp_path.glob("*.pid"))
    # ExecReload: SIGHUP reloads, the daemon goes on.
    process.send_signal(signal.SIGHUP)
    output.wait_for(r"reloaded the certificate certs/server\.pem")
    assert process.poll() is None
    # Stopping: SIGTERM, an orderly exit 0 well within TimeoutStopSec.
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=float(one(unit, "TimeoutStopSec"))) == 0
    output.wait_for(r"closed 0 connections")
