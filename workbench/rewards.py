"""The RLT reward: how well a student predicts the reference solution after reading the teacher's explanation,
minus how unnatural the explanation is for the student.

    r = r_SS - r_KL + m
    r_SS = sum_i c_i * reduce_i( lp_S(s_j) )          over solution tokens s_j  (default: mean + 0.01 * min)
    r_KL = sum_i d_i * reduce_i( lp_T(t_k) - lp_S(t_k) ) over explanation tokens t_k (default: 3 * mean + 0.03 * max)
    m    = -1 when the completion has no end tag (it is then scored as if the tag were appended)
           (+ trailing_text_penalty, 0 by default, when text follows the first end tag)

lp_S is the student's log-prob (temperature T_S) in the student chat, which has no solution before the
explanation; lp_T is the teacher's (temperature T_T) in the teacher prompt, which shows the solution.

How it is computed (the official code does each of these per completion and over the full vocabulary):
- token spans come from character offsets of the tokenised text (a token counts when all its characters lie
  inside the span), never from searching for token lists;
- common prompt prefixes run through the model once, on two levels: the system prompt and chat header that every
  sequence of a call shares, then each group's question and solution (a GRPO group) on top of it; the KV caches are
  reused for every member, and unrelated problems are micro-batched together on the shared one;
- the LM head and log-softmax run only at the scored positions, in chunks, in fp32; no sequence x vocabulary
  tensor is ever built; the logits come from the model's own output path (`_head_logits`), so a family that scales
  or caps its logits after the head scores as in a full forward;
- a malformed completion is penalised, never a crash; an empty solution is an error for that item; no NaN or
  inf leaves this module.
"""

from __future__ import annotations

import copy
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from . import formats
from .errors import WorkbenchError

REDUCTIONS = ("mean", "sum", "min", "max", "median", "first_quartile", "last_quartile")


@dataclass
class RewardConfig:
    """Every knob of the RLT reward. Defaults are the paper's RL run (rlt-method.md section 3)."""

    solution_reductions: list[str] = field(default_factory=lambda: ["mean", "min"], metadata={
        "help": "reductions of the solution tokens' student log-probs", "choices": REDUCTIONS})
    solution_coeffs: list[float] = field(default_factory=lambda: [1.0, 0.01], metadata={
        "help": "their weights in r_ss"})
    kl_reductions: list[str] = field(default_factory=lambda: ["mean", "max"], metadata={
        "help": "reductions of the explanation tokens' KL terms", "choices": REDUCTIONS})
    kl_coeffs: list[float] = field(default_factory=lambda: [3.0, 0.03], metadata={"help": "their weights in r_kl"})
    student_temperature: float = field(default=0.7, metadata={"help": "T_S, the student's temperature"})
    teacher_temperature: float = field(default=0.7, metadata={
        "help": "T_T, the teacher's sampling temperature"})
    format_penalty: float = field(default=-1.0, metadata={"help": "m, added when the end tag is missing"})
    kl_estimator: str = field(default="sample", metadata={
        "help": "sample: lp_T - lp_S; k3: Schulman's KL - 1 + exp(-KL)", "choices": ("sample", "k3")})
    teacher_entropy: bool = field(default=True, metadata={
        "help": "off: the 'no teacher entropy' variant, KL_k := -lp_S(t_k)"})
    empty_explanation_kl: float = field(default=1.0, metadata={
        "help": "each KL reduction when no explanation token counts (the official nan_to_num)"})
    tag_style: str = field(default="stratos", metadata={
        "help": "student thought tags: stratos (<|begin_of_thought|>) or r1 (<think>)", "choices": ("stratos", "r1")})
    teacher_system_prompt: str | None = field(default=None, metadata={"cli": False})  # None: the project's wording
    student_system_prompt: str | None = field(default=None, metadata={"cli": False})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward pass"})
    max_batch_tokens: int = field(default=4096, metadata={
        "help": "and at most this many padded tokens per forward (raise it on a GPU)"})
    logit_chunk: int = field(default=256, metadata={
        "help": "scored positions per LM-head + log-softmax chunk (256 x vocab x 4 bytes)"})
    share_prefix: bool = field(default=True, metadata={"help": "run a shared prompt prefix once per group"})
    max_length: int | None = field(default=None, metadata={
        "help": "longest sequence scored (default: the model's context length)"})
    # How the teacher sequence is tokenised. "joint": prompt + explanation as one text, as the official code does
    # (reproduces its numbers). "generated": the prompt's ids followed by the completion's own ids, i.e. the tokens
    # the teacher actually sampled (TRL passes them as completion_ids). Use "generated" for training: jointly, the
    # prompt's closing "\n\n" can re-merge with the explanation into tokens the teacher never produced, and their
    # constant, very low teacher log-probs bias the KL mean towards short explanations (SmolLM2's tokenizer: always;
    # Qwen2/2.5's, where the "\n\n" merges with the start tag: only when the explanation starts with a newline).
    # Where the prompt's ids + the completion's ids equal the joint ids, both give exactly the same numbers.
    teacher_tokenization: str = field(default="joint", metadata={
        "help": "joint: re-tokenise prompt + explanation as one text, as the official code; generated: the prompt's "
                "ids + the completion's own ids (a line's completion_ids when given)", "choices": ("joint", "generated")})
    trailing_text_penalty: float = field(default=0.0, metadata={
        "help": "added to format_penalty when non-blank text follows the first end tag"})

    def __post_init__(self) -> None:
        for name, reds, coeffs in (("solution", self.solution_reductions, self.solution_coeffs),
                                   ("kl", self.kl_reductions, self.kl_coeffs)):
            if len(reds) != len(coeffs):
                raise WorkbenchError(f"{name}_reductions and {name}_coeffs must have the same length")
            for r in reds:
                if r not in REDUCTIONS:
                    raise WorkbenchError(f"unknown reduction {r!r} in {name}_reductions; use {REDUCTIONS}")
        if self.kl_estimator not in ("sample", "k3"):
            raise WorkbenchError("kl_estimator must be 'sample' or 'k3'")
        if self.student_temperature <= 0 or self.teacher_temperature <= 0:
            raise WorkbenchError("temperatures must be > 0")
        if self.teacher_tokenization not in ("joint", "generated"):
            raise WorkbenchError("teacher_tokenization must be 'joint' (official) or 'generated' (as sampled)")
        formats.get_tags(self.tag_style)

    @property
    def tags(self) -> formats.Tags:
        return formats.get_tags(self.tag_style)


