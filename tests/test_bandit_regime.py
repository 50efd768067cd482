"""The bandit in the LLM regime (lad_ref.bandit.regime): binary rewards, refreshed pi_old, K steps per batch."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from lad_ref.advantages import compute_advantages
from lad_ref.bandit.regime import (
    METRICS,
    RegimeConfig,
    brake_fraction,
    correct_mask,
    dynamic_rows,
    exact_advantage_table,
    exact_rows,
    main,
    objective_total,
    parse_objective,
    sampled_rows,
    start_logits,
    train_regime,
)
from lad_ref.bandit.regime import main as regime_main
from lad_ref.losses import GrpoHparams, LadHparams, get_loss, get_objective
from lad_ref.metrics import conditional, effective_number

# a small problem that trains in well under a second per run
SMALL = RegimeConfig(n_arms=20, n_correct=5, group_size=4, prompts_per_rollout=4, rollouts=20, lr=0.05,
                     objectives=("grpo", "lad(js)"), seeds=(0, 1), n_boot=200)


def _spread_of_log_r_among_correct(cfg, logits, seed):
    ok = correct_mask(cfg)
    log_r = torch.log_softmax(logits.double(), -1) - torch.log_softmax(start_logits(cfg, seed).double(), -1)
    return float(log_r[ok].max() - log_r[ok].min())


def test_start_hits_its_correct_mass_and_is_seeded():
    cfg = RegimeConfig()
    p = torch.softmax(start_logits(cfg, 3).double(), -1)
    assert float(p[correct_mask(cfg)].sum()) == pytest.approx(0.3, abs=1e-6)
    assert torch.equal(start_logits(cfg, 3), start_logits(cfg, 3))
    assert not torch.equal(start_logits(cfg, 3), start_logits(cfg, 4))
    # uneven, SFT-like: the default start spreads over clearly fewer than the 10 correct arms
    effs = [float(effective_number(conditional(torch.softmax(start_logits(cfg, s).double(), -1),
                                               correct_mask(cfg))[:10])) for s in range(8)]
    assert 5.0 < sum(effs) / 8 < 9.0


def test_exact_advantage_table_is_lad_ref_advantages_of_each_group():
    g = 8
    table = exact_advantage_table(g)
    # a row with reward 1 whose 7 group mates hold 3 correct answers: group [1, 1, 1, 1, 0, 0, 0, 0]
    group = torch.tensor([1.0, 1, 1, 1, 0, 0, 0, 0])
    assert float(table[1, 3]) == pytest.approx(float(compute_advantages(group, torch.zeros(8))[0]))
    # all-wrong and all-correct groups carry no advantage
    assert float(table[0, 0]) == 0.0 and float(table[1, g - 1]) == 0.0
    assert bool((table[1, : g - 1] > 0).all()) and bool((table[0, 1:] < 0).all())


def test_exact_mode_is_the_expectation_of_the_sampled_loss():
    """Exact mode's gradient equals the mean gradient of sampled batches (many groups, Monte Carlo)."""
    cfg = replace(SMALL, prompts_per_rollout=20_000)
    logits = torch.stack([start_logits(cfg, 0)] * 2).requires_grad_(True)
    old_lp = torch.log_softmax(logits.detach(), -1)
    losses = [parse_objective(o, 1.0) for o in cfg.objectives]
    fns = [get_loss(n) for n, _ in losses]
    hps = [get_objective(n).make_hparams(kw) for n, kw in losses]
    grads = []
    for arms, adv, pw, _ in (
        sampled_rows(cfg, old_lp, torch.rand(1, 80_000, generator=torch.Generator().manual_seed(0),
                                             dtype=torch.float64).expand(2, -1)),
        exact_rows(cfg, old_lp),
    ):
        logits.grad = None
        lp = torch.log_softmax(logits, -1).gather(1, arms)
        # r = 1 is where GRPO and LAD differ least; move the policy so that LAD's weight depends on r
        lp = lp + 0.3 * (adv > 0)
        valid = torch.ones_like(adv, dtype=torch.bool)
        objective_total(fns, hps, old_lp.gather(1, arms), lp, adv, valid, pw, 1).backward()
        grads.append(logits.grad.clone())
    sampled, exact = grads
    for j in range(2):
        err = float((sampled[j] - exact[j]).norm() / exact[j].norm())
        assert err < 0.05, (cfg.objectives[j], err)


