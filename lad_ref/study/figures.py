"""The study's figures: the README's headline figure (LAD − GRPO against K on both testbeds), the toy LM's
PPO-penalty frontier, and the study's own figures (:func:`write_figures`: pass@k, forest, brake).

    python -m lad_ref.study.figures      # paper_figures/k_sweep.{png,pdf} and toy_frontier.{png,pdf} from the JSONs

Left: the regime bandit (``paper_figures/bandit_regime.json``): LAD-js − GRPO in the effective number of
correct answers at the end, per K. Right: the toy LM (``paper_figures/toy_study.json``, the ``protocol``
group's variants): LAD-js − GRPO in distinct correct answers per held-out prompt, per K. Each point is a
mean over paired seeds with its 95% bootstrap CI, as the JSONs store them. Where a JSON also holds the
tied-group control (LAD with its loss on tied groups multiplied by 0, rows kept in the normaliser), that
series is drawn dashed beside full LAD. ``toy_frontier`` (where the study has ``ppo_penalty`` runs):
LAD-js over eta against GRPO + beta KL(pi_old || pi) over beta. The figures read numbers from the JSONs only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HEAD = "lad(js) - grpo"
# the regime JSON's label for LAD with its tied-group term removed, and the toy study's method name for it
BANDIT_CONTROL = "lad(js,tied=0) - grpo"
TOY_CONTROL = "lad(js,tied=0) - grpo"


def save(fig, out: list[Path]) -> list[Path]:
    """Write ``fig`` to every path, each whole (a temporary file, then a rename), and close it."""
    import matplotlib.pyplot as plt

    for path in out:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)
    plt.close(fig)
    return list(out)


def _curve_point(label: str) -> tuple[str, float] | None:
    """("lad", eta) for lad(js) with at most eta set (eta 1 when unset), ("ppo_penalty", beta) for ppo_penalty with only
    beta set; None for any other label (a method the frontier does not draw, or not a method label)."""
    from lad_ref.methods import parse_method

    try:
        m = parse_method(label)
    except ValueError:
        return None
    if m.objective == "lad" and m.divergence == "js" and set(m.values) <= {"divergence", "eta"} and not m.options:
        return "lad", float(m.values.get("eta", 1.0))
    if m.objective == "ppo_penalty" and set(m.values) == {"beta"} and not m.options:
        return "ppo_penalty", float(m.values["beta"])
    return None


def bandit_series(regime: dict, comparison: str, metric: str = "eff_correct") -> list[tuple[int, float, float, float]]:
    """[(K, mean, lo, hi)] of one paired comparison of the regime JSON (sorted by K)."""
    out = []
    for k, entry in ((regime.get("paired") or {}).get(comparison) or {}).items():
        e = entry.get(metric)
        if e and e.get("ci95"):
            out.append((int(k), e["mean"], *e["ci95"]))
    return sorted(out)


def toy_series(study: dict, comparison: str, metric: str = "distinct_correct") -> list[tuple[int, float, float, float]]:
    """[(K, mean, lo, hi)] of one paired comparison over the protocol group's variants (main = the protocol)."""
    from lad_ref.study.report import variant_updates

    paired = study.get("paired") or {}
    variants = ((study.get("groups") or {}).get("protocol") or {}).get("variants") or {}
    out = []
    for name in {**variants, "main": {}}:
        key = comparison if name == "main" else f"{comparison} [{name}]"
        e = (paired.get(key) or {}).get(metric)
        k = variant_updates(study, name)
        if e and e.get("ci95") and k:
            out.append((k, e["mean"], *e["ci95"]))
    return sorted(set(out))


