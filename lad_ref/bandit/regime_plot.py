"""The regime figure: what K optimizer steps per rollout batch do to the spread of correct answers."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the CLI and CI have no screen
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from lad_ref.methods import parse_method  # noqa: E402
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


def _line_color(label: str) -> str:
    m = parse_method(label)
    if m.objective == "ppo_penalty" and m.values:  # a point of the penalty's beta curve
        return "#009E73"
    if m.objective == "lad" and len(m.values) > 1:  # a point of LAD's eta curve: its divergence's colour
        return method_color(m.family)
    return method_color(label)


def plot_tied(record: dict, path: str | Path, ks: tuple[int, ...] = (4, 16, 64)) -> Path:
    """The tied groups' part: their fraction and their share of LAD-js's gradient over training (main
    sweep, one line per K), and LAD-js - GRPO in effective correct answers with and without the tied
    groups' term and under dynamic sampling (paired 95% CIs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    ks = [k for k in ks if str(k) in record["curves"]]
    shades = ("#9ecae1", "#4292c6", "#08306b", "#041c40")
    for k, col in zip(ks, shades):
        cur = record["curves"][str(k)]
        for label, ls in (("grpo", ":"), ("lad(js)", "-")):
            if label in cur:
                c = cur[label]
                axes[0].plot(c["rollout"][1:], c["tied_frac"], ls, color=col, lw=1.5, label=f"K = {k}, {label}")
        if "lad(js)" in cur:
            c = cur["lad(js)"]
            axes[1].plot(c["rollout"][1:], c["tied_grad_share"], "-", color=col, lw=1.6, label=f"K = {k}")
    axes[0].set_title("fraction of tied groups per batch\n(all answers correct or all wrong)", fontsize=9)
    axes[1].set_title("LAD-js: tied groups' share of the logits' gradient norm\n"
                      "sum ||g_tied|| / sum (||g_tied|| + ||g_rest||) over a batch's K steps", fontsize=9)
    for ax in axes[:2]:
        ax.set_xlabel("rollout")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
    ax = axes[2]
    key = "lad(js) - grpo"
    series = [("with the tied groups' term", record["paired"].get(key, {}), "-o", method_color("lad(js)"), 0.0)]
    for c in record.get("controls", []):
        if c["name"] == "tied-group term off":
            series.append(("tied-group term x 0 (rows kept in the normaliser)", c["paired"].get(key, {}), "--s",
                           "#7f7f7f", 0.08))
        if c["name"] == "dynamic sampling":
            series.append(("dynamic sampling (tied groups refilled)", c["paired"].get(key, {}), "D", "#009E73",
                           -0.08))
    for name, per_k, fmt, col, shift in series:
        kk = sorted(int(k) for k in per_k)
        if not kk:
            continue
        mean = [per_k[str(k)]["eff_correct"]["mean"] for k in kk]
        lo = [m - per_k[str(k)]["eff_correct"]["ci95"][0] for m, k in zip(mean, kk)]
        hi = [per_k[str(k)]["eff_correct"]["ci95"][1] - m for m, k in zip(mean, kk)]
        ax.errorbar([k * 2 ** shift for k in kk], mean, yerr=[lo, hi], fmt=fmt, color=col, label=name, ms=5,
                    capsize=3, lw=1.4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("optimizer steps per rollout batch K")
    ax.set_title("LAD-js - GRPO: effective number of correct answers\n(paired over seeds, 95% bootstrap CI)",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"Regime bandit: what carries LAD's effect ({len(record['seeds'])} paired seeds)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def _short(label: str) -> str:
    """The values a label sets, as written, without its divergence: ``lad(js,eta=0.25)`` -> ``0.25``."""
    return ",".join(v for k, v in parse_method(label).texts.items() if k != "divergence")


def plot_frontier(record: dict, path: str | Path) -> Path:
    """Accuracy against diversity, one panel per K: every LAD-js eta point and every PPO-penalty beta
    point as its paired difference to GRPO (mean over seeds, 95% bootstrap CIs on both axes); the lower
    row shows the same runs' effective correct answers against their KL from the start (among correct
    answers), where a matched-KL comparison reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ks = record["config"]["steps_per_rollout"]
    objs = record["config"]["objectives"]
    fig, axes = plt.subplots(2, len(ks), figsize=(4.3 * len(ks), 8.4), squeeze=False)
    parsed = {o: parse_method(o) for o in objs}
    families = (("LAD-js, eta", [o for o in objs if parsed[o].objective == "lad"], "-o"),
                ("PPO penalty, beta", [o for o in objs if parsed[o].objective == "ppo_penalty"
                                       and "tied_only" not in parsed[o].values], "-s"),
                ("penalty on tied groups only", [o for o in objs if "tied_only" in parsed[o].values], "^"))
    for i, k in enumerate(ks):
        ax, bx = axes[0, i], axes[1, i]
        rows = {r["objective"]: r for r in record["rows"] if r["K"] == k}
        for name, labels, fmt in families:
            labels = [o for o in labels if f"{o} - grpo" in record["paired"]]
            if not labels:
                continue
            col = _line_color(labels[0]) if "tied" not in name else "#CC79A7"
            d = [record["paired"][f"{o} - grpo"][str(k)] for o in labels]
            x = [e["eff_correct"]["mean"] for e in d]
            y = [e["mass_correct"]["mean"] for e in d]
            xe = [[m - e["eff_correct"]["ci95"][0] for m, e in zip(x, d)],
                  [e["eff_correct"]["ci95"][1] - m for m, e in zip(x, d)]]
            ye = [[m - e["mass_correct"]["ci95"][0] for m, e in zip(y, d)],
                  [e["mass_correct"]["ci95"][1] - m for m, e in zip(y, d)]]
            ax.errorbar(x, y, xerr=xe, yerr=ye, fmt=fmt, color=col, ms=4, lw=1.2, capsize=2, label=name)
            for o, xx, yy in zip(labels, x, y):
                ax.annotate(_short(o), (xx, yy), fontsize=6.5, xytext=(3, 3), textcoords="offset points", color=col)
            bx.errorbar([rows[o]["kl_start"]["mean"] for o in labels], [rows[o]["eff_correct"]["mean"] for o in labels],
                        fmt=fmt, color=col, ms=4, lw=1.2, label=name)
        if "grpo" in rows:
            ax.plot([0], [0], "*", color=method_color("grpo"), ms=10, label="GRPO")
            bx.plot([rows["grpo"]["kl_start"]["mean"]], [rows["grpo"]["eff_correct"]["mean"]], "*",
                    color=method_color("grpo"), ms=10, label="GRPO")
        ax.axhline(0, color="k", lw=0.6)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_title(f"K = {k}", fontsize=10)
        ax.set_xlabel("effective correct answers - GRPO")
        bx.set_xlabel("KL(start || end) among correct answers, nats")
        bx.set_xscale("log")
        bx.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log axis overlap
        if i == 0:
            ax.set_ylabel("mass on correct answers - GRPO")
            bx.set_ylabel("effective correct answers")
            ax.legend(fontsize=7)
    cfg = record["config"]
    fig.suptitle(f"Regime bandit frontier: LAD-js's eta against GRPO + beta KL(pi_old || pi) (k3), {cfg['rollouts']} "
                 f"rollouts, {len(record['seeds'])} paired seeds; top: paired differences to GRPO (95% bootstrap CIs)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_record(record: dict, path: str | Path) -> Path:
    """The figure a record calls for: the frontier when it holds PPO-penalty runs, else the K sweep
    (plus, when the record has the tied-group control, ``<stem>_tied<suffix>`` beside it)."""
    path = Path(path)
    if any(parse_method(o).objective == "ppo_penalty" for o in record["config"]["objectives"]):
        return plot_frontier(record, path)
    plot_regime(record, path)
    if any(c["name"] == "tied-group term off" for c in record.get("controls", [])):
        plot_tied(record, path.with_name(f"{path.stem}_tied{path.suffix}"))
    return path
