"""The paper's bandit experiment: LAD recovers the trimodal target, GRPO collapses onto one arm."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from lad_ref.bandit import BanditRun, TrimodalBandit, sweep_runs, train_bandit
from lad_ref.bandit.__main__ import main
from lad_ref.losses import get_loss

STRICT = ("kl", "rkl", "jf", "hd", "js")


def test_target_is_the_mixture_at_eta_1():
    b = TrimodalBandit()
    assert torch.allclose(b.target(1.0), b.log_density().exp(), atol=1e-12)
    assert abs(float(b.advantages().mean())) < 1e-6
    # sharper below eta = 1, flatter above
    assert b.target(0.5).max() > b.target(1.0).max() > b.target(2.0).max()


@pytest.fixture(scope="module")
def exact_sweep():
    return {r["label"]: r for r in train_bandit(sweep_runs("exact"), steps=4000, lr=5e-3, progress=False)}


def test_exact_lad_recovers_three_modes(exact_sweep):
    for div in STRICT:
        r = exact_sweep[f"lad({div})"]
        assert r["tv_to_target"] <= 0.02, (div, r["tv_to_target"])
        assert r["modes_recovered"] == 3


def test_exact_grpo_collapses_to_one_arm(exact_sweep):
    r = exact_sweep["grpo"]
    assert r["max_prob"] >= 0.9
    assert r["modes_recovered"] == 1
    assert r["argmax"] == 25  # the heaviest mode's centre: the arm of largest advantage


def test_exact_lad_neyman_recovers_the_target(exact_sweep):
    """The seventh generator, Neyman chi^2 f(u) = (u - 1)^2 / u (strictly convex): the practical loss's
    minimiser is the trimodal target itself."""
    r = exact_sweep["lad(neyman)"]
    assert r["tv_to_target"] <= 0.02, r["tv_to_target"]
    assert r["modes_recovered"] == 3


def test_theoretical_and_practical_lad_reach_the_same_policy(exact_sweep):
    for div in STRICT:
        p = torch.tensor(exact_sweep[f"lad({div})"]["probs"])
        q = torch.tensor(exact_sweep[f"lad_theory({div})"]["probs"])
        assert 0.5 * float((p - q).abs().sum()) <= 0.01


def test_tv_practical_objective_is_not_identifiable(exact_sweep):
    # |pi - pi_old e^{A/eta}| summed is minimised by every pi <= pi_old e^{A/eta} (Z_A > 1 here):
    # a set, not a point, so the practical TV run stops wherever it enters the set.
    r = exact_sweep["lad(tv)"]
    g2 = torch.exp(TrimodalBandit().advantages().double()) / 50
    assert float(g2.sum()) > 1.0
    assert bool((torch.tensor(r["probs"], dtype=torch.float64) <= g2 + 1e-3).all())


@pytest.mark.slow
def test_sampled_lad_converges_for_five_seeds():
    runs = [BanditRun("lad", d, 1.0, "sampled", 64, s) for s in range(5) for d in STRICT]
    for r in train_bandit(runs, steps=4000, progress=False):
        assert r["tv_to_target"] <= 0.05, (r["label"], r["seed"], r["tv_to_target"])


def test_refreshing_pi_old_collapses_lad():
    run = BanditRun("lad", "js", 1.0, "exact", refresh_old_every=1)
    (r,) = train_bandit([run], steps=1500, progress=False)
    assert r["modes_recovered"] < 3 and r["max_prob"] > 0.5


def test_bandit_calls_the_registry_functions(monkeypatch):
    import lad_ref.losses as losses

    calls = []
    spec = losses.OBJECTIVES["lad"]

    def spy(*a, **k):
        calls.append((k["hp"].divergence, k.get("check")))
        return spec.loss(*a, **k)

    monkeypatch.setitem(losses.OBJECTIVES, "lad", dataclasses.replace(spec, loss=spy))
    train_bandit([BanditRun("lad", "hd")], steps=3, progress=False)
    # one checked call before training, then the hot loop without re-validation; hp is built once
    assert calls == [("hd", True)] + [("hd", False)] * 3
    assert get_loss("grpo") is losses.grpo_loss


def test_runs_are_independent_when_batched():
    single = train_bandit([BanditRun("grpo", mode="sampled", seed=3)], steps=200, progress=False)[0]
    batched = train_bandit(
        [BanditRun("lad", "js"), BanditRun("grpo", mode="sampled", seed=3), BanditRun("flowrl")],
        steps=200, progress=False,
    )[1]
    assert single["probs"] == pytest.approx(batched["probs"], abs=1e-6)


def test_thread_count_changes_nothing_but_speed_and_is_restored():
    runs = [BanditRun("lad", "js"), BanditRun("grpo", mode="sampled", seed=1)]
    before = torch.get_num_threads()
    one = train_bandit(runs, steps=100, progress=False, threads=1)
    assert torch.get_num_threads() == before
    two = train_bandit(runs, steps=100, progress=False, threads=2)
    for a, b in zip(one, two):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-6)
    with pytest.raises(ValueError, match="threads must be a positive integer or None, got 0"):
        train_bandit(runs, steps=10, progress=False, threads=0)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "run, match",
    [
        (BanditRun(objective="ppo"), "unknown objective 'ppo'"),
        (BanditRun(divergence="chi2"), "unknown divergence 'chi2'"),
        (BanditRun(eta=0.0), "eta must be a finite number > 0"),
        (BanditRun(mode="online"), "unknown mode 'online'"),
        (BanditRun("lad_theory", mode="sampled"), "needs mode 'exact'"),
        (BanditRun("grpo", hparams={"clip": 0.1}), "unknown hyperparameter 'clip' for objective 'grpo'"),
    ],
)
def test_bad_runs_fail_before_training(run, match):
    with pytest.raises(ValueError, match=match):
        train_bandit([BanditRun(), run], steps=10, progress=False)


@pytest.mark.parametrize("jobs", [2, 3])
def test_runs_split_over_workers_give_the_same_numbers_bit_for_bit(jobs):
    """--all's chunks (lad_ref.bandit.jobs): one Adam over all runs is elementwise, every run has its own generator."""
    from lad_ref.bandit.jobs import train_split

    runs = sweep_runs("exact") + sweep_runs("sampled", seeds=(1,))
    whole = train_bandit(runs, steps=60, progress=False)
    split = train_split(runs, steps=60, lr=5e-3, jobs=jobs, progress=False)
    drop = ("wall_s_all_runs",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in whole] == \
        [{k: v for k, v in r.items() if k not in drop} for r in split]