def test_runs_are_deterministic_and_independent_when_batched():
    for mode, zero in (("sampled", "keep"), ("sampled", "drop"), ("exact", "keep")):
        cfg = replace(SMALL, mode=mode, zero_advantage_rows=zero, objectives=("grpo", "lad(js)", "lad(hd)"),
                      seeds=(0, 1, 2))
        a = train_regime(cfg, 3)
        b = train_regime(cfg, 3)
        torch.testing.assert_close(a["history"], b["history"], rtol=0, atol=0, equal_nan=True)
        assert torch.equal(a["final_logits"], b["final_logits"])
        # the same run alone: objective lad(js), seed 2 (run 1 * 3 + 2 of the batched sweep)
        alone = train_regime(replace(cfg, objectives=("lad(js)",), seeds=(2,)), 3)
        assert torch.allclose(alone["final_logits"][0], a["final_logits"][5], atol=1e-5), (mode, zero)


def test_seed_pairs_the_batches_across_objectives_and_k(monkeypatch):
    """A seed fixes the start and the uniforms of every batch: GRPO and LAD-js of one seed draw their first
    batch from the same start with the same numbers (so the same arms), and the first batch is the same
    for every K. Later batches differ only because the policies have moved."""
    import lad_ref.bandit.regime as regime

    seen = []
    real = regime.sampled_rows

    def spy(cfg, old_lp, uniforms):
        out = real(cfg, old_lp, uniforms)
        seen.append(out[0].clone())
        return out

    monkeypatch.setattr(regime, "sampled_rows", spy)
    cfg = replace(SMALL, rollouts=3)
    h = train_regime(cfg, 1)["history"]
    first_k1 = seen[0]
    assert torch.equal(first_k1[0], first_k1[2]) and torch.equal(first_k1[1], first_k1[3])  # seed 0, seed 1
    assert not torch.equal(first_k1[0], first_k1[1])
    assert h[0, 0, 1] == h[0, 2, 1] and h[0, 1, 1] != h[0, 0, 1]  # same start per seed, not across seeds
    seen.clear()
    train_regime(cfg, 4)
    assert torch.equal(seen[0], first_k1)


def test_brake_fraction_matches_the_loss_functions_own_metrics():
    gen = torch.Generator().manual_seed(0)
    b = 256
    old = -torch.rand(b, 1, generator=gen) * 3
    lp = (old + torch.randn(b, 1, generator=gen) * 0.8).requires_grad_(True)
    adv = torch.randn(b, 1, generator=gen)
    adv[::7] = 0.0
    mask = torch.ones(b, 1, dtype=torch.bool)
    active = float((adv != 0).float().mean())
    for name, hp, key in (("lad", LadHparams(divergence="js"), "lad/weight_flip_frac"),
                          ("lad", LadHparams(divergence="kl"), "lad/weight_flip_frac"),
                          ("grpo", GrpoHparams(), "grpo/clipfrac")):
        lp.grad = None
        loss, metrics = get_loss(name)(old, lp, adv, mask, "token-mean", hp=hp)
        loss.backward()
        frac = float(brake_fraction(lp.grad.T, adv.T, torch.ones(1, b))[0])
        expected = metrics[key] + metrics.get("grpo/clipfrac_lower", 0.0)
        assert frac * active == pytest.approx(expected, abs=1e-6), name
        assert 0.02 < frac < 0.98  # the random batch has rows on both sides


def test_adam_keeps_ratios_among_correct_arms_in_exact_mode_for_every_objective():
    """In exact mode every correct arm's gradient is pi(b) times one common factor, and Adam's per-
    coordinate normalisation cancels pi(b): all correct logits take the same step, by induction at every
    step. Rich-get-richer under Adam needs sampling noise."""
    cfg = replace(SMALL, mode="exact", objectives=("grpo", "lad(js)", "lad(kl)", "lad(tv)"), seeds=(0,))
    out = train_regime(cfg, 4)
    h = out["history"]
    assert float(h[-1, :, 0].min()) > float(h[0, 0, 0]) + 0.3  # the policy moved onto the correct set
    assert float(h[-1, :, 2].max()) < 1e-9  # KL to the start's distribution among correct arms
    for j in range(4):
        assert _spread_of_log_r_among_correct(cfg, out["final_logits"][j], 0) < 1e-4  # float32 logits


