"""One reference run of imitation 1.0.1's PreferenceComparisons, scored on the TRUE reward.

Runs in its own venv (see bench/setup_reference.sh), e.g.:
    OMP_NUM_THREADS=1 taskset -c 1 bench/.venvs/imitation/bin/python bench/reference_imitation.py \
        --env Pendulum-v1 --seed 0 --labels 200

Settings follow imitation's tutorial "Learning a Reward Function using Preference Comparisons"
(Pendulum-v1) with 60 iterations; CartPole-v1 uses rl-zoo3's PPO hyperparameters instead of the
tutorial's Pendulum ones. Progress goes to stderr; the last stdout line is one JSON object.
A crashed run still prints that line, with "true_return": null and an "error" field, and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import traceback

import gymnasium as gym
import numpy as np
from imitation.algorithms import preference_comparisons as pc
from imitation.policies.base import FeedForward32Policy, NormalizeFeaturesExtractor
from imitation.rewards.reward_nets import BasicRewardNet
from imitation.util import logger as imit_logger
from imitation.util.networks import RunningNorm
from imitation.util.util import make_vec_env, oric
from rl_zoo import sb3_cartpole_kwargs
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

DEFAULT_AGENT_STEPS = {"CartPole-v1": 125_000, "Pendulum-v1": 250_000}
DEFAULT_FRAGMENT_LENGTH = {"CartPole-v1": 10, "Pendulum-v1": 100}  # the lengths the reference was measured with
N_ENVS = 8
NUM_ITERATIONS = 60
EVAL_EPISODES = 20


class CountSteps(gym.Wrapper):
    """Counts every env step taken: PPO rollouts and the extra episodes sampled for fragments."""

    total = 0

    def step(self, action):
        CountSteps.total += 1
        return self.env.step(action)


def make_agent(env_id: str, venv, seed: int, agent_steps: int) -> PPO:
    """Pendulum-v1: the tutorial's PPO. CartPole-v1: rl-zoo3's (which has 8 envs too)."""
    if env_id == "Pendulum-v1":
        return PPO(
            policy=FeedForward32Policy,
            policy_kwargs=dict(
                features_extractor_class=NormalizeFeaturesExtractor,
                features_extractor_kwargs=dict(normalize_class=RunningNorm),
            ),
            env=venv,
            seed=seed,
            n_steps=2048 // venv.num_envs,
            batch_size=64,
            ent_coef=0.01,
            learning_rate=2e-3,
            clip_range=0.1,
            gae_lambda=0.95,
            gamma=0.97,
            n_epochs=10,
        )
    # rl-zoo3's lin_1e-3 / lin_0.2 decay over the whole agent budget. SB3's own progress_remaining
    # would restart on every learn() call, and AgentTrainer calls learn() once per iteration.
    agent: list[PPO] = []

    def linear(start: float):
        return lambda _: start * max(0.0, 1.0 - (agent[0].num_timesteps if agent else 0) / agent_steps)

    agent.append(
        PPO(
            "MlpPolicy",
            venv,
            seed=seed,
            **sb3_cartpole_kwargs(linear),
        )
    )
    return agent[0]


def check_schedule(labels: int) -> None:
    """imitation 1.0.1 crashes on an iteration that asks for 0 pairs (no trajectories to cut): fail fast."""
    shares = 1 / (1 + np.linspace(0, 1, NUM_ITERATIONS))  # the hyperbolic query schedule
    per_iteration = oric(shares / shares.sum() * (labels - int(labels * 0.1)))
    if per_iteration.min() == 0:
        raise ValueError(f"{labels} labels leave an iteration with 0 comparisons, which imitation crashes on")


def train(args: argparse.Namespace) -> PPO:
    """Runs PreferenceComparisons; returns the PPO agent trained on the learned reward."""
    check_schedule(args.labels)
    rng = np.random.default_rng(args.seed)
    venv = make_vec_env(args.env, rng=rng, n_envs=N_ENVS, post_wrappers=[lambda env, _: CountSteps(env)])
    # One stdout-only logger for every stage: without it each one makes its own log folder in /tmp.
    logger = imit_logger.configure(tempfile.gettempdir(), ["stdout"])
    reward_net = BasicRewardNet(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
    if args.perfect:  # the library's deterministic oracle: 1 / 0 for the higher true return, 0.5 on ties
        gatherer = pc.SyntheticGatherer(temperature=0, sample=False, custom_logger=logger)
    else:  # its default: Bernoulli-sampled from the Bradley-Terry probability at temperature 1
        gatherer = pc.SyntheticGatherer(temperature=1, sample=True, rng=rng, custom_logger=logger)
    reward_trainer = pc.BasicRewardTrainer(
        preference_model=pc.PreferenceModel(reward_net),
        loss=pc.CrossEntropyRewardLoss(),
        epochs=3,
        rng=rng,
        custom_logger=logger,
    )
    agent = make_agent(args.env, venv, args.seed, args.agent_steps)
    trajectory_generator = pc.AgentTrainer(
        algorithm=agent, reward_fn=reward_net, venv=venv, exploration_frac=0.05, rng=rng, custom_logger=logger
    )
    pc.PreferenceComparisons(
        trajectory_generator,
        reward_net,
        num_iterations=NUM_ITERATIONS,
        fragmenter=pc.RandomFragmenter(warning_threshold=0, rng=rng, custom_logger=logger),
        preference_gatherer=gatherer,
        reward_trainer=reward_trainer,
        fragment_length=args.fragment_length,
        transition_oversampling=1,
        initial_comparison_frac=0.1,
        allow_variable_horizon=args.env == "CartPole-v1",  # CartPole episodes end when the pole falls
        initial_epoch_multiplier=4,
        query_schedule="hyperbolic",
        custom_logger=logger,
    ).train(total_timesteps=args.agent_steps, total_comparisons=args.labels)
    return agent


def evaluate(env_id: str, agent: PPO, seed: int) -> tuple[float, float]:
    """Mean and std of the TRUE return over deterministic episodes of a plain gymnasium env."""
    eval_env = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    eval_env.seed(seed + 10_000)
    mean, std = evaluate_policy(agent, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", choices=sorted(DEFAULT_AGENT_STEPS), required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", type=int, required=True, help="total comparisons")
    parser.add_argument("--agent-steps", type=int, help="default: 125000 CartPole-v1, 250000 Pendulum-v1")
    parser.add_argument("--fragment-length", type=int, help="default: 10 CartPole-v1, 100 Pendulum-v1")
    parser.add_argument("--perfect", action="store_true", help="deterministic oracle instead of sampled")
    args = parser.parse_args()
    args.agent_steps = args.agent_steps or DEFAULT_AGENT_STEPS[args.env]
    args.fragment_length = args.fragment_length or DEFAULT_FRAGMENT_LENGTH[args.env]

    result = {"env": args.env, "seed": args.seed, "labels": args.labels, "agent_steps": args.agent_steps}
    with contextlib.redirect_stdout(sys.stderr):  # imitation prints its query schedule and logs to stdout
        start, wall = time.perf_counter(), None
        try:
            agent = train(args)
            wall = time.perf_counter() - start
            mean, std = evaluate(args.env, agent, args.seed)
            result |= {"true_return": mean, "true_return_std": std}
        except Exception as exc:  # e.g. no episode long enough to cut a fragment from
            traceback.print_exc()
            wall = wall or time.perf_counter() - start
            result |= {"true_return": None, "true_return_std": None, "error": f"{type(exc).__name__}: {exc}"}
    result["wall_seconds"] = round(wall, 1)
    result["env_steps_total"] = CountSteps.total
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
