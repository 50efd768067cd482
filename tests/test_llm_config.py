"""Config: YAML + overrides, validation, clear one-sentence errors before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from lad_ref.llm import train as train_mod
from lad_ref.llm.config import (
    ConfigError,
    from_dict,
    parse_dotted_args,
    parse_value,
    resolve,
    validate,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "llm" / "configs"


@pytest.mark.parametrize(
    "name", ["toy.yaml", "toy-gpu.yaml", "qwen2.5-7b-dapo-math.yaml", "r1-distill-qwen-7b-deepcoder.yaml"]
)
def test_shipped_configs_validate(name):
    cfg = resolve(str(CONFIGS / name), {})
    assert cfg.objective.name == "lad"
    assert cfg.objective.lad.divergence == "js"


def test_cli_aliases_and_dotted_overrides(tmp_path):
    args, cfg = train_mod.parse([
        "--config", str(CONFIGS / "toy.yaml"), "--objective", "lad", "--divergence", "hd", "--eta", "2",
        "--output-dir", str(tmp_path), "--rollout.temperature", "0.8", "--optim.lr=3e-4", "--seed", "3",
    ])
    assert cfg.objective.lad.divergence == "hd" and cfg.objective.lad.eta == 2.0
    assert cfg.rollout.temperature == 0.8 and cfg.optim.lr == 3e-4 and cfg.seed == 3
    assert cfg.output_dir == str(tmp_path)
    # resolved: every lad hyperparameter is filled from the loss function's defaults
    assert cfg.objective.lad.level == "token"


def test_objective_switch_fills_that_objectives_defaults():
    cfg = resolve(str(CONFIGS / "toy.yaml"), {"objective.name": "grpo"})
    assert cfg.objective.grpo.clip_ratio_low == 0.2


def test_parse_value_yaml_scalars():
    assert parse_value("1") == 1 and parse_value("true") is True and parse_value("null") is None
    assert parse_value("[1, 2]") == [1, 2] and parse_value("js") == "js"


@pytest.mark.parametrize(
    "overrides, fragments",
    [
        ({"rollout.temprature": 0.5}, ["unknown config key 'rollout.temprature'", "did you mean 'temperature'", "top_p"]),
        ({"objective.name": "ppo"}, ["unknown objective.name 'ppo'", "lad, grpo, entadv, kl_cov, clip_cov, flowrl"]),
        ({"objective.lad.divergence": "kll"}, ["objective.lad: unknown divergence 'kll'", "kl, rkl, jf, tv, hd, js"]),
        ({"objective.loss_agg_mode": "mean"}, ["unknown objective.loss_agg_mode 'mean'", "token-mean"]),
        ({"objective.advantage_estimator": "ppo"}, ["unknown objective.advantage_estimator 'ppo'", "grpo, drgrpo, rloo"]),
        ({"objective.lad.temperature": 1}, ["unknown config key 'objective.lad.temperature'", "divergence, eta, level"]),
        ({"objective.lad.eta": -1}, ["eta", "-1"]),
        ({"objective.grpo.ref_log_prob": 1, "objective.name": "grpo"},  # an extra input, not a hyperparameter
         ["unknown config key 'objective.grpo.ref_log_prob'", "clip_ratio_low, clip_ratio_high, clip_ratio_c"]),
        ({"optim.lr": "fast"}, ["optim.lr='fast'", "expected float"]),
        ({"rollout.group_size": 1}, ["rollout.group_size=1", ">= 2"]),
        ({"data.task": "chess"}, ["data.task='chess' is not a registered task", "digit_sum, math, code"]),
        ({"optim.mini_batch_size": 48}, ["optim.mini_batch_size=48", "128"]),
        ({"bogus": 1}, ["unknown config key 'bogus'", "valid keys at the top level"]),
    ],
)
def test_bad_values_give_one_clear_sentence(overrides, fragments):
    with pytest.raises(ConfigError) as e:
        resolve(str(CONFIGS / "toy.yaml"), overrides)
    msg = str(e.value)
    for frag in fragments:
        assert frag in msg, msg
    assert msg.endswith(".") and "\n" not in msg


def test_unknown_cli_option_is_an_error():
    with pytest.raises(ConfigError, match="unknown option '--divergnce'.*did you mean '--divergence'"):
        parse_dotted_args(["--divergnce", "js"])


def test_yaml_float_without_dot_is_accepted():
    cfg = validate(from_dict({"optim": {"lr": "3e-4"}}))
    assert cfg.optim.lr == pytest.approx(3e-4)


def test_main_fails_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = train_mod.main(["--config", str(CONFIGS / "toy.yaml"), "--divergence", "foo", "--output-dir", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown divergence 'foo'" in err and "js" in err
    assert not out.exists()  # nothing was created


def test_refuses_non_empty_output_dir(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    code = train_mod.main(["--config", str(CONFIGS / "toy.yaml"), "--output-dir", str(tmp_path)])
    assert code == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_resume_rejects_changing_the_objective(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    code = train_mod.main(["--resume", str(tmp_path), "--objective", "grpo"])
    assert code == 2
    assert "cannot be changed when resuming" in capsys.readouterr().err


def test_help_documents_every_field(capsys):
    with pytest.raises(SystemExit):
        train_mod.main(["--help"])
    out = capsys.readouterr().out
    for key in ("--rollout.temperature", "--objective.kl_coef", "--optim.epochs", "--eval.num_samples",
                "--checkpoint.every", "--sft.cache_dir", "--model.lora.r", "--resume", "--overwrite"):
        assert key in out


def test_bad_data_file_fails_before_any_work(tmp_path, capsys):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?" "answer": "4"}\n')
    out = tmp_path / "run"
    code = train_mod.main([
        "--config", str(CONFIGS / "toy.yaml"), "--output-dir", str(out), "--data.task", "math",
        "--data.train_files", f"[{bad}]", "--data.eval_files", f"[{bad}]",
    ])
    assert code == 2
    err = capsys.readouterr().err
    assert "train.jsonl" in err and "line 2" in err and "not valid JSON" in err
    assert not out.exists()


def test_evaluate_help_documents_its_options(capsys):
    from lad_ref.llm import evaluate as evaluate_mod

    with pytest.raises(SystemExit):
        evaluate_mod.main(["--help"])
    out = capsys.readouterr().out
    for key in ("--run", "--checkpoint", "--num-samples", "--max-prompts", "--temperature", "--output", "--samples"):
        assert key in out
