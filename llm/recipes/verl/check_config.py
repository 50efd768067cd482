"""Dry-run a verl recipe's overrides on CPU: compose verl's ppo_trainer config and build the LAD actor config.

    python llm/recipes/verl/check_config.py <the same key=value overrides as verl.trainer.main_ppo>

(the run_*.sh scripts call it with DRY_RUN=1). It checks, without GPUs, Ray or a model:

1. Hydra accepts every override against verl 0.9.1's ``ppo_trainer.yaml`` (misspelt keys, missing ``+``);
2. ``actor_rollout_ref.actor`` instantiates (verl's ``omega_conf_to_dataclass``), with
   ``policy_loss`` a ``LadPolicyLossConfig`` whose divergence / eta / level are valid;
3. ``get_policy_loss_fn(loss_mode)`` finds the loss after a plain ``import verl`` (the plugin), and it
   runs on a small random batch with the configured aggregation;
4. the custom reward function loads, and the data files exist (a warning only: they may live on the
   cluster's shared disk).
"""

from __future__ import annotations

import os
import sys


def main(overrides: list[str]) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import verl
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.config import omega_conf_to_dataclass

    cfg_dir = os.path.join(os.path.dirname(verl.__file__), "trainer", "config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=overrides)
    actor = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    pl = actor.policy_loss
    print(
        f"actor config: {type(actor).__name__}; policy_loss: {type(pl).__name__}({pl.loss_mode=}, "
        f"divergence={pl.get('divergence')!r}, eta={pl.get('eta')!r}, level={pl.get('level')!r}); "
        f"loss_agg_mode={actor.loss_agg_mode!r}"
    )
    fn = get_policy_loss_fn(pl.loss_mode)
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 8, generator=g) - 0.1
    lp = (old + 0.1 * torch.randn(4, 8, generator=g)).requires_grad_(True)
    adv = torch.randn(4, 1, generator=g).expand(4, 8)
    mask = torch.ones(4, 8, dtype=torch.bool)
    loss, metrics = fn(
        old_log_prob=old,
        log_prob=lp,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=actor.loss_agg_mode,
        config=actor,
        rollout_is_weights=None,
    )
    loss.backward()
    print(f"{pl.loss_mode} loss on a random batch: {loss.item():.4f}; metrics: {sorted(metrics)}")
    reward_cfg = cfg.reward.custom_reward_function
    if reward_cfg.path:
        from verl.utils.import_utils import load_extern_object

        load_extern_object(module_path=reward_cfg.path, object_name=reward_cfg.name)
        print(f"reward function: {reward_cfg.path}::{reward_cfg.name} loads")
    for key in ("train_files", "val_files"):
        files = cfg.data[key]
        for f in [files] if isinstance(files, str) else list(files):
            if not os.path.exists(os.path.expanduser(f)):
                print(f"warning: data.{key} file {f!r} does not exist here", file=sys.stderr)
    print("ok")
    return 0


if __name__ == "__main__":
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(__doc__)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
