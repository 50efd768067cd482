"""Experiment tracking beside metrics.jsonl: TensorBoard, Weights & Biases, trackio.

``logging.report_to`` names the backends (TRL's ``report_to`` convention): ``[]`` or
``["none"]`` logs to metrics.jsonl only, which is always written and stays the source of truth
(resume, plots and the study read it). Every row the trainer appends to metrics.jsonl goes to
each backend with the same step, so the dashboards show exactly the numbers in the file.

The backends are the ones RL-for-LLM users already have (TRL and verl log to the same three);
lad_ref only adapts its flat ``{"train/reward_mean": 0.4, ...}`` rows to their calls:

* ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` writing into ``<run>/tensorboard``.
  On resume the writer purges events after the resumed step, so a step is never shown twice.
* ``wandb``: ``wandb.init(dir=<run>, id=<stable id stored in the run folder>, resume="allow")``;
  a resumed run continues the same W&B run. ``WANDB_MODE=offline`` works without a network
  (``wandb sync`` uploads later).
* ``trackio``: ``trackio.init(project, name, config, resume="allow")``, a local-first tracker
  (files under ``TRACKIO_DIR``).

A backend that is not installed is a config error before any work (:func:`check_report_to`).
"""

from __future__ import annotations

import importlib.util
import math
import secrets
from pathlib import Path

REPORT_TO: tuple[str, ...] = ("none", "tensorboard", "wandb", "trackio")
# the import each backend needs, and the package that provides it
_MODULES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def backends(report_to: list[str]) -> list[str]:
    """The backends to log to: ``report_to`` without ``"none"``, in order, without repeats."""
    return [b for i, b in enumerate(report_to) if b != "none" and b not in report_to[:i]]


def check_report_to(report_to: list[str]) -> str | None:
    """One sentence saying what is wrong with ``report_to`` (unknown name, package missing), or None."""
    for name in report_to:
        if name not in REPORT_TO:
            return f"logging.report_to contains {name!r}; valid choices are {', '.join(REPORT_TO)}."
    if "none" in report_to and len(backends(report_to)) > 0:
        return f"logging.report_to={report_to!r} mixes 'none' with backends; list the backends only, or ['none']."
    for name in backends(report_to):
        module, package = _MODULES[name]
        if importlib.util.find_spec(module) is None:
            return f"logging.report_to contains {name!r} but {package} is not installed; pip install {package}."
    return None


def _scalars(row: dict) -> dict[str, float]:
    """The finite numbers of a metrics row, without the step itself."""
    out = {}
    for k, v in row.items():
        if k == "step" or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(v):
            out[k] = float(v)
    return out


class Tracker:
    """Fan a metrics row out to the configured backends. Use as a context manager; ``log`` is cheap
    when ``report_to`` is empty."""

    def __init__(self, report_to: list[str], run: Path, *, project: str, config: dict, resume_step: int | None):
        self.names = backends(report_to)
        self._tb = self._wandb = self._trackio = None
        run = Path(run)
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops events logged after the resumed checkpoint by the interrupted process
            self._tb = SummaryWriter(log_dir=str(run / "tensorboard"),
                                     purge_step=None if resume_step is None else resume_step + 1)
        if "wandb" in self.names:
            import wandb

            id_file = run / "wandb_run_id.txt"
            run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
            id_file.write_text(run_id + "\n")
            self._wandb = wandb.init(project=project, name=run.name, id=run_id, dir=str(run), config=config,
                                     resume="allow")
        if "trackio" in self.names:
            import trackio

            self._trackio = trackio
            trackio.init(project=project, name=run.name, config=config, resume="allow")

    def log(self, row: dict) -> None:
        if not self.names:
            return
        step, values = int(row.get("step", 0)), _scalars(row)
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        if self._trackio is not None:
            self._trackio.log(values, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
        if self._trackio is not None:
            self._trackio.finish()
        self._tb = self._wandb = self._trackio = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