@dataclass
class RewardResult:
    """One scored completion: the total, every component, and the per-token arrays."""

    id: Any = None
    reward: float | None = None
    r_ss: float | None = None  # weighted solution term, as it enters the reward
    r_kl: float | None = None  # weighted KL term, as it is subtracted
    solution_logprob_mean: float | None = None
    solution_logprob_min: float | None = None
    kl_mean: float | None = None
    kl_max: float | None = None
    format_penalty: float = 0.0
    has_end_tag: bool | None = None
    solution_tokens: list[dict] = field(default_factory=list)  # [{"token", "logprob"}]
    explanation_tokens: list[dict] = field(default_factory=list)  # [{"token", "teacher_logprob", "student_logprob", "kl"}]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"id": self.id, "error": self.error}
        d = asdict(self)
        d.pop("error")
        return d


# ------------------------------------------------------------------------------------------------ reductions


def reduce(values: torch.Tensor, how: str) -> float:
    """One reduction of a 1-D fp32 tensor (non-empty)."""
    if how == "mean":
        return values.mean().item()
    if how == "sum":
        return values.sum().item()
    if how == "min":
        return values.min().item()
    if how == "max":
        return values.max().item()
    q = {"median": 0.5, "first_quartile": 0.25, "last_quartile": 0.75}[how]
    return torch.quantile(values.double(), q).item()


def weighted(values: torch.Tensor, reductions: list[str], coeffs: list[float]) -> float:
    return float(sum(c * reduce(values, r) for r, c in zip(reductions, coeffs)))


# ------------------------------------------------------------------------------------------------ scoring core


@dataclass
class _Seq:
    """A tokenised sequence to score: ids, the positions whose token log-prob we need, and its prefix group."""

    ids: list[int]
    targets: list[int]
    group: Any


def _decoder(model):
    dec = model.get_decoder()
    if dec is None or dec is model:
        raise WorkbenchError(f"{type(model).__name__} does not expose its decoder (get_decoder())")
    return dec


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


class _GivenHidden(torch.nn.Module):
    """Stands in for a causal LM's backbone during one call: it returns the hidden states it was given, so that the
    model's own forward applies its LM head and whatever it does to the logits after it."""

    def __init__(self, hidden: torch.Tensor, backbone: torch.nn.Module):
        super().__init__()
        self.hidden = hidden
        object.__setattr__(self, "_backbone", backbone)  # not a submodule: only read for its attributes

    def __getattr__(self, name: str):  # what a forward reads from its backbone (Falcon-H1: lm_head_multiplier)
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(object.__getattribute__(self, "_backbone"), name)

    def forward(self, *args, **kwargs):
        from transformers.modeling_outputs import BaseModelOutputWithPast

        return BaseModelOutputWithPast(last_hidden_state=self.hidden)


def _decoder_owner(model) -> tuple[torch.nn.Module, str]:
    """(the causal LM module that holds the decoder, the attribute it holds it in): `model` itself for most causal
    LMs ("model", or "transformer" for some), the wrapped causal LM of a PEFT model."""
    dec = _decoder(model)
    for owner in model.modules():
        for name, child in owner.named_children():
            if child is dec:
                return owner, name
    raise WorkbenchError(f"{type(model).__name__}: its decoder is not a submodule of it, so the reward cannot run the "
                         "model's own output layer on the scored positions")


def _head_logits(owner: torch.nn.Module, name: str, hidden: torch.Tensor) -> torch.Tensor:
    """Logits [n, vocab] (fp32) of hidden states [n, H] through the model's OWN output path (`owner`, `name`: see
    `_decoder_owner`): its forward runs with the backbone replaced by the given states, so every family's
    transformation after the LM head applies as in a full forward (Gemma's soft-capping, Cohere's `logit_scale`,
    Granite's division by `logits_scaling` and HyperCLOVA X's multiplication by it, Falcon-H1's
    `lm_head_multiplier`, MiniCPM3's scaled hidden states, ...), with no list of them to keep up to date."""
    real = owner._modules[name]
    owner._modules[name] = _GivenHidden(hidden[None], real)
    try:
        ids = torch.zeros((1, hidden.shape[0]), dtype=torch.long, device=hidden.device)
        try:
            out = owner(input_ids=ids, use_cache=False, logits_to_keep=0)
        except TypeError:  # a forward without logits_to_keep (remote code): it returns every position anyway
            out = owner(input_ids=ids, use_cache=False)
    finally:
        owner._modules[name] = real
    return out.logits[0].float()


