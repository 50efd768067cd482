"""Tables of the toy study's committed numbers, and the blocks of docs and notebooks that show them.

    python -m lad_ref.study.report --table headline                 # print one table (from toy_study.json)
    python -m lad_ref.study.report --sync README.md notebooks/03_tiny_llm.ipynb   # rewrite the blocks in place
    python -m lad_ref.study.report --check README.md notebooks/*.ipynb            # exit 1 naming each stale block

A block is the text between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->`` in a Markdown file or in a
markdown cell of a notebook; ``--sync`` replaces it with the table NAME built from ``--json``
(``paper_figures/toy_study.json``, written by ``python -m lad_ref.study``), ``--check`` fails when it differs,
so a number in the prose cannot go stale silently. The tables are pure functions of the JSON (dict -> str).

**Verdicts.** A paired difference A - B "holds" when its 95% CI excludes 0 in A's favour over at least
``MIN_SEEDS`` seeds, is "reversed" when it excludes 0 against A, and is otherwise "not distinguishable"; over
fewer than ``MIN_SEEDS`` seeds it is "direction only" whatever its CI: a bootstrap CI over 2-4 seeds has at most
35 distinct resamples, too coarse to test anything (the study's forest
plot greys such CIs for the same reason). "Favour" is higher for the metrics in ``HIGHER_IS_BETTER``; the others
(``REPORT_ONLY``) are reported without a verdict.

**Multiplicity.** Each table that gives verdicts ends with one line: of its N tests (comparisons x metrics with a
verdict), how many survive Holm's correction at 0.05, with each test's p-value from a two-sided paired sign-flip
permutation test of the per-seed differences (``lad_ref.stats``: exact over the 2^n sign patterns; with 4 seeds
no p-value can be below 0.125, with 8 seeds below 0.0078).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from lad_ref.llm.files import write_atomic
from lad_ref.methods import parse_method
from lad_ref.stats import holm, sign_flip_p

MIN_SEEDS = 5  # the study's forest plot uses the same rule (it imports this; this module needs no torch)
# metric -> label; "pass_at_K" stands for pass@n, n = the study's samples per prompt (256; 8 in the FAST study)
LABELS = {
    "avg_at_k": "avg@{K} (= pass@1)", "pass_at_16": "pass@16", "pass_at_K": "pass@{K}",
    "distinct_correct": "distinct correct answers / prompt", "correct_answer_entropy": "correct-answer entropy (nats)",
    "correct_answer_kl_from_start": "KL of the correct answers from the start's", "policy_entropy":
    "per-token policy entropy (nats)", "dist_3": "dist-3 (distinct token trigrams)",
    "update_seconds_per_step": "update time per RL step (s)",
}
HIGHER_IS_BETTER = ("avg_at_k", "pass_at_1", "pass_at_16", "pass_at_K", "distinct_correct", "correct_answer_entropy")
REPORT_ONLY = ("correct_answer_kl_from_start", "policy_entropy", "dist_3")
GROUP_METRICS = ("avg_at_k", "pass_at_K", "distinct_correct", "correct_answer_entropy")
# which paired comparisons (keys of toy_study.json's "paired", main protocol) each group table lists: a test of the
# comparison's two methods as parsed by the method grammar (lad_ref.methods), so that a divergence or objective
# registered later is listed, not dropped by a pattern of names
def _m(label: str):
    return parse_method(label)


def _only(m, objective: str, divergence: str | None = None, allowed: tuple[str, ...] = ()) -> bool:
    """``m`` is ``objective`` (with ``divergence``) and sets nothing else than the values named in ``allowed``."""
    return (m.objective == objective and m.divergence == divergence and not m.options
            and set(m.values) - {"divergence"} <= set(allowed))


def _plain(m, objective: str, divergence: str | None = None) -> bool:
    return _only(m, objective, divergence)


def _is(m, label: str) -> bool:
    return m == _m(label)


_BASELINE_EXCLUDED = ("lad", "lad_theory", "grpo", "ppo_penalty")
GROUPS: dict[str, Callable] = {
    # every divergence, registered now or later: lad(<d>) against GRPO and against lad(tv)
    "divergence": lambda a, b: a.objective == "lad" and set(a.values) == {"divergence"} and not a.options
    and (_plain(b, "grpo") or _plain(b, "lad", "tv")),
    "eta": lambda a, b: _only(a, "lad", "js", ("eta",)) and _plain(b, "grpo"),
    # LAD-js against every other objective that aims at diversity, as registered (entadv, kl_cov, clip_cov, flowrl)
    "baselines": lambda a, b: _plain(a, "lad", "js") and b.objective not in _BASELINE_EXCLUDED and not b.values
    and not b.options,
    "level": lambda a, b: _is(a, "lad(js,level=sequence)") and _plain(b, "lad", "js"),
    # issue 19: LAD's term on tied groups switched off (tied=0), and dynamic sampling (ds=1)
    "control": lambda a, b: (any(_is(a, x) for x in ("lad(js)", "lad(js,tied=0)", "grpo(tied=0)")) and _is(b, "grpo"))
    or (_is(a, "lad(js)") and _is(b, "lad(js,tied=0)")),
    "dynamic": lambda a, b: (_is(a, "lad(js,ds=1)") and _is(b, "grpo(ds=1)")) or (_is(a, "grpo(ds=1)") and _is(b, "grpo"))
    or (_is(a, "lad(js,ds=1)") and _is(b, "lad(js)")),
    # issue 24: GRPO + beta * KL to pi_old beside LAD's eta
    "penalty": lambda a, b: ((_only(a, "lad", "js", ("eta",)) or _penalty_beta(a) is not None) and _plain(b, "grpo"))
    or (_plain(a, "lad", "js") and _penalty_beta(b) is not None),
}


def _penalty_beta(m) -> float | None:
    """beta of a ppo_penalty method that sets beta and nothing else; None for any other method."""
    return float(m.values["beta"]) if m.objective == "ppo_penalty" and set(m.values) == {"beta"} and not m.options else None


def _eta(m) -> float:
    return float(m.values.get("eta", 1.0))


def in_group(comparison: str, *groups: str) -> bool:
    """Whether ``comparison`` ("A - B" of two method labels) belongs to one of ``groups`` (GROUPS)."""
    parts = comparison.split(" - ")
    if len(parts) != 2:
        return False
    try:
        a, b = (parse_method(x) for x in parts)
    except ValueError:  # not two method labels (a variant's " [k4]" key, or an objective no longer registered)
        return False
    return any(GROUPS[g](a, b) for g in groups)


HEADLINE = "lad(js) - grpo"
MARKER = re.compile(r"<!-- report:([a-z_]+) -->(.*?)<!-- /report:\1 -->", re.S)
OPENING = re.compile(r"<!-- report:([a-z_]+) -->")


def verdict(entry: dict, higher_is_better: bool = True) -> str:
    """holds / reversed / not distinguishable for one paired summary {"mean", "ci95", "n"} (see the module doc)."""
    if entry and entry.get("mean") is not None and 0 < entry.get("n", 0) < MIN_SEEDS:
        return "direction only"
    if not entry or entry.get("ci95") is None:
        return "not distinguishable"
    lo, hi = entry["ci95"]
    if lo > 0 or hi < 0:
        return "holds" if (lo > 0) == higher_is_better else "reversed"
    return "not distinguishable"


def _k_name(entry: dict) -> str:
    """The key of pass@n (n = the largest k the entry has), e.g. pass_at_256."""
    ks = [int(m[8:]) for m in entry if re.fullmatch(r"pass_at_\d+", m)]
    return f"pass_at_{max(ks)}" if ks else "pass_at_K"


def _key(metric: str, entry: dict) -> str:
    return _k_name(entry) if metric == "pass_at_K" else metric


def _label(metric: str, entry: dict) -> str:
    return LABELS.get(metric, metric).replace("{K}", _k_name(entry)[8:])


def _num(x: float, metric: str, signed: bool = True) -> str:
    digits = 2 if metric in ("distinct_correct", "update_seconds_per_step") else 3
    return f"{x:{'+' if signed else ''}.{digits}f}"


def diff_cell(e: dict | None, metric: str) -> str:
    """'+0.016 [+0.002, +0.031], 7/8' (mean [95% CI], seeds on which A > B / seeds)."""
    if not e or e.get("mean") is None:
        return "—"
    if e.get("ci95") is None:  # one seed: no interval
        return f"{_num(e['mean'], metric)} (1 seed, no CI)"
    lo, hi = e["ci95"]
    return f"{_num(e['mean'], metric)} [{_num(lo, metric)}, {_num(hi, metric)}], {e['wins']}/{e['n']}"


def multiplicity_line(tests: list[dict | None], alpha: float = 0.05) -> str:
    """'Multiplicity: K of N tests survive Holm at 0.05 ...' for one table's family of paired summaries.

    Each test is a summary with ``per_seed`` differences; its p-value is :func:`lad_ref.stats.sign_flip_p`, and the
    family's p-values are Holm-adjusted together (:func:`lad_ref.stats.holm`). Summaries without per-seed values
    are left out and counted.
    """
    usable = [t for t in tests if t and t.get("per_seed") and len(t["per_seed"]) >= 2]
    if not usable:
        return "Multiplicity: no per-seed differences to test."
    adjusted = holm([sign_flip_p(t["per_seed"]) for t in usable])
    survive = sum(a <= alpha for a in adjusted)
    ci_excl = sum(verdict(t) in ("holds", "reversed") for t in usable)
    fewest = min(len(t["per_seed"]) for t in usable)
    text = (f"Multiplicity: {survive} of {len(usable)} tests (comparisons × metrics) survive Holm's correction at "
            f"{alpha:g} (two-sided paired sign-flip permutation p-values, `lad_ref.stats`); {ci_excl} of the "
            f"{len(usable)} CIs exclude 0 over ≥ {MIN_SEEDS} seeds.")
    floor = 2 / 2 ** fewest  # the smallest two-sided sign-flip p-value over n seeds (all signs agree)
    if floor > alpha / len(usable):
        text += (f" With {fewest} seeds no p-value can be below {floor:.3g}, so a family of {len(usable)} cannot "
                 f"reach Holm's first threshold {alpha / len(usable):.2g}: read the CIs as per-comparison evidence.")
    left = len(tests) - len(usable)
    return text + (f" {left} summaries without per-seed values are left out." if left else "")


def _main_paired(result: dict) -> dict:
    return {k: v for k, v in (result.get("paired") or {}).items() if v.get("variant", "main") == "main"}


def _absent(what: str, group: str) -> str:
    return (f"*No {what} in this toy_study.json yet (`make study GROUP={group}` runs them, then "
            f"`python -m lad_ref.study.report --sync FILE`).*")


def headline_table(result: dict) -> str:
    """LAD(js) - GRPO per metric: mean [95% CI], wins/n, which direction is better, verdict."""
    e = _main_paired(result).get(HEADLINE)
    if not e:
        return _absent(f"`{HEADLINE}` comparison", "headline")
    lines = [f"| metric | LAD − GRPO, mean [95% CI], LAD wins/seeds | better | verdict ({len(e['seeds'])} paired seeds) |",
             "|---|---|---|---|"]
    tests = []
    for m in ("avg_at_k", "pass_at_16", "pass_at_K", "distinct_correct", "correct_answer_entropy", *REPORT_ONLY):
        key = _key(m, e)
        if key not in e:
            continue
        up = m in HIGHER_IS_BETTER
        if up:
            tests.append(e[key])
        lines.append(f"| {_label(m, e)} | {diff_cell(e[key], m)} | {'higher' if up else '— (reported)'} | "
                     f"{verdict(e[key]) if up else '—'} |")
    return "\n".join(lines) + "\n\n" + multiplicity_line(tests)


def comparisons_table(result: dict, group: str) -> str:
    """One row per comparison of ``group`` (GROUPS), one column per metric of GROUP_METRICS."""
    rows = {c: e for c, e in _main_paired(result).items() if in_group(c, group)}
    if not rows:
        return _absent(f"{group} comparisons", group)
    if group == "eta":
        rows = dict(sorted(rows.items(), key=lambda kv: _eta(parse_method(kv[0].split(" - ")[0]))))
    first = next(iter(rows.values()))
    head = [_label(m, first) for m in GROUP_METRICS]
    lines = ["| A − B (seeds) | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    tests = []
    for c, e in rows.items():
        cells = []
        for m in GROUP_METRICS:
            v = e.get(_key(m, e))
            tests.append(v)
            word = verdict(v) if v else ""
            cells.append(diff_cell(v, m) + (f" **{word}**" if word in ("holds", "reversed") else ""))
        lines.append(f"| {c} ({len(e['seeds'])}) | " + " | ".join(cells) + " |")
    fewest = min(len(e["seeds"]) for e in rows.values())
    note = (f"Cells: mean [95% CI], seeds A wins / seeds; **holds** / **reversed** where the CI excludes 0 over "
            f">= {MIN_SEEDS} seeds, else not distinguishable.")
    if fewest < MIN_SEEDS:
        note += f" Rows with fewer than {MIN_SEEDS} seeds give a direction (wins), not a test."
    return "\n".join(lines) + "\n\n" + note + " " + multiplicity_line(tests)


def cost_table(result: dict) -> str:
    """Update time per RL step (pi_old log-probs + the epochs of minibatch steps), paired A - B."""
    methods = result.get("methods") or {}
    rows = {c: e for c, e in _main_paired(result).items()
            if in_group(c, "divergence", "baselines", "level") and not c.endswith("lad(tv)")
            and "update_seconds_per_step" in e}
    if not rows:
        return _absent("update times", "headline")
    lines = ["| A − B (seeds) | A − B, s per step, mean [95% CI], A slower/seeds | B's mean (s) | relative | verdict |",
             "|---|---|---|---|---|"]
    for c, e in rows.items():
        v, b = e["update_seconds_per_step"], methods.get(c.split(" - ")[1]) or {}
        per_seed = b.get("per_seed") or {}  # B's own time over the comparison's seeds where the JSON has them
        base = (_mean([per_seed[str(s)].get("update_seconds_per_step") for s in e["seeds"] if str(s) in per_seed])
                if per_seed else b.get("mean", {}).get("update_seconds_per_step"))
        word = {"holds": "A slower", "reversed": "A faster"}.get(verdict(v), verdict(v))
        rel = f"{v['mean'] / base:+.0%}" if base else "—"
        lines.append(f"| {c} ({len(e['seeds'])}) | {diff_cell(v, 'update_seconds_per_step')} | "
                     f"{_num(base, 'update_seconds_per_step', False) if base else '—'} | {rel} | {word} |")
    return "\n".join(lines) + ("\n\nOne thread per run, two or more runs side by side on a shared CPU whose load "
                               "varied between groups; a policy that writes shorter answers also updates faster. So a "
                               "difference is not the loss's cost alone (`benchmarks/` times the losses on equal "
                               "tensors).")


def _mean(xs) -> float:
    xs = [x for x in xs if x is not None and x == x]
    return sum(xs) / len(xs) if xs else float("nan")


def protocol_table(result: dict) -> str:
    """Per protocol variant of the `protocol` group (updates per rollout batch): how much LAD's mechanism engages
    (per-step brake statistics, averaged over steps; each step's value is the mean over the seeds) and LAD - GRPO."""
    brake, paired = result.get("brake") or {}, result.get("paired") or {}
    group = (result.get("groups") or {}).get("protocol") or {}
    if not brake or not group:
        return _absent("protocol runs", "protocol")
    lines = ["| protocol (variant) | LAD: weight-flip % of tokens, mean (max) over steps | LAD: log r 5–95%, all / last "
             "minibatch | GRPO: clip %, log r 5–95% | LAD − GRPO: avg@k | LAD − GRPO: distinct correct answers |",
             "|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(k.split(" [")[1].rstrip("]") for k in brake if " [" in k):
        lad = next((b for k, b in brake.items() if k.endswith(f"[{variant}]") and "lad/weight_flip_frac" in b), {})
        grpo = next((b for k, b in brake.items() if k.endswith(f"[{variant}]") and "grpo/clipfrac" in b), {})
        cells = ["—"] * 3
        if lad:
            flip = [x for x in lad["lad/weight_flip_frac"] if x is not None]
            cells[0] = f"{100 * _mean(flip):.2f}% ({100 * max(flip, default=float('nan')):.1f}%)"
            cells[1] = (f"{_mean(lad['brake/log_ratio_q05']):+.3f}…{_mean(lad['brake/log_ratio_q95']):+.3f} / "
                        f"{_mean(lad['brake/last_q05']):+.3f}…{_mean(lad['brake/last_q95']):+.3f}")
        if grpo:
            cells[2] = (f"{100 * _mean(grpo['grpo/clipfrac']):.1f}%, {_mean(grpo['brake/log_ratio_q05']):+.3f}…"
                        f"{_mean(grpo['brake/log_ratio_q95']):+.3f}")
        e = paired.get(HEADLINE + ("" if variant == "main" else f" [{variant}]")) or {}
        for m in ("avg_at_k", "distinct_correct"):
            word = verdict(e.get(m))
            cells.append(diff_cell(e.get(m), m) + (f" **{word}**" if word in ("holds", "reversed") else ""))
        over = (group.get("variants") or {}).get(variant) or {
            k: v for k, v in ((result.get("protocol") or {}).get("overrides") or {}).items() if k.startswith("optim.")}
        # the updates per batch are set by epochs and mini_batch_size (steps, micro batches, eval: the same in all)
        over = ", ".join(f"{k.split('.')[-1]} {v}" for k, v in over.items()
                         if k in ("optim.epochs", "optim.mini_batch_size"))
        seeds = len(e.get("seeds", [])) or lad.get("seeds", "?")
        lines.append(f"| {variant} ({over}; {seeds} seed{'' if seeds == 1 else 's'}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + (f"\n\nLAD − GRPO: mean [95% CI], seeds LAD wins / seeds; **holds** / **reversed** where the "
                               f"CI excludes 0 over >= {MIN_SEEDS} seeds.")


def methods_table(result: dict) -> str:
    """Absolute means over each method's own seeds, every cell 'start -> final' (the start of the same seeds)."""
    ms = {k: v for k, v in (result.get("methods") or {}).items() if v.get("variant", "main") == "main"}
    if not ms:
        return _absent("method results", "headline")
    ref = max(ms.values(), key=lambda v: len(v["seeds"]))
    cols = ("avg_at_k", "pass_at_K", "distinct_correct", "correct_answer_entropy", "policy_entropy")
    head = [_label(m, ref["mean"]) for m in cols]
    lines = ["| policy (seeds) | " + " | ".join(head) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, v in ms.items():
        start, final = v.get("start_mean") or {}, v["mean"]
        cells = []
        for m in cols:
            a, b = start.get(_key(m, start)), final.get(_key(m, final))
            cells.append("—" if b is None else (f"{_num(a, m, False)} → " if a is not None else "") + _num(b, m, False))
        lines.append(f"| {name} ({len(v['seeds'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + ("\n\nEach cell: the SFT start → the end of RL, means over the row's own seeds (a row "
                               "over seeds 0–3 starts lower than one over more seeds).")


# ======================================================================================
# the regime bandit (paper_figures/bandit_regime.json, loaded beside the study's JSON)
# ======================================================================================

REGIME_HEAD = "lad(js) - grpo"


def _regime(result: dict) -> dict:
    return result.get("_regime") or {}


def _short(e: dict | None, metric: str = "eff_correct") -> str:
    """'+2.86 [+1.94, +3.82], 8/8' with the verdict in bold where it holds or is reversed."""
    if not e or e.get("mean") is None:
        return "—"
    word = verdict(e, e.get("better", "higher") == "higher")
    lo, hi = e["ci95"]
    cell = f"{e['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}], {e['wins']}/{e['n']}"
    return cell + (f" **{word}**" if word in ("holds", "reversed") else "")


def regime_k_table(result: dict) -> str:
    """Regime bandit, GRPO vs LAD-js per K: effective correct answers, KL to the start, mass on correct."""
    reg = _regime(result)
    rows = {(r["K"], r["objective"]): r for r in reg.get("rows") or []}
    paired = (reg.get("paired") or {}).get(REGIME_HEAD) or {}
    if not paired:
        return "*No regime-bandit record beside the study's JSON (`make bandit-regime` writes it).*"
    lines = ["| K | eff. correct answers GRPO | LAD-js | LAD-js − GRPO [95% CI], wins | KL to start GRPO | LAD-js | "
             "mass on correct GRPO / LAD-js |", "|---|---|---|---|---|---|---|"]
    tests = []
    for k in sorted(paired, key=int):
        g, lad = rows.get((int(k), "grpo")), rows.get((int(k), "lad(js)"))
        if not g or not lad:
            continue
        tests.append(_seed_diffs(reg.get("rows"), k, "lad(js)", paired[k].get("eff_correct")))
        lines.append(f"| {k} | {g['eff_correct']['mean']:.2f} | {lad['eff_correct']['mean']:.2f} | "
                     f"{_short(paired[k].get('eff_correct'))} | {g['kl_start']['mean']:.2f} | "
                     f"{lad['kl_start']['mean']:.2f} | {g['mass_correct']['mean']:.3f} / {lad['mass_correct']['mean']:.3f} |")
    start = (reg.get("start") or {}).get("eff_correct")
    note = (f"{len(reg.get('seeds') or [])} paired seeds; the start's effective number of correct answers is "
            f"{start['mean']:.2f} (same seeds)." if isinstance(start, dict) and "mean" in start else "")
    return "\n".join(lines) + "\n\n" + note + " " + multiplicity_line(tests)


def regime_divergence_table(result: dict) -> str:
    """Regime bandit: effective correct answers per K and divergence, (+) / (−) / (≈) against GRPO."""
    reg = _regime(result)
    objs = [o for o in (reg.get("config") or {}).get("objectives", [])
            if (m := _method_or_none(o)) is not None and m.objective == "lad"]
    rows = {(r["K"], r["objective"]): r for r in reg.get("rows") or []}
    paired = reg.get("paired") or {}
    ks = sorted({r["K"] for r in reg.get("rows") or []})
    if not objs or not ks:
        return "*No regime-bandit record beside the study's JSON (`make bandit-regime` writes it).*"
    lines = ["| K | grpo | " + " | ".join(objs) + " |", "|---" * (len(objs) + 2) + "|"]
    tests = []
    for k in ks:
        cells = [f"{rows[(k, 'grpo')]['eff_correct']['mean']:.2f}" if (k, "grpo") in rows else "—"]
        for o in objs:
            r, e = rows.get((k, o)), ((paired.get(f"{o} - grpo") or {}).get(str(k)) or {}).get("eff_correct")
            tests.append(_seed_diffs(reg.get("rows"), k, o, e))
            sign = "≈" if verdict(e or {}) not in ("holds", "reversed") else ("+" if e["mean"] > 0 else "−")
            cells.append(f"{r['eff_correct']['mean']:.2f} ({sign})" if r else "—")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return ("\n".join(lines) + "\n\nEffective correct answers at the end; (+) / (−): the paired 95% CI of the difference "
            "to GRPO lies above / below 0, (≈): it contains 0. " + multiplicity_line(tests))


def _seed_diffs(rows: list[dict], k, a: str, summary: dict | None, b: str = "grpo",
                metric: str = "eff_correct") -> dict | None:
    """The paired ``summary`` of one K with its per-seed differences a_s - b_s from a regime record's rows (the
    record stores per-seed values per row, not per comparison), for the Holm line."""
    by = {(r["K"], r["objective"]): r for r in rows or []}
    ra, rb = by.get((int(k), a)), by.get((int(k), b))
    if not ra or not rb or not summary:
        return None
    return {**summary, "per_seed": [x - y for x, y in zip(ra[metric]["per_seed"], rb[metric]["per_seed"])]}


def _control(reg: dict, name: str) -> dict:
    return next((c for c in reg.get("controls") or [] if c.get("name") == name), {})


def regime_control_table(result: dict) -> str:
    """Regime bandit: LAD-js − GRPO per K with LAD's tied-group term on (main) and off, and with dynamic sampling."""
    reg = _regime(result)
    main = (reg.get("paired") or {}).get(REGIME_HEAD) or {}
    off = ((_control(reg, "tied-group term off").get("paired") or {}).get(REGIME_HEAD)) or {}
    ds = _control(reg, "dynamic sampling")
    ds_pair = ((ds.get("paired") or {}).get(REGIME_HEAD)) or {}
    if not main or not off:
        return "*No tied-group control in the regime-bandit record (`make bandit-regime` runs it).*"
    lines = ["| K | LAD-js − GRPO | LAD-js without its tied-group term − GRPO | with dynamic sampling: LAD-js − GRPO |",
             "|---|---|---|---|"]
    tests = []
    for k in sorted(main, key=int):
        cells = [main.get(k, {}).get("eff_correct"), (off.get(k) or {}).get("eff_correct"),
                 (ds_pair.get(k) or {}).get("eff_correct")]
        tests += [_seed_diffs(src, k, "lad(js)", c) for src, c in zip(
            (reg.get("rows"), _control(reg, "tied-group term off").get("rows"), ds.get("rows")), cells) if c]
        lines.append(f"| {k} | " + " | ".join(_short(c) for c in cells) + " |")
    return ("\n".join(lines) + "\n\nEffective correct answers, paired differences over "
            f"{len(reg.get('seeds') or [])} seeds: mean [95% CI], seeds the first wins. The tied-group term off: LAD's loss "
            "on groups whose G rewards are all equal multiplied by 0, the rows kept in the normaliser (GRPO's numbers "
            "are bit-identical with and without it). Dynamic sampling: tied groups dropped and the batch refilled "
            "with untied ones, for both methods. " + multiplicity_line(tests))


def _cell2(e: dict | None, digits: int) -> str:
    if not e or e.get("mean") is None or not e.get("ci95") or e["ci95"][0] is None:
        return "—"
    lo, hi = e["ci95"]
    excl = lo > 0 or hi < 0
    cell = f"{e['mean']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return f"**{cell}**" if excl and e.get("n", 0) >= MIN_SEEDS else cell


def regime_frontier_table(result: dict) -> str:
    """Regime bandit frontier: each LAD eta / PPO-penalty beta point minus GRPO (effective correct answers, mass on
    correct), per K, and LAD minus the penalty curve read at LAD's own KL from the start (matched KL)."""
    fr = result.get("_frontier") or {}
    paired, matched = fr.get("paired") or {}, fr.get("matched_kl") or {}
    if not paired:
        return "*No frontier record beside the study's JSON (`make bandit-frontier` writes it).*"
    ks = sorted({k for per_k in paired.values() for k in per_k}, key=int)
    lines = ["| point | K | eff. correct − GRPO | mass on correct − GRPO | LAD − penalty at matched KL: eff. correct | "
             "mass on correct |", "|---|---|---|---|---|---|"]
    tests = []
    for comp, per_k in paired.items():
        point = comp.split(" - ")[0]
        for k in ks:
            e = per_k.get(k) or {}
            m = (matched.get(k) or {}).get(point) or {}
            tests += [e.get("eff_correct"), e.get("mass_correct")]
            mk = (f"{_cell2(m.get('eff_correct'), 2)} ({m.get('n_matched', 0)}/{m.get('of', 0)} seeds)"
                  if m.get("n_matched") else ("—" if getattr(_method_or_none(point), "objective", None) == "ppo_penalty"
                                             else "outside the penalty's range"))
            lines.append(f"| {point} | {k} | {_cell2(e.get('eff_correct'), 2)} | {_cell2(e.get('mass_correct'), 4)} | "
                         f"{mk} | {_cell2(m.get('mass_correct'), 4) if m.get('n_matched') else '—'} |")
    sel = fr.get("beta_selection") or {}
    note = (f"{len(fr.get('seeds') or [])} paired seeds; mean [95% CI], bold where the CI excludes 0. The beta grid "
            f"{{{', '.join(map(str, sel.get('chosen') or []))}}} was chosen on seeds "
            f"{', '.join(map(str, sel.get('seeds') or []))} at K = {', '.join(map(str, sel.get('K') or []))} "
            "(bandit/frontier_select.yaml). Matched KL: the penalty runs of the same seed, interpolated at the LAD "
            "run's KL from the start among correct answers; only seeds inside the penalty curve's range count.")
    return "\n".join(lines) + "\n\n" + note


def variant_updates(result: dict, variant: str) -> int | None:
    """K = epochs x minibatches per rollout batch of a protocol variant of the study (``main`` = the protocol)."""
    proto = (result.get("protocol") or {}).get("overrides") or {}
    over = (((result.get("groups") or {}).get("protocol") or {}).get("variants") or {}).get(variant) or {}
    o = {"rollout.prompts_per_step": 16, "rollout.group_size": 8, **proto, **over}  # toy.yaml's rollout shape
    try:
        n = int(o["rollout.prompts_per_step"]) * int(o["rollout.group_size"])
        return int(o["optim.epochs"]) * -(-n // int(o["optim.mini_batch_size"]))
    except (KeyError, TypeError, ValueError):
        return None


def _toy_k(result: dict) -> dict[int, str]:
    """K -> the key suffix of the protocol group's paired entries ('' for the main protocol)."""
    variants = ((result.get("groups") or {}).get("protocol") or {}).get("variants") or {"main": {}}
    return {k: ("" if v == "main" else f" [{v}]") for v in variants if (k := variant_updates(result, v))}


def k_sweep_table(result: dict) -> str:
    """README summary: LAD-js - GRPO per K on the regime bandit (effective correct answers) and the toy LM
    (distinct correct answers, avg@k), each with its 95% CI and seeds."""
    reg = (_regime(result).get("paired") or {}).get(REGIME_HEAD) or {}
    paired, toy = result.get("paired") or {}, _toy_k(result)
    ks = sorted({int(k) for k in reg} | set(toy))
    if not ks:
        return _absent("K sweep", "protocol")
    lines = ["| K | regime bandit: effective correct answers | toy LM: distinct correct answers / prompt | toy LM: "
             "avg@k (accuracy) |", "|---|---|---|---|"]
    tests = []
    for k in ks:
        b = (reg.get(str(k)) or {}).get("eff_correct")
        t = paired.get(HEADLINE + toy[k]) if k in toy else None
        cells = [_short(b) + (f" ({b['n']} seeds)" if b else "")]
        for m in ("distinct_correct", "avg_at_k"):
            e = (t or {}).get(m)
            if e:
                tests.append(e)
            word = verdict(e) if e else ""
            cells.append("—" if not e else diff_cell(e, m) + (f" **{word}**" if word in ("holds", "reversed") else
                                                             f" ({word})" if word == "direction only" else ""))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return ("\n".join(lines) + "\n\nLAD-js − GRPO, mean [95% CI], seeds LAD wins / seeds; **holds** / **reversed**: the CI "
            f"excludes 0 over ≥ {MIN_SEEDS} seeds. The toy LM columns — " + multiplicity_line(tests))


def mechanism_table(result: dict) -> str:
    """README summary: what carries LAD's effect. LAD-js - GRPO as is, with LAD's loss on tied groups x 0 (rows kept
    in the normaliser), and with dynamic sampling (tied groups dropped and refilled) for both methods."""
    reg = _regime(result)
    main = (reg.get("paired") or {}).get(REGIME_HEAD) or {}
    off = (_control(reg, "tied-group term off").get("paired") or {}).get(REGIME_HEAD) or {}
    ds = (_control(reg, "dynamic sampling").get("paired") or {}).get(REGIME_HEAD) or {}
    share = {r["K"]: r.get("tied_grad_share") for r in reg.get("rows") or [] if r["objective"] == "lad(js)"}
    paired = _main_paired(result)
    lines = ["| testbed (K) | LAD-js − GRPO | LAD-js without its tied-group term − GRPO | both with dynamic sampling: "
             "LAD-js − GRPO | tied groups' share of LAD's gradient norm |", "|---|---|---|---|---|"]
    for k in ("4", "16", "64"):
        if k in main:
            sh = share.get(int(k))
            lines.append(f"| regime bandit, effective correct answers (K = {k}) | {_short(main[k].get('eff_correct'))} | "
                         f"{_short((off.get(k) or {}).get('eff_correct'))} | {_short((ds.get(k) or {}).get('eff_correct'))} | "
                         f"{'—' if not sh else format(sh['mean'], '.2f')} |")
    k_main = variant_updates(result, "main")
    cells = [paired.get(c, {}).get("distinct_correct") for c in
             (HEADLINE, "lad(js,tied=0) - grpo", "lad(js,ds=1) - grpo(ds=1)")]
    sh = (((result.get("methods") or {}).get("lad(js,gs=1)") or {}).get("mean") or {}).get("grad_share_tied")
    lines.append(f"| toy LM, distinct correct answers / prompt (K = {k_main}) | " +
                 " | ".join("—" if not c else diff_cell(c, "distinct_correct") for c in cells) +
                 f" | {'—' if sh is None else format(sh, '.2f')} |")
    return "\n".join(lines) + ("\n\nPaired over seeds: mean [95% CI], seeds the first wins. Share: ‖g_tied‖ / (‖g_tied‖ + "
                               "‖g_rest‖) of LAD-js's gradient, averaged over training.")


def _method_or_none(label: str):
    try:
        return parse_method(label)
    except ValueError:  # a key with a variant's " [k4]", or an objective no longer registered
        return None


def _penalty_points(methods: dict) -> dict[float, dict]:
    """beta -> entry of every ppo_penalty(beta=...) method of the study's "methods" section."""
    out = {}
    for k, e in methods.items():
        m = _method_or_none(k)
        if m is not None and _penalty_beta(m) is not None:
            out[_penalty_beta(m)] = e
    return out


def _interp(x: float, xs: list[float], ys: list[float]) -> float | None:
    """Piecewise-linear y at x on the curve (xs, ys) sorted by xs; None outside its range."""
    pts = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if x0 <= x <= x1:
            return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return None


def _boot_ci(d: list[float], n_boot: int = 10_000, seed: int = 0) -> list[float]:
    """95% percentile bootstrap CI of the mean (seeds resampled), pure Python (this module imports no numpy)."""
    import random

    rng = random.Random(seed)
    means = sorted(sum(rng.choice(d) for _ in d) / len(d) for _ in range(n_boot))
    return [means[int(0.025 * n_boot)], means[int(0.975 * n_boot) - 1]]


def toy_matched(result: dict, lad: str = "lad(js)", match_on: str = "correct_answer_kl_from_start",
                compare: tuple[str, ...] = ("distinct_correct", "avg_at_k")) -> dict:
    """Per seed, the PPO-penalty curve over beta (GRPO = beta 0 included) read at the LAD run's own ``match_on``;
    LAD - penalty(matched) per metric: mean, 95% CI, wins, n (seeds inside the curve's range)."""
    ms = result.get("methods") or {}
    curve = {0.0: ms.get("grpo")} | _penalty_points(ms)
    own = (ms.get(lad) or {}).get("per_seed") or {}
    diffs: dict[str, list[float]] = {c: [] for c in compare}
    for seed, row in own.items():
        pts = [(e["per_seed"][seed]) for e in curve.values() if e and seed in (e.get("per_seed") or {})]
        if len(pts) < 3 or row.get(match_on) is None:
            continue
        xs = [p[match_on] for p in pts]
        vals = {c: _interp(row[match_on], xs, [p[c] for p in pts]) for c in compare}
        if any(v is None for v in vals.values()):
            continue
        for c in compare:
            diffs[c].append(row[c] - vals[c])
    out = {}
    for c, d in diffs.items():
        if len(d) >= 2:
            out[c] = {"mean": sum(d) / len(d), "ci95": _boot_ci(d), "wins": sum(x > 0 for x in d), "n": len(d),
                      "per_seed": d}
    return out


def toy_matched_table(result: dict) -> str:
    """The toy LM's LAD points against the PPO-penalty curve: at the same KL from the start, and at the same diversity."""
    ms = result.get("methods") or {}
    lads = [k for k in ms if (m := _method_or_none(k)) is not None and _only(m, "lad", "js", ("eta",))
            and ms[k].get("variant", "main") == "main"]
    if not _penalty_points(ms):
        return _absent("PPO-penalty runs", "penalty")
    lines = ["| LAD point (matched seeds) | at the same KL from the start: distinct correct answers | avg@k | at the same "
             "distinct correct answers: avg@k |", "|---|---|---|---|"]
    tests = []
    for lad in sorted(lads, key=lambda k: _eta(parse_method(k))):
        kl = toy_matched(result, lad)
        div = toy_matched(result, lad, match_on="distinct_correct", compare=("avg_at_k",))
        if not kl and not div:
            lines.append(f"| {lad} (0) | outside the penalty curve's range on every seed | — | — |")
            continue
        n = max((e["n"] for e in (*kl.values(), *div.values())), default=0)
        cells = [kl.get("distinct_correct"), kl.get("avg_at_k"), div.get("avg_at_k")]
        tests += cells
        lines.append(f"| {lad} ({n}) | " + " | ".join(
            "—" if not c else diff_cell(c, m) + (f" **{verdict(c)}**" if verdict(c) in ("holds", "reversed") else "")
            for c, m in zip(cells, ("distinct_correct", "avg_at_k", "avg_at_k"))) + " |")
    return "\n".join(lines) + ("\n\nLAD − penalty, per seed: the penalty's runs over β (GRPO as β = 0) as a piecewise-linear "
                               "curve, read at the LAD run's own KL of the correct answers from the start (or its own "
                               "number of distinct correct answers); only seeds inside the curve's range count. "
                               + multiplicity_line(tests))


def frontier_verdict(result: dict) -> str:
    """README sentence: LAD against the PPO penalty at matched KL (regime bandit) and at K = 16 (toy LM), from the JSONs."""
    fr = result.get("_frontier") or {}
    m = ((fr.get("matched_kl") or {}).get("16") or {}).get("lad(js,eta=1)") or {}
    tied = (((fr.get("paired") or {}).get("ppo_penalty(beta=1,tied_only=true) - grpo") or {}).get("16") or {})
    lad = (((fr.get("paired") or {}).get("lad(js,eta=1) - grpo") or {}).get("16") or {})
    parts = []
    if m.get("n_matched"):
        parts.append(
            f"On the regime bandit at K = 16 the two trace one frontier: read at the same KL from the start, LAD-js "
            f"(η = 1) − penalty is {_cell2(m.get('eff_correct'), 2)} effective correct answers and "
            f"{_cell2(m.get('mass_correct'), 4)} mass on correct ({m['n_matched']} of {m['of']} seeds inside the "
            f"penalty's range), and the penalty on tied groups alone (β = 1) keeps "
            f"{_cell2(tied.get('eff_correct'), 2)} more effective correct answers than GRPO, where LAD keeps "
            f"{_cell2(lad.get('eff_correct'), 2)}.")
    div = toy_matched(result, "lad(js)", match_on="distinct_correct", compare=("avg_at_k",)).get("avg_at_k")
    kl = toy_matched(result, "lad(js)").get("distinct_correct")
    if div or kl:
        parts.append(
            f"On the toy LM at K = {variant_updates(result, 'main')}, read on the penalty's curve over β (GRPO as β = 0) "
            f"seed by seed, LAD-js (η = 1) − penalty is {_cell2(div, 3)} avg@k at the same number of distinct correct "
            f"answers ({(div or {}).get('n', 0)} seeds), and {_cell2(kl, 2)} distinct correct answers at the same KL "
            f"from the start ({(kl or {}).get('n', 0)} seeds).")
    else:
        parts.append("The toy LM's penalty runs are not in toy_study.json yet.")
    return " ".join(parts)


# the demo table: (metric key in run_metrics / toy_study.json, higher is better)
DEMO_ROWS = (("avg_at_k", True), ("pass_at_16", True), ("distinct_correct", True), ("correct_answer_entropy", True),
             ("policy_entropy", None))


def _demo_fmt(x, metric: str, signed: bool = False) -> str:
    if x is None:
        return "—"
    digits = 2 if metric == "distinct_correct" else 3
    return f"{x:{'+' if signed else ''}.{digits}f}"


def demo_table(runs: dict[str, dict], committed: dict | None) -> str:
    """Plain-text table: metric | start | GRPO | LAD-js | LAD - GRPO (this seed) | committed LAD - GRPO."""
    grpo, lad = runs["grpo"], runs["lad(js)"]
    k = str(max((int(m[8:]) for m in lad if m.startswith("pass_at_") and m[8:].isdigit()), default=0) or "k")
    head = ("metric", "start", "GRPO", "LAD-js", "LAD - GRPO", "committed LAD - GRPO [95% CI], wins/seeds: verdict")
    lines = []
    for m, higher in DEMO_ROWS:
        label = LABELS.get(m, m).replace("{K}", k)
        c = (committed or {}).get(m)
        ctext = "—" if not c else diff_cell(c, m) + (f": {verdict(c)}" if higher else " (reported)")
        lines.append((label, _demo_fmt(grpo["start"].get(m), m), _demo_fmt(grpo.get(m), m), _demo_fmt(lad.get(m), m),
                      _demo_fmt(None if lad.get(m) is None or grpo.get(m) is None else lad[m] - grpo[m], m, True), ctext))
    widths = [max(len(r[i]) for r in (head, *lines)) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    rows = [fmt.format(*head), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in lines)]
    return "\n".join(r.rstrip() for r in rows)


def demo_block(result: dict, seed: int = 0) -> str:
    """What ``make demo`` prints for ``seed`` (its runs are the study's), from the JSON's per-seed values."""
    ms = result.get("methods") or {}
    runs = {}
    for m in ("grpo", "lad(js)"):
        e = ms.get(m) or {}
        final, start = (e.get("per_seed") or {}).get(str(seed)), (e.get("start_per_seed") or {}).get(str(seed))
        if final is None or start is None:
            return f"*No per-seed values of seed {seed} in this toy_study.json yet (`make study GROUP=headline`).*"
        runs[m] = {**final, "start": start}
    return "```\n" + demo_table(runs, _main_paired(result).get(HEADLINE)) + "\n```"


def compute_table(result: dict) -> str:
    """The study's cost: per group and whole, the sum of its runs' wall times and that sum over 2 jobs."""
    c = result.get("compute")
    if not c:
        return _absent("run wall times", "headline")
    lines = ["| group | runs planned | runs timed | sum of run wall times (h) | at --jobs 2 on 2 cores (h) |",
             "|---|---|---|---|---|"]
    for name, e in [*c["groups"].items(), ("whole study (each run once)", c["study"])]:
        h = e["sum_wall_s"] / 3600
        lines.append(f"| {name} | {e['runs_planned']} | {e['runs_timed']} | {h:.1f} | {h / 2:.1f} |")
    return "\n".join(lines) + ("\n\nA run's wall time is its own, one thread, as it ran (study_time.json): other jobs "
                               "shared the 2 cores during part of the study, so these are upper bounds for an idle "
                               "machine. Runs not timed are absent from this machine's run folders (their results "
                               "come from the committed JSON).")


TABLES = {
    "headline": headline_table, **{g: (lambda r, g=g: comparisons_table(r, g)) for g in GROUPS},
    "cost": cost_table, "compute": compute_table, "protocol": protocol_table, "methods": methods_table,
    "regime_k": regime_k_table, "regime_divergence": regime_divergence_table, "regime_control": regime_control_table,
    "regime_frontier": regime_frontier_table, "k_sweep": k_sweep_table, "mechanism": mechanism_table,
    "frontier_verdict": frontier_verdict, "demo": demo_block, "toy_matched": toy_matched_table,
}


def table(name: str, result: dict) -> str:
    if name not in TABLES:
        raise ValueError(f"unknown report table {name!r}; valid tables are {', '.join(TABLES)}.")
    return TABLES[name](result)


def sync_text(text: str, result: dict) -> tuple[str, list[str]]:
    """Replace every report block of ``text`` by its fresh table: (new text, names of the blocks that changed)."""
    opened, closed = OPENING.findall(text), MARKER.findall(text)
    if len(opened) != len(closed):
        raise ValueError(f"unclosed report block(s): {len(opened)} opened, {len(closed)} closed with "
                         "<!-- /report:NAME --> (the name must match the opening one).")
    stale = []

    def fresh(m: re.Match) -> str:
        new = f"\n{table(m[1], result)}\n"
        if m[2] != new:
            stale.append(m[1])
        return f"<!-- report:{m[1]} -->{new}<!-- /report:{m[1]} -->"

    return MARKER.sub(fresh, text), stale


def sync_file(path: Path, result: dict, write: bool) -> list[str]:
    """Sync a .md file or an .ipynb's markdown cells (in place when ``write``); returns the stale blocks' names."""
    raw = path.read_text()
    if path.suffix != ".ipynb":
        new, stale = sync_text(raw, result)
    else:
        nb, stale = json.loads(raw), []
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                src, s = sync_text(src, result)
                cell["source"], stale = src.splitlines(keepends=True), stale + s
        new = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # nbformat's own layout
    if write and new != raw:
        write_atomic(path, new)
    return stale


def load_results(study_json: str | Path, regime_json: str | Path | None = None,
                 frontier_json: str | Path | None = None) -> dict:
    """The study's JSON with the regime bandit's records attached under ``_regime`` and ``_frontier`` (default:
    ``bandit_regime.json`` and ``bandit_frontier.json`` beside the study's), which the ``regime_*`` tables read."""
    result = json.loads(Path(study_json).read_text())
    for key, given, name in (("_regime", regime_json, "bandit_regime.json"),
                             ("_frontier", frontier_json, "bandit_frontier.json")):
        path = Path(given) if given else Path(study_json).with_name(name)
        if path.is_file():
            result[key] = json.loads(path.read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lad_ref.study.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default="paper_figures/toy_study.json", help="The study's results (toy_study.json).")
    p.add_argument("--regime", default=None, help="The regime bandit's record (default: bandit_regime.json beside "
                   "--json).")
    p.add_argument("--frontier", default=None, help="The regime bandit's frontier record (default: "
                   "bandit_frontier.json beside --json).")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--sync", nargs="+", type=Path, metavar="FILE", help="Rewrite the report blocks in place.")
    mode.add_argument("--check", nargs="+", type=Path, metavar="FILE", help="Exit 1 if a report block is stale.")
    mode.add_argument("--table", choices=list(TABLES), help="Print one table.")
    args = p.parse_args(argv)
    if not Path(args.json).is_file():
        p.error(f"--json {args.json!r} does not exist; write it with python -m lad_ref.study --json.")
    result = load_results(args.json, args.regime, args.frontier)
    if args.table:
        print(table(args.table, result))
        return 0
    files = args.sync or args.check
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        p.error(f"no such file: {', '.join(missing)}.")
    bad = 0
    for f in files:
        try:
            stale = sync_file(f, result, write=bool(args.sync))
        except ValueError as e:
            print(f"{f}: {e}", file=sys.stderr)
            return 2
        for name in stale:
            bad += 1
            print(f"{f}: report block {name!r} {'rewritten' if args.sync else 'is stale'}"
                  + ("" if args.sync else f"; run python -m lad_ref.study.report --json {args.json} --sync {f}"),
                  file=sys.stderr)
    return 1 if bad and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
