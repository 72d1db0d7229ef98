"""`rlhf run`: the line it ends with says which policy the run kept, and when the labels taught it nothing; its
switch for exploring until the reward model is trusted."""

from worker.cli import build_parser, run_config_from_args, run_summary
from worker.config import PPOConfig, RunConfig
from worker.loop import run


def tiny_run(**overrides):
    config = RunConfig(**{
        "env_id": "CartPole-v1",
        "labels": 8,
        "timesteps": 1024,
        "segment_length": 10,
        "segments_per_rollout": 8,
        "pool_rollouts": 2,
        "eval_every": 512,
        "eval_episodes": 2,
        "ppo": PPOConfig(num_envs=4, num_steps=16, update_epochs=1, num_minibatches=1),
        "device": "cpu",
        **overrides,
    })
    return run(config).metrics


def test_a_run_whose_model_was_never_trusted_says_its_policy_did_not_learn_from_the_labels():
    metrics = tiny_run(labels=0, explore_until_trusted=True)  # no labels: nothing to trust
    assert metrics["reward_trusted"] is False and metrics["chosen_policy"] == {}
    line = run_summary(metrics)
    assert "not trusted" in line and "from state-entropy exploration, not from the labels" in line
    line = run_summary({**metrics, "config": {**metrics["config"], "explore_until_trusted": False}})
    assert "learned nothing, not from the labels" in line


def test_a_trusted_run_names_the_policy_it_kept():
    metrics = tiny_run()
    chosen = {"timesteps": 512, "candidates": [{"timesteps": 512, "learned_return": 3.0}] * 2}
    line = run_summary({**metrics, "reward_trusted": True, "chosen_policy": chosen})
    assert line.endswith("kept the policy of step 512 (best of 2 on the learned reward)")
    assert "not trusted" not in line
    assert "not trusted" not in run_summary({**metrics, "true_reward": True, "reward_trusted": False})


def test_rlhf_run_turns_exploring_until_trusted_on_or_off_or_leaves_it_to_the_env():
    def resolved(*options: str) -> bool | None:
        args = build_parser().parse_args(["run", "--env", "MountainCarContinuous-v0", *options])
        return run_config_from_args(args).resolved().explore_until_trusted

    assert resolved() is True  # no tuned settings: on
    assert resolved("--no-explore-until-trusted") is False
    args = build_parser().parse_args(["run", "--explore-until-trusted"])  # CartPole-v1, tuned: off unless asked
    assert run_config_from_args(args).resolved().explore_until_trusted is True