def _logprobs_from_hidden(model, hidden: torch.Tensor, target_ids: torch.Tensor, temperature: float,
                          chunk: int) -> torch.Tensor:
    """log softmax(logits(h) / T)[target] at the given hidden states only, chunked, in fp32; the logits come from the
    model's own output path (`_head_logits`)."""
    out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
    owner, name = _decoder_owner(model)  # once per call: it walks the model's modules
    for a in range(0, hidden.shape[0], chunk):
        logits = _head_logits(owner, name, hidden[a:a + chunk])
        logits.div_(temperature)  # in place: a chunk x vocabulary tensor less to allocate (the same numbers)
        out[a:a + chunk] = logits.gather(-1, target_ids[a:a + chunk, None]).squeeze(-1) - torch.logsumexp(logits, -1)
        del logits
    return out


def _batches(indices: list[int], lengths: list[int], batch_size: int, max_tokens: int):
    """Micro-batches of indices sorted by length, bounded by batch size and padded tokens."""
    order = sorted(indices, key=lambda i: lengths[i])
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) + 1 > batch_size or (len(batch) + 1) * lengths[i] > max_tokens):
            yield batch
            batch = []
        batch.append(i)
    if batch:
        yield batch


@torch.no_grad()
def sequence_logprobs(model, seqs: list[_Seq], temperature: float, pad_id: int, config: RewardConfig,
                      progress=None) -> list[torch.Tensor]:
    """Log-probs of seq.ids[t] given seq.ids[:t] for every t in seq.targets (fp32, on CPU).

    Common prefixes run once, on two levels (`_prefix_plan`): the prefix that ALL sequences of the call share (the
    system prompt and chat header) is run once; each group (`seq.group`: a question and its solution) continues that
    KV cache with its own longer prefix; sequences whose group adds nothing to the shared prefix (unrelated problems)
    are micro-batched together, across groups, on copies of the shared cache. Hidden states of the scored positions
    only go through the LM head. A sequence with no target (an explanation with no token to score) is not run; its
    result is an empty tensor.
    """
    device = _model_device(model)
    decoder = _decoder(model)
    results: list[torch.Tensor | None] = [None] * len(seqs)
    live = []
    for i, s in enumerate(seqs):
        if s.targets:
            live.append(i)
            continue
        results[i] = torch.zeros(0, dtype=torch.float32)
        if progress is not None:
            progress.update(1)
    if not live:
        return results  # type: ignore[return-value]
    base_len, units = _prefix_plan(model, seqs, live, config)
    base = None
    if base_len:  # the prefix of the whole call, run once
        base = _run_prefix(model, decoder, seqs[live[0]].ids[:base_len], None, 0, device)
        if base is None:  # a cache the workbench cannot copy: per-group prefixes are tried (and fail the same way)
            base_len, units = _prefix_plan(model, seqs, live, config, allow_base=False)
    for prefix_len, members in units:
        if prefix_len == base_len:  # the base's cache (None without a base: whole sequences)
            cache = base
        else:  # the group's own prefix, continuing the base (or from scratch without one)
            cache = _run_prefix(model, decoder, seqs[members[0]].ids[:prefix_len], base, base_len, device)
            if cache is None:
                prefix_len = 0
        lengths = {i: _end(seqs[i]) - prefix_len for i in members}
        lens_list = [lengths.get(i, 0) for i in range(len(seqs))]
        for batch in _batches(members, lens_list, config.batch_size, config.max_batch_tokens):
            for i, part in zip(batch, _score_batch(model, decoder, seqs, batch, prefix_len, cache, temperature,
                                                   pad_id, config, device)):
                results[i] = part
            if progress is not None:
                progress.update(len(batch))
        del cache
    return results  # type: ignore[return-value]


def _prefix_plan(model, seqs: list[_Seq], live: list[int], config: RewardConfig,
                 allow_base: bool = True) -> tuple[int, list[tuple[int, list[int]]]]:
    """How the sequences `live` share prefixes: (base_len, [(prefix_len, members), ...]).

    base_len > 0: the first base_len tokens are common to all of them and run once; every unit's cache continues
    that one (prefix_len == base_len: the base itself, the unit then gathers sequences of any group). base_len == 0:
    a unit with prefix_len > 0 runs its group's prefix from scratch, one with 0 runs whole sequences. Every prefix
    ends before the first scored token's hidden state (which must lie in the suffix), is at least 8 tokens long,
    and is used only where `_prefix_pays`. With `config.share_prefix` off every sequence runs alone, from its first
    token.
    """
    if not config.share_prefix:
        return 0, [(0, [i]) for i in live]
    groups: dict[Any, list[int]] = defaultdict(list)
    for i in live:
        groups[seqs[i].group].append(i)

    def shared(members: list[int]) -> int:
        n = _common_prefix_len([seqs[i].ids for i in members])
        return min(n, min(min(seqs[i].targets) for i in members) - 1)

    base_len = 0
    if allow_base and len(live) > 1:
        base_len = shared(live)
        if base_len < 8 or not _prefix_pays(model, base_len, [_end(seqs[i]) for i in live], config):
            base_len = 0
    units: list[tuple[int, list[int]]] = []
    pool: list[int] = []  # sequences that continue the base directly, whatever their group
    for members in groups.values():
        prefix_len = shared(members) if len(members) > 1 else 0
        if base_len:
            if prefix_len - base_len < 8:  # the group adds (almost) nothing to the base: batched with the others
                pool += members
                continue
        elif prefix_len < 8 or not _prefix_pays(model, prefix_len, [_end(seqs[i]) for i in members], config):
            prefix_len = 0
        units.append((prefix_len, members))
    if pool:
        units.insert(0, (base_len, pool))
    return base_len, units


