"""Training hyperparameters of one run: frozen dataclasses saved with every result.

Per-env defaults (PPO settings, run length, segment length) are data in `worker.env_settings`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

# Hidden-layer activations the agent's MLPs can use (worker.ppo maps each name to its module).
ACTIVATIONS = ("tanh", "relu")


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters; saved with every run. Tuned values per env live in `worker.env_settings`."""

    num_envs: int = 4
    """number of sub-envs stepped in parallel"""
    num_steps: int = 128
    """steps per sub-env in one rollout (rollout size = num_envs * num_steps)"""
    gamma: float = 0.99
    """discount factor"""
    gae_lambda: float = 0.95
    """lambda of Generalized Advantage Estimation"""
    update_epochs: int = 4
    """passes over the rollout in one update"""
    num_minibatches: int = 4
    """minibatches per epoch (minibatch size = valid steps in the rollout / num_minibatches)"""
    learning_rate: float = 2.5e-4
    """Adam learning rate (at the start, when annealed)"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over the total timesteps given to PPO"""
    clip_coef: float = 0.2
    """surrogate clipping coefficient epsilon"""
    anneal_clip: bool = False
    """anneal clip_coef linearly to 0 over the total timesteps, like rl-zoo3's `lin_0.2`"""
    clip_vloss: bool = False
    """clip the value loss around the rollout's value estimates (with clip_coef), as in the PPO paper's code"""
    ent_coef: float = 0.0
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient norm clip"""
    target_kl: float | None = None
    """stop the update's epochs early when the approximate KL passes this (None: never)"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    norm_obs: bool = False
    """normalize observations with a running mean/std (kept in the trainer, saved in state_dict)"""
    obs_clip: float = 10.0
    """clip normalized observations to [-obs_clip, obs_clip]"""
    norm_reward: bool = False
    """scale rewards (true or learned) by a running std of the discounted return, as SB3's VecNormalize and
    CleanRL's NormalizeReward do; kept in the trainer, saved in state_dict"""
    reward_clip: float = 10.0
    """clip scaled rewards to [-reward_clip, reward_clip] (with norm_reward)"""
    hidden_size: int = 64
    """width of the two hidden layers of the actor and of the critic"""
    activation: str = "tanh"
    """hidden-layer activation: "tanh" (CleanRL, SB3) or "relu" """
    init_log_std: float = 0.0
    """initial log standard deviation of the Gaussian policy (continuous actions only)"""
    ortho_init: bool = True
    """orthogonal init of every layer (CleanRL, SB3's default); False keeps PyTorch's default init, as rl-zoo3's
    tuned MuJoCo settings (`ortho_init=False`) do"""

    def __post_init__(self) -> None:
        for name in ("num_envs", "num_steps", "update_epochs", "num_minibatches", "hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"PPOConfig.{name} must be at least 1, got {getattr(self, name)}")
        if self.num_minibatches > self.num_envs * self.num_steps:
            raise ValueError(
                f"PPOConfig.num_minibatches ({self.num_minibatches}) exceeds the rollout size "
                f"num_envs * num_steps = {self.num_envs * self.num_steps}"
            )
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"gamma and gae_lambda must lie in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if self.learning_rate <= 0 or self.clip_coef <= 0 or self.max_grad_norm <= 0:
            raise ValueError("learning_rate, clip_coef and max_grad_norm must be positive")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"PPOConfig.activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")

    @property
    def batch_size(self) -> int:
        """Env steps in one rollout: num_envs * num_steps."""
        return self.num_envs * self.num_steps


