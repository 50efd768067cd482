"""Rollout backends: the engines that sample G responses per prompt, one file per family, each registered by name.

A backend is a class satisfying :class:`RolloutBackend` (subclass :class:`Rollout` for the shared
parts) plus a factory registered with :func:`register_backend`; ``rollout.backend: <name>`` selects it,
and its settings dataclass, if it has one, becomes the config section ``rollout.<name>`` (YAML and
``--rollout.<name>.<field>`` flags; ``lad_ref.llm.config.schema``). The built-in backends, imported
below so that they are always registered:

* ``hf``, ``hf-static``, ``hf-continuous`` (:mod:`lad_ref.llm.backends.hf`): transformers' own
  generation paths, no extra dependency;
* ``vllm`` (:mod:`lad_ref.llm.backends.vllm`, settings ``rollout.vllm``): a colocated vLLM engine;
  vLLM is imported when the engine is built, so the module imports without it.

A backend defined outside lad_ref is registered the same way, in a module the trainer imports before
it reads the config (``plugins: [my_pkg.my_backend]``; tests/plugins/echo_backend.py is a complete example).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from lad_ref.config_io import ConfigError, hint
from lad_ref.llm.rollout import PromptFormatter, RolloutBatch, eos_token_ids, left_pad, response_mask_from_ids

Tensor = torch.Tensor


class RolloutBackend(Protocol):
    """What the trainer and the evaluator use of a rollout engine.

    ``eos_ids``: the token ids that end a response. ``generate(...)``: ``num_samples`` responses per
    prompt, rows grouped by prompt (prompt i -> rows i*G .. i*G+G-1), as a :class:`RolloutBatch`
    whose ``gen_log_probs`` are log pi_old under softmax(logits / temperature) (or None); the same
    ``seed`` must give the same samples. ``sync_weights(model)``: called after every optimizer step,
    for engines that hold their own copy of the weights.
    """

    eos_ids: list[int]

    def generate(self, model, prompts: list[str], num_samples: int, *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0) -> RolloutBatch: ...

    def sync_weights(self, model) -> None: ...


class Rollout:
    """The parts every backend shares: tokenizer, prompt formatter, EOS ids, batch size, padding, and
    :meth:`_assemble` / :meth:`_pack`, which turn sampled token lists into a masked RolloutBatch."""

    def __init__(self, tokenizer, formatter: PromptFormatter, eos_ids: list[int], batch_size: int):
        self.tokenizer = tokenizer
        self.formatter = formatter
        self.eos_ids = eos_ids
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id

    def sync_weights(self, model) -> None:
        """Nothing to do for an engine that samples from the training model itself."""

    def generate(self, model, prompts: list[str], num_samples: int, *, max_new_tokens: int,
                 temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0) -> RolloutBatch:
        raise NotImplementedError(f"{type(self).__name__} must define generate().")

    def _pack(self, rows: list[list[int]], responses: list[list[int]], log_probs: list) -> tuple:
        """(prompt_ids, prompt_mask, response_ids, gen_log_probs) of prompt token lists, their sampled
        responses and the responses' log-probs (padding: pad id / 0), one part for :meth:`_assemble`."""
        prompt_ids, prompt_mask = left_pad(rows, self.pad_id)
        width = max(1, max(len(r) for r in responses))
        response_ids = torch.full((len(responses), width), self.pad_id, dtype=torch.long)
        gen_lp = torch.zeros((len(responses), width))
        for i, (r, lp) in enumerate(zip(responses, log_probs)):
            response_ids[i, :len(r)] = torch.tensor(r, dtype=torch.long)
            gen_lp[i, :len(lp)] = torch.tensor(lp, dtype=torch.float32)
        return prompt_ids, prompt_mask, response_ids, gen_lp

    def _assemble(self, parts) -> RolloutBatch:
        """One RolloutBatch from parts (prompt_ids, prompt_mask, response_ids, gen_log_probs): re-padded to a
        common width, responses masked after their first EOS, texts decoded."""
        lp_width = max(p[0].shape[1] for p in parts)
        lr_width = max(p[2].shape[1] for p in parts)
        pids, pmask, rids, glp = [], [], [], []
        for prompt_ids, prompt_mask, response_ids, gen_lp in parts:
            pad_l = lp_width - prompt_ids.shape[1]
            pad_r = lr_width - response_ids.shape[1]
            pids.append(F.pad(prompt_ids, (pad_l, 0), value=self.pad_id))
            pmask.append(F.pad(prompt_mask, (pad_l, 0), value=0))
            rids.append(F.pad(response_ids, (0, pad_r), value=self.pad_id))
            glp.append(F.pad(gen_lp, (0, pad_r), value=0.0))
        response_ids = torch.cat(rids)
        response_mask, truncated = response_mask_from_ids(response_ids, self.eos_ids)
        response_ids = torch.where(response_mask.bool(), response_ids, torch.full_like(response_ids, self.pad_id))
        gen_lp = torch.cat(glp) * response_mask
        texts = self.tokenizer.batch_decode(response_ids, skip_special_tokens=True)
        return RolloutBatch(torch.cat(pids), torch.cat(pmask), response_ids, response_mask, gen_lp, texts, truncated)


