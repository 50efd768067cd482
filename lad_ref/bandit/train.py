"""Train many bandit policies at once with the objectives of lad_ref.losses.

Each run is a softmax policy over the arms with its own logits, all runs' logits being rows of
one (R, K) tensor optimised by one Adam (Adam keeps per-element state, so this is exactly R
independent optimisers). Every objective is called through ``lad_ref.losses.get_loss`` with the
bandit as the (B, T) = (arms, 1) special case: no bandit-only copy of any loss exists.

Behaviour policy pi_old, per kind of objective:

* LAD (``lad``, ``lad_theory``) matches P_pi = (pi/pi_old)/Z to P_A = exp(A/eta)/Z_A, whose
  solution is pi* ∝ pi_old exp(A/eta). With pi_old FIXED (uniform) that is the target itself.
  If pi_old were refreshed to the current policy every step, each refresh would move the target
  to pi_old exp(A/eta): after n refreshes pi ∝ exp(n A/eta), i.e. mirror ascent on E[A] with a
  sharpening temperature eta/n that converges to the best arm, the very collapse LAD avoids.
  (``refresh_old_every`` > 0 shows this.)
* Advantage maximisers (``grpo``, ``entadv``, ``kl_cov``, ``clip_cov``) run on-policy:
  pi_old = the current policy (detached) each step. With a fixed pi_old their ratio clip would
  zero the gradient as soon as r left [1 - eps, 1 + eps], freezing them.
* ``flowrl`` runs on-policy too, with a uniform reference policy and a learned scalar log Z per
  run; beta defaults to 1/eta so that its optimum pi ∝ exp(beta A) is the same target as LAD's.

Modes: ``exact`` sums over all K arms with weights pi_old(a) (rows weighted by K pi_old(a) under
token-mean aggregation, so the loss is the expectation under pi_old exactly); ``sampled`` draws
``samples`` arms from pi_old every step (one torch.Generator per run, seeded by its seed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from lad_ref.bandit.env import TrimodalBandit
from lad_ref.divergences import DIVERGENCE_NAMES
from lad_ref.losses import LOSS_NAMES, get_loss, loss_hparams
from lad_ref.metrics import kl_divergence, modes_recovered, tv_distance
from lad_ref.threads import torch_threads

MODES: tuple[str, ...] = ("exact", "sampled")
DISTRIBUTION_MATCHERS: tuple[str, ...] = ("lad", "lad_theory")
OBJECTIVES: tuple[str, ...] = LOSS_NAMES


@dataclass
class BanditRun:
    """One bandit run.

    Attributes:
        objective: a name of ``lad_ref.losses.LOSS_NAMES``.
        divergence: f-divergence for ``lad`` / ``lad_theory`` (ignored by the baselines).
        eta: temperature of the target P_A ∝ exp(A/eta); FlowRL uses beta = 1/eta.
        mode: ``exact`` (expectation over all arms) or ``sampled`` (``samples`` arms a step).
        samples: arms drawn per step in sampled mode.
        seed: seeds the run's generator (arm sampling, Clip-Cov's random choice).
        refresh_old_every: LAD only: copy the current policy into pi_old every this many
            steps (0 = never: pi_old stays uniform, the setting under which LAD converges to P_A).
        hparams: extra keyword arguments for the objective (e.g. ``{"kl_cov_ratio": 0.02}``).
    """

    objective: str = "lad"
    divergence: str = "js"
    eta: float = 1.0
    mode: str = "exact"
    samples: int = 64
    seed: int = 0
    refresh_old_every: int = 0
    hparams: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ValueError (one sentence, naming the value and the choices) for a bad setting."""
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; valid choices are {', '.join(OBJECTIVES)}.")
        if self.divergence not in DIVERGENCE_NAMES:
            raise ValueError(
                f"unknown divergence {self.divergence!r}; valid choices are {', '.join(DIVERGENCE_NAMES)}."
            )
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; valid choices are {', '.join(MODES)}.")
        if not (isinstance(self.eta, (int, float)) and math.isfinite(self.eta) and self.eta > 0):
            raise ValueError(f"eta must be a finite number > 0, got {self.eta!r}.")
        if self.mode == "sampled" and (not isinstance(self.samples, int) or self.samples < 1):
            raise ValueError(f"samples must be an integer >= 1, got {self.samples!r}.")
        if self.objective == "lad_theory" and self.mode != "exact":
            raise ValueError("objective 'lad_theory' sums over every arm, so it needs mode 'exact', not 'sampled'.")
        if self.refresh_old_every < 0:
            raise ValueError(f"refresh_old_every must be >= 0, got {self.refresh_old_every!r}.")
        known = loss_hparams(self.objective)
        for key in self.hparams:
            if key not in known:
                raise ValueError(
                    f"unknown hyperparameter {key!r} for objective {self.objective!r}; valid choices are "
                    f"{', '.join(known)}."
                )

    @property
    def matches_distribution(self) -> bool:
        return self.objective in DISTRIBUTION_MATCHERS

    def label(self) -> str:
        div = f"({self.divergence})" if self.matches_distribution else ""
        return f"{self.objective}{div}"


