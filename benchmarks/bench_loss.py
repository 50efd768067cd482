"""Loss alone: forward + backward of every objective vs GRPO on a (B, T) = (64, 1024) batch; and the
same with the hidden state -> logits -> log-prob step of a real vocabulary (32k, 152k) in front,
through the trainer's own chunked log-softmax (lad_ref.llm.rollout.token_log_probs).

On a CPU the vocabulary part uses fewer tokens (``vocab_tokens``): 64 x 1024 tokens x 152k logits
is ~10^10 floats, which no 2-core machine computes in a benchmark's time. What it measures is the
ratio: how much of a realistic step the loss is, and whether LAD adds anything to it.
"""

from __future__ import annotations

import torch

from benchmarks.common import interleaved
from lad_ref.divergences import DIVERGENCE_NAMES
from lad_ref.llm.rollout import token_log_probs
from lad_ref.losses import LadHparams, get_loss, get_objective, objective_names


def make_batch(b: int = 64, t: int = 1024, seed: int = 0, device: str = "cpu"):
    """(old, lp, adv, mask, extra) where ``extra(spec)`` builds the extra inputs the objective's spec needs."""
    g = torch.Generator().manual_seed(seed)
    old = (-torch.rand(b, t, generator=g) * 4).to(device)
    lp = (old + 0.1 * torch.randn(b, t, generator=g).to(device)).requires_grad_(True)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous().to(device)
    mask = torch.ones(b, t, dtype=torch.bool, device=device)
    mask[:, t // 2 :] = torch.rand(b, t - t // 2, generator=g).to(device) > 0.3
    inputs = {
        "entropy": torch.rand(b, t, generator=g).to(device),
        "log_z": torch.zeros(b, device=device, requires_grad=True),
        "ref_log_prob": old - 0.1,
        "generator": torch.Generator().manual_seed(0),
    }

    def extra(spec) -> dict:
        return {need: inputs[need] for need in spec.needs}

    return old, lp, adv, mask, extra


def vocab_step(vocab: int, b: int, t: int, hidden: int = 128, repeats: int = 9, seed: int = 0) -> dict:
    """GRPO vs LAD(js): hidden (b*t, hidden) -> lm_head (vocab x hidden) -> chunked float32
    log-softmax at the sampled ids -> loss -> backward into the hidden states and lm_head."""
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(b, t, hidden, generator=g).requires_grad_(True)
    w = (torch.randn(vocab, hidden, generator=g) * hidden**-0.5).requires_grad_(True)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    adv = torch.randn(b, 1, generator=g).expand(b, t).contiguous()
    mask = torch.ones(b, t, dtype=torch.bool)
    with torch.no_grad():
        old = token_log_probs(h @ w.T, ids)["log_prob"] + 0.05 * torch.randn(b, t, generator=g)

    def step(name: str, hp=None):
        def fn():
            h.grad = w.grad = None
            lp = token_log_probs(h @ w.T, ids)["log_prob"]
            loss, _ = get_loss(name)(old, lp, adv, mask, "token-mean", hp=hp)
            loss.backward()

        return fn

    timings = interleaved({"grpo": step("grpo"), "lad(js)": step("lad", LadHparams(divergence="js"))},
                          repeats=repeats, warmup=1)
    return {"vocab": vocab, "shape": [b, t], "hidden": hidden, "timings": timings,
            "lad_over_grpo": timings["lad(js)"]["median_s"] / timings["grpo"]["median_s"]}


def run(b: int = 64, t: int = 1024, repeats: int = 15, vocab_tokens: tuple[int, int] = (4, 128)) -> dict:
    """Every registered objective of scope ``any`` (those with a divergence once per divergence, and LAD
    at the sequence level too), against GRPO."""
    old, lp, adv, mask, extra = make_batch(b, t)

    def step(name: str, **values):
        spec = get_objective(name)
        agg = spec.aggregation("token-mean")
        hp = spec.make_hparams(values)  # built once, outside the timed call

        def fn():
            lp.grad = None
            loss, _ = spec.loss(old, lp, adv, mask, agg, hp=hp, **extra(spec))
            loss.backward()

        return fn

    cands = {}
    for name in objective_names(scope="any"):
        if "divergence" in get_objective(name).hparam_names:
            for div in DIVERGENCE_NAMES:
                cands[f"{name}({div})"] = step(name, divergence=div)
            if "level" in get_objective(name).hparam_names:
                cands[f"{name}(js,sequence)"] = step(name, divergence="js", level="sequence")
        else:
            cands[name] = step(name)
    timings = interleaved(cands, repeats=repeats, warmup=3, number=20)  # a sample = the mean of 20 calls
    base = timings["grpo"]["median_s"]
    vocab = [vocab_step(v, *vocab_tokens) for v in (32_000, 152_064)]  # Llama-2 and Qwen2.5 vocabularies
    return {
        "shape": [b, t],
        "timings": timings,
        "ratio_to_grpo": {k: v["median_s"] / base for k, v in timings.items()},
        "target_lad_over_grpo": 1.25,
        "with_vocab": vocab,
    }
