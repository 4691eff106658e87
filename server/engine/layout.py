"""How a query and a document become one token sequence, as the model was trained.

Two layouts exist in llama.cpp's world (llama-server's format_prompt_rerank):
- special tokens around the texts (BERT, XLM-R, jina-bert-v2): `<s> q </s></s> d </s>` for XLM-R;
- a `rerank` prompt template with `{query}` and `{document}` (Qwen3-Reranker's GGUF carries one).

Either way a pair is `head + segment + tail`, where the head and the tail are fixed for a request
and the segment ends with the document, so truncation cuts the document's end and nothing else.
User text is never parsed for special tokens: a document containing `<|im_end|>` stays text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

Tokenize = Callable[[str, bool], list[int]]
"""(text, parse_special) -> tokens, without BOS/EOS."""


class InstructionNotSupported(ValueError):
    """The model's layout has no place for a task instruction."""


class QueryCutNotSupported(ValueError):
    """The model's layout cannot cut its query to a number of tokens."""


class QueryPairs(Protocol):
    """The pairs of one request's query: the parts that do not depend on the document, computed once."""

    head: list[int]
    tail: list[int]
    floor: int
    """Tokens at the start of every segment that are not the document (template text, the query)."""
    query: str
    """The query as scored (a pre-formatted Qwen3 query without its markers)."""
    query_length: int
    """The query's tokens in `head` (a template layout: 0, its query sits in the template's text)."""

    def segment(self, document: str) -> list[int]: ...


class Layout(Protocol):
    supports_instruction: bool

    def for_query(self, query: str, instruction: str | None, max_query_tokens: int | None = None,
                  query_tokens: int | None = None) -> QueryPairs:
        """`max_query_tokens` bounds the query with its special tokens, as a tokenizer's `max_length`
        does; `query_tokens` keeps the query's first tokens, not counting special ones (vLLM's
        `max_tokens_per_query`)."""
        ...


@dataclass
class _SpecialTokenPairs:
    head: list[int]
    tail: list[int]
    tokenize: Tokenize
    query: str
    query_length: int
    """The query's tokens in `head`, between its special tokens."""
    floor: int = 0

    def segment(self, document: str) -> list[int]:
        return self.tokenize(document, False)


@dataclass(frozen=True)
class SpecialTokenLayout:
    """BOS if the vocab adds BOS, query, EOS if it adds EOS, SEP if it adds SEP, document, EOS."""

    bos: int | None
    query_end: tuple[int, ...]
    doc_end: tuple[int, ...]
    tokenize: Tokenize
    supports_instruction = False

    def for_query(self, query: str, instruction: str | None, max_query_tokens: int | None = None,
                  query_tokens: int | None = None) -> QueryPairs:
        """`max_query_tokens` cuts the query as a tokenizer's `truncation=True, max_length=N` cuts
        `<s> q </s>`: its BOS and first closing token count."""
        if instruction is not None:
            raise InstructionNotSupported("this model takes no instruction (its pair layout has no place for one)")
        head = [self.bos] if self.bos is not None else []
        tokens = self.tokenize(query, False)[:query_tokens]
        if max_query_tokens is not None:
            tokens = tokens[: max(1, max_query_tokens - len(head) - 1)]
        return _SpecialTokenPairs([*head, *tokens, *self.query_end], list(self.doc_end), self.tokenize, query,
                                  len(tokens))


# Special-token literals of chat templates (`<|im_start|>`, `<think>`) and Gemma's `<bos>`; each is
# checked to be one token.
_SPECIAL_LITERAL = re.compile(r"<\|[^|<>\s]+\|>|</?think>|<bos>")
# Qwen3-Reranker's instruction line in its rerank template.
_INSTRUCTION_LINE = re.compile(r"(<Instruct>: )([^\n]*)")
# A query written the way vLLM users format Qwen3 prompts by hand (and regolo's example):
# `[<Instruct>: ]INSTRUCTION\n<Query>: QUERY[\n]`, the instruction line optional.
_WRITTEN_QUERY = re.compile(r"(?s)(?:(?:<Instruct>: ?)?(?P<instruction>[^\n]*)\n)?<Query>: ?(?P<query>.*?)\n?")
_DOCUMENT_MARK = "<Document>: "
_PLACEHOLDER = re.compile(r"\{(query|instruction)\}")
MAX_WRITTEN_LEVELS = 2


@dataclass
class _TemplatePairs:
    head: list[int]
    tail: list[int]
    document_prefix: str
    tokenize: Tokenize
    floor: int
    query: str
    written_suffix: str | None = None
    """Set when the query came pre-formatted: what to strip from the end of its documents."""
    written_levels: int = 0
    """How many times the query was found wrapped (a hand-written request that GPUStack wraps again):
    as many `<Document>: ` marks are stripped from its documents."""
    query_length: int = 0

    def segment(self, document: str) -> list[int]:
        for _ in range(self.written_levels):
            document = document.removeprefix(_DOCUMENT_MARK).removesuffix(str(self.written_suffix))
        # The document is tokenized with the text before it, as in the whole prompt, so the
        # tokens at the boundary (": " + "The") are the ones the model saw in training.
        return self.tokenize(self.document_prefix + document, False)


