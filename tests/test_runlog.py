"""A training run's completions logs (workbench.runlog): TRL's completions/*.parquet and the workbench's
completions.jsonl, read into samples, problems (Compare / Heatmap) and score rows.

The question and the solution are recovered from the teacher prompt the trainer saw (`training.rlt.trainer_prompt`)
under the chat templates the project runs on: SmolLM2's (ChatML), Qwen2.5's (rebuilt offline), and a Gemma-style
template that folds the system prompt into the user turn and starts with BOS. The real GRPOTrainer's log is read in
tests/test_train_rlt.py (its 2-step run writes both logs); here the parquet files are written as TRL writes them
(pandas.DataFrame.to_parquet of the same columns).
"""

import copy
import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from workbench import data, formats, runlog  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.models import load_tokenizer  # noqa: E402
from workbench.rewards import RewardConfig  # noqa: E402
from workbench.training.rlt import trainer_prompt  # noqa: E402

QUESTIONS = [
    ("What is 7 * 6?", "7 * 6 = 42. \\boxed{42}"),
    ("A line\n\nwith a blank line, a <tag>, and trailing space  ", "x = 3\n\n\\boxed{3}"),
    ("Kai has 70 cookies and Sam has 45. How many more does Kai have?", "70 - 45 = 25. \\boxed{25}"),
]
GEMMA_STYLE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] + '\n\n' %}"
    "{% set msgs = messages[1:] %}{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n"
    "{% if loop.first %}{{ sys }}{% endif %}{{ m['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


@pytest.fixture(scope="module")
def smol_tok():
    return load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def gemma_style_tok(smol_tok):
    tok = copy.deepcopy(smol_tok)
    tok.chat_template = GEMMA_STYLE
    return tok


@pytest.fixture(scope="module")
def qwen25_tok(qwen_dir):
    return load_tokenizer(str(qwen_dir))


@pytest.mark.parametrize("which", ["smol_tok", "qwen25_tok", "gemma_style_tok"])
@pytest.mark.parametrize("tag_style", ["stratos", "r1"])
def test_question_and_solution_come_back_from_the_trainers_prompt(request, which, tag_style):
    tok = request.getfixturevalue(which)
    config = RewardConfig(tag_style=tag_style)
    for q, sol in QUESTIONS:
        prompt = trainer_prompt(tok, q, sol, config)
        assert q in prompt and sol in prompt
        assert runlog.split_teacher_prompt(prompt, tok, config.teacher_system_prompt, config.tags) == (q, sol)
        # a system prompt the reader is not told (a run of someone else's): found by the template's structure
        custom = RewardConfig(tag_style=tag_style, teacher_system_prompt="You explain. Be brief.")
        prompt = trainer_prompt(tok, q, sol, custom)
        assert runlog.split_teacher_prompt(prompt, tok, None, custom.tags) == (q, sol)


def test_prompts_that_are_not_teacher_prompts_say_why(smol_tok, qwen25_tok, gemma_style_tok):
    config = RewardConfig()
    prompt = trainer_prompt(smol_tok, *QUESTIONS[0], config)
    # SmolLM2 and Qwen2.5 both use ChatML with a given system prompt: either reads the other's prompts
    assert runlog.split_teacher_prompt(prompt, qwen25_tok, None, config.tags) == QUESTIONS[0]
    with pytest.raises(WorkbenchError, match="chat template of the given tokenizer"):
        runlog.split_teacher_prompt(prompt, gemma_style_tok, None, config.tags)  # another model's template
    with pytest.raises(WorkbenchError, match="give the run's model"):
        runlog.split_teacher_prompt(prompt, None, None, config.tags)
    with pytest.raises(WorkbenchError, match="no <\\|begin_of_solution\\|>"):
        runlog.split_teacher_prompt("just a question", smol_tok)
    with pytest.raises(WorkbenchError, match="no reference solution"):
        runlog.split_teacher_prompt(prompt.replace(formats.SOLUTION_END, ""), smol_tok)
    # a template that writes BOS, with a tokenizer that adds it itself: trainer_prompt drops the text's BOS
    bos = gemma_style_tok.bos_token
    full = formats.teacher_prompt(gemma_style_tok, *QUESTIONS[1], None, config.tags)
    assert bos and full.startswith(bos)
    assert runlog.split_teacher_prompt(full[len(bos):], gemma_style_tok, None, config.tags) == QUESTIONS[1]
    assert runlog.split_teacher_prompt(full, gemma_style_tok, None, config.tags) == QUESTIONS[1]
    # conversational prompts: the question is the user message, the solution in the begun assistant turn
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "Q?"},
                {"role": "assistant", "content": formats.teacher_assistant_prefix("S.")}]
    assert runlog.split_teacher_prompt(messages, None) == ("Q?", "S.")


