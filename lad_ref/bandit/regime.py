"""The bandit in the LLM regime: binary rewards, group advantages, pi_old refreshed every rollout.

The trimodal bandit (lad_ref.bandit.train) runs LAD under the paper's conditions: a fixed uniform
pi_old and one distinct advantage per arm. LLM training differs in two ways that matter:

* rewards are binary, so every correct answer of a group gets the same advantage A+ > 0 and every
  wrong one the same A- < 0 (group normalisation, lad_ref.advantages);
* pi_old is the policy that sampled the batch, refreshed after every rollout, and the optimiser
  takes a few steps on each batch (PPO epochs x minibatches), so r = pi/pi_old starts every batch
  at 1 and moves only as far as those steps take it.

This module is that setting on a single-context softmax policy over ``n_arms`` arms (answers),
``n_correct`` of which are correct (reward 1, the others 0), from a non-uniform "SFT" start. What
it measures is what a diversity study on an LLM wants to know: does the policy keep the spread of
its correct answers, i.e. the distribution among the correct arms q(a) = pi(a | correct)?

Why the number of optimizer steps per rollout batch K decides the outcome
-----------------------------------------------------------------------
Write every objective as L = sum_rows w_row(r, A) with rows the sampled answers. For a softmax
policy, the gradient with respect to the logit theta_b of a loss sum_a pi_old(a) g_a(r(a)) is

    dL/dtheta_b = pi(b) g_b'(r(b)) - pi(b) sum_a pi(a) g_a'(r(a)),

so every arm's logit moves in proportion to its own probability pi(b) times a push g_b'(r(b)).

* At r = 1 (the first step on a batch; the ONLY step when K = 1) the push of a correct arm depends
  on its advantage alone, and all correct arms share one advantage: GRPO's push is A+, LAD's is
  -f'(e^{-A+/eta}), a monotone transform of it. Both raise each correct logit in proportion to its
  probability: the rich get richer. Under gradient flow the distribution among the correct arms
  follows the same path for both (d theta_b / dt = s(t) q(b), with only the speed s(t) differing),
  so at K = 1 LAD is a reweighted policy gradient and no difference in diversity is expected.
* With K > 1 steps on the same batch r moves. GRPO's surrogate -A r stays linear in r (until the
  clip at 1 + eps zeroes a row's gradient): nothing pulls a correct arm that got ahead back. LAD's
  per-row push r f'(r e^{-A/eta}) changes sign at r = e^{A/eta} (the brake), and the loss of a batch
  is minimised by pi* ∝ pi_old e^{A/eta}. When all correct answers share one advantage, that
  optimum multiplies all of them by the same factor: it KEEPS the ratios among correct answers. So
  the more steps per batch, the closer LAD gets to a ratio-preserving update, while GRPO keeps
  compounding the rich-get-richer step. The difference should grow with K.

Two properties of this setting, each with a test in tests/test_bandit_regime.py:

* Adam cancels the rich-get-richer step when there is no sampling noise. In exact mode every correct
  logit's gradient is pi(b) times a factor common to all correct arms; Adam divides each coordinate
  by its own running RMS, which removes pi(b), so all correct logits take the same step and the
  ratios among them are kept exactly, for GRPO and LAD and every K (by induction over steps). Under
  Adam, what narrows the correct answers is sampling: which arms a batch happens to contain.
* On tied groups (every answer of the group correct, or every one wrong; with group-normalised
  binary rewards exactly the rows with A = 0) GRPO's loss is 0, while LAD's is e^0 f(r) with target
  r = e^{0/eta} = 1: it pulls r back to 1 as soon as the batch's other rows move it (for js, hd, jf,
  tv, neyman, whose f'(1) = 0; kl's f(u) = u log u is smallest at u = 1/e and so pushes the sampled
  arms down, rkl's -log u pushes them up, since the generators carry no linear term). Once the
  policy is mostly correct most groups are tied.

Measuring what carries LAD's effect
-----------------------------------
* ``tied_loss_weight`` multiplies the loss of the tied groups' rows through the losses' per-row
  ``weights``; the rows stay in the token-mean normaliser, so 0 removes LAD's tied-group term and
  nothing else, and GRPO's run stays bit-identical (a test). ``zero_advantage_rows: drop`` removes
  the rows from the normaliser as well, which changes every objective's step size: kept for
  comparison, not a control.
* ``dynamic_sampling`` is DAPO's dynamic sampling (verl ``algorithm.filter_groups``): tied groups
  are dropped and the batch refilled with untied ones drawn from pi_old (:func:`dynamic_rows`).
* Per rollout the history records the fraction of tied groups, their share of the logits' gradient
  norm (``tied_grad_share``: sum over the batch's K steps of ||g_tied|| over the sum of ||g_tied|| +
  ||g_rest||, g_tied and g_rest the gradients of the tied and the other rows' loss, computed as
  vector-Jacobian products of the rows' gradient through log_softmax and gather) and the generation
  batches drawn.
* Objective labels (:func:`parse_objective`) name any registered objective the bandit can run with
  its hyperparameters, e.g. ``lad(js,eta=0.25)`` or ``ppo_penalty(beta=1,tied_only=true)`` (GRPO +
  beta * KL(pi_old || pi), the trust-region baseline); ``bandit/frontier.yaml`` sweeps LAD's eta
  against the penalty's beta, and :func:`matched_comparison` reads the penalty's curve at each LAD
  point's KL from the start (or its diversity).

The measured results (``paper_figures/bandit_regime.json``, ``paper_figures/bandit_frontier.json``)
are reported in docs/results.md, not here.

Sampled mode (what LLM training does) draws ``prompts_per_rollout`` groups of ``group_size`` arms
from pi_old; arms not drawn are moved only through the softmax normaliser, and frequent arms are
drawn more often, so even LAD's per-batch optimum favours them a little. Exact mode removes that
sampling noise and is defined as the limit of infinitely many prompts per rollout with the same G:
the loss of a batch is replaced by its expectation over batches. With binary rewards the group
advantage of a row depends only on its own reward R and the number m of correct answers among the
other G - 1 members of its group, m ~ Binomial(G - 1, p) with p = pi_old(correct set), so the
expectation is a finite sum over (arm a, m) with weight pi_old(a) Binomial(m; G - 1, p), and the
advantage of each (R, m) cell comes from lad_ref.advantages on the corresponding group. (Not the
large-G limit A = (R - p)/sqrt(p(1 - p)): the finite-G sum is exact and keeps the zero advantage
of all-correct and all-wrong groups.) Both modes call the objectives through
``lad_ref.losses.get_loss`` with the bandit as (B, T) = (rows, 1); there is no bandit copy of a loss.

Command line (``bandit/regime.yaml`` holds the committed settings and the control sweeps)::

    python -m lad_ref.bandit.regime --config bandit/regime.yaml --out regime.json --plot regime.png
    python -m lad_ref.bandit.regime --steps-per-rollout 1,16 --seeds 0 1 2 --objectives "grpo,lad(js)"
    python -m lad_ref.bandit.regime --config bandit/frontier.yaml --steps-per-rollout 16 --out fr16.json
    python -m lad_ref.bandit.regime --merge fr1.json fr16.json --out frontier.json --plot frontier.png

Runs: every (objective, seed) pair of one K is a row of one (R, n_arms) logits tensor trained by one
optimiser (Adam is elementwise, so these are R independent runs; ``lad_ref.bandit.train`` does the
same). Pairing: a seed fixes the start policy and the uniform random numbers of every rollout's
inverse-CDF sampling, shared by all objectives and all K, so differences between objectives of one
seed are not sampling luck. Dynamic sampling's refills draw from a second stream per seed, of which
every rollout consumes ``max_gen_batches - 1`` batches of uniforms whatever a run needs, so the
streams stay aligned across objectives, K and the on/off switch (the first batch is the one without
dynamic sampling).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm.auto import tqdm

from lad_ref.advantages import ESTIMATORS, compute_advantages
from lad_ref.checks import positive, positive_int
from lad_ref.config_io import build, load_yaml
from lad_ref.divergences import DIVERGENCE_NAMES
from lad_ref.losses import get_loss, get_objective, objective_names
from lad_ref.methods import Method, parse_method
from lad_ref.metrics import bootstrap_mean_ci, conditional, effective_number, kl_divergence
from lad_ref.sweep import Job, default_jobs, run_jobs
from lad_ref.threads import torch_threads

MODES: tuple[str, ...] = ("sampled", "exact")
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
ZERO_ADV: tuple[str, ...] = ("keep", "drop")
OBJECTIVES: tuple[str, ...] = ("grpo",) + tuple(f"lad({d})" for d in DIVERGENCE_NAMES)
# metrics recorded after every rollout, per run; the first four describe the policy
METRICS: tuple[str, ...] = ("mass_correct", "eff_correct", "kl_start", "max_prob", "log_r_abs", "brake_frac",
                             "tied_frac", "tied_grad_share", "gen_batches")
# the per-batch metrics (METRICS[4:]): averaged over rollouts in the summary rows
BATCH_METRICS: tuple[str, ...] = METRICS[4:]
# the direction in which a metric is better for diversity (used for per-seed "wins")
BETTER: dict[str, str] = {"eff_correct": "higher", "kl_start": "lower", "mass_correct": "higher", "max_prob": "lower"}


@dataclass
class RegimeConfig:
    """Settings of the regime bandit (``bandit/regime.yaml`` holds the committed ones).

    Attributes:
        n_arms: number of answers (arms) of the single context.
        n_correct: how many of them are correct (reward 1; the rest get 0). Arms 0..n_correct-1.
        start_std: standard deviation of the start's Gaussian logits (seeded per seed). 1.0 gives an
            effective number of correct arms of about 7 out of 10: an uneven, SFT-like start.
        start_correct_mass: the start's probability of a correct answer (the correct logits are
            shifted by one constant to hit it exactly, which leaves the distribution among them alone).
        group_size: G, arms sampled per prompt; advantages are normalised within each group.
        prompts_per_rollout: groups per rollout batch (all from the one context); sampled mode only.
        rollouts: number of rollout batches; pi_old is refreshed to the current policy after each.
        steps_per_rollout: the K values to sweep: optimizer steps on each rollout batch (all on the
            whole batch, like PPO epochs with one minibatch).
        lr: learning rate of the optimiser.
        optimizer: ``adam`` (as LLM training; state kept across rollouts) or ``sgd`` (plain gradient
            steps, where the theory's rich-get-richer step is exact).
        eta: LAD's temperature (target pi_old e^{A/eta}).
        mode: ``sampled`` (groups drawn from pi_old) or ``exact`` (expected loss over batches; see
            the module docstring).
        advantage_estimator: one of lad_ref.advantages.ESTIMATORS.
        zero_advantage_rows: ``keep`` the rows of tied groups (all-correct or all-wrong: A = 0) in the
            loss, as verl and lad_ref's trainer do, or ``drop`` them from it. ``drop`` also removes them
            from the token-mean normaliser, which changes every objective's step size (GRPO's too), so
            it is NOT a control of LAD's tied-group term; ``tied_loss_weight`` is.
        tied_loss_weight: multiplier of the loss of the tied groups' rows, applied through the losses'
            per-row ``weights``: the rows stay in the normaliser, so 0 removes exactly the tied
            groups' term (LAD's e^0 f(r) pull back to r = 1) and leaves GRPO bit-identical (its loss
            on a row with A = 0 is 0).
        dynamic_sampling: DAPO's dynamic sampling (verl ``algorithm.filter_groups``), sampled mode
            only: tied groups are dropped and the batch is refilled with untied groups drawn from
            pi_old, generation batch after generation batch, until it holds ``prompts_per_rollout``
            untied groups (the first ones in draw order; see :func:`dynamic_rows`).
        max_gen_batches: the cap on generation batches per rollout under dynamic sampling (verl's
            ``max_num_gen_batches``, 10 in its DAPO recipe). A run that finds fewer untied groups
            trains on those; one that finds none makes no update in that rollout.
        objectives: objective labels (:func:`parse_objective`): ``grpo``, ``lad(js)``,
            ``lad(js,eta=0.25)``, ``ppo_penalty(beta=0.3)``, ...; default every LAD divergence and GRPO.
        seeds: one run per seed and objective; a seed fixes the start and the sampling numbers.
        record_every: keep the seed-mean curves every this many rollouts in the JSON.
        n_boot: bootstrap resamples for the 95% confidence intervals over seeds.
    """

    n_arms: int = 50
    n_correct: int = 10
    start_std: float = 1.0
    start_correct_mass: float = 0.3
    group_size: int = 8
    prompts_per_rollout: int = 16
    rollouts: int = 300
    steps_per_rollout: tuple[int, ...] = (1, 2, 4, 16, 64)
    lr: float = 0.02
    optimizer: str = "adam"
    eta: float = 1.0
    mode: str = "sampled"
    advantage_estimator: str = "grpo"
    zero_advantage_rows: str = "keep"
    tied_loss_weight: float = 1.0
    dynamic_sampling: bool = False
    max_gen_batches: int = 10
    objectives: tuple[str, ...] = OBJECTIVES
    seeds: tuple[int, ...] = tuple(range(8))
    record_every: int = 10
    n_boot: int = 10_000

    def __post_init__(self) -> None:
        # YAML and the CLI hand lists; keep tuples so the config stays hashable and printable
        for name in ("steps_per_rollout", "objectives", "seeds"):
            val = getattr(self, name)
            if isinstance(val, (list, tuple)):
                setattr(self, name, tuple(val))

    def validate(self) -> None:
        """Raise ValueError (one sentence naming the bad value and the valid choices) before any work."""

        for name in ("n_arms", "n_correct", "group_size", "prompts_per_rollout", "rollouts", "record_every",
                     "max_gen_batches"):
            positive_int(name, getattr(self, name))
        if not isinstance(self.n_boot, int) or self.n_boot < 100:
            raise ValueError(f"n_boot must be an integer >= 100, got {self.n_boot!r}.")
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (a group of one has no advantage), got {self.group_size!r}.")
        if self.n_correct >= self.n_arms:
            raise ValueError(f"n_correct must be below n_arms = {self.n_arms}, got {self.n_correct!r}.")
        for name in ("start_std", "lr", "eta"):
            positive(name, getattr(self, name))
        positive("tied_loss_weight", self.tied_loss_weight, allow_zero=True)
        if not isinstance(self.dynamic_sampling, bool):
            raise ValueError(f"dynamic_sampling must be true or false, got {self.dynamic_sampling!r}.")
        if self.dynamic_sampling and self.mode != "sampled":
            raise ValueError("dynamic_sampling needs mode 'sampled' (it filters sampled groups); got mode "
                             f"{self.mode!r}.")
        if self.dynamic_sampling and self.zero_advantage_rows != "keep":
            raise ValueError("dynamic_sampling already removes the tied groups; use it with zero_advantage_rows "
                             f"'keep', got {self.zero_advantage_rows!r}.")
        if not (isinstance(self.start_correct_mass, (int, float)) and 0 < self.start_correct_mass < 1):
            raise ValueError(f"start_correct_mass must lie strictly between 0 and 1, got {self.start_correct_mass!r}.")
        for name, val, choices in (("mode", self.mode, MODES), ("optimizer", self.optimizer, OPTIMIZERS),
                                   ("zero_advantage_rows", self.zero_advantage_rows, ZERO_ADV),
                                   ("advantage_estimator", self.advantage_estimator, ESTIMATORS)):
            if val not in choices:
                raise ValueError(f"unknown {name} {val!r}; valid choices are {', '.join(choices)}.")
        if not self.steps_per_rollout or not all(isinstance(k, int) and k >= 1 for k in self.steps_per_rollout):
            raise ValueError(f"steps_per_rollout must be integers >= 1, got {list(self.steps_per_rollout)!r}.")
        if not self.objectives:
            raise ValueError(f"objectives is empty; valid choices are {', '.join(OBJECTIVES)}.")
        parsed = [objective_method(obj).key(eta=self.eta) for obj in self.objectives]  # raises on a bad label
        if len(set(self.objectives)) != len(self.objectives) or len(set(parsed)) != len(parsed):
            raise ValueError(f"objectives lists one objective twice: {list(self.objectives)!r}.")
        if not self.seeds or not all(isinstance(s, int) and s >= 0 for s in self.seeds):
            raise ValueError(f"seeds must be integers >= 0, got {list(self.seeds)!r}.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds lists one seed twice: {list(self.seeds)!r}.")


def correct_mask(cfg: RegimeConfig) -> torch.Tensor:
    """(n_arms,) bool, True on the correct arms 0..n_correct-1 (the start's logits are i.i.d., so
    which arms are correct does not matter)."""
    return torch.arange(cfg.n_arms) < cfg.n_correct


def start_logits(cfg: RegimeConfig, seed: int) -> torch.Tensor:
    """The seed's SFT-like start, float32 (n_arms,): Gaussian logits with the correct ones shifted so
    that the start's probability of a correct answer is exactly ``start_correct_mass``."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(cfg.n_arms, generator=gen, dtype=torch.float64) * cfg.start_std
    ok = correct_mask(cfg)
    m = cfg.start_correct_mass
    shift = math.log(m / (1 - m)) - float(torch.logsumexp(z[ok], 0) - torch.logsumexp(z[~ok], 0))
    return torch.where(ok, z + shift, z).float()


