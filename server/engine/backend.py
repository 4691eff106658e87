"""llama.cpp's process-wide state: its backend, set up once, and its log, sent to Python logging."""

from __future__ import annotations

import ctypes
import logging
import os
import threading

import llama_cpp

from .llama_build import check_architectures

llama_log = logging.getLogger("llama.cpp")
# ggml_log_level (ggml.h): 3 WARN, 4 ERROR; DEBUG and INFO are the load-time chatter of every model.
_GGML_LEVELS = {3: logging.WARNING, 4: logging.ERROR}


@llama_cpp.llama_log_callback
def _forward_llama_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp's warnings and errors go to Python logging; without a callback it prints
    hundreds of lines to stderr for every model it loads."""
    if level in _GGML_LEVELS and text.strip():
        llama_log.log(_GGML_LEVELS[level], text.decode("utf-8", errors="replace").rstrip())


_backend_lock = threading.Lock()
_backend_ready = False


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):  # Linux: honours taskset and container CPU sets
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def ensure_backend() -> None:
    """Set up llama.cpp's backend and log callback, process-wide, once; refuse a llama.cpp built
    without the project's patch (llama_build.py)."""
    global _backend_ready
    with _backend_lock:
        if not _backend_ready:
            llama_cpp.llama_log_set(_forward_llama_log, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            check_architectures()
            _backend_ready = True
