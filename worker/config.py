"""Training hyperparameters of one run: a frozen dataclass saved with every result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Env steps per run when --timesteps is not given: enough for PPO on the learned reward to settle.
DEFAULT_TIMESTEPS = {
    "CartPole-v1": 80_000,
    "Acrobot-v1": 150_000,
    "Pendulum-v1": 60_000,
    "MountainCarContinuous-v0": 150_000,
}
FALLBACK_TIMESTEPS = 200_000

# Segment length per env when not given: long enough to contain a failure or a swing-up.
DEFAULT_SEGMENT_LENGTH = {"CartPole-v1": 50, "Acrobot-v1": 50, "Pendulum-v1": 50}
FALLBACK_SEGMENT_LENGTH = 50


@dataclass(frozen=True)
class RewardModelConfig:
    """How the reward ensemble is built and trained."""

    ensemble_size: int = 3
    """Members, each trained on its own bootstrap resample of the labels."""
    hidden_size: int = 64
    """Width of each member's two hidden layers."""
    use_actions: bool = False
    """Feed the action to the reward network as well as the observation."""
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
    query: str = "disagreement"
    """Pair selection: uniform or disagreement (ensemble variance over a larger candidate pool)."""
    segment_length: int = 0
    """Steps per segment; 0 picks the env's default."""
    true_reward: bool = False
    """Train PPO on the environment's own reward (the upper bound) instead of the learned one."""
    device: str = "auto"
    """Torch device for training: auto (CUDA when present), cpu, cuda."""
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
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    """How the reward ensemble is built and trained."""

    def resolved(self) -> RunConfig:
        """The same config with env-dependent defaults filled in."""
        return RunConfig(
            **{
                **asdict(self),
                "timesteps": self.timesteps or DEFAULT_TIMESTEPS.get(self.env_id, FALLBACK_TIMESTEPS),
                "segment_length": self.segment_length
                or DEFAULT_SEGMENT_LENGTH.get(self.env_id, FALLBACK_SEGMENT_LENGTH),
                "reward_model": self.reward_model,
            }
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        return cls(**{**data, "reward_model": RewardModelConfig(**data.get("reward_model", {}))})
