"""The test kit's judge follows its rubric (more distinct words is better) and its bias knob: the e2e
judge test leans on both."""

from __future__ import annotations

from e2e.judge import Judge, verdict


def prompt(a: str, b: str) -> str:
    return (f"Q\n\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n\n"
            f"[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]")


def test_the_rubric_prefers_more_distinct_words_and_ties_on_as_many() -> None:
    assert verdict(prompt("slow slow slow", "dog fish dog")) == "[[B]]"
    assert verdict(prompt("red sky sea", "slow slow")) == "[[A]]"
    assert verdict(prompt("dog fish", "sky sea")) == "[[C]]"
    assert verdict("no answers here") is None


def test_the_bias_says_a_on_its_share_of_calls_and_the_token_is_required() -> None:
    judge = Judge("t", bias=0.3, seed=1)
    body = {"messages": [{"role": "user", "content": prompt("dog fish red", "slow slow")}]}
    assert judge.answer("Bearer wrong", body)[0] == 401 and judge.stats["unauthorized"] == 1
    said = [judge.answer("Bearer t", {"messages": [{"role": "user", "content": prompt("slow", "dog fish")}]})[1]
            for _ in range(2000)]
    first = sum("[[A]]" in s["choices"][0]["message"]["content"] for s in said) / len(said)
    assert 0.26 < first < 0.34 and judge.stats["biased"] == sum(1 for s in said if "[[A]]" in str(s))
    assert judge.answer("Bearer t", body)[1]["choices"][0]["message"]["content"].endswith("[[A]]")