def _trl_log(folder, tok, config, steps=(1, 2, 4), group=2, bad_rows=False):
    """completions/completions_{step:05d}.parquet as GRPOTrainer.log writes them (a DataFrame of these columns)."""
    (folder / "completions").mkdir(parents=True)
    rows_by_step = {}
    for k, step in enumerate(steps):
        q, sol = QUESTIONS[k % len(QUESTIONS)]
        prompt = trainer_prompt(tok, q, sol, config)
        rows = {"step": [step] * group, "prompt": [prompt] * group,
                "completion": [f"Step {step}, sample {j}: subtract.\n\n{formats.EXPLANATION_END}" for j in range(group)],
                "rlt": [-1.0 * step - j for j in range(group)], "r_kl": [0.5 * j for j in range(group)],
                "r_ss": [-1.0 * step for _ in range(group)], "advantage": [0.7 - 1.4 * j for j in range(group)]}
        if bad_rows and step == steps[-1]:
            rows["prompt"][1] = "not a teacher prompt"
        pd.DataFrame(rows).to_parquet(folder / "completions" / f"completions_{step:05d}.parquet")
        rows_by_step[step] = rows
    return rows_by_step


def test_trl_log_reads_into_samples_problems_and_score_rows(tmp_path, smol_tok):
    config = RewardConfig()
    run = tmp_path / "run"
    written = _trl_log(run, smol_tok, config, bad_rows=True)
    smol_tok.save_pretrained(run / "checkpoint-4")  # the run's own tokenizer, found in its newest checkpoint
    (run / "trl_config.json").write_text("{}")
    for spec in (run, run / "completions", run / "completions" / "completions_00002.parquet"):
        kind, files, folder = runlog.find_run_log(spec)
        assert kind == "trl" and folder == run and files
    log = runlog.read_run_log(run)
    assert log.kind == "trl" and log.steps == [1, 2, 4] and len(log.samples) == 5  # 6 rows, one not a prompt
    assert len(log.skipped) == 1 and "completions_00004.parquet: row 2" in log.skipped[0]
    assert "no <|begin_of_solution|>" in log.skipped[0]
    first = log.samples[0]
    assert (first["question"], first["solution"]) == QUESTIONS[0] and first["step"] == 1 and first["problem"] == "p1"
    tokens = len(smol_tok(first["completion"], add_special_tokens=False)["input_ids"])  # TRL logs no length
    assert first["logged"] == {"reward": -1.0, "r_kl": 0.0, "r_ss": -1.0, "advantage": 0.7,
                               "completion_tokens": tokens}
    assert [s["sample"] for s in log.samples] == [1, 2, 1, 2, 1]
    assert "5 samples, steps 1–4 (3 logged)" in log.note() and "skipped 1" in log.note()

    problems = runlog.problems_at(log, [1, 4])
    assert [p["id"] for p in problems] == ["p1", "p3"]
    p1 = problems[0]
    assert list(p1["sources"]) == ["step 1", "step 1 #2"]
    assert p1["sources"]["step 1"] == "Step 1, sample 0: subtract."  # the body; the raw completion is kept
    assert p1["completions"]["step 1 #2"] == written[1]["completion"][1]
    assert p1["meta"]["recorded"] == {"step 1": -1.0, "step 1 #2": -2.0}
    assert p1["meta"]["logged"]["step 1 #2"]["advantage"] == pytest.approx(-0.7)
    assert [list(p["sources"]) for p in runlog.problems_at(log, [1, 2], per_step=1)] == [["step 1"], ["step 2"]]

    rows = runlog.score_rows(log, [2])
    assert [r["id"] for r in rows] == ["p2@2#1", "p2@2#2"] and rows[1]["logged_reward"] == -3.0
    assert (rows[0]["question"], rows[0]["solution"]) == QUESTIONS[1]

    loaded = data.load_problems_report(str(run))  # the one loader of problems: every step
    assert [p["id"] for p in loaded.items] == ["p1", "p2", "p3"] and len(loaded.skipped) == 1
    table = runlog.step_table(log)
    assert [r["step"] for r in table] == [1, 2, 4] and table[0]["reward"] == -1.5 and table[2]["samples"] == 1


