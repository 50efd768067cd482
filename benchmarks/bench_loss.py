"""Loss alone: forward + backward of every objective vs GRPO on a (B, T) = (64, 1024) batch."""

from __future__ import annotations

import torch

from benchmarks.common import interleaved
from lad_ref.losses import get_loss


def make_batch(b: int = 64, t: int = 1024, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    old = (-torch.rand(b, t, generator=g) * 4).to(device)
    lp = (old + 0.1 * torch.randn(b, t, generator=g).to(device)).requires_grad_(True)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous().to(device)
    mask = torch.ones(b, t, dtype=torch.bool, device=device)
    mask[:, t // 2 :] = torch.rand(b, t - t // 2, generator=g).to(device) > 0.3
    extras = {
        "entadv": {"entropy": torch.rand(b, t, generator=g).to(device)},
        "flowrl": {"log_z": torch.zeros(b, device=device, requires_grad=True), "ref_log_prob": old - 0.1},
        "clip_cov": {"generator": torch.Generator().manual_seed(0)},
    }
    return old, lp, adv, mask, extras


def run(b: int = 64, t: int = 1024, repeats: int = 15) -> dict:
    old, lp, adv, mask, extras = make_batch(b, t)

    def step(name: str, **kw):
        def fn():
            lp.grad = None
            loss, _ = get_loss(name)(old, lp, adv, mask, "token-mean", **extras.get(name, {}), **kw)
            loss.backward()

        return fn

    cands = {"grpo": step("grpo")}
    for div in ("js", "kl", "rkl", "jf", "tv", "hd"):
        cands[f"lad({div})"] = step("lad", divergence=div)
    cands["lad(js,sequence)"] = step("lad", divergence="js", level="sequence")
    for name in ("entadv", "kl_cov", "clip_cov", "flowrl"):
        cands[name] = step(name)
    timings = interleaved(cands, repeats=repeats, warmup=3)
    base = timings["grpo"]["median_s"]
    return {
        "shape": [b, t],
        "timings": timings,
        "ratio_to_grpo": {k: v["median_s"] / base for k, v in timings.items()},
        "target_lad_over_grpo": 1.25,
    }
