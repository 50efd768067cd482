"""A run folder is the run (issue 21): self-contained and relocatable, written whole, locked across every
writer, refusing silent config changes on --resume, and every bad input refused before the folder exists.

Each test is one scenario of the issue. The kill-during-write cases inject the fault at the write itself
(``os.replace`` or the writer raising mid-write), which is where a kill would land.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import yaml
from test_llm_train import ROOT, fast_args, read_rows, strip_times

from lad_ref.llm import checkpoint as ckpt
from lad_ref.llm import evaluate as evaluate_mod
from lad_ref.llm import train as train_mod
from lad_ref.llm.config import ConfigError
from lad_ref.study import analysis as sa
from lad_ref.study import runs as sr
from lad_ref.study.__main__ import main as study_main

FAST_STUDY = ROOT / "llm" / "configs" / "study-fast.yaml"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("sft_cache")


@pytest.fixture(scope="module")
def runs(cache, tmp_path_factory):
    """A finished grpo run (4 steps) and the same run stopped after step 2 (checkpoints every 2 steps)."""
    root = tmp_path_factory.mktemp("runs")
    full, cut = root / "full", root / "cut"
    assert train_mod.main(fast_args(cache, full, "--objective", "grpo")) == 0
    assert train_mod.main(fast_args(cache, cut, "--objective", "grpo", "--stop-after", "2")) == 0
    return full, cut


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def one_error_line(err: str) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# ======================================================================================
# 1. self-contained, relocatable run folders
# ======================================================================================


@pytest.fixture
def only_copies(runs):
    """Hide the fixture's stopped run while a test works on copies of it: a copy that still read the
    original folder's files (an absolute start_policy path) would then fail instead of passing."""
    _, cut = runs
    hidden = cut.with_name(cut.name + ".hidden")
    os.rename(cut, hidden)
    try:
        yield hidden, cut
    finally:
        shutil.rmtree(cut, ignore_errors=True)
        os.rename(hidden, cut)


@pytest.mark.parametrize("how", ["mv", "cp"])
def test_moved_or_copied_stopped_run_resumes_and_evaluates_as_the_original(runs, only_copies, tmp_path, how):
    full, _ = runs
    hidden, _ = only_copies
    src = copy_run(hidden, tmp_path / "src")
    dst = tmp_path / "elsewhere" / "run"
    dst.parent.mkdir()
    if how == "mv":
        os.rename(src, dst)
    else:
        copy_run(src, dst)
        shutil.rmtree(src)  # nothing of the original may be needed
    assert train_mod.main(["--resume", str(dst), "--no-progress"]) == 0
    assert json.loads((dst / "results.json").read_text()) == json.loads((full / "results.json").read_text())
    assert strip_times(read_rows(dst)) == strip_times(read_rows(full))
    assert evaluate_mod.main(["--run", str(dst), "--checkpoint", "start", "--no-progress"]) == 0
    start = json.loads((dst / "eval_start.json").read_text())
    results = json.loads((full / "results.json").read_text())
    assert {k: start[k] for k in results["start"]} == results["start"]


def test_backup_copy_evaluates_its_own_start_after_the_original_is_overwritten(only_copies, cache, tmp_path):
    """The issue's silent wrong result: cp -r A backup; --overwrite A with another seed; the backup's
    start must still be its own (its recorded start evaluation), not the new run's."""
    hidden, a = only_copies
    copy_run(hidden, a)  # A sits where the run was made
    backup = copy_run(a, tmp_path / "backup")
    assert train_mod.main(fast_args(cache, a, "--objective", "grpo", "--seed", "1", "--steps", "2",
                                    "--overwrite")) == 0
    assert evaluate_mod.main(["--run", str(backup), "--checkpoint", "start", "--no-progress"]) == 0
    own = json.loads((backup / "start_eval.json").read_text())
    got = json.loads((backup / "eval_start.json").read_text())
    assert {k: got[k] for k in own} == own


def test_old_absolute_start_policy_path_is_read_from_the_run_itself(tmp_path):
    """Folders written before relative paths stored /abs/original/start_policy: read this folder's copy."""
    run = tmp_path / "moved"
    (run / "start_policy").mkdir(parents=True)
    (run / "start_policy" / "config.json").write_text("{}")
    info = {"start_policy": "/somewhere/original/start_policy", "start": {"sft": True, "cache_path": "/c/x"}}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert ckpt.start_policy_path(run, info) == run / "start_policy"
    assert any("older version" in str(x.message) for x in w)
    # a user's model folder outside the run stays where it is
    assert ckpt.start_policy_path(run, {"start_policy": "/models/qwen", "start": {"sft": False}}) == Path("/models/qwen")


