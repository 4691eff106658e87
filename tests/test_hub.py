"""Models named as users name them on the hub, found by listing the repository; a local HTTP server
stands in for the hub (HF_ENDPOINT), so huggingface-hub's real listing and download code runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import QWEN3_NOHEAD, XLMR, XLMR_JINA_V2, XLMR_NOKEYS, RunningServer, free_port
from .stand_in_hub import StandInHub

GGUF_REPO = "test-org/xlmr-tiny-GGUF"
# One file per weight type, spelled as the hub's repositories spell them (gpustack: FP16, Q3_K;
# ggml-org: lower case). Any valid reranker stands for each: only the choice is under test.
GGUF_FILES = {"xlmr-tiny-FP16.gguf": XLMR, "xlmr-tiny-Q3_K.gguf": XLMR_JINA_V2, "xlmr-tiny-q8_0.gguf": XLMR_NOKEYS}
BROKEN_REPO = "test-org/Qwen3-Reranker-tiny-GGUF"


@pytest.fixture
def hub() -> Iterator[StandInHub]:
    server = StandInHub({
        GGUF_REPO: {**{name: path.read_bytes() for name, path in GGUF_FILES.items()}, "README.md": b"# tiny\n"},
        BROKEN_REPO: {"qwen3-tiny-F16.gguf": QWEN3_NOHEAD.read_bytes()},
    }).start()
    yield server
    server.stop()


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(
        "default: tiny\n"
        "models:\n"
        "  tiny:\n"
        f"    repo: {GGUF_REPO}\n"
        "    family: bge\n"
        "    context_length: 128\n"
        "    quantization: F16\n"
    )
    return path


def hub_env(tmp_path: Path, endpoint: str, **extra: str) -> dict[str, str]:
    return {"HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": endpoint, "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_ETAG_TIMEOUT": "3", **extra}


def fetch_only(catalog: Path, model: str, env: dict[str, str]) -> tuple[int, str]:
    """`--fetch-only` resolves, downloads and checks the model, prints `name<TAB>path` and exits."""
    return RunningServer("--catalog", str(catalog), "--model", model, "--fetch-only", env=env).wait_exit()


def test_a_catalog_model_is_found_by_listing_downloaded_once_and_served(hub, catalog, tmp_path):
    env = hub_env(tmp_path, hub.endpoint, HF_TOKEN="hf_secret_token")
    srv = RunningServer("--catalog", str(catalog), "--model", "tiny", env=env)
    try:
        srv.wait_ready()
        body = httpx.post(f"{srv.url}/v1/rerank", json={"query": "q", "documents": ["a"]}).json()
        meta = httpx.get(f"{srv.url}/v1/models").json()["data"][0]["meta"]
    finally:
        srv.stop()
    assert body["model"] == "tiny"
    assert {k: meta[k] for k in ("repository", "file", "quantization", "converted")} == {
        "repository": GGUF_REPO, "file": "xlmr-tiny-FP16.gguf", "quantization": "F16", "converted": False}
    assert len(hub.listing_requests()) == 1, "the file is chosen from one listing call"
    assert hub.file_requests() == [f"/{GGUF_REPO}/resolve/main/xlmr-tiny-FP16.gguf"], "only the chosen file"
    ours = [auth for _, path, auth in hub.requests if path.startswith("/api/models/") or "/resolve/" in path]
    assert ours and all(auth == "Bearer hf_secret_token" for auth in ours), "HF_TOKEN on listing and download"
    cached = list((tmp_path / "hf" / "hub").glob("models--test-org--xlmr-tiny-GGUF/snapshots/*/xlmr-tiny-FP16.gguf"))
    assert len(cached) == 1 and cached[0].read_bytes() == XLMR.read_bytes()

    # Offline, the cache alone answers: no listing, no download, nothing asked of the hub.
    hub.requests.clear()
    srv = RunningServer("--catalog", str(catalog), "--model", "tiny", env={**env, "HF_HUB_OFFLINE": "1"})
    try:
        srv.wait_ready()
    finally:
        srv.stop()
    assert hub.requests == []


@pytest.mark.parametrize("model,file", [
    ("tiny", "xlmr-tiny-FP16.gguf"),                     # the catalog's default type
    ("tiny:q8_0", "xlmr-tiny-q8_0.gguf"),                # NAME:QUANT, any case
    ("TINY:Q3_K_M", "xlmr-tiny-Q3_K.gguf"),              # Q3_K_M finds gpustack's Q3_K
    (f"{GGUF_REPO}:F16", "xlmr-tiny-FP16.gguf"),         # OWNER/REPO:QUANT, F16 finds FP16
    (f"{GGUF_REPO}:Q8_0", "xlmr-tiny-q8_0.gguf"),
    (GGUF_REPO, "xlmr-tiny-FP16.gguf"),                  # no tag: the catalog entry of that repository
    (f"{GGUF_REPO}/xlmr-tiny-Q3_K.gguf", "xlmr-tiny-Q3_K.gguf"),   # one file, by name
])
def test_every_model_form_and_tag_spelling_finds_its_file(hub, catalog, tmp_path, model, file):
    code, out = fetch_only(catalog, model, hub_env(tmp_path, hub.endpoint))
    assert code == 0, out
    name, path = out.strip().splitlines()[-1].split("\t")
    assert name == ("tiny" if model.lower().startswith("tiny") else "xlmr-tiny")
    assert Path(path).name == file and Path(path).read_bytes() == GGUF_FILES[file].read_bytes()
    if "/xlmr-tiny-Q3_K.gguf" in model:
        assert hub.listing_requests() == [], "a named file needs no listing"


def test_a_tag_the_repository_lacks_lists_the_tags_it_has(hub, catalog, tmp_path):
    code, out = fetch_only(catalog, f"{GGUF_REPO}:Q5_K_M", hub_env(tmp_path, hub.endpoint))
    assert code == 1
    assert f"error: {GGUF_REPO} has no Q5_K_M file; it has FP16, Q3_K, q8_0" in out
    assert hub.file_requests() == [], "nothing is downloaded"


def test_offline_the_cache_answers_with_the_same_error_text(hub, catalog, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    assert fetch_only(catalog, f"{GGUF_REPO}:F16", env)[0] == 0
    hub.requests.clear()
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    code, out = fetch_only(catalog, f"{GGUF_REPO}:F16", offline)
    assert code == 0, out
    code, out = fetch_only(catalog, f"{GGUF_REPO}:Q8_0", offline)
    assert code == 1
    assert "has no Q8_0 file; it has FP16" in out and "HF_HUB_OFFLINE" in out
    code, out = fetch_only(catalog, "test-org/never-downloaded", offline)
    assert code == 1 and "holds nothing of test-org/never-downloaded" in out
    assert hub.requests == [], "offline, the hub is never asked"


def test_an_unreachable_hub_falls_back_to_the_cache(hub, catalog, tmp_path):
    assert fetch_only(catalog, f"{GGUF_REPO}:F16", hub_env(tmp_path, hub.endpoint))[0] == 0
    code, out = fetch_only(catalog, f"{GGUF_REPO}:F16", hub_env(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert code == 0, out
    assert "cannot be reached" in out and "using the cached files" in out


def test_an_unreachable_hub_without_cache_exits_with_one_clear_message(catalog, tmp_path):
    code, out = fetch_only(catalog, "tiny", hub_env(tmp_path, f"http://127.0.0.1:{free_port()}"))
    assert code == 1
    assert "cannot be reached" in out and f"holds nothing of {GGUF_REPO}" in out
    assert "--model /path/to/model.gguf" in out
    assert "Traceback" not in out


def test_missing_repositories_and_files_are_named(hub, catalog, tmp_path):
    env = hub_env(tmp_path, hub.endpoint)
    code, out = fetch_only(catalog, "test-org/no-such-repo", env)
    assert code == 1 and "no Hugging Face repository test-org/no-such-repo" in out
    code, out = fetch_only(catalog, f"{GGUF_REPO}/not-there.gguf", env)
    assert code == 1 and f"cannot get not-there.gguf from the Hugging Face repository {GGUF_REPO}" in out


def test_a_broken_gguf_is_refused_after_download_with_the_conversion_command(hub, catalog, tmp_path):
    code, out = fetch_only(catalog, BROKEN_REPO, hub_env(tmp_path, hub.endpoint))
    assert code == 1
    assert hub.file_requests() == [f"/{BROKEN_REPO}/resolve/main/qwen3-tiny-F16.gguf"]
    assert "without the tensor cls.output.weight" in out
    assert "`--model Qwen/Qwen3-Reranker-4B`" in out and "make convert MODEL=Qwen/Qwen3-Reranker-4B" in out
