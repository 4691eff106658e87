"""A tiny mxbai-rerank-v2 checkpoint and its reference scores from mixedbread's own package.

mxbai-rerank-base-v2 and -large-v2 are Qwen2 causal LMs (`Qwen2ForCausalLM`, tied embeddings for
base) read from token logits: the score is logit("1") - logit("0") at the last position of a
prompt that `mxbai_rerank.MxbaiRerankV2.prepare_inputs` (PyPI `mxbai-rerank` 0.1.6,
`mxbai_rerank/mxbai_rerank_v2.py`) builds from separately tokenized pieces: Qwen's chat prefix,
`query: {query}` (after `instruction: {instruction}\n` when one is given), `\n`,
`document: {document}`, `\n`, the task prompt, the chat suffix. The reference here is that
package's `predict()` itself, on this checkpoint.

The vocabulary is the real Qwen2/Qwen3 one: the tokenizer files of `qwen3-tiny-checkpoint/`
(built by `fixtures_qwen3.py` from llama.cpp's `ggml-vocab-qwen2.gguf`; Qwen2.5, which mxbai uses,
has the same text tokens and `<|im_start|>`/`<|im_end|>` ids). The tests serve those files beside
this checkpoint's own two.

Writes to `tests/fixtures/`:
* `mxbai-tiny-checkpoint/`: `config.json` and `model.safetensors` (random weights, matrices in f16
  as the F16 conversion rounds them, 2 layers of width 16, q/k/v biases as Qwen2 has);
* `mxbai-tiny.reference.json`: per case the token ids of every pair and the package's scores.

Usage (`make fixtures` runs it, after fixtures_qwen3.py; mxbai-rerank 0.1.6 needs transformers 4,
whose `prepare_for_model` transformers 5 removed, hence a venv of its own):
    .venv-transformers4/bin/python scripts/fixtures_mxbai.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from mxbai_rerank import MxbaiRerankV2
from safetensors.torch import save_file
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
TOKENIZER_DIR = "qwen3-tiny-checkpoint"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
CHECKPOINT_DIR = "mxbai-tiny-checkpoint"
REFERENCE_JSON = "mxbai-tiny.reference.json"
SEED = 7

CASES = [
    {"name": "panda", "instruction": None, "query": "What is a panda?", "documents": [
        "hi", "it is a bear",
        "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear "
        "species endemic to China."]},
    {"name": "instruction", "instruction": "Find passages about animals", "query": "bears in China",
     "documents": ["Pandas live in the mountains of Sichuan.", "The stock market fell today.", "été, naïve, 東京"]},
    {"name": "whitespace", "instruction": None, "query": "  spaced query \n", "documents": [
        "ends with spaces   ", "\nstarts with a newline", "tabs\tinside\tit"]},
]


def build_model(vocab_size: int) -> Qwen2ForCausalLM:
    config = Qwen2Config(
        vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048, rms_norm_eps=1e-6,
        rope_theta=1_000_000.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
        pad_token_id=151643, torch_dtype="float32",
    )
    torch.manual_seed(SEED)
    model = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.5 * torch.randn_like(p))
            if p.dim() == 2:  # rounded as the F16 conversion rounds them
                p.copy_(p.half().float())
    return model


def save_checkpoint(model: Qwen2ForCausalLM, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    model.config.architectures = ["Qwen2ForCausalLM"]
    model.config.to_json_file(folder / "config.json")
    tensors = {name: (t.half() if t.dim() == 2 else t).contiguous()
               for name, t in model.state_dict().items() if name != "lm_head.weight"}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def reference(served: Path) -> dict:
    ranker = MxbaiRerankV2(str(served), device="cpu", torch_dtype=torch.float32, max_length=1024)
    cases = []
    for case in CASES:
        queries = [case["query"]] * len(case["documents"])
        inputs = ranker.prepare_inputs(queries, case["documents"], instruction=case["instruction"])
        ids = [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"])]
        scores = ranker.predict(queries, case["documents"], instruction=case["instruction"]).tolist()
        cases.append({**case, "token_ids": ids, "scores": scores})
    return {"package": "mxbai-rerank 0.1.6", "cases": cases}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    tokenizer = AutoTokenizer.from_pretrained(args.out_dir / TOKENIZER_DIR)
    model = build_model(151936)
    checkpoint = args.out_dir / CHECKPOINT_DIR
    save_checkpoint(model, checkpoint)
    with tempfile.TemporaryDirectory() as tmp:
        served = Path(tmp) / "mxbai-rerank-tiny-v2"
        shutil.copytree(checkpoint, served)
        for name in TOKENIZER_FILES:
            shutil.copy(args.out_dir / TOKENIZER_DIR / name, served / name)
        assert len(AutoTokenizer.from_pretrained(served)) == len(tokenizer)
        result = reference(served)
    (args.out_dir / REFERENCE_JSON).write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n",
                                               encoding="utf-8")
    for case in result["cases"]:
        print(f"{case['name']}: {[len(i) for i in case['token_ids']]} tokens, scores "
              f"{[round(s, 4) for s in case['scores']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
