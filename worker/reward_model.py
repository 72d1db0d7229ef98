"""The Bradley-Terry preference model and the ensemble of reward networks trained with it.

P[σ¹ ≻ σ²] = exp(Σr(σ¹)) / (exp(Σr(σ¹)) + exp(Σr(σ²))) = sigmoid(Σr(σ¹) − Σr(σ²)),
mixed with a chance `noise` that the rater answered at random (Christiano et al. 2017, §2.2.3).
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from worker.config import RewardModelConfig
from worker.exploration import knn_distances
from worker.pairs import live_steps
from worker.segments import segment_changes
from worker.types import LabeledPair, Segment


def preference_probability(sum_left: torch.Tensor, sum_right: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """P[left ≻ right] from the two summed rewards; a softmax over the pair, so ±1000 gives 1/0, never NaN."""
    bt = torch.softmax(torch.stack([sum_left, sum_right], dim=-1), dim=-1)[..., 0]
    return (1.0 - noise) * bt + noise * 0.5


def preference_log_probs(
    sum_left: torch.Tensor, sum_right: torch.Tensor, noise: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """log P[left ≻ right] and log P[right ≻ left], computed in log space (log-sum-exp) for stability."""
    log_bt = torch.log_softmax(torch.stack([sum_left, sum_right], dim=-1), dim=-1)
    if noise == 0.0:
        return log_bt[..., 0], log_bt[..., 1]
    # log((1 - ε) p + ε/2) = logaddexp(log(1 - ε) + log p, log(ε/2))
    mixed = torch.logaddexp(log_bt + math.log(1.0 - noise), torch.full_like(log_bt, math.log(noise / 2)))
    return mixed[..., 0], mixed[..., 1]


def preference_loss(
    sum_left: torch.Tensor, sum_right: torch.Tensor, targets: torch.Tensor, noise: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy against soft targets P[left is better] (1, 0, or 0.5 for "equally good")."""
    log_left, log_right = preference_log_probs(sum_left, sum_right, noise)
    return -(targets * log_left + (1.0 - targets) * log_right).mean()


class EnsembleMLP(nn.Module):
    """M independent 2-hidden-layer MLPs evaluated together with batched matrix products.

    Input (M, B, in_dim) → output (M, B). The last layer starts at zero, so an untrained member gives
    the same reward everywhere: no preference, rather than a random one.
    """

    def __init__(self, members: int, in_dim: int, hidden: int, generator: torch.Generator | None = None) -> None:
        super().__init__()
        sizes = [in_dim, hidden, hidden, 1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            weight = torch.empty(members, fan_in, fan_out).uniform_(-bound, bound, generator=generator)
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
        with torch.no_grad():
            self.weights[-1].zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias, x, weight)
            if i < len(self.weights) - 1:
                x = F.leaky_relu(x, 0.01)
        return x.squeeze(-1)