def exact_advantage_table(group_size: int, estimator: str = "grpo") -> torch.Tensor:
    """A[R, m] (2, G): the group advantage of a row with reward R in {0, 1} whose G - 1 group mates
    hold m correct answers, computed by lad_ref.advantages on one group per (R, m) cell."""
    g = group_size
    rewards, ids = [], []
    for own in (0, 1):
        for m in range(g):
            rewards += [float(own)] + [1.0] * m + [0.0] * (g - 1 - m)
            ids += [own * g + m] * g
    adv = compute_advantages(torch.tensor(rewards), torch.tensor(ids), estimator)
    return adv.view(2, g, g)[:, :, 0]


def _binomial_pmf(n: int, p: torch.Tensor) -> torch.Tensor:
    """(R, n + 1) float64: Binomial(m; n, p) for m = 0..n and each of the R probabilities p (R,)."""
    m = torch.arange(n + 1, dtype=torch.float64)
    log_comb = math.lgamma(n + 1) - torch.lgamma(m + 1) - torch.lgamma(n - m + 1)
    p = p.double().clamp(0.0, 1.0).unsqueeze(-1)  # a sum of probabilities can exceed 1 by rounding
    return torch.exp(log_comb) * p.pow(m) * (1 - p).pow(n - m)


def objective_choices() -> tuple[str, ...]:
    """Registered objectives the regime bandit can run: scope ``any`` and no extra inputs."""
    return tuple(n for n in objective_names() if get_objective(n).scope == "any" and not get_objective(n).needs)