def test_cli_json_and_plot(tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main(["--objective", "grpo", "--steps", "50", "--seeds", "0", "1", "--json", "--plot", str(png)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    rec = json.loads(lines[0])
    for key in ("objective", "divergence", "mode", "eta", "steps", "seed", "tv_to_target", "kl_to_target",
                "max_prob", "modes_recovered", "probs", "target"):
        assert key in rec
    assert len(rec["probs"]) == 50 and png.stat().st_size > 10_000


def test_cli_config_file(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("objective: lad\ndivergence: hd\nsteps: 20\nmode: sampled\nsamples: 8\n")
    assert main(["--config", str(cfg), "--json", "--eta", "2"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert (rec["divergence"], rec["steps"], rec["mode"], rec["samples"], rec["eta"]) == ("hd", 20, "sampled", 8, 2.0)
    cfg.write_text("objectiv: lad\n")
    with pytest.raises(SystemExit):
        main(["--config", str(cfg)])
    assert "unknown config key 'objectiv' (did you mean 'objective'?)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--eta", "-1"], "eta must be a finite number > 0, got -1.0"),
        (["--divergence", "chi2"], "unknown divergence 'chi2'; valid choices are kl, rkl"),
        (["--mode", "sampled", "--objective", "lad_theory"], "needs mode 'exact'"),
        (["--steps", "0"], "steps must be an integer >= 1"),
        (["--plot", "x.txt"], "--plot must name a .png or .pdf file"),
    ],
)
def test_cli_bad_input_one_clear_sentence(args, message):
    proc = subprocess.run([sys.executable, "-m", "lad_ref.bandit", *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_cli_config_file_is_typed(tmp_path, capsys):
    """The bandit's YAML goes through the same typed config machinery as the trainer's
    (lad_ref.config_io): YAML booleans and numbers mean what they say, wrong types are one sentence."""
    import argparse

    from lad_ref.bandit.__main__ import main, resolve

    f = tmp_path / "c.yaml"
    f.write_text('all: "no"\nlr: 5e-3\nseeds: [1, 2]\n')
    cfg = resolve(argparse.Namespace(config=f, json=False, plot=None))
    assert cfg.all is False and cfg.lr == 5e-3 and cfg.seeds == [1, 2]
    f.write_text("seeds: 3\n")
    with pytest.raises(SystemExit):
        main(["--config", str(f)])
    assert "seeds=3 has the wrong type; expected a list of int" in capsys.readouterr().err
    f.write_text("stepz: 3\n")
    with pytest.raises(SystemExit):
        main(["--config", str(f)])
    assert "unknown config key 'stepz' (did you mean 'steps'?)" in capsys.readouterr().err