def _run_prefix(model, decoder, ids: list[int], cache, start: int, device):
    """The KV cache (batch 1) of `ids`: from scratch, or continuing a copy of `cache`, which holds ids[:start] and
    stays intact. None when the model returns no cache the workbench knows how to copy (then nothing is shared)."""
    kwargs: dict[str, Any] = {"input_ids": torch.tensor([ids[start:]], device=device), "use_cache": True}
    if cache is not None:
        kwargs[_cache_kwarg(decoder)] = _repeat_cache(cache, 1, model.config)
        kwargs["position_ids"] = torch.arange(start, len(ids), device=device)[None]
    out = _cache_of(decoder(**kwargs))
    if not hasattr(out, "batch_repeat_interleave"):  # not a transformers Cache (None, a legacy tuple)
        return None
    # a recurrent layer's state (Mamba-style conv / SSM states of hybrid models such as Falcon-H1) does not continue
    # a batch of different suffixes: such models run whole sequences
    if any(hasattr(layer, "conv_states") or hasattr(layer, "recurrent_states") for layer in getattr(out, "layers", ())):
        return None
    return out


def _end(seq: _Seq) -> int:
    """How many of a sequence's tokens go through the model: up to the last one whose hidden state is scored (the
    tokens after it, such as the student chat's closing tags, change no scored log-prob)."""
    return max(seq.targets)


def _score_batch(model, decoder, seqs: list[_Seq], batch: list[int], prefix_len: int, cache, temperature: float,
                 pad_id: int, config: RewardConfig, device) -> list[torch.Tensor]:
    """One micro-batch: the suffixes after `prefix_len` (padded on the right), on copies of the prefix's cache."""
    width = max(_end(seqs[i]) - prefix_len for i in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), prefix_len + width), dtype=torch.long)
    mask[:, :prefix_len] = 1
    for row, i in enumerate(batch):
        suffix = seqs[i].ids[prefix_len:_end(seqs[i])]
        ids[row, : len(suffix)] = torch.tensor(suffix)
        mask[row, prefix_len: prefix_len + len(suffix)] = 1
    kwargs: dict[str, Any] = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "use_cache": False}
    if cache is not None:
        batch_cache = _repeat_cache(cache, len(batch), model.config)
        kwargs.update({_cache_kwarg(decoder): batch_cache}, use_cache=True,
                      position_ids=torch.arange(prefix_len, prefix_len + width, device=device).expand(len(batch), -1))
    hidden = decoder(**kwargs).last_hidden_state  # [b, width, H]
    rows, cols, tgt, counts = [], [], [], []
    for row, i in enumerate(batch):
        t = seqs[i].targets
        rows += [row] * len(t)
        cols += [p - 1 - prefix_len for p in t]
        tgt += [seqs[i].ids[p] for p in t]
        counts.append(len(t))
    h = hidden[torch.tensor(rows, device=device), torch.tensor(cols, device=device)]
    del hidden, kwargs
    lp = _logprobs_from_hidden(model, h, torch.tensor(tgt, device=device), temperature, config.logit_chunk)
    return list(lp.cpu().split(counts))


def _prefix_pays(model, prefix_len: int, lengths: list[int], config: RewardConfig) -> bool:
    """Whether running a group's common prefix once beats running every sequence whole.

    A sequence that fills a micro-batch alone runs without padding, and then attention takes the causal fast path
    (only the lower triangle). After a cached prefix it needs an explicit mask, which costs the full
    suffix x (prefix + suffix) rectangle: about hidden x layers x suffix^2 more multiply-accumulates per sequence,
    against prefix x (linear MACs per token) saved per extra member. Long explanations after a short prompt lose.
    """
    alone = [n for n in lengths if config.batch_size == 1 or 2 * (n - prefix_len) > config.max_batch_tokens]
    if not alone:
        return True
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers, hidden = cfg.num_hidden_layers, cfg.hidden_size
    per_token = 12 * layers * hidden * hidden  # rough linear MACs per token of a decoder (enough for a decision)
    saved = (len(lengths) - 1) * prefix_len * per_token
    waste = sum(layers * hidden * (n - prefix_len) ** 2 for n in alone)
    return saved > waste


def _cache_kwarg(decoder) -> str:
    """The keyword under which this transformers version takes a KV cache: `cache` where the model's forward has it
    (newer releases, where `past_key_values` is deprecated and goes in 5.40), else `past_key_values`."""
    import inspect

    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _cache_of(output):
    """The KV cache a forward returned, under either name."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _repeat_cache(cache, n: int, config):
    """A KV cache holding `n` copies of a batch-1 prefix cache, for one micro-batch (the original stays intact).

    Dynamic caches are rebuilt from expanded (zero-copy) views of the prefix tensors, so the prefix is copied once,
    into the new cache; other cache types are deep-copied and repeated.
    """
    from transformers import DynamicCache

    layers = getattr(cache, "layers", None)
    if type(cache) is DynamicCache and layers and all(type(layer).__name__ == "DynamicLayer" for layer in layers):
        return DynamicCache([(layer.keys.expand(n, -1, -1, -1), layer.values.expand(n, -1, -1, -1)) for layer in layers], config=config)
    out = copy.deepcopy(cache)
    out.batch_repeat_interleave(n)
    return out


def _common_prefix_len(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for k in range(n):
        t = first[k]
        if any(s[k] != t for s in seqs[1:]):
            return k
    return n


def _tokens_inside(offsets: list[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Indices of tokens whose characters lie entirely inside span (zero-width tokens never count)."""
    a, b = span
    return [i for i, (s, e) in enumerate(offsets) if e > s and s >= a and e <= b]


_BYTE_DECODER: dict[str, int] | None = None


