"""The Hugging Face hub, through huggingface-hub: what a repository holds, and its files on disk.

huggingface-hub reads `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN` and `HF_HUB_OFFLINE`
itself, so listing and downloads share one endpoint, token and cache, as in every Hugging Face tool.
"""

from __future__ import annotations

import logging
from pathlib import Path

import msgspec
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

log = logging.getLogger(__name__)


class HubError(RuntimeError):
    """The hub cannot answer and the cache cannot either; the message says what to do instead."""


class RepoListing(msgspec.Struct, frozen=True, kw_only=True):
    repo: str
    revision: str
    commit: str
    files: list[str]
    from_cache: bool = False


def repo_cache_dir(repo: str) -> Path:
    """huggingface-hub's folder for a model repository (`models--owner--name`)."""
    return Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def list_repo(repo: str, revision: str = "main") -> RepoListing:
    """The repository's files at `revision`: asked of the hub, or, offline or when the hub cannot
    be reached, read from the cache (the files downloaded before, at the commit last seen)."""
    if constants.HF_HUB_OFFLINE:
        return _cached_or_fail(repo, revision, "HF_HUB_OFFLINE is set")
    try:
        info = HfApi().model_info(repo, revision=revision, expand=["sha", "siblings"])
    except GatedRepoError:
        raise HubError(f"the Hugging Face repository {repo} is gated: accept its terms on the hub and "
                       f"set HF_TOKEN to a token of that account") from None
    except RepositoryNotFoundError:
        raise HubError(f"no Hugging Face repository {repo} (endpoint {constants.ENDPOINT}); a private "
                       f"one needs HF_TOKEN") from None
    except RevisionNotFoundError:
        raise HubError(f"the Hugging Face repository {repo} has no revision {revision!r}") from None
    except Exception as exc:  # the hub client raises many kinds (HTTP, connection, timeouts)
        return _cached_or_fail(repo, revision, f"the hub ({constants.ENDPOINT}) cannot be reached: "
                                               f"{_reason(exc)}")
    files = [s.rfilename for s in info.siblings or []]
    return RepoListing(repo=repo, revision=revision, commit=info.sha or revision, files=files)


def cached_listing(repo: str, revision: str) -> RepoListing | None:
    """What the cache holds of `revision`: the snapshot its ref points to (or the commit itself)."""
    cache = repo_cache_dir(repo)
    ref = cache / "refs" / revision
    commit = ref.read_text().strip() if ref.is_file() else revision
    snapshot = cache / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    files = sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file())
    return RepoListing(repo=repo, revision=revision, commit=commit, files=files, from_cache=True)


def _cached_or_fail(repo: str, revision: str, why: str) -> RepoListing:
    listing = cached_listing(repo, revision)
    if listing is None:
        raise HubError(f"{why}, and the cache ({constants.HF_HUB_CACHE}) holds nothing of {repo}. "
                       f"Download it where the hub can be reached (`hf download {repo}`) or serve a "
                       f"local file with `--model /path/to/model.gguf`.")
    log.info("%s: using the cached files of %s at %s", why, repo, listing.commit[:12])
    return listing


def download(repo: str, filename: str, revision: str) -> str:
    """The cached file, downloaded with a progress bar the first time."""
    try:
        return hf_hub_download(repo_id=repo, filename=filename, revision=revision)
    except Exception as exc:  # the hub client raises many kinds (HTTP, offline, connection, auth)
        raise HubError(
            f"cannot get {filename} from the Hugging Face repository {repo} "
            f"(endpoint {constants.ENDPOINT}): {_reason(exc)}. The file is not in the cache "
            f"({constants.HF_HUB_CACHE}). Download it where the hub can be reached "
            f"(`hf download {repo} {filename}`) or serve a local file with `--model /path/to/model.gguf`."
        ) from None


def download_files(repo: str, files: list[str], revision: str) -> Path:
    """The snapshot folder holding `files` (a checkpoint to convert), each downloaded as needed."""
    paths = [Path(download(repo, f, revision)) for f in files]
    return paths[0].parents[len(Path(files[0]).parts) - 1]


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
