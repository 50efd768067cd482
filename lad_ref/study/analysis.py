"""The study's analysis: each finished run's metrics, the paired differences per comparison (mean, 95%
bootstrap CI over seeds, wins), the per-method summaries, the pass@k curves and brake traces, and the
carry-over of results whose runs are not on this machine. Reads the run folders only.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lad_ref.llm.config import ConfigError
from lad_ref.metrics import bootstrap_mean_ci
from lad_ref.study.plan import (
    MAIN_VARIANT,
    GroupConfig,
    RunSpec,
    StudyConfig,
    all_variants,
    parse_comparison,
    plan,
)
from lad_ref.study.report import MIN_SEEDS, diff_cell
from lad_ref.study.runs import is_finished, read_results, recorded_wall_s

# fewer seeds than this: the forest plot draws the CI grey whatever it is (2-4 seeds give only a handful of resamples);
# the same rule gives the report tables' verdicts
MIN_SEEDS_FOR_CI = MIN_SEEDS
# metrics read from each run's results.json ("final"); pass_at_<k> for the largest k is added per study
RESULT_METRICS = (
    "avg_at_k", "pass_at_1", "pass_at_16", "distinct_correct", "correct_answer_entropy", "solution_coverage",
    "policy_entropy", "dist_3",
)
HIGHER_IS_MORE_DIVERSE = ("distinct_correct", "correct_answer_entropy", "solution_coverage", "policy_entropy")


def paired_summary(a: list[float], b: list[float], resamples: int, seed: int) -> dict:
    """mean, 95% CI and wins of the per-seed differences a_i - b_i (NaN pairs dropped)."""
    d = [x - y for x, y in zip(a, b) if x == x and y == y]
    if not d:
        return {"mean": None, "ci95": None, "wins": 0, "n": 0}
    # one seed has no interval (the forest plot and the report tables leave such comparisons out)
    ci = list(bootstrap_mean_ci(torch.tensor(d), n_boot=resamples, seed=seed)) if len(d) >= 2 else None
    return {"mean": float(np.mean(d)), "ci95": ci, "wins": int(sum(x > 0 for x in d)),
            "losses": int(sum(x < 0 for x in d)), "n": len(d), "per_seed": d}


def _read_samples(path: Path) -> list[dict]:
    from lad_ref.llm.files import read_jsonl

    return read_jsonl(path, f"run {str(path.parent)!r}")


def run_metrics(run: Path) -> dict:
    """The metrics of one finished run: final held-out metrics, KL to the start's answers, costs, brake."""
    from lad_ref.llm.checkpoint import read_metrics
    from lad_ref.metrics import correct_answer_kl

    res = read_results(run)
    if res is None:
        raise ConfigError(f"run {str(run)!r} has no results.json; it has not finished.")
    final, start = res["final"], res["start"]
    k = int(final["k"])
    out = {m: final[m] for m in RESULT_METRICS if m in final}
    out[f"pass_at_{k}"] = final["pass_at_k"]
    out["start"] = {**{m: start[m] for m in RESULT_METRICS if m in start}, f"pass_at_{k}": start["pass_at_k"]}
    out["curve"], out["start_curve"] = final.get("pass_at_k_curve"), start.get("pass_at_k_curve")
    fs, ss = run / "final_samples.jsonl", run / "start_samples.jsonl"
    if fs.exists() and ss.exists():
        kls = []
        final_s, start_s = _read_samples(fs), _read_samples(ss)
        if [x.get("uid") for x in final_s] != [x.get("uid") for x in start_s]:
            raise ConfigError(
                f"run {str(run)!r}: final_samples.jsonl ({len(final_s)} prompts) and start_samples.jsonl "
                f"({len(start_s)} prompts) do not list the same prompts; the KL from the start needs both whole "
                "(delete results.json to re-derive them)."
            )
        for f, s in zip(final_s, start_s):
            v = correct_answer_kl(f["responses"], f["correct"], s["responses"], s["correct"])
            if v == v:
                kls.append(v)
        out["correct_answer_kl_from_start"] = sum(kls) / len(kls) if kls else float("nan")
    rows = read_metrics(run)
    steps = [r for r in rows if r.get("step", 0) > 0 and "time/step_s" in r]
    out["rl_seconds"] = sum(r["time/step_s"] for r in steps)
    out["update_seconds_per_step"] = sum(r["time/update_s"] for r in steps) / max(1, len(steps))
    out["brake"] = {
        key: [r.get(key) for r in steps]
        for key in ("lad/weight_flip_frac", "grpo/clipfrac", "brake/log_ratio_q05", "brake/log_ratio_q50",
                    "brake/log_ratio_q95", "brake/log_ratio_abs_max", "brake/last_q05", "brake/last_q95")
        if any(key in r for r in steps)
    }
    # the tied groups (all G rewards equal): their share of the batches and, where the run logged it
    # (logging.tied_grad_share), their share of the objective's gradient norm; means over the RL steps
    for key, name in (("train/tied_groups", "tied_groups"), ("train/grad_share_tied", "grad_share_tied")):
        vals = [r[key] for r in steps if r.get(key) is not None]
        if vals:
            out[name] = float(np.mean(vals))
    return out


