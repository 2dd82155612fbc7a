"""
Name rules and look-alikes.
"""

from __future__ import annotations

import pytest

from chatroom.names import MAX_NAME_LENGTH, name_problem, skeleton


@pytest.mark.parametrize("name", ["a", "alice", "Bob_2", "x-y", "A" * MAX_NAME_LENGTH])
def test_valid(name: str) -> None:
    assert name_problem(name) is None


@pytest.mark.parametrize("name", ["", "1abc", "_x", "al ice", "é", "a.b", "*", "A" * (MAX_NAME_LENGTH + 1)])
def test_invalid(name: str) -> None:
    assert name_problem(name) is not None


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("alice", "ALICE"),
        ("alice", "Al1ce"),
        ("bob", "b0b"),
        ("sam", "5am"),
        ("a_lice", "alice"),
        ("marn", "mam"),
        ("vvill", "will"),
    ],
)
def test_look_alikes_share_a_skeleton(one: str, other: str) -> None:
    assert skeleton(one) == skeleton(other)


def test_different_names_differ() -> None:
    assert skeleton("alice") != skeleton("alicia")
