"""Transition-level prioritised replay for MAZero (docs/mazero.md, "Replay").

Episodes are stored contiguously in row tensors that grow (doubling) as they fill, up to `buffer_transitions` rows:
an episode of T transitions takes T + 1 rows, the last one holding the final observation (never sampled). A sampled
row i is a start time t; its unroll window is rows i, i+1, ... clamped to the episode's final row, which is how the
official code pads past the episode end ("observations padded with the last frame"). When the buffer is full the
oldest episodes are overwritten whole.

Sampling is prioritised (P(i) ∝ p_i^alpha, without replacement within a batch), new transitions get the largest
priority seen so far, and the importance weights are (M P(i))^-beta / max over the batch (M = sampleable rows).
`sample_batch` hands the learner everything one update reads as a `MAZeroBatch`; K = unroll_steps and n = td_steps
in its shapes.
"""
from dataclasses import dataclass, fields

import numpy as np
import torch

from config_checks import Int, check_sizes
from mcts.search import SearchStats
from utils.config_record import check_record


@dataclass(frozen=True)
class ReplayConfig:
    """The replay's storage and the batches it samples (docs/mazero.md, "Replay"); fields are config keys."""
    buffer_transitions: int  # capacity in transitions; the oldest episodes are overwritten whole when it is full
    batch_transitions: int  # B, start times per sampled batch (sample_batch)
    unroll_steps: int  # K, unroll steps of each sampled window
    td_steps: int  # n of the n-step value targets: each window reaches n steps past its unroll
    use_off_policy_correction: bool  # shrink n for old transitions (off_policy_td_steps)
    off_policy_age_fraction: float  # replay age per unit of that shrink, as a fraction of t_max
    t_max: int  # env steps of the run (the unit of off_policy_age_fraction)
    per_alpha: float  # alpha of the prioritised sampling P(i) ∝ p_i^alpha
    sampled_actions: int  # K_s, sampled joint actions of each stored search root
    n_agents: int  # N
    n_actions: int  # A, actions per agent
    seed: int  # seed of the sampling RNG

    def __post_init__(self):
        check_record(self, n_agents=Int(1), n_actions=Int(1))
        check_sizes({"buffer_transitions": self.buffer_transitions, "batch_transitions": self.batch_transitions})

    def age_per_step(self):
        """Transitions collected per unit of n-step shrink, a fraction of the run's length (at least 1), or None
        without the correction."""
        if not self.use_off_policy_correction:
            return None
        return max(1.0, self.off_policy_age_fraction * self.t_max)


def off_policy_td_steps(age, td_steps, age_per_step):
    """n' = clip(n - floor(age / age_per_step), 1, n): older transitions bootstrap sooner (docs/mazero.md)."""
    return (td_steps - torch.div(age, age_per_step, rounding_mode="floor").long()).clamp(1, td_steps)


def bootstrap_offsets(steps_left, td_steps, unroll_steps):
    """h_k = min(n', T - (t+k)), 0 past the end: the horizon of the value target at unroll step k.

    steps_left [B] = T - t, td_steps [B] = n'. Returns [B, K+1].
    """
    k = torch.arange(unroll_steps + 1).unsqueeze(0)
    return torch.minimum(td_steps.unsqueeze(1), steps_left.unsqueeze(1) - k).clamp(min=0)


@dataclass
class MAZeroBatch:
    """B sampled start times t with their windows.

    Offsets past the episode's end repeat its final observation, with action 0 and reward 0 (`before_end` False).
    """
    rows: torch.Tensor  # [B] long: replay rows of the start times (for update_priorities)
    is_weights: torch.Tensor  # [B] PER importance-sampling weights
    inputs: torch.Tensor  # [B, K+n+1, N, D] o_{t..t+K+n}
    avail_actions: torch.Tensor  # [B, K+1, N, A] bool: available actions at o_{t..t+K}
    actions: torch.Tensor  # [B, K, N] long: a_{t..t+K-1}
    rewards: torch.Tensor  # [B, K+n] u_{t..t+K+n-1}
    before_end: torch.Tensor  # [B, K+n+1] bool: offset k is a real transition (t+k < T)
    steps_left: torch.Tensor  # [B] long: T - t
    terminated: torch.Tensor  # [B] bool: the episode ended in a true terminal (False: time-out)
    horizons: torch.Tensor  # [B, K+1] long: h_k, the value target's bootstrap offset from t+k (bootstrap_offsets)
    search_stats: SearchStats  # [B, K+1, ...]: self-play search statistics stored at o_{t..t+K}

    def to(self, device):
        return MAZeroBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


# Rows allocated at the start; the storage doubles from there as episodes arrive (docs/mazero.md, "Replay memory").
INITIAL_ROWS = 4096


