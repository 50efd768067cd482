"""Run folder, checkpoints and resume.

Run folder layout (``--output-dir DIR``)::

    DIR/config.yaml              resolved config
    DIR/run_info.json            start policy (path, SFT hash), versions, device
    DIR/metrics.jsonl            one JSON line per logged step (step 0 = start evaluation)
    DIR/start_eval.json          held-out metrics of the start policy (reused on resume)
    DIR/checkpoints/step_000025/ model.safetensors + config (save_pretrained; adapters only with LoRA),
                                 tokenizer, logz_head.safetensors (flowrl), trainer_state.pt
    DIR/plots/*.png              reward, accuracy, distinct correct answers vs step
    DIR/results.json             {"start": {...}, "final": {...}} held-out metrics

A checkpoint is written into ``.step_XXXXXX.tmp`` and renamed when complete, and older ones
are pruned only after that, so an interrupted save (or a NaN) never destroys the last good
checkpoint. ``trainer_state.pt`` holds the optimizer, scheduler, RNG states, the step and the
data position: everything ``--resume`` needs to continue bit-for-bit on CPU.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch

from lad_ref.llm.config import ConfigError

CKPT_DIR = "checkpoints"
STATE_FILE = "trainer_state.pt"
LOGZ_FILE = "logz_head.safetensors"


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but no CUDA GPU is visible; valid choices here are auto, cpu.")
    return torch.device(name)


def prepare_run_dir(output_dir: str | None, *, resume: bool, overwrite: bool) -> Path:
    """Create (or accept) the run folder. Never deletes anything.

    A non-empty folder is refused unless ``resume`` (continue it) or ``overwrite`` (write into it;
    existing files are replaced only as the new run rewrites them).
    """
    if not output_dir:
        raise ConfigError("no run folder given; pass --output-dir DIR (or --resume DIR).")
    run = Path(output_dir)
    if run.exists() and not run.is_dir():
        raise ConfigError(f"--output-dir {str(run)!r} exists and is a file, not a folder.")
    if resume:
        if not (run / "config.yaml").is_file():
            raise ConfigError(f"--resume {str(run)!r} is not a run folder: it has no config.yaml.")
        return run
    if run.exists() and any(run.iterdir()) and not overwrite:
        raise ConfigError(
            f"--output-dir {str(run)!r} is not empty; pass --resume {run} to continue that run, "
            "--overwrite to write into it anyway, or choose a new folder."
        )
    run.mkdir(parents=True, exist_ok=True)
    return run


# --------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------


def rng_state() -> dict:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass


# --------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------


def checkpoint_dirs(run: Path) -> list[Path]:
    root = run / CKPT_DIR
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_") and (p / STATE_FILE).exists())


def latest_checkpoint(run: Path) -> Path | None:
    dirs = checkpoint_dirs(run)
    return dirs[-1] if dirs else None


def save_checkpoint(run: Path, step: int, model, tokenizer, optimizer, scheduler, logz_head, state: dict,
                    keep_last: int) -> Path:
    """Write checkpoint ``step`` atomically, then prune all but the newest ``keep_last``."""
    root = run / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:06d}"
    tmp = root / f".step_{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of our own interrupted save
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if logz_head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in logz_head.state_dict().items()}, str(tmp / LOGZ_FILE))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state(), **state},
        tmp / STATE_FILE,
    )
    if final.exists():  # re-saving the same step (e.g. after a resume): replace it
        shutil.rmtree(final)
    os.rename(tmp, final)
    for old in checkpoint_dirs(run)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_trainer_state(ckpt: Path) -> dict:
    # weights_only=False: the state holds Python RNG tuples and numpy arrays written by this code.
    return torch.load(ckpt / STATE_FILE, map_location="cpu", weights_only=False)


def load_logz_head(ckpt: Path, head) -> None:
    from safetensors.torch import load_file

    head.load_state_dict(load_file(str(ckpt / LOGZ_FILE)))


def is_adapter_checkpoint(path: Path) -> bool:
    return (Path(path) / "adapter_config.json").exists()


def resolve_policy(run: Path, which: str) -> tuple[str, str | None, str]:
    """(base model path, adapter path or None, label) of a run's ``latest``/``start``/named checkpoint."""
    info_file = run / "run_info.json"
    start = json.loads(info_file.read_text())["start_policy"] if info_file.exists() else None
    if which == "start":
        if start is None:
            raise ConfigError(f"run {str(run)!r} has no run_info.json, so its start policy is unknown.")
        return start, None, "start"
    if which == "latest":
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            raise ConfigError(f"run {str(run)!r} has no checkpoint yet; use --checkpoint start.")
    else:
        ckpt = run / CKPT_DIR / which if (run / CKPT_DIR / which).is_dir() else Path(which)
        if not ckpt.is_dir():
            names = ", ".join(p.name for p in checkpoint_dirs(run)) or "none"
            raise ConfigError(
                f"checkpoint {which!r} does not exist; valid choices are latest, start, {names}, or a model folder."
            )
    if is_adapter_checkpoint(ckpt):
        return start, str(ckpt), ckpt.name
    return str(ckpt), None, ckpt.name


# --------------------------------------------------------------------------------------
# metrics.jsonl
# --------------------------------------------------------------------------------------


def read_metrics(run: Path) -> list[dict]:
    f = run / "metrics.jsonl"
    if not f.exists():
        return []
    return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]


def truncate_metrics(run: Path, last_step: int) -> None:
    """Keep metrics.jsonl lines up to ``last_step`` (a resumed run rewrites the later ones identically)."""
    rows = [r for r in read_metrics(run) if r.get("step", 0) <= last_step]
    tmp = run / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, run / "metrics.jsonl")


def append_metrics(run: Path, row: dict) -> None:
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
