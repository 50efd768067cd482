"""Run folders that cannot mix or lose runs: --overwrite, the writer lock, interruption by signal,
torn metrics lines, unreadable checkpoints, and what --resume may change."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from test_llm_train import ROOT, fast_args, read_rows, strip_times

from lad_ref.llm import checkpoint as ckpt
from lad_ref.llm import train as train_mod
from lad_ref.llm.config import ConfigError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_cache")


def ckpt_names(run: Path) -> list[str]:
    return sorted(p.name for p in (run / "checkpoints").iterdir())


@pytest.mark.slow
def test_overwrite_moves_the_old_run_aside(cache, tmp_path):
    """The issue's repro: an old run with higher-numbered checkpoints must not survive in checkpoints/."""
    run = tmp_path / "run"
    assert train_mod.main(fast_args(cache, run, "--objective", "lad", "--steps", "4", "--checkpoint.every", "2")) == 0
    assert ckpt_names(run) == ["step_000002", "step_000004"]
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo", "--steps", "3", "--checkpoint.every", "1",
                                    "--overwrite")) == 0
    assert ckpt_names(run) == ["step_000002", "step_000003"]  # keep_last 2 of the NEW run only
    assert ckpt.load_trainer_state(run / "checkpoints" / "step_000003")["config"]["objective"]["name"] == "grpo"
    assert [r["step"] for r in read_rows(run)] == [0, 1, 2, 3]
    (archived,) = (run / "overwritten").iterdir()
    assert ckpt_names(archived) == ["step_000002", "step_000004"]  # nothing of the old run is lost
    assert "lad" in (archived / "config.yaml").read_text()
    assert ckpt.latest_checkpoint(run).name == "step_000003"