PAIRED_METRICS_ORDER = (
    "avg_at_k", "pass_at_1", "pass_at_16", "pass_at_{K}", "distinct_correct", "correct_answer_entropy",
    "correct_answer_kl_from_start", "solution_coverage", "policy_entropy", "dist_3", "update_seconds_per_step",
)


def analyse(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str]) -> dict:
    """toy_study.json's content from the finished runs of the named groups."""
    root = Path(study.output_dir)
    variants = all_variants(groups)
    cache: dict[RunSpec, dict | None] = {}

    def metrics(spec: RunSpec) -> dict | None:
        if spec not in cache:
            run = spec.folder(root)
            cache[spec] = run_metrics(run) if is_finished(run, log=lambda m: print(m, file=sys.stderr)) else None
        return cache[spec]

    out: dict[str, Any] = {"groups": {}, "paired": {}, "methods": {}}
    all_seeds: set[int] = set()
    # A comparison (or method) under one variant may be listed by several groups (the protocol group's
    # `main` runs are the headline's): it is reported once, over the union of those groups' seeds.
    comp_seeds: dict[tuple[str, str], list[int]] = {}
    comp_groups: dict[tuple[str, str], list[str]] = {}
    method_seeds: dict[tuple[str, str], list[int]] = {}
    for name in names:
        g = groups[name]
        gv = list(g.variants or {MAIN_VARIANT: {}})
        done = [s for s in plan(study, groups, [name]) if metrics(s) is not None]
        out["groups"][name] = {
            "methods": g.methods, "seeds": g.seeds, "comparisons": g.comparisons,
            "variants": {v: variants.get(v, {}) for v in gv},
            "runs_finished": len(done), "runs_planned": len(plan(study, groups, [name])),
        }
        for variant in gv:
            for method in g.methods:
                lst = method_seeds.setdefault((method, variant), [])
                lst += [x for x in g.seeds if x not in lst]
            for comp in g.comparisons:
                lst = comp_seeds.setdefault((comp, variant), [])
                lst += [x for x in g.seeds if x not in lst]
                comp_groups.setdefault((comp, variant), []).append(name)

    for (method, variant), seeds in method_seeds.items():
        tag = "" if variant == MAIN_VARIANT else f" [{variant}]"
        rows = {s: metrics(RunSpec(variant, method, s)) for s in sorted(seeds)}
        rows = {s: r for s, r in rows.items() if r is not None}
        if not rows:
            continue
        # numbers every run of the method has (runs of an older code version may lack a newer metric)
        keys = [k for k, v in next(iter(rows.values())).items() if isinstance(v, (int, float))
                and all(isinstance(r.get(k), (int, float)) for r in rows.values())]
        starts = [r["start"] for r in rows.values()]
        out["methods"][method + tag] = {
            "seeds": sorted(rows), "variant": variant,
            "mean": {k: _nanmean([r[k] for r in rows.values()]) for k in keys},
            "per_seed": {str(s): {k: r[k] for k in keys} for s, r in rows.items()},
            "start_mean": {k: _nanmean([s[k] for s in starts]) for k in starts[0]},
            "start_per_seed": {str(s): r["start"] for s, r in rows.items()},
        }

    for (comp, variant), comp_seed_list in comp_seeds.items():
        tag = "" if variant == MAIN_VARIANT else f" [{variant}]"
        a, b = parse_comparison(comp)
        ra = {s: metrics(RunSpec(variant, a, s)) for s in comp_seed_list}
        rb = {s: metrics(RunSpec(variant, b, s)) for s in comp_seed_list}
        seeds = sorted(s for s in comp_seed_list if ra[s] is not None and rb[s] is not None)
        if not seeds:
            continue
        all_seeds.update(seeds)
        first = ra[seeds[0]]
        k = max(int(m.split("_")[-1]) for m in first if re.fullmatch(r"pass_at_\d+", m))  # n: pass@n, "any correct"
        names_ = [m.replace("{K}", str(k)) for m in PAIRED_METRICS_ORDER]
        entry = {"groups": comp_groups[(comp, variant)], "variant": variant, "seeds": seeds}
        for m in names_:
            if m in first:
                entry[m] = paired_summary([ra[s][m] for s in seeds], [rb[s][m] for s in seeds],
                                          study.bootstrap_resamples, study.bootstrap_seed)
        if first.get("curve"):
            ca = np.array([ra[s]["curve"] for s in seeds])
            cb = np.array([rb[s]["curve"] for s in seeds])
            entry["pass_at_k_curve_diff"] = {
                "k": list(range(1, ca.shape[1] + 1)), "mean": (ca - cb).mean(0).tolist(),
                "ci95": [list(bootstrap_mean_ci(torch.from_numpy(ca[:, j] - cb[:, j]), n_boot=2000,
                                                seed=study.bootstrap_seed)) for j in range(ca.shape[1])]
                if len(seeds) >= 2 else None,  # one seed: no interval
            }
        out["paired"][comp + tag] = entry
    out["seeds"] = sorted(all_seeds)
    out["compute"] = compute_time(study, groups, names)
    out["curves"] = _curves(study, groups, metrics)
    out["brake"] = _brake(study, groups, metrics)
    return out


