"""Whether two answers to the same request are the same answer, by response format (`compare.format`).

Pure: bytes in, a `Comparison` out. A body that is not the format (not JSON, truncated, the wrong
shape) is a `FORMAT` problem of its side, never an exception; the comparator counts it.

- `json`: the leaves of the document, or of the parts `paths` select (JSONPath, jsonpath-ng), minus
  those `ignore` selects; numbers within `absolute` or `relative` tolerance, everything else exactly.
- `v2`: the Open Inference Protocol (KServe, Triton, MLServer): output tensors by name, element by
  element within the tolerance, or by argmax of each row (`argmax: true`, class scores); KServe's
  v1 `{"predictions": ...}` element by element.
- `openai`: chat and text completions, plain or streamed (SSE), as vLLM, SGLang and TGI serve them:
  the text by similarity (rapidfuzz's normalised Indel ratio) at least `minSimilarity`, and the
  finish reason exactly. Where both carry logprobs, vLLM's own rule decides instead (its
  `check_logprobs_close`): the texts are equivalent if, at the first token where they part, each
  side's token is among the other's top logprobs.
- `bytes`: byte equality.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from jsonpath_ng.exceptions import JsonPathParserError
from jsonpath_ng.ext.parser import parse as parse_path
from rapidfuzz.distance import Indel


class Format(StrEnum):
    JSON = "json"
    V2 = "v2"
    OPENAI = "openai"
    BYTES = "bytes"


class Problem(StrEnum):
    """Why a pair was not compared."""

    FORMAT = "format"  # a body that is not the format
    MISSING_PATH = "missing-path"  # the compared paths select nothing in either answer


@dataclass(frozen=True)
class Rules:
    """How answers are compared: `compare.json`, `compare.v2`, `compare.openai` of the spec."""

    paths: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    absolute: float = 0.0
    relative: float = 0.0
    argmax: bool = False
    min_similarity: float = 0.9

    def __post_init__(self) -> None:
        for path in (*self.paths, *self.ignore):
            compiled_path(path)


@dataclass(frozen=True)
class Comparison:
    """One pair of answers: the same or not; where they differ; the numeric delta, if any.

    `problem` says the pair could not be compared and whose body was at fault (`side`: 0 the first,
    1 the second, None both or neither)."""

    same: bool | None
    differs_at: tuple[str, ...] = ()
    delta: float | None = None
    problem: Problem | None = None
    side: int | None = None
    tokens: tuple[int | None, int | None] = (None, None)
    extra: dict[str, Any] = field(default_factory=dict)
    texts: tuple[str, str] | None = None  # openai: both completions' texts, for a judge


class _Unreadable(ValueError):
    def __init__(self, side: int, message: str) -> None:
        super().__init__(message)
        self.side = side


_PATHS: dict[str, Any] = {}


def compiled_path(path: str) -> Any:
    if path not in _PATHS:
        try:
            _PATHS[path] = parse_path(path)
        except (JsonPathParserError, Exception) as error:  # jsonpath-ng raises plain Exceptions for some
            raise ValueError(f"not a JSONPath: {path!r} ({error})") from None
    return _PATHS[path]


def compare(format_: Format, rules: Rules, first: bytes, second: bytes) -> Comparison:
    """Compare two answers' bodies."""
    try:
        if format_ == Format.BYTES:
            return Comparison(first == second, () if first == second else ("$",))
        if format_ == Format.OPENAI:
            return _compare_openai(rules, _openai(first, 0), _openai(second, 1))
        documents = (_json(first, 0), _json(second, 1))
        if format_ == Format.V2:
            return _compare_tensors(rules, _tensors(documents[0], 0), _tensors(documents[1], 1))
        return _compare_json(rules, *documents)
    except _Unreadable as error:
        return Comparison(None, problem=Problem.FORMAT, side=error.side, extra={"error": str(error)})


def _json(body: bytes, side: int) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise _Unreadable(side, f"not JSON: {error}") from None


# --- json --------------------------------------------------------------------------------------


def leaves(document: Any, prefix: str = "$") -> Iterator[tuple[str, Any]]:
    """(JSONPath, value) of every scalar in the document; an empty list or object is a leaf itself."""
    if isinstance(document, dict) and document:
        for key, value in document.items():
            yield from leaves(value, f"{prefix}.{_quoted(str(key))}")
    elif isinstance(document, list) and document:
        for index, value in enumerate(document):
            yield from leaves(value, f"{prefix}[{index}]")
    else:
        yield prefix, document