def validate_schedule(steps: int, lr: float) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}.")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}.")


def train_bandit(
    runs: list[BanditRun],
    *,
    steps: int = 4000,
    lr: float = 5e-3,
    bandit: TrimodalBandit | None = None,
    progress: bool = True,
    record_every: int = 0,
    callback: Callable[[int, torch.Tensor], None] | None = None,
    threads: int | None = 1,
) -> list[dict]:
    """Train every run for ``steps`` Adam steps (the paper: lr 5e-3, 4000 steps) and report.

    Returns one dict per run with its settings and: tv_to_target, kl_to_target
    (KL(target || policy), which is large when a mode is missed), max_prob, argmax,
    modes_recovered, probs, target, and ``history`` ([step, tv_to_target] every
    ``record_every`` steps when > 0). All runs are validated before any training starts.

    ``threads`` (torch intra-op threads while training; None keeps the caller's setting): every
    tensor here has at most a few thousand elements, where a second OpenMP thread only adds a
    barrier per operation. On the 2-core development machine one thread made the 17-run sweep
    faster, and 6-9x faster while another job was using the cores (benchmarks/).
    """
    bandit = bandit or TrimodalBandit()
    validate_schedule(steps, lr)
    if not runs:
        raise ValueError("no runs to train: pass at least one BanditRun.")
    for run in runs:
        run.validate()
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}.")
    with torch_threads(threads):
        return _train(runs, steps, lr, bandit, progress, record_every, callback)


