"""The fixed batch and calls of tests/data/loss_values.json (written once from the pre-masking-change losses.py).

``python tests/_masking_fixture.py`` rewrote that file; it is committed and must not be regenerated after
a change to lad_ref/losses.py, since it is the record of what the code computed before (issue 21 item 5).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from lad_ref.losses import AGG_MODES, get_objective

FIXTURE = Path(__file__).resolve().parent / "data" / "loss_values.json"
#: The objectives of the record (those registered before issues 21/24; later ones are not in it).
RECORDED = ("grpo", "entadv", "kl_cov", "clip_cov", "flowrl", "lad_theory", "lad")


def fixed_batch(b: int = 6, t: int = 7) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1234)
    old = -torch.rand(b, t, generator=g) * 3.0
    lp = old + 0.4 * torch.randn(b, t, generator=g)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()
    mask = torch.ones(b, t)
    lengths = torch.tensor([7, 5, 3, 7, 1, 6])[:b]
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).float()
    return {
        "old_log_prob": old, "log_prob": lp, "advantages": adv, "response_mask": mask,
        "entropy": torch.rand(b, t, generator=g) * 2.0,
        "ref_log_prob": old + 0.1 * torch.randn(b, t, generator=g),
        "log_z": 0.3 * torch.randn(b, generator=g),
        "weights": torch.rand(b, generator=g) + 0.5,
    }


def cases():
    """(key, objective name, agg mode, hparams, use_weights) of every recorded call."""
    out = []
    for name in RECORDED:
        hps = [{}]
        if name in ("lad", "lad_theory"):
            hps = [{"divergence": d} for d in ("kl", "rkl", "jf", "tv", "hd", "js")]
            if name == "lad":
                hps += [{"divergence": "js", "level": "sequence"}, {"divergence": "hd", "eta": 0.5}]
        if name == "kl_cov":
            hps = [{"kl_cov_ratio": 0.2}]
        if name == "clip_cov":
            hps = [{"clip_cov_ratio": 0.2, "clip_cov_lb": -5.0, "clip_cov_ub": 5.0}]
        for hp in hps:
            for mode in AGG_MODES:
                for use_w in (False, True):
                    if name == "lad_theory" and use_w:
                        continue
                    key = f"{name}|{json.dumps(hp, sort_keys=True)}|{mode}|w={int(use_w)}"
                    out.append((key, name, mode, hp, use_w))
    return out


def evaluate(name, mode, hp, use_w, batch):
    """loss, d loss / d log_prob (and / d log_z for flowrl) for one case, on copies of ``batch``."""
    spec = get_objective(name)
    lp = batch["log_prob"].clone().requires_grad_(True)
    kwargs = {"hp": spec.make_hparams(hp)}  # the recorded hyperparameters (a dict, the key's), as the loss takes them
    log_z = None
    if "entropy" in spec.needs:
        kwargs["entropy"] = batch["entropy"]
    if "ref_log_prob" in spec.needs:
        kwargs["ref_log_prob"] = batch["ref_log_prob"]
    if "log_z" in spec.needs:
        log_z = batch["log_z"].clone().requires_grad_(True)
        kwargs["log_z"] = log_z
    if "generator" in spec.needs:
        kwargs["generator"] = torch.Generator().manual_seed(7)
    if use_w:
        kwargs["weights"] = batch["weights"]
    loss, _ = spec.loss(batch["old_log_prob"], lp, batch["advantages"], batch["response_mask"], mode, **kwargs)
    inputs = [lp] + ([log_z] if log_z is not None else [])
    grads = torch.autograd.grad(loss, inputs)
    return loss.detach(), grads


def main() -> None:
    batch = fixed_batch()
    record = {}
    for key, name, mode, hp, use_w in cases():
        loss, grads = evaluate(name, mode, hp, use_w, batch)
        record[key] = {"loss": loss.item(), "grads": [g.flatten().tolist() for g in grads]}
    tmp = FIXTURE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=0, sort_keys=True) + "\n")
    tmp.replace(FIXTURE)
    print(f"wrote {len(record)} cases to {FIXTURE}")


if __name__ == "__main__":
    main()
