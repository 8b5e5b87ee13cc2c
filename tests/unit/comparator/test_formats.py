"""Comparing two answers by format: what counts as the same, where they differ, and that no body,
however broken, raises (hypothesis fuzzes every parser)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.comparator.formats import Format, Problem, Rules, compare

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20)


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@settings(max_examples=300, deadline=None)
@given(first=st.binary(max_size=200), second=st.binary(max_size=200), format_=st.sampled_from(list(Format)))
def test_no_body_raises_whatever_its_bytes(first: bytes, second: bytes, format_: Format) -> None:
    found = compare(format_, Rules(paths=("$.a",), ignore=("$.b",)), first, second)
    assert found.same in (True, False, None)
    assert (found.same is None) == (found.problem is not None)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, format_=st.sampled_from([Format.JSON, Format.V2, Format.OPENAI]))
def test_an_answer_is_the_same_as_itself_or_unreadable_on_both_sides(value: Any, format_: Format) -> None:
    found = compare(format_, Rules(), body(value), body(value))
    assert found.same is True or (found.problem == Problem.FORMAT and found.side == 0)


@settings(max_examples=200, deadline=None)
@given(first=JSON_VALUES, second=JSON_VALUES)
def test_json_comparison_is_symmetric(first: Any, second: Any) -> None:
    rules = Rules(relative=0.01)
    assert compare(Format.JSON, rules, body(first), body(second)).same == \
        compare(Format.JSON, rules, body(second), body(first)).same


def test_json_paths_tolerances_and_ignored_fields() -> None:
    first = body({"id": "a", "label": "cat", "score": 0.80, "debug": {"took": 3}})
    second = body({"id": "b", "label": "cat", "score": 0.81, "debug": {"took": 9}})
    assert compare(Format.JSON, Rules(), first, second).differs_at == ("$.debug.took", "$.id", "$.score")
    found = compare(Format.JSON, Rules(ignore=("$.id", "$.debug"), absolute=0.02), first, second)
    assert found.same is True and found.delta == pytest.approx(0.01)
    assert compare(Format.JSON, Rules(paths=("$.label",)), first, second).same is True
    assert compare(Format.JSON, Rules(paths=("$.score",), relative=0.001), first, second).same is False
    missing = compare(Format.JSON, Rules(paths=("$.labels",)), first, second)
    assert (missing.problem, missing.side) == (Problem.MISSING_PATH, None)
    assert compare(Format.JSON, Rules(), body({"n": 1}), body({"n": True})).same is False, "a bool is not 1"
    with pytest.raises(ValueError, match="not a JSONPath"):
        Rules(paths=("$[",))


def test_v2_tensors_by_name_within_tolerance_or_by_argmax_and_kserve_v1() -> None:
    def v2(*rows: list[float]) -> bytes:
        return body({"outputs": [{"name": "probs", "shape": [len(rows), len(rows[0])], "datatype": "FP32",
                                  "data": [x for row in rows for x in row]}]})

    first, second = v2([0.1, 0.7, 0.2], [0.6, 0.3, 0.1]), v2([0.1, 0.6, 0.3], [0.5, 0.4, 0.1])
    assert compare(Format.V2, Rules(absolute=0.05), first, second).same is False
    found = compare(Format.V2, Rules(argmax=True), first, second)
    assert found.same is True and found.delta == pytest.approx(0.1)
    assert compare(Format.V2, Rules(argmax=True), first, v2([0.1, 0.7, 0.2], [0.3, 0.6, 0.1])).same is False
    assert compare(Format.V2, Rules(), body({"predictions": [1, 0]}), body({"predictions": [1, 1]})).same is False
    unreadable = compare(Format.V2, Rules(), first, body({"outputs": [{"name": "probs", "data": ["x"]}]}))
    assert (unreadable.problem, unreadable.side) == (Problem.FORMAT, 1)


def chat(text: str, finish: str = "stop", logprobs: list[tuple[str, list[str]]] | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    if logprobs is not None:
        choice["logprobs"] = {"content": [{"token": t, "logprob": -0.1, "top_logprobs": [
            {"token": top, "logprob": -1.0} for top in tops]} for t, tops in logprobs]}
    return body({"choices": [choice], "usage": {"completion_tokens": len(text.split())}})


def test_openai_text_by_similarity_finish_reason_and_streams_assembled() -> None:
    assert compare(Format.OPENAI, Rules(), chat("The cat sat on the mat."), chat("The cat sat on a mat.")).same
    apart = compare(Format.OPENAI, Rules(), chat("The cat sat on the mat."), chat("Dogs bark loudly.", "length"))
    assert apart.differs_at == ("text", "finish_reason") and apart.tokens == (6, 3)
    stream = (b'data: {"choices":[{"index":0,"text":"The cat "}]}\n\n'
              b'data: {"choices":[{"index":0,"text":"sat on the mat.","finish_reason":"stop"}]}\n\n'
              b'data: [DONE]\n\n')
    assert compare(Format.OPENAI, Rules(min_similarity=1.0), chat("The cat sat on the mat."), stream).same
    truncated = compare(Format.OPENAI, Rules(), chat("x"), stream[:40])
    assert (truncated.problem, truncated.side) == (Problem.FORMAT, 1)


def test_logprobs_decide_by_vllms_rule_where_both_carry_them() -> None:
    first = chat("a b c", logprobs=[("a", ["a", "x"]), ("b", ["b", "d"]), ("c", ["c"])])
    # Parts at the second token, each side's token in the other's top logprobs: equivalent, however
    # different the texts are after it.
    second = chat("a d zzz qqq", logprobs=[("a", ["a"]), ("d", ["d", "b"]), ("zzz", []), ("qqq", [])])
    assert compare(Format.OPENAI, Rules(), first, second).same is True
    third = chat("a e", logprobs=[("a", ["a"]), ("e", ["e", "b"])])
    found = compare(Format.OPENAI, Rules(), first, third)
    assert found.same is False and found.differs_at == ("logprobs",)


def test_bytes_are_equal_or_not() -> None:
    assert compare(Format.BYTES, Rules(), b"\x00\x01", b"\x00\x01").same is True
    assert compare(Format.BYTES, Rules(), b"\x00\x01", b"\x00\x02").same is False