def test_lad_per_batch_optimum_keeps_ratios_grpo_does_not():
    """One exact batch, many plain gradient steps: LAD reaches its per-batch optimum, which multiplies
    every correct arm by the same factor (all share one advantage cell distribution); GRPO's first steps
    raise each correct logit in proportion to its probability, and its clip then freezes that."""
    cfg = replace(SMALL, mode="exact", optimizer="sgd", lr=4.0, rollouts=1, seeds=(0,),
                  objectives=("grpo", "lad(kl)", "lad(hd)", "lad(js)"))
    out = train_regime(cfg, 1000)
    spread = {o: _spread_of_log_r_among_correct(cfg, out["final_logits"][j], 0) for j, o in enumerate(cfg.objectives)}
    kl = {o: float(out["history"][-1, j, 2]) for j, o in enumerate(cfg.objectives)}
    moved = {o: float(out["history"][-1, j, 0] - out["history"][0, j, 0]) for j, o in enumerate(cfg.objectives)}
    for o in ("lad(kl)", "lad(hd)", "lad(js)"):
        assert spread[o] < 1e-3 and kl[o] < 1e-8, (o, spread[o], kl[o])
        assert moved[o] > 0.3
    assert spread["grpo"] > 0.2 and kl["grpo"] > 1e-3, (spread["grpo"], kl["grpo"])


def test_k1_exact_grpo_and_lad_follow_one_path_of_correct_answer_distributions():
    """At r = 1 each correct logit's push is pi(b) times a factor common to all correct arms, for GRPO and
    LAD alike, so (gradient flow) the distribution among correct arms moves along one path; only the
    speed differs. LAD-kl's r = 1 weight is GRPO's A shifted by a constant, which the exact expectation
    cancels: its run is GRPO's, step for step."""
    cfg = replace(SMALL, mode="exact", optimizer="sgd", lr=1.0, rollouts=60,
                  objectives=("grpo", "lad(js)", "lad(kl)"), seeds=(0, 1))
    h = train_regime(cfg, 1)["history"].numpy()
    for s in range(2):
        g_eff, g_kl = h[:, s, 1], h[:, s, 2]
        l_eff, l_kl = h[:, 2 + s, 1], h[:, 2 + s, 2]
        assert g_eff[-1] < g_eff[0] - 1.0 and l_eff[-1] < l_eff[0] - 0.5  # both narrow
        assert bool(np.all(np.diff(g_eff) < 0))
        on_path = np.interp(l_eff, g_eff[::-1], g_kl[::-1])
        sel = l_eff >= g_eff.min()
        assert np.abs(on_path - l_kl)[sel].max() < 0.03 * l_kl.max()
        assert np.abs(h[:, s, :4] - h[:, 4 + s, :4]).max() < 1e-4


