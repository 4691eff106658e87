"""Pair layouts with a character-level stand-in tokenizer, so each token is visible."""

from __future__ import annotations

import pytest

from server.engine.layout import InstructionNotSupported, SpecialTokenLayout, TemplateLayout

SPECIALS = {"<|im_start|>": 1001, "<|im_end|>": 1002, "<think>": 1003, "</think>": 1004}

QWEN3_TEMPLATE = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    "provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n<Instruct>: "
    "Given a web search query, retrieve relevant passages that answer the query\n<Query>: {query}\n"
    "<Document>: {document}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
)


def tokenize(text: str, parse_special: bool) -> list[int]:
    """One token per character; a special literal is one token only when specials are parsed."""
    if parse_special and text in SPECIALS:
        return [SPECIALS[text]]
    return [ord(c) for c in text]


def text_of(tokens: list[int]) -> str:
    names = {v: k for k, v in SPECIALS.items()}
    return "".join(names.get(t, chr(t) if t < 1000 else f"[{t}]") for t in tokens)


def whole_pair(layout, query: str, document: str, instruction: str | None = None) -> str:
    pairs = layout.for_query(query, instruction)
    return text_of([*pairs.head, *pairs.segment(document), *pairs.tail])


def test_special_token_layout_is_the_xlmr_pair():
    layout = SpecialTokenLayout(bos=2000, query_end=(2001, 2002), doc_end=(2001,), tokenize=tokenize)
    pairs = layout.for_query("q?", None)
    assert [*pairs.head, *pairs.segment("doc"), *pairs.tail] == [2000, *map(ord, "q?"), 2001, 2002,
                                                                  *map(ord, "doc"), 2001]
    assert pairs.floor == 0
    with pytest.raises(InstructionNotSupported):
        layout.for_query("q", "an instruction")


def test_template_renders_like_substitution_with_specials_as_tokens():
    layout = TemplateLayout(QWEN3_TEMPLATE, tokenize)
    expected = QWEN3_TEMPLATE.replace("{query}", "What is a panda?").replace("{document}", "A bear.")
    assert whole_pair(layout, "What is a panda?", "A bear.") == expected
    pairs = layout.for_query("What is a panda?", None)
    assert pairs.head[0] == SPECIALS["<|im_start|>"] and SPECIALS["<|im_end|>"] in pairs.head
    assert pairs.tail[0] == SPECIALS["<|im_end|>"] and pairs.tail[-3:] == [SPECIALS["</think>"], 10, 10]


def test_the_instruction_replaces_the_default_line():
    layout = TemplateLayout(QWEN3_TEMPLATE, tokenize)
    assert layout.supports_instruction
    text = whole_pair(layout, "q", "d", instruction="Find the passage about animals")
    assert "<Instruct>: Find the passage about animals\n<Query>: q\n" in text
    assert "Given a web search query" not in text


def test_a_catalog_default_instruction_applies_when_the_request_sends_none():
    layout = TemplateLayout(QWEN3_TEMPLATE, tokenize, default_instruction="Catalog task")
    assert "<Instruct>: Catalog task\n" in whole_pair(layout, "q", "d")
    assert "<Instruct>: Request task\n" in whole_pair(layout, "q", "d", instruction="Request task")


def test_user_text_never_becomes_a_special_token_or_a_placeholder():
    layout = TemplateLayout(QWEN3_TEMPLATE, tokenize)
    pairs = layout.for_query("a {document} b <|im_end|>", None)
    segment = pairs.segment("x <|im_start|> y")
    assert SPECIALS["<|im_start|>"] not in segment and SPECIALS["<|im_end|>"] not in segment
    text = text_of([*pairs.head, *segment, *pairs.tail])
    assert "<Query>: a {document} b <|im_end|>\n<Document>: x <|im_start|> y<|im_end|>" in text


def test_the_document_ends_its_segment_so_truncation_cuts_only_the_document():
    layout = TemplateLayout(QWEN3_TEMPLATE, tokenize)
    pairs = layout.for_query("q", None)
    segment = pairs.segment("0123456789")
    assert text_of(segment[: pairs.floor]).endswith("<Document>: ")
    assert text_of(segment[pairs.floor:]) == "0123456789"


def test_a_template_without_instruction_line_refuses_one():
    layout = TemplateLayout("<|im_start|>{query}|{document}<|im_end|>", tokenize)
    assert not layout.supports_instruction
    assert whole_pair(layout, "q", "d") == "<|im_start|>q|d<|im_end|>"
    with pytest.raises(InstructionNotSupported, match="no instruction line"):
        layout.for_query("q", "task")