def test_non_empty_folder_is_refused_without_overwrite(cache, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("mine")
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo")) == 2
    assert "--overwrite" in capsys.readouterr().err and (run / "keep.txt").read_text() == "mine"


def test_read_only_output_folder_fails_before_any_work(cache, tmp_path, capsys):
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert train_mod.main(fast_args(cache, ro / "run", "--objective", "grpo")) == 2
            assert "not writable" in capsys.readouterr().err
        finally:
            ro.chmod(0o700)
        return
    # root writes into read-only folders, so the check is exercised as an unprivileged user (uid 65534)
    # in a child process; pytest's tmp_path is private to root, so the folders live under a 0755 one
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and util-linux's setpriv is not installed to drop privileges")
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="lad_ro_"))
    try:
        base.chmod(0o755)
        ro, home = base / "ro", base / "home"
        ro.mkdir(mode=0o555)
        home.mkdir()
        os.chown(home, 65534, 65534)
        argv = fast_args(home / "cache", ro / "run", "--objective", "grpo")
        env = {**os.environ, "HOME": str(home), "HF_HOME": str(home / "hf"), "PYTHONPATH": str(ROOT)}
        proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                               sys.executable, "-m", "lad_ref.llm.train", *argv],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, proc.stderr[-2000:]
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "not writable" in lines[0] and str(ro / "run") in lines[0], proc.stderr
        assert not (base / "cache").exists() and list(ro.iterdir()) == []  # no SFT, nothing written
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_second_writer_is_refused(cache, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    with ckpt.RunLock(run):
        assert train_mod.main(fast_args(cache, run, "--objective", "grpo", "--overwrite")) == 2
    err = capsys.readouterr().err
    assert f"process {os.getpid()}" in err and "another --output-dir" in err
    with ckpt.RunLock(run):  # released on exit: the same folder can be locked again
        pass


def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"step": 1}\n{"step": 2, "train/rew')
    with pytest.warns(UserWarning, match="line 3 is torn"):
        assert ckpt.read_metrics(tmp_path) == [{"step": 0}, {"step": 1}]
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{"st\n{"step": 2}\n')
    with pytest.raises(ConfigError, match="line 2 is not valid JSON"):
        ckpt.read_metrics(tmp_path)


@pytest.mark.slow
def test_sigterm_between_checkpoints_checkpoints_and_resumes_identically(monkeypatch, cache, tmp_path, capsys):
    """SIGTERM during step 2 of 4 (checkpoints only every 4): the step finishes, is checkpointed,
    one line says how to resume, exit 143; the resumed run equals an uninterrupted one."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ("--objective", "lad", "--checkpoint.every", "4")
    assert train_mod.main(fast_args(cache, full, *args)) == 0

    real_update = train_mod.update_policy

    def update_then_signal(cfg, step, *a, **k):
        out = real_update(cfg, step, *a, **k)
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # arrives mid-step, as a scheduler's would
        return out

    monkeypatch.setattr(train_mod, "update_policy", update_then_signal)

    def reached_the_test(signum, frame):  # only if the trainer installed no handler of its own
        raise AssertionError("SIGTERM was not handled by the trainer")

    old = signal.signal(signal.SIGTERM, reached_the_test)
    try:
        code = train_mod.main(fast_args(cache, cut, *args))
    finally:
        assert signal.getsignal(signal.SIGTERM) is reached_the_test  # the trainer restored what it found
        signal.signal(signal.SIGTERM, old)
    assert code == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("[lad_ref] stopped by SIGTERM")]
    assert "after RL step 2/4" in line and f"--resume {cut}" in line and "step_000002" in line
    assert ckpt_names(cut) == ["step_000002"] and not (cut / "results.json").exists()

    monkeypatch.setattr(train_mod, "update_policy", real_update)
    # a torn metrics line written as the process died must not block the resume
    with open(cut / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 3, "train/rew')
    with pytest.warns(UserWarning, match="torn"):
        assert train_mod.main(["--resume", str(cut), "--no-progress"]) == 0
    assert json.loads((cut / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    assert strip_times(read_rows(cut)) == strip_times(read_rows(full))


@pytest.mark.slow
def test_corrupt_latest_checkpoint_falls_back_to_the_previous(cache, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ("--objective", "grpo", "--checkpoint.every", "1", "--checkpoint.keep_last", "3")
    assert train_mod.main(fast_args(cache, full, *args)) == 0
    assert train_mod.main(fast_args(cache, cut, *args, "--stop-after", "3")) == 0
    weights = cut / "checkpoints" / "step_000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a copy cut short
    with pytest.warns(UserWarning, match=r"step_000003 is unreadable .*model\.safetensors"):
        assert train_mod.main(["--resume", str(cut), "--no-progress"]) == 0
    assert json.loads((cut / "results.json").read_text()) == json.loads((full / "results.json").read_text())


@pytest.mark.slow
def test_resume_rules(cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo", "--stop-after", "2")) == 0
    capsys.readouterr()
    assert train_mod.main(["--resume", str(run), "--output-dir", str(tmp_path / "elsewhere")]) == 2
    assert "differs from --resume" in capsys.readouterr().err and not (tmp_path / "elsewhere").exists()
    assert train_mod.main(["--resume", str(run), "--optim.steps", "1"]) == 2
    assert "below the run's last checkpoint (step 2)" in capsys.readouterr().err
    assert train_mod.main(["--resume", str(run), "--optim.lr", "1e-5"]) == 2
    assert "cannot be changed when resuming" in capsys.readouterr().err
    assert train_mod.main(["--resume", str(run), "--optim.steps", "5", "--no-progress"]) == 0
    (entry,) = [json.loads(x) for x in (run / "resume_log.jsonl").read_text().splitlines()]
    assert entry["changed"]["optim.steps"] == [4, 5] and "schedule" in entry["note"]
    assert "steps: 5" in (run / "config.yaml").read_text()
    assert [r["step"] for r in read_rows(run)] == [0, 1, 2, 3, 4, 5]


def test_nan_advice_names_settings_a_user_can_change(tmp_path):
    from lad_ref.llm.config import resolve

    cfg = resolve(str(ROOT / "llm" / "configs" / "toy.yaml"), {"objective.name": "lad"})
    advice = train_mod.nan_advice(cfg, tmp_path)
    assert "--resume cannot change" in advice and "--optim.lr" in advice and "--objective.lad.eta" in advice
    cfg = resolve(str(ROOT / "llm" / "configs" / "toy.yaml"), {"objective.name": "grpo"})
    assert "eta" not in train_mod.nan_advice(cfg, tmp_path)


@pytest.mark.slow
def test_real_sigint_in_a_subprocess(cache, tmp_path):
    """A real signal from outside: Ctrl-C (SIGINT) once the run is in RL gives exit 130, a
    checkpoint at the step it was in, and a resumable folder."""
    run = tmp_path / "run"
    args = fast_args(cache, run, "--objective", "grpo", "--steps", "40", "--checkpoint.every", "100")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "lad_ref.llm.train", *args], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not any(r.get("step", 0) >= 1 for r in _rows(run)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("[lad_ref] stopped by SIGINT")]
    step = int(line.split("after RL step ")[1].split("/")[0])
    assert ckpt_names(run) == [f"step_{step:06d}"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean stop leaves no torn line behind
        assert ckpt.read_metrics(run)[-1]["step"] == step


def _rows(run: Path) -> list[dict]:
    try:
        return ckpt.read_metrics(run)
    except Exception:  # the file may be mid-write while we poll
        return []


@pytest.mark.parametrize(
    "override, message",
    [
        ({"optim.betas": [0.9, 2]}, "optim.betas=[0.9, 2.0] must hold two numbers in [0, 1)"),
        ({"optim.min_lr_ratio": -1}, "optim.min_lr_ratio=-1.0 must be between 0 and 1"),
        ({"eval.temperature": 0}, "eval.temperature must be a finite number > 0, got 0.0"),
        ({"model.tiny.num_heads": 0}, "model.tiny.num_heads must be a finite number > 0, got 0"),
        ({"eval.top_p": 1.5}, "eval.top_p=1.5 must be in (0, 1]"),
    ],
)
def test_bad_values_fail_in_validation_with_one_sentence(override, message):
    """Each of these used to pass validation and fail later with a torch/transformers traceback."""
    from lad_ref.llm.config import resolve

    with pytest.raises(ConfigError) as e:
        resolve(str(ROOT / "llm" / "configs" / "toy.yaml"), override)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cuda_without_a_gpu_fails_before_any_work(cache, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert train_mod.main(fast_args(cache, tmp_path / "run", "--device", "cuda")) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_yaml_numbers_follow_yaml_1_2(tmp_path):
    from lad_ref.llm.config import load_yaml, parse_value

    assert parse_value("1e-8") == 1e-8 and parse_value("5e-1") == 0.5 and parse_value("-2E+3") == -2000.0
    assert parse_value("1_000") == "1_000" and parse_value("3") == 3 and parse_value("js") == "js"  # YAML 1.2: a string
    assert parse_value("[0.9, 1e-3]") == [0.9, 1e-3]
    f = tmp_path / "c.yaml"
    f.write_text("objective:\n  lad:\n    eta: 5e-1\noptim:\n  lr: 5e-1\n")
    data = load_yaml(f)
    assert data["objective"]["lad"]["eta"] == 0.5 and isinstance(data["objective"]["lad"]["eta"], float)
    f.write_bytes(b"optim:\n  lr: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml(f)


def test_non_utf8_data_file_names_file_and_line(tmp_path):
    from lad_ref.llm.tasks import DataError, read_records

    f = tmp_path / "d.jsonl"
    f.write_bytes(b'{"prompt": "a", "answer": "1"}\n{"prompt": "\xe9", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl' line 2 is not UTF-8"):
        read_records(f, ["prompt", "answer"])


@pytest.mark.slow
def test_evaluate_cli_bad_input_fails_before_evaluating(cache, tmp_path, capsys):
    from lad_ref.llm import evaluate as evaluate_mod

    run = tmp_path / "run"
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo", "--steps", "1")) == 0
    capsys.readouterr()
    assert evaluate_mod.main(["--run", str(run), "--num-samples", "0", "--no-progress"]) == 2
    assert "eval.num_samples must be a finite number > 0, got 0" in capsys.readouterr().err
    assert evaluate_mod.main(["--run", str(run), "--output", str(tmp_path / "missing" / "x.json"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert evaluate_mod.main(["--run", str(run), "--temperature", "0", "--no-progress"]) == 2
    assert "eval.temperature must be a finite number > 0, got 0" in capsys.readouterr().err


def _tensorboard_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.slow
def test_tensorboard_gets_every_metrics_row_once_across_a_resume(cache, tmp_path):
    full, cut = tmp_path / "full", tmp_path / "cut"
    args = ("--objective", "lad", "--logging.report_to", "[tensorboard]")
    assert train_mod.main(fast_args(cache, full, *args)) == 0
    rows = read_rows(full)
    tb = _tensorboard_scalars(full / "tensorboard")
    assert [s for s, _ in tb["train/reward_mean"]] == [1, 2, 3, 4]
    assert [v for _, v in tb["train/reward_mean"]] == pytest.approx([r["train/reward_mean"] for r in rows[1:]])
    assert [s for s, _ in tb["eval/avg_at_k"]] == [0, 4]
    assert tb["eval/avg_at_k"][-1][1] == pytest.approx(rows[-1]["eval/avg_at_k"])

    # interrupted after step 3 with its checkpoint lost: steps 3.. are redone and must not appear twice
    assert train_mod.main(fast_args(cache, cut, *args, "--checkpoint.every", "1", "--stop-after", "3")) == 0
    import shutil

    shutil.rmtree(cut / "checkpoints" / "step_000003")
    assert train_mod.main(["--resume", str(cut), "--no-progress"]) == 0
    again = _tensorboard_scalars(cut / "tensorboard")
    assert [s for s, _ in again["train/reward_mean"]] == [1, 2, 3, 4]
    assert [v for _, v in again["train/reward_mean"]] == pytest.approx([v for _, v in tb["train/reward_mean"]])


def test_report_to_is_checked_before_any_work(cache, tmp_path, capsys):
    assert train_mod.main(fast_args(cache, tmp_path / "run", "--logging.report_to", "[tensorbord]")) == 2
    err = capsys.readouterr().err
    assert "'tensorbord'" in err and "valid choices are none, tensorboard, wandb, trackio" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_wandb_offline_run_is_written_into_the_run_folder(cache, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    assert train_mod.main(fast_args(cache, run, "--objective", "grpo", "--steps", "2",
                                    "--logging.report_to", "[wandb]")) == 0
    run_id = (run / "wandb_run_id.txt").read_text().strip()
    assert any(p.name.endswith(run_id) for p in (run / "wandb").iterdir())


@pytest.mark.slow
def test_run_folder_alone_resumes_and_evaluates_its_start(tmp_path):
    """With the SFT cache emptied after the run started, resume and `evaluate --checkpoint start`
    use the run's own copy: no silent second SFT, same results as an uninterrupted run."""
    import shutil

    from lad_ref.llm import evaluate as evaluate_mod

    cache = tmp_path / "cache"
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert train_mod.main(fast_args(cache, full, "--objective", "grpo")) == 0
    assert train_mod.main(fast_args(cache, cut, "--objective", "grpo", "--stop-after", "2")) == 0
    shutil.rmtree(cache)
    assert train_mod.main(["--resume", str(cut), "--no-progress"]) == 0
    assert not cache.exists()  # nothing was re-made in the cache
    assert json.loads((cut / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    assert evaluate_mod.main(["--run", str(cut), "--checkpoint", "start", "--no-progress"]) == 0
    start = json.loads((cut / "eval_start.json").read_text())
    results = json.loads((cut / "results.json").read_text())
    assert {k: start[k] for k in results["start"]} == results["start"]


def test_one_schedule_reproduces_both_former_ones_bit_for_bit():
    """SFT and RL share warmup_then_decay; the SFT multipliers must equal the former SFT formula
    exactly (cached SFT checkpoints depend on them), the RL ones the former RL formula."""
    import math

    from lad_ref.llm.schedule import warmup_then_decay

    sft = warmup_then_decay(50, 600, "cosine", 0.1)
    for u in range(0, 700, 7):
        old = (u + 1) / 50 if u < 50 else 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, (u - 50) / 550)))
        assert sft(u) == old
    for schedule, m in (("linear", 0.0), ("cosine", 0.0), ("constant", 0.0), ("linear", 0.25)):
        rl = warmup_then_decay(3, 40, schedule, m)
        for u in range(45):
            t = min(1.0, (u - 3) / 37)
            shape = 1.0 if schedule == "constant" else (1.0 - t if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * t)))
            old = (u + 1) / 3 if u < 3 else (1.0 if schedule == "constant" else m + (1.0 - m) * shape)
            assert rl(u) == old
    with pytest.raises(ValueError, match="valid choices are constant, linear, cosine"):
        warmup_then_decay(0, 10, "step", 0.0)


