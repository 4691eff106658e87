"""What a GGUF file says about itself, read before llama.cpp loads it.

Reading the header lets the service refuse a file that is not a reranker with a clear message
instead of letting llama.cpp score it silently wrong, and tells the engine how the vocabulary
lays out a pair. The reader here walks only the header: the `gguf` package's GGUFReader builds
numpy views of every array element and took 4 s on a 1,000-token vocabulary (minutes on the
250,000 tokens of bge-reranker-v2-m3).
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import msgspec

# Tensors that make llama.cpp's rank pooling produce a relevance score:
# `cls.output` for XLM-R and Qwen3 heads, `cls` alone for jina-bert-v2 (no second projection).
RANK_HEAD_TENSORS = ("cls.output.weight", "cls.weight")
# Learned absolute position embeddings, {n_embd, n_ctx_train} in every llama.cpp graph that has them.
POSITION_TABLE = "position_embd.weight"


class GGUFInfo(msgspec.Struct, frozen=True, kw_only=True):
    """The few header facts the service acts on."""

    path: str
    architecture: str
    name: str
    weight_type: str | None
    """The ggml type most weight matrices are stored in (F16, Q8_0, ...)."""
    context_length: int | None
    tokenizer_model: str | None
    pre_tokenizer: str | None
    """llama.cpp's name for the vocabulary's pre-tokenizer (`qwen2`, `jina-v1-en`, `default`...)."""
    add_bos: bool | None
    add_eos: bool | None
    add_sep: bool | None
    unknown_token: int | None
    rerank_template: str | None
    tensors: frozenset[str]

    @property
    def has_rank_head(self) -> bool:
        return any(name in self.tensors for name in RANK_HEAD_TENSORS)

    @property
    def absolute_positions(self) -> bool:
        """A learned position table (BERT, XLM-R) has one row per trained position: a token past
        it makes ggml abort the whole process, so the context may not exceed the trained one."""
        return POSITION_TABLE in self.tensors


class NotAGGUFError(ValueError):
    """The file cannot be read as GGUF."""


def read_gguf_info(path: str | Path) -> GGUFInfo:
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            metadata, tensors, matrix_types, _ = _read_header(data)
    except (ValueError, OSError, struct.error) as exc:
        raise NotAGGUFError(f"{Path(path).name} is not a readable GGUF file ({exc})") from None

    arch = str(metadata.get("general.architecture") or "")
    return GGUFInfo(
        path=str(path),
        architecture=arch,
        name=str(metadata.get("general.name") or Path(path).stem),
        weight_type=_most_common(matrix_types),
        context_length=_int_or_none(metadata.get(f"{arch}.context_length")),
        tokenizer_model=_str_or_none(metadata.get("tokenizer.ggml.model")),
        pre_tokenizer=_str_or_none(metadata.get("tokenizer.ggml.pre")),
        add_bos=_bool_or_none(metadata.get("tokenizer.ggml.add_bos_token")),
        add_eos=_bool_or_none(metadata.get("tokenizer.ggml.add_eos_token")),
        add_sep=_bool_or_none(metadata.get("tokenizer.ggml.add_sep_token")),
        unknown_token=_int_or_none(metadata.get("tokenizer.ggml.unknown_token_id")),
        rerank_template=_str_or_none(metadata.get("tokenizer.chat_template.rerank")),
        tensors=frozenset(tensors),
    )


# GGUF value types: the struct format of each scalar; 8 is a string, 9 an array.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9

# ggml tensor types (enum ggml_type) that model weights are stored in.
GGML_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 10: "Q2_K",
              11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}
# Elements per block and bytes per block of those types (ggml.c, type_traits).
_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
           10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


Rows = tuple[str, list[bytes]]
"""A matrix's stored type and the raw bytes of some of its rows."""


