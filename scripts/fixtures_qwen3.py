"""Generate a tiny Qwen3-Reranker fixture and its transformers reference scores.

Qwen3-Reranker is not a cross-encoder with a score head: it is a causal LM
that is asked "does the Document meet the requirements? yes/no" and the score
is P("yes") at the last position. llama.cpp supports it only when the GGUF was
made by the official converter, which detects the reranker, keeps the "yes"
and "no" rows of the LM head as `cls.output.weight`, records RANK pooling and
stores the prompt as the `rerank` chat template. Community GGUFs converted as
a plain causal LM lack all three. The service's tests need both kinds, and a
reference computed the way the Qwen3-Reranker model card does, without torch
or network at test time. This script (run once, in a venv with torch,
transformers, tokenizers and gguf; offline) writes to `tests/fixtures/`:

* `qwen3-tiny-f16.gguf`: random-weight `Qwen3ForCausalLM`, 2 layers of width
  16, with the real Qwen2/Qwen3 byte-level BPE tokenizer, converted by
  llama.cpp's `convert_hf_to_gguf.py` from a directory it detects as a
  Qwen3-Reranker (so it has `cls.output.weight`, RANK pooling and
  `tokenizer.chat_template.rerank`).
* `qwen3-tiny-nohead-f16.gguf`: the same checkpoint converted as a plain
  causal LM, like the broken community conversions.
* `qwen3-tiny-checkpoint/`: the Hugging Face checkpoint of the no-head copy
  (no README, a neutral name), which the tests serve from a stand-in hub for
  the service to convert: the converter must recognise it as a reranker from
  the repository's name alone, as with Qwen/Qwen3-Reranker-4B. Matrices are
  stored in f16 (the f16 conversion rounds them so anyway), vectors in f32,
  and tokenizer.json without indentation, to keep the fixture small.
* `qwen3-tiny.reference.json`: P(yes) for several (instruction, query,
  documents) cases computed in fp32 by transformers, with the token counts and
  the first pair's token ids.

The tokenizer is the real one, taken from `models/ggml-vocab-qwen2.gguf` in the
llama.cpp tree (no hub download): it lacks the special tokens Qwen2.5/Qwen3
added after `<|im_end|>` (`<think>`, `</think>`, tool and vision markers), so
they are added at Qwen3's ids (151646-151668) with Qwen3's special flags, and
the NFC normalizer and byte-level post-processor of Qwen's `tokenizer.json` are
restored. Ids of all text tokens are Qwen3's.

Usage:
    .venv-fixtures/bin/python scripts/fixtures_qwen3.py --llama-cpp-src DIR \
        [--out-dir DIR] [--work-dir DIR] [--check-python .venv/bin/python]
    .venv/bin/python scripts/fixtures_qwen3.py --check [--out-dir DIR]

`--check` (in a venv with llama-cpp-python, no torch needed) scores every
reference pair through llama.cpp's RANK pooling with flash attention off and
on, and compares token ids and scores with the reference. `--check-python`
runs that check right after building and also compares every pair's token ids
with the transformers ones. The output is deterministic: a rerun gives the
same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the heavy imports are only needed to build, not to --check
    import torch
    from transformers import PreTrainedTokenizerBase, Qwen3ForCausalLM

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"

RERANKER_GGUF = "qwen3-tiny-f16.gguf"
NOHEAD_GGUF = "qwen3-tiny-nohead-f16.gguf"
REFERENCE_JSON = "qwen3-tiny.reference.json"
CHECKPOINT_DIR = "qwen3-tiny-checkpoint"

# The converter recognises a reranker by this README heading or by
# "qwen3-reranker" in the directory name; the no-head copy avoids both.
RERANKER_DIR_NAME = "Qwen3-Reranker-tiny-random"
NOHEAD_DIR_NAME = "qwen3-tiny-random-causal"

VOCAB_GGUF = Path("models") / "ggml-vocab-qwen2.gguf"
N_CTX = 512
SCORE_TOLERANCE = 1e-3
MIN_SCORE_GAP = 0.01
# Random weights. The values were picked by simulating llama.cpp's f16
# rounding in transformers (see build_model and align_yes_no_head).
WEIGHTS_SEED = 2
EMBED_STD = 1.0
ATTN_STD = 0.15
MLP_STD = 0.05
# q_norm/k_norm gain: how peaked attention is.
QK_NORM_GAIN = 1.5
# Final norm gain: scales the yes-minus-no logit, hence how far P(yes) spreads.
HEAD_GAIN = 1.3
# Relative jitter of every RMSNorm weight, so a skipped norm changes scores.
NORM_JITTER = 0.1

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
# The prompt of the Qwen3-Reranker model card, which is also the `rerank`
# template that conversion/qwen.py writes (with the default instruction).
PROMPT_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct"
    ' provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
PROMPT_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
PAIR_FORMAT = "<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"

# Qwen3's tokens after <|im_end|> (151645): (content, special). The
# non-special ones are still matched as single tokens by both libraries.
QWEN3_EXTRA_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)
ENDOFTEXT_ID = 151643
IM_END_ID = 151645
FIRST_EXTRA_ID = 151646
# Qwen3's config pads the embedding beyond the 151669 tokenizer entries; the
# converter fills the gap with [PAD] tokens, as in real Qwen3 GGUFs.
MODEL_VOCAB_SIZE = 151936
SINGLE_TOKENS = ("<|im_start|>", "<|im_end|>", "<think>", "</think>", "yes", "no")


@dataclass(frozen=True)
class Case:
    """A rerank request whose transformers scores become the reference.

    `instruction` None means the model card's default instruction, which is
    also the one baked into the GGUF's rerank template.
    """

    name: str
    instruction: str | None
    query: str
    documents: list[str]


PANDA_DOCUMENTS = [
    "hi",
    "it is a bear",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda,"
    " is a bear species endemic to China.",
]

CASES = [
    Case("default", None, "What is a panda?", PANDA_DOCUMENTS),
    Case("instruction", "Given a question about animals, find the passage that answers it", "What is a panda?",
         PANDA_DOCUMENTS),
    Case(
        "many",
        None,
        "Where do giant pandas live?",
        [
            "Pandas live in the mountains of central China.",
            "Bamboo grows fast.",
            "The polar bear lives on sea ice.",
            "The library closes at six.",
            "Sichuan has many bamboo forests.",
            "A red panda is not a bear.",
            "Python is a programming language.",
            "The fox jumps over the dog.",
            "Giant pandas eat bamboo shoots and leaves.",
            "Light rain after noon.",
            "Gansu and Shaanxi are neighbouring provinces.",
            "Eight species of bears are extant.",
        ],
    ),
    Case(
        "unicode",
        None,
        "¿Qué come el oso panda?",
        [
            "El panda gigante come bambú casi todo el día.",
            "熊猫是中国的国宝，它们吃竹子。",
            "ジャイアントパンダは主に竹を食べます。",
            "Der Große Panda schläft gern — naïve café façade.",
            "Большая панда ест бамбук 🐼🎋",
        ],
    ),
]


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------


def load_vocab_tokenizer(llama_cpp_src: Path) -> PreTrainedTokenizerBase:
    """Read the Qwen2 BPE tokenizer that llama.cpp ships for its vocab tests."""
    from transformers import AutoTokenizer

    vocab = llama_cpp_src / VOCAB_GGUF
    return AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)


def qwen3_tokenizer_json(vocab_tokenizer: PreTrainedTokenizerBase) -> dict[str, Any]:
    """Turn the GGUF-derived tokenizer into Qwen3's `tokenizer.json` layout.

    The GGUF has [PAD] placeholders from id 151646 on and puts the specials in
    the BPE vocab; Qwen3 keeps only text tokens in the vocab and lists the
    specials (with their `special` flags) as added tokens. The normalizer and
    post-processor are the ones Qwen ships (the GGUF cannot record them).
    """
    data = json.loads(vocab_tokenizer.backend_tokenizer.to_str())
    vocab: dict[str, int] = data["model"]["vocab"]
    data["model"]["vocab"] = {token: i for token, i in vocab.items() if i < ENDOFTEXT_ID}
    head = [token for token in data["added_tokens"] if token["id"] <= IM_END_ID]
    if [token["content"] for token in head] != ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]:
        raise RuntimeError(f"unexpected special tokens in {VOCAB_GGUF}: {head}")
    extra = [
        {"id": FIRST_EXTRA_ID + i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": special}
        for i, (content, special) in enumerate(QWEN3_EXTRA_TOKENS)
    ]
    data["added_tokens"] = head + extra
    data["normalizer"] = {"type": "NFC"}
    data["post_processor"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                              "use_regex": False}
    data["decoder"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    return data


def qwen3_tokenizer_config() -> dict[str, Any]:
    """Return Qwen3-Reranker's `tokenizer_config.json` minus the chat template."""
    decoder = {
        str(FIRST_EXTRA_ID + i): {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                                  "single_word": False, "special": special}
        for i, (content, special) in enumerate(QWEN3_EXTRA_TOKENS)
    }
    for i, content in enumerate(("<|endoftext|>", "<|im_start|>", "<|im_end|>")):
        decoder[str(ENDOFTEXT_ID + i)] = {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
                                          "single_word": False, "special": True}
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": dict(sorted(decoder.items())),
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def build_tokenizer(llama_cpp_src: Path, tok_dir: Path) -> PreTrainedTokenizerBase:
    """Write a Qwen3 tokenizer into `tok_dir` and load it back as transformers does."""
    from transformers import AutoTokenizer

    tok_dir.mkdir(parents=True, exist_ok=True)
    data = qwen3_tokenizer_json(load_vocab_tokenizer(llama_cpp_src))
    (tok_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (tok_dir / "tokenizer_config.json").write_text(json.dumps(qwen3_tokenizer_config(), indent=2), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    check_tokenizer(tokenizer, llama_cpp_src)
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, llama_cpp_src: Path) -> None:
    """Fail unless the tokenizer is Qwen's: llama.cpp's own expected ids, Qwen3's specials.

    `ggml-vocab-qwen2.gguf.inp/.out` are llama.cpp's tokenizer test strings and
    the ids the real Qwen2 tokenizer gives them.
    """
    vocab = llama_cpp_src / VOCAB_GGUF
    texts = vocab.with_suffix(".gguf.inp").read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n")
    expected = vocab.with_suffix(".gguf.out").read_text(encoding="utf-8").split("\n")
    for text, ids in zip(texts, expected, strict=True):
        got = tokenizer.encode(text, add_special_tokens=False)
        if got != [int(i) for i in ids.split()]:
            raise RuntimeError(f"tokenizer differs from llama.cpp's expected ids for {text!r}: {got} != {ids}")
    if len(tokenizer) != FIRST_EXTRA_ID + len(QWEN3_EXTRA_TOKENS):
        raise RuntimeError(f"unexpected tokenizer size {len(tokenizer)}")
    for token in SINGLE_TOKENS:
        if len(tokenizer.encode(token, add_special_tokens=False)) != 1:
            raise RuntimeError(f"{token!r} is not a single token")
    if tokenizer.convert_tokens_to_ids("<think>") != 151667 or tokenizer.convert_tokens_to_ids("yes") != 9693:
        raise RuntimeError("token ids differ from Qwen3's")


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


def model_config(tokenizer: PreTrainedTokenizerBase) -> Any:
    """Tiny Qwen3-Reranker-0.6B-shaped config: GQA, q/k norms, tied embeddings."""
    from transformers import Qwen3Config

    return Qwen3Config(
        vocab_size=MODEL_VOCAB_SIZE,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=N_CTX,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        attn_implementation="eager",
    )


def build_model(tokenizer: PreTrainedTokenizerBase) -> Qwen3ForCausalLM:
    """Create the seeded random model with weights llama.cpp's f16 stores exactly.

    Parameters are drawn here from one seeded generator, in name order, rather
    than by transformers' initialiser, so the weights do not depend on the
    transformers version. Norm weights are jittered, so a norm that is skipped
    or misplaced changes the scores. Every value is rounded to f16: the f16
    GGUF then holds exactly the weights the reference used.

    What remains is llama.cpp's own f16 arithmetic (it rounds the K/V cache
    and every matmul input to f16, flash attention or not), about 3e-4
    relative per step, which a random network amplifies: with std 0.5
    everywhere and a random yes/no head, P(yes) moved by up to 6e-3. A small
    MLP keeps the network calm while the documents still move the last hidden
    state a lot; the seed and HEAD_GAIN were picked by simulating the rounding
    in transformers, so that P(yes) is spread within every case while
    llama.cpp stays within SCORE_TOLERANCE.
    """
    import torch
    from transformers import Qwen3ForCausalLM

    model = Qwen3ForCausalLM(model_config(tokenizer)).eval()
    generator = torch.Generator().manual_seed(WEIGHTS_SEED)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            param.copy_(_init_value(name, noise).half().float())
    if model.lm_head.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError("lm_head is not tied to the embeddings")
    return model


def _init_value(name: str, noise: torch.Tensor) -> torch.Tensor:
    """Scale standard normal noise for the parameter called `name`."""
    if name.endswith("norm.weight"):
        gain = QK_NORM_GAIN if ("q_norm" in name or "k_norm" in name) else 1.0
        if name == "model.norm.weight":
            gain = HEAD_GAIN
        return gain * (1.0 + NORM_JITTER * noise)
    if "embed_tokens" in name:
        return EMBED_STD * noise
    if "self_attn" in name:
        return ATTN_STD * noise
    if "mlp" in name:
        return MLP_STD * noise
    raise RuntimeError(f"no initialisation rule for {name}")


def last_hidden_states(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerBase) -> torch.Tensor:
    """Final-norm hidden state at the last position of every fixture pair."""
    import torch

    states = []
    with torch.no_grad():
        for case in CASES:
            for doc in case.documents:
                ids = pair_ids(tokenizer, case.instruction, case.query, doc)
                states.append(model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1])
    return torch.stack(states)


