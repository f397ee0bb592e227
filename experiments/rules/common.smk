# Helpers shared by the rule files (no lambdas inside rules).

SCALES = ("smoke", "quick", "paper")

if config["scale"] not in SCALES:
    raise ValueError(f"config scale={config['scale']!r} is not one of {SCALES}")

# Figures implemented so far, as (figure id, output stem). Each figure's issue adds its entry.
FIGURES = []


def get_figure_targets():
    """Every figure (pdf and png) that `rule all` asks for."""
    root = config["results"]
    return [f"{root}/figures/{stem}.{ext}" for _, stem in FIGURES for ext in ("pdf", "png")]