def tensor_rows(path: str | Path, wanted: dict[str, list[int]]) -> dict[str, Rows | None]:
    """For each matrix name, its type and the raw bytes of the wanted rows, in one read of the
    header; None if the file has no such matrix, lacks a row, or stores it in a type whose row
    size is not known here.

    Comparing raw rows tells whether two tensors hold the same weights without dequantising
    them: the converter copies rows, and quantisation of a row depends on that row alone.
    """
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        metadata, tensors, _, end_of_infos = _read_header(data)
        alignment = int(metadata.get("general.alignment") or 32)  # type: ignore[call-overload]
        data_start = -(-end_of_infos // alignment) * alignment
        return {name: _rows(data, data_start, tensors.get(name), rows) for name, rows in wanted.items()}


def _rows(data: mmap.mmap, data_start: int, found: _Tensor | None, rows: list[int]) -> Rows | None:
    if found is None or found.ggml_type not in _BLOCKS or len(found.shape) != 2:
        return None
    if any(not 0 <= r < found.shape[1] for r in rows):
        return None
    block, block_bytes = _BLOCKS[found.ggml_type]
    row_bytes = found.shape[0] // block * block_bytes
    start = data_start + found.offset
    return GGML_TYPES[found.ggml_type], [data[start + r * row_bytes:start + (r + 1) * row_bytes] for r in rows]


class _Tensor(msgspec.Struct, frozen=True):
    ggml_type: int
    shape: tuple[int, ...]
    offset: int
    """From the start of the data section, which follows the tensor infos, aligned."""


def _read_header(data: mmap.mmap) -> tuple[dict[str, object], dict[str, _Tensor], list[str], int]:
    """Scalar and string metadata (arrays are skipped), the tensors, the types of the matrices,
    and where the header ends."""
    if data[:4] != b"GGUF":
        raise ValueError("no GGUF magic")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version < 2:
        raise ValueError(f"GGUF version {version} is too old")
    pos = 24
    metadata: dict[str, object] = {}
    for _ in range(n_kv):
        key, pos = _string(data, pos)
        (kind,), pos = struct.unpack_from("<I", data, pos), pos + 4
        if kind == _ARRAY:
            pos = _skip_array(data, pos)
            continue
        metadata[key], pos = _value(data, pos, kind)
    tensors: dict[str, _Tensor] = {}
    matrix_types = []
    for _ in range(n_tensors):
        name, pos = _string(data, pos)
        (n_dims,) = struct.unpack_from("<I", data, pos)
        shape = struct.unpack_from(f"<{n_dims}Q", data, pos + 4)
        pos += 4 + 8 * n_dims
        ggml_type, offset = struct.unpack_from("<IQ", data, pos)
        pos += 4 + 8
        tensors[name] = _Tensor(ggml_type, shape, offset)
        if n_dims >= 2:
            matrix_types.append(GGML_TYPES.get(ggml_type, f"type {ggml_type}"))
    return metadata, tensors, matrix_types, pos


def _string(data: mmap.mmap, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<Q", data, pos)
    end = pos + 8 + n
    return data[pos + 8:end].decode("utf-8", errors="replace"), end


def _value(data: mmap.mmap, pos: int, kind: int) -> tuple[object, int]:
    if kind == _STRING:
        return _string(data, pos)
    fmt = _SCALARS.get(kind)
    if fmt is None:
        raise ValueError(f"unknown GGUF value type {kind}")
    return struct.unpack_from(fmt, data, pos)[0], pos + struct.calcsize(fmt)


def _skip_array(data: mmap.mmap, pos: int) -> int:
    kind, count = struct.unpack_from("<IQ", data, pos)
    pos += 12
    if kind in _SCALARS:
        return pos + count * struct.calcsize(_SCALARS[kind])
    if kind != _STRING:
        raise ValueError(f"unsupported GGUF array of type {kind}")
    unpack = struct.Struct("<Q").unpack_from
    for _ in range(count):
        pos += 8 + unpack(data, pos)[0]
    return pos


def _most_common(values: list[str]) -> str | None:
    return max(set(values), key=values.count) if values else None


def _int_or_none(v: object | None) -> int | None:
    return int(v) if isinstance(v, (int, float)) else None


def _str_or_none(v: object | None) -> str | None:
    return v if isinstance(v, str) else None


def _bool_or_none(v: object | None) -> bool | None:
    return bool(v) if isinstance(v, (bool, int)) else None
