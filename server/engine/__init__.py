"""llama.cpp as a reranker: reading a GGUF, laying out pairs, decoding them, reading each pair's
score. It knows nothing of HTTP."""
