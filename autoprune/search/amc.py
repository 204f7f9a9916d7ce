"""`search=amc`: a DDPG agent that prunes layer by layer (after AMC, He et al., ECCV 2018).

An episode walks the prunable groups in model order. At each group the agent sees the layer
(position, kind, channels, kernel, stride, share of the MACs, share of the latency) and the
episode so far (latency removed, latency still removable, previous ratio) and answers with a
continuous ratio for the group's structured strategy. The trial prunes with those ratios and
fine-tunes; its validation metric relative to the base model's (value / base when maximised,
base / value when minimised: 1 when as good), less any overshoot of the budget, is the reward
of every step of the episode (AMC's setting: one reward at the end, no discount, so the
critic regresses the episode's reward directly and the actor climbs the critic).

Beyond the paper, the agent is conditioned on a latency budget (a fraction of the base
model's latency) drawn afresh for each episode from [budget_min, budget_max]: one search
learns the whole accuracy/latency trade-off and its episodes trace a front instead of one
point. The "action wall" keeps every episode inside its budget: from the latency model's
per-group savings it raises a group's ratio to the least that still lets the remaining
groups, pruned as far as allowed, reach the budget; where measured latencies show that the
model's savings come true only in part, the wall asks for correspondingly more. Trials the
agent did not propose (enqueued seeds, trials of a resumed study) are learned from too,
labelled with the budget they achieved.

It is an Optuna sampler, so storage, resume, Ray Tune and MLflow work as for any other.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from autoprune.pruning.policy import RATIO_SUFFIX, STRATEGY_SUFFIX, UNPRUNED
from autoprune.search.amc_features import GroupFeatures
from autoprune.search.amc_options import AgentOptions
from autoprune.search.samplers import PlannedSampler
from autoprune.tasks import Objective


def _mlp(inputs: int, hidden: int, out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                               nn.ReLU(), nn.Linear(hidden, 1)]
    if out is not None:
        layers.append(out)
    return nn.Sequential(*layers)


@dataclass
class Episode:
    budget: float
    states: list[list[float]]
    actions: list[float]  # normalised to [0, 1] of the ratio range
    params: dict[str, Any]


class AMCSampler(PlannedSampler):
    """The agent as an Optuna sampler: one episode per trial, learning in `after_trial`."""

    def __init__(self, features: Sequence[GroupFeatures], space: Any, base_latency_ms: float,
                 options: Mapping[str, Any], seed: int, budget_cap: float = 1.0,
                 objective: Objective | None = None, reference: float = 1.0) -> None:
        super().__init__(seed)
        self.objective = objective or Objective("accuracy", "maximize")
        self.reference = reference  # the base model's metric: rewards are relative to it
        self.features = list(features)
        self.space = space
        self.base_latency_ms = base_latency_ms
        self.options = AgentOptions.from_dict(options)
        self.rng = random.Random(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.budget_cap = budget_cap
        self.driven = [f for f in self.features if f.strategy is not None]
        state_size = len(self.features[0].static) + 5 if self.features else 1
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.actor = _mlp(state_size, self.options.hidden, nn.Sigmoid())
            self.critic = _mlp(state_size + 1, self.options.hidden)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.options.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.options.critic_lr)
        self.memory: list[tuple[list[float], float, float]] = []  # (state, action, reward)
        self.episodes: dict[int, Episode] = {}
        self.learned = 0  # episodes learned from
        self.seen: set[int] = set()  # trial numbers learned from
        self.baseline: float | None = None
        # Measured over predicted latency saving of finished trials: the wall's correction.
        self.saving_ratios: list[float] = []

    # --- the episode -----------------------------------------------------------------------
    def _state(self, f: GroupFeatures, budget: float, done: float, rest: float,
               previous: float) -> list[float]:
        return [*f.static, budget, done, rest, previous, 1.0 - budget - done]

    def correction(self) -> float:
        """How much of the latency model's predicted saving the measurements showed (median
        over finished trials; 1 until there are any)."""
        if not self.saving_ratios:
            return 1.0
        return min(max(statistics.median(self.saving_ratios), 0.2), 2.0)

    def reachable(self) -> float:
        """The smallest latency fraction the (corrected) latency model says is reachable."""
        return max(1.0 - self.correction() * sum(self._most(f) for f in self.driven), 0.0)

    def _most(self, f: GroupFeatures) -> float:
        """The latency fraction group `f` removes at the largest ratio it may take."""
        return f.saving(self._range(f)[1])

    def _range(self, f: GroupFeatures) -> tuple[float, float]:
        """The ratios group `f` may take: a removal is 0 or 1, a ratio its grid's range."""
        if f.binary:
            return 0.0, 1.0
        return self.space.ratio_min, self.space.ratio_high(f.gid)

    def _budget(self) -> float:
        # A model the latency model cannot make much faster still gets a range of budgets.
        lo = max(self.options.budget_min, self.reachable())
        hi = min(max(self.options.budget_max, (1.0 + lo) / 2), self.budget_cap)
        return self.rng.uniform(min(lo, hi), hi)

    def _walk(self, budget: float, choose, wall: bool = True) -> Episode:  # noqa: ANN001
        """Run the groups in order; `choose(state, floor)` returns the normalised action, and
        with `wall` no ratio goes below the action wall's floor."""
        # Predicted savings the measurements bear out only in part: ask the model for more.
        need = (1.0 - budget) / self.correction()
        done, previous = 0.0, 0.0
        episode = Episode(budget, [], [], {})
        rest = sum(self._most(f) for f in self.driven)
        for f in self.features:
            if f.strategy is None:
                continue
            rest -= self._most(f)
            lo, hi = self._range(f)
            state = self._state(f, budget, done, rest, previous)
            # The action wall: at least what the remaining groups cannot make up.
            floor = f.ratio_for(need - done - rest, lo, hi)
            action = choose(state, (floor - lo) / (hi - lo) if hi > lo else 0.0)
            ratio = lo + action * (hi - lo)
            if wall:
                ratio = max(ratio, floor)
            if f.binary:
                ratio = 1.0 if ratio >= 0.5 else 0.0
            episode.states.append(state)
            episode.actions.append((ratio - lo) / (hi - lo) if hi > lo else 0.0)
            episode.params[f.gid] = ratio
            done += f.saving(ratio)
            previous = episode.actions[-1]
        return episode

    def _propose(self) -> Episode:
        budget = self._budget()
        warm = self.learned < self.options.warmup_episodes
        sigma = self.options.noise * self.options.noise_decay ** max(
            self.learned - self.options.warmup_episodes, 0)

        def choose(state: list[float], floor: float) -> float:
            if warm:
                return self.rng.uniform(floor, 1.0)
            with torch.no_grad():
                mean = float(self.actor(torch.tensor([state]))[0, 0])
            for _ in range(100):  # truncated normal around the actor's answer
                value = self.rng.gauss(mean, sigma) if sigma > 0 else mean
                if 0.0 <= value <= 1.0:
                    return value
            return min(max(mean, 0.0), 1.0)

        return self._walk(budget, choose)

    def _params(self, episode: Episode) -> dict[str, Any]:
        """Optuna params of an episode: ratios snapped to the space's grid."""
        params: dict[str, Any] = {}
        lo, step = self.space.ratio_min, self.space.step
        for f in self.features:
            names = self.space.choices.get(f.gid, ())
            if f.strategy is None:
                if len(names) > 1:
                    params[f.gid + STRATEGY_SUFFIX] = UNPRUNED if UNPRUNED in names else names[0]
                continue
            ratio = episode.params[f.gid]
            if f.binary:
                if len(names) > 1:
                    params[f.gid + STRATEGY_SUFFIX] = f.strategy if ratio >= 0.5 else UNPRUNED
                continue
            # Round up: a ratio below the wall's floor could leave the budget.
            snapped = lo + math.ceil((ratio - lo) / step - 1e-9) * step
            if len(names) > 1:
                params[f.gid + STRATEGY_SUFFIX] = f.strategy
            params[f.gid + RATIO_SUFFIX] = round(min(snapped, self.space.ratio_high(f.gid)), 10)
        return params

    # --- Optuna's sampler interface ---------------------------------------------------------
    def plan(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """The trial's episode (proposed on first use, after catching up with the study)."""
        if trial.number not in self.episodes:
            self._catch_up(study)
            episode = self._propose()
            episode.params = self._params(episode)
            self.episodes[trial.number] = episode
        return self.episodes[trial.number].params

    def _catch_up(self, study: optuna.Study) -> None:
        """Learn from the study's completed trials this agent has not seen: those of a study
        that is being resumed."""
        for done in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if done.number not in self.seen:
                self.after_trial(study, done, TrialState.COMPLETE, done.values)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        if state != TrialState.COMPLETE or not values or trial.number in self.seen:
            return
        self.seen.add(trial.number)
        quality = self.objective.ratio(self.reference, float(values[0]))
        latency_ms = float(values[1])
        ratios = self._ratios(trial.params)
        proposed = self.episodes.pop(trial.number, None)
        if proposed is not None:
            budget = proposed.budget
        else:  # not proposed by the agent: label it with the budget it achieved
            budget = 1.0 - sum(f.saving(ratios[f.gid]) for f in self.driven)
        episode = self._walk(budget, _Replay(self, ratios), wall=False)
        overshoot = max(latency_ms / self.base_latency_ms - budget, 0.0)
        predicted = sum(f.saving(ratios[f.gid]) for f in self.driven)
        if predicted > 0.05:
            self.saving_ratios.append((1.0 - latency_ms / self.base_latency_ms) / predicted)
        self.learn(episode, quality - overshoot)

    def _ratios(self, params: Mapping[str, Any]) -> dict[str, float]:
        ratios = {}
        for f in self.driven:
            names = self.space.choices.get(f.gid, ())
            strategy = params.get(f.gid + STRATEGY_SUFFIX, names[0] if len(names) == 1 else None)
            if f.binary:
                ratios[f.gid] = 1.0 if strategy == f.strategy else 0.0
            else:
                ratios[f.gid] = float(params.get(f.gid + RATIO_SUFFIX, 0.0)) \
                    if strategy == f.strategy else self.space.ratio_min
        return ratios

    # --- learning ---------------------------------------------------------------------------
    def learn(self, episode: Episode, reward: float) -> None:
        """Store the episode's steps with its reward (less a moving baseline) and update."""
        self.baseline = reward if self.baseline is None else \
            0.9 * self.baseline + 0.1 * reward
        advantage = reward - self.baseline
        self.memory += [(s, a, advantage) for s, a in zip(episode.states, episode.actions,
                                                          strict=True)]
        self.learned += 1
        if not self.memory:
            return
        for _ in range(self.options.updates_per_episode):
            batch = [self.memory[self.rng.randrange(len(self.memory))]
                     for _ in range(min(self.options.batch_size, len(self.memory)))]
            states = torch.tensor([b[0] for b in batch])
            actions = torch.tensor([[b[1]] for b in batch])
            rewards = torch.tensor([[b[2]] for b in batch])
            # Critic: one reward at the end and no discount, so the return is the reward.
            q = self.critic(torch.cat([states, actions], dim=1))
            critic_loss = nn.functional.mse_loss(q, rewards)
            self.critic_opt.zero_grad()
            critic_loss.backward()
            self.critic_opt.step()
            # Actor: up the critic's gradient.
            actor_loss = -self.critic(torch.cat([states, self.actor(states)], dim=1)).mean()
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()


class _Replay:
    """`choose` for `_walk` that replays a trial's ratios (as normalised actions)."""

    def __init__(self, sampler: AMCSampler, ratios: Mapping[str, float]) -> None:
        self.actions = []
        for f in sampler.driven:
            lo, hi = sampler._range(f)
            self.actions.append((ratios[f.gid] - lo) / (hi - lo) if hi > lo else 0.0)
        self.index = 0

    def __call__(self, state: list[float], floor: float) -> float:
        action = self.actions[self.index]
        self.index += 1
        return action