def align_yes_no_head(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerBase) -> None:
    """Point the yes-minus-no direction of the (tied) head where documents differ.

    P(yes) = sigmoid((w_yes - w_no) . h). With random rows that direction
    mostly sees the rounding noise and little of the document-to-document
    variation of h; along the main axis of that variation the signal is about
    2.5 times larger for the same noise. So the "yes" and "no" rows keep their
    midpoint and distance and are turned along that axis (sign fixed so the
    result does not depend on the SVD routine). They are also input tokens of
    the system prompt; the reference is computed after this change, so it
    only has to make the scores spread, not be exact.
    """
    import torch

    states = last_hidden_states(model, tokenizer)
    axis = torch.linalg.svd(states - states.mean(0), full_matrices=False).Vh[0]
    axis = axis * torch.sign(axis[axis.abs().argmax()])
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    embed = model.get_input_embeddings().weight
    with torch.no_grad():
        middle, half = (embed[yes] + embed[no]) / 2, (embed[yes] - embed[no]).norm() / 2
        embed[yes] = (middle + half * axis).half().float()
        embed[no] = (middle - half * axis).half().float()


def save_checkpoint(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerBase, ckpt_dir: Path,
                    reranker: bool) -> None:
    """Save a checkpoint the converter reads, detected as a reranker or not.

    Detection looks at the directory name, `_name_or_path` and the README, so
    the no-head copy has a neutral name, no README and no `_name_or_path`.
    """
    model.save_pretrained(ckpt_dir)
    tokenizer.save_pretrained(ckpt_dir)
    config_path = ckpt_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("_name_or_path", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if reranker:
        (ckpt_dir / "README.md").write_text(
            "# Qwen3-Reranker tiny random\n\nRandom weights for tests; shaped like Qwen3-Reranker-0.6B.\n",
            encoding="utf-8",
        )


def save_served_checkpoint(src: Path, dst: Path) -> None:
    """Copy a checkpoint for the stand-in hub, at about half its size (see the module docstring)."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name in ("config.json", "generation_config.json", "tokenizer_config.json"):
        shutil.copyfile(src / name, dst / name)
    tensors = load_file(src / "model.safetensors")
    save_file({name: t.half() if t.dim() > 1 else t for name, t in tensors.items()}, dst / "model.safetensors",
              metadata={"format": "pt"})
    tokenizer = json.loads((src / "tokenizer.json").read_text(encoding="utf-8"))
    (dst / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False, separators=(",", ":")),
                                        encoding="utf-8")


# --------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------


def gguf_summary(path: Path) -> dict[str, Any]:
    """Return what distinguishes a reranker GGUF: cls head, pooling, rerank template."""
    import gguf

    reader = gguf.GGUFReader(path)
    pooling = reader.get_field("qwen3.pooling_type")
    template = reader.get_field("tokenizer.chat_template.rerank")
    return {
        "tensors": {tensor.name: tensor.tensor_type.name for tensor in reader.tensors},
        "pooling_type": int(pooling.contents()) if pooling else None,
        "rerank_template": template.contents() if template else None,
        "pre": reader.get_field("tokenizer.ggml.pre").contents(),
    }


def check_ggufs(rerank_path: Path, nohead_path: Path) -> None:
    """Fail unless the converter made one reranker and one plain causal LM."""
    import gguf

    rerank, nohead = gguf_summary(rerank_path), gguf_summary(nohead_path)
    expected_template = PROMPT_PREFIX + PAIR_FORMAT.format(
        instruction=DEFAULT_INSTRUCTION, query="{query}", doc="{document}") + PROMPT_SUFFIX
    if "cls.output.weight" not in rerank["tensors"] or rerank["pooling_type"] != int(gguf.PoolingType.RANK):
        raise RuntimeError(f"{rerank_path.name} was not converted as a reranker")
    if rerank["rerank_template"] != expected_template:
        raise RuntimeError(f"{rerank_path.name} has an unexpected rerank template: {rerank['rerank_template']!r}")
    if "cls.output.weight" in nohead["tensors"] or nohead["rerank_template"] is not None or nohead["pooling_type"]:
        raise RuntimeError(f"{nohead_path.name} was converted as a reranker")
    for summary in (rerank, nohead):
        if summary["pre"] != "qwen2" or summary["tensors"]["token_embd.weight"] != "F16":
            raise RuntimeError(f"unexpected GGUF: {summary['pre']}, {summary['tensors']['token_embd.weight']}")


# --------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------


def pair_text(instruction: str | None, query: str, document: str) -> str:
    """Build the full prompt of one pair as the Qwen3-Reranker model card does."""
    middle = PAIR_FORMAT.format(instruction=instruction or DEFAULT_INSTRUCTION, query=query, doc=document)
    return PROMPT_PREFIX + middle + PROMPT_SUFFIX


def pair_ids(tokenizer: PreTrainedTokenizerBase, instruction: str | None, query: str, document: str) -> list[int]:
    """Tokenize a pair, checking that the model card's piecewise way agrees.

    The model card tokenizes prefix, pair and suffix separately and joins the
    ids; llama.cpp tokenizes the whole filled-in template. Both must match.
    """
    ids = tokenizer.encode(pair_text(instruction, query, document), add_special_tokens=False)
    middle = PAIR_FORMAT.format(instruction=instruction or DEFAULT_INSTRUCTION, query=query, doc=document)
    pieces = [tokenizer.encode(text, add_special_tokens=False) for text in (PROMPT_PREFIX, middle, PROMPT_SUFFIX)]
    if ids != pieces[0] + pieces[1] + pieces[2]:
        raise RuntimeError(f"whole and piecewise tokenization differ for {document!r}")
    return ids


def p_yes(model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> float:
    """P(yes) = softmax([logit_yes, logit_no])[0] at the last position, in fp32."""
    import torch

    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
    return torch.softmax(torch.stack([logits[yes], logits[no]]), dim=0)[0].item()


def score_case(
    model: Qwen3ForCausalLM, tokenizer: PreTrainedTokenizerBase, case: Case, all_ids: list[list[int]]
) -> dict[str, Any]:
    """Score every document of a case and record what the service must reproduce.

    Every two documents must differ by MIN_SCORE_GAP, far more than
    SCORE_TOLERANCE, so a service that mixes up documents cannot pass.
    """
    if max(len(ids) for ids in all_ids) > N_CTX:
        raise RuntimeError(f"case {case.name} does not fit in {N_CTX} tokens")
    scores = [p_yes(model, tokenizer, ids) for ids in all_ids]
    ordered = sorted(scores)
    if min(b - a for a, b in zip(ordered, ordered[1:])) < MIN_SCORE_GAP:
        raise RuntimeError(f"case {case.name}: scores closer than {MIN_SCORE_GAP}: {scores};"
                           " retune WEIGHTS_SEED / HEAD_GAIN")
    return {
        "name": case.name,
        "instruction": case.instruction,
        "query": case.query,
        "documents": case.documents,
        "scores": scores,
        "pair_tokens": [len(ids) for ids in all_ids],
        "first_pair_ids": all_ids[0],
    }


def generator_string(llama_cpp_src: Path) -> str:
    """Name the script and the versions that produced the reference."""
    import tokenizers
    import torch
    import transformers

    gguf_py = (llama_cpp_src / "gguf-py" / "pyproject.toml").read_text(encoding="utf-8")
    gguf_version = next(line.split('"')[1] for line in gguf_py.splitlines() if line.startswith("version"))
    return (f"scripts/fixtures_qwen3.py (transformers {transformers.__version__}, torch {torch.__version__},"
            f" tokenizers {tokenizers.__version__}, llama.cpp convert_hf_to_gguf.py with gguf-py {gguf_version})")


# --------------------------------------------------------------------------
# Build
# --------------------------------------------------------------------------


def build(out_dir: Path, llama_cpp_src: Path, work_dir: Path | None = None) -> None:
    """Write the two GGUFs and the reference into `out_dir`.

    `work_dir` keeps the tokenizer and the two Hugging Face checkpoints (by
    default they go to a temporary directory).
    """
    build_fixtures(out_dir, llama_cpp_src, work_dir)


def build_fixtures(out_dir: Path, llama_cpp_src: Path, work_dir: Path | None = None) -> list[list[list[int]]]:
    """Do build()'s work; return every pair's transformers token ids, per case.

    The JSON only keeps the first pair's ids; the full lists let the
    --check-python step compare all of them with llama.cpp's.
    """
    import torch
    from make_fixtures import convert  # beside this script; imports torch, so not at the top

    torch.set_num_threads(1)  # same reductions, same bits, on every run
    llama_cpp_src = llama_cpp_src.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qwen3fx-") as tmp:
        work = Path(work_dir or tmp)
        tokenizer = build_tokenizer(llama_cpp_src, work / "tokenizer")
        model = build_model(tokenizer)
        align_yes_no_head(model, tokenizer)
        all_ids = [[pair_ids(tokenizer, case.instruction, case.query, doc) for doc in case.documents]
                   for case in CASES]
        reference = {
            "model": RERANKER_GGUF,
            "generator": generator_string(llama_cpp_src),
            "default_instruction": DEFAULT_INSTRUCTION,
            "cases": [score_case(model, tokenizer, case, ids) for case, ids in zip(CASES, all_ids)],
        }
        rerank_dir, nohead_dir = work / RERANKER_DIR_NAME, work / NOHEAD_DIR_NAME
        save_checkpoint(model, tokenizer, rerank_dir, reranker=True)
        save_checkpoint(model, tokenizer, nohead_dir, reranker=False)
        convert(llama_cpp_src, rerank_dir, out_dir / RERANKER_GGUF, outtype="f16")
        convert(llama_cpp_src, nohead_dir, out_dir / NOHEAD_GGUF, outtype="f16")
        save_served_checkpoint(nohead_dir, out_dir / CHECKPOINT_DIR)
    check_ggufs(out_dir / RERANKER_GGUF, out_dir / NOHEAD_GGUF)
    text = json.dumps(reference, indent=2, ensure_ascii=False) + "\n"
    (out_dir / REFERENCE_JSON).write_text(text, encoding="utf-8")
    return all_ids


# --------------------------------------------------------------------------
# Check with llama.cpp (runs where llama-cpp-python is installed; no torch)
# --------------------------------------------------------------------------


_QUIET_LOG: Any = None


def llama_tokenize(llama_cpp: Any, vocab: Any, text: str) -> list[int]:
    """Tokenize like llama-server's rerank path: add_special=False, parse_special=True."""
    data = text.encode("utf-8")
    buf = (llama_cpp.llama_token * (len(data) + 16))()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, len(buf), False, True)
    if n < 0:
        raise RuntimeError(f"tokenization failed for {text!r}")
    return list(buf[:n])


