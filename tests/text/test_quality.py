"""clean_generation and lexical_flags on the answers small models really give."""

from __future__ import annotations

import pytest

from socialsynth.text.quality import clean_generation, is_degenerate, lexical_flags

BODY = "Just ask your manager for a meeting and bring numbers."


# what clean_generation cuts from around BODY, under the note it records
WRAPPED = {
    "preamble": [
        f"Sure! Here's the rewritten comment:\n{BODY}",
        f"Sure! Here's the rewritten comment: {BODY}",
        f"Here is the rewritten comment in a very formal style:\n\n{BODY}",
        f"Certainly. Here is a more casual version: {BODY}",
        f"REWRITTEN COMMENT: {BODY}",
        f"Rewritten comment:\n{BODY}",
        f"  Okay, here's my rewrite:\n{BODY}  ",
    ],
    "echo": [  # the instructions echoed after the answer
        f"{BODY}\n\nPOST TITLE: How do I ask for a raise?\nCOMMENT: ...",
        f"{BODY} Rewrite the comment so that it is Very Formal.",
        f"{BODY}\nREWRITTEN COMMENT: something else",
        f"{BODY}\n\nRATING DEFINITIONS for formality:\n1. Very Casual: ...",
    ],
    "trailing_note": [
        f"{BODY}\nNote: I changed the tone to be more formal.",
        f"{BODY}\n\nNote: the meaning is preserved.\nThe rest is unchanged.",
        f"{BODY}\nExplanation: added a greeting.",
        f"{BODY}\n\nI changed the slang to standard English.",
    ],
    "quotes": [f'"{BODY}"', f"“{BODY}”", f"'{BODY}'", f'Sure! Here is the formal version: "{BODY}"'],
}


@pytest.mark.parametrize(("note", "raw"), [(note, raw) for note, raws in WRAPPED.items() for raw in raws])
def test_clean_generation_cuts_what_wraps_the_answer(note, raw):
    cleaned = clean_generation(raw)
    assert cleaned.text == BODY
    assert note in cleaned.notes


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

# texts that lexical_flags(text, ORIGINAL) flags, and texts it does not flag, by flag
FLAGGED = {
    "refusal": [
        "I'm sorry, but I can't help with that.",
        "I cannot rewrite this comment because it may be offensive.",
        "As an AI language model, I don't have opinions.",
        "I am unable to comply with this request.",
    ],
    "empty": ["", "   \n "],
    "unchanged": [  # case, punctuation and spacing do not count
        ORIGINAL,
        "don't let everyone else's timeline pressure you man",
        "DONT LET EVERYONE ELSES TIMELINE PRESSURE YOU, MAN!!",
        "  Don't let everyone else's   timeline pressure you, man. ",
    ],
    "degenerate": [
        "NOOOOOOOOOOOO",
        "lol lol lol lol lol lol lol lol lol lol lol lol lol",
        "\n".join(["I agree with you."] * 5),
    ],
    "instruction_echo": ["Rewrite the comment to be formal."],
}
NOT_FLAGGED = {
    "refusal": ["I'm sorry you're going through this, man. Four years is not late, it's just yours."],  # sympathy
    "empty": ["ok"],
    "unchanged": ["Do not let other people's timelines pressure you."],
    "degenerate": [
        ORIGINAL,
        "Noooo way, that's wild.",
        "First line.\nSecond line.\nThird line.",
        "It took me almost two years in a new city. What worked for me: a climbing gym, a weekly board game night.",
    ],
}


@pytest.mark.parametrize(
    ("flag", "text", "expected"),
    [
        (flag, text, expected)
        for expected, table in ((True, FLAGGED), (False, NOT_FLAGGED))
        for flag, texts in table.items()
        for text in texts
    ],
)
def test_lexical_flag(flag, text, expected):
    assert lexical_flags(text, ORIGINAL)[flag] is expected
    if flag == "degenerate":
        assert is_degenerate(text) is expected


def test_clean_rewrite_has_no_flags():
    flags = lexical_flags("Do not allow the schedules of others to pressure you.", ORIGINAL)
    assert not any(flags.values())
