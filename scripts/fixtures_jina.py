"""Generate a tiny jina-reranker-v1-shaped fixture (llama.cpp `jina-bert-v2`) and its reference scores.

jina-reranker-v1-tiny-en and -turbo-en are JinaBERT encoders: post-norm BERT layers with ALiBi
instead of position embeddings, a GEGLU feed-forward, a RoBERTa-style byte-level BPE tokenizer
and a single `classifier` projection on the first token's state. llama.cpp's converter reads them
as `JinaBertForMaskedLM` (the architecture their config.json names) and stores the projection as
`cls.weight`; at run time llama.cpp's rank pooling applies it to the first token's state followed
by tanh, and gives every token type 0.

`transformers` has no JinaBERT (jina ships it as remote code, which cannot be fetched offline),
so the reference here is a numpy forward pass written from the architecture, independent of
llama.cpp: it checks that the service loads the file, lays out the pair as BERT does
(`<s> q </s></s> d </s>`, compared with the tokenizer's own pair encoding), and reads the score
from the right place. The fixture's two token-type rows are equal, so the reference does not
depend on the type ids that llama.cpp cannot pass. The converter recognises a tokenizer by hashing
how it splits a test text; this vocabulary is new to it, so the conversion pins the pre-tokenizer
name the real jina-reranker-v1 files carry (`jina-v1-en`).

Writes to `tests/fixtures/`:
* `jina-tiny-f32.gguf`: 2 layers of width 32, 4 heads, a byte-level BPE vocabulary trained here,
  converted by llama.cpp's own `convert_hf_to_gguf.py`;
* `jina-tiny.reference.json`: scores (tanh of the head), pair token counts and the first pair's ids.

Usage (`make fixtures` runs it):
    .venv-fixtures/bin/python scripts/fixtures_jina.py --llama-cpp-src DIR [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import transformers
from make_fixtures import CORPUS_TEXT, MIN_SCORE_GAP
from safetensors.numpy import save_file
from tokenizers import ByteLevelBPETokenizer
from transformers import RobertaTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
RERANKER_GGUF = "jina-tiny-f32.gguf"
REFERENCE_JSON = "jina-tiny.reference.json"

HIDDEN, LAYERS, HEADS, INTERMEDIATE = 32, 2, 4, 64
MAX_LENGTH = 128
LAYER_NORM_EPS = 1e-12
PRE_TOKENIZER = "jina-v1-en"
MAX_ALIBI_BIAS = 8.0  # llama.cpp's f_max_alibi_bias for jina-bert-v2: the standard ALiBi slopes
WEIGHTS_SEED = 7
WEIGHT_STD = 0.3
HEAD_STD = 1.0
BPE_VOCAB_SIZE = 800
SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")

PANDA_QUERY = "what is a panda?"
PANDA_DOCUMENTS = [
    "hi",
    "it's a bear",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, "
    "is a bear species endemic to China.",
    "Bears are carnivoran mammals of the family Ursidae.",
    "The recipe needs flour, butter, sugar, vanilla, a pinch of salt and three eggs.",
]
LONG_DOCUMENT = " ".join(line for line in CORPUS_TEXT.splitlines() if line.isascii())
CASES = [
    {"name": "panda", "query": PANDA_QUERY, "documents": PANDA_DOCUMENTS},
    {"name": "compiler", "query": "How does a compiler work?",
     "documents": ["A compiler translates source code into machine instructions.",
                   "Submarines navigate underwater using sonar.",
                   "Python is a programming language that lets you work quickly.",
                   "zxqv unseenword"]},
    {"name": "truncated", "query": "giant panda diet",
     "documents": [LONG_DOCUMENT, "The giant panda feeds almost entirely on bamboo."]},
]


def train_tokenizer(tok_dir: Path) -> RobertaTokenizer:
    """A byte-level BPE trained on the ASCII lines of the shared corpus, saved as RoBERTa's."""
    lines = [line for line in CORPUS_TEXT.splitlines() if line.isascii()]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(lines, vocab_size=BPE_VOCAB_SIZE, min_frequency=2, special_tokens=list(SPECIALS))
    bpe.save_model(str(tok_dir))
    tokenizer = RobertaTokenizer(vocab=str(tok_dir / "vocab.json"), merges=str(tok_dir / "merges.txt"))
    tokenizer.save_pretrained(tok_dir)
    return RobertaTokenizer.from_pretrained(tok_dir)