def llama_template_prompt(template: str, instruction: str | None, query: str, document: str) -> str:
    """Fill the GGUF's rerank template as llama-server's format_prompt_rerank does.

    The template has the default instruction baked in; a custom instruction
    replaces it (which is how a server can support one).
    """
    prompt = template.replace(DEFAULT_INSTRUCTION, instruction or DEFAULT_INSTRUCTION)
    return prompt.replace("{query}", query).replace("{document}", document)


def llama_scores(gguf_path: Path, reference: dict[str, Any], flash_attn: bool) -> dict[str, Any]:
    """Score every reference pair with RANK pooling, one pair per decode."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    model_params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), model_params)
    if not model:
        raise RuntimeError(f"cannot load {gguf_path}")
    ctx_params = llama_cpp.llama_context_default_params()
    ctx_params.n_ctx = ctx_params.n_batch = ctx_params.n_ubatch = N_CTX
    ctx_params.embeddings = True
    ctx_params.pooling_type = llama_cpp.LLAMA_POOLING_TYPE_RANK
    ctx_params.flash_attn_type = (llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED)
    ctx_params.n_threads = ctx_params.n_threads_batch = 2
    ctx = llama_cpp.llama_init_from_model(model, ctx_params)
    vocab = llama_cpp.llama_model_get_vocab(model)
    template = llama_cpp.llama_model_chat_template(model, b"rerank").decode("utf-8")
    batch = llama_cpp.llama_batch_init(N_CTX, 0, 1)
    cases = []
    try:
        for case in reference["cases"]:
            scores, ids_list = [], []
            for document in case["documents"]:
                ids = llama_tokenize(llama_cpp, vocab, llama_template_prompt(
                    template, case["instruction"], case["query"], document))
                batch.n_tokens = len(ids)
                for i, token in enumerate(ids):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, i, 1
                    batch.seq_id[i][0], batch.logits[i] = 0, True
                llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx), True)
                if llama_cpp.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")
                scores.append(float(llama_cpp.llama_get_embeddings_seq(ctx, 0)[0]))
                ids_list.append(ids)
            cases.append({"name": case["name"], "scores": scores, "ids": ids_list})
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_free(ctx)
        llama_cpp.llama_model_free(model)
    return {"flash_attn": flash_attn, "cases": cases}


def classifier_facts(gguf_path: Path) -> dict[str, Any]:
    """What a loader sees: classifier outputs and their labels, rerank template.

    llama.cpp reports one classifier output even for models without one, so
    the labels ("yes", "no" for a converted Qwen3-Reranker) are what tell.
    """
    import llama_cpp

    model = llama_cpp.llama_model_load_from_file(str(gguf_path).encode(), llama_cpp.llama_model_default_params())
    try:
        n_cls_out = int(llama_cpp.llama_model_n_cls_out(model))
        labels = [llama_cpp.llama_model_cls_label(model, i) for i in range(n_cls_out)]
        return {
            "n_cls_out": n_cls_out,
            "cls_labels": [label.decode() if label else None for label in labels],
            "rerank_template": llama_cpp.llama_model_chat_template(model, b"rerank") is not None,
        }
    finally:
        llama_cpp.llama_model_free(model)


def check(out_dir: Path) -> dict[str, Any]:
    """Score the reference pairs with llama.cpp, flash attention off and on.

    Returns llama.cpp's token ids and scores plus the largest score delta; the
    caller decides what to compare (token counts and the first pair's ids are
    all the reference JSON holds).
    """
    import llama_cpp

    global _QUIET_LOG
    # ctypes only keeps the callback alive while Python holds a reference to it.
    _QUIET_LOG = llama_cpp.llama_log_callback(lambda level, text, data: None)
    llama_cpp.llama_log_set(_QUIET_LOG, None)
    reference = json.loads((out_dir / REFERENCE_JSON).read_text(encoding="utf-8"))
    runs = [llama_scores(out_dir / reference["model"], reference, flash_attn) for flash_attn in (False, True)]
    problems: list[str] = []
    for run in runs:
        run["max_delta"] = 0.0
        for ref_case, case in zip(reference["cases"], run["cases"], strict=True):
            if [len(ids) for ids in case["ids"]] != ref_case["pair_tokens"]:
                problems.append(f"{case['name']}: token counts differ")
            if case["ids"][0] != ref_case["first_pair_ids"]:
                problems.append(f"{case['name']}: first pair ids differ")
            deltas = [abs(a - b) for a, b in zip(case["scores"], ref_case["scores"], strict=True)]
            run["max_delta"] = max(run["max_delta"], *deltas)
        if run["max_delta"] > SCORE_TOLERANCE:
            problems.append(f"flash_attn={run['flash_attn']}: max |delta| {run['max_delta']:.2e} > {SCORE_TOLERANCE}")
    facts = {name: classifier_facts(out_dir / name) for name in (RERANKER_GGUF, NOHEAD_GGUF)}
    if facts[RERANKER_GGUF] != {"n_cls_out": 2, "cls_labels": ["yes", "no"], "rerank_template": True}:
        problems.append(f"{RERANKER_GGUF} does not look like a Qwen3 reranker: {facts[RERANKER_GGUF]}")
    if facts[NOHEAD_GGUF]["rerank_template"] or any(facts[NOHEAD_GGUF]["cls_labels"]):
        problems.append(f"{NOHEAD_GGUF} looks like a reranker: {facts[NOHEAD_GGUF]}")
    return {"runs": runs, "models": facts, "problems": problems}


def run_check(check_python: Path, out_dir: Path, all_ids: list[list[list[int]]]) -> list[str]:
    """Run --check in another interpreter and compare every pair's token ids too."""
    proc = subprocess.run(
        [str(check_python), str(Path(__file__).resolve()), "--check", "--json", "--out-dir", str(out_dir)],
        check=False, capture_output=True, text=True,
    )
    if not proc.stdout:
        raise RuntimeError(f"check failed: {proc.stderr}")
    result = json.loads(proc.stdout)
    problems = list(result["problems"])
    for run in result["runs"]:
        for ids, case in zip(all_ids, run["cases"], strict=True):
            if case["ids"] != ids:
                problems.append(f"{case['name']}: llama.cpp token ids differ from transformers'")
        print(f"llama.cpp flash_attn={run['flash_attn']}: max |delta| = {run['max_delta']:.3e}")
    for name, facts in result["models"].items():
        print(f"{name}: {facts}")
    return problems