def _utf8_chars(data: bytes) -> list[int]:
    """The byte offset where each character of `data.decode("utf-8", errors="replace")` starts.

    Follows the decoder's rule for invalid input (the Unicode "maximal subpart" practice, which Python and Rust's
    from_utf8_lossy share): a truncated sequence is one U+FFFD, any other bad byte is one U+FFFD on its own.
    """
    starts, k, n = [], 0, len(data)
    while k < n:
        starts.append(k)
        b = data[k]
        if b < 0x80:
            k += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            need, lo, hi = 2, (0xA0 if b == 0xE0 else 0x80), (0x9F if b == 0xED else 0xBF)
        elif 0xF0 <= b <= 0xF4:
            need, lo, hi = 3, (0x90 if b == 0xF0 else 0x80), (0x8F if b == 0xF4 else 0xBF)
        else:  # a stray continuation byte or a byte that never occurs in UTF-8
            k += 1
            continue
        k += 1
        for j in range(need):  # the second byte has a narrower range for some leads, the others are 80..BF
            if k < n and (lo if j == 0 else 0x80) <= data[k] <= (hi if j == 0 else 0xBF):
                k += 1
            else:
                break
    return starts


def _byte_level(decoder) -> bool:
    """Whether a `tokenizers` decoder is byte-level: ByteLevel itself, or a Sequence holding it (SmolLM2's tokenizer
    read from GGUF has ByteFallback, Fuse, Replace and ByteLevel)."""
    if decoder is None:
        return False
    if type(decoder).__name__ == "ByteLevel":
        return True
    try:
        state = json.loads(decoder.__getstate__())
    except Exception:  # noqa: BLE001 - an unknown decoder: not byte-level
        return False
    return state.get("type") == "Sequence" and any(d.get("type") == "ByteLevel" for d in state.get("decoders", []))


