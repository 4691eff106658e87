"""From `--model` to a checked GGUF on disk: the catalog, model specs, the hub, conversion, and
the plan of what to serve."""
