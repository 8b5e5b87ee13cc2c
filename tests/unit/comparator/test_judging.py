"""A judge's verdicts: what it is asked, how its reply is read, and which model a position means."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from controller.comparator.judging import (
    DEFAULT_PROMPT,
    Position,
    Preference,
    Swap,
    judge_request,
    position,
    preference,
    question,
    reply_text,
    swap,
)


def test_the_question_is_the_chat_or_the_prompt_the_user_sent() -> None:
    chat = {"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": [{"type": "text", "text": "Why?"}]}]}
    assert question(json.dumps(chat).encode()) == "system: Be brief.\nuser: Why?"
    assert question(b'{"model": "m", "prompt": ["Once upon"]}') == "Once upon"
    assert question(b'{"model": "m"}') is None and question(b"not json") is None and question(b"[1]") is None


def test_the_judge_sees_both_answers_in_the_order_given_and_an_answer_is_shown_as_it_is() -> None:
    asked = judge_request("judge-7b", DEFAULT_PROMPT, "Why?", "Because {answer_b}.", "No.")
    content = asked["messages"][0]["content"]
    assert asked["model"] == "judge-7b" and asked["temperature"] == 0
    assert content.index("Because {answer_b}.") < content.index("No.")
    assert "[The Start of Assistant A's Answer]\nBecause {answer_b}." in content


def test_the_verdict_is_the_last_mark_or_a_bare_letter() -> None:
    assert position("A is wordier, but [[B]] is right.") == Position.SECOND
    assert position('Format: "[[A]]" or "[[B]]". Verdict: [[C]]') == Position.TIE
    assert position(" a. ") == Position.FIRST and position("[[tie]]") == Position.TIE
    assert position("I cannot decide") is None and position("") is None
    assert reply_text(b'{"choices": [{"message": {"content": "[[A]]"}}]}') == "[[A]]"
    assert reply_text(b'{"choices": []}') is None and reply_text(b"<html>") is None


def test_a_position_names_a_model_only_with_the_order_it_was_shown_in() -> None:
    assert preference(Position.FIRST, candidate_first=True) == Preference.CANDIDATE
    assert preference(Position.FIRST, candidate_first=False) == Preference.STABLE
    assert preference(Position.SECOND, candidate_first=False) == Preference.CANDIDATE
    assert preference(Position.TIE, candidate_first=True) == Preference.TIE
    # A judge that always picks the first answer, asked both ways, names both models: inconsistent.
    assert swap(preference(Position.FIRST, True), preference(Position.FIRST, False)) == Swap.INCONSISTENT
    assert swap(preference(Position.FIRST, True), preference(Position.SECOND, False)) == Swap.CONSISTENT


@given(st.text(max_size=200))
def test_any_reply_is_a_position_or_none(reply: str) -> None:
    assert position(reply) in (*Position, None)