def decode_with_offsets(tokenizer, ids: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of `ids` and each token's (start, end) characters in it, for any token sequence (also one the
    tokenizer would not produce from that text, as sampled sequences can be).

    Byte-level BPE (GPT-2, Qwen, Llama 3, SmolLM): exact, from each token's bytes (checked against `decode`). A
    token spans every character it has a byte of, as in the tokenizer's own offset mapping: when a character is split
    over several tokens (Qwen splits " 答" into three byte tokens), each of them spans that whole character, so none
    has zero width and each is scored wherever the tokenizer's own tokenisation would score it. Invalid UTF-8 (a
    sampled byte token without its continuation) is one U+FFFD per bad sequence, as `decode` gives. Other
    tokenizers: by decoding growing prefixes (quadratic, but exact).
    """
    global _BYTE_DECODER
    if _byte_level(getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)):
        if _BYTE_DECODER is None:
            from transformers.convert_slow_tokenizer import bytes_to_unicode

            _BYTE_DECODER = {c: b for b, c in bytes_to_unicode().items()}
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        pieces = tokenizer.convert_ids_to_tokens(ids)
        chunks = []
        for i, piece in zip(ids, pieces):
            if i in added or piece is None or any(c not in _BYTE_DECODER for c in piece):
                chunks.append(tokenizer.decode([i]).encode("utf-8"))  # added tokens; ids past the vocabulary: ""
            else:
                chunks.append(bytes(_BYTE_DECODER[c] for c in piece))
        data = b"".join(chunks)
        text = data.decode("utf-8", errors="replace")
        starts = _utf8_chars(data)
        if len(starts) == len(text) and text == tokenizer.decode(ids):  # the bytes are what the tokenizer decodes
            char_of = [0] * (len(data) + 1)  # byte -> the character it belongs to
            for c, (a, b) in enumerate(zip(starts, starts[1:] + [len(data)])):
                char_of[a:b] = [c] * (b - a)
            char_of[len(data)] = len(text)
            offsets, pos = [], 0
            for chunk in chunks:
                a, b = pos, pos + len(chunk)
                offsets.append((char_of[a], char_of[b - 1] + 1) if b > a else (char_of[a],) * 2)
                pos = b
            return text, offsets
    text, offsets, prev = "", [], 0  # fallback: prefix decoding
    for k in range(len(ids)):
        text = tokenizer.decode(ids[: k + 1])
        offsets.append((prev, len(text)))
        prev = len(text)
    return text, offsets


def check_same_tokenizer(tok_a, tok_b) -> None:
    """Teacher and student must tokenise identically (explanation tokens are compared one to one)."""
    if tok_a is tok_b:
        return
    if len(tok_a) != len(tok_b) or tok_a.get_vocab() != tok_b.get_vocab():
        raise WorkbenchError(
            "the teacher and the student use different tokenizers (vocabularies differ); the RLT reward compares "
            "their log-probs token by token, so pick a student from the teacher's model family"
        )


# ------------------------------------------------------------------------------------------------ scorer


@dataclass
class _Prepared:
    index: int
    id: Any
    penalty: float
    has_end_tag: bool
    teacher: _Seq
    student: _Seq
    t_expl: list[int]  # indices in teacher ids
    s_expl: list[int]  # indices in student ids
    s_sol: list[int]
    t_text: str
    t_offsets: list[tuple[int, int]]
    s_text: str
    s_offsets: list[tuple[int, int]]


class RLTScorer:
    """Scores (question, solution, completion) triples with the RLT reward.

    >>> scorer = RLTScorer(teacher, student, tokenizer)            # models from workbench.models
    >>> [r.reward for r in scorer.score([{"question": q, "solution": s, "completion": c}])]
    """

    def __init__(self, teacher, student, tokenizer, config: RewardConfig | None = None, student_tokenizer=None):
        self.teacher = teacher
        self.student = student
        self.tokenizer = tokenizer
        self.config = config or RewardConfig()
        if student_tokenizer is not None:
            check_same_tokenizer(tokenizer, student_tokenizer)
        if not getattr(tokenizer, "is_fast", False):
            raise WorkbenchError("the RLT reward needs a fast tokenizer (character offsets); load it with use_fast=True")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if self.pad_id is None:
            raise WorkbenchError("the tokenizer has neither a pad nor an eos token")

    # -- text and spans ------------------------------------------------------------------------------------

    def _encode(self, text: str):
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def _vocab_size(self) -> int:
        """How many token ids the tokenizer and the models know (a model's embedding may be padded past the tokenizer)."""
        sizes = [len(self.tokenizer)]
        for model in (self.teacher, self.student):
            size = getattr(getattr(model, "config", None), "vocab_size", None)
            if isinstance(size, int):
                sizes.append(size)
        return max(sizes)

    def _completion_ids(self, ids, check_range: bool = True) -> list[int] | None:
        """An item's `completion_ids`, checked: a list of integers, each (check_range) a token id of the vocabulary."""
        if ids is None:
            return None
        if not isinstance(ids, (list, tuple)):
            raise WorkbenchError(f"'completion_ids': expected a list of token ids, got {_kind(ids)}")
        vocab = None
        for k, i in enumerate(ids):
            if isinstance(i, bool) or not isinstance(i, int):
                raise WorkbenchError(f"'completion_ids': expected a list of token ids (integers), got {_kind(i)} "
                                     f"at position {k}")
            if not check_range:
                continue
            vocab = vocab or self._vocab_size()
            if not 0 <= i < vocab:
                shown = str(i) if abs(i) < 10**12 else f"{'-' if i < 0 else ''}(a {i.bit_length()}-bit integer)"
                raise WorkbenchError(f"'completion_ids': token id {shown} at position {k} is out of range (the "
                                     f"vocabulary has ids 0 to {vocab - 1}); were the ids made with another tokenizer?")
        return list(ids)

    def _max_len(self, model) -> int:
        if self.config.max_length:
            return self.config.max_length
        return int(getattr(model.config, "max_position_embeddings", 0) or 10**9)

    def prepare(self, item: dict, index: int = 0) -> _Prepared:
        """Build both texts, tokenise them and find the scored token positions. Raises WorkbenchError."""
        cfg, tags = self.config, self.config.tags
        question = _text_field(item, "question", "the problem")
        if not question.strip():
            raise WorkbenchError("'question' is empty: there is no problem to explain")
        solution = _text_field(item, "solution", "the reference solution")
        if not solution.strip():
            raise WorkbenchError("empty solution: 'solution' has no text, so there is nothing for the student to predict")
        if item.get("completion") is not None:
            _text_field(item, "completion", "")
        generated = cfg.teacher_tokenization == "generated"
        # the ids are used in "generated" mode, or in place of a missing completion text; otherwise only typed
        ids_in = self._completion_ids(item.get("completion_ids"),
                                      check_range=generated or item.get("completion") is None)
        prompt = formats.teacher_prompt(self.tokenizer, question, solution, cfg.teacher_system_prompt, tags)
        if isinstance(item.get("completion"), str):
            raw = item["completion"]
        elif ids_in is not None:
            raw = None
        elif item.get("explanation") is not None:
            raw = formats.format_completion(_text_field(item, "explanation", ""), tags)
        else:
            raise WorkbenchError("the item needs 'completion' (the raw teacher text), 'completion_ids' or "
                                 "'explanation' (the explanation body)")
        if generated:  # the sampled ids (or the text tokenised alone) and their characters
            c_ids = list(ids_in) if ids_in is not None else self._encode(raw)[0]
            special = set(self.tokenizer.all_special_ids)
            while c_ids and c_ids[-1] in special:  # EOS / end of turn: not text, never scored
                c_ids.pop()
            raw, c_off = decode_with_offsets(self.tokenizer, c_ids)
        elif raw is None:
            raw = self.tokenizer.decode(list(ids_in), skip_special_tokens=True)
        parsed = formats.parse_completion(raw, tags)
        body = parsed.body
        penalty = 0.0 if parsed.has_end_tag else cfg.format_penalty
        if parsed.trailing.strip():
            penalty += cfg.trailing_text_penalty

        e_start = len(prompt) - len(formats.PAD)
        if generated:
            # the teacher's own tokens: prompt ids, then the sampled ids up to the end of the body; offsets are
            # placed as if the completion followed the prompt's text, so spans compare with the student's
            p_ids = self._encode(prompt)[0]
            n = sum(1 for a, b in c_off if b <= len(body))
            t_ids = p_ids + c_ids[:n]
            t_off = [(0, 0)] * len(p_ids) + [(a + len(prompt), b + len(prompt)) for a, b in c_off[:n]]
            t_text = prompt + body
        else:
            t_text = prompt + body + tags.explanation_end
            t_ids, t_off = self._encode(t_text)
        t_expl = _tokens_inside(t_off, (e_start, len(prompt) + len(body)))

        chat = formats.student_chat(self.tokenizer, question, parsed.explanation, solution, cfg.student_system_prompt, tags)
        s_ids, s_off = self._encode(chat.text)
        s_expl = _tokens_inside(s_off, chat.explanation_span)
        s_sol = _tokens_inside(s_off, chat.solution_span)
        if not s_sol:
            raise WorkbenchError("empty solution span: no solution token lies inside the solution tags")

        # The explanation is tokenised in two contexts; at its edges they can differ (".<" merges with the
        # teacher's end tag but not with "</think>"). Score the tokens both contexts share: same id, same
        # characters relative to the span start. Usually that is every token.
        t_expl, s_expl = _shared_tokens(t_ids, t_off, t_expl, e_start, s_ids, s_off, s_expl, chat.explanation_span[0])
        # the teacher's tokens after its last scored one (the end tag, in "joint") change no scored log-prob: not run,
        # so that "joint" and "generated" run the same sequence whenever their ids agree
        t_ids = t_ids[: t_expl[-1] + 1] if t_expl else t_ids
        for ids, model, who in ((t_ids, self.teacher, "teacher"), (s_ids, self.student, "student")):
            if len(ids) > self._max_len(model):
                raise WorkbenchError(f"{who} sequence has {len(ids)} tokens, more than the model's {self._max_len(model)}")
        group = (question, solution)
        return _Prepared(
            index=index, id=item.get("id"), penalty=penalty,
            has_end_tag=parsed.has_end_tag,
            teacher=_Seq(t_ids, t_expl, group), student=_Seq(s_ids, s_expl + s_sol, question),
            t_expl=t_expl, s_expl=s_expl, s_sol=s_sol, t_text=t_text, t_offsets=t_off, s_text=chat.text, s_offsets=s_off,
        )

    # -- scoring -------------------------------------------------------------------------------------------

    def score(self, items: list[dict], progress: bool = False) -> list[RewardResult]:
        """Score a batch. Items that cannot be scored come back with `error` set; the others go on."""
        cfg = self.config
        results: list[RewardResult] = [RewardResult(id=it.get("id") if isinstance(it, dict) else None) for it in items]
        prepared: list[_Prepared] = []
        for i, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise WorkbenchError("item must be a mapping with question, solution and completion")
                prepared.append(self.prepare(item, i))
            except WorkbenchError as exc:
                results[i].error = str(exc)
            except (TypeError, ValueError, OverflowError, IndexError, KeyError, RecursionError) as exc:
                results[i].error = f"cannot score this item ({type(exc).__name__}: {exc})"  # never the whole batch
        if not prepared:
            return results
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prepared) * (2 if cfg.teacher_entropy else 1), desc="scoring", unit="seq", leave=False)
        try:
            s_lp = sequence_logprobs(self.student, [p.student for p in prepared], cfg.student_temperature,
                                     self.pad_id, cfg, bar)
            t_lp = [None] * len(prepared)
            if cfg.teacher_entropy:
                t_lp = sequence_logprobs(self.teacher, [p.teacher for p in prepared], cfg.teacher_temperature,
                                         self.pad_id, cfg, bar)
        finally:
            if bar is not None:
                bar.close()
        for k, p in enumerate(prepared):
            n_expl = len(p.s_expl)
            student_expl, student_sol = s_lp[k][:n_expl], s_lp[k][n_expl:]
            results[p.index] = self._combine(p, student_sol, student_expl, t_lp[k])
        return results

    def _token_text(self, text: str, offset: tuple[int, int], token_id: int) -> str:
        return text[offset[0]:offset[1]]

    def _combine(self, p: _Prepared, sol_lp: torch.Tensor, s_expl_lp: torch.Tensor,
                 t_expl_lp: torch.Tensor | None) -> RewardResult:
        cfg = self.config
        if t_expl_lp is None:  # no-teacher-entropy variant
            kl = -s_expl_lp
        else:
            kl = t_expl_lp - s_expl_lp
            if cfg.kl_estimator == "k3":
                kl = kl - 1 + torch.exp(-kl)
        r_ss = weighted(sol_lp, cfg.solution_reductions, cfg.solution_coeffs)
        if kl.numel():
            r_kl = weighted(kl, cfg.kl_reductions, cfg.kl_coeffs)
            kl_mean, kl_max = kl.mean().item(), kl.max().item()
        else:  # empty explanation: every KL reduction takes the documented value
            r_kl = float(sum(cfg.kl_coeffs)) * cfg.empty_explanation_kl
            kl_mean = kl_max = cfg.empty_explanation_kl
        reward = r_ss - r_kl + p.penalty
        numbers = (reward, r_ss, r_kl, kl_mean, kl_max)
        if not all(math.isfinite(x) for x in numbers) or not torch.isfinite(sol_lp).all():
            return RewardResult(id=p.id, error="non-finite log-probs: the model produced NaN/inf logits")
        s_tok = [self._token_text(p.s_text, p.s_offsets[i], p.student.ids[i]) for i in p.s_expl]
        return RewardResult(
            id=p.id, reward=reward, r_ss=r_ss, r_kl=r_kl,
            solution_logprob_mean=sol_lp.mean().item(), solution_logprob_min=sol_lp.min().item(),
            kl_mean=kl_mean, kl_max=kl_max, format_penalty=p.penalty, has_end_tag=p.has_end_tag,
            solution_tokens=[{"token": self._token_text(p.s_text, p.s_offsets[i], p.student.ids[i]), "logprob": float(v)}
                             for i, v in zip(p.s_sol, sol_lp.tolist())],
            explanation_tokens=[
                {"token": tok, "teacher_logprob": None if t_expl_lp is None else float(t),
                 "student_logprob": float(s), "kl": float(d)}
                for tok, t, s, d in zip(s_tok, (t_expl_lp.tolist() if t_expl_lp is not None else [None] * len(s_tok)),
                                        s_expl_lp.tolist(), kl.tolist())
            ],
        )


