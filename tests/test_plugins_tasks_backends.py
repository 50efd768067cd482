"""A task and a rollout backend added from outside lad_ref, with no edit to lad_ref (issue 20).

tests/plugins/parity_task.py registers the task ``parity`` (settings ``data.parity``) and
tests/plugins/echo_backend.py the backend ``echo`` (settings ``rollout.echo``); a run names the
module in ``plugins`` (a config list, or ``--plugins`` on the command line) and the trainer imports it
before it reads the rest of the config. Also: unknown names are refused by the registries, listing
what is registered, and the former flat ``rollout.vllm_*`` keys of stored configs still read back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from lad_ref.config_io import ConfigError, load_yaml, yaml_dump
from lad_ref.llm import train as train_mod
from lad_ref.llm.backends import backend_names, unregister_backend
from lad_ref.llm.config import from_dict, resolve, to_dict
from lad_ref.llm.tasks import task_names, unregister_task

PLUGINS = Path(__file__).resolve().parent / "plugins"


@pytest.fixture
def plugins(monkeypatch):
    """tests/plugins on sys.path (as a user's PYTHONPATH would be); afterwards the plugins are forgotten, so
    that no other test sees their registrations."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    unregister_task("parity")
    unregister_backend("echo")
    for module in ("parity_task", "echo_backend"):
        sys.modules.pop(module, None)


def small(tmp_path: Path, **sections) -> dict:
    """A run of seconds on the tiny model: 5 SFT steps, 2 RL steps of 4 prompts x 4 samples."""
    cfg = {
        "seed": 0, "threads": 1, "output_dir": str(tmp_path / "run"),
        "model": {"name_or_path": "tiny"},
        "sft": {"steps": 5, "batch_size": 16, "warmup_steps": 1, "cache_dir": str(tmp_path / "sft")},
        "rollout": {"prompts_per_step": 4, "group_size": 4, "max_new_tokens": 3},
        "optim": {"steps": 2, "epochs": 1, "mini_batch_size": 8, "micro_batch_size": 8},
        "eval": {"num_samples": 4, "pass_ks": [1, 2], "batch_size": 64},
        "logging": {"plots": False, "progress_bar": False},
        "checkpoint": {"every": 1},
    }
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_plugin_task_from_a_config_file(plugins, tmp_path):
    data = small(tmp_path, data={"task": "parity", "parity": {"digits": 2, "num_prompts": 40, "eval_prompts": 8}})
    data["plugins"] = ["parity_task"]
    (tmp_path / "parity.yaml").write_text(yaml_dump(data))
    assert train_mod.main(["--config", str(tmp_path / "parity.yaml")]) == 0
    run = tmp_path / "run"
    got = rows(run)
    assert [r["step"] for r in got] == [0, 1, 2]
    assert 0.0 <= got[-1]["eval/avg_at_k"] <= 1.0 and "train/reward_mean" in got[1]
    assert (run / "start_policy" / "sft_info.json").exists()  # the SFT warm start ran on its sampled solutions
    saved = resolve(str(run / "config.yaml"), {})  # the stored config names its plugin and reads back
    assert saved.plugins == ["parity_task"] and saved.data.parity.digits == 2 and saved.data.parity.eval_prompts == 8


def test_plugin_task_from_command_line_flags(plugins, tmp_path, capsys):
    base = small(tmp_path)
    (tmp_path / "base.yaml").write_text(yaml_dump(base))
    args = ["--config", str(tmp_path / "base.yaml"), "--plugins", "parity_task", "--data.task", "parity",
            "--data.parity.digits", "3", "--data.parity.num_prompts", "24", "--data.parity.eval_prompts", "4"]
    with pytest.raises(SystemExit):  # --help lists the plugin's flags: --plugins is read before the parser is built
        train_mod.main([*args, "--help"])
    assert "--data.parity.digits" in capsys.readouterr().out
    assert train_mod.main(args) == 0
    cfg = resolve(str(tmp_path / "run" / "config.yaml"), {})
    assert cfg.data.task == "parity" and cfg.data.parity.num_prompts == 24
    assert [r["step"] for r in rows(tmp_path / "run")] == [0, 1, 2]
    # a bad value of the plugin's settings is refused when the config is validated, by the task's own check
    assert train_mod.main([*args, "--data.parity.eval_prompts", "30", "--output-dir", str(tmp_path / "bad")]) == 2
    assert "data.parity" in capsys.readouterr().err


def test_plugin_backend_from_config_and_flags(plugins, tmp_path):
    data = small(tmp_path, rollout={"backend": "echo", "echo": {"chunk_size": 8}}, sft={"enabled": True})
    data["plugins"] = ["echo_backend"]
    data["data"] = {"max_eval_prompts": 8}  # the toy task, 8 held-out prompts
    data["rollout"]["max_new_tokens"] = 10
    (tmp_path / "echo.yaml").write_text(yaml_dump(data))
    assert train_mod.main(["--config", str(tmp_path / "echo.yaml")]) == 0
    import echo_backend

    calls = len(echo_backend.CALLS)
    assert calls >= 4  # start eval, 2 rollouts, final eval: all sampled by the plugin
    got = rows(tmp_path / "run")
    assert got[1]["rollout/logprob_max_abs_diff"] < 1e-4  # its recorded pi_old agrees with the trainer's
    # the same from flags alone, with the plugin's settings field
    args = ["--plugins", "echo_backend", "--rollout.backend", "echo", "--rollout.echo.chunk_size", "4",
            "--config", str(tmp_path / "echo.yaml"), "--output-dir", str(tmp_path / "run2")]
    assert train_mod.main(args) == 0
    assert len(echo_backend.CALLS) > calls and max(echo_backend.CALLS[calls:]) <= 8 * 4
    assert resolve(str(tmp_path / "run2" / "config.yaml"), {}).rollout.echo.chunk_size == 4


def test_unknown_names_are_refused_listing_the_registered_ones(plugins, tmp_path, capsys):
    for key, value, listed in (("data.task", "parityy", ("digit_sum", "math", "code", "parity")),
                               ("rollout.backend", "ecko", ("hf", "hf-static", "hf-continuous", "vllm", "echo"))):
        with pytest.raises(ConfigError) as e:
            resolve(None, {"plugins": ["parity_task", "echo_backend"], key: value})
        msg = str(e.value)
        assert f"{key}={value!r}" in msg and ", ".join(listed) in msg and "did you mean" in msg, msg
        assert "\n" not in msg and msg.count(". ") == 0 and msg.endswith("."), msg  # one sentence
    assert "parity" in task_names() and "echo" in backend_names()
    # through the command line: before any work (no run folder)
    assert train_mod.main(["--plugins", "parity_task", "--data.task", "chess", "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "data.task='chess'" in err and "parity" in err and not (tmp_path / "r").exists()
    # a plugin that cannot be imported is one sentence too
    with pytest.raises(ConfigError, match="plugins: cannot import 'no_such_plugin'"):
        resolve(None, {"plugins": "no_such_plugin"})


def test_legacy_vllm_keys_read_back_into_the_rollout_vllm_section(tmp_path):
    from lad_ref.llm.backends.vllm import VLLMSettings
    from lad_ref.study.runs import check_folder

    cfg = from_dict({"rollout": {"vllm_gpu_memory_utilization": 0.5, "vllm_max_model_len": 512}})
    assert cfg.rollout.vllm == VLLMSettings(gpu_memory_utilization=0.5, max_model_len=512)
    assert "vllm_gpu_memory_utilization" not in to_dict(cfg)["rollout"]
    assert from_dict({}).rollout.vllm == VLLMSettings()  # defaults unchanged: 0.35, null
    with pytest.raises(ConfigError, match="former name"):
        from_dict({"rollout": {"vllm_max_model_len": 512, "vllm": {"max_model_len": 256}}})
    # a study folder written before the move still matches its config (defaults, the flat keys)
    new = resolve(None, {"output_dir": str(tmp_path / "s")})
    old = to_dict(new)
    old["rollout"].pop("vllm")
    old.pop("plugins")
    old["rollout"].update(vllm_gpu_memory_utilization=0.35, vllm_max_model_len=None)
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "config.yaml").write_text(yaml_dump(old))
    check_folder(new, tmp_path / "s")


def _legacy(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    v = d["rollout"].pop("vllm")
    d["rollout"].update(vllm_gpu_memory_utilization=v["gpu_memory_utilization"], vllm_max_model_len=v["max_model_len"])
    d.pop("plugins", None)
    return d


def test_a_run_written_with_the_legacy_keys_resumes(tmp_path):
    import torch

    from lad_ref.llm import checkpoint as ckpt

    data = small(tmp_path, data={"max_eval_prompts": 4}, sft={"enabled": False})
    (tmp_path / "c.yaml").write_text(yaml_dump(data))
    run = tmp_path / "run"
    assert train_mod.main(["--config", str(tmp_path / "c.yaml"), "--stop-after", "1"]) == 0
    # make the folder look as an older version wrote it: config.yaml and the checkpoint's config
    (run / "config.yaml").write_text(yaml_dump(_legacy(load_yaml(run / "config.yaml"))))
    for c in ckpt.checkpoint_dirs(run):
        state = ckpt.load_trainer_state(c)
        state["config"] = _legacy(state["config"])
        torch.save(state, c / ckpt.STATE_FILE)
    assert "vllm_gpu_memory_utilization" in (run / "config.yaml").read_text()
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 0
    assert [r["step"] for r in rows(run)] == [0, 1, 2]
    assert resolve(str(run / "config.yaml"), {}).rollout.vllm.gpu_memory_utilization == 0.35


def test_a_backend_that_needs_cuda_is_refused_without_it():
    from lad_ref.llm.backends import check_device, get_backend

    assert get_backend("vllm").needs_cuda and not get_backend("hf").needs_cuda
    with pytest.raises(ConfigError, match=r"rollout.backend='vllm' needs a CUDA GPU, which device='cpu' does not give"):
        resolve(None, {"rollout.backend": "vllm", "device": "cpu"})
    with pytest.raises(ConfigError, match="no CUDA GPU is visible.*valid choices there are hf, hf-static, hf-continuous"):
        check_device("vllm", "auto", cuda_available=False)
    check_device("vllm", "auto", cuda_available=True)
    check_device("hf", "cpu", cuda_available=False)