def _quoted(key: str) -> str:
    return key if key.isidentifier() else json.dumps(key)


def _selected(rules: Rules, document: Any) -> dict[str, Any] | None:
    """The leaves to compare: those of the `paths` matches (all when none is given), after removing what
    `ignore` selects. None when paths are given and select nothing."""
    kept = copy.deepcopy(document)
    for path in rules.ignore:
        kept = compiled_path(path).filter(lambda _: True, kept)
    if not rules.paths:
        return dict(leaves(kept))
    found = [(str(match.full_path), match.value) for path in rules.paths for match in compiled_path(path).find(kept)]
    if not found:
        return None
    return {f"{where}{inner[1:]}": value for where, part in found for inner, value in leaves(part)}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _close(rules: Rules, first: float, second: float) -> bool:
    if math.isnan(first) or math.isnan(second):
        return math.isnan(first) and math.isnan(second)
    return math.isclose(first, second, rel_tol=rules.relative, abs_tol=rules.absolute)


def _compare_json(rules: Rules, first: Any, second: Any) -> Comparison:
    chosen = (_selected(rules, first), _selected(rules, second))
    if chosen[0] is None or chosen[1] is None:
        side = None if chosen[0] is None and chosen[1] is None else (0 if chosen[0] is None else 1)
        return Comparison(None, problem=Problem.MISSING_PATH, side=side,
                          extra={"paths": list(rules.paths)})
    differs: list[str] = []
    delta: float | None = None
    for where in sorted(chosen[0].keys() | chosen[1].keys()):
        if where not in chosen[0] or where not in chosen[1]:
            differs.append(where)
            continue
        a, b = chosen[0][where], chosen[1][where]
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            if math.isfinite(x) and math.isfinite(y):
                delta = max(delta or 0.0, abs(x - y))
            if not _close(rules, x, y):
                differs.append(where)
        elif a != b or type(a) is not type(b):
            differs.append(where)
    return Comparison(not differs, tuple(differs), delta)


# --- v2 ----------------------------------------------------------------------------------------


def _flat(values: Any, side: int) -> list[float]:
    if isinstance(values, list):
        return [item for value in values for item in _flat(value, side)]
    number = _number(values)
    if number is None:
        raise _Unreadable(side, f"a tensor element is not a number: {str(values)[:40]!r}")
    return [number]


def _tensors(document: Any, side: int) -> dict[str, tuple[list[int], list[float]]]:
    """name -> (shape, flat data), from a v2 `outputs` list or a v1 `predictions`."""
    if isinstance(document, dict) and isinstance(document.get("outputs"), list):
        found: dict[str, tuple[list[int], list[float]]] = {}
        for output in document["outputs"]:
            if not isinstance(output, dict) or "name" not in output or "data" not in output:
                raise _Unreadable(side, "a v2 output needs a name and data")
            data = _flat(output["data"], side)
            shape = output.get("shape") or [len(data)]
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise _Unreadable(side, f"output {output['name']}: not a shape: {shape!r}")
            found[str(output["name"])] = (shape, data)
        return found
    if isinstance(document, dict) and "predictions" in document:
        predictions = document["predictions"]
        rows = predictions if isinstance(predictions, list) else [predictions]
        width = len(rows[0]) if rows and isinstance(rows[0], list) else 1
        return {"predictions": ([len(rows), width] if width > 1 else [len(rows)], _flat(rows, side))}
    raise _Unreadable(side, "neither v2 outputs nor v1 predictions")


def _argmaxes(shape: list[int], data: list[float]) -> list[int]:
    width = shape[-1] if len(shape) > 1 and shape[-1] > 0 else max(len(data), 1)
    return [max(range(len(row)), key=row.__getitem__) for row in
            (data[start:start + width] for start in range(0, len(data), width)) if row]