def test_a_trl_log_without_a_saved_tokenizer_uses_the_one_given(tmp_path, gemma_style_tok, qwen25_tok):
    config = RewardConfig()
    _trl_log(tmp_path / "run", gemma_style_tok, config)
    with pytest.raises(WorkbenchError, match="give the run's model"):
        runlog.read_run_log(tmp_path / "run")
    log = runlog.read_run_log(tmp_path / "run", fallback_tokenizer=gemma_style_tok)
    assert (log.samples[0]["question"], log.samples[0]["solution"]) == QUESTIONS[0]
    with pytest.raises(WorkbenchError, match="does not follow the chat template"):
        runlog.read_run_log(tmp_path / "run", fallback_tokenizer=qwen25_tok)


def test_the_workbench_log_and_what_is_not_a_log(tmp_path):
    rows = [{"step": s, "policy_step": s - 1, "id": pid, "question": q, "solution": "1", "completion": f"c{s}{j}",
             "reward": float(-s), "r_ss": -1.0, "r_kl": 0.5, "completion_ids": [1, 2]}
            for s, pid, q in ((1, "a", "Q a"), (3, "b", "Q b")) for j in range(2)]
    rows.append({"step": 5, "question": "Q c"})  # no completion: skipped and named
    path = tmp_path / "out" / "completions.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = runlog.read_run_log(tmp_path / "out")
    assert log.kind == "workbench" and log.steps == [1, 3] and [s["problem"] for s in log.samples] == ["a"] * 2 + ["b"] * 2
    assert log.samples[0]["completion_ids"] == [1, 2] and log.samples[0]["policy_step"] == 0
    assert log.samples[0]["logged"] == {"reward": -1.0, "r_ss": -1.0, "r_kl": 0.5}
    assert "line 5" in log.skipped[0] and "question, solution and completion" in log.skipped[0]
    assert runlog.score_rows(log)[0]["completion_ids"] == [1, 2]
    for spec in (tmp_path, tmp_path / "out" / "nothing.jsonl", tmp_path / "missing"):
        assert runlog.find_run_log(spec) is None
    with pytest.raises(WorkbenchError, match="not a completions log"):
        runlog.read_run_log(tmp_path)
    from workbench.cli import main

    assert main(["rank", "--input", str(tmp_path), "--output", str(tmp_path / "o.jsonl")]) == 2  # a folder, no log
    assert main(["score", "--input", str(path), "--steps", "9", "--output", str(tmp_path / "o.jsonl")]) == 2


def test_steps_are_chosen_by_number_range_or_name():
    steps = [1, 5, 10, 20, 40]
    assert runlog.parse_steps(None, steps) == steps == runlog.parse_steps("all", steps)
    assert runlog.parse_steps("first,last", steps) == [1, 40]
    assert runlog.parse_steps("5-20", steps) == [5, 10, 20]
    assert runlog.parse_steps(" 10 , 1", steps) == [1, 10]
    with pytest.raises(WorkbenchError, match="no step 7 .*1, 5, 10, 20, 40"):
        runlog.parse_steps("7", steps)
    with pytest.raises(WorkbenchError, match="'x' is not a step"):
        runlog.parse_steps("1,x", steps)


