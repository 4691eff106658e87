"""Benchmark this rerank service against llama.cpp's own `llama-server` on the same GGUF.

Both servers get the same GGUF and the same CPU threads, each with its best settings found by a
short sweep on the 64-document workload, and then the same deterministic workloads:

1. `latency`: one 3-document request (llama-box's panda example), repeated; p50/p95 latency.
2. `bulk`: one 64-document request of realistic length (~150-200 tokens per query+document pair);
   documents/s (best and median of a few runs).
3. `concurrent`: 16 clients, each sending a fixed count of 4-document requests; documents/s over
   the whole run and p50/p95 request latency.
4. `long documents`: one request of 4 documents of 2,000 to 8,000 tokens, ours only, in both
   long-document modes (`truncate`: the first window's worth of each document; `windows`: every
   window, the best counting); documents/s and the tokens each mode evaluated. llama-server has no
   windows mode, so it has no column here.

sentence-transformers' `CrossEncoder` on the same checkpoint (its Hugging Face directory, fp32)
runs workloads 1 and 2 in-process when the fixture venv can import it. Every figure is printed with
the ratio ours/llama-server, and written as JSON (`--out`) and as a Markdown table beside it
(same name, `.md`). The results also hold each server's peak RSS (VmHWM), the GGUF size, the
token counts of the workloads, the settings sweeps and the load average before and after (other
processes on the machine skew the figures; the two servers are measured alternately so a change
in background load hits both alike).

The model is random-weight, shaped like bge-reranker-base (XLM-R: 12 layers, hidden 768,
12 heads, FFN 3072, 514 positions) but with a 32k-piece SentencePiece vocabulary trained here
instead of XLM-R's 250k (only the embedding table, not the per-token compute, depends on the vocab
size; 250k would take long to train and make a ~560 MB file). `--shape small` is a MiniLM-L6-like
6 x 384 model for quick runs. It is generated (not committed) by this very script run under the
fixture venv (`.venv-fixtures`: torch, transformers, sentencepiece, gguf), reusing
`scripts/make_fixtures.py` for the tokenizer training and checkpoint layout, then converted to an
f16 GGUF with llama.cpp's `convert_hf_to_gguf.py`. It is cached in `--work-dir`. `--shape qwen3`
is a random Qwen3-Reranker-0.6B (28 layers, hidden 1024, 16 query and 8 KV heads, FFN 3072) with
the real Qwen tokenizer, built with `scripts/fixtures_qwen3.py`'s helpers and converted to Q8_0,
the type of the catalog's Qwen3 files; it has no CrossEncoder run. `--shape qwen3-4b` has
Qwen3-Reranker-4B's width (hidden 2560, 32/8 heads, FFN 9728) with 4 of its 36 layers.

`llama-server` is built from the llama.cpp vendored in the pinned llama-cpp-python sdist (the
same llama.cpp the service runs) by `scripts/build_llama_server.sh`, unless `--llama-server`
names a binary that exists.

Usage (`make bench` runs the first form):
    .venv/bin/python scripts/benchmark.py [--gguf FILE] [--hf-dir DIR] [--out bench-results.json]
    .venv/bin/python scripts/benchmark.py --shape small --quick          # a fast smoke run
    .venv/bin/python scripts/benchmark.py --llama-src DIR --llama-server BIN --threads 2

On an idle 2-core AVX2 machine the base shape takes about 8.5 minutes (the sweeps are half of
it), plus ~2 minutes to generate the model and ~15-20 minutes to build llama-server, both once.
Other busy processes make the figures noisy and the run longer: check the load averages.

`--gguf` and `--hf-dir` reuse an existing model (then nothing is generated; without `--hf-dir`
the CrossEncoder runs are skipped). `--llama-src` is a llama.cpp source tree (for the converter
and the build); without it the sdist is fetched with `pip download` into `--work-dir`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # httpx lives in the service venv only; the fixture-venv helpers never use it
    import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO_ROOT / "scripts"
SERVICE_PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
FIXTURE_PYTHON = REPO_ROOT / ".venv-fixtures" / "bin" / "python"
BUILD_SCRIPT = SCRIPTS_DIR / "build_llama_server.sh"
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
DEFAULT_WORK_DIR = Path("/tmp/bench")
HOST = "127.0.0.1"

SEED = 20240601
MAX_POSITIONS = 514  # bge-reranker-base: 512 tokens + XLM-R's padding offset
SERVER_START_TIMEOUT = 180.0
REQUEST_TIMEOUT = 600.0


# --------------------------------------------------------------------------------------------
# Model shapes and generation (runs under the fixture venv)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Transformer dimensions of the generated reranker."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    vocab: int
    family: str = "xlmr"
    kv_heads: int = 0  # Qwen3 only (grouped-query attention)
    head_dim: int = 0


SHAPES = {
    # bge-reranker-base's encoder; the vocab is 32k instead of 250k (see the module docstring).
    "base": Shape(layers=12, hidden=768, heads=12, intermediate=3072, vocab=32_000),
    # ms-marco-MiniLM-L6-like, for quick runs.
    "small": Shape(layers=6, hidden=384, heads=12, intermediate=1536, vocab=8_000),
    # Qwen3-Reranker-0.6B, with its real tokenizer (151,669 tokens in a 151,936-row table).
    "qwen3": Shape(layers=28, hidden=1024, heads=16, intermediate=3072, vocab=151_936, family="qwen3",
                   kv_heads=8, head_dim=128),
    # Qwen3-Reranker-4B's width (36 layers in the real model; 4 here, so a run fits this machine).
    "qwen3-4b": Shape(layers=4, hidden=2560, heads=32, intermediate=9728, vocab=151_936, family="qwen3",
                      kv_heads=8, head_dim=128),
}
QWEN3_POSITIONS = 512  # the context each llama-server slot gets; ours defaults to the trained length

# English passages the documents are drawn from. They are also part of the tokenizer's training
# text, so words take ~1.3 pieces each as they do with XLM-R's vocabulary on English.
PASSAGES = (
    "The giant panda is a bear species endemic to China, known for its black-and-white coat.",
    "Giant pandas feed almost entirely on bamboo and spend up to fourteen hours a day eating.",
    "Pandas live in a few mountain ranges in central China, mainly in Sichuan, Shaanxi and Gansu.",
    "Habitat loss from farming and deforestation drove the panda out of the lowland forests.",
    "The red panda is not closely related to the giant panda; it belongs to its own family.",
    "Polar bears hunt seals from the sea ice and can swim for days across open water.",
    "Brown bears hibernate through the winter after building fat reserves in the autumn.",
    "A search engine first retrieves candidate documents with a fast index such as BM25.",
    "A reranker then reads each query and document together and returns a relevance score.",
    "Cross-encoders are slower than bi-encoders but usually rank the top results more precisely.",
    "The service batches the pairs of many requests into one decode to keep the CPU busy.",
    "Latency matters for interactive search, while throughput matters for offline indexing.",
    "Photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen.",
    "Volcanoes erupt when molten rock rises through cracks in the crust and reaches the surface.",
    "Glaciers carve valleys slowly, pushing boulders ahead of them and leaving moraines behind.",
    "Vaccines train the immune system to recognise viruses without causing the disease itself.",
    "The orchestra rehearsed a symphony by Beethoven, then a violin concerto and an overture.",
    "Merchants on the Silk Road carried spices, porcelain, jade, wool and paper between empires.",
    "A compiler translates source code into machine instructions before the program runs.",
    "An interpreter executes a program statement by statement without a separate build step.",
    "Python is a programming language that lets you work quickly and integrate systems well.",
    "The library opens at nine o'clock, closes at six, and is closed on public holidays.",
    "Engineers designed the suspension bridge to withstand earthquakes and heavy traffic.",
    "Farmers harvest wheat, barley, maize and potatoes before the first autumn frost.",
    "The marathon runner crossed the finish line exhausted, surrounded by cheering spectators.",
    "Archaeologists unearthed pottery fragments, bronze coins and a mosaic of dolphins.",
    "Submarines navigate underwater with sonar, gyroscopes and carefully trimmed ballast tanks.",
    "The hospital bought new ultrasound scanners, defibrillators and ventilators this year.",
    "Journalists asked the mayor about housing, unemployment, pollution and public transport.",
    "Astronomers measure the distance to nearby stars by parallax as the Earth orbits the Sun.",
    "The recipe needs flour, butter, sugar, vanilla, a pinch of salt, three eggs and warm milk.",
    "Children learn arithmetic, geography, history and biology before choosing a specialisation.",
    "The weather will be cloudy in the morning with light rain after noon and a cold north wind.",
    "Medieval castles had thick walls, narrow windows, drawbridges, towers and deep moats.",
    "Musicians improvised jazz melodies with saxophone, trumpet, piano, double bass and drums.",
    "The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun.",
    "Container images bundle an application with its libraries so it runs the same everywhere.",
    "A load balancer spreads incoming requests across several servers to avoid overload.",
    "Quantization stores model weights in fewer bits, trading a little accuracy for speed.",
    "Memory bandwidth often limits inference on CPUs more than raw arithmetic throughput.",
)
QUERIES = (
    "What do giant pandas eat?",
    "Where do giant pandas live in the wild?",
    "How does a cross-encoder reranker score documents?",
    "Why is latency important for search?",
    "How do volcanoes erupt?",
    "What limits model inference speed on a CPU?",
    "Which animals hibernate in winter?",
    "What is the difference between a compiler and an interpreter?",
)
# llama-box's README example: the smallest realistic request.
PANDA_QUERY = "What is a panda?"
PANDA_DOCUMENTS = (
    "hi",
    "it is a bear",
    "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda,"
    " is a bear species endemic to China.",
)
DOCUMENT_WORDS = (85, 115)  # ~1.6 pieces a word here: with the query and 4 specials, ~150-200 tokens a pair
LONG_DOCUMENT_WORDS = (1250, 5000)  # ~2,000-8,000 tokens at ~1.6 pieces a word
LONG_DOCUMENTS = 4


def tokenizer_corpus(base_lines: list[str], rng: random.Random) -> list[str]:
    """Training text for the SentencePiece model: make_fixtures' multilingual corpus, this
    script's passages, and seeded pseudo-words so the unigram trainer finds enough candidate
    pieces for a 32k vocabulary (make_fixtures' corpus alone supports ~1k)."""
    onsets = "b c d f g h j k l m n p r s t v w z br ch dr gr kl pl sh st tr th".split()
    vowels = "a e i o u ai au ea ee ie io oo ou y".split()

    def pseudo_word() -> str:
        syllables = "".join(rng.choice(onsets) + rng.choice(vowels) for _ in range(rng.randint(1, 4)))
        return syllables + (rng.choice(onsets) if rng.random() < 0.5 else "")

    lexicon = sorted({pseudo_word() for _ in range(60_000)})
    lines = list(base_lines) + list(PASSAGES) * 20 + list(QUERIES) * 20
    lines += [" ".join(rng.choices(lexicon, k=rng.randint(6, 16))) for _ in range(30_000)]
    return lines


def make_model(shape_name: str, out_dir: Path, llama_src: Path) -> None:
    """Write a random-weight reranker of the shape's family and its GGUF to `out_dir`."""
    if SHAPES[shape_name].family == "qwen3":
        make_qwen3_model(shape_name, out_dir, llama_src)
    else:
        make_xlmr_model(shape_name, out_dir, llama_src)


def make_xlmr_model(shape_name: str, out_dir: Path, llama_src: Path) -> None:
    """Write a random-weight XLM-R cross-encoder (HF dir `hf/`) and its f16 GGUF to `out_dir`.

    Reuses make_fixtures.py's tokenizer training and checkpoint layout; its module constants
    for the vocab size and the tokenizer's max length are overridden for this bigger model.
    """
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    sys.path.insert(0, str(SCRIPTS_DIR))
    import make_fixtures  # noqa: E402  (needs torch & co., hence the late import)

    shape = SHAPES[shape_name]
    hf_dir, gguf_path = out_dir / "hf", out_dir / f"xlmr-{shape_name}-random-f16.gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        work = Path(tmp)
        make_fixtures.SP_VOCAB_SIZE = shape.vocab - 2  # + <pad> (fairseq id offset) and <mask>
        make_fixtures.MAX_LENGTH = MAX_POSITIONS - 2
        corpus = tokenizer_corpus(make_fixtures.build_corpus(), random.Random(SEED))
        tokenizer = make_fixtures.build_tokenizer(make_fixtures.train_sentencepiece(corpus, work), work)
        config = XLMRobertaConfig(
            vocab_size=len(tokenizer), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
            num_attention_heads=shape.heads, intermediate_size=shape.intermediate,
            max_position_embeddings=MAX_POSITIONS, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
            eos_token_id=2, initializer_range=0.02, num_labels=1,
            id2label={0: "LABEL_0"}, label2id={"LABEL_0": 0},
        )
        torch.manual_seed(SEED)
        model = XLMRobertaForSequenceClassification(config).eval()
        if hf_dir.exists():
            shutil.rmtree(hf_dir)
        make_fixtures.save_checkpoint(model, tokenizer, hf_dir)
    env = {**os.environ, "PYTHONPATH": str(llama_src / "gguf-py")}
    done = subprocess.run([sys.executable, str(llama_src / "convert_hf_to_gguf.py"), str(hf_dir),
                           "--outtype", "f16", "--outfile", str(gguf_path)], env=env, capture_output=True, text=True)
    if done.returncode != 0:  # its INFO log is long; show it only when it matters
        raise SystemExit(f"convert_hf_to_gguf.py failed:\n{done.stderr[-5000:]}")
    params = sum(p.numel() for p in model.parameters())
    info = {"shape": shape_name, **asdict(shape), "vocab": len(tokenizer), "parameters": params,
            "gguf": str(gguf_path), "hf_dir": str(hf_dir)}
    (out_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")


def make_qwen3_model(shape_name: str, out_dir: Path, llama_src: Path) -> None:
    """Write a random-weight Qwen3-Reranker of the shape and its Q8_0 GGUF (the catalog's type).

    Reuses fixtures_qwen3.py's tokenizer (the real Qwen one, from llama.cpp's vocab files) and
    checkpoint layout, so the official converter detects a reranker and writes the yes/no head
    and the rerank template. No CrossEncoder run: Qwen3-Reranker is not a sequence classifier.
    """
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    sys.path.insert(0, str(SCRIPTS_DIR))
    import fixtures_qwen3  # noqa: E402  (needs torch & co., hence the late import)
    from make_fixtures import convert  # noqa: E402

    shape = SHAPES[shape_name]
    gguf_path = out_dir / f"{shape_name}-random-q8_0.gguf"
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-model-") as tmp:
        work = Path(tmp)
        tokenizer = fixtures_qwen3.build_tokenizer(llama_src.resolve(), work / "tokenizer")
        config = Qwen3Config(
            vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
            num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
            head_dim=shape.head_dim, max_position_embeddings=QWEN3_POSITIONS, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
            pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        )
        torch.manual_seed(SEED)
        model = Qwen3ForCausalLM(config).eval()
        # Kept (named as a reranker, which the converter looks for) for scripts/benchmark_quant.py.
        ckpt_dir = out_dir / fixtures_qwen3.RERANKER_DIR_NAME
        fixtures_qwen3.save_checkpoint(model, tokenizer, ckpt_dir, reranker=True)
        convert(llama_src, ckpt_dir, gguf_path, outtype="q8_0")
    params = sum(p.numel() for p in model.parameters())
    info = {"shape": shape_name, **asdict(shape), "parameters": params, "gguf": str(gguf_path),
            "hf_dir": str(ckpt_dir)}
    (out_dir / "model.json").write_text(json.dumps(info, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# CrossEncoder (runs under the fixture venv)
# --------------------------------------------------------------------------------------------


def peak_rss_self_mib() -> float:
    """This process's peak RSS (VmHWM), for the in-process CrossEncoder."""
    return read_vmhwm_mib(os.getpid()) or 0.0


def run_cross_encoder(hf_dir: Path, spec_path: Path, threads: int) -> None:
    """Time sentence-transformers' CrossEncoder on workloads 1 and 2; print JSON to stdout.

    It gets the same thread count as the servers; fp32, as sentence-transformers loads it.
    """
    import torch
    from sentence_transformers import CrossEncoder

    torch.set_num_threads(threads)
    spec = json.loads(spec_path.read_text())
    model = CrossEncoder(str(hf_dir), device="cpu", max_length=MAX_POSITIONS - 2)
    batch_size = spec["batch_size"]

    def timed(query: str, documents: list[str]) -> float:
        pairs = [(query, doc) for doc in documents]
        start = time.perf_counter()
        with torch.inference_mode():
            model.predict(pairs, batch_size=batch_size, show_progress_bar=False)
        return time.perf_counter() - start

    latency, bulk = spec["latency"], spec["bulk"]
    for _ in range(spec["warmup"]):
        timed(latency["query"], latency["documents"])
    latencies = [timed(latency["query"], latency["documents"]) for _ in range(spec["latency_runs"])]
    timed(bulk["query"], bulk["documents"][:8])
    bulk_times = [timed(bulk["query"], bulk["documents"]) for _ in range(spec["bulk_runs"])]
    import sentence_transformers
    json.dump({"latency_s": latencies, "bulk_s": bulk_times, "peak_rss_mib": peak_rss_self_mib(),
               "version": sentence_transformers.__version__, "torch": torch.__version__,
               "batch_size": batch_size}, sys.stdout)


# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One rerank request body."""

    query: str
    documents: list[str]
    long_documents: str | None = None

    def body(self) -> dict[str, Any]:
        body = {"query": self.query, "documents": self.documents, "top_n": len(self.documents)}
        return {**body, "long_documents": self.long_documents} if self.long_documents else body


def make_document(rng: random.Random) -> str:
    """A passage of 85-115 words made of seeded passage sentences, like a retrieval chunk."""
    target = rng.randint(*DOCUMENT_WORDS)
    words: list[str] = []
    while len(words) < target:
        words.extend(rng.choice(PASSAGES).split())
    return " ".join(words[:target]).rstrip(",;") + "."


def make_long_request(seed: int) -> Request:
    """Workload 4: documents of 2,000-8,000 tokens, built of the same passages as the others."""
    rng = random.Random(seed)
    documents = []
    for _ in range(LONG_DOCUMENTS):
        target = rng.randint(*LONG_DOCUMENT_WORDS)
        words: list[str] = []
        while len(words) < target:
            words.extend(rng.choice(PASSAGES).split())
        documents.append(" ".join(words[:target]) + ".")
    return Request(rng.choice(QUERIES), documents)


def make_request(seed: int, n_documents: int) -> Request:
    """A deterministic request: one query and `n_documents` realistic documents."""
    rng = random.Random(seed)
    return Request(rng.choice(QUERIES), [make_document(rng) for _ in range(n_documents)])


@dataclass(frozen=True)
class Workloads:
    """The three workloads; every client of workload 3 has its own requests."""

    latency: Request
    bulk: Request
    concurrent: list[list[Request]]


def make_workloads(clients: int, requests_per_client: int, bulk_docs: int, docs_per_request: int) -> Workloads:
    """Build every request from fixed seeds, so each server (and each rerun) sees the same text."""
    concurrent = [[make_request(SEED + 1000 * (c + 1) + r, docs_per_request) for r in range(requests_per_client)]
                  for c in range(clients)]
    return Workloads(Request(PANDA_QUERY, list(PANDA_DOCUMENTS)), make_request(SEED, bulk_docs), concurrent)


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/mean/min in milliseconds."""
    return {"p50_ms": percentile(seconds, 50) * 1e3, "p95_ms": percentile(seconds, 95) * 1e3,
            "mean_ms": statistics.fmean(seconds) * 1e3, "min_ms": min(seconds) * 1e3, "runs": len(seconds)}


def throughput_summary(seconds: Sequence[float], documents: int) -> dict[str, float]:
    """Documents/s of the best and the median run."""
    return {"best_docs_per_s": documents / min(seconds), "median_docs_per_s": documents / statistics.median(seconds),
            "runs": len(seconds), "seconds": list(seconds)}


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------


def read_vmhwm_mib(pid: int) -> float | None:
    """Peak resident set size of a live process, from /proc (Linux only)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return None


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: other processes on the machine skew every figure."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def free_port() -> int:
    """An unused loopback port (the OS picks it), so parallel runs do not collide."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A started server process and where it answers."""

    name: str
    pid: int
    url: str
    settings: dict[str, Any]
    peak_rss_mib: float | None = None


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Block until `GET /health` answers 200: both servers answer 503 while loading."""
    import httpx

    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; log: {log_path}\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"server not healthy after {SERVER_START_TIMEOUT}s; log: {log_path}")


@contextlib.contextmanager
def running(name: str, cmd: list[str], port: int, settings: dict[str, Any], log_path: Path) -> Iterator[Server]:
    """Run a server for the duration of the block; record its peak RSS just before stopping it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(name, proc.pid, f"http://{HOST}:{port}", settings)
    try:
        wait_healthy(proc, server.url, log_path)
        yield server
        server.peak_rss_mib = read_vmhwm_mib(proc.pid)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ours_command(gguf: Path, port: int, threads: int, batch_tokens: int) -> list[str]:
    """This service with a given decode token budget (everything else at its defaults)."""
    return [str(SERVICE_PYTHON), "-m", "server", "--model", str(gguf), "--host", HOST, "--port", str(port),
            "--threads", str(threads), "--batch-tokens", str(batch_tokens), "--log-level", "warning",
            "--request-timeout", str(REQUEST_TIMEOUT)]  # a slow run must be measured, not cut off


@dataclass(frozen=True)
class PeerSettings:
    """llama-server's knobs that matter for reranking throughput."""

    parallel: int  # -np: slots, i.e. pairs decoded together
    ubatch: int  # -ub = -b: a non-causal model's whole batch must fit one ubatch

    @property
    def label(self) -> str:
        return f"-np {self.parallel} -ub {self.ubatch}"


def peer_command(binary: Path, gguf: Path, port: int, threads: int, settings: PeerSettings) -> list[str]:
    """llama-server in rerank mode; each slot gets the model's full 512-token context."""
    return [str(binary), "--reranking", "-m", str(gguf), "--host", HOST, "--port", str(port),
            "-t", str(threads), "-tb", str(threads), "-c", str(512 * settings.parallel),
            "-np", str(settings.parallel), "-ub", str(settings.ubatch), "-b", str(settings.ubatch),
            "-fa", "on", "--no-webui"]


# --------------------------------------------------------------------------------------------
# Clients
# --------------------------------------------------------------------------------------------


def rerank(client: httpx.Client, url: str, request: Request) -> list[float]:
    """Send one request; fail loudly unless every document came back scored."""
    response = client.post(f"{url}/v1/rerank", json=request.body())
    response.raise_for_status()
    results = response.json()["results"]
    if sorted(r["index"] for r in results) != list(range(len(request.documents))):
        raise SystemExit(f"{url}: incomplete results {results!r:.300}")
    by_index = {r["index"]: r["relevance_score"] for r in results}
    return [by_index[i] for i in range(len(request.documents))]


def time_request(client: httpx.Client, url: str, request: Request) -> float:
    """Wall time of one request, client side (what a caller sees)."""
    start = time.perf_counter()
    rerank(client, url, request)
    return time.perf_counter() - start


async def run_concurrent(url: str, clients: list[list[Request]]) -> tuple[float, list[float]]:
    """Each client sends its requests one after another, all clients at once; returns the wall
    time of the whole run and every request's latency."""
    import httpx

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=len(clients), max_keepalive_connections=len(clients))
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as client:

        async def one_client(requests: list[Request]) -> None:
            for request in requests:
                start = time.perf_counter()
                response = await client.post(f"{url}/v1/rerank", json=request.body())
                response.raise_for_status()
                if len(response.json()["results"]) != len(request.documents):
                    raise SystemExit(f"{url}: incomplete results")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(one_client(requests) for requests in clients))
        return time.perf_counter() - start, latencies


def measure_bulk(client: httpx.Client, url: str, workloads: Workloads, runs: int) -> list[float]:
    """Seconds per 64-document request, after an 8-document warm-up (first-use allocations)."""
    rerank(client, url, Request(workloads.bulk.query, workloads.bulk.documents[:8]))
    return [time_request(client, url, workloads.bulk) for _ in range(runs)]


def measure_one(client: httpx.Client, url: str, workloads: Workloads, latency_runs: int,
                bulk_runs: int) -> tuple[list[float], list[float]]:
    """One server's 3-document latencies, after a warm-up, and its 64-document times (the other
    scripts' measurement of a single server)."""
    for _ in range(3):
        rerank(client, url, workloads.latency)
    latency = [time_request(client, url, workloads.latency) for _ in range(latency_runs)]
    return latency, measure_bulk(client, url, workloads, bulk_runs)


def pair_token_stats(client: httpx.Client, peer_url: str, requests: list[Request]) -> dict[str, float]:
    """Tokens per query+document pair (`<s> q </s></s> d </s>`), counted by llama-server's
    tokenizer for the GGUF."""
    def count(text: str) -> int:
        response = client.post(f"{peer_url}/tokenize", json={"content": text, "add_special": False})
        response.raise_for_status()
        return len(response.json()["tokens"])

    counts = [count(r.query) + count(d) + 4 for r in requests for d in r.documents]
    return {"min": min(counts), "mean": statistics.fmean(counts), "max": max(counts), "pairs": len(counts)}


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    """Parsed command line."""

    gguf: Path | None
    hf_dir: Path | None
    shape: str
    work_dir: Path
    llama_src: Path | None
    llama_server: Path
    threads: int
    out: Path
    batch_tokens: list[int]
    peer_settings: list[PeerSettings]
    latency_runs: int
    bulk_runs: int
    sweep_runs: int
    clients: int
    requests_per_client: int
    bulk_docs: int
    docs_per_request: int
    cross_encoder: bool
    ce_batch_size: int


def parse_peer_settings(text: str) -> list[PeerSettings]:
    """`4:512,8:1024` -> [(np 4, ub 512), (np 8, ub 1024)]."""
    settings = []
    for item in text.split(","):
        parallel, ubatch = item.split(":")
        settings.append(PeerSettings(int(parallel), int(ubatch)))
    return settings


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """Read the command line (the hidden helper subcommands are handled in main)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gguf", type=Path, help="existing reranker GGUF (default: generate one)")
    p.add_argument("--hf-dir", type=Path, help="its Hugging Face checkpoint, for CrossEncoder")
    p.add_argument("--shape", choices=sorted(SHAPES), default="base", help="shape of a generated model")
    p.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR,
                   help="models, builds and logs (default /tmp/bench)")
    p.add_argument("--llama-src", type=Path, help="llama.cpp source tree (default: fetch the pinned sdist)")
    p.add_argument("--llama-server", type=Path, help="llama-server binary (default: build one into WORK_DIR)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for every engine")
    p.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON results; .md beside it")
    p.add_argument("--batch-tokens", default="256,512,1024,2048", help="our --batch-tokens values to sweep")
    p.add_argument("--peer-settings", default="4:512,8:1024,16:2048",
                   help="llama-server NP:UB pairs to sweep (-b = -ub)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed 3-document requests")
    p.add_argument("--bulk-runs", type=int, default=3, help="timed 64-document requests per engine")
    p.add_argument("--sweep-runs", type=int, default=1, help="timed 64-document requests per sweep setting")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients in workload 3")
    p.add_argument("--requests-per-client", type=int, default=2, help="requests each client sends")
    p.add_argument("--bulk-docs", type=int, default=64, help="documents in the bulk request")
    p.add_argument("--docs-per-request", type=int, default=4, help="documents per concurrent request")
    p.add_argument("--no-cross-encoder", dest="cross_encoder", action="store_false", help="skip CrossEncoder")
    p.add_argument("--ce-batch-size", type=int, default=32, help="CrossEncoder.predict batch size")
    p.add_argument("--quick", action="store_true", help="fewer runs and no sweeps: a smoke test")
    a = p.parse_args(argv)
    if a.quick:
        a.latency_runs, a.bulk_runs, a.requests_per_client = 10, 1, 1
        a.batch_tokens, a.peer_settings = "512", a.peer_settings.split(",")[0]
    return Options(
        gguf=a.gguf, hf_dir=a.hf_dir, shape=a.shape, work_dir=a.work_dir, llama_src=a.llama_src,
        llama_server=a.llama_server or a.work_dir / "llama-build" / "bin" / "llama-server", threads=a.threads,
        out=a.out, batch_tokens=[int(x) for x in a.batch_tokens.split(",")],
        peer_settings=parse_peer_settings(a.peer_settings), latency_runs=a.latency_runs, bulk_runs=a.bulk_runs,
        sweep_runs=a.sweep_runs, clients=a.clients, requests_per_client=a.requests_per_client,
        bulk_docs=a.bulk_docs, docs_per_request=a.docs_per_request, cross_encoder=a.cross_encoder,
        ce_batch_size=a.ce_batch_size,
    )


def llama_cpp_source(opts: Options) -> Path:
    """The llama.cpp tree for the converter and the build: given, cached, or fetched from PyPI."""
    if opts.llama_src:
        return opts.llama_src
    sdist_dir = opts.work_dir / "sdist"
    tree = sdist_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"
    if not tree.is_dir():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                        f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(sdist_dir)], check=True)
        with tarfile.open(sdist_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz") as tar:
            tar.extractall(sdist_dir, filter="data")
    return tree


def ensure_model(opts: Options) -> tuple[Path, Path | None, dict[str, Any]]:
    """The GGUF and HF dir to benchmark: given on the command line, cached, or generated now."""
    if opts.gguf:
        return opts.gguf, opts.hf_dir, {"shape": "given"}
    model_dir = opts.work_dir / f"model-{opts.shape}"
    info_path = model_dir / "model.json"
    if not info_path.exists():
        print(f"generating the {opts.shape} model in {model_dir} (a few minutes)...", flush=True)
        start = time.monotonic()
        subprocess.run([str(FIXTURE_PYTHON), __file__, "_make-model", opts.shape, str(model_dir),
                        str(llama_cpp_source(opts))], check=True)
        print(f"model generated in {time.monotonic() - start:.0f}s", flush=True)
    info = json.loads(info_path.read_text())
    hf_dir = opts.hf_dir or (Path(info["hf_dir"]) if info["hf_dir"] else None)
    return Path(info["gguf"]), hf_dir, info


def ensure_llama_server(opts: Options) -> Path:
    """The llama-server binary, built from the pinned sources if it is not there yet."""
    if not opts.llama_server.exists():
        print(f"building llama-server into {opts.llama_server.parents[1]} (several minutes)...", flush=True)
        subprocess.run(["bash", str(BUILD_SCRIPT), str(llama_cpp_source(opts)), str(opts.llama_server.parents[1])],
                       check=True)
    return opts.llama_server


def sweep_ours(opts: Options, gguf: Path, workloads: Workloads) -> list[dict[str, Any]]:
    """Documents/s of the 64-document request for each --batch-tokens value."""
    import httpx

    rows = []
    for tokens in opts.batch_tokens:
        port = free_port()
        with running("ours", ours_command(gguf, port, opts.threads, tokens), port, {"batch_tokens": tokens},
                     opts.work_dir / "logs" / f"ours-bt{tokens}.log") as server, \
                httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            seconds = measure_bulk(client, server.url, workloads, opts.sweep_runs)
        rows.append({"batch_tokens": tokens, **throughput_summary(seconds, len(workloads.bulk.documents))})
        print(f"  ours --batch-tokens {tokens:5d}: {rows[-1]['best_docs_per_s']:7.2f} docs/s", flush=True)
    return rows


def sweep_peer(opts: Options, binary: Path, gguf: Path, workloads: Workloads) -> list[dict[str, Any]]:
    """Documents/s of the 64-document request for each llama-server -np/-ub pair."""
    import httpx

    rows = []
    for settings in opts.peer_settings:
        port = free_port()
        with running("peer", peer_command(binary, gguf, port, opts.threads, settings), port, asdict(settings),
                     opts.work_dir / "logs" / f"peer-np{settings.parallel}-ub{settings.ubatch}.log") as server, \
                httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            seconds = measure_bulk(client, server.url, workloads, opts.sweep_runs)
        rows.append({**asdict(settings), **throughput_summary(seconds, len(workloads.bulk.documents))})
        print(f"  llama-server {settings.label:18s}: {rows[-1]['best_docs_per_s']:7.2f} docs/s", flush=True)
    return rows


def measure_pair(opts: Options, servers: dict[str, Server], workloads: Workloads) -> dict[str, Any]:
    """Run every workload on both servers, alternating between them so that a change in
    background load affects both alike."""
    import httpx

    results: dict[str, dict[str, Any]] = {name: {} for name in servers}
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for server in servers.values():  # warm-up: first-use allocations, connection set-up
            for _ in range(3):
                rerank(client, server.url, workloads.latency)
        latency: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(opts.latency_runs):
            for name, server in servers.items():
                latency[name].append(time_request(client, server.url, workloads.latency))
        bulk: dict[str, list[float]] = {name: [] for name in servers}
        for name, server in servers.items():
            rerank(client, server.url, Request(workloads.bulk.query, workloads.bulk.documents[:8]))
        for _ in range(opts.bulk_runs):
            for name, server in servers.items():
                bulk[name].append(time_request(client, server.url, workloads.bulk))
        scores = {name: rerank(client, server.url, workloads.bulk) for name, server in servers.items()}
    n_concurrent_docs = sum(len(r.documents) for requests in workloads.concurrent for r in requests)
    for name, server in servers.items():
        wall, latencies = asyncio.run(run_concurrent(server.url, workloads.concurrent))
        results[name]["concurrent"] = {"docs_per_s": n_concurrent_docs / wall, "wall_s": wall,
                                       "requests": len(latencies), **latency_summary(latencies)}
        results[name]["latency"] = latency_summary(latency[name])
        results[name]["bulk"] = throughput_summary(bulk[name], len(workloads.bulk.documents))
    if len(scores) == 2:
        a, b = scores.values()
        results["score_max_abs_diff"] = max(abs(x - y) for x, y in zip(a, b))
    return results


def measure_long_documents(opts: Options, server: Server) -> dict[str, Any]:
    """Workload 4 on our server in each long-document mode, alternating the modes run by run."""
    import httpx

    base = make_long_request(SEED + 7)
    requests = {mode: Request(base.query, base.documents, mode) for mode in ("truncate", "windows")}
    seconds: dict[str, list[float]] = {mode: [] for mode in requests}
    tokens: dict[str, int] = {}
    with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
        for mode, request in requests.items():
            response = client.post(f"{server.url}/v1/rerank", json=request.body())
            response.raise_for_status()
            tokens[mode] = response.json()["usage"]["prompt_tokens"]
        for _ in range(opts.bulk_runs):
            for mode, request in requests.items():
                seconds[mode].append(time_request(client, server.url, request))
    return {mode: {**throughput_summary(seconds[mode], len(base.documents)), "prompt_tokens": tokens[mode]}
            for mode in requests} | {"documents": len(base.documents)}


def run_cross_encoder_subprocess(opts: Options, hf_dir: Path, workloads: Workloads) -> dict[str, Any] | None:
    """Run CrossEncoder under the fixture venv, if it has sentence-transformers."""
    probe = subprocess.run([str(FIXTURE_PYTHON), "-c", "import sentence_transformers"], capture_output=True)
    if probe.returncode != 0:
        print("sentence-transformers not importable in .venv-fixtures: CrossEncoder skipped", flush=True)
        return None
    spec = {"latency": asdict(workloads.latency), "bulk": asdict(workloads.bulk), "warmup": 3,
            "latency_runs": opts.latency_runs, "bulk_runs": opts.bulk_runs, "batch_size": opts.ce_batch_size}
    spec_path = opts.work_dir / "cross-encoder-spec.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run([str(FIXTURE_PYTHON), __file__, "_cross-encoder", str(hf_dir), str(spec_path),
                           str(opts.threads)], capture_output=True, text=True)
    if done.returncode != 0:  # the servers' figures are already measured: report them anyway
        print(f"CrossEncoder failed, skipped:\n{done.stderr[-3000:]}", flush=True)
        return None
    raw = json.loads(done.stdout)
    return {"latency": latency_summary(raw["latency_s"]),
            "bulk": throughput_summary(raw["bulk_s"], len(workloads.bulk.documents)),
            "peak_rss_mib": raw["peak_rss_mib"], "version": raw["version"], "torch": raw["torch"],
            "batch_size": raw["batch_size"]}


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    metric: str
    ours: float | None
    peer: float | None
    cross_encoder: float | None = None
    better: str = "higher"

    @property
    def ratio(self) -> float | None:
        return self.ours / self.peer if self.ours is not None and self.peer else None


def table_rows(results: dict[str, Any]) -> list[Row]:
    """The headline figures, ours next to llama-server's (and CrossEncoder's where it ran)."""
    ours, peer, ce = results["ours"], results["peer"], results.get("cross_encoder") or {}
    w = results["meta"]["workloads"]
    small, bulk = f"{w['latency_documents']}-doc request", f"{w['bulk_documents']}-doc request"
    conc = f"{w['clients']} clients x {w['docs_per_request']}-doc"
    long_docs = (results.get("long_documents") or {}).get("documents", LONG_DOCUMENTS)

    def get(d: dict[str, Any], *path: str) -> float | None:
        for key in path:
            if not isinstance(d, dict) or key not in d:
                return None
            d = d[key]
        return d  # type: ignore[return-value]

    return [
        Row(f"{small} p50 latency (ms)", get(ours, "latency", "p50_ms"), get(peer, "latency", "p50_ms"),
            get(ce, "latency", "p50_ms"), "lower"),
        Row(f"{small} p95 latency (ms)", get(ours, "latency", "p95_ms"), get(peer, "latency", "p95_ms"),
            get(ce, "latency", "p95_ms"), "lower"),
        Row(f"{bulk}, best (docs/s)", get(ours, "bulk", "best_docs_per_s"), get(peer, "bulk", "best_docs_per_s"),
            get(ce, "bulk", "best_docs_per_s")),
        Row(f"{bulk}, median (docs/s)", get(ours, "bulk", "median_docs_per_s"),
            get(peer, "bulk", "median_docs_per_s"), get(ce, "bulk", "median_docs_per_s")),
        Row(f"{conc}: throughput (docs/s)", get(ours, "concurrent", "docs_per_s"),
            get(peer, "concurrent", "docs_per_s")),
        Row(f"{conc}: p50 latency (ms)", get(ours, "concurrent", "p50_ms"),
            get(peer, "concurrent", "p50_ms"), better="lower"),
        Row(f"{conc}: p95 latency (ms)", get(ours, "concurrent", "p95_ms"),
            get(peer, "concurrent", "p95_ms"), better="lower"),
        Row("peak RSS (MiB)", get(ours, "peak_rss_mib"), get(peer, "peak_rss_mib"), get(ce, "peak_rss_mib"), "lower"),
        *(Row(f"{long_docs} long documents, {mode} (docs/s)", get(results, "long_documents", mode, "median_docs_per_s"),
              None) for mode in ("truncate", "windows")),
    ]


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown: headline table, both sweeps and the conditions of the run."""
    meta, ce = results["meta"], results.get("cross_encoder") or {}
    lines = [
        f"# Rerank benchmark ({meta['date']})", "",
        f"Model: {meta['model_desc']}; GGUF {meta['gguf_mib']:.1f} MiB. Threads: {meta['threads']}. "
        f"Load average at start {meta['loadavg_start']}, at end {meta['loadavg_end']} "
        f"({meta['cpus']} CPUs).", "",
        f"Ours: `--batch-tokens {results['ours']['settings']['batch_tokens']}`; llama-server: "
        f"`{results['peer']['settings']['label']} -b {results['peer']['settings']['ubatch']} -fa on`; "
        f"CrossEncoder: sentence-transformers {ce.get('version', '-')}, torch fp32, batch size "
        f"{ce.get('batch_size', '-')}. Tokens per query+document pair: "
        + ", ".join(f"{name} {t['min']}-{t['max']} (mean {t['mean']:.0f})" for name, t in meta["pair_tokens"].items())
        + f". Largest score difference ours vs llama-server: {fmt(results['score_max_abs_diff'], 6)}.", "",
        "| metric | ours | llama-server | ours/llama-server | CrossEncoder | better |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for row in table_rows(results):
        lines.append(f"| {row.metric} | {fmt(row.ours)} | {fmt(row.peer)} | {fmt(row.ratio, 2)} | "
                     f"{fmt(row.cross_encoder)} | {row.better} |")
    n_bulk = meta["workloads"]["bulk_documents"]
    chosen_tokens = results["ours"]["settings"]["batch_tokens"]
    chosen_peer = (results["peer"]["settings"]["parallel"], results["peer"]["settings"]["ubatch"])
    lines += ["", f"## Our --batch-tokens sweep ({n_bulk}-doc request)", "",
              "| --batch-tokens | docs/s |", "|---:|---:|"]
    lines += [f"| {r['batch_tokens']}{' (chosen)' if r['batch_tokens'] == chosen_tokens else ''} | "
              f"{r['best_docs_per_s']:.2f} |" for r in results["sweeps"]["ours"]]
    long = results.get("long_documents")
    if long:
        lines += ["", f"## Long documents ({long['documents']} documents of 2,000-8,000 tokens, ours)", "",
                  "| mode | docs/s (median) | tokens evaluated |", "|---|---:|---:|"]
        lines += [f"| {mode} | {long[mode]['median_docs_per_s']:.3f} | {long[mode]['prompt_tokens']} |"
                  for mode in ("truncate", "windows")]
    lines += ["", f"## llama-server sweep ({n_bulk}-doc request)", "", "| settings | docs/s |", "|---|---:|"]
    lines += [f"| -np {r['parallel']} -ub {r['ubatch']} -b {r['ubatch']}"
              f"{' (chosen)' if (r['parallel'], r['ubatch']) == chosen_peer else ''}"
              f" | {r['best_docs_per_s']:.2f} |" for r in results["sweeps"]["peer"]]
    return "\n".join(lines) + "\n"


def print_table(results: dict[str, Any]) -> None:
    """The headline table on stdout."""
    print(f"\n{'metric':42s} {'ours':>10s} {'llama-srv':>10s} {'ours/peer':>10s} {'CrossEnc':>10s}  better")
    for row in table_rows(results):
        print(f"{row.metric:42s} {fmt(row.ours):>10s} {fmt(row.peer):>10s} {fmt(row.ratio, 2):>10s} "
              f"{fmt(row.cross_encoder):>10s}  {row.better}")


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep row with the highest documents/s."""
    return max(rows, key=lambda r: r["best_docs_per_s"])


def benchmark(opts: Options) -> dict[str, Any]:
    """Prepare the model and llama-server, sweep both servers, then measure both at their best."""
    import httpx

    loadavg_start = load_average()
    gguf, hf_dir, model_info = ensure_model(opts)
    binary = ensure_llama_server(opts)
    workloads = make_workloads(opts.clients, opts.requests_per_client, opts.bulk_docs, opts.docs_per_request)
    print(f"load average {loadavg_start}; GGUF {gguf} ({gguf.stat().st_size / 2**20:.1f} MiB); "
          f"{opts.threads} threads", flush=True)

    print("sweeping llama-server settings...", flush=True)
    peer_sweep = sweep_peer(opts, binary, gguf, workloads)
    print("sweeping our --batch-tokens...", flush=True)
    ours_sweep = sweep_ours(opts, gguf, workloads)
    ours_best, peer_best = best(ours_sweep)["batch_tokens"], best(peer_sweep)
    peer_settings = PeerSettings(peer_best["parallel"], peer_best["ubatch"])

    print(f"measuring ours (--batch-tokens {ours_best}) and llama-server ({peer_settings.label})...", flush=True)
    ours_port, peer_port = free_port(), free_port()
    with running("ours", ours_command(gguf, ours_port, opts.threads, ours_best), ours_port,
                 {"batch_tokens": ours_best}, opts.work_dir / "logs" / "ours-final.log") as ours, \
            running("peer", peer_command(binary, gguf, peer_port, opts.threads, peer_settings), peer_port,
                    {**asdict(peer_settings), "label": peer_settings.label},
                    opts.work_dir / "logs" / "peer-final.log") as peer:
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            pair_tokens = {
                "latency": pair_token_stats(client, peer.url, [workloads.latency]),
                "bulk": pair_token_stats(client, peer.url, [workloads.bulk]),
                "concurrent": pair_token_stats(client, peer.url, [r for c in workloads.concurrent for r in c]),
            }
        measured = measure_pair(opts, {"ours": ours, "peer": peer}, workloads)
        long_documents = None
        if model_info.get("family") != "qwen3":  # its 32k context: one window either way
            print("measuring long documents in both modes (ours)...", flush=True)
            long_documents = measure_long_documents(opts, ours)
    for server in (ours, peer):
        measured[server.name].update(settings=server.settings, peak_rss_mib=server.peak_rss_mib)

    cross_encoder = None
    # Qwen3-Reranker is not a sequence classifier: its checkpoint is kept for benchmark_quant.py only.
    if opts.cross_encoder and hf_dir is not None and model_info.get("family", "xlmr") == "xlmr":
        print("running CrossEncoder...", flush=True)
        cross_encoder = run_cross_encoder_subprocess(opts, hf_dir, workloads)

    gguf_bytes = gguf.stat().st_size
    shape = model_info.get("shape")
    model_desc = describe_model(model_info) if shape in SHAPES else str(gguf)
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "host": platform.node(), "cpus": os.cpu_count(),
            "threads": opts.threads, "loadavg_start": loadavg_start, "loadavg_end": load_average(),
            "gguf": str(gguf), "gguf_bytes": gguf_bytes, "gguf_mib": gguf_bytes / 2**20, "model": model_info,
            "model_desc": model_desc, "llama_server": str(binary), "pair_tokens": pair_tokens,
            "workloads": {"latency_documents": len(workloads.latency.documents),
                          "bulk_documents": len(workloads.bulk.documents), "clients": opts.clients,
                          "requests_per_client": opts.requests_per_client,
                          "docs_per_request": opts.docs_per_request, "latency_runs": opts.latency_runs,
                          "bulk_runs": opts.bulk_runs, "sweep_runs": opts.sweep_runs},
        },
        "sweeps": {"ours": ours_sweep, "peer": peer_sweep},
        "ours": measured["ours"], "peer": measured["peer"],
        "score_max_abs_diff": measured.get("score_max_abs_diff"),
        "cross_encoder": cross_encoder,
        "long_documents": long_documents,
    }


def describe_model(info: dict[str, Any]) -> str:
    dims = (f"{info['layers']} layers, hidden {info['hidden']}, {info['heads']} heads, FFN {info['intermediate']}, "
            f"vocab {info['vocab']}, {info['parameters'] / 1e6:.0f}M parameters")
    if info.get("family") == "qwen3":
        return f"random Qwen3-Reranker (0.6B shape): {dims}, {info['kv_heads']} KV heads, Q8_0"
    return f"random XLM-R cross-encoder: {dims}, f16"


def write_results(out: Path, results: dict[str, Any], table: str) -> None:
    """The results as JSON at `out` and their Markdown table beside it (`.md`); the table printed."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(table)
    print(table)


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch the hidden fixture-venv helpers, or run the benchmark and write the results."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["_make-model"]:
        make_model(args[1], Path(args[2]), Path(args[3]))
        return
    if args[:1] == ["_cross-encoder"]:
        run_cross_encoder(Path(args[1]), Path(args[2]), int(args[3]))
        return
    opts = parse_args(args)
    opts.work_dir.mkdir(parents=True, exist_ok=True)
    results = benchmark(opts)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(results, indent=2) + "\n")
    md_path = opts.out.with_suffix(".md")
    md_path.write_text(markdown(results))
    print_table(results)
    print(f"\nload average: start {results['meta']['loadavg_start']}, end {results['meta']['loadavg_end']}")
    print(f"wrote {opts.out} and {md_path}")


if __name__ == "__main__":
    main()
