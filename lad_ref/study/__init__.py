"""The toy diversity study (``python -m lad_ref.study``): paired seeds, every comparison with a bootstrap CI.

* :mod:`lad_ref.study.plan`: the study YAML, the runs it needs, each run's folder and config;
* :mod:`lad_ref.study.runs`: which runs are finished, and :func:`~lad_ref.study.runs.execute`, which trains
  the rest side by side through lad_ref.sweep (resumable through each run folder's lock);
* :mod:`lad_ref.study.analysis`: run metrics, paired summaries, carry-over (reads the run folders only);
* :mod:`lad_ref.study.figures`: the study's figures and the README's headline figures;
* :mod:`lad_ref.study.report`: the tables of docs and notebooks, built from the study's JSON;
* :mod:`lad_ref.study.demo`: ``make demo``'s LLM half (one seed of the headline pair);
* :mod:`lad_ref.study.__main__`: the command line.
"""
