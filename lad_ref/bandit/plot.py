"""Plot the target distribution against learned bandit policies."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the CLI and CI have no screen
import matplotlib.pyplot as plt  # noqa: E402

from lad_ref.style import method_color  # noqa: E402


def plot_policies(results: list[dict], path: str | Path, title: str | None = None) -> Path:
    """Target P_A (grey bars) and each run's final policy over arms.

    Two panels when both kinds are present: distribution matchers (LAD, FlowRL) on the target's
    scale, and advantage maximisers on [0, 1], where their collapse onto one arm shows. Which is
    which comes from each result's ``matches_distribution`` (the objective's spec, via train_bandit).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = [
        ("distribution matching (LAD, FlowRL)", [r for r in results if r["matches_distribution"]]),
        ("advantage maximisation (GRPO and regularised variants)",
         [r for r in results if not r["matches_distribution"]]),
    ]
    groups = [g for g in groups if g[1]]
    fig, axes = plt.subplots(1, len(groups), figsize=(6.5 * len(groups), 4.2), squeeze=False)
    target = results[0]["target"]
    arms = range(len(target))
    for ax, (name, runs) in zip(axes[0], groups):
        ax.bar(arms, target, color="#cccccc", label=f"target P_A (eta={results[0]['eta']:g})")
        seen = set()
        for r in runs:
            label = r["label"] if r["label"] not in seen else None
            seen.add(r["label"])
            style = ":" if r["scope"] == "finite" else "-"  # the theoretical objective, dotted
            ax.plot(arms, r["probs"], style, color=method_color(r["label"]), lw=1.5, label=label)
        top = max(max(r["max_prob"] for r in runs), max(target))
        ax.set_ylim(0, min(1.02, top * 1.25))
        ax.set_xlabel("arm index")
        ax.set_ylabel("probability")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.suptitle(title or f"50-armed trimodal bandit: final policies, {results[0]['mode']} mode, "
                 f"{results[0]['steps']} steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
