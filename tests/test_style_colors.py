"""Every registered divergence and LLM objective has its own colour (a new name must not fall back to grey)."""

from lad_ref.divergences import DIVERGENCE_NAMES
from lad_ref.losses import objective_names
from lad_ref.style import METHOD_COLORS, method_color


def test_every_divergence_and_objective_has_a_colour():
    for d in DIVERGENCE_NAMES:
        assert f"lad({d})" in METHOD_COLORS and f"lad_theory({d})" in METHOD_COLORS, d
    for name in objective_names(scope="any"):
        assert name in METHOD_COLORS, name
    lad_colours = [METHOD_COLORS[f"lad({d})"] for d in DIVERGENCE_NAMES]
    assert len(set(lad_colours)) == len(lad_colours)
    assert method_color("unknown") == "#999999"
