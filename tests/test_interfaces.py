"""Every stand-in the tests use, and every real implementation, satisfies the Protocol it stands for.

A fake that drifts from its interface makes a test pass for the wrong reason (a TypeError before the
behaviour under test); comparing members and signatures against the Protocol catches the drift.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import get_type_hints

import numpy as np
import pytest

from server.ray.gateway import RayModels
from server.registry import ModelRegistry
from server.scheduler import Decoder
from server.service import RerankService

from .test_scheduler import SlowDecoder


def protocol_members(protocol: type) -> dict[str, object]:
    """The Protocol's methods (name -> function) and data attributes (name -> None)."""
    names = {n for n in vars(protocol) if not n.startswith("_")} | set(get_type_hints(protocol))
    return {n: vars(protocol).get(n) for n in names}


def mismatches(impl: object, protocol: type) -> list[str]:
    """What `impl` (an instance, or a class where the Protocol has only methods) lacks of
    `protocol`, or declares with other parameters."""
    name_of = getattr(impl, "__name__", type(impl).__name__)
    found = []
    for name, member in sorted(protocol_members(protocol).items()):
        if not callable(member):
            if not hasattr(impl, name):
                found.append(f"{name_of} has no attribute {name}")
            continue
        mine = getattr(type(impl) if not isinstance(impl, type) else impl, name, None)
        if not callable(mine):
            found.append(f"{name_of} has no method {name}")
            continue
        wanted, have = _parameters(member), _parameters(mine)
        if wanted != have:
            found.append(f"{name_of}.{name}({', '.join(have)}) differs from "
                         f"{protocol.__name__}.{name}({', '.join(wanted)})")
        if inspect.iscoroutinefunction(member) != inspect.iscoroutinefunction(mine):
            found.append(f"{name_of}.{name} and {protocol.__name__}.{name} differ in being a coroutine")
    return found


def _parameters(function: object) -> list[str]:
    """Every parameter but `self`, as written (with `=` when it has a default), kinds marked."""
    params = list(inspect.signature(function).parameters.values())[1:]
    return [f"{'*' * (p.kind == p.VAR_POSITIONAL)}{'**' * (p.kind == p.VAR_KEYWORD)}{p.name}"
            f"{'=' * (p.default is not p.empty)}{' (keyword only)' * (p.kind == p.KEYWORD_ONLY)}"
            for p in params]


@pytest.mark.parametrize("cls", [ModelRegistry, RayModels], ids=lambda c: c.__name__)
def test_both_rerank_services_satisfy_the_protocol_the_routes_call(cls):
    assert mismatches(cls, RerankService) == []


def test_the_engine_and_the_scheduler_tests_stand_in_satisfy_the_decoder_protocol(engine):
    assert mismatches(engine, Decoder) == []
    assert mismatches(SlowDecoder(), Decoder) == []


def test_a_drifted_stand_in_is_caught():
    class Drifted:
        """The shape the limits test's fake engine once had: decode without shared_prefix."""

        batch_tokens = 64
        n_seq_max = 4

        def decode(self, pairs: Sequence[np.ndarray]) -> np.ndarray:
            raise RuntimeError

        async def close(self) -> None: ...

    assert mismatches(Drifted(), Decoder) == [
        "Drifted has no attribute causal",
        "Drifted.decode(pairs) differs from Decoder.decode(pairs, shared_prefix=)",
    ]
