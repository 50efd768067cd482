#!/usr/bin/env bash
# LAD (JS) on DeepSeek-R1-Distill-Qwen-7B with the DeepCoder dataset through verl 0.9.1 -- 8 x 80 GB GPUs
# (2 nodes recommended for the long responses). The reward runs every test in lad_ref's sandbox inside the
# reward workers: Linux, root, and spare CPU cores on the training nodes.
#
#   MODEL=/models/DeepSeek-R1-Distill-Qwen-7B TRAIN=/data/verl/deepcoder_train.parquet \
#   VAL=/data/verl/livecodebench.parquet llm/recipes/verl/run_r1-distill-qwen-7b_deepcoder.sh [overrides]
#
# Same variables as run_qwen2.5-7b_dapo-math.sh (DIVERGENCE, ETA, LEVEL, NGPUS, NNODES, OUT, DRY_RUN=1).
# Values marked GUESS are ours: the paper's LLM hyperparameters were not recovered (llm/recipes/README.md).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../../.." && pwd)"
MODEL="${MODEL:?set MODEL to the local DeepSeek-R1-Distill-Qwen-7B folder}"
TRAIN="${TRAIN:?set TRAIN to the prepared training parquet}"
VAL="${VAL:-$TRAIN}"
DIVERGENCE="${DIVERGENCE:-js}"
ETA="${ETA:-1.0}"                # GUESS (README)
LEVEL="${LEVEL:-token}"          # GUESS
NGPUS="${NGPUS:-8}"
NNODES="${NNODES:-1}"
EXP="${EXP:-r1-distill-qwen-7b_deepcoder_lad-${DIVERGENCE}-eta${ETA}}"
OUT="${OUT:-$REPO/runs/verl/$EXP}"

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
export VERL_USE_EXTERNAL_MODULES="${VERL_USE_EXTERNAL_MODULES:-lad_ref.integrations.verl}"

ARGS=(
  algorithm.adv_estimator=grpo
  algorithm.norm_adv_by_std_in_grpo=True
  algorithm.use_kl_in_reward=False
  data.train_files="$TRAIN"
  data.val_files="$VAL"
  data.prompt_key=prompt
  data.train_batch_size=256                             # GUESS: prompts per RL step (256, as the math recipe, so that K = 16
                                                        # leaves 16 prompts x 8 responses per update)
  data.max_prompt_length=2048                           # GUESS
  data.max_response_length=8192                         # GUESS (DeepCoder itself trained at 16k-32k)
  data.filter_overlong_prompts=True
  data.truncation=error
  actor_rollout_ref.model.path="$MODEL"
  actor_rollout_ref.model.use_remove_padding=True
  actor_rollout_ref.model.enable_gradient_checkpointing=True
  actor_rollout_ref.actor.optim.lr=1e-6                 # GUESS
  actor_rollout_ref.actor.ppo_mini_batch_size=16        # K = ppo_epochs x train_batch_size / ppo_mini_batch_size = 256 / 16 = 16
                                                        # updates per rollout batch. Toy-scale evidence (docs/results.md): LAD
                                                        # differs from GRPO only when the policy moves within a batch (K >= 4 on
                                                        # the bandit, K = 16 on the toy LM); algorithm.filter_groups stays off, as
                                                        # in the toy study (docs/scale.md, "Dynamic sampling").
  actor_rollout_ref.actor.ppo_epochs=1
  actor_rollout_ref.actor.use_dynamic_bsz=True
  actor_rollout_ref.actor.ppo_max_token_len_per_gpu=32768
  actor_rollout_ref.actor.use_kl_loss=False             # GUESS
  actor_rollout_ref.actor.entropy_coeff=0
  actor_rollout_ref.actor.loss_agg_mode=token-mean      # GUESS
  actor_rollout_ref.actor.policy_loss._target_=lad_ref.integrations.verl.LadPolicyLossConfig
  actor_rollout_ref.actor.policy_loss.loss_mode=lad
  +actor_rollout_ref.actor.policy_loss.divergence="$DIVERGENCE"
  +actor_rollout_ref.actor.policy_loss.eta="$ETA"
  +actor_rollout_ref.actor.policy_loss.level="$LEVEL"
  actor_rollout_ref.actor.fsdp_config.param_offload=False
  actor_rollout_ref.actor.fsdp_config.optimizer_offload=False
  actor_rollout_ref.rollout.name=vllm
  actor_rollout_ref.rollout.n=8                         # GUESS
  actor_rollout_ref.rollout.temperature=0.6             # GUESS: DeepSeek's recommended R1-Distill sampling
  actor_rollout_ref.rollout.top_p=0.95                  # GUESS
  actor_rollout_ref.rollout.tensor_model_parallel_size=2
  actor_rollout_ref.rollout.gpu_memory_utilization=0.6
  actor_rollout_ref.rollout.val_kwargs.n=16             # Avg@16 as in the paper (LiveCodeBench, HumanEval+)
  actor_rollout_ref.rollout.val_kwargs.do_sample=True
  actor_rollout_ref.rollout.val_kwargs.temperature=0.6  # GUESS
  actor_rollout_ref.rollout.val_kwargs.top_p=0.95       # GUESS
  reward.custom_reward_function.path="$HERE/reward.py"
  reward.custom_reward_function.name=compute_score_batch
  reward.reward_manager.name=batch                      # whole batches, graded across cores
  reward.num_workers=16                                 # parallel reward workers (sandboxed tests are CPU-bound)
  trainer.project_name=lad_ref
  trainer.experiment_name="$EXP"
  trainer.logger='["console"]'
  trainer.n_gpus_per_node="$NGPUS"
  trainer.nnodes="$NNODES"
  trainer.total_training_steps=300                      # GUESS
  trainer.save_freq=50
  trainer.test_freq=50
  trainer.val_before_train=True
  trainer.default_local_dir="$OUT"
)

if [[ "${DRY_RUN:-0}" == "1" ]]; then
  exec python "$HERE/check_config.py" "${ARGS[@]}" "$@"
fi
exec python -m verl.trainer.main_ppo "${ARGS[@]}" "$@"