def _kind(value) -> str:
    """How a JSON value reads in an error message: text, a number, a list ..."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def _text_field(item: dict, key: str, what: str) -> str:
    """item[key] as text; otherwise an error that names the field and what it holds instead."""
    value = item.get(key)
    if value is None:
        raise WorkbenchError(f"missing '{key}'" + (f" ({what})" if what else ""))
    if not isinstance(value, str):
        raise WorkbenchError(f"'{key}': expected text, got {_kind(value)}")
    return value


def _shared_tokens(t_ids, t_off, t_idx, t0, s_ids, s_off, s_idx, s0) -> tuple[list[int], list[int]]:
    """Explanation tokens present in both sequences: same id at the same characters relative to the span start."""
    t_keys = [(t_off[i][0] - t0, t_off[i][1] - t0, t_ids[i]) for i in t_idx]
    s_keys = [(s_off[i][0] - s0, s_off[i][1] - s0, s_ids[i]) for i in s_idx]
    if t_keys == s_keys:
        return t_idx, s_idx
    common = set(t_keys) & set(s_keys)
    return ([i for i, k in zip(t_idx, t_keys) if k in common], [i for i, k in zip(s_idx, s_keys) if k in common])


# ------------------------------------------------------------------------------------------------ TRL


class RLTReward:
    """A TRL reward function: `GRPOTrainer(reward_funcs=[RLTReward(scorer)])`.

    Called as `(prompts, completions, question=[...], solution=[...], **columns) -> list[float]`; the dataset
    must have `question` and `solution` columns. Items that cannot be scored (an empty solution) get None, which
    TRL treats as "no reward from this function". The components of the last call are kept in `last_results`
    and their means in `last_metrics`, for logging.
    """

    def __init__(self, scorer: RLTScorer):
        self.scorer = scorer
        self.__name__ = "rlt_reward"
        self.last_results: list[RewardResult] = []
        self.last_metrics: dict[str, float] = {}

    def __call__(self, prompts, completions, question=None, solution=None, completion_ids=None,
                 **columns) -> list[float | None]:
        if question is None or solution is None:
            raise WorkbenchError("the training dataset needs 'question' and 'solution' columns for the RLT reward")
        texts = [_completion_text(c) for c in completions]
        items = [{"question": q, "solution": s, "completion": c} for q, s, c in zip(question, solution, texts)]
        if completion_ids is not None and self.scorer.config.teacher_tokenization == "generated":
            for item, ids in zip(items, completion_ids):  # the sampled tokens, not a re-tokenisation of the text
                item["completion_ids"] = [int(t) for t in ids]
        self.last_results = self.scorer.score(items)
        ok = [r for r in self.last_results if r.ok]
        if ok:
            self.last_metrics = {
                "r_ss": sum(r.r_ss for r in ok) / len(ok),
                "r_kl": sum(r.r_kl for r in ok) / len(ok),
                "format_penalty_rate": sum(r.format_penalty != 0 for r in ok) / len(ok),
                "kl_mean": sum(r.kl_mean for r in ok) / len(ok),
                "error_rate": 1 - len(ok) / len(self.last_results),
            }
        return [r.reward if r.ok else None for r in self.last_results]


def _completion_text(c) -> str:
    """TRL passes strings for text datasets and [{"role", "content"}] for conversational ones."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        return str(c[-1].get("content", ""))
    return str(c)