def draw(study: dict, regime: dict, out: list[Path]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6))
    panels = [
        (axes[0], bandit_series(regime, HEAD), bandit_series(regime, BANDIT_CONTROL),
         "regime bandit: effective correct answers", f"{len(regime.get('seeds') or [])} paired seeds"),
        (axes[1], toy_series(study, HEAD), toy_series(study, TOY_CONTROL),
         "toy LM: distinct correct answers / prompt",
         f"{(study.get('paired') or {}).get(HEAD, {}).get('distinct_correct', {}).get('n', '?')} paired seeds"),
    ]
    for ax, full, control, title, note in panels:
        for series, style, label in ((full, "-o", "LAD-js − GRPO"),
                                     (control, "--s", "LAD-js without its tied-group term − GRPO")):
            if not series:
                continue
            ks, m, lo, hi = zip(*series)
            ax.errorbar(ks, m, yerr=[[a - b for a, b in zip(m, lo)], [b - a for a, b in zip(m, hi)]], fmt=style,
                        capsize=3, label=label)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ticks = sorted({k for k, *_ in full + control})
        ax.set_xticks(ticks, [str(k) for k in ticks])
        ax.minorticks_off()
        ax.set_xlabel("K = optimizer updates per rollout batch")
        ax.set_title(title, fontsize=10)
        ax.text(0.02, 0.97, note, transform=ax.transAxes, va="top", fontsize=8, color="dimgrey")
    axes[0].set_ylabel("LAD − GRPO (mean, 95% CI)")
    axes[0].legend(fontsize=8, loc="center left")
    fig.tight_layout()
    return save(fig, out)


