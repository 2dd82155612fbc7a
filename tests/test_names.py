"""
Name rules and look-alikes.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatroom.names import LOOK_ALIKES, MAX_NAME_LENGTH, name_problem, skeleton

# Any string of name characters: more than valid names, so the properties
# hold for whatever the skeleton is given.
NAME_TEXT = st.text(alphabet=string.ascii_letters + string.digits + "_-", max_size=30)


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
        # Issue 12: pairs that were two members, and the order of the vv rule.
        ("dave", "clave"),
        ("avvv", "avw"),
        ("avw", "awv"),
        ("vwv", "ww"),
        ("mm", "nnm"),
        ("B8", "BB"),
        ("q9", "qg"),
        ("rnm", "mrn"),
        ("rrn", "nnn"),
        ("c1ave", "dave"),
        ("w_w", "v-vvv"),
    ],
)
def test_look_alikes_share_a_skeleton(one: str, other: str) -> None:
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [("alice", "alicia"), ("bob", "bobb"), ("ban", "bam"), ("carol", "caro"), ("van", "vvan"), ("ca", "da")],
)
def test_different_names_differ(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)


@given(NAME_TEXT)
def test_a_skeleton_is_its_own_skeleton(name: str) -> None:
    assert skeleton(skeleton(name)) == skeleton(name)


@given(NAME_TEXT, NAME_TEXT, st.sampled_from(LOOK_ALIKES), st.booleans())
def test_rewriting_one_look_alike_anywhere_keeps_the_skeleton(
    before: str, after: str, pair: tuple[str, str], upper: bool
) -> None:
    one, other = pair
    if upper:
        one = one.upper()
    assert skeleton(before + one + after) == skeleton(before + other + after)


@given(NAME_TEXT, st.sampled_from(LOOK_ALIKES), st.data())
def test_rewriting_look_alikes_in_any_order_keeps_the_skeleton(
    name: str, pair: tuple[str, str], data: st.DataObject
) -> None:
    # Every occurrence of one side, rewritten one at a time in a random order.
    one, other = pair
    if not one:
        return
    expected = skeleton(name)
    while one in name:
        starts = [i for i in range(len(name)) if name.startswith(one, i)]
        i = data.draw(st.sampled_from(starts))
        name = name[:i] + other + name[i + len(one) :]
        assert skeleton(name) == expected