@dataclass(frozen=True)
class RewardModelConfig:
    """How the reward ensemble is built and trained."""

    ensemble_size: int = 3
    """Members, each trained on its own bootstrap resample of the labels."""
    hidden_size: int = 64
    """Width of each member's two hidden layers."""
    use_actions: bool = False
    """Feed the action to the reward network as well as the observation."""
    use_changes: bool = False
    """Feed the step's change of observation (the next one minus this one) to the reward network as well. A
    reward for reaching a state, as a potential-based shaping pays it (LunarLander's +10 when a leg touches
    down), can then be paid on the step that reaches it; a reward of the state alone has to pay it on every step
    spent there, and a lander then sits on the pad for the rest of the episode instead of coming to rest."""
    learning_rate: float = 3e-3
    """Adam step size."""
    weight_decay: float = 1e-3
    """AdamW weight decay: keeps the reward small where the labels say nothing."""
    batch_size: int = 32
    """Labeled pairs per gradient step."""
    max_epochs: int = 60
    """Upper bound on passes over the training labels per fit."""
    patience: int = 8
    """Epochs without a better validation loss before a member stops (early stopping)."""
    validation_fraction: float = 0.2
    """Share of the labeled pairs held out to report accuracy and stop early."""
    label_noise: float = 0.1
    """Chance a rater answered at random, in the Bradley-Terry likelihood (the paper's 10%)."""
    input_clip: float = 5.0
    """Standardized observations are clipped to ±input_clip before the network sees them. The statistics come
    from the labels so far, about the states the policy has visited; without a bound, a state far outside them
    (CartPole's cart drifting to the edge: 30 standard deviations out of the first labels) meets the network's
    linear extrapolation, and PPO chases the reward that grows without limit there."""
    terminal_reward: bool = False
    """Learn a reward for how an episode ended: the first step of the absorbing ended state sees the observation
    of the step the episode ended on (the others stay one state), and PPO gets its reward on that step. Without it
    every ending is the same state, so in a task that ends in success or in failure (a lander that lands or
    crashes) the labels about crashes make ending itself look bad, landing included. That step's observation,
    not the one the episode ended in: after a crash the collision has already stopped the lander on its legs,
    where a landing ends too, and the approach speed before it tells them apart. An ending unlike every labeled
    one keeps a reward above the ended state's but not a penalty (RewardEnsemble.rewards)."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides how one RLHF run goes."""

    env_id: str = "CartPole-v1"
    """Gymnasium environment id."""
    labels: int = 100
    """Label budget: pairs the teacher is asked about (skips count)."""
    timesteps: int = 0
    """Env steps for the whole run (segment collection included); 0 picks the env's default."""
    seed: int = 0
    """Seeds the policy, the reward model, the teacher and the envs."""
    teacher: str = "perfect"
    """Synthetic teacher: perfect, stochastic, myopic, skip, equal, mistake or random."""
    teacher_params: dict[str, float] = field(default_factory=dict)
    """Overrides of the teacher's B-Pref parameters (beta, gamma, eps_mistake, eps_skip, eps_equal)."""
    query: str = "informative"
    """Pair selection: informative (ensemble disagreement, episode ends and observation distance, skipping pairs
    known to tie), disagreement (the paper's ensemble variance) or uniform; see worker/pairs.py."""
    segment_length: int = 0
    """Steps per segment; 0 picks the env's default."""
    true_reward: bool = False
    """Train PPO on the environment's own reward (the upper bound) instead of the learned one."""
    device: str = "auto"
    """Torch device for training: auto (CUDA when present), cpu, cuda."""
    exploration_steps: int | None = None
    """Env steps of PEBBLE-style unsupervised pre-training on a state-entropy bonus before the first query
    (worker/exploration.py), so the first pool holds varied behaviour; None picks the env's default."""
    explore_until_trusted: bool | None = None
    """While the reward model is not trusted (worker/loop.py: Learner.fit), train PPO on the state-entropy bonus
    instead of not at all, so the query pool keeps showing new behaviour until the labels say something; None
    picks the env's default (on for envs without tuned settings)."""
    initial_label_fraction: float = 0.25
    """Share of the labels asked at the start, about segments of the initial policy."""
    label_schedule_end: float = 0.75
    """Fraction of the timesteps by which every label has been asked; the rate decays until then."""
    segments_per_rollout: int = 64
    """Segments cut from each PPO rollout into the pool that queries are drawn from."""
    pool_rollouts: int = 4
    """How many recent rollouts' segments the query pool keeps."""
    eval_every: int = 10_000
    """Env steps between evaluations on the true reward."""
    eval_episodes: int = 20
    """Episodes per evaluation on the true reward."""
    policy_snapshots: int = 16
    """Policies kept along the run once labels have come (evenly spaced); the run ends with the one whose
    deterministic episodes score best on the final learned reward, undiscounted. 0 keeps the last policy."""
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """How the reward ensemble is built and trained."""
    ppo: PPOConfig | None = None
    """PPO hyperparameters; None picks the env's tuned ones (`worker.env_settings`)."""

    def resolved(self) -> RunConfig:
        """The same config with env-dependent defaults filled in (timesteps, segment_length, exploration, ppo, and
        the reward model and label schedule end where this config keeps their defaults)."""
        from worker.env_settings import settings_for  # env_settings is built from PPOConfig above

        settings = settings_for(self.env_id)
        defaults = RunConfig()
        # The env's reward model and label schedule apply where this config keeps the plain defaults.
        reward_model = self.reward_model
        if settings.reward_model is not None and reward_model == defaults.reward_model:
            reward_model = settings.reward_model
        schedule_end = self.label_schedule_end
        if settings.label_schedule_end is not None and schedule_end == defaults.label_schedule_end:
            schedule_end = settings.label_schedule_end
        return replace(
            self,
            timesteps=self.timesteps or settings.timesteps,
            segment_length=self.segment_length or settings.segment_length,
            exploration_steps=settings.exploration_steps if self.exploration_steps is None else self.exploration_steps,
            explore_until_trusted=(
                settings.explore_until_trusted if self.explore_until_trusted is None else self.explore_until_trusted
            ),
            ppo=self.ppo or settings.ppo,
            reward_model=reward_model,
            label_schedule_end=schedule_end,
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        """Rebuild from `to_dict()` output; dicts saved before a field existed get its default."""
        ppo = data.get("ppo")
        return cls(
            **{
                **data,
                "reward_model": RewardModelConfig(**data.get("reward_model", {})),
                "ppo": PPOConfig(**ppo) if ppo is not None else None,
            }
        )
