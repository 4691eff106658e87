"""Which weight type to serve on a CPU: speed against the scores each type keeps, with ONNX Runtime
(the engine behind Infinity's and optimum's CPU paths) on the same checkpoint as a column.

For one Hugging Face checkpoint (default: scripts/benchmark.py's base shape, XLM-R like
bge-reranker-base), this script
1. converts it with llama.cpp's converter to F32, F16, BF16 and Q8_0, and quantizes the F16 file
   to Q4_K_M with llama.cpp's quantizer (the service's own `quantize`, the library llama-quantize is);
2. serves each file with the service, then with llama-server built from the same patched llama.cpp
   (`--no-peer` skips it), and measures the 3-document p50 latency, the 64-document documents/s
   and the peak RSS, with the 64-document scores; each measurement waits for the 1-minute load
   average to fall below `--quiet-load`;
3. scores the same 64 documents with transformers (fp32, the reference) and with ONNX Runtime
   (the checkpoint exported by torch.onnx, fp32, and that export quantized to int8 by ONNX
   Runtime's `quantize_dynamic` with per-channel weights), timing ONNX Runtime on the same workloads;
4. reports each type's drift: the largest |score - F32's| and |score - transformers'|, how many
   of the 64 documents change rank against transformers' order, and the Spearman correlation of
   the two rankings; and the CPU's features as llama.cpp reports them (llama_print_system_info).

`--hf-dir` takes any encoder checkpoint, such as the BERT cross-encoder of real MiniLM weights that
tests/minilm.py builds (`--minilm` builds it), where the drift figures mean something: random
weights squeeze the scores into a few hundredths.

Usage (`make bench-quant`):
    .venv/bin/python scripts/benchmark_quant.py [--hf-dir DIR] [--threads 2] [--out bench-quant.json]
The transformers and ONNX Runtime parts run under the fixture venv (`.venv-fixtures`, with
onnxruntime, onnx and onnxscript, which `make bench-quant` installs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark as bench  # noqa: E402  (the sibling script: workloads, servers, statistics)

TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_K_M")
CONVERTER_TYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16", "Q8_0": "q8_0"}
SCORE_BATCH = 16  # pairs per transformers / ONNX Runtime call


# -- under the fixture venv ---------------------------------------------------------------------


def _encode(tokenizer: Any, query: str, documents: list[str]) -> dict[str, Any]:
    return tokenizer([query] * len(documents), documents, padding=True, truncation=True,
                     max_length=bench.MAX_POSITIONS - 2, return_tensors="np")


def fixture_reference(hf_dir: Path, spec_path: Path) -> None:
    """transformers' fp32 scores for the bulk request, as JSON on stdout: a classifier's logit, or
    a Qwen3 reranker's P(yes) with the model card's prompt (scripts/fixtures_qwen3.py)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = json.loads(spec_path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    if json.loads((hf_dir / "config.json").read_text())["architectures"][0] == "Qwen3ForCausalLM":
        import fixtures_qwen3
        from transformers import Qwen3ForCausalLM

        causal = Qwen3ForCausalLM.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
        bulk = spec["bulk"]
        scores = [fixtures_qwen3.p_yes(causal, tokenizer, fixtures_qwen3.pair_ids(tokenizer, None, bulk["query"], d))
                  for d in bulk["documents"]]
        json.dump({"scores": scores, "transformers": __import__("transformers").__version__}, sys.stdout)
        return
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
    bulk = spec["bulk"]
    scores: list[float] = []
    with torch.inference_mode():
        for i in range(0, len(bulk["documents"]), SCORE_BATCH):
            batch = _encode(tokenizer, bulk["query"], bulk["documents"][i:i + SCORE_BATCH])
            logits = model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
            scores.extend(logits[:, 0].tolist())
    json.dump({"scores": scores, "transformers": __import__("transformers").__version__}, sys.stdout)


def fixture_onnx(hf_dir: Path, spec_path: Path, threads: int, onnx_path: Path, int8: bool = False) -> None:
    """Export the checkpoint to ONNX once (and quantize it to int8 once, with `int8`), then time
    ONNX Runtime on the latency and bulk workloads (tokenising included, as a server would); JSON
    on stdout."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    spec = json.loads(spec_path.read_text())
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    if not onnx_path.exists():
        model = AutoModelForSequenceClassification.from_pretrained(hf_dir, torch_dtype=torch.float32).eval()
        sample = _encode(tokenizer, "query", ["a document", "another document"])
        # BERT's token type ids are an input too (1 on the document), XLM-R has none.
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
        torch.onnx.export(model, tuple(torch.from_numpy(sample[n]) for n in names),
                          str(onnx_path), input_names=names, output_names=["logits"],
                          dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
        del model
    if int8:
        quantized = onnx_path.with_name(onnx_path.stem + "-int8.onnx")
        if not quantized.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantize_dynamic(str(onnx_path), str(quantized), per_channel=True, weight_type=QuantType.QInt8)
        onnx_path = quantized
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def score(query: str, documents: list[str]) -> list[float]:
        out: list[float] = []
        for i in range(0, len(documents), SCORE_BATCH):
            batch = _encode(tokenizer, query, documents[i:i + SCORE_BATCH])
            wanted = {i.name for i in session.get_inputs()}
            feeds = {name: value.astype(np.int64) for name, value in batch.items() if name in wanted}
            out.extend(session.run(["logits"], feeds)[0][:, 0].tolist())
        return out

    def timed(request: dict[str, Any]) -> float:
        start = time.perf_counter()
        score(request["query"], request["documents"])
        return time.perf_counter() - start

    latency, bulk = spec["latency"], spec["bulk"]
    for _ in range(3):
        timed(latency)
    latencies = [timed(latency) for _ in range(spec["latency_runs"])]
    score(bulk["query"], bulk["documents"][:8])
    bulk_times = [timed(bulk) for _ in range(spec["bulk_runs"])]
    json.dump({"latency_s": latencies, "bulk_s": bulk_times, "scores": score(bulk["query"], bulk["documents"]),
               "peak_rss_mib": bench.peak_rss_self_mib(), "onnxruntime": ort.__version__,
               "file_mib": onnx_path.stat().st_size / 2**20}, sys.stdout)


# -- under the service venv ---------------------------------------------------------------------


def fixture_json(*args: str) -> dict[str, Any]:
    done = subprocess.run([str(bench.FIXTURE_PYTHON), __file__, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)


def make_gguf(hf_dir: Path, llama_src: Path, out_dir: Path, weight_type: str) -> Path:
    out = out_dir / f"model-{weight_type}.gguf"
    if out.exists():
        return out
    if weight_type in CONVERTER_TYPES:
        subprocess.run([str(bench.FIXTURE_PYTHON), str(llama_src / "convert_hf_to_gguf.py"), str(hf_dir),
                        "--outtype", CONVERTER_TYPES[weight_type], "--outfile", str(out)],
                       check=True, capture_output=True)
    else:
        from server.provision.conversion import quantize

        quantize(make_gguf(hf_dir, llama_src, out_dir, "F16"), out, weight_type)
    return out


def _ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=lambda i: -values[i])
    ranks = [0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks


def drift(scores: list[float], against: list[float]) -> dict[str, float]:
    """The largest score difference, how many documents sit at another rank, and Spearman's rho of
    the two rankings (no ties among float scores)."""
    order = sorted(range(len(against)), key=lambda i: -against[i])
    ours = sorted(range(len(scores)), key=lambda i: -scores[i])
    n = len(scores)
    squares = sum((a - b) ** 2 for a, b in zip(_ranks(scores), _ranks(against), strict=True))
    return {"max_abs": max(abs(a - b) for a, b in zip(scores, against, strict=True)),
            "rank_changes": sum(1 for a, b in zip(ours, order, strict=True) if a != b),
            "spearman": 1 - 6 * squares / (n * (n * n - 1)) if n > 1 else 1.0}


def wait_for_quiet(threshold: float, timeout_s: float = 300) -> None:
    """Start a measurement only once the 1-minute load has fallen below `threshold` (or after
    `timeout_s`, with a warning): a busy machine skews the figure of whichever engine meets it."""
    deadline = time.monotonic() + timeout_s
    while bench.load_average()[0] > threshold:
        if time.monotonic() > deadline:
            print(f"  load still {bench.load_average()[0]:.2f} after {timeout_s:.0f}s; measuring anyway", flush=True)
            return
        time.sleep(5)


def measure_type(gguf: Path, threads: int, workloads: bench.Workloads, opts: argparse.Namespace,
                 peer: Path | None = None) -> dict[str, Any]:
    """This service on one file, or llama-server on it (`peer`, the binary) with the benchmark's
    default settings: 4 slots, one 512-token ubatch each."""
    import httpx

    port = bench.free_port()
    if peer:
        name, command = f"peer-{gguf.stem}", bench.peer_command(peer, gguf, port, threads, bench.PeerSettings(4, 512))
    else:
        name, command = gguf.stem, bench.ours_command(gguf, port, threads, 256)
    wait_for_quiet(opts.quiet_load)
    with bench.running(name, command, port, {}, opts.work_dir / "logs" / f"quant-{name}.log") as server:
        with httpx.Client(timeout=bench.REQUEST_TIMEOUT) as client:
            latency, bulk = bench.measure_one(client, server.url, workloads, opts.latency_runs, opts.bulk_runs)
            scores = bench.rerank(client, server.url, workloads.bulk)
    return {"file_mib": gguf.stat().st_size / 2**20, "latency_p50_ms": bench.percentile(latency, 50) * 1000,
            "bulk_docs_per_s": len(workloads.bulk.documents) / statistics.median(bulk),
            "peak_rss_mib": server.peak_rss_mib, "scores": scores, "load_average": bench.load_average()}


def system_info() -> str:
    import llama_cpp

    from server.engine.backend import ensure_backend

    ensure_backend()
    return llama_cpp.llama_print_system_info().decode().strip()


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Model: {results['model']}; {results['threads']} threads; {results['documents']}-document workload; "
        f"reference: transformers {results['transformers']} fp32 (score spread {results['spread']:.4f}).",
        "",
        f"CPU: {results['system_info']}",
        "",
        f"| engine | file (MiB) | 3-doc p50 (ms) | {results['documents']}-doc docs/s | peak RSS (MiB) | max \\|Δ\\| vs F32 "
        "| max \\|Δ\\| vs transformers | rank changes | Spearman | load avg |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, run in results["runs"].items():
        f32, ref = run["vs_f32"], run["vs_reference"]
        lines.append(f"| {name} | {bench.fmt(run.get('file_mib'))} | {run['latency_p50_ms']:.1f} "
                     f"| {run['bulk_docs_per_s']:.2f} | {bench.fmt(run.get('peak_rss_mib'), 0)} "
                     f"| {f32['max_abs']:.2e} | {ref['max_abs']:.2e} | {ref['rank_changes']} "
                     f"| {ref['spearman']:.4f} | {run['load_average'][0]:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_reference"]:
        fixture_reference(Path(args[1]), Path(args[2]))
        return
    if args[:1] == ["_onnx"]:
        fixture_onnx(Path(args[1]), Path(args[2]), int(args[3]), Path(args[4]), int8=args[5:6] == ["int8"])
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hf-dir", type=Path, help="checkpoint (default: the --shape of scripts/benchmark.py)")
    p.add_argument("--minilm", action="store_true", help="the real-weight BERT cross-encoder of tests/minilm.py")
    p.add_argument("--shape", default="base", help="scripts/benchmark.py's shape to generate: base, small, qwen3")
    p.add_argument("--bulk-docs", type=int, default=64, help="documents of the scored request")
    p.add_argument("--llama-src", type=Path, help="llama.cpp sources for the converter (default: the sdist)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--types", default=",".join(TYPES), help="weight types to sweep")
    p.add_argument("--no-peer", action="store_true", help="skip llama-server's run of each file")
    p.add_argument("--quiet-load", type=float, default=1.0,
                   help="wait before each measurement until the 1-minute load average is below this")
    p.add_argument("--latency-runs", type=int, default=20)
    p.add_argument("--bulk-runs", type=int, default=2)
    p.add_argument("--work-dir", type=Path, default=bench.DEFAULT_WORK_DIR)
    p.add_argument("--out", type=Path, default=Path("bench-quant.json"))
    opts = p.parse_args(args)
    bench_opts = bench.parse_args(["--shape", opts.shape, "--work-dir", str(opts.work_dir),
                                   *(["--llama-src", str(opts.llama_src)] if opts.llama_src else [])])
    if opts.minilm:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.minilm import build_checkpoint

        opts.hf_dir = opts.hf_dir or build_checkpoint(opts.work_dir / "minilm" / "checkpoint")
    hf_dir = opts.hf_dir or bench.ensure_model(bench_opts)[1]
    llama_src = bench.llama_cpp_source(bench_opts)
    out_dir = opts.work_dir / f"quant-{hf_dir.parent.name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    workloads = bench.make_workloads(clients=1, requests_per_client=1, bulk_docs=opts.bulk_docs, docs_per_request=4)
    spec = out_dir / "spec.json"
    spec.write_text(json.dumps({"latency": asdict(workloads.latency), "bulk": asdict(workloads.bulk),
                                "latency_runs": opts.latency_runs, "bulk_runs": opts.bulk_runs}))
    reference = fixture_json("_reference", str(hf_dir), str(spec))
    peer = None if opts.no_peer else bench.ensure_llama_server(bench_opts)
    runs: dict[str, dict[str, Any]] = {}
    for weight_type in opts.types.split(","):
        gguf = make_gguf(hf_dir, llama_src, out_dir, weight_type)
        # each file's two servers one after the other, so that their ratio is of one moment
        servers = [(weight_type, None)] + ([(f"llama-server {weight_type}", peer)] if peer else [])
        for name, binary in servers:
            print(f"{name}: measuring {gguf}", flush=True)
            runs[name] = measure_type(gguf, opts.threads, workloads, opts, peer=binary)
            print(f"{name}: {json.dumps({k: v for k, v in runs[name].items() if k != 'scores'})}", flush=True)
    onnx: dict[str, Any] = {}
    if not (hf_dir / "config.json").read_text().count("Qwen3ForCausalLM"):  # ONNX Runtime: the encoders
        for precision in ("fp32", "int8"):
            wait_for_quiet(opts.quiet_load)
            onnx = fixture_json("_onnx", str(hf_dir), str(spec), str(opts.threads), str(out_dir / "model.onnx"),
                                precision)
            runs[f"ONNX Runtime {precision}"] = {
                "latency_p50_ms": bench.percentile(onnx["latency_s"], 50) * 1000,
                "bulk_docs_per_s": len(workloads.bulk.documents) / statistics.median(onnx["bulk_s"]),
                "peak_rss_mib": onnx["peak_rss_mib"], "scores": onnx["scores"],
                "load_average": bench.load_average(), "file_mib": onnx["file_mib"],
            }
    f32 = runs.get("F32", {}).get("scores", reference["scores"])
    for run in runs.values():
        run["vs_f32"] = drift(run["scores"], f32)
        run["vs_reference"] = drift(run["scores"], reference["scores"])
    results = {"model": str(hf_dir), "threads": opts.threads, "documents": len(workloads.bulk.documents),
               "system_info": system_info(),
               "transformers": reference["transformers"], "onnxruntime": onnx.get("onnxruntime"),
               "spread": max(reference["scores"]) - min(reference["scores"]), "runs": runs}
    bench.write_results(opts.out, results, markdown(results))


if __name__ == "__main__":
    main()
