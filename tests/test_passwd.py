"""
Admin password hashes and the tool that makes them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from chatroom.passwd import (
    MIN_PASSWORD_LENGTH,
    PasswordHash,
    hash_password,
    password_problem,
    read_hash_file,
)
from tests.daemon import daemon_env

CHEAP = {"n": 2**4, "r": 1, "p": 1}


def test_hash_and_check() -> None:
    hashed = hash_password("correct horse", **CHEAP)
    assert hashed.matches("correct horse")
    assert not hashed.matches("correct horse ")
    assert not hashed.matches("Correct horse")
    again = hash_password("correct horse", **CHEAP)
    assert again.salt != hashed.salt and again.key != hashed.key


def test_the_text_form_carries_parameters_and_salt() -> None:
    hashed = hash_password("pw", **CHEAP)
    text = str(hashed)
    assert text.startswith("scrypt$n=16,r=1,p=1$")
    parsed = PasswordHash.parse(text + "\n")
    assert parsed == hashed
    assert parsed.matches("pw")


def test_passwords_are_compared_in_nfc() -> None:
    # The daemon normalises lines to NFC; a decomposed password typed at the
    # tool must still match what /oper receives.
    hashed = hash_password("cafe\u0301", **CHEAP)
    assert hashed.matches("caf\u00e9")


@pytest.mark.parametrize(
    "text",
    [
        "hunter2",
        "scrypt$n=16,r=1,p=1$c2FsdA==",
        "scrypt$n=15,r=1,p=1$c2FsdA==$a2V5",
        "scrypt$n=1048576,r=8,p=1$c2FsdA==$a2V5",
        "scrypt$n=16,r=0,p=1$c2FsdA==$a2V5",
        "scrypt$n=16,r=1,p=1$c2FsdA=$a2V5",
        "scrypt$n=16,r=1,p=1$c2FsdA==$a2V5",
    ],
)
def test_malformed_hashes(text: str) -> None:
    with pytest.raises(ValueError):
        PasswordHash.parse(text)


def test_reading_the_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "admin.hash"
    with pytest.raises(ValueError, match="cannot read the admin password file"):
        read_hash_file(path)
    path.write_text("my password\n")
    with pytest.raises(ValueError, match=r"python -m chatroom\.passwd"):
        read_hash_file(path)
    hashed = hash_password("pw", **CHEAP)
    path.write_text(f"{hashed}\n")
    assert read_hash_file(path) == hashed


def test_password_problems() -> None:
    assert password_problem("fine pass phrase") is None
    assert password_problem("") == "the password is empty"
    assert "space" in str(password_problem(" leading and long"))
    assert "control" in str(password_problem("tab\there and long"))


def test_a_password_has_a_minimum_length() -> None:
    assert MIN_PASSWORD_LENGTH == 12
    assert password_problem("x" * MIN_PASSWORD_LENGTH) is None
    assert password_problem("x" * (MIN_PASSWORD_LENGTH - 1)) == (
        "the password is too short: 11 characters, at least 12 are needed (a few words make a good one)"
    )
    assert "too short: 1 characters" in str(password_problem("x"))
    # Counted as the daemon sees it: an accent typed as two code points is one character.
    assert "too short: 11" in str(password_problem("cafe\u0301 au lai"))


def run_tool(stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "chatroom.passwd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=60,
    )


def test_the_tool_prints_a_hash_of_standard_input() -> None:
    done = run_tool("s3cret phrase\n")
    assert done.returncode == 0, done.stderr
    hashed = PasswordHash.parse(done.stdout)
    assert (hashed.n, hashed.r, hashed.p) == (2**14, 8, 1)
    assert hashed.matches("s3cret phrase")


def test_the_tool_refuses_a_password_that_cannot_be_typed() -> None:
    done = run_tool(" padded pass phrase \n")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "space" in done.stderr


def test_the_tool_refuses_a_short_password() -> None:
    done = run_tool("hunter2\n")
    assert done.returncode == 1
    assert done.stdout == ""
    assert "too short: 7 characters, at least 12" in done.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_the_tool_prints_help_instead_of_asking(flag: str) -> None:
    # Standard input is not read: the help comes even with a password waiting there.
    done = run_tool("a long enough password\n", flag)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m chatroom.passwd")
    assert "--admin-password-file" in done.stdout
    assert "at least 12 characters" in done.stdout
    assert "scrypt$" not in done.stdout


def test_the_tool_refuses_unknown_arguments() -> None:
    done = run_tool("a long enough password\n", "admin.hash")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "unrecognized arguments: admin.hash" in done.stderr