# ======================================================================================
# 2. files written whole; damaged results named and re-derived
# ======================================================================================


def test_write_atomic_keeps_the_old_file_when_the_write_dies(tmp_path, monkeypatch):
    from lad_ref.llm import files

    f = tmp_path / "results.json"
    f.write_text('{"old": 1}\n')

    def dies(*a, **k):
        raise OSError("killed mid-write")

    monkeypatch.setattr(files.os, "replace", dies)
    with pytest.raises(OSError, match="killed"):
        files.write_json(f, {"new": 2})
    assert json.loads(f.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]  # no temp file left


class _TornWrite:
    """A file opened for writing that dies (KeyboardInterrupt, as a kill would) after half its first write."""

    def __init__(self, fh):
        self.fh = fh

    def write(self, data):
        self.fh.write(data[: len(data) // 2])
        self.fh.flush()
        raise KeyboardInterrupt  # as Ctrl-C (a kill leaves the same file behind)

    def __getattr__(self, name):
        return getattr(self.fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.fh.close()


def _die_while_writing(monkeypatch, name: str):
    """From now on, the first write to a file whose name contains ``name`` dies half-way, whichever writer
    (``open`` or ``Path.write_text``, which calls ``io.open``) writes it."""
    import builtins
    import io

    real_open = io.open

    def open_(file, mode="r", *a, **k):
        fh = real_open(file, mode, *a, **k)
        return _TornWrite(fh) if name in Path(str(file)).name and ("w" in mode or "a" in mode) else fh

    monkeypatch.setattr(io, "open", open_)
    monkeypatch.setattr(builtins, "open", open_)


def _fault_in_finish(monkeypatch, name: str):
    real_finish = train_mod.finish

    def finish(r, progress):
        _die_while_writing(monkeypatch, name)
        return real_finish(r, progress)

    monkeypatch.setattr(train_mod, "finish", finish)


def test_kill_during_final_metrics_rewrite_loses_no_rows(runs, tmp_path, monkeypatch):
    """The end-of-run rewrite of metrics.jsonl (the final evaluation added to the last row) dies at its
    write: every row stays, and --resume finishes the run with the uninterrupted run's numbers."""
    full, cut = runs
    run = copy_run(cut, tmp_path / "run")
    _fault_in_finish(monkeypatch, "metrics.jsonl")
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 128 + signal.SIGINT
    monkeypatch.undo()
    assert [r["step"] for r in read_rows(run)] == [0, 1, 2, 3, 4]  # every row is still there
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 0
    assert strip_times(read_rows(run)) == strip_times(read_rows(full))
    assert json.loads((run / "results.json").read_text()) == json.loads((full / "results.json").read_text())


def test_kill_during_results_write_leaves_no_empty_results(runs, tmp_path, monkeypatch):
    full, cut = runs
    run = copy_run(cut, tmp_path / "run")
    _fault_in_finish(monkeypatch, "results.json")
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 128 + signal.SIGINT
    monkeypatch.undo()
    assert not sr.is_finished(run)  # a torn results.json would count as finished
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "results.json").read_text()) == json.loads((full / "results.json").read_text())


def test_torn_results_json_is_named_and_not_counted_as_done(runs, tmp_path):
    """A results.json cut short (by an older version's in-place write) is reported with the run and
    re-derived by resuming from the final checkpoint: the same numbers as before."""
    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    good = (run / "results.json").read_text()
    (run / "results.json").write_text(good[: len(good) // 2])
    said = []
    assert not sr.is_finished(run, log=said.append)
    assert str(run) in said[0] and "re-derived" in said[0]
    with pytest.raises(ConfigError, match="run .*results.json.* not valid JSON"):
        sa.run_metrics(run)
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 0
    assert json.loads((run / "results.json").read_text()) == json.loads(good)


def _fake_study(tmp_path: Path, full: Path) -> tuple[Path, Path]:
    """A one-run study whose only run folder is a copy of a finished run (for the analysis side)."""
    data = yaml.safe_load(FAST_STUDY.read_text())
    data["output_dir"] = str(tmp_path / "study_runs")
    data["seeds"] = [0]
    data["groups"] = {"headline": {"methods": ["grpo"], "comparisons": []}}
    data.pop("brake_group", None)
    data.pop("brake_variants", None)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(data))
    run = tmp_path / "study_runs" / "main" / "grpo" / "seed0"
    run.parent.mkdir(parents=True)
    copy_run(full, run)
    return cfg, run


def test_analyse_only_names_the_run_of_a_torn_results_or_samples_file(runs, tmp_path, capsys):
    full, _ = runs
    cfg, run = _fake_study(tmp_path, full)
    text = (run / "final_samples.jsonl").read_text()
    (run / "final_samples.jsonl").write_text(text[: len(text) - 40])  # torn last line
    assert study_main(["--config", str(cfg), "--analyse-only"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert str(run) in line and "final_samples.jsonl" in line
    (run / "final_samples.jsonl").write_text(text)
    (run / "results.json").write_text('{"start": {"avg')
    assert study_main(["--config", str(cfg), "--analyse-only"]) == 0  # not counted, not a crash
    err = capsys.readouterr().err
    assert str(run) in err and "results.json" in err and "JSONDecodeError" not in err


def test_shortened_final_samples_are_refused_not_zipped(runs, tmp_path):
    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    lines = (run / "final_samples.jsonl").read_text().splitlines(keepends=True)
    (run / "final_samples.jsonl").write_text("".join(lines[:-2]))  # whole lines, two prompts fewer
    with pytest.raises(ConfigError, match="do not list the same prompts"):
        sa.run_metrics(run)


# ======================================================================================
# 3. one lock for every writer
# ======================================================================================


def test_run_lock_waits_for_the_holder_and_names_it(tmp_path):
    said = []
    holder = ckpt.RunLock(tmp_path).__enter__()
    got = threading.Event()

    def second():
        with ckpt.RunLock(tmp_path, wait=True, log=said.append):
            got.set()

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.5)
    assert not got.is_set() and said and str(os.getpid()) in said[0]
    holder.__exit__(None, None, None)
    t.join(10)
    assert got.is_set()


def test_study_job_goes_through_the_run_lock(runs, tmp_path):
    """A study worker waits while another process holds the run's lock, then finds the run finished."""
    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    from lad_ref.llm.config import from_dict, load_yaml, to_dict, validate

    cfg_dict = to_dict(validate(from_dict({**load_yaml(run / "config.yaml"), "output_dir": str(run)})))
    holder = ckpt.RunLock(run).__enter__()
    out = {}
    t = threading.Thread(target=lambda: out.update(sr._run_job(cfg_dict)))
    t.start()
    time.sleep(1.0)
    assert not out  # waiting, not writing
    holder.__exit__(None, None, None)
    t.join(60)
    assert out.get("skipped") == "finished"


def test_study_uses_no_private_multiprocessing_attributes():
    """The study's jobs go through lad_ref.sweep, whose executor is reached through public API only."""
    import inspect

    from lad_ref import sweep

    for mod in (sweep, sr):
        src = inspect.getsource(mod)
        assert "._processes" not in src and "._pending_work_items" not in src and "._call_queue" not in src
    assert "run_jobs(" in inspect.getsource(sr) and "Process(" not in inspect.getsource(sr)


@pytest.mark.slow
def test_two_concurrent_studies_write_each_step_once(tmp_path):
    data = yaml.safe_load(FAST_STUDY.read_text())
    data["output_dir"] = str(tmp_path / "runs")
    data["overrides"]["sft.cache_dir"] = str(tmp_path / "sft")
    data["overrides"]["optim.steps"] = 2
    data["overrides"]["sft.steps"] = 0  # the start is ready at once, so both studies reach the same run together
    data["seeds"] = [0]
    data["groups"] = {"headline": {"methods": ["grpo", "lad(js)"], "comparisons": ["lad(js) - grpo"]}}
    data.pop("brake_group", None)
    data.pop("brake_variants", None)
    cfg = tmp_path / "study.yaml"
    cfg.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "lad_ref.study", "--config", str(cfg), "--jobs", "1"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    metrics = sorted((tmp_path / "runs").rglob("metrics.jsonl"))
    metrics = [m for m in metrics if "overwritten" not in m.parts]
    assert len(metrics) == 2
    for m in metrics:
        steps = [json.loads(x)["step"] for x in m.read_text().splitlines()]
        assert steps == [0, 1, 2], (m, steps)


# ======================================================================================
# 4. --resume compares config.yaml with the checkpoint's config
# ======================================================================================


@pytest.mark.parametrize("edit, key", [
    ({"objective": {"name": "lad"}}, "objective.name"),
    ({"objective": {"grpo": {"clip_ratio_low": 0.1}}}, "objective.grpo.clip_ratio_low"),
    ({"optim": {"lr": 0.5}}, "optim.lr"),
    ({"seed": 7}, "seed"),
])
def test_hand_edited_config_is_refused_on_resume(runs, tmp_path, capsys, edit, key):
    _, cut = runs
    run = copy_run(cut, tmp_path / "run")
    data = yaml.safe_load((run / "config.yaml").read_text())
    for section, value in edit.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    data[section][k].update(v)
                else:
                    data[section][k] = v
        else:
            data[section] = value
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    before = sorted(p.name for p in run.iterdir())
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert key in line and "step_000002" in line
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written, not even resume_log


def test_hand_edited_resumable_field_is_accepted_and_recorded(runs, tmp_path):
    _, cut = runs
    run = copy_run(cut, tmp_path / "run")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("log_every: 1", "log_every: 2"))
    assert "log_every: 2" in (run / "config.yaml").read_text()
    assert train_mod.main(["--resume", str(run), "--no-progress", "--stop-after", "3"]) == 0
    log = [json.loads(x) for x in (run / "resume_log.jsonl").read_text().splitlines()]
    assert log[-1]["changed"] == {"logging.log_every": [1, 2]}


# ======================================================================================
# 6. bad input: one sentence, before the run folder exists
# ======================================================================================


def _refused(capsys, out: Path, argv: list[str], *needles: str) -> None:
    assert train_mod.main(argv) == 2
    line = one_error_line(capsys.readouterr().err)
    for n in needles:
        assert n in line, line
    assert not out.exists(), "the run folder was created"


@pytest.mark.parametrize("extra, needles", [
    (["--model", "/no/such/model_dir"], ["/no/such/model_dir", "does not exist"]),
    (["--model", "./typo/qwen"], ["./typo/qwen", "does not exist"]),
    (["--model", ""], ["model.name_or_path is empty"]),
    (["--seed", "99999999999999999999"], ["seed=99999999999999999999", "64 bits"]),
    (["--optim.lr", "inf"], ["optim.lr=inf", "finite"]),
    (["--optim.lr", ".nan"], ["optim.lr=nan", "finite"]),
    (["--stop-after", "0"], ["--stop-after 0"]),
    (["--stop-after", "-1"], ["--stop-after -1"]),
    (["--optim.shuffle", "2"], ["optim.shuffle=2", "boolean"]),
    (["--rollout.max_new_tokens", "200"], ["rollout.max_new_tokens=200", "context of 128"]),
    (["--model.tiny.max_position_embeddings", "20", "--rollout.max_new_tokens", "16"], ["prompt", "context of 20"]),
])
def test_bad_trainer_input_fails_before_the_run_folder(cache, tmp_path, capsys, extra, needles):
    out = tmp_path / "run"
    _refused(capsys, out, fast_args(cache, out, "--objective", "grpo", *extra), *needles)


def test_folder_that_is_not_a_model_is_refused(cache, tmp_path, capsys):
    notmodel = tmp_path / "notmodel"
    notmodel.mkdir()
    out = tmp_path / "run"
    _refused(capsys, out, fast_args(cache, out, "--model", str(notmodel)), str(notmodel), "no config.json")


def test_unwritable_sft_cache_is_refused(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = tmp_path / "run"
    _refused(capsys, out, fast_args(blocker / "cache", out), "sft.cache_dir", "writable")


def test_resume_with_overwrite_is_refused(runs, tmp_path, capsys):
    _, cut = runs
    assert train_mod.main(["--resume", str(cut), "--overwrite"]) == 2
    assert "--overwrite" in one_error_line(capsys.readouterr().err)


def _math_files(tmp_path: Path, prompt: str) -> list[str]:
    f = tmp_path / "data.jsonl"
    rows = [{"prompt": "What is 1+1?", "answer": "2"}, {"prompt": prompt, "answer": "3"}]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return ["--data.task", "math", "--data.train_files", f"[{f}]", "--data.eval_files", f"[{f}]",
            "--data.prompt_template", "'{prompt}'"]


def test_empty_prompt_is_refused(cache, tmp_path, capsys):
    out = tmp_path / "run"
    _refused(capsys, out, fast_args(cache, out, *_math_files(tmp_path, "")), "empty prompt")


def test_tiny_tokenizer_unknown_characters_are_refused(cache, tmp_path, capsys):
    out = tmp_path / "run"
    _refused(capsys, out, fast_args(cache, out, *_math_files(tmp_path, "Wie viel ist 1+2 \u00e9?")),
             "tiny", "'\u00e9'")


def test_bandit_tiny_eta_is_one_line(capsys):
    from lad_ref.bandit.__main__ import main as bandit_main

    with pytest.raises(SystemExit) as e:
        bandit_main(["--eta", "1e-9", "--steps", "2"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "eta" in err.splitlines()[-1] and "Traceback" not in err


def test_sigterm_during_sft_leaves_no_temp_folder_and_the_advice_works(cache, tmp_path, capsys, monkeypatch):
    from lad_ref.llm import sft as sft_mod

    own_cache = tmp_path / "cache"
    real = sft_mod.run_sft

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*a, **k)

    monkeypatch.setattr(sft_mod, "run_sft", interrupted)
    run = tmp_path / "run"
    assert train_mod.main(fast_args(own_cache, run, "--objective", "grpo", "--steps", "2")) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert not [p for p in own_cache.iterdir() if ".tmp" in p.name]
    advice = err.strip().splitlines()[-1]
    assert f"--resume {run}" in advice
    monkeypatch.undo()
    assert train_mod.main(["--resume", str(run), "--no-progress"]) == 0
    assert (run / "results.json").is_file()


# ======================================================================================
# YAML 1.2 core schema
# ======================================================================================


def test_yaml_core_schema_numbers_and_booleans(tmp_path):
    from lad_ref.llm.config import load_yaml, parse_value, resolve

    assert parse_value("017") == 17 and parse_value("0o17") == 15 and parse_value("0x1f") == 31
    assert parse_value("1_000") == "1_000" and parse_value("yes") == "yes" and parse_value("true") is True
    f = tmp_path / "c.yaml"
    f.write_text("seed: 017\n")
    assert load_yaml(f)["seed"] == 17
    f.write_text("seed: 1_000\n")
    with pytest.raises(ConfigError, match="seed='1_000' is not a YAML 1.2 number"):
        resolve(str(f), {})


@pytest.mark.parametrize("text, needle", [
    ("seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    ("optim:\n  lr: 0.1\nseed: 3\noptim:\n  steps: 2\n", "duplicate key 'optim'"),
    ("optim: &a\n  betas: [*a]\n", "recursive anchor"),
])
def test_yaml_duplicates_and_recursion_are_one_line(tmp_path, capsys, text, needle):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    out = tmp_path / "run"
    argv = fast_args(tmp_path / "cache", out, "--objective", "grpo")
    assert train_mod.main(["--config", str(f), *argv[2:]]) == 2  # fast_args' own --config replaced
    line = one_error_line(capsys.readouterr().err)
    assert needle in line and str(f) in line and not out.exists()


def test_config_that_is_a_folder_is_named_as_a_folder(tmp_path, capsys):
    assert train_mod.main(["--config", str(tmp_path), "--output-dir", str(tmp_path / "run")]) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)


# ======================================================================================
# 7. the evaluator opens run folders like the trainer
# ======================================================================================


def test_evaluator_falls_back_from_a_truncated_latest_checkpoint(runs, tmp_path, capsys):
    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    w = run / "checkpoints" / "step_000004" / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step_000004"):
        assert evaluate_mod.main(["--run", str(run), "--no-progress"]) == 0
    assert json.loads((run / "eval_step_000002.json").read_text())["checkpoint"] == "step_000002"


def test_evaluator_names_a_corrupt_run_info(runs, tmp_path, capsys):
    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    (run / "run_info.json").write_text('{"start_policy": "sta')
    assert evaluate_mod.main(["--run", str(run), "--checkpoint", "start", "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "run_info.json" in line and str(run) in line


def test_evaluator_refuses_an_output_folder_before_evaluating(runs, tmp_path, capsys, monkeypatch):
    full, _ = runs

    def no_eval(*a, **k):
        raise AssertionError("evaluated before checking --output")

    monkeypatch.setattr(evaluate_mod, "evaluate_request", no_eval)
    assert evaluate_mod.main(["--run", str(full), "--output", str(tmp_path), "--no-progress"]) == 2
    assert "is a folder" in one_error_line(capsys.readouterr().err)


def test_weights_with_nan_are_found_at_load(runs, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    full, _ = runs
    run = copy_run(full, tmp_path / "run")
    w = run / "checkpoints" / "step_000004" / "model.safetensors"
    tensors = load_file(str(w))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(w), metadata={"format": "pt"})
    assert evaluate_mod.main(["--run", str(run), "--no-progress"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "NaN" in line and "step_000004" in line
    assert not (run / "eval_step_000004.json").exists()


def test_unchanged_config_trains_bit_identically(runs, cache, tmp_path):
    """Numbers of training do not change: the same config twice gives the same metrics rows."""
    full, _ = runs
    again = tmp_path / "again"
    assert train_mod.main(fast_args(cache, again, "--objective", "grpo")) == 0
    assert strip_times(read_rows(again)) == strip_times(read_rows(full))

