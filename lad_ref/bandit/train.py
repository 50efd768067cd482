"""Train many bandit policies at once with the objectives of lad_ref.losses.

Each run is a softmax policy over the arms with its own logits, all runs' logits being rows of
one (R, K) tensor optimised by one Adam (Adam keeps per-element state, so this is exactly R
independent optimisers). Every objective is called through ``lad_ref.losses.get_loss`` with the
bandit as the (B, T) = (arms, 1) special case: no bandit-only copy of any loss exists.

Nothing here tests an objective's name: what the bandit does for each run follows the
objective's spec (``lad_ref.losses.get_objective``):

* ``spec.anchored`` (LAD: ``lad``, ``lad_theory``): the optimum is pi_old exp(A/eta)/Z, so
  pi_old is kept FIXED (uniform) and the optimum is the target itself. If pi_old were refreshed
  to the current policy every step, each refresh would move the target to pi_old exp(A/eta):
  after n refreshes pi ∝ exp(n A/eta), i.e. mirror ascent on E[A] with a sharpening temperature
  eta/n that converges to the best arm, the very collapse LAD avoids (``refresh_old_every`` > 0
  shows this).
* the other objectives (advantage maximisers; FlowRL) run on-policy: pi_old = the current policy
  (detached) each step. With a fixed pi_old a ratio clip would zero the gradient as soon as r
  left [1 - eps, 1 + eps], freezing them.
* ``spec.temperature`` maps the run's ``eta`` onto the objective's hyperparameters (LAD: eta;
  FlowRL: beta = 1/eta, so that its optimum pi ∝ pi_ref exp(beta A) is the same target as LAD's);
  ``divergence`` goes to objectives that have that hyperparameter.
* ``spec.needs``: the bandit supplies every extra input: the policy's entropy, a seeded
  generator per run, a learned scalar log Z per run and a uniform reference policy.
* ``spec.scope == "finite"`` (``lad_theory``): the objective sums over every arm itself, so it
  runs in exact mode only and takes no weights (refreshed pi_old or not). With pi_old refreshed
  every step it does not sharpen like the practical loss: P_pi is uniform at every refresh and
  the exact sum weighs all arms alike where ``lad`` weighs them by pi_old (one deterministic
  exact run of 1500 steps: lad_theory(js) kept 3 modes, TV to the target 0.22; lad(js) collapsed,
  max probability 0.92).
* ``spec.loss_agg_mode``: the objective's own aggregation, else token-mean.

Loss calls in the training loop pass ``compute_metrics=False, check=False``: every run is
validated, and its loss called once with the checks on, before the first step.

Modes: ``exact`` sums over all K arms with weights pi_old(a) (rows weighted by K pi_old(a) under
token-mean aggregation, so the loss is the expectation under pi_old exactly); ``sampled`` draws
``samples`` arms from pi_old every step (one torch.Generator per run, seeded by its seed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from lad_ref.bandit.env import TrimodalBandit
from lad_ref.checks import choice, positive, positive_int
from lad_ref.divergences import divergence_names
from lad_ref.losses import LOSS_NAMES, ObjectiveSpec, get_objective, loss_inputs, objective_names
from lad_ref.metrics import kl_divergence, modes_recovered, tv_distance
from lad_ref.threads import torch_threads

MODES: tuple[str, ...] = ("exact", "sampled")
#: The objectives lad_ref ships (``objective_names()`` also lists ones registered later).
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
        hparams: further hyperparameter values for the objective (e.g. ``{"kl_cov_ratio": 0.02}``).
        hp: the objective's hyperparameter object, built once by :meth:`validate` from
            ``divergence``, ``eta`` (through ``spec.temperature``) and ``hparams``, and passed
            whole to the loss. It may be given instead (a method label's, lad_ref.methods); then
            ``hparams`` must be empty, and ``eta`` still sets the target distribution.
    """

    objective: str = "lad"
    divergence: str = "js"
    eta: float = 1.0
    mode: str = "exact"
    samples: int = 64
    seed: int = 0
    refresh_old_every: int = 0
    hparams: dict = field(default_factory=dict)
    hp: Any = None

    @property
    def spec(self) -> ObjectiveSpec:
        return get_objective(self.objective)

    def validate(self) -> None:
        """Raise ValueError (one sentence, naming the value and the choices) for a bad setting."""
        spec = self.spec  # an unknown objective raises here, listing the registered ones
        choice("divergence", self.divergence, divergence_names())
        choice("mode", self.mode, MODES)
        positive("eta", self.eta)
        if self.mode == "sampled":
            positive_int("samples", self.samples)
        if spec.scope == "finite" and self.mode != "exact":
            raise ValueError(
                f"objective {self.objective!r} sums over every arm (scope 'finite'), so it needs mode 'exact', "
                "not 'sampled'."
            )
        positive_int("refresh_old_every", self.refresh_old_every, allow_zero=True)
        self.hp = self._build_hp()

    def _build_hp(self) -> Any:
        """The objective's hyperparameter object: ``hp`` if given, else its defaults, then the
        divergence and the target temperature mapped from ``divergence`` and ``eta``, then ``hparams``."""
        spec = self.spec
        if self.hp is not None:
            if type(self.hp) is not spec.hparams or self.hparams:
                raise ValueError(f"run {self.label()!r}: hp must be a {spec.hparams.__name__} and then hparams empty, "
                                 f"got {type(self.hp).__name__} and {self.hparams!r}.")
            return self.hp
        values: dict[str, Any] = {}
        if "divergence" in spec.hparam_names:
            values["divergence"] = self.divergence
        if spec.temperature is not None:
            values.update(spec.temperature(self.eta))
        values.update(self.hparams)
        return spec.make_hparams(values)

    @property
    def matches_distribution(self) -> bool:
        """Whether the objective has a target distribution (LAD, FlowRL) rather than maximising A."""
        return self.spec.temperature is not None

    def label(self) -> str:
        div = getattr(self.hp, "divergence", self.divergence)
        div = f"({div})" if "divergence" in self.spec.hparam_names else ""
        return f"{self.objective}{div}"


