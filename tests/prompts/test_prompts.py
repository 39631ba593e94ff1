"""Dimension and template loading, and the chats built from them."""

from __future__ import annotations

import pytest

from socialsynth.core.errors import InputError
from socialsynth.jobs.norms.rewrite import rating_chat, rewrite_chat
from socialsynth.prompts import known_dimensions, load_dimension, load_template

SIX = ["formality", "humor", "length", "politeness", "sarcasm", "supportiveness"]

CUSTOM_YAML = """\
name: bluntness
description: How direct a comment is.
levels:
  - name: Very Indirect
    rubric: Hints only.
  - name: Somewhat Indirect
    rubric: Softened.
  - name: Neutral in terms of Indirect-Blunt
    rubric: Plain.
  - name: Somewhat Blunt
    rubric: Direct.
  - name: Very Blunt
    rubric: >-
      No softening at
      all.
examples:
  - level: 5
    title: Should I quit?
    comment: Quit. Today.
  - level: 1
    comment: Perhaps one might consider other options, if it's not too much trouble.
"""


@pytest.mark.parametrize("name", SIX)
def test_builtin_dimensions_load(name):
    dim = load_dimension(name)
    assert dim.name == name
    assert len(dim.levels) == 5
    assert all(lv.name and lv.rubric for lv in dim.levels)
    assert len(dim.examples) >= 5
    assert {ex.level for ex in dim.examples} <= {1, 2, 3, 4, 5}
    assert dim.definitions().splitlines()[0].startswith("1. ")
    assert len(dim.definitions().splitlines()) == 5


def test_known_dimensions_are_the_six():
    assert sorted(known_dimensions()) == SIX


def test_unknown_dimension_lists_known_ones():
    with pytest.raises(InputError) as e:
        load_dimension("toxicity")
    msg = str(e.value)
    assert "toxicity" in msg
    for name in SIX:
        assert name in msg
    assert "\n" not in msg


def test_user_yaml_dimension_by_path(tmp_path):
    path = tmp_path / "bluntness.yaml"
    path.write_text(CUSTOM_YAML, encoding="utf-8")
    dim = load_dimension(str(path))
    assert dim.name == "bluntness"
    assert dim.level_names == [
        "Very Indirect",
        "Somewhat Indirect",
        "Neutral in terms of Indirect-Blunt",
        "Somewhat Blunt",
        "Very Blunt",
    ]
    assert dim.levels[4].rubric == "No softening at all."
    assert [ex.level for ex in dim.examples] == [5, 1]
    chat = rewrite_chat(dim, load_template("norm_rewrite"), "Should I quit?", "Maybe think about it.", 5)
    assert "Very Blunt" in chat[1]["content"]


def test_yaml_with_four_levels_names_the_file(tmp_path):
    text = CUSTOM_YAML.replace("  - name: Very Blunt\n    rubric: >-\n      No softening at\n      all.\n", "")
    path = tmp_path / "four_levels.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_dimension(str(path))
    assert str(path) in str(e.value)
    assert "levels" in str(e.value)
    assert "5" in str(e.value)


def test_yaml_with_bad_example_level_names_the_file(tmp_path):
    path = tmp_path / "bad_example.yaml"
    path.write_text(CUSTOM_YAML.replace("  - level: 5\n", "  - level: 7\n"), encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_dimension(str(path))
    assert str(path) in str(e.value)


def test_rewrite_chat_contains_comment_level_and_system_prompt():
    dim = load_dimension("formality")
    template = load_template("norm_rewrite")  # compact: the title goes into the system prompt (see the YAML)
    chat = rewrite_chat(dim, template, "How do I ask for a raise?", "just ask lol", 4)
    assert [m["role"] for m in chat] == ["system", "user"]
    assert chat[0]["content"].startswith("You rewrite Reddit comments")
    assert '"How do I ask for a raise?"' in chat[0]["content"]
    user = chat[1]["content"]
    assert "just ask lol" in user
    assert "Somewhat Formal" in user
    assert "Very Formal" not in user
    assert "{" not in user and "{" not in chat[0]["content"]  # every placeholder filled


def test_full_rewrite_chat_contains_title_comment_target_level_and_every_definition():
    dim = load_dimension("politeness")
    template = load_template("norm_rewrite_full")
    chat = rewrite_chat(dim, template, "Why is my code slow?", "you're wrong", 2)
    assert chat[0]["content"] == template.system
    user = chat[1]["content"]
    assert "Why is my code slow?" in user
    assert "you're wrong" in user
    for line in dim.definitions().splitlines():
        assert line in user
    assert '"Somewhat Rude" (2 of 5)' in user
    assert "{" not in user
    assert "(no title)" in rewrite_chat(dim, template, "", "x", 1)[1]["content"]


def test_rating_chat_has_system_then_two_turns_per_example_then_the_comment():
    dim = load_dimension("formality")
    template = load_template("norm_rating")
    chat = rating_chat(dim, template, "A title", "the comment to rate", shots=None)
    assert len(chat) == 1 + 2 * len(dim.examples) + 1
    assert chat[0]["role"] == "system"
    for line in dim.definitions().splitlines():
        assert line in chat[0]["content"]
    roles = [m["role"] for m in chat[1:-1]]
    assert roles == ["user", "assistant"] * len(dim.examples)
    for ex, answer in zip(dim.examples, chat[2:-1:2], strict=True):
        assert answer["content"].startswith(str(ex.level))
        assert dim.levels[ex.level - 1].name in answer["content"]
    for ex, question in zip(dim.examples, chat[1:-1:2], strict=True):
        assert ex.comment in question["content"]
    assert chat[-1]["role"] == "user"
    assert "the comment to rate" in chat[-1]["content"]
    assert "A title" in chat[-1]["content"]
    assert len(rating_chat(dim, template, "t", "c", shots=2)) == 1 + 2 * 2 + 1