class TemplateLayout:
    """A `rerank` prompt template: its special-token literals become their tokens, every other
    piece is tokenized as text with the query, the document and the instruction in place.

    A template given as several pieces is tokenized piece by piece, as a model's own code does that
    tokenizes its prompt's parts one by one (mxbai-rerank-v2). The instruction goes into Qwen3's
    `<Instruct>: ` line, or in place of `{instruction}` as `instruction_format` says."""

    def __init__(self, template: str | Sequence[str], tokenize: Tokenize, default_instruction: str | None = None,
                 instruction_format: str = "{instruction}") -> None:
        pieces = (template,) if isinstance(template, str) else tuple(template)
        template = "".join(pieces)
        if "{document}" not in template:
            raise ValueError("the rerank template has no {document} placeholder")
        self.tokenize = tokenize
        found = _INSTRUCTION_LINE.search(template)
        self.supports_instruction = found is not None or "{instruction}" in template
        self.default_instruction = default_instruction or (found.group(2) if found else None)
        self._instruction_format = instruction_format
        self._pieces = [part for piece in pieces for part in self._split(piece)]
        # The template's text before the instruction line and after the document: vLLM users paste
        # them around their query and documents, and they are stripped with the markers.
        written = found is not None and "<Query>: {query}" in template and _DOCUMENT_MARK + "{document}" in template
        self._written_head = template[:found.start()] if written and found else None
        self._written_tail = template.split("{document}", 1)[1]

    def unwrap(self, query: str) -> tuple[str, str | None] | None:
        """(query, instruction) of a query that already holds the template's `<Query>: ` part, the
        instruction line optional; None for a plain query."""
        if self._written_head is None:
            return None
        written = _WRITTEN_QUERY.fullmatch(query.removeprefix(self._written_head))
        return (written["query"], written["instruction"]) if written else None

    def _split(self, template: str) -> list[str | int]:
        pieces: list[str | int] = []
        position = 0
        for match in _SPECIAL_LITERAL.finditer(template):
            tokens = self.tokenize(match.group(), True)
            if len(tokens) != 1:
                continue  # not a special token of this vocabulary: plain text
            pieces += [template[position:match.start()], tokens[0]]
            position = match.end()
        pieces.append(template[position:])
        return [p for p in pieces if p != ""]

    def for_query(self, query: str, instruction: str | None, max_query_tokens: int | None = None,
                  query_tokens: int | None = None) -> QueryPairs:
        """`max_query_tokens` does not apply, and `query_tokens` is refused: the query sits inside
        the template's text. A query written with the template's markers (`...\n<Query>: q`,
        documents starting `<Document>: `) is scored exactly as the plain query with that instruction."""
        if instruction is not None and not self.supports_instruction:
            raise InstructionNotSupported("this model's rerank template has no instruction line")
        if query_tokens is not None:
            raise QueryCutNotSupported("this model's query sits inside its prompt template, which cannot be cut "
                                       "to a number of query tokens; cut the query before sending it")
        levels = 0
        # GPUStack's proxy may wrap a request its client had written with the markers already: unwrap
        # both; the innermost instruction is the client's own.
        while levels < MAX_WRITTEN_LEVELS and (unwrapped := self.unwrap(query)) is not None:
            query, instruction = unwrapped[0], unwrapped[1] or instruction
            levels += 1
        instruction = instruction if instruction is not None else self.default_instruction
        head: list[int] = []
        tail: list[int] = []
        prefix: str | None = None

        values = {"query": query, "instruction": "" if instruction is None
                  else self._instruction_format.format(instruction=instruction)}

        def fill(text: str) -> str:
            if instruction is not None:
                text = _INSTRUCTION_LINE.sub(lambda m: m.group(1) + instruction, text)
            # One pass, so a query holding "{instruction}" (or the reverse) stays text.
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        for piece in self._pieces:
            out = head if prefix is None else tail
            if isinstance(piece, int):
                out.append(piece)
            elif prefix is None and "{document}" in piece:
                # Split on the template's placeholder before the query goes in, so a query that
                # contains "{document}" stays text.
                before, after = piece.split("{document}", 1)
                prefix = fill(before)
                tail += self.tokenize(fill(after), False) if after else []
            else:
                out += self.tokenize(fill(piece), False)
        assert prefix is not None
        return _TemplatePairs(head, tail, prefix, self.tokenize, floor=len(self.tokenize(prefix, False)),
                              query=query, written_suffix=self._written_tail if levels else None,
                              written_levels=levels)
