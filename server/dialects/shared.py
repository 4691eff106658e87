"""Wire types more than one dialect uses."""

from __future__ import annotations

from typing import Annotated

import msgspec

NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
TopN = Annotated[int, msgspec.Meta(gt=0)]


class TextDocument(msgspec.Struct, forbid_unknown_fields=False):
    """A document given as an object, as Jina and llama-box accept."""

    text: str


def document_texts(documents: list[str | TextDocument]) -> list[str]:
    return [d if isinstance(d, str) else d.text for d in documents]


class Usage(msgspec.Struct):
    prompt_tokens: int
    total_tokens: int


def usage(outcome_tokens: int) -> Usage:
    """A rerank has no output tokens: every token is a prompt token."""
    return Usage(prompt_tokens=outcome_tokens, total_tokens=outcome_tokens)