class RewardEnsemble:
    """An ensemble of reward networks r(s[, a]) trained on preferences, with its input normalization.

    Inputs are the observation standardized by statistics of the labeled segments (and clipped), the step's
    change of observation (standardized the same way) when `use_changes`, the action (one-hot for discrete actions)
    when `use_actions`, and an "ended" flag. In the absorbing ended state
    the observation and action features are zero and the flag is one, so the network learns one reward for "the
    episode is over". With `terminal_reward`, a second flag marks the ended state's first step, whose observation
    features are those of the last live step, the state the ending step was taken from: a reward for how the
    episode ended, once per ending. PPO gets it in full only for endings like those the labels have shown (see
    `rewards`).
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        discrete_actions: bool,
        config: RewardModelConfig,
        device: torch.device,
        seed: int,
        terminal_weight: float = 1.0,
    ) -> None:
        """`terminal_weight`: how many steps the reward for how an episode ended (`RewardModelConfig.
        terminal_reward`) counts for, in a segment's sum and in PPO's reward. Counted once, weight decay made the
        network spread what an ending is worth over the ended steps after it instead, so ending itself looked bad
        (LunarLander's crashes made landing look like crashing); a segment that reaches a termination holds
        half its length of ended steps on average, which the Learner passes."""
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.discrete_actions = discrete_actions
        self.config = config
        self.device = device
        self.seed = seed
        self.terminal_weight = terminal_weight
        self.in_dim = (
            obs_dim
            + (obs_dim if config.use_changes else 0)
            + (action_dim if config.use_actions else 0)
            + (2 if config.terminal_reward else 1)
        )
        self.net = EnsembleMLP(config.ensemble_size, self.in_dim, config.hidden_size).to(device)
        self.obs_mean = np.zeros(obs_dim, dtype=np.float32)
        self.obs_std = np.ones(obs_dim, dtype=np.float32)
        self.change_std = np.ones(obs_dim, dtype=np.float32)
        self.validation_accuracy = float("nan")
        self.validation_strict = 0
        self.trusted = False  # no labels yet, nothing to go by: zero reward until set_normalization says so
        self.reward_offset = 0.0
        self.reward_scale = 1.0
        # With `terminal_reward`: the labeled endings' standardized observations, and the median and 90th
        # percentile of the distance from each to its nearest other one (see `ending_familiarity`).
        self.labeled_endings = np.zeros((0, obs_dim), np.float32)
        self.ending_spacing: tuple[float, float] = (0.0, 0.0)

    # ---- features -------------------------------------------------------------------------------------
    def features(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        ended: np.ndarray,
        ending: np.ndarray | None = None,
        changes: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Network input for a batch of steps.

        Args:
            obs: (B, obs_dim) raw observations.
            actions: (B,) discrete or (B, action_dim) continuous actions; ignored unless `use_actions`.
            ended: (B,) bool, True in the absorbing ended state.
            ending: (B,) bool, True at the ended state's first step, whose `obs` is that of the step the episode
                ended on; None: no such step. Seen only with `terminal_reward`.
            changes: (B, obs_dim) raw next observation minus this one, zero where the next one is not known (the
                last step of a segment or rollout, the step an episode ended on); None: all unknown. Seen only
                with `use_changes`.

        Returns:
            (B, in_dim) float32 tensor on the model's device.
        """
        alive = (~ended.astype(bool)).astype(np.float32)[:, None]
        seen = alive  # steps whose observation the network sees
        if self.config.terminal_reward and ending is not None:
            seen = np.maximum(alive, ending.astype(np.float32)[:, None])
        clip = self.config.input_clip
        parts = [np.clip(self._standardize(obs), -clip, clip) * seen]
        if self.config.use_changes:
            if changes is None:
                changes = np.zeros_like(obs, dtype=np.float32)
            parts.append(np.clip(changes.astype(np.float32) / self.change_std, -clip, clip) * alive)
        if self.config.use_actions:
            if self.discrete_actions:
                action_features = np.eye(self.action_dim, dtype=np.float32)[actions.astype(np.int64).reshape(-1)]
            else:
                action_features = actions.astype(np.float32).reshape(len(obs), -1)
            parts.append(action_features * alive)
        parts.append(1.0 - alive)
        if self.config.terminal_reward:
            parts.append(seen - alive)
        return torch.as_tensor(np.concatenate(parts, axis=1), device=self.device)

    def segment_features(self, segments: Sequence[Segment]) -> torch.Tensor:
        """(S, L, in_dim) features of S segments of equal length L."""
        obs = np.stack([s.obs for s in segments])
        actions = np.stack([s.actions for s in segments])
        ended = np.stack([s.ended for s in segments])
        count, length = ended.shape
        changes, _known = segment_changes(obs, ended)
        ending = ended & ~np.pad(ended, ((0, 0), (1, 0)))[:, :-1]  # the first ended step of each segment
        # The ending is seen through the step the episode ended on (a segment starts alive, so there is one).
        obs = np.where(ending[..., None], np.roll(obs, 1, axis=1), obs)
        flat = self.features(
            obs.reshape(count * length, -1),
            actions.reshape(count * length, -1),
            ended.ravel(),
            ending.ravel(),
            changes.reshape(count * length, -1),
        )
        return flat.reshape(count, length, -1)

    # ---- inference ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def member_rewards(self, features: torch.Tensor) -> torch.Tensor:
        """(M, *batch) raw rewards of every member for features of shape (*batch, in_dim)."""
        batch_shape = features.shape[:-1]
        flat = features.reshape(1, -1, features.shape[-1]).expand(self.config.ensemble_size, -1, -1)
        return self._net_rewards(flat).reshape(self.config.ensemble_size, *batch_shape)

    def _net_rewards(self, features: torch.Tensor) -> torch.Tensor:
        """(M, B) each member's reward for its own features (M, B, in_dim), the ended state's first step counted
        `terminal_weight` times."""
        rewards = self.net(features)
        if not self.config.terminal_reward:
            return rewards
        return rewards * (1.0 + (self.terminal_weight - 1.0) * features[..., -1])

    def _no_actions(self, count: int) -> np.ndarray:
        """Action inputs for `count` steps of the ended state (zeroed by `features` anyway)."""
        return np.zeros((count, 1 if self.discrete_actions else self.action_dim))

    def segment_sums(self, segments: Sequence[Segment]) -> np.ndarray:
        """(M, S) each member's summed reward over each segment."""
        return self.member_rewards(self.segment_features(segments)).sum(-1).cpu().numpy()

    def preference_probabilities(self, left: Sequence[Segment], right: Sequence[Segment]) -> np.ndarray:
        """(M, P) each member's P[left ≻ right] for P pairs, without the noise term."""
        sums_left = torch.as_tensor(self.segment_sums(left))
        sums_right = torch.as_tensor(self.segment_sums(right))
        return preference_probability(sums_left, sums_right).numpy()

    def rewards(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        terminated: np.ndarray | None = None,
        changes: np.ndarray | None = None,
    ) -> np.ndarray:
        """Normalized ensemble-mean reward for steps of a rollout, in one batched call.

        Args:
            obs: (T, N, obs_dim) raw observations (never the absorbing state).
            actions: (T, N, *action_shape).
            terminated: (T, N) bool, the step ended its episode; with `terminal_reward`, such a step also gets the
                reward for that ending (the ended state's first step, the one step of it that differs from the
                others, which are worth `reward_offset` when anchored on it). An ending unlike every labeled one
                is not charged what the model extrapolates for it: its penalty shrinks with its distance from
                them (`ending_familiarity`), so a policy is not kept from an outcome the labels have never shown
                (LunarLander's first landing, whose model has seen only crashes).
            changes: (T, N, obs_dim) each step's next observation minus its own, zero where it is not known or
                the episode ended (`observation_changes`); None: all unknown. Read only with `use_changes`.

        Returns:
            (T, N) float32 rewards, shifted by `reward_offset` and divided by `reward_scale`; zeros while the
            model is not `trusted`.
        """
        if not self.trusted:
            return np.zeros(obs.shape[:2], np.float32)
        batch_shape = obs.shape[:2]
        count = batch_shape[0] * batch_shape[1]
        flat_obs = obs.reshape(count, -1)
        flat_changes = None if changes is None else changes.reshape(count, -1)
        feats = self.features(flat_obs, actions.reshape(count, -1), np.zeros(count, dtype=bool), None, flat_changes)
        raw = self.member_rewards(feats).mean(0).cpu().numpy()
        if self.config.terminal_reward and terminated is not None:
            ends = terminated.reshape(count)
            if ends.any():
                last = flat_obs[ends]
                everywhere = np.ones(len(last), dtype=bool)
                ending = self.features(last, self._no_actions(len(last)), everywhere, everywhere)
                worth = self.member_rewards(ending).mean(0).cpu().numpy() - self.reward_offset
                raw[ends] += np.where(worth < 0, worth * self.ending_familiarity(last), worth)
        return ((raw - self.reward_offset) / self.reward_scale).reshape(batch_shape).astype(np.float32)

    def ending_familiarity(self, last_obs: np.ndarray) -> np.ndarray:
        """(B,) how like the labeled endings an ending is, from 1 to 0, given the observations of the steps the
        episodes ended on: 1 within the median distance between labeled endings and their nearest neighbours, 0
        beyond the 90th percentile, linear between (in standardized observation units). 0 when the labels hold
        fewer than two endings: nothing about endings has been learned to be trusted."""
        if len(self.labeled_endings) < 2:
            return np.zeros(len(last_obs))
        nearest = knn_distances(self._standardize(last_obs), self.labeled_endings, k=1, exclude_self=False)
        typical, far = self.ending_spacing
        return np.clip((far - nearest) / max(far - typical, 1e-6), 0.0, 1.0)

    def _standardize(self, obs: np.ndarray) -> np.ndarray:
        return (obs.astype(np.float32) - self.obs_mean) / self.obs_std

    def _remember_endings(self, pairs: Sequence[LabeledPair]) -> None:
        """Keep the labeled segments' endings (see `ending_familiarity`)."""
        lasts = [s.obs[live - 1] for p in pairs for s in (p.left, p.right) if 0 < (live := live_steps(s)) < len(s)]
        # Overlapping segments share endings: each counts once, else its nearest neighbour is itself.
        self.labeled_endings = np.unique(self._standardize(np.array(lasts).reshape(-1, self.obs_dim)), axis=0)
        if len(self.labeled_endings) < 2:
            return
        spacing = knn_distances(self.labeled_endings, self.labeled_endings, k=1, exclude_self=True)
        typical, far = np.percentile(spacing, [50, 90])
        self.ending_spacing = (float(typical), float(far))

    def set_normalization(
        self, recent_segments: Sequence[Segment], anchor_on_ended: bool, trusted: bool = True
    ) -> None:
        """Fix the offset and scale of the rewards given to PPO from recent segments.

        The offset matters more than it looks when an agent can end its episode: PPO gives a terminated episode
        zero value from then on, and the reward model's own view of "after the end" is the absorbing state's
        reward. Shifting by that reward (`anchor_on_ended`) keeps the two consistent, so ending is worth
        exactly what the labels said it is; shifting to zero mean instead would turn "stay alive" into "die
        fast" whenever the average learned reward is below the absorbing one. Without terminations we centre
        on the mean.

        The scale is the root mean square of the shifted rewards over the recent segments' live steps: the std
        when centred on the mean, and about 1 per step for a CartPole-like "alive beats ended" reward (whose
        std alone may be tiny, which would blow the rewards up).

        Scaling to unit size also amplifies a model that learned nothing but noise (random labels fit by chance)
        into a reward PPO will chase; an untrusted model gives zero reward instead.
        """
        self.trusted = trusted
        feats = self.segment_features(recent_segments)
        alive = ~torch.as_tensor(np.stack([s.ended for s in recent_segments]), device=self.device)
        step_rewards = self.member_rewards(feats).mean(0)[alive]
        if anchor_on_ended:
            absorbing = self.features(np.zeros((1, self.obs_dim), np.float32), self._no_actions(1), np.ones(1, bool))
            self.reward_offset = float(self.member_rewards(absorbing).mean())
        else:
            self.reward_offset = float(step_rewards.mean())
        rms = float(torch.sqrt(torch.mean((step_rewards - self.reward_offset) ** 2))) if step_rewards.numel() else 0.0
        # An uninformative model (all rewards equal) stays at zero reward instead of amplified noise.
        self.reward_scale = rms if rms > 1e-6 else 1.0

    # ---- training -------------------------------------------------------------------------------------
    def fit(self, pairs: Sequence[LabeledPair]) -> dict[str, float]:
        """Train every member on all labeled pairs so far (skips dropped), with early stopping.

        `pairs` are the labels to train on now: a later call may add pairs and drop others (an undone label).
        Which split a pair joins and its bootstrap weights depend only on its `key` and the model's seed.

        Every fit starts afresh from the same initial weights, on input statistics of the labels it trains on,
        so the same labels always give the same model. Members see their own bootstrap resample of the training
        split. A held-out validation split, shared by the members, decides when each stops — the untrained
        network (a zero reward) counts as a candidate, so labels that teach nothing leave no preference — and
        gives the reported accuracy.

        Returns:
            Namespaced metrics: reward/val_accuracy, reward/val_loss, reward/train_pairs, reward/epochs.
        """
        # A pair's split is a function of its key, so it stays the same in every fit whatever else is added or
        # removed, and the accuracy reported from fit to fit is always measured on pairs never trained on.
        members = self.config.ensemble_size
        draws = {p.key: self._pair_draws(p.key) for p in pairs}
        trainable = [p for p in pairs if p.target is not None]
        train_pairs = [p for p in trainable if not draws[p.key][0]]
        val_pairs = [p for p in trainable if draws[p.key][0]]
        if not train_pairs:
            return {}
        # Statistics frozen at the first labels went wrong as the policy learned: CartPole's cart keeps within
        # ±0.3 of the centre in the first labels and later ranges over ±2.4, all of it squashed into the input
        # clip, where the reward is whatever the network says at the edge of what it saw — and PPO drove the cart
        # there. Refreshed statistics put the states the policy visits now inside what the network was fit on.
        self._fit_input_normalization(train_pairs)
        if self.config.terminal_reward:
            self._remember_endings(train_pairs)
        generator = torch.Generator().manual_seed(self.seed)
        self.net = EnsembleMLP(members, self.in_dim, self.config.hidden_size, generator).to(self.device)
        optimizer = torch.optim.AdamW(
            self.net.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )

        left, right, targets = self._tensors(train_pairs)
        # (M, n) each member's bootstrap resample of the training pairs: pair i appears as often as its Poisson(1)
        # count for that member says (the counts come from its key), cut or cycled to n draws.
        counts = np.stack([draws[p.key][1] for p in train_pairs], axis=1)
        order = np.random.default_rng(self.seed)
        resamples = []
        everyone = np.arange(len(train_pairs))
        for member_counts in counts:
            drawn = np.repeat(everyone, member_counts) if member_counts.any() else everyone
            resamples.append(np.resize(order.permutation(drawn), len(train_pairs)))
        bootstrap = torch.as_tensor(np.stack(resamples))
        val = self._tensors(val_pairs) if val_pairs else (left, right, targets)
        best_loss = self._member_losses(*val)
        best_state = copy.deepcopy(self.net.state_dict())
        since_best = torch.zeros(members, dtype=torch.long)
        epochs_run = 0
        batch = self.config.batch_size
        for epoch in range(1, self.config.max_epochs + 1):
            epochs_run = epoch
            shuffled = bootstrap[:, torch.randperm(len(train_pairs), generator=generator)]
            for start in range(0, len(train_pairs), batch):
                mb_idx = shuffled[:, start : start + batch].to(self.device)  # (M, b)
                mb_sum_left = self._sums(left[mb_idx])
                mb_sum_right = self._sums(right[mb_idx])
                loss = preference_loss(mb_sum_left, mb_sum_right, targets[mb_idx], self.config.label_noise)
                optimizer.zero_grad(set_to_none=True)
                (loss * members).backward()  # each member's own mean loss
                optimizer.step()
            val_loss = self._member_losses(*val)
            improved = val_loss < best_loss - 1e-4
            best_loss = torch.where(improved, val_loss, best_loss)
            since_best = torch.where(improved, 0, since_best + 1)
            self._keep_improved_members(best_state, improved)
            if bool((since_best >= self.config.patience).all()):
                break
        self.net.load_state_dict(best_state)

        metrics = {"reward/train_pairs": float(len(train_pairs)), "reward/epochs": float(epochs_run)}
        if val_pairs:
            metrics["reward/val_loss"] = float(best_loss.mean())
            metrics["reward/val_accuracy"] = self.validation_accuracy = self.accuracy(val_pairs)
            self.validation_strict = sum(p.choice in ("left", "right") for p in val_pairs)
        return metrics

    @property
    def beats_chance(self) -> bool:
        """Held-out accuracy above chance by two standard errors (no verdict yet, under 5 labels, counts as True)."""
        n = self.validation_strict
        if n < 5 or not math.isfinite(self.validation_accuracy):
            return True
        return self.validation_accuracy > 0.5 + 2 * math.sqrt(0.25 / n)

    def accuracy(self, pairs: Sequence[LabeledPair]) -> float:
        """Share of strict (left/right) labels whose side the ensemble mean prefers; NaN if there are none."""
        strict = [p for p in pairs if p.choice in ("left", "right")]
        if not strict:
            return float("nan")
        probs = self.preference_probabilities([p.left for p in strict], [p.right for p in strict]).mean(0)
        said_left = np.array([p.choice == "left" for p in strict])
        return float(np.mean((probs > 0.5) == said_left))

    def _pair_draws(self, key: int | str) -> tuple[bool, np.ndarray]:
        """Whether the pair with this key is validated on, and its (M,) int bootstrap counts per member."""
        digest = hashlib.blake2b(f"{self.seed}:{key!r}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "little"))
        validated = bool(rng.random() < self.config.validation_fraction)
        return validated, rng.poisson(1.0, self.config.ensemble_size)

    def _fit_input_normalization(self, pairs: Sequence[LabeledPair]) -> None:
        live_obs = np.concatenate([s.obs[~s.ended] for p in pairs for s in (p.left, p.right)])
        if len(live_obs) > 1:
            self.obs_mean = live_obs.mean(0).astype(np.float32)
            self.obs_std = (live_obs.std(0) + 1e-6).astype(np.float32)
        if self.config.use_changes:
            segments = [s for p in pairs for s in (p.left, p.right)]
            changes, known = segment_changes(np.stack([s.obs for s in segments]), np.stack([s.ended for s in segments]))
            if known.sum() > 1:
                self.change_std = (changes[known].std(0) + 1e-6).astype(np.float32)

    def _tensors(self, pairs: Sequence[LabeledPair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        left = self.segment_features([p.left for p in pairs])
        right = self.segment_features([p.right for p in pairs])
        targets = torch.tensor([p.target for p in pairs], dtype=torch.float32, device=self.device)
        return left, right, targets

    def _sums(self, features: torch.Tensor) -> torch.Tensor:
        """(M, b) summed rewards from per-member features of shape (M, b, L, in_dim)."""
        members, count, length, in_dim = features.shape
        rewards = self._net_rewards(features.reshape(members, count * length, in_dim))
        return rewards.reshape(members, count, length).sum(-1)

    @torch.no_grad()
    def _member_losses(self, left: torch.Tensor, right: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(M,) each member's mean loss on the given pairs."""
        members = self.config.ensemble_size
        sums_left = self._sums(left.unsqueeze(0).expand(members, -1, -1, -1))
        sums_right = self._sums(right.unsqueeze(0).expand(members, -1, -1, -1))
        log_left, log_right = preference_log_probs(sums_left, sums_right, self.config.label_noise)
        return -(targets * log_left + (1.0 - targets) * log_right).mean(-1).cpu()

    def _keep_improved_members(self, best_state: dict[str, torch.Tensor], improved: torch.Tensor) -> None:
        # Parameters hold all members stacked on dim 0; copy only the members that just improved.
        for name, value in self.net.state_dict().items():
            best_state[name][improved.to(value.device)] = value[improved.to(value.device)]

    # ---- persistence ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        return {
            "net": self.net.state_dict(),
            "obs_mean": self.obs_mean,
            "obs_std": self.obs_std,
            "change_std": self.change_std,
            "reward_offset": self.reward_offset,
            "reward_scale": self.reward_scale,
            "validation_accuracy": self.validation_accuracy,
            "validation_strict": self.validation_strict,
            "trusted": self.trusted,
            "labeled_endings": self.labeled_endings,
            "ending_spacing": self.ending_spacing,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.obs_mean = np.asarray(state["obs_mean"], dtype=np.float32)
        self.obs_std = np.asarray(state["obs_std"], dtype=np.float32)
        self.change_std = np.asarray(state.get("change_std", self.change_std), dtype=np.float32)
        self.reward_offset = float(state["reward_offset"])
        self.reward_scale = float(state["reward_scale"])
        self.validation_accuracy = float(state["validation_accuracy"])
        self.validation_strict = int(state.get("validation_strict", 0))
        self.trusted = bool(state.get("trusted", True))
        self.labeled_endings = np.asarray(state.get("labeled_endings", self.labeled_endings), dtype=np.float32)
        typical, far = state.get("ending_spacing", self.ending_spacing)
        self.ending_spacing = (float(typical), float(far))