def objective_method(label: str) -> Method:
    """An objective label of the regime bandit: the lad_ref.methods grammar over :func:`objective_choices`; the
    run options (tied=, ds=, gs=) are config fields here (tied_loss_weight, dynamic_sampling), not label options."""
    return parse_method(label, objective_choices(), options=False)


def parse_objective(label: str, eta: float) -> tuple[str, dict]:
    """An objective label -> (registered name, its hyperparameters with LAD's eta defaulting to ``eta``, the
    config's): ``lad(js)`` -> ("lad", {"divergence": "js", "eta": eta}); ``grpo`` -> ("grpo", {})."""
    method = objective_method(label)
    return method.objective, method.kwargs(eta=eta)


def _policy_metrics(logits: torch.Tensor, ok: torch.Tensor, q_start: torch.Tensor) -> torch.Tensor:
    """(R, 4): mass on the correct set, effective number of correct arms, KL(q_start || q), max prob."""
    p = torch.softmax(logits.detach().double(), -1)
    q = conditional(p, ok)
    return torch.stack(
        [p[:, ok].sum(-1), effective_number(q[:, ok]), kl_divergence(q_start[:, ok], q[:, ok]), p.max(-1).values],
        -1,
    )


def _draw(cfg: RegimeConfig, old_lp: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Arms (R, rows) by inverse-CDF sampling of pi_old with the uniforms (R, rows), and their rewards."""
    cdf = torch.cumsum(old_lp.double().exp(), -1)
    arms = torch.searchsorted(cdf, uniforms * cdf[:, -1:]).clamp(max=cfg.n_arms - 1)
    return arms, correct_mask(cfg).float()[arms]


def _group_advantages(cfg: RegimeConfig, reward: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Group advantages (lad_ref.advantages) of rewards (R, rows) in consecutive groups of G, and the
    rows' tied flags (R, rows): True where every member of the row's group has the same reward."""
    n_runs, n_rows = reward.shape
    g = cfg.group_size
    group_ids = torch.arange(n_runs * (n_rows // g)).repeat_interleave(g)
    adv = compute_advantages(reward.flatten(), group_ids, cfg.advantage_estimator).view(n_runs, n_rows)
    by_group = reward.view(n_runs, -1, g)
    tied = (by_group.amax(-1) == by_group.amin(-1)).repeat_interleave(g, -1)
    return adv, tied


def sampled_rows(cfg: RegimeConfig, old_lp: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """One sampled rollout batch per run: ``prompts_per_rollout`` groups of G arms drawn from pi_old.

    old_lp: (R, n_arms) log pi_old; uniforms: (R, rows) in [0, 1), turned into arms by inverse-CDF
    sampling (so runs given the same uniforms draw coupled batches). Returns arms (R, rows), group
    advantages from lad_ref.advantages (R, rows), row probabilities pw = 1 (R, rows) and the tied
    flags (R, rows) of :func:`_group_advantages`.
    """
    arms, reward = _draw(cfg, old_lp, uniforms)
    adv, tied = _group_advantages(cfg, reward)
    return arms, adv, torch.ones_like(adv), tied


def dynamic_rows(cfg: RegimeConfig, old_lp: torch.Tensor, uniforms: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Dynamic sampling (DAPO; verl ``algorithm.filter_groups``): a batch of untied groups only.

    uniforms: (R, max_gen_batches, P G), P = prompts_per_rollout: the numbers of up to
    ``max_gen_batches`` generation batches of P groups each; batch 0 is the batch without dynamic
    sampling. Groups are taken in draw order; tied ones are dropped and the first P untied ones
    kept, as verl keeps generating batches until P prompts pass the filter and then truncates. A
    run that finds fewer than P keeps those (its missing rows are invalid).

    Returns arms, advantages, pw, tied (all False) and valid (R, P G), and per run the fraction of
    tied groups among the groups drawn and the number of generation batches drawn (R,) each. Only
    the batches up to the one that completed the batch count as drawn.
    """
    n_runs, n_batches, n_rows = uniforms.shape
    g, p = cfg.group_size, cfg.prompts_per_rollout
    arms, reward = _draw(cfg, old_lp, uniforms.reshape(n_runs, -1))
    adv, tied = _group_advantages(cfg, reward)
    untied_group = ~tied[:, ::g]  # (R, batches P)
    rank = untied_group.long().cumsum(-1)  # 1-based rank of each untied group in draw order
    keep = untied_group & (rank <= p)
    found = keep.sum(-1)  # (R,)
    # generation batches drawn: up to the batch holding the P-th untied group, else all of them
    group_index = torch.arange(n_batches * p).expand(n_runs, -1)
    last = torch.where(keep, group_index, -1).amax(-1)
    batches = torch.where(found >= p, last // p + 1, torch.full_like(found, n_batches))
    drawn_groups = batches * p
    drawn = group_index < drawn_groups.unsqueeze(-1)
    tied_frac = ((~untied_group) & drawn).sum(-1).double() / drawn_groups.double()
    # gather the kept groups to the front, in draw order (a stable sort of "not kept")
    order = torch.sort((~keep).long(), dim=-1, stable=True).indices[:, :p]  # (R, P) group indices
    rows = (order.unsqueeze(-1) * g + torch.arange(g)).reshape(n_runs, -1)  # (R, P G) row indices
    valid = (torch.arange(p).expand(n_runs, -1) < found.unsqueeze(-1)).repeat_interleave(g, -1)
    out_adv = torch.where(valid, adv.gather(1, rows), torch.zeros(()))
    return (arms.gather(1, rows), out_adv, torch.ones_like(out_adv), torch.zeros_like(valid), valid,
            tied_frac, batches.double())


def exact_rows(cfg: RegimeConfig, old_lp: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The expected rollout batch: one row per (arm a, m correct group mates), m = 0..G-1.

    Returns arms (R, n_arms G), advantages A[R(a), m] (R, n_arms G), the cells' probabilities
    pw = pi_old(a) Binomial(m; G - 1, p), p = pi_old(correct set), which sum to 1 per run (the
    pw-weighted mean of a row loss is its expectation over batches; module docstring), and the
    tied flags (R, n_arms G): the cells of all-wrong (R = 0, m = 0) and all-correct (R = 1,
    m = G - 1) groups.
    """
    g, n_runs = cfg.group_size, old_lp.shape[0]
    ok = correct_mask(cfg)
    row_arm = torch.arange(cfg.n_arms).repeat_interleave(g)  # row (a, m) -> a
    row_m = torch.arange(g).repeat(cfg.n_arms)  # row (a, m) -> m
    table = exact_advantage_table(g, cfg.advantage_estimator)
    adv = table[ok[row_arm].long(), row_m].expand(n_runs, -1)
    p_old = old_lp.double().exp()
    binom = _binomial_pmf(g - 1, p_old[:, ok].sum(-1))  # (R, G)
    pw = (p_old[:, row_arm] * binom[:, row_m]).float()
    tied = torch.where(ok[row_arm], row_m == g - 1, row_m == 0).expand(n_runs, -1)
    return row_arm.expand(n_runs, -1), adv, pw, tied


def objective_total(fns: list, hps: list, old_rows: torch.Tensor, lp_rows: torch.Tensor, adv: torch.Tensor,
                    valid: torch.Tensor, pw: torch.Tensor, n_seeds: int,
                    row_scale: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over runs of each run's loss: the pw-weighted mean of its valid rows' objective.

    Runs are stacked objective-major (run j = objective j // n_seeds). The n_seeds runs of one
    objective share ONE call of the registered loss with token-mean over all their valid rows, N in
    total; a row of run j gets the weight N pw / sum_{valid rows of j} pw, so the call returns the sum
    of the runs' own losses and each run's gradient is exactly that of its own loss.

    ``row_scale`` (R, rows), optional: a further multiplier of each row's loss that leaves the
    normaliser (the mask and the pw sum) alone; ``tied_loss_weight`` enters here.
    """
    pw_sum = (pw * valid).sum(-1, keepdim=True).clamp(min=1e-30)
    if row_scale is not None:
        pw = pw * row_scale
    total = torch.zeros(())
    for o, (fn, hp) in enumerate(zip(fns, hps)):
        sl = slice(o * n_seeds, (o + 1) * n_seeds)
        mask = valid[sl].reshape(-1, 1)
        n_all = int(mask.sum())
        if n_all == 0:
            continue  # no run of this objective has a row to learn from in this batch
        w = (n_all * pw[sl] / pw_sum[sl]).reshape(-1, 1)
        loss, _ = fn(old_rows[sl].reshape(-1, 1), lp_rows[sl].reshape(-1, 1), adv[sl].reshape(-1, 1),
                     mask, "token-mean", hp=hp, weights=w)
        total = total + loss
    return total


def brake_fraction(grad_rows: torch.Tensor, adv: torch.Tensor, pw: torch.Tensor) -> torch.Tensor:
    """(R,): among rows with A != 0, the pw-weighted fraction whose descent direction -dL/dlog pi does
    not raise log pi where A > 0 (or lower it where A < 0). For LAD that is the rows whose weight r f'(u)
    has flipped (``lad/weight_flip_frac`` of lad_ref.losses, counted over rows with A != 0); for GRPO the
    clipped rows (zero gradient). NaN for a run without any row with A != 0."""
    active = (adv != 0).to(pw.dtype) * pw
    braked = ((-grad_rows * adv) <= 0).to(pw.dtype) * active
    has = active.sum(-1)
    return torch.where(has > 0, braked.sum(-1) / has.clamp(min=1e-30), float("nan"))


def train_regime(cfg: RegimeConfig, k_steps: int, *, bar: tqdm | None = None, threads: int | None = 1) -> dict:
    """Train every (objective, seed) of ``cfg`` with ``k_steps`` optimizer steps per rollout batch.

    Returns ``{"labels", "seeds", "history", "final_logits"}``: run j is (labels[j], seeds[j]);
    history is (rollouts + 1, runs, len(METRICS)) float64 with row 0 the start (NaN for the two
    per-batch metrics). Both per-batch metrics are taken over the rows with A != 0 (the rows the
    batch learns from; NaN for a batch without any): ``log_r_abs`` is the pw-weighted mean
    |log pi/pi_old| after the batch's last step (how far one batch moved the policy);
    ``brake_frac`` is :func:`brake_fraction` at the batch's last step.

    ``threads``: torch intra-op threads while training (None keeps the caller's setting). Every tensor
    here is small, where a second OpenMP thread only adds a barrier per operation (as in
    lad_ref.bandit.train).
    """
    cfg.validate()
    if not isinstance(k_steps, int) or k_steps < 1:
        raise ValueError(f"k_steps must be an integer >= 1, got {k_steps!r}.")
    with torch_threads(threads):
        return _train(cfg, k_steps, bar)


def _train(cfg: RegimeConfig, k_steps: int, bar: tqdm | None) -> dict:
    n_seeds, n_obj = len(cfg.seeds), len(cfg.objectives)
    n_runs = n_obj * n_seeds
    ok = correct_mask(cfg)
    start = torch.stack([start_logits(cfg, s) for s in cfg.seeds])  # (S, n_arms)
    logits = start.repeat(n_obj, 1).clone().requires_grad_(True)  # run j = objective j // S, seed j % S
    q_start = conditional(torch.softmax(start.double(), -1), ok).repeat(n_obj, 1)
    if cfg.optimizer == "adam":
        opt = torch.optim.Adam([logits], lr=cfg.lr)
    else:
        opt = torch.optim.SGD([logits], lr=cfg.lr)
    losses = [parse_objective(o, cfg.eta) for o in cfg.objectives]
    fns = [get_loss(name) for name, _ in losses]
    hps = [get_objective(name).make_hparams(kw) for name, kw in losses]  # built once, passed whole
    # the sampling stream of a seed: the same uniforms for every objective and every K (paired)
    gens = [torch.Generator().manual_seed(10_007 + s) for s in cfg.seeds]
    # dynamic sampling's refills: a second stream per seed, of which every rollout takes the same
    # amount (max_gen_batches - 1 batches) whatever a run needs, so the streams stay paired
    refill_gens = [torch.Generator().manual_seed(20_011 + s) for s in cfg.seeds]
    n_sampled = cfg.prompts_per_rollout * cfg.group_size
    ng = cfg.group_size

    history = torch.full((cfg.rollouts + 1, n_runs, len(METRICS)), float("nan"), dtype=torch.float64)
    history[0, :, :4] = _policy_metrics(logits, ok, q_start)
    for t in range(cfg.rollouts):
        with torch.no_grad():
            old_lp = torch.log_softmax(logits, -1)  # pi_old: refreshed to the current policy every rollout
        gen_batches = torch.ones(n_runs, dtype=torch.float64)
        if cfg.mode == "sampled":
            u = torch.stack([torch.rand(n_sampled, generator=gen, dtype=torch.float64) for gen in gens])
            if cfg.dynamic_sampling:
                more = torch.stack([torch.rand(cfg.max_gen_batches - 1, n_sampled, generator=gen, dtype=torch.float64)
                                    for gen in refill_gens])
                u_all = torch.cat([u.unsqueeze(1), more], 1).repeat(n_obj, 1, 1)
                arms, adv, pw, tied, valid, tied_frac, gen_batches = dynamic_rows(cfg, old_lp, u_all)
            else:
                arms, adv, pw, tied = sampled_rows(cfg, old_lp, u.repeat(n_obj, 1))
                tied_frac = tied[:, ::ng].double().mean(-1)
        else:
            arms, adv, pw, tied = exact_rows(cfg, old_lp)
            p_ok = old_lp.double().exp()[:, ok].sum(-1)
            tied_frac = p_ok.pow(ng) + (1 - p_ok).pow(ng)  # the probability that a group is tied
        old_rows = old_lp.gather(1, arms)
        if not cfg.dynamic_sampling:
            valid = torch.ones_like(adv, dtype=torch.bool) if cfg.zero_advantage_rows == "keep" else ~tied
        row_scale = None if cfg.tied_loss_weight == 1 else torch.where(tied, float(cfg.tied_loss_weight), 1.0)
        skip = ~valid.any(-1)  # runs without a row to learn from (dynamic sampling found no untied group)
        if cfg.dynamic_sampling and bool(skip.any()):
            saved = (logits.detach()[skip].clone(),
                     {k: v[skip].clone() for k, v in opt.state[logits].items() if torch.is_tensor(v) and v.dim()})
        tied_sel, rest_sel = (tied & valid).to(adv.dtype), (~tied & valid).to(adv.dtype)
        norm_tied = torch.zeros(n_runs, dtype=torch.float64)
        norm_rest = torch.zeros(n_runs, dtype=torch.float64)
        for step in range(k_steps):
            lp_rows = torch.log_softmax(logits, -1).gather(1, arms)
            lp_rows.retain_grad()
            total = objective_total(fns, hps, old_rows, lp_rows, adv, valid, pw, n_seeds, row_scale)
            opt.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.backward(retain_graph=True)
                g_rows = lp_rows.grad
            else:  # no valid row anywhere (drop mode): a zero gradient, so Adam still steps as under keep
                logits.grad = torch.zeros_like(logits)
                g_rows = torch.zeros_like(adv)
            if total.requires_grad:
                # the logits' gradient split by rows: the tied groups' term and the rest (vector-Jacobian
                # products through log_softmax and gather; they sum to logits.grad)
                g_tied, = torch.autograd.grad(lp_rows, logits, g_rows * tied_sel, retain_graph=True)
                g_rest, = torch.autograd.grad(lp_rows, logits, g_rows * rest_sel)
                norm_tied += g_tied.double().norm(dim=-1)
                norm_rest += g_rest.double().norm(dim=-1)
            if step == k_steps - 1:
                brake = brake_fraction(g_rows, adv, pw)
            opt.step()
        if cfg.dynamic_sampling and bool(skip.any()):  # no batch reached the trainer: undo Adam's momentum step
            with torch.no_grad():
                logits[skip] = saved[0]
                for k, v in saved[1].items():
                    opt.state[logits][k][skip] = v
        with torch.no_grad():
            log_r = torch.log_softmax(logits, -1).gather(1, arms) - old_rows
            w = pw * (adv != 0)
            has = w.sum(-1)
            history[t + 1, :, :4] = _policy_metrics(logits, ok, q_start)
            history[t + 1, :, 4] = torch.where(has > 0, (log_r.abs() * w).sum(-1) / has.clamp(min=1e-30),
                                               float("nan")).double()
            history[t + 1, :, 5] = brake.double()
            history[t + 1, :, 6] = tied_frac
            both = norm_tied + norm_rest
            history[t + 1, :, 7] = torch.where(both > 0, norm_tied / both.clamp(min=1e-300), float("nan"))
            history[t + 1, :, 8] = gen_batches
        if bar is not None:
            bar.update(k_steps)
    labels = [o for o in cfg.objectives for _ in cfg.seeds]
    seeds = [s for _ in cfg.objectives for s in cfg.seeds]
    return {"labels": labels, "seeds": seeds, "history": history, "final_logits": logits.detach().clone()}


def _round_nan(x: torch.Tensor) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 5)


def _summary(values: torch.Tensor, n_boot: int) -> dict:
    vals = values.double()
    if bool(vals.isnan().any()):  # a per-batch metric no batch defined (e.g. brake_frac without A != 0)
        return {"mean": None, "ci95": [None, None], "per_seed": [_round_nan(v) for v in vals]}
    lo, hi = bootstrap_mean_ci(vals, n_boot=n_boot) if vals.numel() >= 2 else (float("nan"), float("nan"))
    return {"mean": float(vals.mean()), "ci95": [lo, hi], "per_seed": [round(float(v), 6) for v in vals]}


def _regime_job(arg: tuple) -> tuple[torch.Tensor, float]:
    """One (config, K) training in a sweep worker: its history and training seconds."""
    cfg, k, threads = arg
    t0 = time.perf_counter()
    hist = train_regime(cfg, k, threads=threads)["history"]
    return hist, time.perf_counter() - t0


def _train_sweeps(sweeps: list[tuple[str, RegimeConfig]], *, jobs: int, progress: bool,
                  threads: int | None) -> list[list[tuple[torch.Tensor, float]]]:
    """Every K of every (name, config), one job each, ``jobs`` side by side (lad_ref.sweep); per sweep, its
    K's (history, seconds) in K order. Each K trains from the seeds' own streams, so the numbers do not
    depend on the order or the process the jobs run in."""
    items = [(i, name, c, k) for i, (name, c) in enumerate(sweeps) for k in c.steps_per_rollout]
    done = run_jobs([Job(f"{name} K={k}", _regime_job, (c, k, threads)) for _, name, c, k in items], jobs,
                    progress=progress, desc="regime K")
    out: list[list] = [[] for _ in sweeps]
    for (i, *_), res in zip(items, done):
        out[i].append(res)
    return out


def run_sweep(cfg: RegimeConfig, *, progress: bool = True, threads: int | None = 1, jobs: int = 1,
              trained: list[tuple[torch.Tensor, float]] | None = None) -> dict:
    """Every K of ``cfg.steps_per_rollout`` x every objective x every seed; returns the JSON record.

    Per (K, objective): the end-of-training mass on the correct set, effective number of correct
    arms, KL(start's conditional || final conditional) and max arm probability, and the per-batch
    log_r_abs / brake_frac averaged over rollouts, each as mean, 95% bootstrap CI over seeds and the
    per-seed values. ``paired``: for every LAD objective vs GRPO, the per-seed differences LAD - GRPO
    with their mean, 95% bootstrap CI and the number of seeds on which LAD is better.

    The K values train as separate jobs, ``jobs`` side by side (lad_ref.sweep; the numbers do not depend
    on it); ``trained``: their (history, seconds) already computed (:func:`run_all`). ``wall_s``: the
    seconds of training summed over the K jobs (the sweep's wall time when ``jobs`` is 1).
    """
    cfg.validate()
    ks = list(cfg.steps_per_rollout)
    rows, paired, curves = [], {}, {}
    load_before = [round(x, 2) for x in os.getloadavg()]  # 1/5/15-minute load: the machine is shared
    if trained is None:
        trained = _train_sweeps([("main", cfg)], jobs=jobs, progress=progress, threads=threads)[0]
    with torch_threads(threads):  # the summaries under the thread setting they always had
        for k, (hist, _) in zip(ks, trained):
            n_seeds = len(cfg.seeds)
            final = {}
            for o, label in enumerate(cfg.objectives):
                sl = slice(o * n_seeds, (o + 1) * n_seeds)
                per = {name: hist[-1, sl, i] for i, name in enumerate(METRICS[:4])}
                for i, name in enumerate(BATCH_METRICS, start=4):
                    per[name] = hist[1:, sl, i].nanmean(0)
                final[label] = per
                rows.append({"K": k, "objective": label,
                             **{name: _summary(v, cfg.n_boot) for name, v in per.items()}})
                steps = list(range(0, cfg.rollouts + 1, cfg.record_every))
                if steps[-1] != cfg.rollouts:
                    steps.append(cfg.rollouts)
                curves.setdefault(str(k), {})[label] = {
                    "rollout": steps,
                    **{name: [round(float(hist[s, sl, i].mean()), 5) for s in steps]
                       for i, name in enumerate(METRICS[:4])},
                    # per-batch metrics: the seed mean over the rollouts since the previous point
                    **{name: [_round_nan(hist[max(1, s - cfg.record_every + 1):s + 1, sl, i].nanmean())
                              for s in steps[1:]]
                       for i, name in enumerate(BATCH_METRICS, start=4)},
                }
            if "grpo" in final and n_seeds >= 2:
                for label in cfg.objectives:
                    if label == "grpo":
                        continue
                    cmp = paired.setdefault(f"{label} - grpo", {}).setdefault(str(k), {})
                    for name, better in BETTER.items():
                        cmp[name] = _paired_entry(final[label][name] - final["grpo"][name], better, cfg.n_boot)
    wall = sum(sec for _, sec in trained)
    load = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}
    start = torch.stack([start_logits(cfg, s) for s in cfg.seeds])
    start_m = _policy_metrics(start, correct_mask(cfg), conditional(torch.softmax(start.double(), -1),
                                                                    correct_mask(cfg)))
    return {
        "config": {**asdict(cfg), "steps_per_rollout": ks, "objectives": list(cfg.objectives),
                   "seeds": list(cfg.seeds)},
        "seeds": list(cfg.seeds),
        "start": {"mass_correct": _summary(start_m[:, 0], cfg.n_boot), "eff_correct": _summary(start_m[:, 1], cfg.n_boot),
                  "max_prob": _summary(start_m[:, 3], cfg.n_boot)},
        "metrics": {
            "mass_correct": "probability of a correct arm at the end",
            "eff_correct": "exp(H) of the distribution among the correct arms at the end",
            "kl_start": "KL(start's distribution among correct arms || final one), nats",
            "max_prob": "largest single-arm probability at the end",
            "log_r_abs": "mean over rollouts of the pi_old-weighted mean |log pi/pi_old| over rows with A != 0 "
                         "after a batch's last step",
            "brake_frac": "mean over rollouts of the fraction of rows with A != 0 whose last-step gradient "
                          "does not push along A (LAD: weight flipped; GRPO: clipped)",
            "tied_frac": "mean over rollouts of the fraction of tied groups (all answers correct or all wrong) "
                         "among the groups drawn (exact mode: the probability of a tied group)",
            "tied_grad_share": "mean over rollouts of sum_steps ||g_tied|| / sum_steps (||g_tied|| + ||g_rest||), "
                               "g_tied and g_rest the gradients w.r.t. the logits of the loss of the tied groups' "
                               "rows (as weighted by tied_loss_weight) and of the other rows, summed over the "
                               "batch's K steps",
            "gen_batches": "mean over rollouts of the generation batches drawn per rollout (1 without dynamic "
                           "sampling)",
        },
        "rows": rows,
        "paired": paired,
        "curves": curves,
        "wall_s": round(wall, 2),
        "load": load,
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "threads": threads, "jobs": jobs},
    }


def config_fields() -> tuple[str, ...]:
    """Names of RegimeConfig's fields: the keys a YAML config may hold (besides ``controls``)."""
    return tuple(f.name for f in fields(RegimeConfig))


def make_controls(cfg: RegimeConfig, controls: list) -> list[tuple[str, RegimeConfig]]:
    """Each control is a mapping with a ``name`` and overrides of RegimeConfig fields: a sweep run next
    to the main one under the same seeds (e.g. zero-advantage rows dropped, exact mode)."""
    out = []
    if not isinstance(controls, list):
        raise ValueError(f"controls must be a list of mappings with a name and overrides, got {controls!r}.")
    for c in controls:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise ValueError(f"every control needs a 'name' and overrides of the config fields, got {c!r}.")
        over = {k: v for k, v in c.items() if k != "name"}
        for key in over:
            if key not in config_fields():
                raise ValueError(
                    f"unknown key {key!r} in control {c['name']!r}; valid choices are {', '.join(config_fields())}."
                )
        ccfg = build(RegimeConfig, {**asdict(cfg), **over})
        ccfg.validate()
        out.append((c["name"], ccfg))
    return out


def _overrides(cfg: RegimeConfig, ccfg: RegimeConfig) -> dict:
    base = asdict(cfg)
    changed = {k: v for k, v in asdict(ccfg).items() if v != base[k] and k != "objectives"}
    changed = {k: list(v) if isinstance(v, tuple) else v for k, v in changed.items()}
    return {**changed, "objectives": list(ccfg.objectives)}


def run_controls(cfg: RegimeConfig, controls: list[tuple[str, RegimeConfig]], *, progress: bool = True,
                 jobs: int = 1, trained: list | None = None) -> list:
    """Every control sweep: name, overrides (of the main config; ``objectives`` always listed), rows,
    paired, curves, wall_s. Their K values train as jobs side by side (``jobs``; ``trained``: already done)."""
    if trained is None:
        trained = _train_sweeps(controls, jobs=jobs, progress=progress, threads=1)
    out = []
    for (name, ccfg), done in zip(controls, trained):
        sub = run_sweep(ccfg, progress=False, trained=done)
        out.append({"name": name, "overrides": _overrides(cfg, ccfg), "rows": sub["rows"], "paired": sub["paired"],
                    "curves": sub["curves"], "wall_s": sub["wall_s"]})
    return out


def reuse_controls(cfg: RegimeConfig, controls: list[tuple[str, RegimeConfig]], path: Path) -> list:
    """The control sweeps of a record written earlier (``--only-controls``) for the same settings: each
    control of ``controls`` must be there with the same overrides, and the record's main settings
    must equal ``cfg``'s except the main objectives (which no control inherits when it lists its own)
    and K (so that a main sweep split by K reuses the controls of the whole; the controls' K are theirs)."""
    rec = json.loads(Path(path).read_text())
    # K may differ: a main sweep run in parts by K (merged with --merge) takes the controls of the whole
    skip = ("objectives", "steps_per_rollout")
    mine = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items() if k not in skip}
    theirs = {k: v for k, v in rec.get("config", {}).items() if k not in skip}
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise ValueError(f"{path} was written with other settings ({', '.join(diff)}); rerun its controls.")
    stored = {c["name"]: c for c in rec.get("controls", [])}
    out = []
    for name, ccfg in controls:
        c = stored.get(name)
        want = {k: v for k, v in _overrides(cfg, ccfg).items() if k != "steps_per_rollout"}
        have = {k: v for k, v in (c or {}).get("overrides", {}).items() if k != "steps_per_rollout"}
        if c is None or have != want:
            raise ValueError(f"control {name!r} is not in {path} with the overrides {_overrides(cfg, ccfg)}; "
                             "rerun its controls.")
        out.append(c)
    return out


def run_all(cfg: RegimeConfig, controls: list[tuple[str, RegimeConfig]], *, progress: bool = True,
            main_sweep: bool = True, controls_from: Path | None = None, jobs: int = 1) -> dict:
    """The main sweep and every control sweep; controls go under ``record["controls"]``.

    Every (sweep, K) is one job of one sweep runner call (lad_ref.sweep), ``jobs`` side by side; the
    numbers do not depend on ``jobs``. ``wall_s_total``: the wall time of the whole call.
    ``main_sweep=False`` runs only the controls (a record with ``config`` and ``controls``);
    ``controls_from`` takes the controls from such a record instead of running them, so that a long
    sweep can run as two commands.
    """
    reused = reuse_controls(cfg, controls, controls_from) if controls_from is not None else None  # check first
    started = time.perf_counter()
    sweeps = ([("main", cfg)] if main_sweep else []) + (controls if reused is None else [])
    trained = _train_sweeps(sweeps, jobs=jobs, progress=progress, threads=1)
    if main_sweep:
        record = run_sweep(cfg, progress=False, jobs=jobs, trained=trained.pop(0))
    else:
        record = {"config": {**asdict(cfg), "steps_per_rollout": list(cfg.steps_per_rollout),
                             "objectives": list(cfg.objectives), "seeds": list(cfg.seeds)}, "wall_s": 0.0}
    record["controls"] = reused if reused is not None else run_controls(cfg, controls, trained=trained)
    # (reused controls: the seconds they took when they ran)
    record["wall_s_total"] = round(time.perf_counter() - started + sum(c["wall_s"] for c in reused or []), 2)
    if main_sweep:
        record["control_vs_main"] = control_vs_main(record)
    return record


def _paired_entry(diff: torch.Tensor, better: str, n_boot: int) -> dict:
    lo, hi = bootstrap_mean_ci(diff, n_boot=n_boot) if diff.numel() >= 2 else (float("nan"), float("nan"))
    wins = int((diff > 0).sum()) if better == "higher" else int((diff < 0).sum())
    return {"mean": float(diff.mean()), "ci95": [lo, hi], "wins": wins, "n": int(diff.numel()), "better": better}


def control_vs_main(record: dict) -> dict:
    """Per control and objective, the per-seed differences control - main run of the same objective and K
    (same seeds, so paired): ``{control name: {objective: {K: {metric: entry}}}}`` with entries as in
    ``paired`` (mean, 95% bootstrap CI, wins, n). E.g. LAD-js with its tied-group term off minus LAD-js."""
    n_boot = record["config"]["n_boot"]
    main = {(r["K"], r["objective"]): r for r in record.get("rows", [])}
    out: dict = {}
    for c in record.get("controls", []):
        for r in c["rows"]:
            m = main.get((r["K"], r["objective"]))
            if m is None:
                continue
            cell = out.setdefault(c["name"], {}).setdefault(r["objective"], {}).setdefault(str(r["K"]), {})
            for name, better in BETTER.items():
                diff = torch.tensor(r[name]["per_seed"], dtype=torch.float64) - torch.tensor(
                    m[name]["per_seed"], dtype=torch.float64)
                cell[name] = _paired_entry(diff, better, n_boot)
    return out


def merge_records(records: list[dict]) -> dict:
    """Records of one configuration run in parts (one command each: disjoint K, or disjoint objectives
    at one K) -> one record, as if run at once: rows, paired and curves joined, wall times summed
    (``parts`` keeps each part's K, objectives, wall time and load). A (K, objective) present in two
    parts (e.g. GRPO, the reference of each part's paired differences) must agree seed for seed. The
    first record's controls are kept, and ``control_vs_main`` is recomputed."""
    if not records:
        raise ValueError("merge needs at least one record.")
    skip = ("steps_per_rollout", "objectives")
    base = {k: v for k, v in records[0]["config"].items() if k not in skip}
    for rec in records[1:]:
        other = {k: v for k, v in rec["config"].items() if k not in skip}
        if other != base:
            diff = sorted(k for k in set(base) | set(other) if base.get(k) != other.get(k))
            raise ValueError(f"records to merge differ in {', '.join(diff)}; merge runs of one configuration.")
    ks = sorted({k for rec in records for k in rec["config"]["steps_per_rollout"]})
    objs: list[str] = []
    for rec in records:
        objs += [o for o in rec["config"]["objectives"] if o not in objs]
    rows: dict = {}
    for rec in records:
        for r in rec["rows"]:
            key = (r["K"], r["objective"])
            if key in rows:  # the first part's row is kept (a later part may lack newer metrics)
                if any(rows[key][m]["per_seed"] != r[m]["per_seed"] for m in METRICS[:4]):
                    raise ValueError(f"records to merge disagree on K = {key[0]}, {key[1]}: not runs of one "
                                     "configuration.")
                continue
            rows[key] = r
    merged = {**records[0], "config": {**records[0]["config"], "steps_per_rollout": ks, "objectives": objs}}
    merged["rows"] = [rows[(k, o)] for k in ks for o in objs if (k, o) in rows]
    merged["paired"], merged["curves"] = {}, {}
    for rec in records:  # first part first, as for the rows
        for key, per_k in rec["paired"].items():
            for k, v in per_k.items():
                merged["paired"].setdefault(key, {}).setdefault(k, v)
        for k, per_o in rec["curves"].items():
            for o, v in per_o.items():
                merged["curves"].setdefault(k, {}).setdefault(o, v)
    merged["paired"] = {key: {str(k): v[str(k)] for k in ks if str(k) in v} for key, v in merged["paired"].items()}
    merged["wall_s"] = round(sum(rec["wall_s"] for rec in records), 2)
    merged["parts"] = [{"K": rec["config"]["steps_per_rollout"], "objectives": rec["config"]["objectives"],
                        "wall_s": rec["wall_s"], "load": rec.get("load")} for rec in records]
    merged.pop("load", None)
    if merged.get("controls"):
        merged["control_vs_main"] = control_vs_main(merged)
        merged["wall_s_total"] = round(merged["wall_s"] + sum(c["wall_s"] for c in merged["controls"]), 2)
    else:
        merged.pop("wall_s_total", None)
    return merged


MATCHED_NOTE = ("matched_kl: per seed, the PPO-penalty runs (every beta, tied_only excluded) give a piecewise-linear "
                "curve of eff_correct and mass_correct against kl_start (KL(start || end) among correct answers), read "
                "at the LAD run's own kl_start; LAD - penalty(matched), mean and 95% bootstrap CI over the seeds inside "
                "the curve's range. matched_diversity: the same against eff_correct, comparing mass_correct and "
                "kl_start.")


def matched_comparison(record: dict, lad_prefix: str = "lad(js", penalty_prefix: str = "ppo_penalty(",
                       match_on: str = "kl_start", compare: tuple[str, ...] = ("eff_correct", "mass_correct")) -> dict:
    """LAD's points against the penalty's curve at the same value of ``match_on``, per seed.

    For each K, seed and LAD label: the penalty's runs of that seed (every beta; ``tied_only`` ones
    excluded) give a piecewise-linear curve of each ``compare`` metric against ``match_on``; it is read
    at the LAD run's own ``match_on`` value (NaN outside the curve's range: not matched), and the
    per-seed differences LAD - penalty(matched) get a mean and 95% bootstrap CI over the matched seeds.
    Returns ``{K: {lad label: {"n_matched", metric: {"mean", "ci95", "n"}}}}``.
    """
    n_boot = record["config"]["n_boot"]
    out: dict = {}
    for k in record["config"]["steps_per_rollout"]:
        rows = {r["objective"]: r for r in record["rows"] if r["K"] == k}
        pen = [r for o, r in rows.items() if o.startswith(penalty_prefix) and not parse_method(o).values.get("tied_only")]
        lads = [o for o in rows if o.startswith(lad_prefix)]
        if len(pen) < 2 or not lads:
            continue
        for o in lads:
            x_lad = torch.tensor(rows[o][match_on]["per_seed"], dtype=torch.float64)
            n_seeds = x_lad.numel()
            diffs = {m: [] for m in compare}
            for s in range(n_seeds):
                xs = torch.tensor([r[match_on]["per_seed"][s] for r in pen], dtype=torch.float64)
                order = torch.argsort(xs)
                xs = xs[order]
                x = float(x_lad[s])
                if not (float(xs[0]) <= x <= float(xs[-1])):
                    continue
                j = int(torch.searchsorted(xs, torch.tensor([x], dtype=torch.float64)).clamp(1, len(xs) - 1))
                w = 0.0 if float(xs[j] - xs[j - 1]) == 0 else (x - float(xs[j - 1])) / float(xs[j] - xs[j - 1])
                for m in compare:
                    ys = torch.tensor([r[m]["per_seed"][s] for r in pen], dtype=torch.float64)[order]
                    y = float(ys[j - 1]) + w * float(ys[j] - ys[j - 1])
                    diffs[m].append(float(rows[o][m]["per_seed"][s]) - y)
            cell = {"n_matched": len(diffs[compare[0]]), "of": n_seeds}
            for m in compare:
                d = torch.tensor(diffs[m], dtype=torch.float64)
                if d.numel() >= 2:
                    lo, hi = bootstrap_mean_ci(d, n_boot=n_boot)
                    cell[m] = {"mean": float(d.mean()), "ci95": [lo, hi], "n": int(d.numel())}
                else:
                    cell[m] = {"mean": float(d.mean()) if d.numel() else None, "ci95": [None, None],
                               "n": int(d.numel())}
            out.setdefault(str(k), {})[o] = cell
    return out


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` whole: a temporary file in the same folder, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)


def _int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,2,4, got {text!r}") from None


def _label_list(text: str) -> list[str]:
    """Split objective labels at the commas (or semicolons) outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch in ",;" and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [x.strip() for x in [*out, cur] if x.strip()]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lad_ref.bandit.regime",
        description="The bandit in the LLM regime: binary rewards over a set of correct arms, group advantages, "
        "pi_old refreshed every rollout, K optimizer steps per rollout batch; GRPO vs LAD over K.",
    )
    p.add_argument("--config", type=Path, help="YAML file: RegimeConfig fields, and optionally 'controls'")
    p.add_argument("--steps-per-rollout", type=_int_list, dest="steps_per_rollout",
                   help="K values to sweep, comma-separated (default 1,2,4,16,64)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds (default 0..7)")
    p.add_argument("--objectives", type=_label_list,
                   help="semicolon- or comma-separated labels such as grpo, lad(js), lad(js,eta=0.25), "
                        "ppo_penalty(beta=0.3) (default grpo and LAD with every divergence)")
    p.add_argument("--mode", choices=MODES, help="sampled groups, or the exact expectation over batches")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--zero-advantage-rows", choices=ZERO_ADV, dest="zero_advantage_rows")
    p.add_argument("--tied-loss-weight", type=float, dest="tied_loss_weight",
                   help="multiplier of the tied groups' loss, rows kept in the normaliser (default 1)")
    p.add_argument("--dynamic-sampling", action="store_true", default=None, dest="dynamic_sampling",
                   help="drop tied groups and refill the batch with untied ones (DAPO; sampled mode)")
    p.add_argument("--max-gen-batches", type=int, dest="max_gen_batches")
    p.add_argument("--rollouts", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--eta", type=float)
    p.add_argument("--group-size", type=int, dest="group_size")
    p.add_argument("--prompts-per-rollout", type=int, dest="prompts_per_rollout")
    p.add_argument("--no-controls", action="store_true", help="skip the control sweeps of the config")
    p.add_argument("--only-controls", action="store_true", help="run only the control sweeps of the config")
    p.add_argument("--controls-from", type=Path, dest="controls_from",
                   help="take the control sweeps from this record (written with --only-controls, same config)")
    p.add_argument("--merge", type=Path, nargs="+",
                   help="no training: merge records of one config run for disjoint K (one command each)")
    p.add_argument("--selection", type=Path,
                   help="with --merge: attach this record (the runs a grid was chosen on) as beta_selection")
    p.add_argument("--out", type=Path, help="write the JSON record here")
    p.add_argument("--plot", type=Path, nargs="+", help="write the figure (.png and/or .pdf)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--jobs", type=int, default=None,
                   help="(sweep, K) trainings side by side in worker processes (same numbers; default: the number "
                        "of CPUs, capped by the number of trainings)")
    return p


def resolve(args: argparse.Namespace) -> tuple[RegimeConfig, list[tuple[str, RegimeConfig]]]:
    """Defaults < YAML config < command line; unknown keys and bad values fail before any work."""
    values, controls = {}, []
    if args.config is not None:
        loaded = load_yaml(args.config)
        controls = loaded.pop("controls", []) or []
        values.update(loaded)
    for key in config_fields():
        val = getattr(args, key, None)
        if val is not None:
            values[key] = val
    cfg = build(RegimeConfig, values)  # unknown keys and wrong types: one sentence (lad_ref.config_io)
    cfg.validate()
    ctrl = [] if args.no_controls else make_controls(cfg, controls)
    for path in args.plot or []:
        if path.suffix.lower() not in (".png", ".pdf"):
            raise ValueError(f"--plot must name .png or .pdf files, got {str(path)!r}.")
    return cfg, ctrl


def _row_line(r: dict) -> str:
    def num(name: str, width: int, digits: int) -> str:
        v = r[name]["mean"] if name in r else None
        return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"

    return (f"{r['K']:>4}  {r['objective']:<10}{num('mass_correct', 13, 3)}{num('eff_correct', 12, 2)}"
            f"{num('kl_start', 10, 3)}{num('max_prob', 10, 3)}{num('log_r_abs', 9, 3)}{num('brake_frac', 7, 3)}"
            f"{num('tied_frac', 6, 2)}{num('tied_grad_share', 7, 3)}")


def print_table(record: dict) -> None:
    """The regime table: per K, GRPO vs LAD-js (or the first two objectives) and their paired difference."""
    if "rows" not in record:  # --only-controls
        for c in record.get("controls", []):
            print(f"\ncontrol: {c['name']} ({c['overrides']})")
            for r in c["rows"]:
                print(_row_line(r))
        return
    objs = record["config"]["objectives"]
    pick = ("grpo", "lad(js)") if {"grpo", "lad(js)"} <= set(objs) else tuple(objs[:2])
    by = {(r["K"], r["objective"]): r for r in record["rows"]}
    st = record["start"]
    print(f"start: mass on correct set {st['mass_correct']['mean']:.3f}, effective number of correct arms "
          f"{st['eff_correct']['mean']:.2f} (mean over {len(record['seeds'])} seeds)")
    head = f"{'K':>4}  {'objective':<10}{'mass_correct':>13}{'eff_correct':>12}{'kl_start':>10}{'max_prob':>10}" \
           f"{'|log r|':>9}{'brake':>7}{'tied':>6}{'tied_g':>7}"
    print(head)
    print("-" * len(head))
    for k in record["config"]["steps_per_rollout"]:
        for o in objs:
            r = by[(k, o)]
            print(_row_line(r))
        key = f"{pick[1]} - {pick[0]}"
        if key in record["paired"]:
            d = record["paired"][key][str(k)]
            e, kl = d["eff_correct"], d["kl_start"]
            print(f"      {key}: eff {e['mean']:+.2f} [{e['ci95'][0]:+.2f}, {e['ci95'][1]:+.2f}] wins {e['wins']}/"
                  f"{e['n']};  kl {kl['mean']:+.3f} [{kl['ci95'][0]:+.3f}, {kl['ci95'][1]:+.3f}] wins {kl['wins']}/"
                  f"{kl['n']}")
    for c in record.get("controls", []):
        print(f"\ncontrol: {c['name']} ({c['overrides']})")
        for r in c["rows"]:
            print(_row_line(r))
    print(f"\nwall time {record.get('wall_s_total', record['wall_s']):.1f} s")


def check_outputs(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--out and --plot are checked before any work: a folder or an unwritable place would otherwise fail only
    after the sweep (minutes). (The figure type is checked with the config, in :func:`resolve`.)"""
    import os

    for flag, paths in (("--out", [args.out] if args.out is not None else []), ("--plot", args.plot or [])):
        for path in paths:
            if path.is_dir():
                parser.error(f"{flag} {str(path)!r} is a folder; give a file name (e.g. {str(path / 'regime.json')!r}).")
            parent = path.parent if str(path.parent) else Path(".")
            if parent.exists() and not os.access(parent, os.W_OK):
                parser.error(f"{flag} {str(path)!r}: the folder {str(parent)!r} is not writable.")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_outputs(parser, args)
    try:
        cfg, controls = resolve(args)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    if args.controls_from is not None and not args.controls_from.is_file():
        parser.error(f"--controls-from: no such file {str(args.controls_from)!r}.")
    if args.merge:
        missing = [str(f) for f in args.merge if not f.is_file()]
        if missing:
            parser.error(f"--merge: no such file {', '.join(map(repr, missing))}.")
        try:
            record = merge_records([json.loads(f.read_text()) for f in args.merge])
        except ValueError as err:
            parser.error(str(err))
        objs = record["config"]["objectives"]
        if args.config is not None and set(objs) <= set(cfg.objectives):  # the config's order of objectives
            order = [o for o in cfg.objectives if o in objs]
            ks = record["config"]["steps_per_rollout"]
            record["config"]["objectives"] = order
            record["rows"] = sorted(record["rows"], key=lambda r: (ks.index(r["K"]), order.index(r["objective"])))
            record["paired"] = {f"{o} - grpo": record["paired"][f"{o} - grpo"] for o in order
                                if f"{o} - grpo" in record["paired"]}
        if args.selection is not None:  # the record the frontier's beta grid was chosen on (other seeds)
            sel = json.loads(args.selection.read_text())
            record["beta_selection"] = {"source": args.selection.name, "config": sel["config"],
                                        "rows": sel["rows"], "wall_s": sel["wall_s"], "load": sel.get("load")}
        if any(parse_method(o).objective == "ppo_penalty" for o in record["config"]["objectives"]):
            record["matched_kl"] = matched_comparison(record, match_on="kl_start")
            record["matched_diversity"] = matched_comparison(record, match_on="eff_correct",
                                                             compare=("mass_correct", "kl_start"))
            record["matched_note"] = MATCHED_NOTE
        return _finish(args, record)
    try:
        n = len(cfg.steps_per_rollout) * (not args.only_controls) + sum(len(c.steps_per_rollout) for _, c in controls)
        if args.jobs is not None and args.jobs < 1:
            raise ValueError(f"--jobs must be >= 1, got {args.jobs}.")
        record = run_all(cfg, controls, progress=not args.quiet, main_sweep=not args.only_controls,
                         controls_from=args.controls_from, jobs=args.jobs or default_jobs(n))
    except ValueError as err:
        parser.error(str(err))
    return _finish(args, record)


def _finish(args: argparse.Namespace, record: dict) -> int:
    print_table(record)
    if args.out is not None:
        write_json(args.out, record)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.plot and "rows" in record:
        from lad_ref.bandit.regime_plot import plot_record

        for path in args.plot:
            plot_record(record, path)
            print(f"wrote {path}", file=sys.stderr)
    return 0


__all__ = [
    "BETTER", "METRICS", "MODES", "OBJECTIVES", "OPTIMIZERS", "ZERO_ADV", "RegimeConfig", "config_fields",
    "correct_mask", "exact_advantage_table", "main", "parse_objective", "run_all", "run_sweep", "start_logits",
    "train_regime",
]


if __name__ == "__main__":
    raise SystemExit(main())
