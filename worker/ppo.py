"""Proximal Policy Optimization on Gymnasium vector envs, as calls a long-running training loop makes.

Follows CleanRL's `ppo.py` / `ppo_continuous_action.py` (names follow the maths; `b_` is the flattened batch,
`mb_` a minibatch), cut into `PPO.collect()` (one rollout with the current policy) and `PPO.update()` (PPO
epochs on that rollout, with the env's reward or a learned one), so the reward-learning loop can put a reward
model between the two.

Vector envs come from `worker.envs.make_vec_env` and use NEXT_STEP autoreset: the step that ends an episode
returns the final observation, and the sub-env's next step is a no-op (marked `valid = False` in the rollout)
that returns the first observation of the next episode. So the value of a truncated episode's final observation
is simply the value at the following (no-op) step, and no-op steps are left out of the loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import nn

from worker.config import PPOConfig
from worker.envs import (
    EnvSpaces,
    env_spaces,
    make_vec_env,
    max_episode_steps,
    validate_env_id,
    vector_physics_states,
)
from worker.ppo_fast import adam_step, clip_grad_norm, numpy_mlp
from worker.segments import step_changes


class RunningMeanStd:
    """Running mean and variance of a stream of batches (Chan et al.'s parallel algorithm), as in SB3/CleanRL."""

    def __init__(self, shape: tuple[int, ...], epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = epsilon

    def update(self, x: np.ndarray) -> None:
        """Fold in a batch `x` of shape (B, *shape)."""
        batch_mean = x.mean(axis=0)
        batch_var = x.var(axis=0)
        batch_count = x.shape[0]
        delta = batch_mean - self.mean
        tot_count = self.count + batch_count
        self.mean = self.mean + delta * batch_count / tot_count
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / tot_count
        self.var = m2 / tot_count
        self.count = tot_count

    def normalize(self, x: np.ndarray, clip: float) -> np.ndarray:
        """(x - mean) / std, clipped to [-clip, clip], as float32."""
        out = (x - self.mean) / np.sqrt(self.var + 1e-8)
        return np.clip(out, -clip, clip).astype(np.float32)

    def state_dict(self) -> dict[str, torch.Tensor | float]:
        """Tensors, so a checkpoint loads with `torch.load(..., weights_only=True)`."""
        # np.array: a scalar statistic (shape ()) comes out of update() as a numpy float, not an array.
        mean, var = torch.from_numpy(np.array(self.mean)), torch.from_numpy(np.array(self.var))
        return {"mean": mean, "var": var, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float64).copy()
        self.var = np.asarray(state["var"], dtype=np.float64).copy()
        self.count = float(state["count"])


def layer_init(layer: nn.Linear, std: float = math.sqrt(2), bias_const: float = 0.0) -> nn.Linear:
    """PPO detail: orthogonal weight init with gain `std`, constant bias."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias_const)
    return layer


_ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU}


def _mlp(
    in_dim: int, hidden: int, out_dim: int, out_std: float, activation: str, ortho_init: bool = True
) -> nn.Sequential:
    act = _ACTIVATIONS[activation]

    def init(layer: nn.Linear, std: float = math.sqrt(2)) -> nn.Linear:
        return layer_init(layer, std) if ortho_init else layer

    return nn.Sequential(
        init(nn.Linear(in_dim, hidden)),
        act(),
        init(nn.Linear(hidden, hidden)),
        act(),
        init(nn.Linear(hidden, out_dim), std=out_std),
    )


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Agent(nn.Module):
    """Separate actor and critic MLPs (two hidden layers each), CleanRL's `Agent`.

    Discrete actions: the actor gives logits. Continuous actions: the actor gives the mean of a diagonal Gaussian
    in a normalized action space where [-1, 1] maps onto the env's bounds; the log std is a state-independent
    parameter. Distributions are written out by hand (no `torch.distributions`).
    """

    def __init__(
        self,
        obs_dim: int,
        spaces: EnvSpaces,
        hidden_size: int,
        init_log_std: float,
        activation: str = "tanh",
        ortho_init: bool = True,
    ) -> None:
        super().__init__()
        self.discrete = spaces.discrete
        out_dim = spaces.num_actions if spaces.discrete else int(np.prod(spaces.action_shape))
        self.critic = _mlp(obs_dim, hidden_size, 1, out_std=1.0, activation=activation, ortho_init=ortho_init)
        self.actor = _mlp(obs_dim, hidden_size, out_dim, out_std=0.01, activation=activation, ortho_init=ortho_init)
        if not self.discrete:
            self.actor_logstd = nn.Parameter(torch.full((1, out_dim), float(init_log_std)))

    def actor_out(self, x: torch.Tensor) -> torch.Tensor:
        """(B, obs_dim) -> (B, num_actions) logits, or (B, action_dim) Gaussian mean in normalized units."""
        return self.actor(x)

    def get_value(self, x: torch.Tensor) -> torch.Tensor:
        """V(s): (B, obs_dim) -> (B,)."""
        return self.critic(x).squeeze(-1)

    def sample(self, out: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """Pick actions from the actor's output.

        Args:
            out: (B, A) output of `actor_out`.
            noise: (B, A) Gumbel noise (discrete: argmax of logits + Gumbel is a categorical sample) or standard
                normal noise (continuous); None for the deterministic action (argmax / mean).

        Returns:
            (B,) int64 actions, or (B, action_dim) float32 actions in normalized units (unclipped).
        """
        if self.discrete:
            return (out if noise is None else out + noise).argmax(dim=-1)
        return out if noise is None else out + self.actor_logstd.exp() * noise

    def logprob(self, out: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Log-probability (B,) of `action` (B,) or (B, action_dim) under the policy with output `out`."""
        if self.discrete:
            return torch.log_softmax(out, dim=-1).gather(-1, action.unsqueeze(-1)).squeeze(-1)
        logstd = self.actor_logstd
        z = (action - out) * torch.exp(-logstd)
        return (-0.5 * z.square() - logstd - _LOG_SQRT_2PI).sum(-1)

    def entropy(self, out: torch.Tensor) -> torch.Tensor:
        """Entropy (B,) of the policy with output `out` (B, A)."""
        if self.discrete:
            logp_all = torch.log_softmax(out, dim=-1)
            return -(logp_all.exp() * logp_all).sum(-1)
        return (self.actor_logstd + 0.5 + _LOG_SQRT_2PI).sum(-1).expand(out.shape[0])


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    last_values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    valid: np.ndarray,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Generalized Advantage Estimation over a NEXT_STEP-autoreset rollout.

    `values[t + 1]` (or `last_values` for the last step) is the value of the observation that followed step t.
    Under NEXT_STEP autoreset that is the episode's final observation when step t ended it, so a truncated step
    bootstraps from V(final obs) and a terminated one from zero. Either way the advantage does not flow back
    across an episode boundary. No-op steps (`valid` False) get advantage 0.

    Args:
        rewards: (T, N) reward for (s_t, a_t).
        values: (T, N) V(s_t) from the rollout.
        last_values: (N,) V of the observation after the last step.
        terminated: (T, N) bool, the episode terminated right after step t.
        truncated: (T, N) bool, the episode hit its time limit right after step t.
        valid: (T, N) bool, step t is a real transition.
        gamma: discount factor.
        gae_lambda: GAE lambda.

    Returns:
        advantages (T, N) float32 and returns = advantages + values (T, N) float32.
    """
    num_steps = rewards.shape[0]
    advantages = np.zeros(rewards.shape, dtype=np.float32)
    lastgaelam = np.zeros(rewards.shape[1:], dtype=np.float32)
    for t in reversed(range(num_steps)):
        nextvalues = last_values if t == num_steps - 1 else values[t + 1]
        # PPO detail: time-limit truncation bootstraps from V(final obs); only termination zeroes the next value.
        nextnonterminal = 1.0 - terminated[t].astype(np.float32)
        nextnondone = 1.0 - (terminated[t] | truncated[t]).astype(np.float32)
        delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
        lastgaelam = (delta + gamma * gae_lambda * nextnondone * lastgaelam) * valid[t]
        advantages[t] = lastgaelam
    return advantages, (advantages + values).astype(np.float32)


@dataclass
class Rollout:
    """One rollout of `num_steps` x `num_envs` env steps with the policy of the time.

    Attributes:
        obs: (T, N, obs_dim) float32 raw (unnormalized) observation s_t at each step.
        actions: (T, N, *action_shape) action a_t sent to the env in s_t: int64 for discrete, float32 clipped to
            the action bounds for continuous.
        true_rewards: (T, N) float32 env reward for (s_t, a_t).
        terminated: (T, N) bool, the episode terminated right after this step.
        truncated: (T, N) bool, the episode hit its time limit right after this step.
        valid: (T, N) bool, False for NEXT_STEP autoreset no-op steps (s_t is the previous episode's final
            observation; the action was ignored and the reward is 0). Leave these out of anything you learn.
        episode_returns: true returns of the episodes that ended during this rollout.
        episode_lengths: lengths of those episodes.
        states: (T, N, nq + nv) float64 MuJoCo physics state (qpos then qvel) in s_t, so a clip can replay a
            segment from its first step; None for other envs.
    """

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    valid: np.ndarray
    episode_returns: list[float]
    episode_lengths: list[int] = field(default_factory=list)
    states: np.ndarray | None = None
    # Private, for update(): what the policy saw and said during the rollout (tensors on the PPO device).
    _policy_obs: torch.Tensor | None = field(default=None, repr=False)
    """(T, N, obs_dim) normalized observations the policy acted on"""
    _raw_actions: torch.Tensor | None = field(default=None, repr=False)
    """(T, N) int64 or (T, N, action_dim) float32 unclipped actions in normalized units"""
    _logprobs: torch.Tensor | None = field(default=None, repr=False)
    """(T, N) log pi_old(a_t | s_t)"""
    _values: torch.Tensor | None = field(default=None, repr=False)
    """(T, N) V(s_t)"""
    _last_values: torch.Tensor | None = field(default=None, repr=False)
    """(N,) V of the observation after the last step (bootstrap)"""
    _start_timesteps: int = 0
    """PPO.timesteps when the rollout began (for annealing)"""

    @property
    def num_steps(self) -> int:
        return int(self.obs.shape[0])

    @property
    def num_envs(self) -> int:
        return int(self.obs.shape[1])


class PPO:
    """A PPO learner bound to one vector env: `collect()` rollouts, `update()` on them, `evaluate()` the policy.

    Attributes:
        env_id: the Gymnasium id.
        config: the hyperparameters.
        total_timesteps: the budget that learning-rate (and clip) annealing runs over.
        device: where the networks live; env stepping stays on the CPU.
        timesteps: env steps taken so far (num_envs counted per vector step, no-op steps included).
        spaces: the env's observation and action spaces.
    """

    def __init__(
        self, env_id: str, config: PPOConfig, total_timesteps: int, seed: int, device: torch.device
    ) -> None:
        """Make the envs and networks.

        Args:
            env_id: a registered Gymnasium id with a flat Box observation space.
            config: hyperparameters, e.g. `ppo_settings_for(env_id)` from `worker.env_settings`.
            total_timesteps: env steps the caller plans to train for (annealing reaches 0 there).
            seed: seeds the envs, the network init, action sampling and minibatch shuffling.
            device: torch device for the networks and the update.

        Raises:
            ValueError: for an unknown env id or unsupported spaces, or total_timesteps < 1.
        """
        validate_env_id(env_id)
        if total_timesteps < 1:
            raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
        self.env_id = env_id
        self.config = config
        self.total_timesteps = int(total_timesteps)
        self.device = torch.device(device)
        self.seed = seed
        self.timesteps = 0

        self.envs = make_vec_env(env_id, config.num_envs, seed)
        self.spaces = env_spaces(self.envs)
        self.obs_dim = int(self.spaces.obs_shape[0])
        self._action_low = self.spaces.action_low.astype(np.float32)
        self._action_scale = ((self.spaces.action_high - self.spaces.action_low) / 2.0).astype(np.float32)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.agent = Agent(
                self.obs_dim, self.spaces, config.hidden_size, config.init_log_std, config.activation, config.ortho_init
            ).to(self.device)
        # PPO detail: Adam with eps 1e-5 (CleanRL / the original implementation), not the default 1e-8.
        # fused: one kernel for all parameters instead of a dozen small ops per parameter tensor.
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)
        self.obs_rms = RunningMeanStd(self.spaces.obs_shape)
        self.return_rms = RunningMeanStd(())
        self._discounted_return = np.zeros(config.num_envs, dtype=np.float64)  # per sub-env, for norm_reward
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self.np_rng = np.random.default_rng(seed)

        next_obs, _ = self.envs.reset()
        self._next_obs = np.asarray(next_obs, dtype=np.float32)
        self._next_prev_done = np.zeros(config.num_envs, dtype=bool)
        self._ep_returns = np.zeros(config.num_envs, dtype=np.float64)
        self._ep_lengths = np.zeros(config.num_envs, dtype=np.int64)
        self._eval_envs: dict[int, VectorEnv] = {}

    # ----------------------------------------------------------------------------------------- acting
    def _policy_input(self, obs: np.ndarray, update_stats: bool) -> np.ndarray:
        """Raw (B, obs_dim) observations -> what the networks see (normalized when config.norm_obs)."""
        if not self.config.norm_obs:
            return obs
        if update_stats:
            self.obs_rms.update(obs)
        return self.obs_rms.normalize(obs, self.config.obs_clip)

    def _to_env_action(self, action: np.ndarray) -> np.ndarray:
        """Policy action (normalized units for continuous) -> the action sent to the env."""
        if self.spaces.discrete:
            return action
        # PPO detail: the Gaussian is unbounded; clip to the action bounds before stepping the env.
        return self._action_low + (np.clip(action, -1.0, 1.0) + 1.0) * self._action_scale

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """The policy's env actions for a batch of raw observations (does not touch the normalizer's stats).

        Args:
            obs: (B, obs_dim) raw observations.
            deterministic: argmax / mean action instead of a sample (drawn from the PPO's generator).

        Returns:
            (B,) int64 or (B, action_dim) float32 env actions (clipped to bounds).
        """
        x = torch.as_tensor(self._policy_input(np.asarray(obs, dtype=np.float32), False), device=self.device)
        with torch.no_grad():
            out = self.agent.actor_out(x)
            noise = None if deterministic else self._sampling_noise(out.shape)
            action = self.agent.sample(out, noise)
        return self._to_env_action(action.cpu().numpy())

    def _sampling_noise(self, shape: tuple[int, ...] | torch.Size) -> torch.Tensor:
        """Gumbel noise (discrete) or standard normal noise (continuous) of `shape`, from the PPO's generator."""
        if self.spaces.discrete:
            u = torch.rand(shape, generator=self.generator, device=self.device).clamp_(min=1e-20)
            return -torch.log(-torch.log(u))
        return torch.randn(shape, generator=self.generator, device=self.device)

    def collect(self) -> Rollout:
        """Step the envs `num_steps` times with the current (stochastic) policy.

        Only the actor runs per step; values and log-probabilities of the whole rollout are computed afterwards
        in one batched forward pass (same parameters, so the same numbers, at a fraction of the cost).

        Returns:
            The rollout; `timesteps` grows by num_steps * num_envs.
        """
        cfg = self.config
        T, N, device = cfg.num_steps, cfg.num_envs, self.device
        act_shape = self.spaces.action_shape
        obs_buf = np.zeros((T, N, self.obs_dim), dtype=np.float32)
        policy_obs_buf = np.zeros((T, N, self.obs_dim), dtype=np.float32)
        actions_buf = np.zeros((T, N, *act_shape), dtype=np.int64 if self.spaces.discrete else np.float32)
        raw_actions_buf = np.zeros_like(actions_buf)
        rewards_buf = np.zeros((T, N), dtype=np.float32)
        terminated_buf = np.zeros((T, N), dtype=bool)
        truncated_buf = np.zeros((T, N), dtype=bool)
        valid_buf = np.zeros((T, N), dtype=bool)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        start_timesteps = self.timesteps
        first_states = vector_physics_states(self.envs)
        states_buf = None if first_states is None else np.zeros((T, *first_states.shape), dtype=np.float64)

        next_obs, prev_done = self._next_obs, self._next_prev_done
        with torch.no_grad():
            out_dim = self.spaces.num_actions if self.spaces.discrete else int(np.prod(act_shape))
            noise = self._sampling_noise((T, N, out_dim)).cpu().numpy()
            actor = numpy_mlp(self.agent.actor)  # fast path: numpy forward passes while stepping envs
            std = None if self.spaces.discrete else np.exp(self.agent.actor_logstd.detach().cpu().numpy())
            for step in range(T):
                obs_buf[step] = next_obs
                if states_buf is not None:
                    states_buf[step] = vector_physics_states(self.envs)
                # NEXT_STEP autoreset: the step after an episode ended is a no-op that only resets the sub-env.
                valid_buf[step] = ~prev_done
                policy_obs_buf[step] = self._policy_input(next_obs, update_stats=True)
                out = actor(policy_obs_buf[step])
                if std is None:
                    # argmax of logits + Gumbel noise is a sample of the categorical distribution
                    action = np.argmax(out + noise[step], axis=-1)
                else:
                    action = (out + std * noise[step]).astype(np.float32)
                raw_actions_buf[step] = action
                env_action = self._to_env_action(action)
                actions_buf[step] = env_action

                next_obs, reward, terminated, truncated, _ = self.envs.step(env_action)
                next_obs = np.asarray(next_obs, dtype=np.float32)
                rewards_buf[step] = reward
                terminated_buf[step] = terminated
                truncated_buf[step] = truncated
                prev_done = np.logical_or(terminated, truncated)

                self._ep_returns += reward
                self._ep_lengths += valid_buf[step]
                if prev_done.any():
                    for i in np.flatnonzero(prev_done):
                        episode_returns.append(float(self._ep_returns[i]))
                        episode_lengths.append(int(self._ep_lengths[i]))
                    self._ep_returns[prev_done] = 0.0
                    self._ep_lengths[prev_done] = 0
            self.timesteps += T * N

            policy_obs = torch.from_numpy(policy_obs_buf).to(device)
            raw_actions = torch.from_numpy(raw_actions_buf).to(device)
            b_policy_obs = policy_obs.reshape(T * N, self.obs_dim)
            logprobs = self.agent.logprob(self.agent.actor_out(b_policy_obs), raw_actions.reshape(T * N, *act_shape))
            values = self.agent.get_value(b_policy_obs).reshape(T, N)
            # PPO detail: bootstrap the rollout's tail from V(s_T); if s_T is a final observation, this is also
            # the truncation bootstrap of the last step.
            last_x = torch.from_numpy(self._policy_input(next_obs, update_stats=False)).to(device)
            last_values = self.agent.get_value(last_x)
        self._next_obs, self._next_prev_done = next_obs, prev_done

        return Rollout(
            obs=obs_buf,
            actions=actions_buf,
            true_rewards=rewards_buf,
            terminated=terminated_buf,
            truncated=truncated_buf,
            valid=valid_buf,
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
            states=states_buf,
            _policy_obs=policy_obs,
            _raw_actions=raw_actions,
            _logprobs=logprobs.reshape(T, N),
            _values=values,
            _last_values=last_values,
            _start_timesteps=start_timesteps,
        )

    # ----------------------------------------------------------------------------------------- learning
    def _anneal_frac(self, timesteps: int) -> float:
        return max(1.0 - timesteps / self.total_timesteps, 0.0)

    def advantages(self, rollout: Rollout, rewards: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """GAE advantages and value targets for a rollout, with the env's or the given rewards.

        Args:
            rollout: from `collect()`.
            rewards: (T, N) rewards replacing `rollout.true_rewards`, or None.

        Returns:
            advantages (T, N) and returns (T, N), float32; 0 advantage on no-op steps.
        """
        r = rollout.true_rewards if rewards is None else np.asarray(rewards, dtype=np.float32)
        if r.shape != rollout.true_rewards.shape:
            raise ValueError(f"rewards must have shape {rollout.true_rewards.shape} (T, N), got {r.shape}")
        if rollout._values is None or rollout._last_values is None:
            raise ValueError("rollout has no value estimates: make it with PPO.collect()")
        return compute_gae(
            r,
            rollout._values.cpu().numpy(),
            rollout._last_values.cpu().numpy(),
            rollout.terminated,
            rollout.truncated,
            rollout.valid,
            self.config.gamma,
            self.config.gae_lambda,
        )

    def scale_rewards(self, rollout: Rollout, rewards: np.ndarray) -> np.ndarray:
        """Rewards divided by a running std of the discounted return, clipped to ±reward_clip.

        PPO detail: reward scaling (SB3's VecNormalize, CleanRL's NormalizeReward). Each sub-env keeps a
        discounted sum of its rewards, reset when an episode ends; the std of those sums over all steps so far
        scales the rewards, so the value targets stay near unit size whatever the reward's units. The mean is
        not subtracted: that would change which policies are better in an env whose episodes end early. The
        statistics take in this rollout's steps before its rewards are scaled.

        Args:
            rollout: from `collect()`.
            rewards: (T, N) rewards for its steps (the env's or a learned one).

        Returns:
            (T, N) float32 scaled rewards (0 on no-op steps).
        """
        r = np.asarray(rewards, dtype=np.float64)
        if r.shape != rollout.true_rewards.shape:
            raise ValueError(f"rewards must have shape {rollout.true_rewards.shape} (T, N), got {r.shape}")
        gamma, ret = self.config.gamma, self._discounted_return
        done = rollout.terminated | rollout.truncated
        seen = []
        for t in range(r.shape[0]):
            valid = rollout.valid[t]
            ret = np.where(valid, ret * gamma + r[t], ret)
            seen.append(ret[valid])
            ret = np.where(done[t], 0.0, ret)
        self._discounted_return = ret
        batch = np.concatenate(seen)
        if batch.size:
            self.return_rms.update(batch)
        scaled = np.clip(r / np.sqrt(self.return_rms.var + 1e-8), -self.config.reward_clip, self.config.reward_clip)
        return np.where(rollout.valid, scaled, 0.0).astype(np.float32)

    def update(self, rollout: Rollout, rewards: np.ndarray | None = None) -> dict[str, float]:
        """Run the PPO epochs on one rollout.

        Args:
            rollout: the latest rollout from `collect()` (on-policy).
            rewards: (T, N) float32 rewards replacing `rollout.true_rewards` (e.g. a learned reward); values on
                no-op steps (`rollout.valid` False) are ignored. With `config.norm_reward` they are scaled first
                (`scale_rewards`).

        Returns:
            Metrics: "ppo/approx_kl", "ppo/old_approx_kl" and "ppo/clipfrac" (over the last epoch),
            "ppo/policy_loss", "ppo/value_loss", "ppo/entropy" (of the updated policy on the rollout),
            "ppo/explained_variance", "ppo/lr", "ppo/clip_coef", "ppo/epochs".
        """
        cfg, device = self.config, self.device
        if cfg.norm_reward:
            rewards = self.scale_rewards(rollout, rollout.true_rewards if rewards is None else rewards)
        advantages, returns = self.advantages(rollout, rewards)
        assert rollout._policy_obs is not None and rollout._raw_actions is not None
        assert rollout._logprobs is not None and rollout._values is not None

        # PPO detail: learning-rate (and clip-range) annealing, linear in env steps over total_timesteps.
        frac = self._anneal_frac(rollout._start_timesteps)
        lrnow = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
        for group in self.optimizer.param_groups:
            group["lr"] = lrnow
        clip_coef = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef

        # Flatten the batch, leaving out NEXT_STEP no-op steps.
        valid_idx = torch.from_numpy(np.flatnonzero(rollout.valid.reshape(-1))).to(device)
        b_obs = rollout._policy_obs.reshape(-1, self.obs_dim)[valid_idx]
        b_actions = rollout._raw_actions.reshape(-1, *rollout._raw_actions.shape[2:])[valid_idx]
        b_logprobs = rollout._logprobs.reshape(-1)[valid_idx]
        b_values = rollout._values.reshape(-1)[valid_idx]
        b_advantages = torch.from_numpy(advantages.reshape(-1)).to(device)[valid_idx]
        b_returns = torch.from_numpy(returns.reshape(-1)).to(device)[valid_idx]
        batch_size = int(valid_idx.shape[0])
        num_minibatches = min(cfg.num_minibatches, batch_size)
        bounds = np.linspace(0, batch_size, num_minibatches + 1).astype(int)
        params = [p for p in self.agent.parameters() if p.requires_grad]

        pg_losses, v_losses, logratios = [], [], []
        epochs_run = 0
        for _epoch in range(cfg.update_epochs):
            if num_minibatches > 1:
                # Shuffle once per epoch; minibatches are then contiguous slices (views, no gather per minibatch).
                b_inds = torch.from_numpy(self.np_rng.permutation(batch_size)).to(device)
                e_obs, e_actions, e_logprobs = b_obs[b_inds], b_actions[b_inds], b_logprobs[b_inds]
                e_values, e_advantages, e_returns = b_values[b_inds], b_advantages[b_inds], b_returns[b_inds]
            else:
                e_obs, e_actions, e_logprobs = b_obs, b_actions, b_logprobs
                e_values, e_advantages, e_returns = b_values, b_advantages, b_returns
            epoch_logratios = []
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                mb = slice(int(start), int(end))
                mb_obs = e_obs[mb]
                newout = self.agent.actor_out(mb_obs)
                newlogprob = self.agent.logprob(newout, e_actions[mb])
                newvalue = self.agent.get_value(mb_obs)
                logratio = newlogprob - e_logprobs[mb]
                ratio = logratio.exp()
                epoch_logratios.append(logratio.detach())

                mb_advantages = e_advantages[mb]
                if cfg.norm_adv and end - start > 1:
                    # PPO detail: per-minibatch advantage normalization
                    mb_advantages = (mb_advantages - mb_advantages.mean()) / (mb_advantages.std() + 1e-8)

                # PPO detail: clipped surrogate objective
                pg_loss1 = -mb_advantages * ratio
                pg_loss2 = -mb_advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
                pg_loss = torch.max(pg_loss1, pg_loss2).mean()

                mb_returns = e_returns[mb]
                if cfg.clip_vloss:
                    # PPO detail: value-function loss clipping around the rollout's estimates
                    mb_values = e_values[mb]
                    v_loss_unclipped = (newvalue - mb_returns) ** 2
                    v_clipped = mb_values + torch.clamp(newvalue - mb_values, -clip_coef, clip_coef)
                    v_loss_clipped = (v_clipped - mb_returns) ** 2
                    v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
                else:
                    v_loss = 0.5 * ((newvalue - mb_returns) ** 2).mean()

                loss = pg_loss + v_loss * cfg.vf_coef
                if cfg.ent_coef != 0.0:
                    # PPO detail: entropy bonus
                    entropy_loss = self.agent.entropy(newout).mean()
                    loss = loss - cfg.ent_coef * entropy_loss

                for p in params:  # zero_grad(set_to_none=True) without the optimizer's hooks: 4-10% faster here
                    p.grad = None
                loss.backward()
                # PPO detail: global gradient-norm clipping. Both calls are fast paths (`worker.ppo_fast`) for
                # nn.utils.clip_grad_norm_(params, cfg.max_grad_norm) and self.optimizer.step().
                clip_grad_norm([p.grad for p in params if p.grad is not None], cfg.max_grad_norm)
                adam_step(self.optimizer, params)
                pg_losses.append(pg_loss.detach())
                v_losses.append(v_loss.detach())
            epochs_run += 1
            logratios = epoch_logratios
            if cfg.target_kl is not None:
                # PPO detail: early stop on approximate KL (http://joschu.net/blog/kl-approx.html)
                epoch_logratio = torch.cat(epoch_logratios)
                if float(((epoch_logratio.exp() - 1) - epoch_logratio).mean()) > cfg.target_kl:
                    break

        with torch.no_grad():
            # Diagnostics over the last epoch's minibatches: KL estimators (http://joschu.net/blog/kl-approx.html)
            # and the fraction of ratios outside the clip range.
            last_logratio = torch.cat(logratios)
            last_ratio = last_logratio.exp()
            approx_kl = ((last_ratio - 1) - last_logratio).mean()
            old_approx_kl = (-last_logratio).mean()
            clipfrac = ((last_ratio - 1.0).abs() > clip_coef).float().mean()
            entropy = self.agent.entropy(self.agent.actor_out(b_obs)).mean()
        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)
        return {
            "ppo/policy_loss": float(torch.stack(pg_losses).mean()),
            "ppo/value_loss": float(torch.stack(v_losses).mean()),
            "ppo/entropy": float(entropy),
            "ppo/approx_kl": float(approx_kl),
            "ppo/old_approx_kl": float(old_approx_kl),
            "ppo/clipfrac": float(clipfrac),
            "ppo/explained_variance": explained_var,
            "ppo/lr": float(lrnow),
            "ppo/clip_coef": float(clip_coef),
            "ppo/epochs": float(epochs_run),
        }

    # ----------------------------------------------------------------------------------------- evaluation
    def evaluate(self, episodes: int = 20, seed: int = 10_000) -> tuple[float, float]:
        """Mean and std of the true return of the deterministic policy over `episodes` full episodes."""
        returns = self.episode_returns(episodes, seed)
        return float(returns.mean()), float(returns.std())

    def episode_returns(
        self,
        episodes: int = 20,
        seed: int = 10_000,
        reward: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None,
    ) -> np.ndarray:
        """(episodes,) undiscounted returns of the deterministic policy's full episodes, on the true reward or on
        `reward(obs, actions, terminated, changes)` ((1, B, ...) steps -> (1, B) rewards, as
        `RewardEnsemble.rewards` takes them; `changes` is the next observation minus this one, zero where the
        episode is over).

        Runs one episode in each of `episodes` sub-envs of a separate vector env, reset with `seed` (same seed,
        same start states); does not count toward `timesteps` nor change the observation normalizer.
        """
        if episodes < 1:
            raise ValueError(f"episodes must be at least 1, got {episodes}")
        env = self._eval_envs.get(episodes)
        if env is None:
            env = make_vec_env(self.env_id, episodes, seed)
            self._eval_envs[episodes] = env
        obs, _ = env.reset(seed=seed)
        returns = np.zeros(episodes, dtype=np.float64)
        finished = np.zeros(episodes, dtype=bool)
        limit = max_episode_steps(self.env_id) or 100_000
        for _ in range(limit):
            obs = np.asarray(obs, dtype=np.float32)
            action = self.act(obs, deterministic=True)
            next_obs, true_reward, terminated, truncated, _ = env.step(action)
            step_reward = true_reward
            if reward is not None:
                changes = step_changes(obs, next_obs, np.logical_or(terminated, truncated))
                step_reward = reward(obs[None], np.asarray(action)[None], np.asarray(terminated)[None], changes[None])
                step_reward = step_reward[0]
            returns += np.where(finished, 0.0, step_reward)
            obs = next_obs
            finished |= np.logical_or(terminated, truncated)
            if finished.all():
                break
        return returns

    def policy_state(self) -> dict:
        """What acting needs and nothing more (the policy network and the observation normalizer): a snapshot
        to act from again later with `load_policy_state`, much smaller than `state_dict()`."""
        return {
            "agent": {k: v.detach().cpu().clone() for k, v in self.agent.state_dict().items()},
            "obs_rms": self.obs_rms.state_dict(),  # copies of the statistics
        }

    def load_policy_state(self, state: dict) -> None:
        """Act as the policy of a `policy_state()` snapshot (the optimizer and the counters stay as they are)."""
        self.agent.load_state_dict(state["agent"])
        self.obs_rms.load_state_dict(state["obs_rms"])

    # ----------------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        """Networks, optimizer, observation normalizer, timesteps and random states (not the envs' states)."""
        return {
            "env_id": self.env_id,
            "config": asdict(self.config),
            "total_timesteps": self.total_timesteps,
            "timesteps": self.timesteps,
            **self.policy_state(),  # agent, obs_rms
            "optimizer": self.optimizer.state_dict(),
            "return_rms": self.return_rms.state_dict(),
            "discounted_return": torch.from_numpy(self._discounted_return.copy()),
            "torch_rng": self.generator.get_state(),
            "np_rng": self.np_rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict()` saved; the envs keep their current episodes."""
        if state["env_id"] != self.env_id:
            raise ValueError(f"state is for {state['env_id']}, this PPO runs {self.env_id}")
        self.load_policy_state(state)
        self.optimizer.load_state_dict(state["optimizer"])
        if "return_rms" in state:  # checkpoints from before reward scaling have none
            self.return_rms.load_state_dict(state["return_rms"])
            self._discounted_return = np.asarray(state["discounted_return"], dtype=np.float64).copy()
        self.timesteps = int(state["timesteps"])
        self.total_timesteps = int(state["total_timesteps"])
        self.generator.set_state(state["torch_rng"])
        self.np_rng.bit_generator.state = state["np_rng"]

    def close(self) -> None:
        """Close the training and evaluation envs."""
        self.envs.close()
        for env in self._eval_envs.values():
            env.close()
        self._eval_envs.clear()