@dataclass(frozen=True)
class BackendInputs:
    """What a backend factory gets: the run's config, the tokenizer, the training model (and the folder
    holding its weights, for engines that load their own copy), the prompt formatter, the EOS ids, and
    the backend's ``rollout.<name>`` settings (None for a backend without settings)."""

    cfg: Any
    tokenizer: Any
    model: Any
    model_path: str
    formatter: PromptFormatter
    eos_ids: list[int]
    settings: Any = None


@dataclass(frozen=True)
class BackendSpec:
    """A registered backend: its factory, the dataclass of its ``rollout.<name>`` settings (None: no
    section), and what it needs (``needs_cuda``: refused on a machine or config without CUDA, before any work)."""

    name: str
    factory: Callable[[BackendInputs], RolloutBackend]
    settings: type | None = None
    needs_cuda: bool = False
    check_settings: Callable[[Any], None] | None = None

    def check(self, settings: Any) -> None:
        """The backend's own checks of its settings at validation time."""
        if self.check_settings is not None and settings is not None:
            self.check_settings(settings)


BACKENDS: dict[str, BackendSpec] = {}


def register_backend(name: str, settings: type | None = None, *, needs_cuda: bool = False,
                     check_settings: Callable[[Any], None] | None = None):
    """Decorator: register ``factory(inputs: BackendInputs) -> RolloutBackend`` as ``rollout.backend: <name>``.

    ``settings``: a dataclass (every field with a default) that becomes the config section
    ``rollout.<name>`` (the name must then be a Python identifier) and reaches the factory as
    ``inputs.settings``. ``needs_cuda``: the backend runs only on a CUDA GPU. ``check_settings(settings)``
    raises ConfigError for a bad value when the config is validated. A name registered twice is an error."""
    if settings is not None and not dataclasses.is_dataclass(settings):
        raise TypeError(f"rollout backend {name!r}: settings must be a dataclass, got {settings!r}.")
    if settings is not None and not name.isidentifier():
        raise ValueError(f"rollout backend {name!r} has settings, so its name must be a Python identifier (the "
                         f"section rollout.{name}).")

    def deco(factory):
        if name in BACKENDS:
            raise ValueError(f"rollout backend {name!r} is already registered.")
        if settings is not None:
            settings()  # every field has a default
        BACKENDS[name] = BackendSpec(name, factory, settings, needs_cuda, check_settings)
        return factory

    return deco


def unregister_backend(name: str) -> None:
    """Remove ``name`` from the registry (for tests that register a temporary backend)."""
    BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """The registered backend names, in registration order."""
    return tuple(BACKENDS)


def get_backend(name: str) -> BackendSpec:
    """The spec of backend ``name``; an unknown name raises ValueError (a ConfigError) listing the registered names."""
    spec = BACKENDS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ConfigError(f"rollout.backend={name!r} is not a registered rollout backend{hint(name, BACKENDS)}; "
                          f"registered backends are {', '.join(BACKENDS)} (a backend of your own: register it in a "
                          "module listed in plugins).")
    return spec


def check_device(name: str, device: str, cuda_available: bool | None = None) -> None:
    """Refuse backend ``name`` where it cannot run: one that ``needs_cuda`` with ``device: cpu``, or on a
    machine without a CUDA GPU (``cuda_available=False``; None: not checked). One sentence, ConfigError."""
    if not get_backend(name).needs_cuda:
        return
    where = "device='cpu'" if device == "cpu" else "this machine (no CUDA GPU is visible)" if cuda_available is False else ""
    if where:
        ok = [n for n, s in BACKENDS.items() if not s.needs_cuda]
        raise ConfigError(f"rollout.backend={name!r} needs a CUDA GPU, which {where} does not give; valid choices "
                          f"there are {', '.join(ok)}.")


def backend_sections() -> dict[str, type]:
    """``{name: settings dataclass}`` of the registered backends that have settings (the ``rollout.<name>`` sections)."""
    return {n: s.settings for n, s in BACKENDS.items() if s.settings is not None}


def backend_settings(cfg) -> Any:
    """The active backend's settings: ``cfg.rollout.<backend>``, or its defaults where the config has no
    such section (a Config built directly rather than through ``from_dict``)."""
    spec = get_backend(cfg.rollout.backend)
    if spec.settings is None:
        return None
    settings = getattr(cfg.rollout, cfg.rollout.backend, None)
    return settings if settings is not None else spec.settings()


def build_rollout(cfg, tokenizer, model, model_path: str) -> RolloutBackend:
    """The configured rollout engine for ``model`` (whose weights live at ``model_path``)."""
    spec = get_backend(cfg.rollout.backend)
    formatter = PromptFormatter(tokenizer, cfg.model.chat_template, cfg.model.system_prompt)
    eos = eos_token_ids(tokenizer, model)
    return spec.factory(BackendInputs(cfg, tokenizer, model, model_path, formatter, eos, backend_settings(cfg)))


# The built-in backends register themselves on import (in this order, the order names are listed in).
for _builtin in ("hf", "vllm"):
    importlib.import_module(f"lad_ref.llm.backends.{_builtin}")

__all__ = [
    "BACKENDS", "BackendInputs", "BackendSpec", "Rollout", "RolloutBackend", "backend_names", "backend_sections",
    "backend_settings", "build_rollout", "check_device", "get_backend", "register_backend", "unregister_backend",
]