def draw_toy_frontier(study: dict, out: list[Path]) -> list[Path]:
    """The toy LM's frontier (issue 24): LAD-js over eta against GRPO + beta KL(pi_old || pi) over beta, K = 16.

    Left: each point minus GRPO (paired over seeds, mean and 95% CI) in distinct correct answers (x) and avg@k (y).
    Right: the absolute means of distinct correct answers against the KL of the correct answers from the start's.
    """
    import matplotlib

    from lad_ref.study.report import variant_updates

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paired, methods = study.get("paired") or {}, study.get("methods") or {}
    # the right panel's absolute means over the seeds every plotted method has (a mean over other seeds starts elsewhere)
    group = ((study.get("groups") or {}).get("penalty") or {}).get("methods") or list(methods)  # the penalty group's points
    methods = {k: e for k, e in methods.items() if k in group}
    plotted = [e for k, e in methods.items() if k == "grpo" or _curve_point(k) is not None]
    common = set.intersection(*(set(e.get("per_seed") or {}) for e in plotted)) if plotted else set()

    def mean_over_common(e: dict, key: str) -> float | None:
        vals = [e["per_seed"][s_].get(key) for s_ in common if s_ in (e.get("per_seed") or {})]
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    series = {"LAD-js, η": "lad", "GRPO + β·KL(π_old‖π), β": "ppo_penalty"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for (label, family), style in zip(series.items(), ("-o", "-s")):
        pts = []
        for name, m in methods.items():
            hit = _curve_point(name)
            e = paired.get(f"{name} - grpo") or {}
            if hit is None or hit[0] != family or m.get("variant", "main") != "main" or "distinct_correct" not in e:
                continue
            value = hit[1]
            pts.append((value, e["distinct_correct"], e["avg_at_k"],
                        {"kl": mean_over_common(m, "correct_answer_kl_from_start"),
                         "distinct": mean_over_common(m, "distinct_correct")}))
        if not pts:
            continue
        pts.sort()
        xs = [p[1]["mean"] for p in pts]
        ys = [p[2]["mean"] for p in pts]
        a.errorbar(xs, ys, xerr=[[x - p[1]["ci95"][0] for x, p in zip(xs, pts)], [p[1]["ci95"][1] - x for x, p in zip(xs, pts)]]
                   if all(p[1].get("ci95") for p in pts) else None,
                   yerr=[[y - p[2]["ci95"][0] for y, p in zip(ys, pts)], [p[2]["ci95"][1] - y for y, p in zip(ys, pts)]]
                   if all(p[2].get("ci95") for p in pts) else None, fmt=style, capsize=3, label=label)
        for v, x, y in zip((p[0] for p in pts), xs, ys):
            a.annotate(f"{v:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        b.plot([p[3]["kl"] for p in pts], [p[3]["distinct"] for p in pts], style, label=label)
    g = methods.get("grpo") or {}
    a.plot([0], [0], "*", ms=12, color="C3", label="GRPO")
    if g:
        b.plot([mean_over_common(g, "correct_answer_kl_from_start")], [mean_over_common(g, "distinct_correct")], "*",
               ms=12, color="C3", label="GRPO")
    a.axhline(0, color="grey", lw=0.8)
    a.axvline(0, color="grey", lw=0.8)
    a.set_xlabel("distinct correct answers / prompt − GRPO")
    a.set_ylabel("avg@k − GRPO")
    a.set_title("paired differences to GRPO (95% CI)", fontsize=10)
    b.set_xlabel("KL of the correct answers from the start's")
    b.set_ylabel("distinct correct answers / prompt")
    b.set_title(f"means over the {len(common)} seeds every point has", fontsize=10)
    a.legend(fontsize=8)
    fig.suptitle(f"Toy LM, K = {variant_updates(study, 'main')}: LAD's η against the PPO penalty's β", fontsize=11)
    fig.tight_layout()
    return save(fig, out)


def write_figures(result: dict, folder: Path) -> list[Path]:
    """The study's figures from its result: pass@k curves (log k), the paired-difference forest plot, brake
    engagement per step (``toy_study_pass_at_k``, ``toy_study_forest``, ``toy_study_brake``, .png and .pdf)."""
    import io
    import re

    import matplotlib

    from lad_ref.llm.files import write_atomic
    from lad_ref.study.analysis import MIN_SEEDS_FOR_CI
    from lad_ref.study.report import verdict

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lad_ref.style import method_color

    folder.mkdir(parents=True, exist_ok=True)
    written = []

    def save(fig, stem):
        for ext in ("png", "pdf"):
            buf = io.BytesIO()  # written whole (temp file + rename), like every other output
            fig.savefig(buf, format=ext, dpi=150)
            write_atomic(folder / f"{stem}.{ext}", buf.getvalue())
            written.append(folder / f"{stem}.{ext}")
        plt.close(fig)

    curves = result.get("curves") or {}
    if curves:
        comp = next((c for c in result["paired"] if c == "lad(js) - grpo"), None)
        fig, axes = plt.subplots(1, 2 if comp else 1, figsize=(9.5 if comp else 5, 3.6), squeeze=False)
        ax = axes[0, 0]
        for name, ys in curves.items():
            ax.plot(range(1, len(ys) + 1), ys, label=name, color=method_color(name), ls="--" if name == "start" else "-")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k (samples)")
        ax.set_ylabel("pass@k (held-out, mean over seeds)")
        ax.legend()
        if comp:
            d = result["paired"][comp]["pass_at_k_curve_diff"]
            ax = axes[0, 1]
            if d["ci95"] is not None:
                lo, hi = zip(*d["ci95"])
                ax.fill_between(d["k"], lo, hi, alpha=0.3, label="95% bootstrap CI over seeds")
            ax.plot(d["k"], d["mean"], label=f"{comp} (paired, {len(result['paired'][comp]['seeds'])} seeds)")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("k (samples)")
            ax.set_ylabel("pass@k difference")
            ax.legend(fontsize=7)
        fig.tight_layout()
        save(fig, "toy_study_pass_at_k")

    paired = result.get("paired") or {}
    if any(len(e["seeds"]) >= 2 for e in paired.values()):
        metric_names = [m for m in ("avg_at_k", "pass_at_256", "distinct_correct", "correct_answer_entropy",
                                    "correct_answer_kl_from_start", "policy_entropy")
                        if any(m in e for e in paired.values())]
        if not any(m.startswith("pass_at_") and m != "pass_at_1" for m in metric_names):
            metric_names.insert(1, next((m for e in paired.values() for m in e
                                         if re.fullmatch(r"pass_at_\d+", m) and m not in ("pass_at_1", "pass_at_16")),
                                        "pass_at_1"))
        comps = [c for c in paired if len(paired[c]["seeds"]) >= 2]  # one seed has no CI: left out of the plot
        fig, axes = plt.subplots(1, len(metric_names), figsize=(2.6 * len(metric_names), 0.35 * len(comps) + 1.4),
                                 sharey=True, squeeze=False)
        for ax, m in zip(axes[0], metric_names):
            for i, c in enumerate(comps):
                e = paired[c].get(m)
                if not e or e["mean"] is None:
                    continue
                ax.errorbar(e["mean"], i, xerr=[[e["mean"] - e["ci95"][0]], [e["ci95"][1] - e["mean"]]],
                            fmt="o", ms=3, capsize=2,
                            color="C0" if verdict(e) in ("holds", "reversed") else "0.5")
            ax.axvline(0, color="k", lw=0.8)
            ax.set_title(m, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0, 0].set_yticks(range(len(comps)))
        axes[0, 0].set_yticklabels([f"{c} (n={len(paired[c]['seeds'])})" for c in comps], fontsize=7)
        axes[0, 0].invert_yaxis()
        fig.suptitle(f"paired difference A - B per seed: mean and 95% bootstrap CI over seeds (blue: CI excludes 0 "
                     f"with >= {MIN_SEEDS_FOR_CI} seeds; a CI over 2-4 seeds is too coarse to test anything)", fontsize=8)
        fig.tight_layout()
        save(fig, "toy_study_forest")

    brake = result.get("brake") or {}
    if brake:
        fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
        for i, (name, b) in enumerate(brake.items()):
            color = f"C{i}"
            steps = range(1, len(b.get("brake/log_ratio_q50", [])) + 1)
            if "lad/weight_flip_frac" in b:
                axes[0].plot(steps, b["lad/weight_flip_frac"], color=color, label=name)
            if "grpo/clipfrac" in b:
                axes[0].plot(steps, b["grpo/clipfrac"], color=color, ls=":", label=name + " clip frac")
            if "brake/log_ratio_q95" in b:
                axes[1].fill_between(steps, b["brake/log_ratio_q05"], b["brake/log_ratio_q95"], color=color, alpha=0.25)
                axes[1].plot(steps, b["brake/log_ratio_q50"], color=color, label=name)
                axes[2].plot(steps, b["brake/log_ratio_abs_max"], color=color, label=name)
        axes[0].set_ylabel("LAD weight-flip fraction / GRPO clip fraction")
        axes[1].set_ylabel("log r: 5-95% band, median")
        axes[2].set_ylabel("max |log r| in the step")
        for ax in axes:
            ax.set_xlabel("RL step")
            ax.legend(fontsize=6)
        fig.tight_layout()
        save(fig, "toy_study_brake")
    return written




def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lad_ref.study.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="paper_figures/toy_study.json", help="The toy study's JSON.")
    p.add_argument("--regime", default="paper_figures/bandit_regime.json", help="The regime bandit's JSON.")
    p.add_argument("--out", nargs="+", default=["paper_figures/k_sweep.png", "paper_figures/k_sweep.pdf"],
                   help="Figure files to write (.png, .pdf).")
    args = p.parse_args(argv)
    for name in (args.study, args.regime):
        if not Path(name).is_file():
            p.error(f"{name!r} does not exist (python -m lad_ref.study --json / make bandit-regime write it).")
    study, regime = (json.loads(Path(x).read_text()) for x in (args.study, args.regime))
    for path in draw(study, regime, [Path(o) for o in args.out]):
        print(path)
    stem = Path(args.out[0]).with_name("toy_frontier")
    if any(_curve_point(k) is not None and _curve_point(k)[0] == "ppo_penalty" for k in study.get("methods") or {}):
        for path in draw_toy_frontier(study, [stem.with_suffix(".png"), stem.with_suffix(".pdf")]):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
