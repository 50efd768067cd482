"""Training curves from metrics.jsonl: reward, accuracy and distinct correct answers vs step."""

from __future__ import annotations

from pathlib import Path

from lad_ref.llm.checkpoint import read_metrics


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def write_plots(run: Path, title: str = "") -> list[Path]:
    """plots/reward.png, plots/accuracy.png, plots/distinct_correct.png; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")  # no display on CI / servers
    import matplotlib.pyplot as plt

    rows = read_metrics(run)
    out = run / "plots"
    out.mkdir(exist_ok=True)
    panels = [
        ("reward.png", "reward", [("train/reward_mean", "rollout reward")]),
        ("accuracy.png", "accuracy", [("train/accuracy", "rollout accuracy"), ("eval/avg_at_k", "held-out avg@k"),
                                      ("eval/pass_at_k", "held-out pass@k")]),
        ("distinct_correct.png", "distinct correct answers per prompt",
         [("train/distinct_correct", "rollouts (of G)"), ("eval/distinct_correct", "held-out (of k)")]),
    ]
    written = []
    for fname, ylabel, series in panels:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for key, label in series:
            xs, ys = _series(rows, key)
            if xs:
                ax.plot(xs, ys, marker="o" if key.startswith("eval/") else None, ms=3, label=label)
        ax.set_xlabel("RL step")
        ax.set_ylabel(ylabel)
        if title:
            ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
        written.append(out / fname)
    return written
