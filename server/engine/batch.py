"""The llama_batch the engine fills: numpy buffers owned here, filled without a per-token loop."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
import numpy as np


class Batch:
    """A llama_batch whose arrays are numpy buffers owned here, so a batch is filled without a
    per-token Python loop and never freed by llama.cpp."""

    def __init__(self, capacity: int, all_outputs: bool) -> None:
        self.capacity = capacity
        self.all_outputs = all_outputs
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq_id = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        self.ends = np.zeros(0, dtype=np.int64)
        addresses = self.seq_id.ctypes.data + 4 * np.arange(capacity, dtype=np.uint64)
        self._seq_ptrs = addresses.astype(np.uint64)
        self.struct = llama_cpp.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        self.struct.embd = ctypes.POINTER(ctypes.c_float)()
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = ctypes.cast(
            self._seq_ptrs.ctypes.data, ctypes.POINTER(ctypes.POINTER(llama_cpp.llama_seq_id))
        )
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def fill(self, sequences: Sequence[np.ndarray], first_pos: int = 0, first_seq: int = 0) -> None:
        """Sequence i gets id `first_seq + i` and positions from `first_pos` (after a shared prefix).
        Pooling needs every token as an output; the hidden state is needed of each sequence's last token only."""
        lengths = np.fromiter((len(p) for p in sequences), dtype=np.int64, count=len(sequences))
        n = int(lengths.sum())
        self.ends = np.cumsum(lengths) - 1
        starts = np.repeat(self.ends + 1 - lengths, lengths)
        self.token[:n] = np.concatenate(sequences)
        self.pos[:n] = np.arange(n) - starts + first_pos
        self.seq_id[:n] = np.repeat(np.arange(first_seq, first_seq + len(sequences), dtype=np.int32), lengths)
        self.logits[:n] = self.all_outputs
        self.logits[self.ends] = 1
        self.struct.n_tokens = n
