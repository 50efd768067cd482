"""One colour per method, shared by every figure (bandit CLI, LLM run plots, notebooks)."""

from __future__ import annotations

import zlib

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


GREY = "#999999"
# colours for methods the table above does not name (an objective or divergence registered later)
EXTRA_COLORS: tuple[str, ...] = (
    "#1B9E77", "#D95F02", "#7570B3", "#E7298A", "#66A61E", "#E6AB02", "#A6CEE3", "#FB9A99", "#FDBF6F",
    "#CAB2D6", "#B2DF8A", "#17BECF", "#9467BD", "#C49C94", "#F7B6D2", "#DBDB8D",
)


def method_color(label: str) -> str:
    """Colour of a method label such as ``lad(js)`` or ``grpo`` (lad_ref.methods grammar).

    The labels of :data:`METHOD_COLORS` keep their colour; other labels of the methods it names
    (``lad(js,eta=2)``, ``ppo_penalty(beta=1)``) are grey, as they always were (figures tell such
    variants apart by other means); a method whose objective or divergence the table does not name
    gets a colour of :data:`EXTRA_COLORS` chosen by a hash of its divergence (so ``lad(x)`` and
    ``lad_theory(x)`` match) or else its objective: deterministic, no edit needed. Anything that is
    not a method label is grey.
    """
    if label in METHOD_COLORS:
        return METHOD_COLORS[label]
    from lad_ref.methods import parse_method

    try:
        method = parse_method(label)
    except ValueError:
        return GREY
    if method.family in METHOD_COLORS:  # a variant of a method the table names
        return GREY
    key = method.divergence if method.divergence is not None else method.objective
    return EXTRA_COLORS[zlib.crc32(key.encode()) % len(EXTRA_COLORS)]
