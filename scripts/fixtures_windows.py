"""Reference scores for long documents scored in windows, from the models' own libraries.

What: `tests/fixtures/xlmr-tiny.windows.reference.json`, the windows, per-window logits and
sigmoids, per-document scores and result order that three long-document semantics give on the
tiny XLM-R reranker (`tests/fixtures/xlmr-tiny-checkpoint/`, the weights of
`xlmr-tiny-f32.gguf` and `xlmr-tiny-jina-v2-f32.gguf`; trained context 128 tokens):

* `bce`: bce-reranker-base_v1's own library, BCEmbedding 0.1.5, run unmodified:
  `RerankerModel(...).rerank(query, passages)` (windowing in `BCEmbedding/models/utils.py`,
  `reranker_tokenize_preproc`). Every model input and logit is captured from the library's own
  forward call with a hook; the start/end offsets are checked against those inputs.
* `jina`: jina-reranker-v2-base-multilingual's `rerank()` (remote code `modeling_xlm_roberta.py`
  of the Hugging Face repository; the hub is unreachable here, so it is re-implemented below from
  the file's text, found in the GitHub snapshot shreyansh26/Accelerating-Cross-Encoder-Inference,
  commit 67c9815, `jina-reranker-v2-base-multilingual/modeling_xlm_roberta.py` lines 963-1119),
  scaled down to max_length 128, max_query_length 64, overlap 16.
* `cohere`: Cohere's documented /v2/rerank semantics (docs.cohere.com/docs/reranking-best-practices,
  "Document Chunking"; changelog "rerank-v3.5": `max_tokens_per_doc` truncates, default 4096): the
  document is cut to `max_tokens_per_doc` tokens, then scored in non-overlapping chunks that fill
  the context, score = max over chunks, returned as a probability (the sigmoid).

Why: the service's windowed scoring must be checked against what the libraries do, token ids
included, and the tests run without torch or network. Every window pair is laid out as the service
lays out a pair, `<s> q </s></s> d </s>` (ids 0 ... 2 2 ... 2): the query with its special tokens,
the document window without. Window logits of distinct documents are kept at least
`MIN_LOGIT_GAP` apart, so a parity test with llama.cpp's ~4e-3 error cannot swap documents.

How to run (BCEmbedding pins transformers<4.37, so it needs its own venv; `make fixtures` runs it):
    python3 -m venv .venv-bce
    .venv-bce/bin/pip install torch==2.13.0 transformers==4.36.2 sentencepiece protobuf numpy
    .venv-bce/bin/pip install --no-deps BCEmbedding==0.1.5
    .venv-bce/bin/python scripts/fixtures_windows.py [--out FILE]
    .venv-fixtures/bin/python scripts/fixtures_windows.py --check [--out FILE]   # transformers 5

BCEmbedding's other dependencies (datasets, sentence-transformers) are not needed by
`RerankerModel`, hence `--no-deps`. Two things the library needs worked around, without
editing it: (1) tokenizers 0.15 (the newest transformers 4.36 accepts) cannot parse the
checkpoint's `tokenizer.json` (written by transformers 5), so the model is loaded from a
temporary copy without it and transformers builds the fast tokenizer from
`sentencepiece.bpe.model`; (2) `RerankerModel(..., overlap_tokens=N)` crashes (the constructor
passes its kwargs on to `from_pretrained`), so a non-default overlap is set on the instance,
which `rerank()` reads.

`--check` re-reads the JSON in another environment (the fixture venv: transformers 5 reading the
checkpoint's own `tokenizer.json`) and recomputes every window's token ids and logit
independently, so the reference does not rest on one tokenizer build or one transformers version.
The output is deterministic (one thread; a rerun differs by float noise at most).
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerBase

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
CHECKPOINT = FIXTURES / "xlmr-tiny-checkpoint"
DEFAULT_OUT = FIXTURES / "xlmr-tiny.windows.reference.json"
MAKE_FIXTURES = REPO_ROOT / "scripts" / "make_fixtures.py"

MAX_LENGTH = 128
BCE_DEFAULT_OVERLAP = 80  # RerankerModel's default `overlap_tokens`
BCE_MIN_WINDOW = 100  # reranker_tokenize_preproc asserts a window of more than this
JINA_MAX_QUERY_LENGTH = 64  # jina's 512 of 1024, scaled to the tiny context
JINA_OVERLAP = 16  # jina's 80, scaled
COHERE_MAX_TOKENS_PER_DOC = 200
COHERE_MAX_QUERY_LENGTH = 64  # Cohere keeps the query to half the context
MIN_LOGIT_GAP = 0.01
LOGIT_TOLERANCE = 1e-5  # padded batch vs single pair, and transformers 4.36 vs 5 (seen: 2e-6)
MAX_JSON_BYTES = 200_000

JINA_SOURCE = {
    "repository": "jinaai/jina-reranker-v2-base-multilingual (Hugging Face), file modeling_xlm_roberta.py",
    "copy_read": "github.com/shreyansh26/Accelerating-Cross-Encoder-Inference,"
                 " commit 67c981548fcc59d1ae56e52bedf76a764f469d5a ('Dump' of the hub files; restored unchanged"
                 " in 8f2b517 'Revert to original files'),"
                 " jina-reranker-v2-base-multilingual/modeling_xlm_roberta.py lines 963-1038 (rerank) and"
                 " 1041-1119 (reranker_tokenize_preproc)",
}
COHERE_SOURCE = {
    "best_practices": "https://docs.cohere.com/docs/reranking-best-practices (Document Chunking: a query of 100 tokens"
                      " and a 10,000-token document with max_tokens_per_doc 10,000 give chunks document[0,3992],"
                      " [3993,7985], [7986,9999]; relevance_score = max over chunks; query truncated to half the"
                      " context; relevance scores normalized to [0, 1])",
    "changelog": "https://docs.cohere.com/changelog/rerank-v3.5 (max_tokens_per_doc: the maximum amount of tokens a"
                 " document can have before truncation; default 4096)",
}


def corpus_lines() -> list[str]:
    """Return make_fixtures.CORPUS_TEXT's lines, read from its source.

    Importing make_fixtures would need gguf and transformers 5, which this venv lacks.
    """
    tree = ast.parse(MAKE_FIXTURES.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "CORPUS_TEXT":
            return ast.literal_eval(node.value).splitlines()
    raise SystemExit(f"CORPUS_TEXT not found in {MAKE_FIXTURES}")


LINES = corpus_lines()
ENGLISH_LINES = LINES[:27] + LINES[34:44]
EXACT_STRIDE = 6  # exact-length documents start this many English lines apart, so they share no window
LONG_DOCUMENT = " ".join(LINES[:14])  # make_fixtures.LONG_DOCUMENT: 423 tokens
BEARS = " ".join(LINES[34:38])  # 127 tokens
PANDA_FACTS = " ".join(LINES[:6])  # 182 tokens
MULTILINGUAL = " ".join(LINES[44:62])  # 478 tokens, Latin, Cyrillic, CJK, Hangul
SHORT_QUERY = "What do giant pandas eat?"  # 11 tokens
PANDA_QUERY = "What is a panda?"  # 9 tokens
# 25 tokens with <s> and </s>: the longest query BCEmbedding accepts at max_length 128
# (window 128 - 25 - 2 = 101 > 100); one more word (26 tokens, window 100) is refused.
NEAR_REFUSAL_QUERY = "Where do giant pandas live in China and what do they eat in the forests?"
REFUSED_QUERY = "Where do giant pandas live in China and what do they eat in the mountain forests?"
LONG_QUERY = f"{LINES[3]} {LINES[4]}"  # 75 tokens: cut to 64 by jina and Cohere


@dataclass(frozen=True)
class Case:
    """One rerank request; `exact` asks for documents of exactly these token counts."""

    name: str
    description: str
    query: str
    documents: tuple[str, ...] = ()
    exact: tuple[int, ...] = ()
    overlap_tokens: int | None = None  # BCE only: set on the RerankerModel instance


MIXED = Case("mixed", "one request mixing documents of one, two and many windows", SHORT_QUERY,
             ("Giant pandas eat bamboo shoots and leaves.", LONG_DOCUMENT, BEARS, "The library closes at six."))
TIE = Case("tie", "a repeated document: equal scores, and the order each library gives them", PANDA_QUERY,
           ("it is a bear", "The giant panda is a bear species endemic to China.", "it is a bear"))
# Documents of exactly W, W+1, W+step and W+step+1 tokens (W = 117 for this query, step 101 with
# overlap 16): the loop's edges, where BCEmbedding's short last window and jina's right-aligned
# one differ most.
BOUNDARY = Case("boundary", "documents of exactly W, W+1, W+step and W+step+1 tokens", PANDA_QUERY,
                exact=(117, 118, 218, 219), overlap_tokens=16)
LONG_QUERY_CASE = Case("long_query", "a 75-token query, cut to the query limit, leaving short windows", LONG_QUERY,
                       ("Giant pandas eat bamboo shoots and leaves.", BEARS, LONG_DOCUMENT))

BCE_CASES = [
    MIXED,
    Case("near_refusal", "a 25-token query: window 101, one token above BCEmbedding's refusal limit",
         NEAR_REFUSAL_QUERY, (MULTILINGUAL, PANDA_FACTS, "Pandas live in the mountains of central China.")),
    BOUNDARY,
    TIE,
]
BCE_REFUSED = Case("refused", "a 26-token query: window 100, refused by BCEmbedding's assertion", REFUSED_QUERY,
                   ("Pandas live in the mountains of central China.",))
JINA_CASES = [MIXED, LONG_QUERY_CASE, BOUNDARY, TIE]
COHERE_CASES = [MIXED, LONG_QUERY_CASE]


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the reference JSON to write or check")
    parser.add_argument("--check", action="store_true",
                        help="recompute the JSON's token ids and logits with this environment's transformers")
    return parser.parse_args()


# ---------------------------------------------------------------------------- windows

def bce_windows(doc_len: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """BCEmbedding 0.1.5 reranker_tokenize_preproc: windows step by window - overlap; the last
    one is whatever is left (it may be short)."""
    if doc_len <= window:
        return [(0, doc_len)]
    spans, start = [], 0
    while start < doc_len:
        end = start + window
        spans.append((start, min(end, doc_len)))
        start = end - overlap if end < doc_len else end
    return spans


def jina_windows(doc_len: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """jina-reranker-v2 reranker_tokenize_preproc: as BCEmbedding, but the last window is
    `v[-window:]`, right-aligned to full length (it overlaps its neighbour by more)."""
    if doc_len <= window:
        return [(0, doc_len)]
    spans, start = [], 0
    while start < doc_len:
        end = start + window
        spans.append((doc_len - window, doc_len) if end >= doc_len else (start, end))
        start = end - overlap if end < doc_len else end
    return spans


def cohere_windows(doc_len: int, window: int, max_tokens_per_doc: int) -> list[tuple[int, int]]:
    """Cohere: cut to max_tokens_per_doc, then consecutive chunks of `window` tokens."""
    kept = min(doc_len, max_tokens_per_doc)
    return [(start, min(start + window, kept)) for start in range(0, max(kept, 1), window)]


def pair_ids(query_ids: list[int], doc_ids: list[int], span: tuple[int, int], sep_id: int) -> list[int]:
    """`<s> q </s></s> d[start:end] </s>`: query ids already end in </s>; one more sep, the window, sep."""
    return [*query_ids, sep_id, *doc_ids[span[0]:span[1]], sep_id]


# ---------------------------------------------------------------------------- model

def load_tokenizer_and_model(checkpoint: Path) -> tuple[PreTrainedTokenizerBase, torch.nn.Module]:
    """Load the reranker as transformers reads it, in float32, for inference."""
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).float().eval()
    return tokenizer, model


def logits_of(model: torch.nn.Module, pairs: list[list[int]]) -> list[float]:
    """Score each pair alone (no padding), as the service evaluates a pair."""
    with torch.no_grad():
        return [model(input_ids=torch.tensor([ids])).logits[0, 0].item() for ids in pairs]


def sigmoid(x: float) -> float:
    """The logistic function, in float32 like the libraries' torch.sigmoid."""
    return torch.sigmoid(torch.tensor([x], dtype=torch.float32)).item()


