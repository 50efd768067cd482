"""The README's headline figure: LAD − GRPO against K, the updates per rollout batch, on both testbeds.

    python -m lad_ref.llm.figures                    # paper_figures/k_sweep.{png,pdf} from the committed JSONs

Left: the regime bandit (``paper_figures/bandit_regime.json``): LAD-js − GRPO in the effective number of
correct answers at the end, per K. Right: the toy LM (``paper_figures/toy_study.json``, the ``protocol``
group's variants): LAD-js − GRPO in distinct correct answers per held-out prompt, per K. Each point is a
mean over paired seeds with its 95% bootstrap CI, as the JSONs store them. Where a JSON also holds the
tied-group control (LAD with its loss on tied groups multiplied by 0, rows kept in the normaliser), that
series is drawn dashed beside full LAD. The figure reads numbers from the JSONs only.
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
    from lad_ref.llm.report import variant_updates

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
    written = []
    for path in out:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150)
        tmp.replace(path)  # written whole
        written.append(path)
    plt.close(fig)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lad_ref.llm.figures", description=__doc__.split("\n\n")[0])
    p.add_argument("--study", default="paper_figures/toy_study.json", help="The toy study's JSON.")
    p.add_argument("--regime", default="paper_figures/bandit_regime.json", help="The regime bandit's JSON.")
    p.add_argument("--out", nargs="+", default=["paper_figures/k_sweep.png", "paper_figures/k_sweep.pdf"],
                   help="Figure files to write (.png, .pdf).")
    args = p.parse_args(argv)
    for name in (args.study, args.regime):
        if not Path(name).is_file():
            p.error(f"{name!r} does not exist (python -m lad_ref.llm.study --json / make bandit-regime write it).")
    study, regime = (json.loads(Path(x).read_text()) for x in (args.study, args.regime))
    for path in draw(study, regime, [Path(o) for o in args.out]):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
