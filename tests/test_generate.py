"""Streaming explanation generation with the embedded model: growth, stop at the end tag, cancellation."""

from __future__ import annotations

import threading

import pytest

from workbench.errors import WorkbenchError
from workbench.generate import generate_explanation, stream_explanation

Q, S = "Compute 2 + 3.", "2 + 3 = 5. \\boxed{5}"


@pytest.mark.slow
def test_stream_grows_and_respects_max_new_tokens(smollm):
    model, tok = smollm
    parts = list(stream_explanation(model, tok, Q, S, max_new_tokens=8, temperature=0))
    assert parts and all(b.startswith(a) for a, b in zip(parts, parts[1:]))  # each value extends the previous
    assert 0 < len(tok(parts[-1], add_special_tokens=False)["input_ids"]) <= 9
    assert generate_explanation(model, tok, Q, S, max_new_tokens=8, temperature=0) == parts[-1]  # greedy: same text


@pytest.mark.slow
def test_stop_event_and_close_end_generation(smollm):
    model, tok = smollm
    ev = threading.Event()
    ev.set()
    assert len(list(stream_explanation(model, tok, Q, S, max_new_tokens=200, stop_event=ev))) <= 1
    gen = stream_explanation(model, tok, Q, S, max_new_tokens=200, temperature=0)
    next(gen)
    gen.close()  # a cancelled request: the model thread stops within one token
    alive = [t for t in threading.enumerate() if t.name == "sampling-stream"]
    assert not alive


def test_bad_inputs(smollm_tokenizer):
    with pytest.raises(WorkbenchError, match="non-empty question and solution"):
        next(stream_explanation(None, smollm_tokenizer, " ", S))
    with pytest.raises(WorkbenchError, match="max_new_tokens"):
        next(stream_explanation(None, smollm_tokenizer, Q, S, max_new_tokens=0))


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from workbench.models import load_tokenizer

    return load_tokenizer("smollm2-135m")
