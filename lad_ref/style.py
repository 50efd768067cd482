"""One colour per method, shared by every figure (bandit CLI, LLM run plots, notebooks)."""

from __future__ import annotations

# Okabe-Ito-like palette: LAD divergences in blues/greens, advantage maximisers in warm colours.
METHOD_COLORS: dict[str, str] = {
    "target": "#000000",
    "start": "#7f7f7f",
    "lad(js)": "#0072B2",
    "lad(hd)": "#56B4E9",
    "lad(tv)": "#009E73",
    "lad(kl)": "#6A3D9A",
    "lad(rkl)": "#B15928",
    "lad(jf)": "#CC79A7",
    "lad(neyman)": "#1F9E89",
    "lad": "#0072B2",
    "grpo": "#D55E00",
    "entadv": "#E69F00",
    "kl_cov": "#F0E442",
    "clip_cov": "#A6761D",
    "flowrl": "#BCBD22",
    "ppo_penalty": "#8C564B",
}
# every divergence of lad_ref.divergences (tests/test_style_colors.py checks the registry against this tuple)
for _div in ("js", "hd", "tv", "kl", "rkl", "jf", "neyman"):
    METHOD_COLORS[f"lad_theory({_div})"] = METHOD_COLORS[f"lad({_div})"]


def method_color(label: str) -> str:
    """Colour of a method label such as ``lad(js)`` or ``grpo``; grey for anything unknown."""
    return METHOD_COLORS.get(label, "#999999")
