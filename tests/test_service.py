"""service.py: which model a request gets, and what a model that cannot serve yet says."""

from __future__ import annotations

import pytest

from server.faults import ModelNotFound, ModelNotReady
from server.service import LoadState, known_name, served_name, unavailable


def test_one_served_model_answers_to_any_name():
    assert served_name(["bge"], "whatever-gpustack-sends") == "bge"
    assert served_name(["bge"], None) == "bge"


def test_with_several_models_the_name_picks_one_and_an_unknown_name_is_refused():
    assert served_name(["bge", "qwen3"], "qwen3") == "qwen3"
    assert served_name(["bge", "qwen3"], None) == "bge"
    with pytest.raises(ModelNotFound, match=r"model 'x' is not served here; served: bge, qwen3"):
        served_name(["bge", "qwen3"], "x")
    with pytest.raises(ModelNotFound):
        known_name(["bge"], "x")


def test_a_model_that_cannot_serve_says_why():
    assert isinstance(unavailable(LoadState.LOADING, None), ModelNotReady)
    assert str(unavailable(LoadState.LOADING, None)) == "the model is still loading"
    assert str(unavailable(LoadState.FAILED, "no such file")) == "the model failed to load: no such file"
