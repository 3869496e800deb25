"""Evaluation runs: records, summary, pass@k, resume, bad settings; a fake engine except in the slow tests."""

import json
import math

import pytest

from workbench.cli import main
from workbench.errors import WorkbenchError
from workbench.eval import plots
from workbench.eval.runner import (
    EvalConfig,
    mean_stderr,
    paired_comparison,
    pass_at_k,
    read_records,
    read_summary,
    run_eval,
    summarize,
)
from workbench.sampling import Sample


class FakeBackend:
    """A sampling engine that answers countdown problems as scripted; records the batch sizes it was called with."""

    name, model_name, dtype_name = "fake", "scripted", "none"

    def __init__(self, answers):
        self.answers = answers  # (prompt, n) -> n texts
        self.calls = []

    def chat_prompt(self, user, system):
        return f"<sys>{system}</sys><user>{user}</user>"

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        out = []
        for prompt in prompts:
            out.append([Sample(t, list(range(len(t.split()))), "stop") for t in self.answers(prompt, params.n)])
        return out


def _solutions():
    from workbench.eval.benchmarks import countdown_problems

    return {p["question"]: p["meta"]["solution"] for p in countdown_problems("easy", 20)}


def _backend(right_every=1):
    """Every `right_every`-th sample is the generator's own solution, the others a non-answer."""
    sol = _solutions()
    counter = {"i": 0}

    def answers(prompt, n):
        outs = []
        for _j in range(n):
            counter["i"] += 1
            q = next(q for q in sol if q in prompt)
            outs.append(f"\\boxed{{{sol[q]}}}" if counter["i"] % right_every == 0 else "I think 0")
        return outs

    return FakeBackend(answers)


def test_run_writes_records_and_summary(tmp_path):
    out = tmp_path / "run"
    backend = _backend()
    seen = []
    summary = run_eval(EvalConfig("countdown", limit=5, output_dir=str(out), batch_size=2), engine=backend,
                       progress=lambda d, t, m: seen.append((d, t)), log=lambda m: None)
    assert backend.calls == [2, 2, 1]
    recs = read_records(out)
    assert [r["problem_id"] for r in recs] == [f"countdown-easy-{i:04d}" for i in range(5)]
    r = recs[0]
    for key in ("prompt", "output", "gold", "extracted", "equal", "verdicts", "tokens", "finish_reason", "status"):
        assert key in r
    assert r["prompt"].startswith("<sys>None</sys><user>Using the numbers") and r["equal"] is True
    assert summary == read_summary(out)
    assert summary["accuracy"] == 1.0 and summary["accuracy_stderr"] == 0.0 and summary["complete"] is True
    assert summary["problems"] == 5 and summary["tokens"]["generated"] == sum(x["tokens"] for x in recs)
    assert summary["preset"] == "quick" and summary["params"]["max_new_tokens"] == 256
    assert seen[0] == (0, 5) and seen[-1] == (5, 5)
    assert json.loads((out / "config.json").read_text())["benchmark"] == "countdown"


def test_resume_skips_finished_samples_and_drops_a_torn_line(tmp_path):
    out = tmp_path / "run"
    run_eval(EvalConfig("countdown", limit=3, output_dir=str(out)), engine=_backend(), log=lambda m: None)
    with (out / "records.jsonl").open("a") as fh:
        fh.write('{"problem_id": "countdown-easy-0003", "sam')  # a run killed mid-write
    backend = _backend()
    summary = run_eval(EvalConfig("countdown", limit=5, output_dir=str(out), batch_size=8), engine=backend,
                       log=lambda m: None)
    assert backend.calls == [2]  # only problems 3 and 4 were generated
    recs = read_records(out)
    assert [r["problem_id"] for r in recs] == [f"countdown-easy-{i:04d}" for i in range(5)]
    assert summary["problems"] == 5 and summary["complete"]
    backend = _backend()
    run_eval(EvalConfig("countdown", limit=5, output_dir=str(out)), engine=backend, log=lambda m: None)
    assert backend.calls == []  # nothing left to do


def test_stop_early_and_settings_mismatch(tmp_path):
    out = tmp_path / "run"
    summary = run_eval(EvalConfig("countdown", limit=4, output_dir=str(out), batch_size=1), engine=_backend(),
                       should_stop=iter([False, True]).__next__, log=lambda m: None)
    assert summary["complete"] is False and summary["samples"] == 1
    with pytest.raises(WorkbenchError, match="other settings.*preset"):
        run_eval(EvalConfig("countdown", limit=4, output_dir=str(out), max_new_tokens=99), engine=_backend(),
                 log=lambda m: None)
    summary = run_eval(EvalConfig("countdown", limit=4, output_dir=str(out), max_new_tokens=99), engine=_backend(),
                       log=lambda m: None, overwrite=True)
    assert summary["samples"] == 4


def test_sampling_pass_at_k(tmp_path):
    out = tmp_path / "run"
    summary = run_eval(EvalConfig("countdown", preset="sample-8", n=4, limit=3, output_dir=str(out)),
                       engine=_backend(right_every=2), log=lambda m: None)
    assert summary["samples"] == 12 and set(summary["metrics"]) == {"pass@1", "pass@4"}
    assert summary["metrics"]["pass@1"]["mean"] == pytest.approx(0.5)
    assert summary["metrics"]["pass@4"]["mean"] == pytest.approx(1.0)
    assert len({(r["problem_id"], r["sample"]) for r in read_records(out)}) == 12


