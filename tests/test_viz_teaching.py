"""Teaching with the app (issue 13): colours readable in light and dark mode, complete exports, heatmaps on one
shared scale, and step letters and source colours that do not depend on which columns are shown."""

from __future__ import annotations

import csv
import io
import json
import re
from html.parser import HTMLParser

import pytest

from workbench import compare, viz

# ---------------------------------------------------------------------------------------------- helpers

MIN_CONTRAST = 4.5  # WCAG AA for body text


def _linear(channel: int) -> float:
    c = channel / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours, written here independently of viz.luminance."""
    def lum(c: str) -> float:
        c = c.lstrip("#")
        r, g, b = (int(c[i:i + 2], 16) for i in (0, 2, 4))
        return 0.2126 * _linear(r) + 0.7152 * _linear(g) + 0.0722 * _linear(b)
    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_helper_matches_known_values():
    assert contrast("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1.0)


_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_HEX = r"#[0-9a-fA-F]{6}"


def css_rules(css: str) -> list[tuple[str, dict[str, str]]]:
    """(selector, {property: value}) of every plain rule (keyframes and media blocks are skipped)."""
    css = re.sub(r"@keyframes[^{]*\{(?:[^{}]*\{[^{}]*\})*[^{}]*\}", "", css)
    out = []
    for m in _RULE.finditer(css):
        decls = {}
        for d in m.group(2).split(";"):
            if ":" in d:
                k, v = d.split(":", 1)
                decls[k.strip()] = v.replace("!important", "").strip()
        out.append((m.group(1).strip(), decls))
    return out


def colour_pairs(css: str) -> list[tuple[str, str, str]]:
    """(selector, text, background) of every rule that sets both a text and a background colour."""
    out = []
    for sel, d in css_rules(css):
        fg, bg = d.get("color", ""), d.get("background", d.get("background-color", ""))
        if re.fullmatch(_HEX, fg) and re.fullmatch(_HEX, bg):
            out.append((sel, fg, bg))
    return out


def specificity(selector: str) -> tuple[int, int, int]:
    """CSS specificity of a simple selector (ids, classes/attributes/pseudo-classes, elements)."""
    s = re.sub(r"::?[a-z-]+(\([^)]*\))?", lambda m: " .pseudo" if not m.group().startswith("::") else "", selector)
    ids = len(re.findall(r"#[\w-]+", s))
    classes = len(re.findall(r"\.[\w-]+|\[[^\]]*\]", s))
    elements = len(re.findall(r"(?:^|[\s>+~])([a-zA-Z][\w-]*)", s))
    return ids, classes, elements


GRADIO_PROSE = ".gradio-container-6-31-0 .prose *"  # gives every element in Markdown/HTML the page's text colour


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict, list[str]]] = []  # (tag, attrs, ancestors' classes)
        self.stack: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.elements.append((tag, a, [x.get("class", "") for _, x in self.stack]))
        if tag not in ("br", "meta", "img", "hr", "input"):
            self.stack.append((tag, a))

    def handle_endtag(self, tag):
        while self.stack:
            t, _ = self.stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        self.text.append(data)


def elements(html_text: str) -> _Elements:
    p = _Elements()
    p.feed(html_text)
    p.close()
    return p


def style_of(attrs: dict) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (d.split(":", 1) for d in attrs.get("style", "").split(";") if ":" in d)}


def tokens(values, key="kl"):
    return [{"token": f" w{i}", "teacher_logprob": -1.0, key: v} for i, v in enumerate(values)]


# ---------------------------------------------------------------------------------------------- dark mode


@pytest.mark.parametrize("metric,key,values", [
    ("kl", "kl", [-4 + 8 * i / 64 for i in range(65)]),
    ("logprob", "logprob", [-8 * i / 64 for i in range(65)]),
    ("teacher_logprob", "teacher_logprob", [-8 * i / 64 for i in range(65)]),
    ("delta_logprob", "delta_logprob", [-4 + 8 * i / 64 for i in range(65)] + [None]),
])
def test_every_heatmap_colour_pair_is_readable(metric, key, values):
    h = viz.render_heatmap(tokens(values, key), metric, limit=4, elem_id="hmc", worst=20)
    css = "".join(re.findall(r"<style>(.*?)</style>", h, re.S))
    pairs = colour_pairs(css)
    levels = {sel for sel, _, _ in pairs if re.fullmatch(r"#hmc \.k\d+", sel)}
    assert len(levels) == viz.LEVELS  # every colour class sets its text colour with its background
    for sel, fg, bg in pairs:
        assert contrast(fg, bg) >= MIN_CONTRAST, (sel, fg, bg, contrast(fg, bg))
    sels = {s for s, _, _ in pairs}
    assert {"#hmc", ".dark #hmc", "#hmc .hm-note", ".dark #hmc .hm-note", "#hmc .hm-na"} <= sels
    # every token's class has its colours, and they outrank Gradio's `.prose *` (an id beats two classes)
    tree = elements(h)
    body_classes = {a["class"].split()[0] for t, a, anc in tree.elements if t == "span" and "hm-body" in anc}
    assert body_classes and body_classes <= {s.split(".")[-1] for s in sels if s.startswith("#hmc .")}
    for sel, _, _ in pairs:
        assert specificity(sel) > specificity(GRADIO_PROSE)


def test_worst_token_chips_take_the_chip_colour_not_the_page_colour():
    vals = [0.0, 3.9, -3.9, 0.2, 3.5, -3.5]
    h = viz.render_heatmap(tokens(vals), "kl", limit=4, elem_id="hmw", worst=4)
    tree = elements(h)
    chips = [(a, anc) for t, a, anc in tree.elements if t == "a" and "hm-worst" in " ".join(anc)]
    assert len(chips) == 4 and all(re.fullmatch(r"k\d+", a.get("class", "")) for a, _ in chips)
    codes = [anc for t, _, anc in tree.elements if t == "code"]
    assert len(codes) == 4 and all(re.fullmatch(r"k\d+", anc[-1]) for anc in codes)  # the code sits in its chip
    rules = css_rules("".join(re.findall(r"<style>(.*?)</style>", h, re.S)))
    # the chip's <code> inherits (its chip's text colour), and that rule beats Gradio's `.prose *`
    inherit = [s for s, d in rules if d.get("color") == "inherit" and s.endswith("*")]
    assert "#hmw *" in inherit and specificity("#hmw *") > specificity(GRADIO_PROSE)
    for sel, d in rules:  # nothing else colours an <a> or <code> of the heatmap
        if re.search(r"(^|\s)(a|code)(\b|:)", sel) and "color" in d:
            pytest.fail(f"{sel} sets the colour of a chip: {d}")
    # the chip colours themselves: dark chips (the worst tokens are at the ends of the scale) get white text
    css = "".join(re.findall(r"<style>(.*?)</style>", h, re.S))
    colours = {s.split(".")[-1]: (fg, bg) for s, fg, bg in colour_pairs(css) if s.startswith("#hmw .k")}
    for a, _ in chips:
        fg, bg = colours[a["class"]]
        assert contrast(fg, bg) >= MIN_CONTRAST
    assert colours[chips[0][0]["class"]][0] == "#ffffff"  # the 3.9 chip: dark red, white text


def test_text_colour_is_picked_from_the_background():
    assert viz.text_colour("#ffffff") == "#000000" and viz.text_colour("#053061") == "#ffffff"
    for c in viz.DIVERGING + viz.SEQUENTIAL + viz.QUALITATIVE + (viz.NA_COLOUR,):
        assert contrast(viz.text_colour(c), c) >= MIN_CONTRAST, c
        assert viz.contrast_ratio(viz.text_colour(c), c) == pytest.approx(contrast(viz.text_colour(c), c), rel=1e-3)


def _grouped_steps(n: int = 10):
    steps = [compare.AlignedStep(f"Step {k}: wait, 2 + 2 = 4.", group=k, links=[compare.StepLink("r1", k, 0.9)])
             for k in range(n)]
    return steps + [compare.AlignedStep("A step with no counterpart.")]


def test_step_boxes_and_markers_are_readable_in_light_mode_without_any_stylesheet():
    md = viz.render_steps_markdown(_grouped_steps(), {"r1": "R1 trace"})
    tree = elements(md)
    boxes = [(a, style_of(a)) for t, a, _ in tree.elements if t == "div" and "wb-step" in a.get("class", "").split()]
    assert len(boxes) == 11
    tags = [style_of(a) for t, a, _ in tree.elements if t == "div" and a.get("class") == "wb-step-tag"]
    for (a, st), tag in zip(boxes, tags):
        if "wb-grp" in a["class"]:
            assert "background" in st and "color" in st  # set together, inline
            assert contrast(st["color"], st["background"]) >= MIN_CONTRAST
            assert contrast(tag["color"], st["background"]) >= MIN_CONTRAST
        else:
            assert "background" not in st
            for page in viz.PAGE_BACKGROUNDS["light"]:
                assert contrast(tag["color"], page) >= MIN_CONTRAST
    marks = [style_of(a) for t, a, _ in tree.elements if t == "mark"]
    assert len(marks) == 10
    for st in marks:
        assert contrast(st["color"], st["background"]) >= MIN_CONTRAST


def test_app_css_pairs_colours_for_both_schemes():
    css = viz.APP_CSS
    pairs = colour_pairs(css)
    assert pairs
    for sel, fg, bg in pairs:
        assert contrast(fg, bg) >= MIN_CONTRAST, (sel, fg, bg)
    rules = css_rules(css)
    by_sel = {}
    for sel, d in rules:
        for s in sel.split(","):
            by_sel.setdefault(s.strip(), {}).update(d)
    dark_text = by_sel[".dark .wb-step.wb-grp *"]["color"]
    dark_muted = by_sel[".dark .wb-step.wb-grp .wb-step-tag *"]["color"]
    light_text = by_sel[".wb-step.wb-grp *"]["color"]
    light_muted = by_sel[".wb-step.wb-grp .wb-step-tag *"]["color"]
    for k in range(len(viz.QUALITATIVE)):
        light, dark = by_sel[f".wb-step.wb-g{k}"], by_sel[f".dark .wb-step.wb-g{k}"]
        assert light["background"] == viz.group_colour(k)[1] and dark["background"] == viz.group_colour(k, "dark")[1]
        assert light["background"] != dark["background"]
        for fg in (light_text, light_muted, light["color"]):
            assert contrast(fg, light["background"]) >= MIN_CONTRAST
        for fg in (dark_text, dark_muted, dark["color"]):
            assert contrast(fg, dark["background"]) >= MIN_CONTRAST, (k, fg, dark["background"])
    # a step without a group: its tag on the dark page
    for page in viz.PAGE_BACKGROUNDS["dark"]:
        assert contrast(by_sel[".dark .wb-step .wb-step-tag"]["color"], page) >= MIN_CONTRAST
    # markers keep dark text on yellow inside a dark box; the rule outranks the box's text rule
    mark = by_sel[".dark .wb-step mark.wb-marker"]
    assert contrast(mark["color"], mark["background"]) >= MIN_CONTRAST
    assert specificity(".dark .wb-step mark.wb-marker") > specificity(".dark .wb-step.wb-grp *")
    # error boxes (status line and Evaluate tab): box and everything in it, light and dark
    for cls in ("wb-error", "wb-ev-error"):
        for prefix in ("", ".dark "):
            box = by_sel[f"{prefix}.{cls}.{cls}"]
            inner = by_sel[f"{prefix}.{cls}.{cls} *"]
            assert inner["color"] == box["color"] and contrast(box["color"], box["background"]) >= MIN_CONTRAST
        assert by_sel[f".{cls}.{cls}"]["background"] != by_sel[f".dark .{cls}.{cls}"]["background"]
        assert specificity(f".{cls}.{cls} *") >= specificity(GRADIO_PROSE)
    # the dark rules must win over the light ones (both !important: the more specific wins)
    assert specificity(".dark .wb-step.wb-g0") > specificity(".wb-step.wb-g0")
    assert specificity(".dark .wb-step.wb-grp .wb-step-tag") > specificity(".dark .wb-step.wb-grp *")


def test_breakdown_notes_are_readable_on_both_pages():
    rows = compare.reward_breakdown(compare.result_from_dict({"reward": -1.0}))
    h = viz.render_breakdown(rows)
    css = "".join(re.findall(r"<style>(.*?)</style>", h, re.S))
    notes = {s: d["color"] for s, d in css_rules(css) if s.endswith("td.note.note") and "color" in d}
    assert set(notes) == {".rlt-breakdown td.note.note", ".dark .rlt-breakdown td.note.note"}
    for page in viz.PAGE_BACKGROUNDS["light"]:
        assert contrast(notes[".rlt-breakdown td.note.note"], page) >= MIN_CONTRAST
    for page in viz.PAGE_BACKGROUNDS["dark"]:
        assert contrast(notes[".dark .rlt-breakdown td.note.note"], page) >= MIN_CONTRAST


# ---------------------------------------------------------------------------------------------- shared scales


def test_shared_limit_puts_two_heatmaps_on_one_scale():
    small = tokens([0.1, -0.2, 0.3, 0.25])
    big = tokens([2.0, -3.0, 4.0, 0.3])
    assert viz.make_scale([t["kl"] for t in small], "kl").hi == 0.5  # alone, each would get its own scale
    lim = viz.shared_limit([small, big], "kl")
    assert lim == 5.0 and lim >= viz.make_scale([t["kl"] for t in big], "kl").hi
    a = viz.render_heatmap(small, "kl", limit=lim, elem_id="sa")
    b = viz.render_heatmap(big, "kl", limit=lim, elem_id="sb")
    assert 'data-lo="-5" data-hi="5"' in a and 'data-lo="-5" data-hi="5"' in b
    ca = {m.group(1): m.group(2) for m in re.finditer(r"#sa \.(k\d+)\{background:(#[0-9a-f]{6})", a)}
    cb = {m.group(1): m.group(2) for m in re.finditer(r"#sb \.(k\d+)\{background:(#[0-9a-f]{6})", b)}
    assert ca == cb  # the same class is the same colour
    # 0.3 has the same class in both
    cls_a = re.findall(r'<span class="(k\d+)[^"]*"[^>]*>', a[a.index('class="hm-body"'):])
    cls_b = re.findall(r'<span class="(k\d+)[^"]*"[^>]*>', b[b.index('class="hm-body"'):])
    assert cls_a[2] == cls_b[3]
    lp = viz.shared_limit([[{"logprob": -0.5}], [{"logprob": -7.0}]], "logprob")
    assert lp == 10.0
    assert viz.shared_limit([[], []], "kl") == 1.0


def test_side_by_side_heatmaps_share_one_scale_and_one_legend():
    small = tokens([0.1, -0.2, 0.3, 0.25])
    big = tokens([2.0, -3.0, 4.0, 0.3])
    h = viz.render_heatmaps_side_by_side(small, big, "kl", ("RLT <b>", "R1"), elem_id="pair")
    assert h.count('class="hm-legend"') == 1
    assert "shared by both" in h and "RLT &lt;b&gt;" in h and "<b>RLT <b>" not in h
    assert h.count('data-lo="-5" data-hi="5"') >= 3  # the pair, and each of its two heatmaps
    tree = elements(h)
    assert sum(1 for t, _, anc in tree.elements if t == "span" and "hm-body" in anc) == 8  # both heatmaps' tokens
    assert 'id="pair-a"' in h and 'id="pair-b"' in h
    body_a = h[h.index('id="pair-a"'):h.index('id="pair-b"')]
    body_b = h[h.index('id="pair-b"'):]
    ka = re.findall(r'<span class="(k\d+)', body_a[body_a.index('class="hm-body"'):])
    kb = re.findall(r'<span class="(k\d+)', body_b[body_b.index('class="hm-body"'):])
    assert ka[2] == kb[3]  # 0.3 in both: one colour
    fixed = viz.render_heatmaps_side_by_side(small, big, "kl", limit=2, elem_id="pf")
    assert 'data-lo="-2" data-hi="2"' in fixed and "shared by both, fixed" in fixed
    for _sel, fg, bg in colour_pairs("".join(re.findall(r"<style>(.*?)</style>", h, re.S))):
        assert contrast(fg, bg) >= MIN_CONTRAST


def test_previous_score_only_for_the_same_source():
    old = [{"token": t, "logprob": -1.0} for t in ["a", " b", " c"]]
    new = [{"token": t, "logprob": -0.5} for t in ["a", " B", " c"]]
    assert viz.changed_tokens(new, old) == {1}
    assert viz.changed_tokens(new, old, source_key=("p1", "rlt"), previous_source_key=("p1", "rlt")) == {1}
    assert viz.changed_tokens(new, old, source_key=("p1", "rlt"), previous_source_key=("p1", "r1")) == set()
    same = [{"token": t["token"], "logprob": -0.25} for t in old]
    assert viz.delta_tokens(same, old, source_key=("p1", "rlt"), previous_source_key=("p1", "rlt")) is not None
    assert viz.delta_tokens(same, old, source_key=("p1", "rlt"), previous_source_key=("p2", "rlt")) is None
    assert viz.comparable(None, "x") and not viz.comparable("x", "y")


# ---------------------------------------------------------------------------------------------- stable letters


def _cols():
    return {
        "rlt": ["Compute 48 × 25 = 1200.", "Then 360 ÷ 12 = 30.", "Finally 1200 − 30 = 1170."],
        "r1": ["Hmm, 360 divided by 12 is 30.", "Unrelated musing about pipes.", "48 × 25 gives 1200, yes.",
               "1200 minus 30 is 1170."],
    }


def _letters_and_colours(aligned, names):
    return {n: [(viz.group_label(s.group), viz.group_colour(s.group)) if s.group is not None else None
                for s in aligned[n]] for n in names}


def test_adding_a_source_keeps_the_letters_and_colours_of_the_others():
    two = compare.align_steps(_cols(), threshold=0.4)
    # the third source says something the first two leave unlinked (the musing) and repeats some of the rest
    three_cols = {**_cols(), "generated": ["Musing about pipes, unrelated.", "Compute 48 × 25 = 1200 first.",
                                           "Subtract: 1200 − 30 = 1170."]}
    three = compare.align_steps(three_cols, threshold=0.4)
    before = _letters_and_colours(two, ["rlt", "r1"])
    after = _letters_and_colours(three, ["rlt", "r1"])
    for n in ("rlt", "r1"):
        for b, a in zip(before[n], after[n]):
            if b is not None:
                assert a == b  # a step that had a letter keeps it, and its colour
    assert before["r1"][1] is None and after["r1"][1] is not None  # the musing gained a (new) letter
    assert after["r1"][1][0] not in {x[0] for n in ("rlt", "r1") for x in before[n] if x}
    # and the column order of the dict does not matter
    shuffled = compare.align_steps({k: three_cols[k] for k in ("generated", "r1", "rlt")}, threshold=0.4)
    assert _letters_and_colours(shuffled, list(three_cols)) == _letters_and_colours(three, list(three_cols))
    # links are listed in the order the columns are shown
    assert [lk.column for lk in shuffled["rlt"][0].links] == ["generated", "r1"]


def test_stable_source_order():
    assert compare.stable_source_order(["generated", "x", "r1", "after", "rlt", "before", "y"]) == \
        ["rlt", "r1", "before", "after", "x", "y", "generated"]


def test_source_colours_follow_the_name_not_the_position():
    two = viz.source_colours(["rlt", "r1"])
    more = viz.source_colours(["generated", "custom", "r1", "rlt", "before", "after"])
    assert all(more[s] == two[s] for s in two)
    assert len({more[s] for s in ("rlt", "r1", "before", "after", "generated")}) == 5
    assert viz.source_colour("custom") == viz.source_colour("custom") in viz.QUALITATIVE
    assert viz.source_symbol("r1") == viz.source_symbol("r1")
    pd = pytest.importorskip("pandas")
    pytest.importorskip("plotly")
    long = pd.DataFrame({"id": ["p1", "p1"], "source": ["r1", "generated"], "reward": [-1.0, -2.0],
                         "tokens": [3, 4]})
    fig = viz.distribution_figure(long)
    assert [t.marker.color for t in fig.data] == [viz.source_colour("r1"), viz.source_colour("generated")]
    fig = viz.scatter_figure(long)
    assert [t.marker.color for t in fig.data] == [viz.source_colour("r1"), viz.source_colour("generated")]


# ---------------------------------------------------------------------------------------------- exports

LONG_Q = "A train leaves the station at 9:00 and travels at 80 km/h; a second train leaves at 10:30 at 120 km/h. " * 2


def _problems():
    return [
        {"id": "p1", "question": LONG_Q, "solution": "=HYPERLINK(\"http://x\") at 13:30.\nSecond line.",
         "sources": {"rlt": "First, the gap.\n\nThen, <script>alert(1)</script> close it.",
                     "r1": "Wait, hmm.\n\n-1 is wrong."},
         "completions": {"rlt": "<think>x</think><|begin_of_solution|>First, the gap."},
         "meta": {"topic": "rates", "difficulty": "easy", "recorded": {"rlt": -0.7}, "file": "demo"}},
        {"id": "p2", "question": "Compute 2+2", "solution": "4", "sources": {"rlt": "Add."}, "completions": {},
         "meta": {"topic": "arith"}},
    ]


def _reward(p, s):
    return compare.result_from_dict({"reward": -1.0 if s == "rlt" else -2.0, "r_ss": -0.5, "r_kl": 0.25})


def _read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_problems_export_keeps_every_text_whole():
    probs = _problems()
    shown = compare.problem_table(probs)
    assert shown.loc[0, "question"].endswith("…")  # the table shortens for display...
    assert compare.problem_table(probs, question_chars=None).loc[0, "question"] == " ".join(LONG_Q.split())
    df = compare.export_problems(probs, rewards=_reward)
    rows = _read_csv(compare.table_to_csv(df))
    r = rows[0]
    assert r["question"] == LONG_Q and "…" not in r["question"]  # ...the export does not
    assert r["solution"] == "'" + probs[0]["solution"]  # whole, and a formula stays text (csv_safe)
    assert r["rlt explanation"] == probs[0]["sources"]["rlt"]
    assert r["r1 explanation"] == probs[0]["sources"]["r1"]
    assert r["rlt completion"] == probs[0]["completions"]["rlt"] and "r1 completion" not in r
    assert r["topic"] == "rates" and r["difficulty"] == "easy" and r["meta file"] == "demo"
    assert float(r["rlt reward"]) == -1.0 and float(r["r1 r_kl"]) == 0.25 and float(r["rlt recorded reward"]) == -0.7
    assert r["rlt steps"] == "2" and r["r1 markers"] == "2"
    assert rows[1]["r1 explanation"] == "" and rows[1]["difficulty"] == ""
    jl = [json.loads(x) for x in compare.table_to_jsonl(df).splitlines()]
    assert jl[0]["question"] == LONG_Q and jl[0]["solution"] == probs[0]["solution"]
    assert jl[1]["r1 explanation"] is None and jl[1]["r1 reward"] is None


def test_explanations_export_holds_the_texts_beside_the_metrics():
    probs = _problems()
    df = compare.export_explanations(probs, rewards=_reward)
    assert list(df.columns[:7]) == ["id", "source", "label", "question", "solution", "explanation", "completion"]
    assert {"tokens", "steps", "markers", "reward", "r_ss", "r_kl", "recorded reward"} <= set(df.columns)
    rows = _read_csv(compare.table_to_csv(df))
    assert len(rows) == 3
    rlt = next(r for r in rows if r["id"] == "p1" and r["source"] == "rlt")
    assert rlt["question"] == LONG_Q and rlt["solution"].startswith("'=HYPERLINK")
    assert rlt["explanation"] == probs[0]["sources"]["rlt"]
    assert rlt["completion"] == probs[0]["completions"]["rlt"] and float(rlt["recorded reward"]) == -0.7
    r1 = next(r for r in rows if r["id"] == "p1" and r["source"] == "r1")
    assert r1["completion"] == "" and r1["recorded reward"] == ""
    jl = [json.loads(x) for x in compare.table_to_jsonl(df).splitlines()]
    assert jl[1]["completion"] is None and jl[1]["explanation"] == "Wait, hmm.\n\n-1 is wrong."
    assert jl[0]["reward"] == -1.0 and jl[0]["question"] == LONG_Q
    # the charts' table is unchanged
    assert "question" not in compare.long_table(probs).columns


class _NoScript(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)


def test_side_by_side_html_is_a_standalone_escaped_page():
    p = {**_problems()[0], "id": "<img src=x onerror=alert(1)>"}
    h = compare.side_by_side_html(p, rewards=_reward, labels={"rlt": "RLT <i>"})
    assert h.startswith("<!doctype html>") and '<meta charset="utf-8">' in h and "@media print" in h
    parser = _NoScript()
    parser.feed(h)
    assert "script" not in parser.tags and "img" not in parser.tags and "think" not in parser.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in h and "RLT &lt;i&gt;" in h
    assert h.count('<section class="col"') == 2
    assert "reward −1.000" in h and "reward −2.000" in h
    assert "=HYPERLINK(&quot;http://x&quot;)" in h  # the whole solution
    assert " ".join(LONG_Q.split()) in " ".join(h.split())
    assert "<mark" in h  # markers highlighted
    tree = elements(h)
    for _tag, a, _ in tree.elements:  # every inline colour pair of the page is readable
        st = style_of(a)
        if "background" in st and "color" in st:
            assert contrast(st["color"], st["background"]) >= MIN_CONTRAST
    body = re.search(r"body\{[^}]*\}", h).group()
    fg, bg = re.search(r"color:(#[0-9a-f]{6})", body).group(1), re.search(r"background:(#[0-9a-f]{6})", body).group(1)
    assert contrast(fg, bg) >= MIN_CONTRAST
    only = compare.side_by_side_html(p, ["r1"], align=False)
    assert only.count('<section class="col"') == 1 and "repeat(1," in only


def test_side_by_side_markdown():
    p = _problems()[0]
    md = compare.side_by_side_markdown(p, rewards=_reward)
    assert md.startswith("# Problem p1") and "## Question" in md and "## Reference solution" in md
    assert "| RLT explanation | " in md and "−1.000" in md
    assert "<script>" not in md and "&lt;script>" in md
    assert md.index("## RLT explanation") < md.index("## R1 trace")
