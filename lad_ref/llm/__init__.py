"""The compact LLM trainer: config, tiny preset, tasks, SFT warm start, rollouts, RL loop, evaluation.

Quick start (CPU, about 3 minutes per run on 2 cores)::

    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective grpo --output-dir runs/toy-grpo
    python -m lad_ref.llm.train --config llm/configs/toy.yaml --objective lad --divergence js --output-dir runs/toy-lad
    python -m lad_ref.llm.evaluate --run runs/toy-lad                 # re-evaluate the last checkpoint
    python -m lad_ref.llm.train --resume runs/toy-lad                 # continue an interrupted run

What a run does: build the ``tiny`` preset (a 0.8M-parameter character-level Qwen2), SFT it on
uniformly sampled correct answers of the toy task (``tasks.DigitSumTask``) for a diverse,
partly correct start, evaluate that start on held-out prompts, run RL with the chosen
objective, evaluate again. The SFT checkpoint is cached under ``sft.cache_dir`` (default
``~/.cache/lad_ref/sft``, or ``$LAD_REF_CACHE/sft``) in a folder named by a hash of the model,
task, SFT settings and seed: a grpo run and a lad run with the same seed start from the
identical policy and only the first one pays for SFT (``run_info.json`` records the path).

The run folder (``--output-dir``; a non-empty folder is refused unless ``--resume`` or
``--overwrite``) holds ``config.yaml`` (resolved), ``metrics.jsonl``, ``checkpoints/step_N``
(safetensors + optimizer/scheduler/RNG state), ``plots/{reward,accuracy,distinct_correct}.png``
and ``results.json`` = {"start": {...}, "final": {...}} with avg_at_k, pass_at_k,
pass_at_{1,4,16}, distinct_correct, solution_coverage, dist_1..dist_4, response_length.

Measured results (the toy study: LAD vs GRPO over paired seeds, per number of updates per rollout
batch) are in ``docs/results.md``, generated from ``paper_figures/toy_study.json``.

Modules, in the order a run uses them:

* ``config``     dataclasses, YAML + command-line overrides, validation before any work
* ``tasks``      the task protocol and registry; one file per task: digit_sum (synthetic), math, code
* ``model``      the ``tiny`` preset (Qwen2/Llama ~1M params, char tokenizer), loading, LoRA, log Z head
* ``sft``        supervised warm start on sampled solutions, cached by config hash
* ``rollout``    the rollout batch, prompt formatting, pi_old log-probs and their recomputation
* ``backends``   the rollout backend protocol and registry; hf / hf-static / hf-continuous, vllm
* ``train``      the RL loop (``python -m lad_ref.llm.train``)
* ``evaluate``   avg@k, pass@k, distinct correct answers, dist-n (``python -m lad_ref.llm.evaluate``)
* ``checkpoint`` run folder, safetensors checkpoints, resume
* ``plots``      reward / accuracy / distinct-answer curves

GPU: ``model.dtype: bfloat16``, ``model.gradient_checkpointing``, ``model.lora.enabled`` and
``rollout.backend: vllm`` (colocated engine, weights pushed after every update) are real code
exercised only on GPU machines; ``llm/configs/toy-gpu.yaml`` and the two paper configs use them.
Nothing here re-implements a loss: the trainer calls ``lad_ref.losses.get_loss(name)``.
"""