def config(vocab_size: int) -> dict:
    """config.json as jina-reranker-v1 ships it: architecture JinaBertForMaskedLM, no id2label."""
    return {
        "architectures": ["JinaBertForMaskedLM"],
        "model_type": "bert",
        "vocab_size": vocab_size,
        "hidden_size": HIDDEN,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "intermediate_size": INTERMEDIATE,
        "hidden_act": "gelu",
        "max_position_embeddings": MAX_LENGTH,
        "type_vocab_size": 2,
        "layer_norm_eps": LAYER_NORM_EPS,
        "position_embedding_type": "alibi",
        "feed_forward_type": "geglu",
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
    }


def build_weights(vocab_size: int) -> dict[str, np.ndarray]:
    """Seeded random weights under the checkpoint names of jina's JinaBertForSequenceClassification."""
    rng = np.random.default_rng(WEIGHTS_SEED)

    def normal(*shape: int, std: float = WEIGHT_STD) -> np.ndarray:
        return (std * rng.standard_normal(shape)).astype(np.float32)

    def norm(prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.weight": 1 + normal(HIDDEN, std=0.1), f"{prefix}.bias": normal(HIDDEN, std=0.1)}

    type_row = normal(1, HIDDEN)
    w = {
        "bert.embeddings.word_embeddings.weight": normal(vocab_size, HIDDEN, std=1.0),
        "bert.embeddings.token_type_embeddings.weight": np.repeat(type_row, 2, axis=0),
        **norm("bert.embeddings.LayerNorm"),
    }
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            w[f"{p}.attention.self.{name}.weight"] = normal(HIDDEN, HIDDEN)
            w[f"{p}.attention.self.{name}.bias"] = normal(HIDDEN, std=0.1)
        w[f"{p}.attention.output.dense.weight"] = normal(HIDDEN, HIDDEN)
        w[f"{p}.attention.output.dense.bias"] = normal(HIDDEN, std=0.1)
        w |= norm(f"{p}.attention.output.LayerNorm")
        w[f"{p}.mlp.gated_layers.weight"] = normal(2 * INTERMEDIATE, HIDDEN)
        w[f"{p}.mlp.wo.weight"] = normal(HIDDEN, INTERMEDIATE)
        w[f"{p}.mlp.wo.bias"] = normal(HIDDEN, std=0.1)
        w |= norm(f"{p}.mlp.layernorm")
    w["classifier.weight"] = normal(1, HIDDEN, std=HEAD_STD / np.sqrt(HIDDEN))
    w["classifier.bias"] = normal(1, std=0.1)
    return w


def save_checkpoint(ckpt_dir: Path, weights: dict[str, np.ndarray], vocab_size: int) -> None:
    (ckpt_dir / "config.json").write_text(json.dumps(config(vocab_size), indent=2) + "\n", encoding="utf-8")
    save_file(weights, str(ckpt_dir / "model.safetensors"))


def convert_pinned(llama_cpp_src: Path, ckpt_dir: Path, out_path: Path) -> None:
    """llama.cpp's converter, with the pre-tokenizer name pinned (see the module docstring)."""
    program = (
        "import runpy, sys\n"
        f"sys.path[:0] = [{str(llama_cpp_src)!r}, {str(llama_cpp_src / 'gguf-py')!r}]\n"
        "from conversion import base\n"
        f"base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {PRE_TOKENIZER!r}\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(ckpt_dir)!r}, '--outtype', 'f32', '--outfile', {str(out_path)!r}]\n"
        f"runpy.run_path({str(llama_cpp_src / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    subprocess.run([sys.executable, "-c", program], check=True)


# -- the reference forward pass -------------------------------------------------------------


def layer_norm(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + LAYER_NORM_EPS) * w[f"{prefix}.weight"] + w[f"{prefix}.bias"]


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, the `gelu` of the config."""
    from math import erf, sqrt

    return 0.5 * x * (1 + np.vectorize(erf)(x / sqrt(2)))


def alibi_bias(n: int) -> np.ndarray:
    """Symmetric ALiBi: head h adds -slope_h * |i - j| to its attention logits."""
    slopes = 2.0 ** (-MAX_ALIBI_BIAS * np.arange(1, HEADS + 1) / HEADS)
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    return -slopes[:, None, None] * distance[None]


def linear(x: np.ndarray, w: dict[str, np.ndarray], prefix: str) -> np.ndarray:
    y = x @ w[f"{prefix}.weight"].T
    return y + w[f"{prefix}.bias"] if f"{prefix}.bias" in w else y


def score(ids: list[int], w: dict[str, np.ndarray]) -> float:
    """tanh(classifier(first token's state)): what llama.cpp's rank pooling computes for this architecture."""
    x = w["bert.embeddings.word_embeddings.weight"][ids].astype(np.float64)
    x = layer_norm(x + w["bert.embeddings.token_type_embeddings.weight"][0], w, "bert.embeddings.LayerNorm")
    n, head_dim = len(ids), HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"bert.encoder.layer.{i}"
        q, k, v = (linear(x, w, f"{p}.attention.self.{name}").reshape(n, HEADS, head_dim).transpose(1, 0, 2)
                   for name in ("query", "key", "value"))
        logits = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim) + alibi_bias(n)
        attn = np.exp(logits - logits.max(-1, keepdims=True))
        attn /= attn.sum(-1, keepdims=True)
        context = (attn @ v).transpose(1, 0, 2).reshape(n, HIDDEN)
        x = layer_norm(linear(context, w, f"{p}.attention.output.dense") + x, w, f"{p}.attention.output.LayerNorm")
        gated, up = np.split(linear(x, w, f"{p}.mlp.gated_layers"), 2, axis=-1)
        x = layer_norm(linear(gelu(gated) * up, w, f"{p}.mlp.wo") + x, w, f"{p}.mlp.layernorm")
    return float(np.tanh(linear(x[0], w, "classifier"))[0])


def score_case(case: dict, tokenizer: RobertaTokenizer, w: dict[str, np.ndarray]) -> dict:
    encodings = [tokenizer(case["query"], doc, truncation="only_second", max_length=MAX_LENGTH)["input_ids"]
                 for doc in case["documents"]]
    full = [len(tokenizer(case["query"], doc)["input_ids"]) for doc in case["documents"]]
    scores = [score(ids, w) for ids in encodings]
    distinct = sorted(set(scores))
    gap = min((b - a for a, b in zip(distinct, distinct[1:])), default=MIN_SCORE_GAP)
    if gap < MIN_SCORE_GAP:
        raise SystemExit(f"case {case['name']}: scores only {gap:.4g} apart; change WEIGHTS_SEED")
    return {**case, "scores": scores, "pair_tokens": [len(ids) for ids in encodings],
            "truncated": [length > MAX_LENGTH for length in full], "first_pair_ids": encodings[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-cpp-src", type=Path, required=True, help="llama.cpp tree with the converter")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fixtures_jina-") as tmp:
        ckpt_dir = Path(tmp) / "jina-reranker-tiny-random"
        ckpt_dir.mkdir()
        tokenizer = train_tokenizer(ckpt_dir)
        weights = build_weights(len(tokenizer))
        save_checkpoint(ckpt_dir, weights, len(tokenizer))
        convert_pinned(args.llama_cpp_src, ckpt_dir, args.out_dir / RERANKER_GGUF)
    reference = {
        "model": RERANKER_GGUF,
        "max_length": MAX_LENGTH,
        "generator": f"scripts/fixtures_jina.py (numpy {np.__version__}, tokenizer from transformers "
                     f"{transformers.__version__})",
        "cases": [score_case(case, tokenizer, weights) for case in CASES],
    }
    path = args.out_dir / REFERENCE_JSON
    path.write_text(json.dumps(reference, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for case in reference["cases"]:
        print(f"{case['name']:10s} scores={[round(s, 4) for s in case['scores']]} tokens={case['pair_tokens']}")
    print(f"{RERANKER_GGUF}: {(args.out_dir / RERANKER_GGUF).stat().st_size} bytes")


if __name__ == "__main__":
    main()
