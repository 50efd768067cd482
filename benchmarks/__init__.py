"""Speed and cost measurements of lad_ref (``python -m benchmarks``); results in benchmarks/results/."""