def test_pass_at_k_and_stderr():
    assert pass_at_k(4, 0, 1) == 0 and pass_at_k(4, 4, 4) == 1
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    m, se = mean_stderr([1, 0, 1, 0])
    assert m == 0.5 and se == pytest.approx(math.sqrt((4 * 0.25 / 3) / 4))
    assert mean_stderr([]) == (None, None)


def test_summary_reports_skythought_disagreement():
    recs = [{"problem_id": str(i), "sample": 0, "equal": eq, "verdicts": {"workbench": eq, "skythought": sky}, "tokens": 3}
            for i, (eq, sky) in enumerate([(True, True), (False, True), (False, False), (True, True)])]
    s = summarize(recs, pass_k=[1])
    assert s["accuracy"] == 0.5
    assert s["skythought"]["accuracy"] == 0.75 and s["skythought"]["disagreement_rate"] == 0.25


def test_accuracy_figure_and_table():
    sums = [{"benchmark": b, "title": b, "model": m, "preset": "skythought", "accuracy": a, "accuracy_stderr": 0.05,
             "metrics": {"pass@1": {"mean": a, "stderr": 0.05}}, "problems": 30, "samples": 30, "created_at": "x",
             "skythought": None, "tokens": {"mean_per_sample": 10}}
            for b, m, a in [("AIME 2024", "a", 0.1), ("MATH-500", "a", 0.7), ("AIME 2024", "b", 0.2)]]
    fig = plots.accuracy_figure(sums + [None])
    assert [t.name for t in fig.data] == ["a", "b"]
    assert list(fig.data[0].y) == [pytest.approx(10), pytest.approx(70)]
    assert list(fig.data[0].error_y.array) == [pytest.approx(5), pytest.approx(5)]
    assert len(plots.accuracy_figure([]).layout.annotations) == 1  # an empty state, not an error
    table = plots.summaries_table(sums)
    assert list(table["accuracy %"]) == [10.0, 70.0, 20.0]


def _records(folder, verdicts):
    folder.mkdir()
    (folder / "records.jsonl").write_text("".join(
        json.dumps({"problem_id": pid, "sample": s, "equal": eq}) + "\n"
        for pid, eqs in verdicts.items() for s, eq in enumerate(eqs)))
    return folder


def test_paired_comparison(tmp_path, capsys):
    base = _records(tmp_path / "base", {"a": [0], "b": [0], "c": [1], "d": [0], "x": [1]})
    other = _records(tmp_path / "other", {"a": [1], "b": [1], "c": [0], "d": [0], "y": [0]})
    r = paired_comparison(base, other)  # a, b, c, d shared; differences +1, +1, -1, 0
    assert r["problems"] == 4 and (r["wins"], r["losses"]) == (2, 1)
    assert r["base_accuracy"] == 0.25 and r["other_accuracy"] == 0.5 and r["difference"] == 0.25
    sd = math.sqrt(((1 - .25) ** 2 * 2 + (-1 - .25) ** 2 + (0 - .25) ** 2) / 3)
    assert r["stderr"] == pytest.approx(sd / 2) and r["z"] == pytest.approx(0.25 / (sd / 2))
    sampled = _records(tmp_path / "sampled", {"a": [1, 0, 0, 1], "b": [1, 1, 1, 1]})  # per-problem means 0.5, 1
    assert paired_comparison(base, sampled)["difference"] == pytest.approx((0.5 + 1) / 2)
    assert main(["eval", "compare", str(base), str(other), str(sampled)]) == 0
    out = capsys.readouterr().out
    assert "+25.0%" in out and "+75.0%" in out
    with pytest.raises(WorkbenchError, match="no records"):
        paired_comparison(base, tmp_path)
    assert main(["eval", "compare", str(base)]) == 2
    assert main(["eval", "compare", str(base), str(_records(tmp_path / "z", {"q": [1]}))]) == 2  # nothing shared


def test_eval_cli_bad_inputs(tmp_path, capsys):
    assert main(["eval", "run", "--benchmark", "mmlu"]) == 2
    assert "unknown benchmark" in capsys.readouterr().err
    assert main(["eval", "run", "--benchmark", "countdown", "--limit", "0", "--output", str(tmp_path / "x")]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["eval", "run", "--benchmark", "countdown", "--temperature", "-1", "--output", str(tmp_path / "x")]) == 2
    assert "temperature" in capsys.readouterr().err
    assert main(["eval", "run", "--benchmark", "countdown", "--model", "no-such-model", "--limit", "1",
                 "--output", str(tmp_path / "y")]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_eval_cli_with_a_model_folder(tmp_path, capsys, tiny_dir):
    """The done-criterion command, smaller: countdown with a model (the tiny random SmolLM2 of conftest.py: the
    embedded model's architecture and tokenizer) leaves records and a summary."""
    out = tmp_path / "run"
    assert main(["eval", "run", "--benchmark", "countdown", "--model", tiny_dir, "--limit", "2",
                 "--max-new-tokens", "32", "--output", str(out), "--engine", "transformers"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["problems"] == 2 and summary["samples"] == 2 and summary["complete"]
    recs = read_records(out)
    assert len(recs) == 2 and all(r["output"] is not None and "<|im_start|>user" in r["prompt"] for r in recs)
    assert read_summary(out)["accuracy"] == summary["accuracy"]
    assert all(r["engine"] == "transformers" and r["model"] == tiny_dir and r["dtype"] == "float32"
               and r["sampling"]["max_new_tokens"] == 32 and r["sampling"]["temperature"] == 0 for r in recs)