def score_texts(teacher, student, tokenizer, items: list[dict], config: RewardConfig | None = None,
                progress: bool = False) -> list[RewardResult]:
    """One-call convenience for notebooks: `RLTScorer(...).score(items)`."""
    return RLTScorer(teacher, student, tokenizer, config).score(items, progress=progress)


__all__ = ["RewardConfig", "RewardResult", "RLTScorer", "RLTReward", "score_texts", "decode_with_offsets", "REDUCTIONS"]


# ------------------------------------------------------------------------------------------------ step attribution


def attribute_steps(scorer: RLTScorer, item: dict) -> list[dict]:
    """Which steps teach: for each step of the explanation (its paragraphs, `formats.step_spans`), the reward and
    r_ss of the whole explanation minus the same with that step removed (`formats.without_step`).

    The whole explanation and every ablation are scored in one batched call. A raw `completion` is ablated inside its
    body, so its end tag and any trailing text stay as they are. `completion_ids` are dropped: an ablated text has no
    ids of its own, so every variant is tokenised the same way. Returns
    [{"step", "text", "delta_reward", "delta_r_ss"}] (1-based steps); raises WorkbenchError when the item cannot be
    scored at all.
    """
    tags = formats.get_tags(scorer.config.tag_style)
    key = "completion" if isinstance(item.get("completion"), str) else "explanation"
    text = item.get(key)
    if not isinstance(text, str):
        raise WorkbenchError("step attribution needs 'completion' or 'explanation' as text")
    end = text.find(tags.explanation_end) if key == "completion" else -1
    body_end = len(text) if end < 0 else end
    spans = formats.step_spans(text[:body_end])
    base = {k: v for k, v in item.items() if k not in ("completion_ids", "completion", "explanation")}
    variants = [{**base, key: text}]
    variants += [{**base, key: formats.without_step(text[:body_end], spans, i) + text[body_end:]}
                 for i in range(len(spans))]
    results = scorer.score(variants)
    full = results[0]
    if not full.ok:
        raise WorkbenchError(f"cannot attribute: {full.error}")
    out = []
    for i, ((s, e), res) in enumerate(zip(spans, results[1:]), 1):
        row = {"step": i, "text": text[s:e], "delta_reward": None, "delta_r_ss": None}
        if res.ok:
            row.update(delta_reward=full.reward - res.reward, delta_r_ss=full.r_ss - res.r_ss)
        else:
            row["error"] = res.error
        out.append(row)
    return out