@pytest.mark.parametrize(
    "args, message",
    [
        (["--objectives", "grpo,lad(chi2)"], "method 'lad(chi2)': unknown divergence 'chi2'; valid choices are kl"),
        (["--objectives", "grpo,lad(js,etaa=1)"], "method 'lad(js,etaa=1)' has option 'etaa=1'; valid options are divergence=<value>, eta=<value>"),
        (["--objectives", "grpo,foo"], "unknown method 'foo'; valid objectives are"),
        (["--tied-loss-weight", "-1"], "tied_loss_weight must be a finite number >= 0, got -1.0"),
        (["--dynamic-sampling", "--mode", "exact"], "dynamic_sampling needs mode 'sampled'"),
        (["--steps-per-rollout", "1,0"], "steps_per_rollout must be integers >= 1, got [1, 0]"),
        (["--steps-per-rollout", "1,x"], "expected comma-separated integers"),
        (["--mode", "online"], "invalid choice: 'online'"),
        (["--lr", "-1"], "lr must be a finite number > 0, got -1.0"),
        (["--group-size", "1"], "group_size must be >= 2"),
        (["--seeds", "1", "1"], "seeds lists one seed twice"),
        (["--plot", "x.txt"], "--plot must name .png or .pdf files"),
    ],
)
def test_cli_bad_input_one_clear_sentence(args, message):
    proc = subprocess.run([sys.executable, "-m", "lad_ref.bandit.regime", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_config_errors(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rollout: 5\n")
    with pytest.raises(SystemExit):
        main(["--config", str(cfg)])
    assert "unknown config key 'rollout' (did you mean 'rollouts'?)" in capsys.readouterr().err
    cfg.write_text("rollouts: 5\ncontrols:\n  - {name: x, modee: exact}\n")
    with pytest.raises(SystemExit):
        main(["--config", str(cfg)])
    assert "unknown key 'modee' in control 'x'" in capsys.readouterr().err


def test_cli_runs_the_fast_config_end_to_end(tmp_path, capsys):
    out, png = tmp_path / "r.json", tmp_path / "r.png"
    assert main(["--config", "bandit/regime_fast.yaml", "--out", str(out), "--plot", str(png), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "lad(js) - grpo: eff" in text
    rec = json.loads(out.read_text())
    for key in ("config", "seeds", "start", "rows", "paired", "curves", "controls", "wall_s", "machine"):
        assert key in rec
    for r in rec["rows"]:
        assert 0 <= r["tied_frac"]["mean"] <= 1 and r["gen_batches"]["mean"] == 1
        if r["objective"] == "grpo":  # GRPO's loss on a tied group (A = 0) is 0
            assert r["tied_grad_share"]["mean"] == 0
    assert rec["seeds"] == [0, 1]
    assert {(r["K"], r["objective"]) for r in rec["rows"]} == {(k, o) for k in (1, 4) for o in ("grpo", "lad(js)")}
    d = rec["paired"]["lad(js) - grpo"]["4"]["eff_correct"]
    lad = next(r for r in rec["rows"] if r["K"] == 4 and r["objective"] == "lad(js)")["eff_correct"]["per_seed"]
    grpo = next(r for r in rec["rows"] if r["K"] == 4 and r["objective"] == "grpo")["eff_correct"]["per_seed"]
    assert d["mean"] == pytest.approx(float(np.mean(np.subtract(lad, grpo))), abs=1e-5)
    assert d["ci95"][0] <= d["mean"] <= d["ci95"][1] and 0 <= d["wins"] <= 2
    assert rec["controls"][0]["name"] == "exact mode" and rec["controls"][0]["rows"][0]["K"] == 2
    assert png.stat().st_size > 10_000


def test_tied_flags_are_the_zero_advantage_rows_of_binary_groups():
    cfg = replace(SMALL, prompts_per_rollout=64)
    old_lp = torch.log_softmax(torch.stack([start_logits(cfg, 0), start_logits(cfg, 1)]), -1)
    u = torch.rand(2, 64 * cfg.group_size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    arms, adv, _, tied = sampled_rows(cfg, old_lp, u)
    assert torch.equal(tied, adv == 0) and 0 < float(tied.float().mean()) < 1
    ok = correct_mask(cfg)
    groups = ok[arms].view(2, -1, cfg.group_size)
    assert torch.equal(tied[:, :: cfg.group_size], groups.all(-1) | ~groups.any(-1))
    arms, adv, pw, tied = exact_rows(cfg, old_lp)
    assert torch.equal(tied, adv == 0)
    # the probability of a tied group, p^G + (1 - p)^G, is the pw mass of the tied cells
    p = old_lp.exp()[:, ok].sum(-1).double()
    torch.testing.assert_close((pw * tied).sum(-1).double(), p.pow(cfg.group_size) + (1 - p).pow(cfg.group_size),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["sampled", "exact"])
def test_tied_loss_weight_leaves_grpo_bit_identical_and_removes_lads_tied_term(mode):
    """The clean control: LAD's loss on tied groups x 0 with the rows kept in the normaliser. GRPO (loss 0 on
    A = 0 rows) must not change by a single bit; LAD must change, and its tied groups' gradient share is 0."""
    cfg = replace(SMALL, mode=mode, rollouts=25, objectives=("grpo", "lad(js)"), seeds=(0, 1, 2))
    on, off = train_regime(cfg, 4), train_regime(replace(cfg, tied_loss_weight=0.0), 4)
    n = len(cfg.seeds)
    assert torch.equal(on["final_logits"][:n], off["final_logits"][:n])
    for i, name in enumerate(METRICS):
        assert torch.equal(on["history"][:, :n, i].isnan(), off["history"][:, :n, i].isnan()), name
        assert torch.equal(on["history"][:, :n, i].nan_to_num(), off["history"][:, :n, i].nan_to_num()), name
    assert not torch.equal(on["final_logits"][n:], off["final_logits"][n:])
    share = METRICS.index("tied_grad_share")
    assert float(on["history"][1:, :n, share].nan_to_num().abs().max()) == 0.0  # GRPO: nothing from tied rows
    assert float(off["history"][1:, n:, share].nan_to_num().abs().max()) == 0.0
    assert float(on["history"][1:, n:, share].nanmean()) > 0.001


def test_tied_loss_weight_keeps_the_normaliser_dropping_rows_does_not():
    """objective_total with row_scale 0 on the tied rows: GRPO's gradient is that of keeping them (rows stay in
    the token-mean's N); dropping them (the valid mask) rescales it by N / N_untied."""
    cfg = replace(SMALL, prompts_per_rollout=32)
    logits = start_logits(cfg, 0).unsqueeze(0).repeat(1, 1).requires_grad_(True)
    old_lp = torch.log_softmax(logits.detach(), -1)
    u = torch.rand(1, 32 * cfg.group_size, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    arms, adv, pw, tied = sampled_rows(cfg, old_lp, u)
    assert 0 < int(tied.sum()) < tied.numel()
    fns, hps = [get_loss("grpo")], [GrpoHparams()]

    def grad(valid, scale=None):
        logits.grad = None
        lp = torch.log_softmax(logits, -1).gather(1, arms) + 0.2 * (adv > 0)  # move r off 1
        objective_total(fns, hps, old_lp.gather(1, arms), lp, adv, valid, pw, 1, scale).backward()
        return logits.grad.clone()

    keep = torch.ones_like(tied)
    g_keep, g_scaled, g_drop = grad(keep), grad(keep, torch.where(tied, 0.0, 1.0)), grad(~tied)
    assert torch.equal(g_keep, g_scaled)
    torch.testing.assert_close(g_drop, g_keep * tied.numel() / int((~tied).sum()))


def _dynamic_reference(cfg, arms_all, ok):
    """Python loop over groups in draw order: keep the first P untied ones."""
    g, p = cfg.group_size, cfg.prompts_per_rollout
    kept, drawn = [], 0
    for start in range(0, arms_all.numel(), g):
        if len(kept) == p:
            break
        drawn += 1
        grp = arms_all[start:start + g]
        if ok[grp].all() or not ok[grp].any():
            continue
        kept.append(grp)
    return kept, drawn


def test_dynamic_sampling_keeps_the_first_untied_groups_in_draw_order():
    cfg = replace(SMALL, prompts_per_rollout=6, dynamic_sampling=True, max_gen_batches=4)
    ok = correct_mask(cfg)
    # three policies: mixed (a full batch at once), nearly all correct (refills), all wrong (none found)
    base = start_logits(cfg, 0)
    logits = torch.stack([base, torch.where(ok, base + 4.0, base), torch.where(ok, base - 40.0, base)])
    old_lp = torch.log_softmax(logits, -1)
    u = torch.rand(3, 4, 6 * cfg.group_size, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    arms, adv, pw, tied, valid, tied_frac, batches = dynamic_rows(cfg, old_lp, u)
    for j in range(3):
        all_arms, _ = sampled_rows(cfg, old_lp[j:j + 1].expand(4, -1), u[j])[:2]
        kept, drawn_groups = _dynamic_reference(cfg, all_arms.flatten(), ok)
        n = len(kept) * cfg.group_size
        assert int(valid[j].sum()) == n
        if kept:
            assert torch.equal(arms[j, :n], torch.cat(kept))
            assert bool((adv[j, :n] != 0).all())  # every kept group is untied
        if len(kept) == cfg.prompts_per_rollout:
            assert float(batches[j]) == -(-drawn_groups // cfg.prompts_per_rollout)
        else:
            assert float(batches[j]) == 4
    assert float(batches[1]) > 1 and int(valid[2].sum()) == 0
    assert not bool(tied.any()) and float(tied_frac[2]) == 1.0


def test_dynamic_sampling_is_paired_deterministic_and_skips_runs_without_a_batch():
    cfg = replace(SMALL, rollouts=30, dynamic_sampling=True, max_gen_batches=3, seeds=(0, 1, 2),
                  objectives=("grpo", "lad(js)"))
    a, b = train_regime(cfg, 4), train_regime(cfg, 4)
    assert torch.equal(a["final_logits"], b["final_logits"])
    alone = train_regime(replace(cfg, objectives=("lad(js)",), seeds=(1,)), 4)
    assert torch.allclose(alone["final_logits"][0], a["final_logits"][4], atol=1e-5)
    gb = METRICS.index("gen_batches")
    assert float(a["history"][1:, :, gb].max()) > 1  # refills happened
    assert float(a["history"][1:, :, METRICS.index("tied_grad_share")].nan_to_num().abs().max()) == 0.0
    # a policy with (almost) no correct mass finds no untied group: no update, not even Adam's momentum
    dead = replace(cfg, start_correct_mass=1e-12, rollouts=3, seeds=(0,), objectives=("lad(js)",))
    out = train_regime(dead, 2)
    assert torch.equal(out["final_logits"][0], start_logits(dead, 0))


@pytest.mark.parametrize(
    "label, expected",
    [
        ("grpo", ("grpo", {})),
        ("lad(js)", ("lad", {"divergence": "js", "eta": 1.0})),
        ("lad(js,eta=0.25)", ("lad", {"divergence": "js", "eta": 0.25})),
        (" lad( hd , eta = 2 ) ", ("lad", {"divergence": "hd", "eta": 2})),
        ("grpo(clip_ratio_high=0.28)", ("grpo", {"clip_ratio_high": 0.28})),
    ],
)
def test_objective_labels(label, expected):
    assert parse_objective(label, 1.0) == expected


@pytest.mark.parametrize(
    "label, message",
    [
        ("lad", "names no divergence"),
        ("lad(js", "is not of the form name or name(arg,key=value,...)"),
        ("lad(js,hd)", "only the first argument of an objective with a divergence is positional"),
        ("grpo(js)", "only the first argument of an objective with a divergence is positional"),
        ("lad(js,eta=)", "'eta=', which is not of the form key=value"),
        ("lad(js,tied=0)", "has option 'tied=0'; valid options are divergence=<value>, eta=<value>, level=<value>."),
        ("lad(js,eta=1,eta=2)", "sets 'eta' twice"),
        ("lad(js,eta=0)", "eta must be a finite number > 0"),
        ("flowrl", "unknown method 'flowrl'; valid objectives are"),  # needs a learned log Z: not a bandit objective
    ],
)
def test_bad_objective_labels_one_sentence(label, message):
    with pytest.raises(ValueError, match=None) as err:
        parse_objective(label, 1.0)
    assert message in str(err.value)


def test_one_objective_under_two_labels_is_refused():
    with pytest.raises(ValueError, match="lists one objective twice"):
        replace(SMALL, eta=1.0, objectives=("lad(js)", "lad(js,eta=1)")).validate()


def test_controls_can_run_as_a_second_command(tmp_path, capsys):
    ctrl = tmp_path / "c.json"
    assert main(["--config", "bandit/regime_fast.yaml", "--only-controls", "--out", str(ctrl), "--quiet"]) == 0
    rec_c = json.loads(ctrl.read_text())
    assert "rows" not in rec_c and rec_c["controls"][0]["name"] == "exact mode"
    out = tmp_path / "r.json"
    assert main(["--config", "bandit/regime_fast.yaml", "--controls-from", str(ctrl), "--out", str(out),
                 "--quiet"]) == 0
    rec = json.loads(out.read_text())
    assert rec["controls"] == rec_c["controls"] and {r["objective"] for r in rec["rows"]} == {"grpo", "lad(js)"}
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["--config", "bandit/regime_fast.yaml", "--controls-from", str(ctrl), "--lr", "0.1", "--quiet"])
    assert "was written with other settings (lr)" in capsys.readouterr().err
    # the fast config's control inherits the main objectives: other main objectives make it another control
    with pytest.raises(SystemExit):
        main(["--config", "bandit/regime_fast.yaml", "--controls-from", str(ctrl), "--objectives", "grpo,lad(hd)",
              "--quiet"])
    assert "control 'exact mode' is not in" in capsys.readouterr().err


def test_merging_parts_by_k_and_by_objective_gives_the_record_of_one_run():
    from lad_ref.bandit.regime import merge_records, run_sweep

    cfg = replace(SMALL, rollouts=6, steps_per_rollout=(1, 3), objectives=("grpo", "lad(js)", "lad(hd)"))
    whole = run_sweep(cfg, progress=False)
    parts = [run_sweep(replace(cfg, steps_per_rollout=(1,)), progress=False),
             run_sweep(replace(cfg, steps_per_rollout=(3,), objectives=("grpo", "lad(js)")), progress=False),
             run_sweep(replace(cfg, steps_per_rollout=(3,), objectives=("grpo", "lad(hd)")), progress=False)]
    merged = merge_records(parts)
    assert merged["rows"] == whole["rows"] and merged["paired"] == whole["paired"]
    assert merged["curves"] == whole["curves"] and merged["config"] == whole["config"]
    with pytest.raises(ValueError, match="differ in lr"):
        merge_records([parts[0], run_sweep(replace(cfg, steps_per_rollout=(3,), lr=0.1), progress=False)])


def test_matched_comparison_reads_the_penalty_curve_at_the_lad_points_kl():
    from lad_ref.bandit.regime import matched_comparison

    def row(o, kl, eff, mass):
        return {"K": 4, "objective": o, "kl_start": {"per_seed": kl}, "eff_correct": {"per_seed": eff},
                "mass_correct": {"per_seed": mass}}

    rec = {"config": {"n_boot": 200, "steps_per_rollout": [4]}, "rows": [
        row("grpo", [2.0, 2.0], [1.0, 1.0], [1.0, 1.0]),
        row("ppo_penalty(beta=0.1)", [2.0, 1.8], [1.0, 1.2], [1.0, 1.0]),
        row("ppo_penalty(beta=1)", [0.0, 0.2], [5.0, 4.8], [0.9, 0.9]),
        row("ppo_penalty(beta=1,tied_only=true)", [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]),  # not on the curve
        row("lad(js,eta=1)", [1.0, 5.0], [4.0, 9.0], [1.0, 1.0]),  # seed 1 lies outside the curve
    ]}
    cell = matched_comparison(rec)["4"]["lad(js,eta=1)"]
    assert cell["n_matched"] == 1 and cell["of"] == 2
    # seed 0: the curve at kl 1.0 is halfway: eff 3.0, mass 0.95
    assert cell["eff_correct"]["mean"] == pytest.approx(1.0) and cell["mass_correct"]["mean"] == pytest.approx(0.05)


@pytest.mark.parametrize("flag, make, match", [
    ("--out", lambda d: d, "is a folder"),
    ("--plot", lambda d: d, "is a folder"),
])
def test_bad_output_paths_fail_before_the_sweep(tmp_path, capsys, flag, make, match):
    # an output that cannot be written is named before any rollout (it used to fail after the whole sweep)
    with pytest.raises(SystemExit) as e:
        regime_main(["--config", "bandit/regime_fast.yaml", flag, str(make(tmp_path))])
    assert e.value.code == 2 and match in capsys.readouterr().err


def test_sweep_jobs_side_by_side_give_the_numbers_of_one_process():
    """Every (sweep, K) is a job of lad_ref.sweep; the record does not depend on --jobs."""
    from lad_ref.bandit.regime import make_controls, run_all

    cfg = replace(SMALL, rollouts=6, steps_per_rollout=(1, 3), objectives=("grpo", "lad(js)"))
    controls = make_controls(cfg, [{"name": "exact mode", "mode": "exact", "steps_per_rollout": [2]}])
    one, two = (run_all(cfg, controls, progress=False, jobs=j) for j in (1, 2))
    for key in ("rows", "paired", "curves", "control_vs_main"):
        assert one[key] == two[key], key
    assert [c["rows"] for c in one["controls"]] == [c["rows"] for c in two["controls"]]
    assert two["machine"]["jobs"] == 2