def validate_schedule(steps: int, lr: float) -> None:
    positive_int("steps", steps)
    positive("lr", lr)


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
    specs = [run.spec for run in runs]
    hps = [run.hp for run in runs]  # built once by BanditRun.validate (train_bandit validates every run)
    agg_modes = [spec.aggregation("token-mean") for spec in specs]
    targets = [bandit.target(run.eta) for run in runs]
    histories: list[list] = [[] for _ in runs]
    masks = {b: torch.ones(b, 1, dtype=torch.bool) for b in {k} | {r.samples for r in runs if r.mode == "sampled"}}
    k_scale = torch.tensor(float(k))

    def extra_inputs(j: int, spec: ObjectiveSpec, log_pi_j: torch.Tensor, n: int) -> dict:
        if not spec.needs:  # no closures to build in the hot loop
            return {}

        def entropy() -> torch.Tensor:
            p = log_pi_j.detach().exp()
            return (-(p * log_pi_j.detach()).sum()).expand(n, 1)

        return loss_inputs(spec, {
            "entropy": entropy,
            "generator": lambda: gens[j],
            "log_z": lambda: log_z[j].expand(n),
            # the reference policy is uniform: every row's log pi_ref is -log K
            "ref_log_prob": lambda: log_uniform[0].expand(n, 1),
        }, "the bandit")

    def run_loss(j: int, run: BanditRun, log_pi_j: torch.Tensor, check: bool = False) -> torch.Tensor:
        spec = specs[j]
        behaviour = old_lp[j] if spec.anchored else log_pi_j.detach()
        if run.mode == "exact":
            lp, old, a = log_pi_j.unsqueeze(-1), behaviour.unsqueeze(-1), col_adv
            # a finite-scope objective sums over the arms exactly; a fixed uniform pi_old weighs them equally
            exact_without_weights = spec.scope == "finite" or (spec.anchored and run.refresh_old_every == 0)
            weights = None if exact_without_weights else behaviour.exp().unsqueeze(-1) * k_scale
        else:
            rows = torch.multinomial(behaviour.exp(), run.samples, replacement=True, generator=gens[j])
            lp, old, a, weights = log_pi_j[rows].unsqueeze(-1), behaviour[rows].unsqueeze(-1), col_adv[rows], None
        n = lp.shape[0]
        loss, _ = spec.loss(
            old, lp, a, masks[n], agg_modes[j], hp=hps[j], **extra_inputs(j, spec, log_pi_j, n),
            weights=weights, compute_metrics=False, check=check,
        )
        return loss

    # every run's loss once with the checks on (shapes, extra inputs, |A|/eta range), before any step;
    # sampled runs draw from a cloned generator so that the training draws are unchanged
    with torch.no_grad():
        log_pi = torch.log_softmax(logits, dim=-1)
        saved = [g.get_state() for g in gens]
        for j, run in enumerate(runs):
            run_loss(j, run, log_pi[j], check=True)
        for g, state in zip(gens, saved):
            g.set_state(state)

    start = time.perf_counter()
    bar = tqdm(range(steps), desc="bandit", disable=not progress, mininterval=0.5)
    for step in bar:
        log_pi = torch.log_softmax(logits, dim=-1)
        total = torch.stack([run_loss(j, run, log_pi[j]) for j, run in enumerate(runs)]).sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            for j, run in enumerate(runs):
                if specs[j].anchored and run.refresh_old_every and (step + 1) % run.refresh_old_every == 0:
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
                **{key: val for key, val in asdict(run).items() if key not in ("hparams", "hp")},
                "hparams": dict(run.hparams),
                "label": run.label(),
                "matches_distribution": run.matches_distribution,
                "scope": specs[j].scope,
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
    """``--all``: every registered objective once, and those with a divergence once per divergence
    (finite-scope objectives only in exact mode)."""
    runs = []
    for seed in seeds:
        for name in objective_names():
            spec = get_objective(name)
            if spec.scope == "finite" and mode != "exact":
                continue
            divergences = divergence_names() if "divergence" in spec.hparam_names else ("js",)
            runs += [BanditRun(name, d, eta, mode, samples, seed) for d in divergences]
    return runs
