"""Did reward learning fail, or policy learning? The learned reward's verdict on two runs' policies.

A preference run that ends below true-reward PPO failed one of two ways. Either its reward model ranks the better
policy lower (reward learning failed: other labels are needed), or it ranks it higher and PPO never got there
(policy learning failed: exploration, the step budget). This script tells them apart. It loads the preference
run's reward model and the final policies of both runs (`rlhf run --out` folders), plays the same deterministic
episodes with each, and prints per policy the true return, the learned return as PPO is given it (undiscounted,
and discounted with the preference run's gamma: what PPO maximizes), the episode length and how the episodes
ended. Then the labels: the labeled segments by how they end (never; or by the sign of the true reward of the step
that ended the episode, as LunarLander's +100 landing and -100 crash), and how often the reward model sides with
the teacher on each kind of pair.

With --retrain STEPS, a fresh PPO (the run's settings and seed) is trained STEPS env steps on the preference run's
final learned reward, frozen, and judged too: where that reward leads when it is optimized from scratch, without
the run's history of earlier models. Far below the reference, the reward itself is at fault.

    python bench/reward_verdict.py runs/pref runs/true --episodes 10
    python bench/reward_verdict.py runs/pref runs/true --retrain 1000000   # minutes: PPO without reward training
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
# Run as a script, this folder comes first on sys.path, where `import mujoco` would find bench/mujoco.py.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from worker.envs import registered_id  # noqa: E402
from worker.loop import Learner, learned_rewards, load_checkpoint  # noqa: E402
from worker.pairs import PreferencePredictor, live_steps  # noqa: E402
from worker.ppo import PPO  # noqa: E402
from worker.segments import step_changes  # noqa: E402
from worker.types import LabeledPair, Segment  # noqa: E402

EPISODE_SEED = 30_000
"""Start states of the judged episodes: other than the runs' own evaluations (seed + 10000 and seed + 20000)."""

# (obs, actions, terminated, changes), each (1, 1, ...) for one step → (1, 1) rewards, as RewardEnsemble.rewards.
StepReward = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Episode:
    true_return: float
    learned_return: float
    discounted_learned_return: float
    length: int
    ending: str


def ending_kind(terminated: bool, last_true_reward: float) -> str:
    """How an episode (or a segment's episode) ended, in words that need no knowledge of the env."""
    if not terminated:
        return "never ended"
    if last_true_reward > 0:
        return "ended, last reward > 0"
    return "ended, last reward < 0" if last_true_reward < 0 else "ended, last reward 0"


def segment_ending(segment: Segment) -> str:
    """`ending_kind` of the segment's episode, as far as the segment shows it."""
    live = live_steps(segment)
    ended = live < len(segment)
    return ending_kind(ended, float(segment.true_rewards[live - 1]) if ended and live > 0 else 0.0)


def play(ppo: PPO, reward: StepReward, env_id: str, episodes: int, gamma: float) -> list[Episode]:
    """Deterministic episodes of `ppo`'s policy from `EPISODE_SEED` on, scored by the true and the learned reward."""
    env = gym.make(registered_id(env_id))
    played = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=EPISODE_SEED + episode)
        true_return = learned = discounted = 0.0
        discount, length, done = 1.0, 0, False
        while not done:
            obs = np.asarray(obs, dtype=np.float32)
            action = np.asarray(ppo.act(obs[None], deterministic=True))[0]
            next_obs, true_reward, terminated, truncated, _ = env.step(action)
            changes = step_changes(obs, next_obs, terminated or truncated)
            step_rewards = reward(obs[None, None], action[None, None], np.array([[terminated]]), changes[None, None])
            step = float(step_rewards[0, 0])
            true_return += float(true_reward)
            learned += step
            discounted += discount * step
            discount, length, obs = discount * gamma, length + 1, next_obs
            done = terminated or truncated
        played.append(Episode(true_return, learned, discounted, length, ending_kind(terminated, float(true_reward))))
    env.close()
    return played


def agreement_by_kind(model: PreferencePredictor, labeled: Sequence[LabeledPair]) -> dict[str, tuple[int, float]]:
    """For each kind of strictly answered pair ("ending kind vs ending kind"), how many and the share on which the
    model's mean preference sides with the teacher."""
    groups: dict[str, list[LabeledPair]] = {}
    for pair in labeled:
        if pair.choice in ("left", "right"):
            kind = " vs ".join(sorted((segment_ending(pair.left), segment_ending(pair.right))))
            groups.setdefault(kind, []).append(pair)
    agreement = {}
    for kind, pairs in sorted(groups.items()):
        left_wins = model.preference_probabilities([p.left for p in pairs], [p.right for p in pairs]).mean(0) > 0.5
        agreement[kind] = (len(pairs), float(np.mean(left_wins == np.array([p.choice == "left" for p in pairs]))))
    return agreement


