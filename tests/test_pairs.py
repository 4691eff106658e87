"""Pairs, truncation, windows and anchors without llama.cpp: PairMaker needs only a tokenize function.

The tokenizer here maps each character to its code point, so every expected pair can be written out.
"""

from __future__ import annotations

import pytest

from server.engine.layout import SpecialTokenLayout
from server.engine.pairs import PairMaker, shared_prefix_length
from server.engine.windows import WindowPlan
from server.faults import InputError, InputTooLongError, TooManyWindows

BOS, SEP, EOS = 1, 2, 3


def chars(text: str, parse_special: bool = False) -> list[int]:
    return [ord(c) for c in text]


def xlmr_like(context: int) -> PairMaker:
    """`<s> q </s></s> d </s>`, as XLM-R rerankers are laid out."""
    layout = SpecialTokenLayout(bos=BOS, query_end=(EOS, SEP), doc_end=(EOS,), tokenize=chars)
    return PairMaker(layout, context, unknown_token=None)


def test_a_pair_is_head_document_tail():
    (pair,) = xlmr_like(16).make("q", ["doc"], truncate=True)
    assert pair.tolist() == [BOS, ord("q"), EOS, SEP, *chars("doc"), EOS]


def test_truncation_cuts_the_document_end_so_the_pair_fills_the_context():
    (pair,) = xlmr_like(10).make("q", ["abcdefghij"], truncate=True)
    assert len(pair) == 10
    assert pair.tolist() == [BOS, ord("q"), EOS, SEP, *chars("abcde"), EOS]


def test_without_truncation_a_long_pair_is_refused_with_its_length():
    with pytest.raises(InputTooLongError, match="document 1 with the query is 15 tokens, more than the model's "
                                                "context of 10 tokens"):
        xlmr_like(10).make("q", ["a", "abcdefghij"], truncate=False)


def test_max_doc_tokens_cuts_every_document():
    pairs = xlmr_like(32).make("q", ["abcdef", "xy"], truncate=True, max_doc_tokens=3)
    assert [p[4:-1].tolist() for p in pairs] == [chars("abc"), chars("xy")]


def test_the_left_side_cuts_a_documents_start_to_fit_the_context_and_to_max_doc_tokens():
    (pair,) = xlmr_like(10).make("q", ["abcdefghij"], truncate=True, side="left")
    assert pair.tolist() == [BOS, ord("q"), EOS, SEP, *chars("fghij"), EOS]
    pairs = xlmr_like(32).make("q", ["abcdef", "xy"], truncate=True, max_doc_tokens=3, side="left")
    assert [p[4:-1].tolist() for p in pairs] == [chars("def"), chars("xy")]
    pairs, _ = xlmr_like(32).windows("q", ["abcdef"], WindowPlan(), max_doc_tokens=3, side="left")
    assert pairs[0][4:-1].tolist() == chars("def")


def test_query_tokens_keep_the_querys_first_tokens_without_counting_special_ones():
    (pair,) = xlmr_like(32).make("query", ["d"], truncate=True, query_tokens=2)
    assert pair.tolist() == [BOS, *chars("qu"), EOS, SEP, ord("d"), EOS]


def test_a_template_layout_refuses_a_query_cut():
    from server.engine.layout import TemplateLayout
    maker = PairMaker(TemplateLayout("Q: {query} D: {document}", chars), 64, unknown_token=None)
    with pytest.raises(InputError, match="cut the query before sending it"):
        maker.make("query", ["d"], truncate=True, query_tokens=2)


def test_a_query_that_fills_the_context_leaves_no_room():
    with pytest.raises(InputTooLongError, match="leaves no room for a document in the model's context of 6 tokens"):
        xlmr_like(6).make("qq", ["d"], truncate=True)


def test_an_instruction_on_a_layout_without_one_is_an_input_error():
    with pytest.raises(InputError, match="takes no instruction"):
        xlmr_like(16).make("q", ["d"], truncate=True, instruction="be brief")


def test_windows_cover_a_long_document_and_name_their_document():
    pairs, owners = xlmr_like(10).windows("q", ["ab", "abcdefghijkl"], WindowPlan(overlap=1))
    # Room for 5 document tokens a window; overlap min(1, 5 // 4) = 1.
    assert owners == [0, 1, 1, 1]
    assert [p[4:-1].tolist() for p in pairs] == [chars("ab"), chars("abcde"), chars("efghi"), chars("ijkl")]


def test_too_many_windows_are_refused_before_any_work():
    with pytest.raises(TooManyWindows, match="document 0 needs 3 windows of 5 tokens, more than the limit of 2 per document"):
        xlmr_like(10).windows("q", ["abcdefghijkl"], WindowPlan(overlap=0, max_windows=2))


def test_anchors_are_the_query_against_itself_and_an_unknown_token():
    itself, unknown = xlmr_like(16).anchors("qr")
    assert itself.tolist() == [BOS, *chars("qr"), EOS, SEP, *chars("qr"), EOS]
    assert unknown.tolist() == [BOS, *chars("qr"), EOS, SEP, 0, EOS]


def test_the_shared_prefix_leaves_every_pair_a_token_of_its_own():
    pairs = xlmr_like(16).make("q", ["ab", "ac", "a"], truncate=True)
    assert shared_prefix_length(pairs) == 5  # BOS q EOS SEP a; the third pair's last token is its own
    assert shared_prefix_length(pairs[:1]) == 0


def bert_like(context: int) -> PairMaker:
    """`[CLS] q [SEP] d [SEP]`, cut as sentence-transformers' CrossEncoder cuts BERT pairs."""
    layout = SpecialTokenLayout(bos=BOS, query_end=(SEP,), doc_end=(SEP,), tokenize=chars)
    return PairMaker(layout, context, unknown_token=None, truncation="longest_first")


@pytest.mark.parametrize("query,document,room,kept", [
    (3, 4, 10, (3, 4)),        # fits: nothing is cut
    (8, 600, 509, (8, 501)),   # the short query whole, the document cut
    (626, 33, 509, (476, 33)),  # a query past the context is cut, not refused
    (330, 439, 509, (254, 255)),  # both past half: half each, the odd token to the longer
    (330, 266, 509, (255, 254)),
    (300, 300, 509, (254, 255)),  # a tie gives the odd token to the document
    (255, 330, 509, (254, 255)),  # the shorter just past half gives way too
    (254, 330, 509, (254, 255)),
])
def test_longest_first_keeps_what_hugging_face_tokenizers_keep(query, document, room, kept):
    from server.engine.pairs import longest_first
    assert longest_first(query, document, room) == kept


def test_longest_first_cuts_the_query_and_the_document_alike():
    maker = bert_like(10)  # room for 7 text tokens
    long_query, short_query = maker.make("abcdef", ["uvwxyz", "z"], truncate=True)
    assert long_query.tolist() == [BOS, *chars("abc"), SEP, *chars("uvwx"), SEP]
    assert short_query.tolist() == [BOS, *chars("abcdef"), SEP, ord("z"), SEP]
    (alone,) = maker.make("abcdefghijkl", ["z"], truncate=True)
    assert alone.tolist() == [BOS, *chars("abcdef"), SEP, ord("z"), SEP]


def test_longest_first_without_truncation_still_refuses_a_long_pair():
    with pytest.raises(InputTooLongError, match="more than the model's context of 10 tokens"):
        bert_like(10).make("abcdef", ["uvwxyz"], truncate=False)