class MAZeroReplayBuffer:
    TENSOR_FIELDS = ("inputs", "actions", "avail_actions", "rewards", "episode_end", "episode_terminated",
                     "insert_count")
    ARRAY_FIELDS = ("episode_start", "priorities")
    COUNTERS = ("max_priority", "write_pos", "rows_used", "num_transitions", "transitions_collected")

    def __init__(self, config, input_dim):
        """config: ReplayConfig; input_dim: D, the size of one agent's input (the controller's build_inputs)."""
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.input_dim = input_dim
        self.bytes_per_transition = self._row_bytes()
        self.allocated = 0  # rows the storage holds now; it doubles as episodes arrive, up to buffer_transitions
        self._grow(min(config.buffer_transitions, INITIAL_ROWS))
        self.max_priority = 1.0
        self.write_pos = 0
        self.rows_used = 0  # high-water mark: rows beyond it were never written (sampling looks only below it)
        self.num_transitions = 0  # sampleable rows currently stored
        self.transitions_collected = 0

    def new_storage(self, rows):
        """Fresh storage of `rows` rows: {field name: tensor or array}, the search statistics under
        "search_stats"."""
        N, n_actions, sampled_actions = self.config.n_agents, self.config.n_actions, self.config.sampled_actions
        return {
            "inputs": torch.empty(rows, N, self.input_dim),
            "actions": torch.zeros(rows, N, dtype=torch.long),
            "avail_actions": torch.empty(rows, N, n_actions, dtype=torch.bool),
            "rewards": torch.zeros(rows),
            "episode_end": torch.zeros(rows, dtype=torch.long),  # row of the episode's final observation
            "episode_terminated": torch.zeros(rows, dtype=torch.bool),  # False: time-out, bootstrap from o_T
            "insert_count": torch.zeros(rows, dtype=torch.long),  # transitions collected when the row was added
            # Self-play search statistics of each step (used for the non-reanalysed share of policy targets).
            "search_stats": SearchStats.padding((rows,), sampled_actions, N),
            "episode_start": np.full(rows, -1, dtype=np.int64),  # -1: row holds no live episode
            "priorities": np.zeros(rows, dtype=np.float64),  # 0 for final-observation rows and free rows
        }

    def _row_bytes(self):
        """Memory one stored row takes (all fields, search statistics included)."""
        row = self.new_storage(1)
        search_stats = row.pop("search_stats").as_dict().values()
        return sum(value.nbytes for value in row.values()) + sum(value.nbytes for value in search_stats)

    def _grow(self, rows_needed):
        """Reallocates to hold `rows_needed` rows (at least double the current size, at most buffer_transitions),
        keeping the rows written so far; the copy is amortised O(1) per row. Out of memory is an error naming
        buffer_transitions."""
        if rows_needed <= self.allocated:
            return
        rows = min(self.config.buffer_transitions, max(rows_needed, 2 * self.allocated))
        try:
            storage = self.new_storage(rows)
        except (RuntimeError, MemoryError) as exc:
            raise MemoryError(
                f"the MAZero replay cannot grow to {rows} transitions ({rows * self.bytes_per_transition / 1e9:.1f}"
                f" GB; buffer_transitions={self.config.buffer_transitions}): {exc}; lower buffer_transitions") from None
        kept = self.allocated
        if kept:
            storage["search_stats"][:kept] = self.search_stats
            for name in self.TENSOR_FIELDS + self.ARRAY_FIELDS:
                storage[name][:kept] = getattr(self, name)
        for name, value in storage.items():
            setattr(self, name, value)
        self.allocated = rows

    def state_dict(self):
        """Contents (rows below the high-water mark), priorities, counters and the sampling RNG's state."""
        n = self.rows_used
        return {
            "buffer_transitions": self.config.buffer_transitions,
            "tensors": {name: getattr(self, name)[:n].clone() for name in self.TENSOR_FIELDS},
            "search_stats": self.search_stats[:n].clone().as_dict(),
            "arrays": {name: getattr(self, name)[:n].copy() for name in self.ARRAY_FIELDS},
            "counters": {name: getattr(self, name) for name in self.COUNTERS},
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state):
        if state["buffer_transitions"] != self.config.buffer_transitions:
            raise ValueError(f"the checkpoint's replay holds buffer_transitions={state['buffer_transitions']}, this "
                             f"run has buffer_transitions={self.config.buffer_transitions}; resume with the same "
                             f"buffer_transitions")
        n = state["counters"]["rows_used"]
        self._grow(n)
        for name in self.TENSOR_FIELDS:
            getattr(self, name)[:n] = state["tensors"][name]
        self.search_stats[:n] = SearchStats(**state["search_stats"])
        for name in self.ARRAY_FIELDS:
            getattr(self, name)[:n] = state["arrays"][name]
        for name in self.COUNTERS:
            setattr(self, name, state["counters"][name])
        self.rng.bit_generator.state = state["rng"]

    def can_sample(self):
        """Whether a batch of batch_transitions start times can be sampled (training starts then)."""
        return self.num_transitions >= self.config.batch_transitions

    def _free(self, lo, hi):
        """Drop every stored episode that overlaps rows [lo, hi)."""
        starts = np.unique(self.episode_start[lo:hi])
        for start in starts[starts >= 0]:
            end = int(self.episode_end[start])
            self.episode_start[start:end + 1] = -1
            self.priorities[start:end + 1] = 0.0
            self.num_transitions -= end - start

    def add_episode(self, inputs, actions, avail_actions, rewards, terminated, search_stats):
        """Store one episode of T transitions.

        inputs [T+1, N, D], avail_actions [T+1, N, A] (row T: final observation), actions [T, N], rewards [T],
        terminated: bool (False for a time-out), search_stats: SearchStats of [T, ...] tensors.
        """
        T = actions.shape[0]
        rows = T + 1
        if T < 1:
            raise ValueError("cannot store an episode without transitions")
        capacity = self.config.buffer_transitions
        if rows > capacity:
            raise ValueError(f"an episode of {T} steps does not fit in buffer_transitions={capacity}")
        if self.write_pos + rows > capacity:
            self._free(self.write_pos, capacity)
            self.write_pos = 0
        lo, hi = self.write_pos, self.write_pos + rows
        self._grow(hi)
        self._free(lo, hi)
        self.inputs[lo:hi] = inputs
        self.avail_actions[lo:hi] = avail_actions
        self.actions[lo:hi - 1] = actions
        self.actions[hi - 1] = 0  # padding action past the end
        self.rewards[lo:hi - 1] = rewards
        self.rewards[hi - 1] = 0.0
        self.episode_end[lo:hi] = hi - 1
        self.episode_terminated[lo:hi] = bool(terminated)
        self.insert_count[lo:hi] = self.transitions_collected
        self.search_stats[lo:hi - 1] = search_stats
        self.search_stats[hi - 1] = SearchStats.padding((), self.config.sampled_actions, self.config.n_agents)
        self.episode_start[lo:hi] = lo
        self.priorities[lo:hi - 1] = self.max_priority
        self.priorities[hi - 1] = 0.0
        self.write_pos = hi
        self.rows_used = max(self.rows_used, hi)
        self.num_transitions += T
        self.transitions_collected += T

    def sample(self, batch_transitions, per_beta):
        """Prioritised sample without replacement: (rows np [B], importance-sampling weights torch [B])."""
        scaled = self.priorities[:self.rows_used] ** self.config.per_alpha
        probs = scaled / scaled.sum()
        rows = self.rng.choice(self.rows_used, size=batch_transitions, replace=False, p=probs)
        is_weights = (self.num_transitions * probs[rows]) ** (-per_beta)
        is_weights = is_weights / is_weights.max()
        return rows, torch.as_tensor(is_weights, dtype=torch.float32)

    def sample_batch(self, per_beta):
        """A prioritised MAZeroBatch of batch_transitions start times with windows of unroll_steps + td_steps; n
        shrinks with the age of each start time when use_off_policy_correction (off_policy_td_steps)."""
        unroll_steps, td_steps = self.config.unroll_steps, self.config.td_steps
        rows, is_weights = self.sample(self.config.batch_transitions, per_beta)
        rows = torch.as_tensor(rows, dtype=torch.long)
        window, before_end = self.window(rows, unroll_steps + td_steps + 1)  # offsets 0..K+n
        steps_left = self.steps_to_end(rows)
        age_per_step = self.config.age_per_step()
        if age_per_step is None:
            td = torch.full((len(rows),), td_steps, dtype=torch.long)
        else:
            td = off_policy_td_steps(self.transitions_collected - self.insert_count[rows], td_steps, age_per_step)
        return MAZeroBatch(rows=rows, is_weights=is_weights, inputs=self.inputs[window],
                           avail_actions=self.avail_actions[window[:, :unroll_steps + 1]],
                           actions=self.actions[window[:, :unroll_steps]],
                           rewards=self.rewards[window[:, :unroll_steps + td_steps]], before_end=before_end,
                           steps_left=steps_left, terminated=self.episode_terminated[rows],
                           horizons=bootstrap_offsets(steps_left, td, unroll_steps),
                           search_stats=self.search_stats[window[:, :unroll_steps + 1]])

    def update_priorities(self, rows, priorities):
        rows = np.asarray(rows)
        priorities = np.asarray(priorities, dtype=np.float64)
        live = self.episode_start[rows] >= 0  # a row overwritten since it was sampled keeps its new priority
        self.priorities[rows[live]] = priorities[live]
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def window(self, rows, length):
        """Rows i..i+length-1 of each sampled start row, clamped to its episode's final row.

        Returns (row index [B, length] long, before_end [B, length] bool: offset k is a real transition t+k < T).
        """
        start = torch.as_tensor(rows, dtype=torch.long).unsqueeze(1)
        wanted = start + torch.arange(length).unsqueeze(0)
        end = self.episode_end[start]
        return torch.minimum(wanted, end), wanted < end

    def steps_to_end(self, rows):
        """T - t for each sampled start row: transitions left in its episode."""
        rows = torch.as_tensor(rows, dtype=torch.long)
        return self.episode_end[rows] - rows