def _compare_tensors(rules: Rules, first: dict[str, tuple[list[int], list[float]]],
                     second: dict[str, tuple[list[int], list[float]]]) -> Comparison:
    differs: list[str] = []
    delta: float | None = None
    for name in sorted(first.keys() | second.keys()):
        if name not in first or name not in second or len(first[name][1]) != len(second[name][1]):
            differs.append(name)
            continue
        (shape, a), (_, b) = first[name], second[name]
        finite = [abs(x - y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
        if finite:
            delta = max(delta or 0.0, *finite)
        if rules.argmax:
            same = _argmaxes(shape, a) == _argmaxes(shape, b)
        else:
            same = all(_close(rules, x, y) for x, y in zip(a, b, strict=True))
        if not same:
            differs.append(name)
    return Comparison(not differs, tuple(differs), delta)


# --- openai ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    """A completion's text, finish reason, tokens, and per-token (token, its top logprob tokens)."""

    text: str
    finish: str | None
    tokens: int | None
    logprobs: tuple[tuple[str, frozenset[str]], ...] | None


def _events(body: bytes, side: int) -> list[dict[str, Any]]:
    """A plain JSON completion, or a streamed one's events (SSE `data:` lines)."""
    text = body.decode("utf-8", errors="replace")
    if text.lstrip().startswith("data:"):
        chunks = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
        events = [_json(chunk.encode(), side) for chunk in chunks if chunk and chunk != "[DONE]"]
    else:
        events = [_json(body, side)]
    if not events or not all(isinstance(e, dict) and isinstance(e.get("choices"), list) for e in events):
        raise _Unreadable(side, "not a completion: no choices")
    return events


def _openai(body: bytes, side: int) -> Completion:
    """The first choice's text, finish reason and logprobs, streamed chunks assembled."""
    parts: list[str] = []
    finish: str | None = None
    tokens: int | None = None
    logprobs: list[tuple[str, frozenset[str]]] = []
    every_part_has_logprobs = True
    for event in _events(body, side):
        usage = event.get("usage")
        if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
            tokens = usage["completion_tokens"]
        for choice in event["choices"]:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            part = _content(choice, side)
            parts.append(part)
            finish = choice.get("finish_reason") or finish
            found = _choice_logprobs(choice.get("logprobs"))
            every_part_has_logprobs = every_part_has_logprobs and (found is not None or not part)
            logprobs += found or []
    return Completion("".join(parts), finish, tokens,
                      tuple(logprobs) if every_part_has_logprobs and logprobs else None)


def _content(choice: dict[str, Any], side: int) -> str:
    """A choice's text: `text` (completions), `message.content` (chat) or `delta.content` (a chat chunk)."""
    part = choice.get("text")
    for key in ("message", "delta"):
        if isinstance(choice.get(key), dict):
            part = choice[key].get("content")
    if part is not None and not isinstance(part, str):
        raise _Unreadable(side, "a completion's content is not text")
    return part or ""


def _choice_logprobs(found: Any) -> list[tuple[str, frozenset[str]]] | None:
    """Chat's `logprobs.content[]` or completions' `logprobs.tokens`/`top_logprobs`; None without them."""
    if not isinstance(found, dict):
        return None
    if isinstance(found.get("content"), list):
        return [(str(entry.get("token")), frozenset(str(top.get("token")) for top in entry.get("top_logprobs") or []
                                                    if isinstance(top, dict)))
                for entry in found["content"] if isinstance(entry, dict)]
    if isinstance(found.get("tokens"), list):
        tops = found.get("top_logprobs") or [None] * len(found["tokens"])
        return [(str(token), frozenset(top) if isinstance(top, dict) else frozenset())
                for token, top in zip(found["tokens"], tops, strict=False)]
    return None


def _compare_openai(rules: Rules, first: Completion, second: Completion) -> Comparison:
    tokens = (first.tokens, second.tokens)
    similarity = Indel.normalized_similarity(first.text, second.text)
    extra: dict[str, Any] = {"similarity": round(similarity, 4)}
    if first.logprobs is not None and second.logprobs is not None:
        close = _logprobs_close(first.logprobs, second.logprobs)
        extra["logprobs"] = "close" if close else "apart"
        differs = () if close else ("logprobs",)
    else:
        differs = () if similarity >= rules.min_similarity else ("text",)
    if first.finish != second.finish:
        differs = (*differs, "finish_reason")
    return Comparison(not differs, differs, None, tokens=tokens, extra=extra, texts=(first.text, second.text))


def _logprobs_close(first: tuple[tuple[str, frozenset[str]], ...],
                    second: tuple[tuple[str, frozenset[str]], ...]) -> bool:
    """vLLM's `check_logprobs_close`: equal up to the first token where the two part, and there each
    side's token is among the other's top logprobs; after it the sequences may go their own ways."""
    for (token_a, top_a), (token_b, top_b) in zip(first, second, strict=False):
        if token_a != token_b:
            return token_a in top_b and token_b in top_a
    return True
