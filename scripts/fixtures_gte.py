"""Generate a tiny gte-multilingual-reranker (Alibaba's `NewModel`) fixture and its reference scores.

llama.cpp has no architecture for `NewForSequenceClassification`; the project adds one (`gte`) with
its patch, `patches/llama.cpp.patch`, whose converter this script runs. The reference is not
the model's remote code (Alibaba-NLP/new-impl cannot be downloaded here): it is a forward pass
written in this file from the model's description, so the patch is checked against an independent
reading of the model rather than against itself:

- embeddings: word + token-type row 0, no absolute positions, LayerNorm;
- attention: fused `qkv_proj` with bias, [q|k|v]; RoPE in the rotate-half (NeoX) layout with NTK
  scaling applied at every length: base = rope_theta * factor, inv_freq / factor ** (2 / head_dim);
- post-LN layers: h = ln1(x + o(attn(x))), h = ln2(h + mlp(h));
- FFN: `up_gate_proj` (no bias) split into up (first rows) and gate (last rows),
  down(up * gelu(gate)) with the exact (erf) GELU and a bias on down;
- head: tanh(pooler.dense(first token)), then `classifier`.

Writes to `tests/fixtures/`:

* `gte-tiny-checkpoint/`: the Hugging Face checkpoint (config.json as the real one lays it out,
  `new.`-prefixed safetensors, the tiny XLM-R tokenizer of `xlmr-tiny-checkpoint/`, the vocabulary
  padded past the tokenizer as the real model's 250,048 rows are). Head size 64, as the real
  model's, so the linear RoPE factor is the real 8 ** (1 / 32).
* `gte-tiny-f32.gguf`: that checkpoint converted by the patched `convert_hf_to_gguf.py`.
* `gte-tiny-llamabox-f32.gguf`: the same weights laid out as GPUStack's llama-box converter wrote
  them (architecture `new`, `up_gate_proj` unsplit as `ffn_up`, freq_base theta * factor **
  (d / (d - 1)) and no scale), which the service refuses.
* `gte-tiny.reference.json`: reference logits (float64) and token ids for short pairs and pairs of
  700 to 1,500 tokens, so RoPE is exercised far past a few hundred positions.

Usage (`make fixtures` runs it):
    .venv-fixtures/bin/python scripts/fixtures_gte.py --llama-cpp-src DIR [--out-dir DIR]

`--llama-cpp-src` is the patched llama.cpp tree (`make fixtures` patches it). The output is
deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import XLMRobertaTokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"
TOKENIZER_FILES = ("sentencepiece.bpe.model", "tokenizer.json", "tokenizer_config.json")

CHECKPOINT_DIR = "gte-tiny-checkpoint"
GGUF_NAME = "gte-tiny-f32.gguf"
LLAMABOX_GGUF = "gte-tiny-llamabox-f32.gguf"
REFERENCE_JSON = "gte-tiny.reference.json"

SEED = 0
HIDDEN, HEADS, LAYERS, INTERMEDIATE = 128, 2, 2, 192
VOCAB_ROWS = 1010  # the tokenizer has 1,002 ids; the real model pads 250,002 to 250,048
INITIALIZER_RANGE = 0.15

CONFIG: dict[str, Any] = {
    "architectures": ["NewForSequenceClassification"],
    "auto_map": {
        "AutoConfig": "Alibaba-NLP/new-impl--configuration.NewConfig",
        "AutoModel": "Alibaba-NLP/new-impl--modeling.NewModel",
        "AutoModelForSequenceClassification": "Alibaba-NLP/new-impl--modeling.NewForSequenceClassification",
    },
    "classifier_dropout": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": HIDDEN,
    "id2label": {"0": "LABEL_0"},
    "initializer_range": INITIALIZER_RANGE,
    "intermediate_size": INTERMEDIATE,
    "label2id": {"LABEL_0": 0},
    "layer_norm_eps": 1e-12,
    "layer_norm_type": "layer_norm",
    "logn_attention_clip1": False,
    "logn_attention_scale": False,
    "max_position_embeddings": 8192,
    "model_type": "new",
    "num_attention_heads": HEADS,
    "num_hidden_layers": LAYERS,
    "pack_qkv": True,
    "pad_token_id": 1,
    "position_embedding_type": "rope",
    "rope_scaling": {"factor": 8.0, "type": "ntk"},
    "rope_theta": 20000,
    "torch_dtype": "float32",
    "type_vocab_size": 1,
    "unpad_inputs": False,
    "use_memory_efficient_attention": False,
    "vocab_size": VOCAB_ROWS,
}

WORDS = ("the capital city of france is paris berlin is in germany rivers flow to the sea a reranker "
         "orders documents by relevance to the query llamas live in the andes mountains").split()


def weights() -> dict[str, torch.Tensor]:
    """Random weights under the checkpoint's own names (`new.` prefix, as the real file)."""
    g = torch.Generator().manual_seed(SEED)

    def normal(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * INITIALIZER_RANGE

    def norm(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return 1 + 0.1 * torch.randn(n, generator=g), 0.1 * torch.randn(n, generator=g)

    w: dict[str, torch.Tensor] = {
        "new.embeddings.word_embeddings.weight": normal(VOCAB_ROWS, HIDDEN),
        "new.embeddings.token_type_embeddings.weight": normal(1, HIDDEN),
    }
    w["new.embeddings.LayerNorm.weight"], w["new.embeddings.LayerNorm.bias"] = norm(HIDDEN)
    for i in range(LAYERS):
        p = f"new.encoder.layer.{i}."
        w[p + "attention.qkv_proj.weight"] = normal(3 * HIDDEN, HIDDEN)
        w[p + "attention.qkv_proj.bias"] = normal(3 * HIDDEN)
        w[p + "attention.o_proj.weight"] = normal(HIDDEN, HIDDEN)
        w[p + "attention.o_proj.bias"] = normal(HIDDEN)
        w[p + "attn_ln.weight"], w[p + "attn_ln.bias"] = norm(HIDDEN)
        w[p + "mlp.up_gate_proj.weight"] = normal(2 * INTERMEDIATE, HIDDEN)
        w[p + "mlp.down_proj.weight"] = normal(HIDDEN, INTERMEDIATE)
        w[p + "mlp.down_proj.bias"] = normal(HIDDEN)
        w[p + "mlp_ln.weight"], w[p + "mlp_ln.bias"] = norm(HIDDEN)
    w["new.pooler.dense.weight"] = normal(HIDDEN, HIDDEN)
    w["new.pooler.dense.bias"] = normal(HIDDEN)
    w["classifier.weight"] = normal(1, HIDDEN)
    w["classifier.bias"] = normal(1)
    return {k: v.contiguous() for k, v in w.items()}


def reference_logit(w: dict[str, torch.Tensor], ids: list[int]) -> float:
    """NewForSequenceClassification's logit for one pair, in float64, from the description above."""
    W = {k: v.double() for k, v in w.items()}
    eps = CONFIG["layer_norm_eps"]
    d = HIDDEN // HEADS

    def ln(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (HIDDEN,), W[name + ".weight"], W[name + ".bias"], eps)

    def linear(x: torch.Tensor, name: str, bias: bool = True) -> torch.Tensor:
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if bias else y

    factor = CONFIG["rope_scaling"]["factor"]
    base = CONFIG["rope_theta"] * factor
    inv_freq = 1.0 / base ** (torch.arange(0, d, 2, dtype=torch.float64) / d) / factor ** (2 / d)
    angles = torch.outer(torch.arange(len(ids), dtype=torch.float64), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

    def rope(x: torch.Tensor) -> torch.Tensor:  # x: (n, heads, d); rotate_half
        half = torch.cat([-x[..., d // 2:], x[..., :d // 2]], -1)
        return x * cos[:, None, :] + half * sin[:, None, :]

    x = W["new.embeddings.word_embeddings.weight"][ids] + W["new.embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "new.embeddings.LayerNorm")
    n = len(ids)
    for i in range(LAYERS):
        p = f"new.encoder.layer.{i}."
        q, k, v = linear(x, p + "attention.qkv_proj").split(HIDDEN, -1)
        q, k, v = (t.reshape(n, HEADS, d) for t in (q, k, v))
        q, k = rope(q), rope(k)
        attn = torch.softmax(torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d), -1)
        o = torch.einsum("hqk,khd->qhd", attn, v).reshape(n, HIDDEN)
        x = ln(x + linear(o, p + "attention.o_proj"), p + "attn_ln")
        up, gate = linear(x, p + "mlp.up_gate_proj", bias=False).split(INTERMEDIATE, -1)
        h = linear(up * torch.nn.functional.gelu(gate), p + "mlp.down_proj")
        x = ln(x + h, p + "mlp_ln")
    pooled = torch.tanh(linear(x[0], "new.pooler.dense"))
    return float(linear(pooled, "classifier")[0])


def sentence(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(rng.choice(WORDS, n_words))


def cases() -> list[dict[str, Any]]:
    rng = np.random.default_rng(SEED)
    return [
        {"name": "short", "query": "what is the capital of france?",
         "documents": ["paris is the capital of france", "berlin is in germany",
                       "rivers flow to the sea", "llamas live in the andes"]},
        {"name": "multilingual", "query": "où vivent les lamas ?",
         "documents": ["llamas live in the andes mountains", "la capitale de la france est paris"]},
        {"name": "long", "query": "which documents talk about the andes?",
         "documents": [sentence(rng, n) for n in (400, 600, 800)]},
    ]


def convert(llama_cpp_src: Path, checkpoint: Path, out: Path) -> None:
    subprocess.run([sys.executable, str(llama_cpp_src / "convert_hf_to_gguf.py"), str(checkpoint),
                    "--outfile", str(out), "--outtype", "f32"], check=True)


def llamabox_copy(src: Path, dst: Path) -> None:
    """The converted file as llama-box's converter lays it out: architecture `new`, the FFN's up
    and gate rows fused in one `ffn_up`, and its freq_base (theta * factor ** (d / (d - 1)), no
    linear factor)."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, "new")
    d = HIDDEN // HEADS
    factor = CONFIG["rope_scaling"]["factor"]
    for field in reader.fields.values():
        key = field.name
        if key.startswith("GGUF.") or key in ("general.architecture", "gte.rope.scaling.factor"):
            continue
        value = field.contents()
        new_key = "new." + key[4:] if key.startswith("gte.") else key
        if new_key == "new.rope.freq_base":
            value = CONFIG["rope_theta"] * factor ** (d / (d - 1))
        writer.add_key_value(new_key, value, field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    for name, data in tensors.items():
        if ".ffn_gate." in name:
            continue
        if ".ffn_up." in name:
            data = np.concatenate([data, tensors[name.replace("ffn_up", "ffn_gate")]], axis=0)
        writer.add_tensor(name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(out_dir: Path, llama_cpp_src: Path) -> None:
    xlmr = out_dir / "xlmr-tiny-checkpoint"
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(xlmr))
    w = weights()
    ckpt = out_dir / CHECKPOINT_DIR
    shutil.rmtree(ckpt, ignore_errors=True)
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps(CONFIG, indent=2) + "\n")
    save_file(w, str(ckpt / "model.safetensors"), metadata={"format": "pt"})
    for name in TOKENIZER_FILES:
        shutil.copy(xlmr / name, ckpt / name)

    with tempfile.TemporaryDirectory() as tmp:
        # the converter names the file's model after its folder
        named = Path(tmp) / "gte-tiny"
        shutil.copytree(ckpt, named)
        convert(llama_cpp_src, named, out_dir / GGUF_NAME)
    llamabox_copy(out_dir / GGUF_NAME, out_dir / LLAMABOX_GGUF)

    reference = {"generator": f"scripts/fixtures_gte.py (torch {torch.__version__}, float64 forward)",
                 "cases": []}
    for c in cases():
        ids = [tokenizer(c["query"], doc)["input_ids"] for doc in c["documents"]]
        reference["cases"].append({**c, "token_ids": ids, "lengths": [len(i) for i in ids],
                                   "logits": [reference_logit(w, i) for i in ids]})
        print(c["name"], [len(i) for i in ids], [round(x, 4) for x in reference["cases"][-1]["logits"]])
    (out_dir / REFERENCE_JSON).write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp-src", type=Path, required=True)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args()
    build(args.out_dir, args.llama_cpp_src)
    return 0


if __name__ == "__main__":
    sys.exit(main())
