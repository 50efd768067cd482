"""Adapters that plug lad_ref's losses into distributed RL engines (docs/design.md, "Layers").

* :mod:`lad_ref.integrations.trl`: ``LadGRPOTrainer`` / ``LadGRPOConfig``, a subclass of TRL 1.16.0's
  ``GRPOTrainer`` whose loss is :func:`lad_ref.losses.get_loss` (``pip install -e ".[trl]"``).
* :mod:`lad_ref.integrations.verl`: registers ``lad`` in verl 0.9.1's policy-loss registry, loaded
  automatically through the ``verl.plugins`` entry point (``pip install -e ".[verl]"``).

Neither submodule is imported here: each pulls in a heavy engine, and ``import lad_ref.integrations``
must stay cheap and work without either extra. Import the one you need explicitly.
"""