def file_digest(path: Path) -> str:
    """Short sha256, to show that two runs wrote the same bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--llama-cpp-src", type=Path,
                        help="llama.cpp source tree with convert_hf_to_gguf.py, gguf-py/ and models/")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where fixtures are written")
    parser.add_argument("--work-dir", type=Path, help="keep the intermediate checkpoints here (default: a temp dir)")
    parser.add_argument("--check-python", type=Path,
                        help="after building, run --check with this interpreter (it needs llama-cpp-python)")
    parser.add_argument("--check", action="store_true", help="only check the fixtures with llama-cpp-python")
    parser.add_argument("--json", action="store_true", help="with --check: print the full result as JSON")
    args = parser.parse_args()
    if not args.check and args.llama_cpp_src is None:
        parser.error("--llama-cpp-src is required to build")
    return args


def main() -> int:
    """Build (and optionally check) or only check; exit 1 on any problem."""
    args = parse_args()
    if args.check:
        result = check(args.out_dir)
        if args.json:
            print(json.dumps(result))
        else:
            for run in result["runs"]:
                print(f"flash_attn={run['flash_attn']}: max |delta| = {run['max_delta']:.3e}")
            for name, facts in result["models"].items():
                print(f"{name}: {facts}")
            print("\n".join(result["problems"]) or "ok")
        return 1 if result["problems"] else 0
    all_ids = build_fixtures(args.out_dir, args.llama_cpp_src, args.work_dir)
    for name in (RERANKER_GGUF, NOHEAD_GGUF, REFERENCE_JSON):
        path = args.out_dir / name
        print(f"{path}: {path.stat().st_size} bytes, sha256 {file_digest(path)}")
    reference = json.loads((args.out_dir / REFERENCE_JSON).read_text(encoding="utf-8"))
    for case in reference["cases"]:
        print(f"{case['name']}: {[round(score, 4) for score in case['scores']]}")
    if args.check_python:
        problems = run_check(args.check_python, args.out_dir, all_ids)
        print("\n".join(problems) or "llama.cpp check ok")
        return 1 if problems else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
