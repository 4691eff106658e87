"""llama-box's command line (v0.0.171, the release GPUStack 0.7.1 launches), so that its launch line,
and the flags its users add to it, start this server as they started llama-box.

The flags that mean something here are this server's own (server/config.py declares them under
llama-box's names: `-c`, `-t`, `-ngl`, `-ub`, `-fa`, `--tensor-split`, `--main-gpu`, `--split-mode`,
`--no-mmap`, `-v`, ...). Every other flag llama-box's parser takes is listed below with how many
values follow it, read from llama-box's own parser (llama-box/engine_param.hpp at v0.0.171): these
are accepted and skipped with one warning, as llama-box skips flags it does not know and GPUStack
relies on. A flag in neither set is still an error, so a typo of this server's flags is caught.
"""

from __future__ import annotations

from collections.abc import Sequence

# Sampling, speculative decoding, images, LoRA, RPC and the like: nothing a reranker uses. By how many
# values follow each flag.
TAKES_NOTHING = frozenset({
    "--context-shift", "--cpu-moe", "--cpu-moe-draft", "--enable-reasoning", "--escape", "--image-control-canny",
    "--image-free-compute-memory-immediately", "--image-no-control-net-model-offload",
    "--image-no-text-encoder-model-offload", "--image-no-vae-model-offload", "--image-no-vae-tiling",
    "--image-vae-tiling", "--images", "--jinja", "--kv-unified", "--list-buffer-types", "--list-devices",
    "--log-colors", "--lora-init-without-apply", "--mlock", "--no-cache-prompt", "--no-context-shift",
    "--no-enable-reasoning", "--no-escape", "--no-kv-offload", "--no-reasoning-in-content", "--no-repack",
    "--reasoning-in-content", "--rpc-server-cache", "--special", "--swa-full", "--system-info", "--version",
    "--warmup", "-cmoe", "-cmoed", "-e", "-kvu", "-nkvo", "-nr", "-sp"
})

TAKES_ONE = frozenset({
    "--attention", "--cache-reuse", "--cache-type-k", "--cache-type-v", "--chat-template", "--chat-template-file",
    "--chat-template-kwargs", "--conn-idle", "--conn-keepalive", "--control-vector", "--cpu-mask",
    "--cpu-mask-batch", "--cpu-range", "--cpu-range-batch", "--cpu-strict", "--cpu-strict-batch", "--defrag-thold",
    "--device", "--device-draft", "--draft", "--draft-max", "--draft-min", "--draft-n", "--draft-n-min",
    "--draft-p-min", "--dry-allowed-length", "--dry-base", "--dry-multiplier", "--dry-penalty-last-n",
    "--dry-sequence-breaker", "--dynatemp-exp", "--dynatemp-range", "--frequency-penalty", "--gpu-layers-draft",
    "--grammar", "--grammar-file", "--image-cfg-scale", "--image-clip-g-model", "--image-clip-l-model",
    "--image-control-net-model", "--image-control-strength", "--image-guidance", "--image-max-batch",
    "--image-max-height", "--image-max-width", "--image-sample-method", "--image-sample-steps", "--image-sampler",
    "--image-sampling-steps", "--image-schedule", "--image-schedule-method", "--image-skip-layer",
    "--image-slg-end", "--image-slg-scale", "--image-slg-start", "--image-strength", "--image-t5xxl-model",
    "--image-taesd-model", "--image-upscale-model", "--image-upscale-repeats", "--image-vae-model", "--json-schema",
    "--keep", "--log-verbosity", "--logit-bias", "--lookup-ngram-min", "--lora", "--max-projected-cache", "--min-p",
    "--mirostat", "--mirostat-ent", "--mirostat-lr", "--mmproj", "--model-draft", "--n-cpu-moe",
    "--n-cpu-moe-draft", "--n-gpu-layers-draft", "--numa", "--override-kv", "--override-tensor",
    "--override-tensor-draft", "--poll", "--poll-batch", "--pooling", "--presence-penalty", "--prio",
    "--prio-batch", "--repeat-last-n", "--repeat-penalty", "--reverse-prompt", "--rope-freq-base",
    "--rope-freq-scale", "--rope-scale", "--rope-scaling", "--rpc", "--rpc-server-cache-dir", "--rpc-server-host",
    "--rpc-server-main-gpu", "--rpc-server-port", "--rpc-server-reserve-memory", "--rpc-server-threads",
    "--samplers", "--seed", "--slot-save-path", "--temp", "--threads-batch", "--threads-http", "--timeout",
    "--tokens-per-second", "--top-k", "--top-nsigma", "--top-p", "--typical", "--verbosity",
    "--visual-max-image-cache", "--visual-max-image-size", "--xtc-probability", "--xtc-threshold",
    "--yarn-attn-factor", "--yarn-beta-fast", "--yarn-beta-slow", "--yarn-ext-factor", "--yarn-orig-ctx", "-C",
    "-Cb", "-Cr", "-Crb", "-ctk", "-ctv", "-dev", "-devd", "-dt", "-j", "-l", "-lv", "-md", "-ncmoe", "-ncmoed",
    "-ngld", "-ot", "-otd", "-r", "-s", "-tb", "-to", "-tps"
})

TAKES_TWO = frozenset({
    "--control-vector-layer-range", "--control-vector-scaled", "--lora-scaled"
})


def without_inert_flags(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`argv` without llama-box's flags that have no effect here, and those flags with their values
    (`--flag=value` or `--flag value`), for the warning."""
    kept: list[str] = []
    skipped: list[str] = []
    position = 0
    while position < len(argv):
        token = argv[position]
        name, equals, _ = token.partition("=")
        count = 0 if name in TAKES_NOTHING else 1 if name in TAKES_ONE else 2 if name in TAKES_TWO else None
        if count is None:
            kept.append(token)
            position += 1
            continue
        taken = 1 if equals else 1 + count
        skipped.append(" ".join(argv[position:position + taken]))
        position += taken
    return kept, skipped