def test_the_app_opens_a_run_log_with_a_step_picker(tmp_path, smol_tok):
    from workbench.app import compare_tab, data_panel, heatmap_tab
    from workbench.app.context import make_context
    from workbench.compare import SharedModels

    run = tmp_path / "run"
    _trl_log(run, smol_tok, RewardConfig(), steps=(1, 2, 3, 4), group=4)
    smol_tok.save_pretrained(run)
    ctx = make_context(data_spec=str(run), models=SharedModels(), allow_dirs=[str(tmp_path)])
    assert data_panel.run_note(ctx.run_steps, ctx.run_chosen).startswith("training run's samples at steps 1 and 4 (of 4")
    assert ctx.run_steps == [1, 2, 3, 4] and ctx.run_chosen == [1, 4] and ctx.start_error is None
    # two steps: three samples of each fit the six columns; the question sampled at both is one problem, its
    # explanations at the first and the last step side by side
    assert [list(p["sources"]) for p in ctx.problems] == [["step 1", "step 1 #2", "step 1 #3",
                                                           "step 4", "step 4 #2", "step 4 #3"]]
    out = data_panel.on_steps(ctx, str(run), [3], "smollm2-135m", "smollm2-135m", "base")
    problems, steps_update, src, status = out[0], out[6], out[7], out[-1]
    assert steps_update["value"] == [3] and steps_update["visible"] and src == str(run)
    assert [list(p["sources"]) for p in problems] == [["step 3", "step 3 #2", "step 3 #3", "step 3 #4"]]
    assert "samples at step 3 (of 4 logged" in status
    view = compare_tab.on_view(ctx, problems, problems[0]["id"], 0.5, "smollm2-135m", "smollm2-135m")
    heads = [v for v in view if isinstance(v, str) and v.startswith("### ")]
    assert "logged in training at step 3: reward −4.000 · advantage −0.700" in heads[2]  # 0: the problem
    assert "step 3: mean logged reward −4.500 over the 4 samples shown" in compare_tab.data_note(problems)
    choices = heatmap_tab.hm_choices(ctx, problems, problems[0]["id"])
    assert [c[1] for c in choices[0]["choices"]][:4] == ["step 3", "step 3 #2", "step 3 #3", "step 3 #4"]
    hidden = data_panel.on_load(ctx, "demo", None, "smollm2-135m", "smollm2-135m", "base")[6]
    assert hidden["visible"] is False
    # the run over training: every logged step's mean reward, r_ss, r_kl and length (a figure of four panels)
    shown, fig = compare_tab.run_plot(ctx, str(run), "smollm2-135m")
    assert shown["visible"] is True and [a.text for a in fig.layout.annotations] == [
        "reward", "r_ss", "r_kl", "completion_tokens"]
    assert list(fig.data[0].x) == [1, 2, 3, 4] and list(fig.data[0].y) == [-2.5, -3.5, -4.5, -5.5]
    assert compare_tab.run_plot(ctx, "demo")[0]["visible"] is False
    assert runlog.cached_run_log(run) is runlog.cached_run_log(run)  # read once while the files stay the same
    # one uploaded parquet file (no run folder beside it): its prompts are read with the app's teacher's tokenizer
    upload = tmp_path / "upload" / "completions_00003.parquet"
    upload.parent.mkdir()
    upload.write_bytes((run / "completions" / "completions_00003.parquet").read_bytes())
    out = data_panel.on_load(ctx, "demo", str(upload), "smollm2-135m", "smollm2-135m", "base")
    assert [list(p["sources"]) for p in out[0]] == [["step 3", "step 3 #2", "step 3 #3", "step 3 #4"]]
    assert out[6]["choices"] == [3] and out[7] == str(upload) and "samples at step 3 (of 1 logged" in out[-1]