def compute_time(study: StudyConfig, groups: dict[str, GroupConfig], names: list[str]) -> dict:
    """What the study cost: per group and for the whole study (each run once, however many groups list it),
    the runs planned, those with a recorded wall time, and the sum of those wall times.

    Each run trains on one thread, ``--jobs`` of them side by side, so the wall time of an invocation that
    runs them all is about the sum / jobs on ``jobs`` idle cores. The recorded times are the runs' own as
    they ran, whatever else shared the machine then.
    """
    root = Path(study.output_dir)

    def summary(specs) -> dict:
        times = [t for t in (recorded_wall_s(s.folder(root)) for s in specs) if t is not None]
        return {"runs_planned": len(specs), "runs_timed": len(times), "sum_wall_s": round(sum(times), 1)}

    by_group = {name: summary(plan(study, groups, [name])) for name in names}
    return {"groups": by_group, "study": summary(plan(study, groups, names)),
            "note": "sum of the per-run wall times (study_time.json); divide by --jobs for an invocation's wall time"}


def carry_over(previous: dict, result: dict) -> dict:
    """Keep a previous JSON's results whose runs are not in this output_dir (same protocol only).

    Run folders are large and stay on the machine that trained them; the JSON is what is committed.
    So a study extended later (a new group run on another machine or day) must not drop the
    comparisons it cannot recompute: an entry of ``previous`` is kept when this analysis has no
    entry under that name, or one over fewer seeds (its runs are partly absent). Kept entries are
    marked ``"carried_over": true``. Nothing is carried when the protocol (base config, overrides,
    bootstrap) differs: those numbers would answer another question.
    """
    if previous.get("protocol") != result.get("protocol"):
        return result
    for section in ("paired", "methods"):
        new, old = result.setdefault(section, {}), previous.get(section) or {}
        for key, entry in old.items():
            if key not in new or len(new[key].get("seeds", [])) < len(entry.get("seeds", [])):
                new[key] = {**entry, "carried_over": True}
    for name, entry in (previous.get("groups") or {}).items():
        g = result.setdefault("groups", {}).get(name)
        if g is not None and g.get("runs_finished", 0) < entry.get("runs_finished", 0):
            result["groups"][name] = {**entry, "carried_over": True}
    for section in ("curves", "brake"):
        if not result.get(section) and previous.get(section):
            result[section] = previous[section]
    result["seeds"] = sorted({*result.get("seeds", []), *previous.get("seeds", [])})
    return result


def _nanmean(values) -> float:
    """Mean of the non-NaN values (NaN: no correct sample, so no answer distribution); NaN if none."""
    v = [x for x in values if x == x]
    return float(np.mean(v)) if v else float("nan")


def _curves(study, groups, metrics) -> dict:
    g = groups.get(study.curve_group)
    if g is None:
        return {}
    out = {}
    for method in study.curve_methods:
        rows = [metrics(RunSpec(MAIN_VARIANT, method, s)) for s in g.seeds]
        rows = [r for r in rows if r is not None and r.get("curve")]
        if rows:
            out[method] = np.mean([r["curve"] for r in rows], 0).tolist()
            out.setdefault("start", np.mean([r["start_curve"] for r in rows], 0).tolist())
    return out


def _brake(study, groups, metrics) -> dict:
    g = groups.get(study.brake_group)
    if g is None:
        return {}
    out = {}
    for variant in study.brake_variants:
        for method in g.methods:
            rows = [metrics(RunSpec(variant, method, s)) for s in g.seeds]
            rows = [r for r in rows if r is not None]
            if rows:
                out[f"{method} [{variant}]"] = {
                    key: [_nanmean(col) for col in zip(*[[np.nan if x is None else x for x in r["brake"][key]]
                                                          for r in rows])]
                    for key in rows[0]["brake"]
                }
                out[f"{method} [{variant}]"]["seeds"] = len(rows)
    return out


def markdown_table(result: dict, metrics: tuple[str, ...] = ("avg_at_k", "pass_at_256", "distinct_correct",
                                                             "correct_answer_entropy", "correct_answer_kl_from_start",
                                                             "policy_entropy")) -> str:
    """The paired differences as a Markdown table: mean [95% CI] (wins/seeds) per comparison and metric.

    ``pass_at_256`` stands for pass@n with n the study's samples per prompt (pass_at_8 in the FAST study).
    """
    ks = [int(m[8:]) for e in result.get("paired", {}).values() for m in e if re.fullmatch(r"pass_at_\d+", m)]
    if ks:
        metrics = tuple(f"pass_at_{max(ks)}" if m == "pass_at_256" else m for m in metrics)
    lines = ["| comparison (seeds) | " + " | ".join(metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for comp, e in result.get("paired", {}).items():
        cells = []
        for m in metrics:
            cells.append(diff_cell(e.get(m), m))
        lines.append(f"| {comp} ({len(e['seeds'])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