def doc_tokens(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """A document's ids without special tokens (how all three split documents)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def text_of_tokens(tokenizer: PreTrainedTokenizerBase, n_tokens: int, first_line: int) -> str:
    """The first run of words from the corpus's English lines, starting at English line
    `first_line`, that tokenizes to exactly n_tokens."""
    words = " ".join(ENGLISH_LINES[first_line:]).split()
    for start in range(len(words)):
        for end in range(start + 1, len(words) + 1):
            text = " ".join(words[start:end])
            count = len(doc_tokens(tokenizer, text))
            if count == n_tokens:
                return text
            if count > n_tokens:
                break
    raise SystemExit(f"no corpus text of exactly {n_tokens} tokens")


def documents_of(case: Case, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    """The case's documents, building the exact-length ones."""
    return list(case.documents) + [text_of_tokens(tokenizer, n, EXACT_STRIDE * i) for i, n in enumerate(case.exact)]


# ---------------------------------------------------------------------------- records

def window_record(span: tuple[int, int], ids: list[int], logit: float, prob: float) -> dict:
    """One window: its offsets into the document's tokens, its full pair ids, logit and sigmoid."""
    return {"start": span[0], "end": span[1], "input_ids": ids, "logit": logit, "sigmoid": prob}


def document_records(spans: list[list[tuple[int, int]]], pairs: list[list[int]], logits: list[float],
                     probs: list[float], lengths: list[int]) -> list[dict]:
    """Group the flat window list by document; a document's score is its best window's sigmoid."""
    records, k = [], 0
    for index, (doc_spans, length) in enumerate(zip(spans, lengths)):
        windows = [window_record(span, pairs[k + j], logits[k + j], probs[k + j]) for j, span in enumerate(doc_spans)]
        k += len(doc_spans)
        best = max(windows, key=lambda w: w["sigmoid"])
        records.append({"index": index, "doc_tokens": length, "windows": windows,
                        "best_logit": best["logit"], "score": best["sigmoid"]})
    return records


def argsort_desc(scores: list[float]) -> list[int]:
    """`np.argsort(scores)[::-1]`, the order BCEmbedding and jina return (equal scores come out
    in reverse request order)."""
    return [int(i) for i in np.argsort(scores)[::-1]]


def check_gaps(case_name: str, docs: list[str], records: list[dict]) -> None:
    """Fail unless distinct documents' best logits are MIN_LOGIT_GAP apart (repeats must be equal)."""
    by_doc: dict[str, float] = {}
    for doc, record in zip(docs, records):
        if doc in by_doc and abs(by_doc[doc] - record["best_logit"]) > LOGIT_TOLERANCE:
            raise SystemExit(f"{case_name}: equal documents score {by_doc[doc]} and {record['best_logit']}")
        by_doc[doc] = record["best_logit"]
    distinct = sorted(by_doc.values())
    gap = min((b - a for a, b in zip(distinct, distinct[1:])), default=MIN_LOGIT_GAP)
    if gap < MIN_LOGIT_GAP:
        raise SystemExit(f"{case_name}: best logits only {gap:.4g} apart; change the documents")


def case_header(case: Case, docs: list[str], query_ids: list[int], window: int, **params: int | None) -> dict:
    """The request and the windowing parameters a test needs to redo the case."""
    return {"name": case.name, "description": case.description, "query": case.query, "query_ids": query_ids,
            "documents": docs, "max_length": MAX_LENGTH, **params, "window_tokens": window}


# ---------------------------------------------------------------------------- BCEmbedding

def bce_checkpoint_copy(work_dir: Path) -> Path:
    """The checkpoint without tokenizer.json, which the tokenizers that transformers 4.36 pins cannot
    parse; transformers then builds the same fast tokenizer from sentencepiece.bpe.model."""
    copy = work_dir / CHECKPOINT.name
    shutil.copytree(CHECKPOINT, copy, ignore=shutil.ignore_patterns("tokenizer.json"))
    return copy


def capture_forward(model: torch.nn.Module) -> tuple[list[list[int]], list[float], list[float], Callable[[], None]]:
    """Record every pair (padding stripped), logit and sigmoid of the library's forward calls; the
    sigmoid is taken as rerank() takes it, on the whole batch, so it equals the returned score bit for bit."""
    pairs: list[list[int]] = []
    logits: list[float] = []
    probs: list[float] = []

    def hook(_module: torch.nn.Module, _args: tuple, kwargs: dict, output: object) -> None:
        batch_logits = output.logits.view(-1).float()
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"]):
            pairs.append(ids[mask.bool()].tolist())
        logits.extend(batch_logits.tolist())
        probs.extend(torch.sigmoid(batch_logits).tolist())

    handle = model.register_forward_hook(hook, with_kwargs=True)
    return pairs, logits, probs, handle.remove


def bce_case(reranker: object, case: Case) -> dict:
    """Run RerankerModel.rerank on one case and record what it computed."""
    tokenizer, model = reranker.tokenizer, reranker.model
    reranker.overlap_tokens = case.overlap_tokens or BCE_DEFAULT_OVERLAP
    docs = documents_of(case, tokenizer)
    query_ids = tokenizer(case.query)["input_ids"]
    window = MAX_LENGTH - len(query_ids) - 2
    overlap = min(reranker.overlap_tokens, window // 4)
    header = case_header(case, docs, query_ids, window, overlap_tokens=reranker.overlap_tokens, overlap=overlap)
    pairs, logits, probs, remove = capture_forward(model)
    try:
        returned = reranker.rerank(case.query, docs)
    except AssertionError as error:
        if window > BCE_MIN_WINDOW:
            raise
        return {**header, "refused": f"AssertionError: {error}"}
    finally:
        remove()
    if window <= BCE_MIN_WINDOW:
        raise SystemExit(f"bce {case.name}: a window of {window} tokens was expected to be refused")
    doc_ids = [doc_tokens(tokenizer, doc) for doc in docs]
    spans = [bce_windows(len(ids), window, overlap) for ids in doc_ids]
    expected = [pair_ids(query_ids, ids, span, tokenizer.sep_token_id) for ids, s in zip(doc_ids, spans) for span in s]
    if pairs != expected:
        raise SystemExit(f"bce {case.name}: BCEmbedding's inputs differ from the windows computed here")
    if max(abs(a - b) for a, b in zip(logits, logits_of(model, pairs))) > LOGIT_TOLERANCE:
        raise SystemExit(f"bce {case.name}: padded-batch logits differ from single-pair logits")
    records = document_records(spans, pairs, logits, probs, [len(ids) for ids in doc_ids])
    scores = [returned["rerank_scores"][returned["rerank_ids"].index(i)] for i in range(len(docs))]
    if scores != [r["score"] for r in records]:
        raise SystemExit(f"bce {case.name}: returned scores are not the max of the window sigmoids")
    check_gaps(f"bce {case.name}", docs, records)
    return {**header, "results": records, "scores": scores,
            "returned": {"rerank_ids": returned["rerank_ids"], "rerank_scores": returned["rerank_scores"]}}


def bce_reference(work_dir: Path) -> dict:
    """All BCEmbedding cases, from RerankerModel loaded as its README shows."""
    from BCEmbedding import RerankerModel  # only in .venv-bce

    reranker = RerankerModel(model_name_or_path=str(bce_checkpoint_copy(work_dir)), max_length=MAX_LENGTH,
                             use_fp16=False, device="cpu")
    if reranker.max_length != MAX_LENGTH:
        raise SystemExit("RerankerModel did not take max_length")
    cases = [bce_case(reranker, case) for case in [*BCE_CASES, BCE_REFUSED]]
    return {
        "library": "BCEmbedding 0.1.5 (PyPI), unmodified: RerankerModel(model_name_or_path=CHECKPOINT, max_length=128,"
                   " use_fp16=False, device='cpu').rerank(query, passages)",
        "semantics": [
            "query: tokenizer.encode_plus(query) with <s> and </s>, never truncated",
            "window W = max_length - len(query_ids) - 2 document tokens; assert W > 100, else AssertionError"
            " 'Your query is too long!' (at max_length 128: a query of at most 25 tokens)",
            "overlap = min(overlap_tokens, W // 4); overlap_tokens defaults to 80 and is read from the instance"
            " (the constructor cannot take it: it passes its kwargs to from_pretrained)",
            "a document of at most W tokens is one window; else windows [start, start + W) with start advancing"
            " by W - overlap; the last window is what is left and may be short",
            "pair: query_ids + [sep] + window + [sep] = <s> q </s></s> d </s>",
            "window score: sigmoid(logit); document score: max over its windows (merge starts at 0)",
            "order: rerank_ids = np.argsort(scores)[::-1], so equal scores come out in reverse request order",
            "empty passages (len 0) are dropped before ranking and passages are cut to 128000 characters, so"
            " rerank_ids index the filtered list",
        ],
        "cases": cases,
    }


# ---------------------------------------------------------------------------- jina and Cohere

def jina_case(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module, case: Case) -> dict:
    """jina-reranker-v2's rerank() on the tiny model, scaled parameters."""
    docs = documents_of(case, tokenizer)
    query_ids = tokenizer(case.query, truncation=True, max_length=JINA_MAX_QUERY_LENGTH)["input_ids"]
    window = MAX_LENGTH - len(query_ids) - 2
    overlap = min(JINA_OVERLAP, window // 4)
    doc_ids = [doc_tokens(tokenizer, doc) for doc in docs]
    spans = [jina_windows(len(ids), window, overlap) for ids in doc_ids]
    pairs = [pair_ids(query_ids, ids, span, tokenizer.sep_token_id) for ids, s in zip(doc_ids, spans) for span in s]
    logits = logits_of(model, pairs)
    records = document_records(spans, pairs, logits, [sigmoid(x) for x in logits], [len(ids) for ids in doc_ids])
    check_gaps(f"jina {case.name}", docs, records)
    scores = [r["score"] for r in records]
    order = argsort_desc(scores)
    returned = [{"index": i, "relevance_score": scores[i]} for i in order]
    header = case_header(case, docs, query_ids, window, max_query_length=JINA_MAX_QUERY_LENGTH,
                         overlap_tokens=JINA_OVERLAP, overlap=overlap)
    return {**header, "results": records, "scores": scores, "returned": returned}


def jina_reference(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module) -> dict:
    """All jina cases."""
    return {
        "source": JINA_SOURCE,
        "parameters": "jina's defaults max_length 1024, max_query_length 512, overlap_tokens 80 scaled to the tiny"
                      " model: 128, 64, 16 (rerank() asserts max_length >= 2 * max_query_length)",
        "semantics": [
            "query: tokenizer.encode_plus(query, truncation=True, max_length=max_query_length), <s> and </s> included",
            "window W = max_length - len(query_ids) - 2; overlap = min(overlap_tokens, W // 4); no lower limit on W",
            "a document of at most W tokens is one window; else windows [start, start + W) with start advancing by"
            " W - overlap, and the last window is passage[-W:], right-aligned to full length",
            "pair: query_ids + [sep] + window + [sep] = <s> q </s></s> d </s>",
            "window score: torch.sigmoid(logit); document score: max over windows (merge starts at 0); rerank()"
            " returns sigmoids, as 'relevance_score', not logits",
            "order: np.argsort(scores)[::-1] (equal scores in reverse request order); each result is {'document',"
            " 'relevance_score', 'index'}, cut to top_n",
            "an empty document (0 tokens) raises IndexError in _merge_inputs (attention_mask[0])",
            "scored here one pair at a time, without padding; rerank() pads batches of 32 (same logits to ~1e-7)",
        ],
        "cases": [jina_case(tokenizer, model, case) for case in JINA_CASES],
    }


def cohere_case(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module, case: Case) -> dict:
    """Cohere's cut-then-chunk semantics on the tiny model."""
    docs = documents_of(case, tokenizer)
    query_ids = tokenizer(case.query, truncation=True, max_length=COHERE_MAX_QUERY_LENGTH)["input_ids"]
    window = MAX_LENGTH - len(query_ids) - 2
    doc_ids = [doc_tokens(tokenizer, doc) for doc in docs]
    spans = [cohere_windows(len(ids), window, COHERE_MAX_TOKENS_PER_DOC) for ids in doc_ids]
    pairs = [pair_ids(query_ids, ids, span, tokenizer.sep_token_id) for ids, s in zip(doc_ids, spans) for span in s]
    logits = logits_of(model, pairs)
    records = document_records(spans, pairs, logits, [sigmoid(x) for x in logits], [len(ids) for ids in doc_ids])
    for record in records:
        record["kept_tokens"] = min(record["doc_tokens"], COHERE_MAX_TOKENS_PER_DOC)
    check_gaps(f"cohere {case.name}", docs, records)
    scores = [r["score"] for r in records]
    order = sorted(range(len(docs)), key=lambda i: -scores[i])
    header = case_header(case, docs, query_ids, window, max_query_length=COHERE_MAX_QUERY_LENGTH,
                         max_tokens_per_doc=COHERE_MAX_TOKENS_PER_DOC)
    return {**header, "results": records, "scores": scores,
            "returned": [{"index": i, "relevance_score": scores[i]} for i in order]}


def cohere_reference(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module) -> dict:
    """All Cohere cases."""
    return {
        "source": COHERE_SOURCE,
        "semantics": [
            "document cut to its first max_tokens_per_doc tokens (here 200; Cohere's default 4096)",
            "query cut to half the context (here 64 tokens with <s> and </s>; Cohere: 2048 of 4096)",
            "chunks of W = max_length - len(query_ids) - 2 document tokens, consecutive, no overlap; the last may be"
            " short (Cohere's example: 100-token query, chunks of 3993 = 4093 - 100)",
            "pair laid out as the model's own pair, <s> q </s></s> d </s> (Cohere's own reserved tokens differ)",
            "chunk score: sigmoid(logit) (Cohere returns relevance scores in [0, 1]); document score: max over chunks",
            "order: by score, highest first (equal scores in request order; Cohere does not document ties)",
        ],
        "cases": [cohere_case(tokenizer, model, case) for case in COHERE_CASES],
    }


# ---------------------------------------------------------------------------- output

def compact_json(data: dict) -> str:
    """indent=2, but lists of numbers on one line, so the token ids stay readable and small."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return re.sub(r"\[\s*(-?\d[\d.eE+\-]*(?:,\s*-?\d[\d.eE+\-]*)*)\s*\]",
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text) + "\n"


def build_reference() -> dict:
    """Run the three references on the checkpoint."""
    with tempfile.TemporaryDirectory(prefix="fixtures_windows-") as tmp:
        bce = bce_reference(Path(tmp))
        tokenizer, model = load_tokenizer_and_model(bce_checkpoint_copy(Path(tmp) / "plain"))
        jina, cohere = jina_reference(tokenizer, model), cohere_reference(tokenizer, model)
    torch_version = torch.__version__.split("+")[0]
    return {
        "checkpoint": "tests/fixtures/xlmr-tiny-checkpoint",
        "ggufs": ["xlmr-tiny-f32.gguf", "xlmr-tiny-jina-v2-f32.gguf"],
        "pair_layout": "<s> query </s></s> document-window </s>",
        "special_ids": {"bos": tokenizer.cls_token_id, "sep": tokenizer.sep_token_id, "pad": tokenizer.pad_token_id},
        "generator": f"scripts/fixtures_windows.py (BCEmbedding 0.1.5, transformers {transformers.__version__},"
                     f" torch {torch_version})",
        "note": "random weights: the scores carry no meaning; logits are the raw head output, sigmoid = 1/(1+e^-logit)",
        "references": {"bce": bce, "jina": jina, "cohere": cohere},
    }


def print_summary(reference: dict, path: Path) -> None:
    """Show the windows per document of every case."""
    print(f"{path}: {path.stat().st_size} bytes")
    for name, ref in reference["references"].items():
        for case in ref["cases"]:
            windows = [len(r["windows"]) for r in case.get("results", [])]
            print(f"{name:6s} {case['name']:13s} W={case['window_tokens']:3d} windows={windows}"
                  f" {case.get('refused', '')}")


# ---------------------------------------------------------------------------- --check

def check_case(tokenizer: PreTrainedTokenizerBase, model: torch.nn.Module, ref: str, case: dict) -> float:
    """Recompute one case's ids and logits; return the largest logit difference."""
    query_limit = case.get("max_query_length")
    query_ids = tokenizer(case["query"], truncation=query_limit is not None, max_length=query_limit)["input_ids"]
    if query_ids != case["query_ids"] or case["window_tokens"] != MAX_LENGTH - len(query_ids) - 2:
        raise SystemExit(f"{ref} {case['name']}: query ids differ")
    worst = 0.0
    for record, doc in zip(case.get("results", []), case["documents"]):
        ids = doc_tokens(tokenizer, doc)
        if len(ids) != record["doc_tokens"]:
            raise SystemExit(f"{ref} {case['name']} document {record['index']}: token count differs")
        for window in record["windows"]:
            expected = pair_ids(query_ids, ids, (window["start"], window["end"]), tokenizer.sep_token_id)
            if expected != window["input_ids"]:
                raise SystemExit(f"{ref} {case['name']} document {record['index']}: window ids differ")
            worst = max(worst, abs(logits_of(model, [expected])[0] - window["logit"]))
        if record["score"] != max(w["sigmoid"] for w in record["windows"]):
            raise SystemExit(f"{ref} {case['name']} document {record['index']}: score is not the best window")
    return worst


def check_reference(path: Path) -> None:
    """Recompute every window with the checkpoint as this environment reads it."""
    reference = json.loads(path.read_text(encoding="utf-8"))
    tokenizer, model = load_tokenizer_and_model(CHECKPOINT)
    worst = max(check_case(tokenizer, model, name, case)
                for name, ref in reference["references"].items() for case in ref["cases"])
    if worst > LOGIT_TOLERANCE:
        raise SystemExit(f"logits differ by up to {worst:.3g} (tolerance {LOGIT_TOLERANCE})")
    print(f"{path}: token ids equal, logits within {worst:.2g} (transformers {transformers.__version__})")


def main() -> None:
    """Write the reference, or check it."""
    args = parse_args()
    torch.set_num_threads(1)
    if args.check:
        check_reference(args.out)
        return
    reference = build_reference()
    text = compact_json(reference)
    if len(text.encode("utf-8")) > MAX_JSON_BYTES:
        raise SystemExit(f"reference is {len(text)} bytes, over {MAX_JSON_BYTES}")
    args.out.write_text(text, encoding="utf-8")
    print_summary(reference, args.out)


if __name__ == "__main__":
    main()
