"""The compact LLM trainer: config, tiny preset, tasks, SFT warm start, rollouts, RL loop, evaluation.

Modules, in the order a run uses them:

* ``config``     dataclasses, YAML + command-line overrides, validation before any work
* ``tasks``      the synthetic digit-sum task, math / code datasets from local files
* ``model``      the ``tiny`` preset (Qwen2/Llama ~1M params, char tokenizer), loading, LoRA, log Z head
* ``sft``        supervised warm start on sampled solutions, cached by config hash
* ``rollout``    HF generate / vLLM sampling, pi_old log-probs and their recomputation
* ``train``      the RL loop (``python -m lad_ref.llm.train``)
* ``evaluate``   avg@k, pass@k, distinct correct answers, dist-n (``python -m lad_ref.llm.evaluate``)
* ``checkpoint`` run folder, safetensors checkpoints, resume
* ``plots``      reward / accuracy / distinct-answer curves

Nothing here re-implements a loss: the trainer calls ``lad_ref.losses.get_loss(name)``.
"""
