"""The regime figure: what K optimizer steps per rollout batch do to the spread of correct answers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the CLI and CI have no screen
import matplotlib.pyplot as plt  # noqa: E402

from lad_ref.style import method_color  # noqa: E402

PANELS = (
    ("eff_correct", "effective number of correct arms\nexp(H) at the end"),
    ("kl_start", "KL(start || end) among correct arms"),
    ("log_r_abs", "mean |log r| after a batch's last step\n(rows with A != 0)"),
)


def _errorbar(ax, rows: list[dict], metric: str, label: str, color: str, shift: float, style: str = "-o",
              **kw) -> None:
    ks = [r["K"] for r in rows]
    mean = [r[metric]["mean"] for r in rows]
    lo = [m - r[metric]["ci95"][0] for m, r in zip(mean, rows)]
    hi = [r[metric]["ci95"][1] - m for m, r in zip(mean, rows)]
    ax.errorbar([k * 2 ** shift for k in ks], mean, yerr=[lo, hi], fmt=style, color=color, label=label, ms=4,
                lw=1.4, capsize=2, **kw)


def plot_regime(record: dict, path: str | Path) -> Path:
    """Three panels against K (log2 axis), one line per objective, error bars = 95% bootstrap CI of the
    mean over seeds; a fourth panel shows the control sweeps of GRPO and LAD-js when present."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = record["config"]["objectives"]
    controls = record.get("controls") or []
    n = len(PANELS) + (1 if controls else 0)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.6)) if n == 4 else plt.subplots(1, n, figsize=(4.4 * n, 4.2))
    axes = list(axes.flat)
    width = 0.07
    for ax, (metric, title) in zip(axes, PANELS):
        for i, o in enumerate(objs):
            rows = [r for r in record["rows"] if r["objective"] == o]
            main = o in ("grpo", "lad(js)")
            _errorbar(ax, rows, metric, o, method_color(o), (i - (len(objs) - 1) / 2) * width,
                      alpha=1.0 if main else 0.55, zorder=3 if main else 2)
        if metric == "eff_correct":
            ax.axhline(record["start"]["eff_correct"]["mean"], color="#7f7f7f", ls="--", lw=1, label="start")
            ax.set_ylim(bottom=0)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("optimizer steps per rollout batch K")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7, loc="lower left", ncol=2)
    axes[1].set_yscale("log")
    if controls:
        ax = axes[-1]
        ax.axhline(record["start"]["eff_correct"]["mean"], color="#7f7f7f", ls="--", lw=1)
        main_rows = {o: [r for r in record["rows"] if r["objective"] == o] for o in ("grpo", "lad(js)")}
        for o, rows in main_rows.items():
            if rows:
                _errorbar(ax, rows, "eff_correct", f"{o}", method_color(o), 0.0)
        styles = ("--s", ":^", "-.v", "--D", ":x")
        for j, c in enumerate(controls):
            for i, o in enumerate(("grpo", "lad(js)")):
                rows = [r for r in c["rows"] if r["objective"] == o]
                if rows:
                    _errorbar(ax, rows, "eff_correct", f"{o}, {c['name']}", method_color(o),
                              (j + 1) * 0.1 * (1 if i else -1), style=styles[j % len(styles)], alpha=0.75)
        ax.set_xscale("log", base=2)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("optimizer steps per rollout batch K")
        ax.set_title("effective number of correct arms:\ncontrols (GRPO and LAD-js)", fontsize=9)
        ax.legend(fontsize=6.5, loc="center left", bbox_to_anchor=(1.01, 0.5))
    cfg = record["config"]
    fig.suptitle(
        f"Bandit in the LLM regime: {cfg['n_arms']} arms, {cfg['n_correct']} correct (binary reward), "
        f"G = {cfg['group_size']} x {cfg['prompts_per_rollout']} prompts per rollout, pi_old refreshed per rollout,\n"
        f"{cfg['rollouts']} rollouts, {cfg['optimizer']} lr {cfg['lr']:g}, {cfg['mode']} mode; mean over "
        f"{len(record['seeds'])} paired seeds, error bars 95% bootstrap CI",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path
