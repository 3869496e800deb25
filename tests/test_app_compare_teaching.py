"""The Compare tab and the data panel for teaching (#13): scores that survive a reload, an honest note on what the
texts are, the workbench's own teacher before and after RL, one reward configuration (--recipe, a run's
recipe.yaml), complete exports, generations that keep to their problem and add a column each, scoring progress
beside the buttons. Handlers are called directly, with fake models (no browser, no model)."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path

import pytest

gr = pytest.importorskip("gradio")

from workbench import compare, data, viz  # noqa: E402
from workbench.app import compare_tab, data_panel  # noqa: E402
from workbench.app.common import (  # noqa: E402
    MAX_SOURCES,
    generated_index,
    letter_order,
    ordered_sources,
    reward_config_line,
    source_label,
)
from workbench.app.context import AppContext  # noqa: E402
from workbench.errors import WorkbenchError  # noqa: E402
from workbench.rewards import RewardConfig, RewardResult  # noqa: E402

T = S = "fake-model"
RUN = data.repo_path_of_run()


class FakeTokenizer:
    name_or_path = "fake-tokenizer"

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": text.split()}


class FakeModels:
    """compare.SharedModels without models: a real ScoreCache keyed by the configuration, a fake scorer."""

    def __init__(self, config=None):
        self.config = config or RewardConfig()
        self.cache = compare.ScoreCache()
        self._scorers = {(T, S): "a scorer made with the old configuration"}
        self.calls = []

    def tokenizer(self, name):
        return FakeTokenizer()

    def model(self, name):
        return object()

    def scorer_key(self, teacher, student):
        return (teacher, student, compare._config_key(self.config))

    def cached(self, teacher, student, item):
        return self.cache.get(compare.ScoreCache.key(self.scorer_key(teacher, student), item))

    def score(self, teacher, student, items, progress=False):
        self.calls.append(items)
        out = []
        for it in items:
            text = it.get("explanation") or it.get("completion") or ""
            r = RewardResult(id=it["id"], reward=-0.5 - len(text) / 1000, r_ss=-0.25, r_kl=0.25, kl_mean=0.1)
            self.cache.put(compare.ScoreCache.key(self.scorer_key(teacher, student), it), r)
            out.append(r)
        return out


def _problem(pid="p1", **sources):
    return {"id": pid, "question": "What is 2+2? " + "Long question words. " * 6, "solution": "4",
            "sources": sources or {"rlt": "Add two and two.\n\nIt is 4.", "r1": "Hmm. 2+2.\n\nSo 4."},
            "completions": {}, "meta": {"topic": "arithmetic"}}


def _ctx(tmp_path, problems=None, models=None, **kw) -> AppContext:
    kw.setdefault("folders", [Path(tmp_path).resolve()])
    return AppContext(models=models or FakeModels(), teacher=T, student=S, export_dir=str(tmp_path),
                      problems=problems or [_problem(), _problem("p2")], **kw)


def _progress(*a, **k):
    return None


def _heads(view):
    return view[1 + MAX_SOURCES:1 + 2 * MAX_SOURCES]


def _bodies(view):
    return view[1 + 2 * MAX_SOURCES:]


@pytest.fixture
def quiet(monkeypatch):
    toasts = []
    for name in ("Info", "Warning"):
        monkeypatch.setattr(gr, name, lambda message="", *a, _n=name, **k: toasts.append((_n, message)))
    return toasts


# ---------------------------------------------------------------------------------------------- 1. reload


def _reload(ctx, problems, pid="p1", request=None, query=""):
    """What the page-load chain (compare_tab.wire_load) runs, step by step: [table] + view + [dist, scatter, line]."""
    view = compare_tab.on_view(ctx, problems, pid, 0.5, T, S, request)
    table, msg = compare_tab.on_filter(ctx, problems, T, S, query, False, ["question"], None, "", "", None, True)
    assert msg == ""
    return [table] + view + compare_tab.refresh_from_cache(ctx, problems, T, S, "reward")


def test_a_reloaded_page_shows_the_scores_from_the_shared_cache(tmp_path):
    ctx = _ctx(tmp_path)
    fresh = copy.deepcopy(ctx.problems)  # what a reload (or a second visitor) starts from: the start set again
    before = _reload(ctx, fresh)
    assert len(before) == 1 + compare_tab.N_VIEW + 3
    assert before[0]["rlt reward"].isna().all() and "**reward" not in _heads(before[1:])[0]
    assert "no reward yet" in before[-3].layout.title.text

    compare_tab.score_everything(ctx, ctx.problems, T, S, "base", _progress)  # someone pressed "Score all"
    after = _reload(ctx, copy.deepcopy(ctx.problems), request=gr.Request(session_hash="second-visitor"))
    table, view, (dist, scatter, line) = after[0], after[1:1 + compare_tab.N_VIEW], after[-3:]
    assert scatter.data and scatter.layout.yaxis.title.text != before[-2].layout.yaxis.title.text  # reward, not markers
    assert table["rlt reward"].notna().all() and table["r1 reward"].notna().all()
    assert "**reward" in _heads(view)[0] and "**reward" in _heads(view)[1]
    assert "no reward yet" not in (dist.layout.title.text or "")
    assert line.startswith("**Reward configuration**")
    assert ctx.viewing["second-visitor"] == "p1"


def test_a_load_keeps_the_search_in_its_box(tmp_path):
    # loading other data (or other steps of a run) redraws the table under the search still typed in its box
    from workbench.app import build_app

    demo = build_app(problems=[_problem(), _problem("p2")], models=FakeModels(), export_dir=str(tmp_path),
                     allow_dirs=[str(tmp_path)])
    ui, fns = demo.workbench_context.ui, list(demo.fns.values())
    for name in ("on_load", "on_steps", "on_load_teacher"):
        fn, chain = next(f for f in fns if f.name == name), []
        while (fn := next((f for f in fns if f.trigger_after == fn._id), None)) is not None:
            chain.append(fn)
        filt = [f for f in chain if f.name == "on_filter"]
        assert len(filt) == 1, (name, [f.name for f in chain])
        assert [c._id for c in filt[0].inputs] == [c._id for c in compare_tab.filter_inputs(ui)]
        names = [f.name for f in chain]
        assert names.index("on_view") < names.index("on_filter") < names.index("on_charts"), names
        assert ("run_plot" in names) == (name != "on_steps"), names  # other steps of the same log: the same plot


def test_wire_load_registers_a_page_load_event_and_the_threshold_box_is_wired(tmp_path):
    from workbench.app import build_app

    demo = build_app(problems=[_problem(), _problem("p2")], models=FakeModels(), export_dir=str(tmp_path),
                     allow_dirs=[str(tmp_path)])
    ctx = demo.workbench_context
    fns = list(demo.fns.values())
    load = next(fn for fn in fns if fn.name == "on_page_load")
    chain, fn = [], load
    while (fn := next((f for f in fns if f.trigger_after == fn._id and f.name in
                       ("on_view", "on_filter", "refresh_from_cache")), None)) is not None:
        chain.append(fn)
    # the load's refresh: the problem, then the table, then the charts, each step reading its boxes when it starts
    # (a search typed, or a row clicked, while the load's refresh ran is not undone)
    assert [f.name for f in chain] == ["on_view", "on_filter", "refresh_from_cache"]
    ui = ctx.ui
    assert [c._id for c in chain[0].outputs] == [c._id for c in compare_tab.view_outputs(ui)]
    assert [c._id for c in chain[1].inputs] == [c._id for c in compare_tab.filter_inputs(ui)]
    assert [c._id for c in chain[1].outputs] == [ui.table._id, ui.filter_msg._id]
    assert [c._id for c in chain[2].outputs] == [ui.dist_plot._id, ui.scatter_plot._id, ui.reward_line._id]
    thr = ctx.ui.threshold._id
    assert any((thr, "change") in [tuple(t) for t in fn.targets] for fn in demo.fns.values())
    score = next(fn for fn in demo.fns.values() if fn.name == "score_everything")
    assert [c._id for c in score.show_progress_on] == [ctx.ui.score_msg._id]
    # the table: id, then the reward columns (reachable at 1024 px), then the question
    cols = list(compare_tab.table_df(ctx, ctx.problems, T, S).columns)
    assert cols[:4] == ["id", "rlt reward", "r1 reward", "question"]


def test_the_score_buttons_are_off_while_scoring_and_the_count_shows_beside_them(tmp_path):
    ctx = _ctx(tmp_path, problems=[_problem(), _problem("p2", rlt="Other.", r1="Other, too.")])
    a, b, msg = compare_tab.scoring_started(ctx)
    assert a.interactive is False and b.interactive is False and "scoring" in msg
    compare_tab.score_problem(ctx, ctx.problems, "p1", T, S, "base", _progress)
    a, b, msg = compare_tab.scoring_done(ctx, ctx.problems, "p1", T, S)
    assert a.interactive is True and b.interactive is True
    assert "2 of 2 explanations of this problem, 2 of 4 in the data" in msg


# ---------------------------------------------------------------------------------------------- 2. honesty


def test_the_note_says_the_demo_texts_are_illustrative_and_what_a_small_student_can_judge():
    note = compare_tab.data_note(data.demo_problems(), "smollm2-135m")
    assert "illustrative" in note and "written for this project" in note
    assert "135M" in note and "predictable" in note and "noisy judge" in note and "7B" in note
    assert "illustrative" not in compare_tab.data_note([_problem()])


def test_one_click_loads_the_workbench_teacher_before_and_after_rl_with_its_recorded_rewards(tmp_path, quiet):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ctx = _ctx(tmp_path, folders=[elsewhere.resolve()])  # the recorded run is the project's, not a user's file
    new, table, picker, _, _, line, steps, src, status = data_panel.on_load_teacher(ctx, T, S, "base")
    assert len(new) == 32 and set(new[0]["sources"]) == {"before", "after"} and picker["value"] == new[0]["id"]
    assert "Teacher before RL" in line
    note = data_panel.on_data_note(ctx, new, S)
    assert "before and after RL" in note and "2-core CPU" in note and "mean recorded reward" in note
    view = compare_tab.on_view(ctx, new, new[0]["id"], 0.5, T, S)
    recorded = new[0]["meta"]["recorded"]["after"]
    assert f"recorded in training: reward {viz.fmt(recorded)}" in _heads(view)[1]
    assert data_panel.on_load(ctx, "cpu-teacher", None, T, S, "base")[0][0]["id"] == new[0]["id"]  # typed, too


# ---------------------------------------------------------------------------------------------- 3. reward config


def test_reward_config_line_names_tokenisation_terms_penalties_prompts_and_origin():
    line = reward_config_line(RewardConfig())
    assert "defaults (no recipe)" in line and "tokenisation joint" in line and "3·mean + 0.03·max" in line
    assert "trailing-text penalty 0" in line and "prompts: teacher default, student default" in line
    from workbench.training.config import reward_config

    run = reward_config(RUN)
    line = reward_config_line(run, "results/cpu/teacher_rlt")
    assert "tokenisation generated" in line and "trailing-text penalty -1" in line
    assert "from `results/cpu/teacher_rlt`" in line
    custom = reward_config_line(RewardConfig(teacher_system_prompt="Be brief."))
    assert "teacher custom, student default" in custom


def test_loading_a_runs_recipe_changes_the_configuration_and_hides_scores_of_the_old_one(tmp_path, quiet):
    allowed = tmp_path / "allowed"
    (allowed / "run").mkdir(parents=True)
    shutil.copy(RUN / "recipe.yaml", allowed / "run" / "recipe.yaml")
    models = FakeModels()
    ctx = _ctx(tmp_path, models=models, folders=[allowed.resolve()])
    compare_tab.score_problem(ctx, ctx.problems, "p1", T, S, "base", _progress)
    lookup = ctx.rewards_lookup(T, S)
    assert lookup(ctx.problems[0], "rlt") is not None

    line = data_panel.on_recipe(ctx, str(allowed / "run"))
    assert "tokenisation generated" in line and ctx.reward_config.teacher_tokenization == "generated"
    assert models._scorers == {}  # made again, with the new configuration, on their next use
    assert ctx.reward_source == str(allowed / "run") and quiet and quiet[-1][0] == "Info"
    assert lookup(ctx.problems[0], "rlt") is None  # a score of the old configuration is not shown
    assert compare_tab.table_df(ctx, ctx.problems, T, S)["rlt reward"].isna().all()

    line = data_panel.on_recipe(ctx, "")  # back to the defaults: their scores are cached still
    assert "defaults (no recipe)" in line and lookup(ctx.problems[0], "rlt") is not None

    assert "tokenisation generated" in data_panel.on_recipe(ctx, "cpu-teacher")  # the recorded run's
    before = ctx.reward_config
    refused = data_panel.on_recipe(ctx, str(RUN))  # outside the allowed folders
    assert "not in a folder this app may read" in refused and ctx.reward_config is before
    assert "does not exist" in data_panel.on_recipe(ctx, str(allowed / "nope.yaml"))


def test_workbench_app_recipe_scores_with_the_runs_configuration(monkeypatch):
    from workbench import cli
    from workbench.app import launch

    made = {}

    class Models:
        def __init__(self, device="auto", config=None):
            made["models"], self.config = self, config

        def scorer(self, teacher, student):
            return None

    class Built(Exception):
        pass

    def fake_build(**kw):
        made["build"] = kw
        raise Built

    monkeypatch.setattr(launch.compare, "SharedModels", Models)
    monkeypatch.setattr(launch, "build_app", fake_build)
    args = cli.build_parser().parse_args(["app", "--recipe", str(RUN), "reward.kl_coeffs=[2,0.02]"])
    with pytest.raises(Built):
        launch.launch_from_args(args)
    config = made["models"].config
    assert config.teacher_tokenization == "generated" and config.trailing_text_penalty == -1.0
    assert config.kl_coeffs == [2.0, 0.02] and str(RUN) in made["models"].reward_source
    args = cli.build_parser().parse_args(["app", "--recipe", "/no/such/recipe.yaml"])
    with pytest.raises(WorkbenchError, match="does not exist"):
        launch.launch_from_args(args)


# ---------------------------------------------------------------------------------------------- 4. exports


def test_export_writes_whole_problems_explanations_and_the_problem_side_by_side(tmp_path):
    probs = [_problem("a/../b"), _problem("p2")]
    ctx = _ctx(tmp_path, problems=probs)
    compare_tab.score_everything(ctx, probs, T, S, "base", _progress)
    paths = [Path(p) for p in compare_tab.on_export(ctx, probs, T, S, "a/../b", 0.5)]
    assert all(p.parent == tmp_path and p.is_file() for p in paths)
    by = {(p.name.split("-2")[0], p.suffix): p for p in paths}  # prefix (before the date), suffix
    assert set(by) == {("rlt-problems", ".csv"), ("rlt-problems", ".jsonl"), ("rlt-explanations", ".csv"),
                       ("rlt-explanations", ".jsonl"), ("rlt-problem-a_.._b", ".html"), ("rlt-problem-a_.._b", ".md")}
    rows = list(csv.DictReader(io.StringIO(by["rlt-problems", ".csv"].read_text(encoding="utf-8"))))
    assert rows[0]["question"] == probs[0]["question"] and "…" not in rows[0]["question"]  # whole, not the display's
    assert rows[0]["rlt explanation"] == probs[0]["sources"]["rlt"] and rows[0]["rlt reward"]
    lines = [json.loads(x) for x in by["rlt-explanations", ".jsonl"].read_text(encoding="utf-8").splitlines()]
    assert {"question", "solution", "explanation", "reward"} <= set(lines[0])
    assert lines[0]["explanation"] == probs[0]["sources"]["rlt"] and lines[0]["reward"] is not None
    page = by["rlt-problem-a_.._b", ".html"].read_text(encoding="utf-8")
    assert "Problem a/../b" in page and "RLT explanation" in page and "reward" in page
    assert "## RLT explanation" in by["rlt-problem-a_.._b", ".md"].read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------- 5. generation


def _streams(texts, hook=None):
    def fake(model, tokenizer, question, solution, **kw):
        fake.kwargs = kw
        for i, t in enumerate(texts):
            if hook:
                hook(i, kw)
            yield t
    return fake


def test_a_stream_stays_with_its_problem_when_another_is_opened(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path)
    probs = ctx.problems
    req = gr.Request(session_hash="s")
    compare_tab.on_view(ctx, probs, "p1", 0.5, T, S, req)

    def switch(i, kw):
        if i == 1:  # the user opens p2 while p1's explanation is being written
            compare_tab.on_view(ctx, probs, "p2", 0.5, T, S, req)

    monkeypatch.setattr(compare_tab, "stream_explanation", _streams(["One.", "One.\n\nTwo.", "One.\n\nTwo. Three."],
                                                                    switch))
    outs = list(compare_tab.generate(ctx, probs, "p1", T, S, 32, 0.7, 0.5, req))
    assert "One." in _bodies(outs[0][1:])[2]  # p1 shown: its column is written
    for out in outs[1:]:  # p2 shown: nothing of p1's stream reaches the columns (the state is still sent)
        assert out[0] is probs and out[1:] == [gr.skip()] * compare_tab.N_VIEW
    assert probs[0]["sources"]["generated"] == "One.\n\nTwo. Three."  # written into p1's state
    assert "generated" not in probs[1]["sources"]


def test_each_generate_adds_a_sample_with_its_own_seed_and_a_stopped_one_says_so(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, problems=[_problem()])
    probs = ctx.problems
    fake = _streams(["First sample."])
    monkeypatch.setattr(compare_tab, "stream_explanation", fake)
    list(compare_tab.generate(ctx, probs, "p1", T, S, 32, 0.7, 0.5, None))
    assert fake.kwargs["seed"] == 0 and fake.kwargs["system_prompt"] is None
    req = gr.Request(session_hash="s")
    fake2 = _streams(["Second", "Second sample, cut"], hook=lambda i, kw: compare_tab.stop(ctx, req) if i else None)
    monkeypatch.setattr(compare_tab, "stream_explanation", fake2)
    outs = list(compare_tab.generate(ctx, probs, "p1", T, S, 32, 0.7, 0.5, req))
    p = probs[0]
    assert fake2.kwargs["seed"] == 1
    assert p["sources"]["generated"] == "First sample." and p["sources"]["generated-2"] == "Second sample, cut"
    assert p["meta"]["generated"]["generated-2"]["stopped"] and not p["meta"]["generated"]["generated"]["stopped"]
    heads = _heads(outs[-1][1:])
    assert heads[2].startswith("### Generated (teacher)\n") and "stopped" not in heads[2]
    assert heads[3].startswith("### Generated (teacher) #2 (stopped)") and "**stopped**" in heads[3]
    assert ctx.stop_events == {} and ctx.streams == {}
    # columns in the order made; step letters never move when a sample is added
    assert ordered_sources(["generated-10", "generated", "rlt", "generated-2", "x"]) == \
        ["rlt", "x", "generated", "generated-2", "generated-10"]
    assert letter_order(["generated-2", "x", "generated", "r1", "rlt"]) == ["rlt", "r1", "x", "generated",
                                                                            "generated-2"]
    assert generated_index("generated-1") is None and generated_index("generated-3") == 3
    assert source_label("generated-3") == "Generated (teacher) #3"


def test_a_full_problem_replaces_its_newest_sample(tmp_path, monkeypatch, quiet):
    full = _problem(**{f"s{k}": f"Text {k}." for k in range(MAX_SOURCES - 1)}, generated="Old.")
    ctx = _ctx(tmp_path, problems=[full])
    assert compare_tab.next_sample_name(full) == ("generated", True)
    monkeypatch.setattr(compare_tab, "stream_explanation", _streams(["New."]))
    list(compare_tab.generate(ctx, ctx.problems, "p1", T, S, 32, 0.7, 0.5, None))
    assert full["sources"]["generated"] == "New." and quiet and "replaces" in quiet[0][1]
    no_room = _problem(**{f"s{k}": "x" for k in range(MAX_SOURCES)})
    with pytest.raises(gr.Error, match="already shows"):
        compare_tab.next_sample_name(no_room)


def test_the_threshold_a_view_is_drawn_with_changes_the_alignment(tmp_path):
    ctx = _ctx(tmp_path, problems=[_problem(a="Add two and two to get four.", b="Add two and two, then four.")])
    loose = _bodies(compare_tab.on_view(ctx, ctx.problems, "p1", 0.2, T, S))[0]
    strict = _bodies(compare_tab.on_view(ctx, ctx.problems, "p1", 0.95, T, S))[0]
    assert loose != strict  # the value the number box sends (wired with .change) changes the alignment