def _train(runs, steps, lr, bandit, progress, record_every, callback) -> list[dict]:

    k = bandit.n_arms
    adv = bandit.advantages()
    col_adv = adv.unsqueeze(-1)
    log_uniform = torch.full((k,), -math.log(k))
    n_runs = len(runs)
    logits = torch.zeros(n_runs, k, requires_grad=True)
    log_z = torch.zeros(n_runs, requires_grad=True)  # FlowRL's learned log partition, one per run
    opt = torch.optim.Adam([logits, log_z], lr=lr)
    old_lp = log_uniform.repeat(n_runs, 1)  # pi_old of the LAD runs (rows of other runs unused)
    gens = [torch.Generator().manual_seed(run.seed) for run in runs]
    fns = [get_loss(run.objective) for run in runs]
    targets = [bandit.target(run.eta) for run in runs]
    histories: list[list] = [[] for _ in runs]
    masks = {b: torch.ones(b, 1, dtype=torch.bool) for b in {k} | {r.samples for r in runs if r.mode == "sampled"}}
    k_scale = torch.tensor(float(k))

    def kwargs_for(j: int, run: BanditRun, log_pi_j: torch.Tensor, rows: torch.Tensor | None) -> dict:
        kw = dict(run.hparams)
        if run.matches_distribution:
            kw.update(divergence=run.divergence, eta=run.eta)
        elif run.objective == "entadv":
            p = log_pi_j.detach().exp()
            n = k if rows is None else len(rows)
            kw["entropy"] = (-(p * log_pi_j.detach()).sum()).expand(n, 1)
        elif run.objective == "clip_cov":
            kw["generator"] = gens[j]
        elif run.objective == "flowrl":
            n = k if rows is None else len(rows)
            # the reference policy is uniform, so every row's log pi_ref is -log K
            kw.update(log_z=log_z[j].expand(n), ref_log_prob=log_uniform[0].expand(n, 1))
            kw.setdefault("beta", 1.0 / run.eta)
        return kw

    def run_loss(j: int, run: BanditRun, log_pi_j: torch.Tensor) -> torch.Tensor:
        if run.matches_distribution:
            behaviour = old_lp[j]
        else:
            behaviour = log_pi_j.detach()
        if run.mode == "exact":
            lp, old, a, rows = log_pi_j.unsqueeze(-1), behaviour.unsqueeze(-1), col_adv, None
            uniform_old = run.matches_distribution and run.refresh_old_every == 0
            weights = None if uniform_old else behaviour.exp().unsqueeze(-1) * k_scale
        else:
            rows = torch.multinomial(behaviour.exp(), run.samples, replacement=True, generator=gens[j])
            lp, old, a, weights = log_pi_j[rows].unsqueeze(-1), behaviour[rows].unsqueeze(-1), col_adv[rows], None
        mask = masks[lp.shape[0]]
        kw = kwargs_for(j, run, log_pi_j, rows)
        if weights is not None:
            kw["weights"] = weights
        loss, _ = fns[j](old, lp, a, mask, "token-mean", **kw)
        return loss

    start = time.perf_counter()
    bar = tqdm(range(steps), desc="bandit", disable=not progress, mininterval=0.5)
    for step in bar:
        log_pi = torch.log_softmax(logits, dim=-1)
        total = sum(run_loss(j, run, log_pi[j]) for j, run in enumerate(runs))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            for j, run in enumerate(runs):
                if run.matches_distribution and run.refresh_old_every and (step + 1) % run.refresh_old_every == 0:
                    old_lp[j] = torch.log_softmax(logits[j], -1)
            if record_every and ((step + 1) % record_every == 0 or step == 0):
                probs = torch.softmax(logits.double(), -1)
                for j in range(n_runs):
                    histories[j].append([step + 1, float(tv_distance(probs[j], targets[j]))])
        if callback is not None:
            callback(step, logits.detach())
    wall = time.perf_counter() - start

    results = []
    probs = torch.softmax(logits.detach().double(), -1)
    for j, run in enumerate(runs):
        p, t = probs[j], targets[j]
        results.append(
            {
                **{key: val for key, val in asdict(run).items() if key != "hparams"},
                "hparams": dict(run.hparams),
                "label": run.label(),
                "steps": steps,
                "lr": lr,
                "tv_to_target": float(tv_distance(p, t)),
                "kl_to_target": float(kl_divergence(t, p)),
                "max_prob": float(p.max()),
                "argmax": int(p.argmax()),
                "modes_recovered": modes_recovered(p, t, bandit.centers, bandit.stds),
                "probs": [round(float(x), 6) for x in p],
                "target": [round(float(x), 6) for x in t],
                "history": histories[j],
                "wall_s_all_runs": round(wall, 3),
            }
        )
    return results


def sweep_runs(mode: str = "exact", eta: float = 1.0, seeds: tuple[int, ...] = (0,), samples: int = 64) -> list[BanditRun]:
    """``--all``: every objective once, and LAD (practical and theoretical) with every divergence."""
    runs = []
    for seed in seeds:
        for obj in OBJECTIVES:
            if obj in DISTRIBUTION_MATCHERS:
                if obj == "lad_theory" and mode != "exact":
                    continue
                runs += [BanditRun(obj, d, eta, mode, samples, seed) for d in DIVERGENCE_NAMES]
            else:
                runs.append(BanditRun(obj, "js", eta, mode, samples, seed))
    return runs
