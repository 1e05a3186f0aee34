"""User-id rules of RTM 2, as in Agora's Signaling 2.x docs (see rtm2.protocol.names)."""

from __future__ import annotations

import pytest

from rtm2.protocol.names import MAX_USER_ID_LENGTH, is_valid_user_id

# The punctuation Agora's docs allow in user ids, minus "." (the 1.x to 2.x migration guide,
# https://docs.agora.io/en/signaling/overview/migration-guide, says 2.x refuses it).
DOCUMENTED_PUNCTUATION = " !#$%&()+-:;<=>?@[]^_{}|~,"


def test_a_user_id_may_be_at_most_64_characters() -> None:
    assert MAX_USER_ID_LENGTH == 64


@pytest.mark.parametrize(
    "user_id",
    ["alice", "a" * 64, "user-1@x", "a b", "a_b", "0", "Zz09"],
)
def test_a_user_id_made_of_legal_characters_is_accepted(user_id: str) -> None:
    assert is_valid_user_id(user_id)


@pytest.mark.parametrize("char", list(DOCUMENTED_PUNCTUATION))
def test_every_documented_punctuation_character_is_accepted_inside_a_user_id(char: str) -> None:
    assert is_valid_user_id(f"a{char}b")


@pytest.mark.parametrize(
    "user_id",
    [
        "",
        "a" * 65,
        "_hidden",
        "a.b",
        " lead",
        "trail ",
        "tab\t",
        "é",
        "a/b",
        "a*b",
        "a\\b",
        "nul\x00",
        "line\nbreak",
        "a`b",
    ],
    ids=repr,
)
def test_a_user_id_breaking_a_name_rule_is_rejected(user_id: str) -> None:
    assert not is_valid_user_id(user_id)
