"""The HTTP layer: routes, errors, middleware, limits on the wire, /openapi.json, /docs, /metrics.
It knows the rerank service's boundary (server/service.py), never llama.cpp or Ray."""