def test_sigterm_during_setup_stops_at_once_with_one_line(monkeypatch, cache, tmp_path, capsys):
    def sft_interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the set-up")

    monkeypatch.setattr(train_mod, "prepare_start_policy", sft_interrupted)
    before = signal.getsignal(signal.SIGTERM)
    assert train_mod.main(fast_args(cache, tmp_path / "run", "--objective", "grpo")) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    # config.yaml exists by then, so the same command would be refused: the advice is --resume
    assert "stopped by SIGTERM" in err and f"--resume {tmp_path / 'run'}" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow
def test_trackio_logs_locally(cache, tmp_path):
    """trackio reads TRACKIO_DIR when imported, so the run goes in a subprocess with its own."""
    pytest.importorskip("trackio")
    import sqlite3

    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TRACKIO_DIR": str(tmp_path / "trackio")}
    args = fast_args(cache, run, "--objective", "grpo", "--steps", "2", "--logging.report_to", "[trackio]",
                     "--logging.project", "lad-test")
    proc = subprocess.run([sys.executable, "-m", "lad_ref.llm.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with sqlite3.connect(tmp_path / "trackio" / "lad-test.db") as con:
        steps = sorted(r[0] for r in con.execute("select step from metrics"))
    assert steps == [0, 1, 2, 2]  # start evaluation, steps 1 and 2, and the final evaluation at step 2
