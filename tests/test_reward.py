"""The RLT reward against an independent, straightforward computation written here.

The reference follows the official code's algorithm: one completion at a time, the whole text through the
model, a full-vocabulary log-softmax at every position. Its token spans are computed independently of the
tokenizer's offset mapping (byte lengths of the token strings); with `search_from_start` it reproduces the
official search for the explanation's token list, which goes wrong when the explanation repeats the question.
"""

import math
import re

import pytest
import torch

from workbench import formats
from workbench.errors import WorkbenchError
from workbench.rewards import RewardConfig, RLTReward, RLTScorer

pytestmark = pytest.mark.slow

TS, TE = "<|begin_of_solution|>", "<|end_of_solution|>"
ES, EE = "<|begin_of_explanation|>", "<|end_of_explanation|>"


def _find(seq, sub):
    starts = [i for i in range(len(seq) - len(sub) + 1) if seq[i:i + len(sub)] == sub]
    return starts[0] if starts else None


def _byte_decoder():
    """GPT-2's byte-level BPE alphabet, inverted: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


BYTE_DEC = _byte_decoder()


def _byte_ranges(tok, ids):
    """Byte range of every token in the UTF-8 text, from the token strings alone (no offset mapping)."""
    added, pos, out = set(tok.get_added_vocab()), 0, []
    for t in tok.convert_ids_to_tokens(ids):
        n = len(t.encode()) if t in added else len(bytes(BYTE_DEC[c] for c in t))
        out.append((pos, pos + n))
        pos += n
    return out


def _inside(tok, ids, text, a, b):
    """Indices of the tokens lying entirely inside characters [a, b) of text."""
    lo, hi = len(text[:a].encode()), len(text[:b].encode())
    return [i for i, (s, e) in enumerate(_byte_ranges(tok, ids)) if e > s and s >= lo and e <= hi]


def _common(tok, t_ids, t_text, t_idx, t0, s_ids, s_text, s_idx, s0):
    """Keep the explanation tokens found in both texts (same id, same bytes relative to the span start)."""
    t_r, s_r = _byte_ranges(tok, t_ids), _byte_ranges(tok, s_ids)
    t0b, s0b = len(t_text[:t0].encode()), len(s_text[:s0].encode())
    tk = {(t_r[i][0] - t0b, t_r[i][1] - t0b, t_ids[i]) for i in t_idx}
    sk = {(s_r[i][0] - s0b, s_r[i][1] - s0b, s_ids[i]) for i in s_idx}
    return ([i for i in t_idx if (t_r[i][0] - t0b, t_r[i][1] - t0b, t_ids[i]) in sk],
            [i for i in s_idx if (s_r[i][0] - s0b, s_r[i][1] - s0b, s_ids[i]) in tk])


def _token_logprobs(model, ids, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, :-1].float()
    lp = torch.log_softmax(logits / temperature, dim=-1)  # full vocabulary, every position
    return lp.gather(-1, torch.tensor(ids[1:])[:, None]).squeeze(-1)  # lp[j] is the log-prob of token j+1


def _reduce(x, how):
    return {"mean": x.mean(), "sum": x.sum(), "min": x.min(), "max": x.max(),
            "median": torch.quantile(x.double(), 0.5), "first_quartile": torch.quantile(x.double(), 0.25),
            "last_quartile": torch.quantile(x.double(), 0.75)}[how].item()


def reference_reward(model, tok, question, solution, completion, cfg: RewardConfig, search_from_start=False):
    """RLT reward of one completion, computed the slow, plain way. search_from_start: the official span search."""
    tags = cfg.tags
    t_sys = cfg.teacher_system_prompt or formats.default_teacher_system_prompt(tags)
    s_sys = cfg.student_system_prompt or formats.default_student_system_prompt(tags)
    penalty = 0.0
    if EE not in completion:
        penalty, completion = cfg.format_penalty, completion + EE
    head = tok.apply_chat_template([{"role": "system", "content": t_sys}, {"role": "user", "content": question}],
                                   tokenize=False, add_generation_prompt=True)
    begun = f"{TS}{solution}{TE}\n\n{ES}\n\n"  # the prompt ends with the start tag and its padding
    full_teacher = head + begun + completion
    thought = re.search(re.escape(ES) + "(.*?)" + re.escape(EE), begun + completion, flags=re.DOTALL).group(1)

    t_ids = tok.encode(full_teacher, add_special_tokens=False)
    e0 = len(head) + len(begun) - 2
    t_idx = _inside(tok, t_ids, full_teacher, e0, e0 + len(thought))

    block = f"{tags.thought_start}{thought}{tags.thought_end}\n\n{TS}{solution}{TE}"
    student_text = tok.apply_chat_template(
        [{"role": "system", "content": s_sys}, {"role": "user", "content": question},
         {"role": "assistant", "content": block}], tokenize=False)
    s_ids = tok.encode(student_text, add_special_tokens=False)
    b0 = student_text.rfind(block)
    s_idx = _inside(tok, s_ids, student_text, b0 + len(tags.thought_start), b0 + len(tags.thought_start) + len(thought))
    sol0 = b0 + block.rfind(TS + solution) + len(TS)
    sol_idx = _inside(tok, s_ids, student_text, sol0, sol0 + len(solution))
    t_idx, s_idx = _common(tok, t_ids, full_teacher, t_idx, e0, s_ids, student_text, s_idx, b0 + len(tags.thought_start))
    if search_from_start:  # the official search: the first occurrence of the explanation's tokens in the chat
        first = _find(s_ids, [s_ids[i] for i in s_idx])
        s_idx = list(range(first, first + len(s_idx)))

    s_lp = _token_logprobs(model, s_ids, cfg.student_temperature)
    sol_lp = s_lp[[i - 1 for i in sol_idx]]
    s_th = s_lp[[i - 1 for i in s_idx]]
    if cfg.teacher_entropy:
        t_lp = _token_logprobs(model, t_ids, cfg.teacher_temperature)[[i - 1 for i in t_idx]]
        kl = t_lp - s_th
        if cfg.kl_estimator == "k3":
            kl = kl - 1 + torch.exp(-kl)
    else:
        kl = -s_th
    r_ss = sum(c * _reduce(sol_lp, r) for r, c in zip(cfg.solution_reductions, cfg.solution_coeffs))
    r_kl = sum(c * _reduce(kl, r) for r, c in zip(cfg.kl_reductions, cfg.kl_coeffs))
    return {"reward": r_ss - r_kl + penalty, "r_ss": r_ss, "r_kl": r_kl, "format_penalty": penalty,
            "solution_logprob_mean": sol_lp.mean().item(), "solution_logprob_min": sol_lp.min().item(),
            "kl_mean": kl.mean().item(), "kl_max": kl.max().item(), "sol_lp": sol_lp.tolist(), "kl": kl.tolist(),
            "n_expl": len(t_idx)}


Q = "A rectangle has perimeter 30 cm and one side of 6 cm. What is its area?"
SOL = "The other side is 30/2 - 6 = 9 cm, so the area is 6 × 9 = 54 cm². \\boxed{54}"
CASES = [
    "Half the perimeter is 15 cm, the sum of two adjacent sides.\n\nSo the other side is 15 - 6 = 9 cm, "
    "and the area is 6 times 9, which is 54 square centimetres.<|end_of_explanation|>",
    "We use $P = 2(a+b)$, so $a + b = 15$ and $b = 9$.\n\nThe area is $ab = 54$.<|end_of_explanation|>",
    "The perimeter counts each side twice.<|end_of_explanation|>\n\nTrailing text the reward ignores.",
    "An explanation that never closes its tag, so it gets the format penalty",
    "Ünïcødé: 6 × 9 = 54 — √ and π are fine too.<|end_of_explanation|>",
]


@pytest.fixture(params=["smollm", "qwen"], ids=["smollm2", "qwen2.5"])
def lm(request):
    """(model, tokenizer): the embedded SmolLM2, and the tiny Qwen2.5 stand-in (the paper's tokenizer; conftest.py)."""
    return request.getfixturevalue(request.param)


def _close(ours, ref, tol=1e-4):
    # fp32 forwards of different shapes (batched, prefix-cached) differ by ~1e-5 nats; the k3 estimator multiplies
    # that by (exp(-KL) - 1), so large values are compared with a relative tolerance of 5e-5 as well.
    for key in ("reward", "r_ss", "r_kl", "format_penalty", "solution_logprob_mean", "solution_logprob_min",
                "kl_mean", "kl_max"):
        assert math.isclose(getattr(ours, key), ref[key], abs_tol=tol, rel_tol=5e-5), (key, getattr(ours, key), ref[key])


@pytest.mark.parametrize("cfg", [
    RewardConfig(),  # every case; the variants below on two of them (a closed and an unclosed explanation)
    RewardConfig(kl_estimator="k3", student_temperature=1.0, teacher_temperature=0.9),
    RewardConfig(teacher_entropy=False),
    RewardConfig(solution_reductions=["median", "sum"], solution_coeffs=[1.0, 0.1],
                 kl_reductions=["first_quartile", "last_quartile", "min"], kl_coeffs=[1.0, 2.0, 0.5]),
    RewardConfig(tag_style="r1", format_penalty=-2.5),
], ids=["paper", "k3-temps", "no-teacher-entropy", "other-reductions", "r1-tags"])
def test_reward_matches_independent_reference(lm, cfg):
    model, tok = lm
    scorer = RLTScorer(model, model, tok, cfg)
    cases = CASES if cfg == RewardConfig() else [CASES[1], CASES[3]]
    results = scorer.score([{"question": Q, "solution": SOL, "completion": c} for c in cases])
    for c, ours in zip(cases, results):
        assert ours.ok, ours.error
        ref = reference_reward(model, tok, Q, SOL, c, cfg)
        _close(ours, ref)
        assert len(ours.explanation_tokens) == ref["n_expl"]
        assert [t["logprob"] for t in ours.solution_tokens] == pytest.approx(ref["sol_lp"], abs=1e-4)
        assert [t["kl"] for t in ours.explanation_tokens] == pytest.approx(ref["kl"], abs=1e-4, rel=5e-5)


def test_components_add_up_and_tokens_are_text(smollm):
    model, tok = smollm
    r = RLTScorer(model, model, tok).score([{"question": Q, "solution": SOL, "completion": CASES[0]}])[0]
    assert r.reward == pytest.approx(r.r_ss - r.r_kl + r.format_penalty, abs=1e-9)
    assert r.r_ss == pytest.approx(r.solution_logprob_mean + 0.01 * r.solution_logprob_min, abs=1e-6)
    assert r.r_kl == pytest.approx(3 * r.kl_mean + 0.03 * r.kl_max, abs=1e-6)
    assert "".join(t["token"] for t in r.solution_tokens) == SOL
    body = CASES[0][: CASES[0].index(EE)]  # ends with "." which merges with the end tag (".<"), so is not scored
    assert "".join(t["token"] for t in r.explanation_tokens) == "\n\n" + body[:-1]
    for t in r.explanation_tokens:
        assert t["kl"] == pytest.approx(t["teacher_logprob"] - t["student_logprob"], abs=1e-5)


def test_explanation_repeating_the_question_is_scored_at_its_real_place(smollm):
    model, tok = smollm
    question = "Sam has 5 marbles and wins 7 more.\n\nHow many marbles does Sam have now?"
    solution = "5 + 7 = 12. \\boxed{12}"
    completion = "How many marbles does Sam have now?<|end_of_explanation|>"
    cfg = RewardConfig()
    ours = RLTScorer(model, model, tok, cfg).score([{"question": question, "solution": solution, "completion": completion}])[0]
    correct = reference_reward(model, tok, question, solution, completion, cfg)
    official = reference_reward(model, tok, question, solution, completion, cfg, search_from_start=True)
    _close(ours, correct)
    assert abs(official["reward"] - correct["reward"]) > 0.05  # the search-based span lands in the question


def test_missing_tag_trailing_text_and_duplicated_tag(smollm):
    model, tok = smollm
    body = "Half the perimeter is 15 cm, so the other side is 9 cm and the area is 54."
    items = [{"question": Q, "solution": SOL, "completion": c} for c in
             (body + EE, body + EE + " and more", body + EE + "x" + EE, body)]
    a, b, c, d = RLTScorer(model, model, tok).score(items)
    assert a.reward == pytest.approx(b.reward, abs=1e-5) and a.reward == pytest.approx(c.reward, abs=1e-5)
    assert d.format_penalty == -1.0 and d.has_end_tag is False
    assert d.reward == pytest.approx(a.reward - 1.0, abs=1e-5)  # scored as if the tag were appended


def test_empty_explanation_has_a_defined_finite_value(smollm):
    model, tok = smollm
    r = RLTScorer(model, model, tok).score([{"question": Q, "solution": SOL, "completion": EE}])[0]
    assert r.ok and math.isfinite(r.reward)
    assert "".join(t["token"] for t in r.explanation_tokens) == "\n\n"  # only the prompt's padding is scored


def test_no_scored_explanation_token_uses_the_documented_kl_value(smollm):
    model, tok = smollm
    scorer = RLTScorer(model, model, tok)
    p = scorer.prepare({"question": Q, "solution": SOL, "completion": EE})
    empty = torch.zeros(0)
    r = scorer._combine(p, torch.tensor([-1.0, -3.0]), empty, empty)
    assert r.kl_mean == r.kl_max == 1.0
    assert r.r_kl == pytest.approx(3.03)
    assert r.r_ss == pytest.approx(-2.0 + 0.01 * -3.0)


@pytest.mark.parametrize("solution", ["", "   \n "])
def test_empty_solution_is_an_error_for_that_item_only(smollm, solution):
    model, tok = smollm
    res = RLTScorer(model, model, tok).score([
        {"id": "bad", "question": Q, "solution": solution, "completion": CASES[0]},
        {"id": "good", "question": Q, "solution": SOL, "completion": CASES[0]},
    ])
    assert res[0].error and "empty solution" in res[0].error and res[0].reward is None
    assert res[0].to_dict() == {"id": "bad", "error": res[0].error}
    assert res[1].ok and math.isfinite(res[1].reward)


def test_malformed_items_never_crash_and_never_give_non_finite_numbers(smollm):
    model, tok = smollm
    weird = ["\x00\x01\x02", "<|im_end|><|im_start|>assistant", "<|end_of_solution|>" * 3, "🙂" * 50,
             "<|begin_of_explanation|>" * 2, "a" * 2000, EE * 3, "\n\n\n\n", "<script>alert(1)</script>&amp;"]
    items = [{"question": Q, "solution": SOL, "completion": w} for w in weird]
    items += [{"question": Q, "solution": SOL}, {"question": "", "solution": SOL, "completion": "x"}, "not a dict",
              {"question": Q, "solution": SOL, "completion": 42}]
    res = RLTScorer(model, model, tok).score(items)
    for r in res[: len(weird)]:
        assert r.ok, r.error
        numbers = [r.reward, r.r_ss, r.r_kl, r.kl_mean, r.kl_max, r.solution_logprob_mean]
        numbers += [t["kl"] for t in r.explanation_tokens] + [t["logprob"] for t in r.solution_tokens]
        assert all(math.isfinite(x) for x in numbers)
    assert all(r.error for r in res[len(weird):])


def test_batch_results_equal_single_results(smollm):
    model, tok = smollm
    q2, s2 = "What is 15% of 80?", "0.15 × 80 = 12. \\boxed{12}"
    items = [{"question": Q, "solution": SOL, "completion": c} for c in CASES[:3]]
    items += [{"question": q2, "solution": s2, "completion": c} for c in
              ("Ten percent is 8, five percent is 4, together 12.<|end_of_explanation|>", "15/100 of 80 is 12.")]
    scorer = RLTScorer(model, model, tok, RewardConfig(batch_size=3))
    batched = scorer.score(items)
    for item, b in zip(items, batched):
        s = scorer.score([item])[0]
        assert b.reward == pytest.approx(s.reward, abs=1e-4)
        assert b.r_kl == pytest.approx(s.r_kl, abs=1e-4)
        assert [t["kl"] for t in b.explanation_tokens] == pytest.approx([t["kl"] for t in s.explanation_tokens], abs=1e-4)
    unshared = RLTScorer(model, model, tok, RewardConfig(share_prefix=False, batch_size=1)).score(items)
    assert [r.reward for r in unshared] == pytest.approx([r.reward for r in batched], abs=1e-4)


def test_the_prefix_cache_uses_the_cache_api_transformers_keeps(smollm):
    """A shared prefix goes through the KV cache with the keyword the installed transformers keeps (`cache` where the
    forward has it, `past_key_values` before), and scoring raises no deprecation warning from our calls."""
    import warnings

    from workbench.rewards import _cache_kwarg

    model, tok = smollm
    items = [{"question": Q, "solution": SOL, "completion": c} for c in CASES[:3]]  # one group: the prefix is shared
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = RLTScorer(model, model, tok, RewardConfig(batch_size=3)).score(items)
    assert all(r.ok for r in res)
    noisy = [str(w.message) for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not noisy, noisy

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    assert _cache_kwarg(Old()) == "past_key_values" and _cache_kwarg(New()) == "cache"
    assert _cache_kwarg(model.model) in ("cache", "past_key_values")


def test_teacher_and_student_must_share_a_tokenizer(smollm):
    from workbench.models import load_tokenizer

    model, tok = smollm
    other = load_tokenizer("smollm2-135m")
    other.add_tokens(["<|extra_token|>"])
    with pytest.raises(WorkbenchError, match="different tokenizers"):
        RLTScorer(model, model, tok, student_tokenizer=other)
    RLTScorer(model, model, tok, student_tokenizer=load_tokenizer("smollm2-135m"))  # same vocabulary: fine


def test_trl_reward_function(smollm):
    model, tok = smollm
    fn = RLTReward(RLTScorer(model, model, tok))
    prompts = ["p"] * 3
    completions = [CASES[0], [{"role": "assistant", "content": CASES[1]}], CASES[2]]
    out = fn(prompts, completions, question=[Q, Q, Q], solution=[SOL, SOL, ""])
    assert fn.__name__ == "rlt_reward"
    assert out[2] is None and all(isinstance(x, float) for x in out[:2])
    assert out[0] == pytest.approx(fn.last_results[0].reward)
    assert set(fn.last_metrics) >= {"r_ss", "r_kl", "format_penalty_rate"}
    with pytest.raises(WorkbenchError, match="question"):
        fn(prompts, completions)


def test_bad_config_is_rejected():
    with pytest.raises(WorkbenchError):
        RewardConfig(kl_reductions=["mean"], kl_coeffs=[1.0, 2.0])
    with pytest.raises(WorkbenchError, match="unknown reduction"):
        RewardConfig(solution_reductions=["avg", "min"])
    with pytest.raises(WorkbenchError):
        RewardConfig(kl_estimator="k2")


# ------------------------------------------------------------------------------ teacher_tokenization="generated"


def reference_generated(model, tok, question, solution, completion_ids, cfg: RewardConfig):
    """The reward when the teacher sequence is the prompt's ids followed by the sampled ids, computed plainly:
    body tokens and spans by byte lengths of the token strings (a byte token of a character split over several
    tokens counts: Qwen splits " √" into two byte tokens), full-vocabulary forwards."""
    tags = cfg.tags
    t_sys = formats.default_teacher_system_prompt(tags)
    s_sys = formats.default_student_system_prompt(tags)
    head = tok.apply_chat_template([{"role": "system", "content": t_sys}, {"role": "user", "content": question}],
                                   tokenize=False, add_generation_prompt=True)
    p_ids = tok.encode(head + f"{TS}{solution}{TE}\n\n{ES}\n\n", add_special_tokens=False)
    ids = list(completion_ids)
    while ids and ids[-1] == tok.eos_token_id:
        ids.pop()
    text = tok.decode(ids)
    body_len = text.find(EE) if EE in text else len(text)
    body_bytes, c_r = len(text[:body_len].encode()), _byte_ranges(tok, ids)
    body_j = [j for j in range(len(ids)) if c_r[j][1] > c_r[j][0] and c_r[j][1] <= body_bytes]
    thought = "\n\n" + text[:body_len]

    block = f"{tags.thought_start}{thought}{tags.thought_end}\n\n{TS}{solution}{TE}"
    student_text = tok.apply_chat_template(
        [{"role": "system", "content": s_sys}, {"role": "user", "content": question},
         {"role": "assistant", "content": block}], tokenize=False)
    s_ids = tok.encode(student_text, add_special_tokens=False)
    b0 = student_text.rfind(block) + len(tags.thought_start)
    s_idx = _inside(tok, s_ids, student_text, b0, b0 + len(thought))
    sol0 = student_text.rfind(TS + solution) + len(TS)
    sol_idx = _inside(tok, s_ids, student_text, sol0, sol0 + len(solution))
    # the teacher's tokens sit 2 bytes ("\n\n") into the student's explanation span
    s_r = _byte_ranges(tok, s_ids)
    s0b = len(student_text[:b0].encode())
    s_keys = {(s_r[i][0] - s0b, s_r[i][1] - s0b, s_ids[i]): i for i in s_idx}
    pairs = [(j, s_keys[(c_r[j][0] + 2, c_r[j][1] + 2, ids[j])]) for j in body_j
             if (c_r[j][0] + 2, c_r[j][1] + 2, ids[j]) in s_keys]

    s_lp = _token_logprobs(model, s_ids, cfg.student_temperature)
    t_lp = _token_logprobs(model, p_ids + ids, cfg.teacher_temperature)
    sol_lp = s_lp[[i - 1 for i in sol_idx]]
    kl = t_lp[[len(p_ids) + j - 1 for j, _ in pairs]] - s_lp[[i - 1 for _, i in pairs]]
    r_ss = sum(c * _reduce(sol_lp, r) for r, c in zip(cfg.solution_reductions, cfg.solution_coeffs))
    r_kl = sum(c * _reduce(kl, r) for r, c in zip(cfg.kl_reductions, cfg.kl_coeffs))
    penalty = 0.0 if EE in text else cfg.format_penalty
    return {"reward": r_ss - r_kl + penalty, "r_ss": r_ss, "r_kl": r_kl, "format_penalty": penalty,
            "solution_logprob_mean": sol_lp.mean().item(), "solution_logprob_min": sol_lp.min().item(),
            "kl_mean": kl.mean().item(), "kl_max": kl.max().item(), "kl": kl.tolist(), "n_expl": len(pairs),
            "teacher_lp": t_lp[[len(p_ids) + j - 1 for j, _ in pairs]].tolist()}


def _split_a_token(tok, ids):
    """The same text with one multi-character word token replaced by two shorter tokens (a sampled, non-canonical
    tokenisation)."""
    vocab = tok.get_vocab()
    for k, piece in enumerate(tok.convert_ids_to_tokens(ids)):
        if len(piece) >= 4 and piece.isalpha() and piece[:2] in vocab and piece[2:] in vocab:
            return ids[:k] + [vocab[piece[:2]], vocab[piece[2:]]] + ids[k + 1:]
    raise AssertionError("no token to split")


def test_generated_tokenisation_matches_independent_reference(lm):
    model, tok = lm
    cfg = RewardConfig(teacher_tokenization="generated")
    canonical = tok.encode(CASES[0], add_special_tokens=False)
    odd = _split_a_token(tok, canonical)
    assert tok.decode(odd) == tok.decode(canonical) and odd != canonical
    unicode_trailing = tok.encode(CASES[4] + " and more text", add_special_tokens=False) + [tok.eos_token_id]
    unclosed = tok.encode(CASES[3], add_special_tokens=False)
    cases = [canonical, odd, unicode_trailing, unclosed]
    results = RLTScorer(model, model, tok, cfg).score(
        [{"question": Q, "solution": SOL, "completion_ids": ids} for ids in cases])
    for ids, ours in zip(cases, results):
        assert ours.ok, ours.error
        ref = reference_generated(model, tok, Q, SOL, ids, cfg)
        _close(ours, ref)
        assert len(ours.explanation_tokens) == ref["n_expl"]
        assert [t["teacher_logprob"] for t in ours.explanation_tokens] == pytest.approx(ref["teacher_lp"], abs=1e-4)
        assert [t["kl"] for t in ours.explanation_tokens] == pytest.approx(ref["kl"], abs=1e-4)
    # the split word's two tokens are not the student's token: the explanation loses exactly that one token
    assert len(results[1].explanation_tokens) == len(results[0].explanation_tokens) - 1
    assert results[3].format_penalty == -1.0


def test_generated_tokenisation_differs_from_joint_only_at_the_prompt_boundary(smollm):
    """Jointly, the prompt's closing "\\n\\n" is re-tokenised with the explanation (two extra scored tokens the
    teacher never sampled); as generated, the scored tokens are exactly the completion's body tokens."""
    model, tok = smollm
    item = {"question": Q, "solution": SOL, "completion": CASES[1]}
    joint = RLTScorer(model, model, tok).score([item])[0]
    gen = RLTScorer(model, model, tok, RewardConfig(teacher_tokenization="generated")).score([item])[0]
    body = CASES[1][:CASES[1].index(EE)]
    gen_text = "".join(t["token"] for t in gen.explanation_tokens)
    assert gen_text == body[:-1]  # the final "." merges with the end tag (".<") and lies outside the body
    assert "".join(t["token"] for t in joint.explanation_tokens) == "\n\n" + gen_text
    assert gen.r_ss == pytest.approx(joint.r_ss, abs=1e-5)  # the student side is the same


def test_trailing_text_penalty_and_trl_completion_ids(smollm):
    model, tok = smollm
    body = "Half the perimeter is 15 cm, so the other side is 9 cm and the area is 54."
    cfg = RewardConfig(teacher_tokenization="generated", trailing_text_penalty=-0.5)
    items = [{"question": Q, "solution": SOL, "completion": c} for c in (body + EE, body + EE + " more", body + EE + " \n")]
    clean, trailing, blank = RLTScorer(model, model, tok, cfg).score(items)
    assert trailing.format_penalty == -0.5 and clean.format_penalty == 0.0 and blank.format_penalty == 0.0
    assert trailing.reward == pytest.approx(clean.reward - 0.5, abs=1e-5)
    assert RLTScorer(model, model, tok).score(items[1:2])[0].format_penalty == 0.0  # default: ignored, as officially

    ids = _split_a_token(tok, tok.encode(body + EE, add_special_tokens=False))
    fn = RLTReward(RLTScorer(model, model, tok, cfg))
    out = fn(["p"], [tok.decode(ids)], question=[Q], solution=[SOL], completion_ids=[ids])
    direct = RLTScorer(model, model, tok, cfg).score([{"question": Q, "solution": SOL, "completion_ids": ids}])[0]
    retokenised = RLTScorer(model, model, tok, cfg).score([{"question": Q, "solution": SOL, "completion": body + EE}])[0]
    assert out[0] == pytest.approx(direct.reward, abs=1e-6)
    assert len(fn.last_results[0].explanation_tokens) == len(retokenised.explanation_tokens) - 1
    with pytest.raises(WorkbenchError, match="teacher_tokenization"):
        RewardConfig(teacher_tokenization="sampled")


# ------------------------------------------------------------------------------ prefixes shared across a whole call

UNRELATED = [  # different problems (question and solution), explanations of different lengths
    ("What is 15% of 80?", "0.15 × 80 = 12. \\boxed{12}", "Ten percent is 8, five percent is 4, together 12." + EE),
    ("A train covers 180 km in 2 hours. What is its average speed?", "180 / 2 = 90 km/h. \\boxed{90}",
     "Speed is distance over time." + EE),
    ("Solve 3x + 7 = 22.", "3x = 15, so x = 5. \\boxed{5}",
     "Subtract 7 from both sides: 3x = 15.\n\nThen divide both sides by 3, so x = 5. Check: 3 · 5 + 7 = 22, as "
     "required, and no other value works because the equation is linear." + EE),
    ("How many edges does a cube have?", "A cube has 12 edges. \\boxed{12}",
     "Four on top, four on the bottom and four upright"),  # no end tag
    ("What is the greatest common divisor of 84 and 36?", "84 = 2·36 + 12 and 36 = 3·12, so it is 12. \\boxed{12}",
     EE),  # empty explanation: its only scored token is the prompt's closing "\n\n"
]


def _mixed_items():
    """The shape of a dataset scan (unrelated problems, one completion each) mixed with a GRPO group of three
    completions of one problem, whose members are not adjacent."""
    items = [{"id": f"u{k}", "question": q, "solution": s, "completion": c} for k, (q, s, c) in enumerate(UNRELATED)]
    group = [{"id": f"g{k}", "question": Q, "solution": SOL, "completion": c} for k, c in enumerate(CASES[:3])]
    return [group[0], *items[:2], group[1], *items[2:], group[2]]


def _seqs(scorer, items, who):
    return [getattr(scorer.prepare(it), who) for it in items]


@pytest.mark.parametrize("batch_size", [3, 8])
def test_prefix_shared_across_unrelated_problems_gives_the_same_numbers(lm, batch_size):
    """The system prompt and chat header of the whole call run once, the GRPO group's question and solution once
    more on top of them, and unrelated problems are micro-batched together on the shared cache: the same numbers as
    with sharing off and as the independent reference, on SmolLM2 (Llama) and a tiny random Qwen2."""
    from workbench.rewards import _prefix_plan

    model, tok = lm
    items = _mixed_items()
    shared = RLTScorer(model, model, tok, RewardConfig(batch_size=batch_size))
    for who in ("teacher", "student"):
        seqs = _seqs(shared, items, who)
        live = [i for i, s in enumerate(seqs) if s.targets]  # sequence_logprobs plans for those only
        base_len, units = _prefix_plan(model, seqs, live, shared.config)
        assert base_len >= 8  # at least the system prompt
        pool = [members for n, members in units if n == base_len]
        assert len(pool) == 1 and len({seqs[i].group for i in pool[0]}) >= 4  # batched across problems
        if who == "teacher":  # the group's question and solution: a longer prefix, continuing the base
            assert [sorted(m) for n, m in units if n > base_len] == [[0, 3, 7]]
    ours = shared.score(items)
    plain = RLTScorer(model, model, tok, RewardConfig(share_prefix=False)).score(items)
    for a, b in zip(ours, plain):
        assert a.ok and b.ok, (a.error, b.error)
        assert a.reward == pytest.approx(b.reward, abs=1e-4)
        assert [t["logprob"] for t in a.solution_tokens] == pytest.approx([t["logprob"] for t in b.solution_tokens], abs=1e-4)
        assert [t["teacher_logprob"] for t in a.explanation_tokens] == pytest.approx(
            [t["teacher_logprob"] for t in b.explanation_tokens], abs=1e-4)
        assert [t["kl"] for t in a.explanation_tokens] == pytest.approx([t["kl"] for t in b.explanation_tokens], abs=1e-4)
    for item, a in list(zip(items, ours))[::2]:  # and the plain, independent computation
        if a.explanation_tokens:  # (the reference has no value for an explanation without a scored token)
            ref = reference_reward(model, tok, item["question"], item["solution"], item["completion"], shared.config)
            _close(a, ref)
    by_id = {r.id: r for r in ours}
    assert by_id["u3"].format_penalty == -1.0 and by_id["u4"].ok  # the unclosed and the empty explanation


def test_each_shared_prefix_goes_through_the_model_once(smollm):
    """Only one forward of a call starts with the call's common prefix; with sharing off, every sequence does. No
    sequence runs past the input of its last scored position."""
    from workbench.rewards import _common_prefix_len

    model, tok = smollm
    items = _mixed_items()
    calls: list[torch.Tensor] = []
    real: list[int] = []  # tokens fed that are not padding

    def record(mod, args, kwargs):
        x, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        calls.append(x.cpu())
        real.append(x.numel() if mask is None else int(mask[:, -x.shape[1]:].sum()))

    hook = model.get_decoder().register_forward_pre_hook(record, with_kwargs=True)
    try:
        for share, expected in ((True, 1), (False, len(items))):
            scorer = RLTScorer(model, model, tok, RewardConfig(share_prefix=share, teacher_entropy=False))
            seqs = _seqs(scorer, items, "student")
            base = seqs[0].ids[: _common_prefix_len([s.ids for s in seqs])]
            calls.clear()
            real.clear()
            scorer.score(items)
            starts = sum(row[: len(base)].tolist() == base for x in calls for row in x)
            assert starts == expected, (share, starts)
            total = sum(max(s.targets) for s in seqs)  # tokens up to the last scored position's input
            assert sum(real) == total if not share else sum(real) <= total - (len(seqs) - 1) * len(base)
    finally:
        hook.remove()


def test_sharing_falls_back_to_whole_sequences_when_the_cache_cannot_be_copied(smollm, monkeypatch):
    """A model whose forward returns no cache the workbench knows (None, a legacy tuple) is scored without sharing."""
    from workbench import rewards

    model, tok = smollm
    items = _mixed_items()[:4]
    expected = RLTScorer(model, model, tok, RewardConfig(share_prefix=False)).score(items)
    monkeypatch.setattr(rewards, "_cache_of", lambda output: ((torch.zeros(1), torch.zeros(1)),))
    got = RLTScorer(model, model, tok).score(items)
    assert [r.reward for r in got] == pytest.approx([r.reward for r in expected], abs=1e-4)
