"""vLLM's score API, `POST /score` and `/v1/score`: one score per (query, document) pair, in input
order, as the model's probability (vLLM applies a cross-encoder's sigmoid; Qwen3's P(yes) as it is).

The two sides, under any of vLLM's names (`text_1`/`text_2`, `data_1`/`data_2`, `queries` with
`documents` or `items`), pair up 1:1 (two strings), 1:N (a string, or a list of one, against a list)
or N:N (two lists of the same length, pairwise), as vLLM 0.34 pairs them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import msgspec

from ..faults import InputError
from ..jobs import RerankJob, RerankOutcome
from .shared import Usage

Texts = str | list[str]


class ScoreRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """`POST /score`: vLLM's ScoreRequest."""

    model: str | None = None
    text_1: Texts | None = None
    text_2: Texts | None = None
    data_1: Texts | None = None
    data_2: Texts | None = None
    queries: Texts | None = None
    documents: Texts | None = None
    items: Texts | None = None

    def pairs(self) -> list[tuple[str, str]]:
        """Every (query, document) pair, in the order vLLM answers them."""
        first = _one_of({"text_1": self.text_1, "data_1": self.data_1, "queries": self.queries})
        second = _one_of({"text_2": self.text_2, "data_2": self.data_2, "documents": self.documents,
                          "items": self.items})
        firsts = [first] if isinstance(first, str) else first
        seconds = [second] if isinstance(second, str) else second
        if not firsts or not seconds or any(not text for text in [*firsts, *seconds]):
            raise InputError("every query and document must be a non-empty string, and neither list empty")
        if len(firsts) == 1:
            firsts = firsts * len(seconds)
        if len(firsts) != len(seconds):
            raise InputError(f"{len(firsts)} queries and {len(seconds)} documents: the lengths must be "
                             f"1:1, 1:N or N:N")
        return list(zip(firsts, seconds, strict=True))


def _one_of(sides: dict[str, Texts | None]) -> Texts:
    given = [value for value in sides.values() if value is not None]
    if len(given) != 1:
        raise InputError(f"send one of {', '.join(f'`{name}`' for name in sides)}")
    return given[0]


class ScoreData(msgspec.Struct, kw_only=True):
    index: int
    object: str = "score"
    score: float


class ScoreUsage(Usage, kw_only=True):
    completion_tokens: int = 0


class ScoreResponse(msgspec.Struct, kw_only=True):
    id: str
    object: str = "list"
    created: int
    model: str
    data: list[ScoreData]
    usage: ScoreUsage


def to_jobs(pairs: Sequence[tuple[str, str]]) -> tuple[list[RerankJob], list[list[int]]]:
    """One job a distinct query, its documents in input order; and each job's pair indices."""
    by_query: dict[str, list[int]] = {}
    for index, (query, _) in enumerate(pairs):
        by_query.setdefault(query, []).append(index)
    jobs = [RerankJob(query=query, documents=[pairs[i][1] for i in indices], probabilities=True)
            for query, indices in by_query.items()]
    return jobs, list(by_query.values())


def to_response(req: ScoreRequest, served_name: str, owners: Sequence[Sequence[int]],
                outcomes: Sequence[RerankOutcome]) -> ScoreResponse:
    scores: dict[int, float] = {}
    for indices, outcome in zip(owners, outcomes, strict=True):
        for ranked in outcome.ranked:
            scores[indices[ranked.index]] = ranked.score
    tokens = sum(o.prompt_tokens for o in outcomes)
    return ScoreResponse(id=f"score-{uuid.uuid4().hex}", created=int(time.time()), model=req.model or served_name,
                         data=[ScoreData(index=i, score=scores[i]) for i in range(len(scores))],
                         usage=ScoreUsage(prompt_tokens=tokens, total_tokens=tokens))
