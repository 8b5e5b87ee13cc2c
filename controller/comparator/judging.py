"""A judge model's preference between the stable's and the candidate's answers to one prompt (pure).

The judge sees the two answers blind, as A and B in an order drawn for each pair, and answers
[[A]], [[B]] or [[C]] (a tie): MT-Bench's pairwise format (Zheng et al., "Judging LLM-as-a-Judge
with MT-Bench and Chatbot Arena", NeurIPS 2023). Judges prefer a position (the same paper finds
GPT-4 consistent under a swap on only about 65% of pairs): with the order drawn at random, the
position bias only adds noise to the preference, never a lean toward either model, and the share
of decided asks that chose the first position, minus 1/2, measures it. A share of pairs is asked
again in the other order, and whether the judge named the same model both times is counted too.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from controller.stats.paired import JUDGED_CELLS

DEFAULT_PROMPT = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. Choose the assistant that follows the user's instructions and answers "
    "the user's question better. Consider helpfulness, relevance, accuracy, depth and level of detail. Do not let "
    "the order in which the responses were presented, their length, or the assistants' names influence you. "
    "Be as objective as possible. After a short explanation, output your final verdict strictly in this format: "
    '"[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.\n\n'
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
    "[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
    "[The End of Assistant B's Answer]"
)
# The verdict's last mark wins: a judge may quote the format while explaining.
_MARK = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
SHOWN_CHARS = 8000  # of each answer, and of the question, in the judge's prompt


class Preference(StrEnum):
    """Which model the judge preferred (the cells of `stats.paired.JUDGED_CELLS`)."""

    CANDIDATE = "candidate"
    STABLE = "stable"
    TIE = "tie"


assert tuple(Preference) == JUDGED_CELLS


class Position(StrEnum):
    """Which of the two shown answers the judge chose."""

    FIRST = "first"
    SECOND = "second"
    TIE = "tie"


class Swap(StrEnum):
    """A pair asked in both orders: the same model preferred both times, or not."""

    CONSISTENT = "consistent"
    INCONSISTENT = "inconsistent"


def question(body: bytes) -> str | None:
    """What the user asked, from an OpenAI request: chat messages as `role: content` lines, or a
    completion's prompt; None when the body is neither."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict):
        return None
    messages = document.get("messages")
    if isinstance(messages, list):
        lines = [f"{m.get('role', 'user')}: {_text(m.get('content'))}" for m in messages if isinstance(m, dict)]
        return "\n".join(lines)[:SHOWN_CHARS] or None
    prompt = document.get("prompt")
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        prompt = prompt[0]
    return prompt[:SHOWN_CHARS] if isinstance(prompt, str) and prompt else None


def _text(content: Any) -> str:
    """A message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def judge_request(model: str, prompt: str, asked: str, first: str, second: str) -> dict[str, Any]:
    """The chat completion that asks the judge, `first` shown as A. The fields are filled in one pass,
    so an answer that itself holds `{answer_b}` is shown as it is."""
    shown = {"{question}": asked, "{answer_a}": first[:SHOWN_CHARS], "{answer_b}": second[:SHOWN_CHARS]}
    content = re.sub(r"\{question\}|\{answer_a\}|\{answer_b\}", lambda m: shown[m.group(0)], prompt)
    return {"model": model, "messages": [{"role": "user", "content": content}], "temperature": 0,
            "max_tokens": 1024, "stream": False}


def position(reply: str) -> Position | None:
    """The judge's verdict from its reply; None when it gave none."""
    marks = _MARK.findall(reply)
    mark = marks[-1].upper() if marks else reply.strip().strip(".\"'").upper()
    return {"A": Position.FIRST, "B": Position.SECOND, "C": Position.TIE, "TIE": Position.TIE}.get(mark)


def preference(chosen: Position, candidate_first: bool) -> Preference:
    """The model the judge preferred, given which was shown first."""
    if chosen == Position.TIE:
        return Preference.TIE
    return Preference.CANDIDATE if (chosen == Position.FIRST) == candidate_first else Preference.STABLE


def swap(first: Preference, second: Preference) -> Swap:
    return Swap.CONSISTENT if first == second else Swap.INCONSISTENT


def reply_text(body: bytes) -> str | None:
    """The judge's reply from its chat completion; None when unreadable."""
    try:
        document = json.loads(body)
        content = document["choices"][0]["message"]["content"]
    except (ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        return None
    return content if isinstance(content, str) else None