def mean_of(played: list[Episode], field: str) -> float:
    return float(np.mean([getattr(episode, field) for episode in played]))


def summary(name: str, played: list[Episode]) -> str:
    """One row of the table: means over the episodes, and how they ended."""
    numbers = [
        f"{mean_of(played, field):>{width}.{digits}f}"
        for field, width, digits in (
            ("true_return", 9, 1), ("learned_return", 9, 1), ("discounted_learned_return", 11, 1), ("length", 7, 0)
        )
    ]
    endings = Counter(episode.ending for episode in played).most_common()
    return f"{name:<10} " + " ".join(numbers) + "   " + ", ".join(f"{count} {kind}" for kind, count in endings)


def retrain(learner: Learner, steps: int) -> PPO:
    """A fresh PPO with the run's settings and seed, trained `steps` env steps on its final learned reward, frozen."""
    ppo = PPO(learner.config.env_id, learner.ppo_config, steps, learner.config.seed, torch.device("cpu"))
    next_report = steps // 10
    while ppo.timesteps < steps:
        rollout = ppo.collect()
        ppo.update(rollout, learned_rewards(learner.reward_model, rollout))
        if ppo.timesteps >= next_report:
            print(f"  retraining: {ppo.timesteps:,} of {steps:,} env steps", file=sys.stderr, flush=True)
            next_report += steps // 10
    return ppo


def verdict(played: dict[str, list[Episode]], field: str) -> str:
    """Which policy the learned reward (`field`: summed or discounted) prefers, against the true reward's choice."""
    (first, first_episodes), (second, second_episodes) = played.items()
    learned = mean_of(first_episodes, field), mean_of(second_episodes, field)
    if np.isclose(*learned):
        return "cannot tell the two policies apart"
    favourite, other = (first, second) if learned[0] > learned[1] else (second, first)
    truly_better = mean_of(played[favourite], "true_return") >= mean_of(played[other], "true_return")
    return f"prefers the {favourite} policy: " + (
        "as the true reward does" if truly_better else f"the true reward prefers the {other} one"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("preference_run", type=Path, help="folder of a preference run (its checkpoint.pt)")
    parser.add_argument("reference_run", type=Path, help="folder of a run to compare with, e.g. true-reward PPO")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--retrain",
        type=int,
        default=0,
        metavar="STEPS",
        help="also judge PPO trained afresh for STEPS env steps on the final learned reward, frozen (0: no)",
    )
    args = parser.parse_args(argv)
    if args.retrain < 0:
        parser.error(f"--retrain must be 0 or more env steps, got {args.retrain}")
    for folder in (args.preference_run, args.reference_run):
        if not (folder / "checkpoint.pt").is_file():
            parser.error(f"{folder}: no checkpoint.pt (a folder that `rlhf run --out` wrote)")
    learner = load_checkpoint(args.preference_run / "checkpoint.pt", device="cpu")
    reference = load_checkpoint(args.reference_run / "checkpoint.pt", device="cpu")
    if reference.config.env_id != learner.config.env_id:
        parser.error(f"the runs are of different envs: {learner.config.env_id} and {reference.config.env_id}")
    model, gamma = learner.reward_model, learner.ppo_config.gamma
    print(f"{learner.config.env_id}: the learned reward of {args.preference_run} ({len(learner.labeled)} labels), "
          f"{args.episodes} episodes each; PPO's gamma {gamma}")
    print(f"{'policy':<10} {'true':>9} {'learned':>9} {'discounted':>11} {'length':>7}   endings")
    played = {}
    for name, run in (("preference", learner), ("reference", reference)):
        played[name] = play(run.ppo, model.rewards, learner.config.env_id, args.episodes, gamma)
        print(summary(name, played[name]))
    for field, words in (("learned_return", "summed"), ("discounted_learned_return", "discounted")):
        print(f"the learned reward, {words}, {verdict(played, field)}")
    if args.retrain:
        retrained = play(retrain(learner, args.retrain), model.rewards, learner.config.env_id, args.episodes, gamma)
        print(f"PPO trained afresh on the final learned reward for {args.retrain:,} env steps:")
        print(summary("retrained", retrained))
    if not model.trusted:
        print("(the reward model was not trusted at the end of the run: PPO got zero reward from it)")
    print("\nlabeled segments by how their episode ended:")
    segments = {id(s): s for pair in learner.labeled for s in (pair.left, pair.right)}.values()
    for kind, count in Counter(segment_ending(s) for s in segments).most_common():
        print(f"  {count:>5}  {kind}")
    print("the reward model sides with the teacher on:")
    for kind, (count, share) in agreement_by_kind(model, learner.labeled).items():
        print(f"  {share:>5.0%} of {count:>5}  {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
