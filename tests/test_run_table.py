"""bench/run_table.py: the settings hash that tells a benchmark which stored rows still stand."""

from dataclasses import replace

from bench.run_table import config_hash
from worker.config import RewardModelConfig, RunConfig


def test_a_true_reward_rows_hash_ignores_what_only_preference_learning_reads():
    true = RunConfig(env_id="CartPole-v1", true_reward=True).resolved()
    changed = replace(
        true, label_schedule_end=1.0, segment_length=7, labels=99, reward_model=RewardModelConfig(ensemble_size=5)
    )
    assert config_hash(changed) == config_hash(true)
    assert config_hash(replace(true, seed=3)) == config_hash(true)
    assert config_hash(replace(true, timesteps=true.timesteps + 1)) != config_hash(true)


def test_a_preference_rows_hash_changes_with_its_label_schedule():
    preference = RunConfig(env_id="CartPole-v1").resolved()
    assert config_hash(replace(preference, label_schedule_end=1.0)) != config_hash(preference)
    assert config_hash(replace(preference, segment_length=7)) != config_hash(preference)
