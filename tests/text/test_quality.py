"""clean_generation and lexical_flags on the answers small models really give."""

from __future__ import annotations

import pytest

from socialsynth.text.quality import clean_generation, is_degenerate, lexical_flags

BODY = "Just ask your manager for a meeting and bring numbers."


@pytest.mark.parametrize(
    "raw",
    [
        f"Sure! Here's the rewritten comment:\n{BODY}",
        f"Sure! Here's the rewritten comment: {BODY}",
        f"Here is the rewritten comment in a very formal style:\n\n{BODY}",
        f"Certainly. Here is a more casual version: {BODY}",
        f"REWRITTEN COMMENT: {BODY}",
        f"Rewritten comment:\n{BODY}",
        f"  Okay, here's my rewrite:\n{BODY}  ",
    ],
)
def test_clean_generation_cuts_preambles(raw):
    cleaned = clean_generation(raw)
    assert cleaned.text == BODY
    assert "preamble" in cleaned.notes


@pytest.mark.parametrize(
    "raw",
    [
        f"{BODY}\n\nPOST TITLE: How do I ask for a raise?\nCOMMENT: ...",
        f"{BODY} Rewrite the comment so that it is Very Formal.",
        f"{BODY}\nREWRITTEN COMMENT: something else",
        f"{BODY}\n\nRATING DEFINITIONS for formality:\n1. Very Casual: ...",
    ],
)
def test_clean_generation_cuts_instruction_echoes_after_the_answer(raw):
    cleaned = clean_generation(raw)
    assert cleaned.text == BODY
    assert "echo" in cleaned.notes


@pytest.mark.parametrize(
    "raw",
    [
        f"{BODY}\nNote: I changed the tone to be more formal.",
        f"{BODY}\n\nNote: the meaning is preserved.\nThe rest is unchanged.",
        f"{BODY}\nExplanation: added a greeting.",
        f"{BODY}\n\nI changed the slang to standard English.",
    ],
)
def test_clean_generation_cuts_trailing_notes(raw):
    cleaned = clean_generation(raw)
    assert cleaned.text == BODY
    assert "trailing_note" in cleaned.notes


@pytest.mark.parametrize("raw", [f'"{BODY}"', f"“{BODY}”", f"'{BODY}'", f'Sure! Here is the formal version: "{BODY}"'])
def test_clean_generation_strips_wrapping_quotes(raw):
    cleaned = clean_generation(raw)
    assert cleaned.text == BODY
    assert "quotes" in cleaned.notes


@pytest.mark.parametrize(
    "comment",
    [
        "My advice: lift weights.",
        "Honestly? Two things: sleep and water.",
        'He said "no" and then left. Classic.',
        "Update: it worked, thanks guys!",
        "I kept it simple: a suit, no tie.",
        "Step 1: ask. Step 2: wait.",
    ],
)
def test_clean_generation_leaves_normal_comments_alone(comment):
    cleaned = clean_generation(comment)
    assert cleaned.text == comment
    assert cleaned.notes == []


def test_answer_that_is_only_a_preamble_does_not_pass_as_a_rewrite():
    cleaned = clean_generation("Here is the rewritten comment:")
    assert any(lexical_flags(cleaned.text, ORIGINAL).values()), f"{cleaned.text!r} would pass as a rewrite"


def test_clean_generation_keeps_later_lines_that_start_with_i_made():
    comment = "First month was rough and my knees hated me.\nI kept running anyway and now I love it."
    assert clean_generation(comment).text == comment


def test_clean_generation_keeps_heres_what_worked_for_me():
    comment = "Here's what worked for me: a climbing gym and a weekly board game night."
    assert clean_generation(comment).text == comment


# -- flags ------------------------------------------------------------------------------------------------------
ORIGINAL = "Don't let everyone else's timeline pressure you, man."


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry, but I can't help with that.",
        "I cannot rewrite this comment because it may be offensive.",
        "As an AI language model, I don't have opinions.",
        "I am unable to comply with this request.",
    ],
)
def test_flags_refusal(text):
    flags = lexical_flags(text, ORIGINAL)
    assert flags["refusal"] is True


def test_sympathy_is_not_a_refusal():
    text = "I'm sorry you're going through this, man. Four years is not late, it's just yours."
    assert lexical_flags(text, ORIGINAL)["refusal"] is False


def test_flags_empty():
    assert lexical_flags("", ORIGINAL)["empty"] is True
    assert lexical_flags("   \n ", ORIGINAL)["empty"] is True
    assert lexical_flags("ok", ORIGINAL)["empty"] is False


@pytest.mark.parametrize(
    "text",
    [
        ORIGINAL,
        "don't let everyone else's timeline pressure you man",
        "DONT LET EVERYONE ELSES TIMELINE PRESSURE YOU, MAN!!",
        "  Don't let everyone else's   timeline pressure you, man. ",
    ],
)
def test_flags_unchanged_ignores_case_punctuation_and_spacing(text):
    assert lexical_flags(text, ORIGINAL)["unchanged"] is True


def test_flags_changed_text_is_not_unchanged():
    assert lexical_flags("Do not let other people's timelines pressure you.", ORIGINAL)["unchanged"] is False


@pytest.mark.parametrize(
    "text",
    [
        "NOOOOOOOOOOOO",
        "lol lol lol lol lol lol lol lol lol lol lol lol lol",
        "\n".join(["I agree with you."] * 5),
    ],
)
def test_flags_degenerate(text):
    assert is_degenerate(text)
    assert lexical_flags(text, ORIGINAL)["degenerate"] is True


@pytest.mark.parametrize(
    "text",
    [
        ORIGINAL,
        "Noooo way, that's wild.",
        "First line.\nSecond line.\nThird line.",
        "It took me almost two years in a new city. What worked for me: a climbing gym, a weekly board game night.",
    ],
)
def test_normal_text_is_not_degenerate(text):
    assert lexical_flags(text, ORIGINAL)["degenerate"] is False


def test_flags_instruction_echo_and_clean_text_has_no_flags():
    assert lexical_flags("Rewrite the comment to be formal.", ORIGINAL)["instruction_echo"] is True
    flags = lexical_flags("Do not allow the schedules of others to pressure you.", ORIGINAL)
    assert not any(flags.values())
