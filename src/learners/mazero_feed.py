"""The data path of MAZero's training, which the run loop drives: replay → reanalysis → `learner.update(batch,
targets)` → priorities back to the replay (docs/mazero.md, "Run loop"; docs/mazero_scaleout.md).

`TrainingFeed` samples `reanalyse_prefetch` batches ahead of the one trained on from the prioritised replay and
hands each, with the number of the update that will train on it, to a `ReanalysisPool` (in process, or on
`reanalyse_workers` Ray actors); `train_step` takes the oldest batch with its policy targets, has the learner make
its update and writes the returned priorities back. The learner holds the model and its target network and knows
nothing of the replay; the feed reads from it only its update count, PER beta and target network.
"""
import torch

import learners.mazero_learner as mazero_learner
from components.mazero_replay import MAZeroBatch
from learners.mazero_reanalyse import ReanalysisPool
from mcts.search import MCTSSearch, SearchStats
from utils.checkpoint import load_state

REANALYSIS_FILE = "reanalysis_queue.th"  # the prefetched batches and their targets (TrainingFeed.state_dict)


class TrainingFeed:
    """config: ReanalysisConfig; replay: MAZeroReplayBuffer (which says what a batch holds); learner:
    MAZeroLearner."""

    def __init__(self, config, replay, learner):
        self.config, self.replay, self.learner = config, replay, learner
        self.search = MCTSSearch(config.search, seed=config.seed + 1)  # the in-process reanalysis search
        # looked up now, so that a test may stand another function in for it
        self.reanalysis = ReanalysisPool(config, learner.target_model, self.search,
                                         mazero_learner.reanalyse_policy_targets)
        self.target_version = learner.target_version  # of the target network the pool holds

    def time_spent(self):
        """Cumulative wall-clock seconds by part of the run's time profile: reanalysis, computed or waited for."""
        return {"reanalyse_search": self.reanalysis.seconds}

    def next(self):
        """The oldest prefetched batch (CPU) and its policy targets; first tops the queue up to reanalyse_prefetch
        batches beyond it, each submitted with the number of the update that trains on it and reanalysed with the
        target network in force now."""
        learner = self.learner
        if learner.target_version != self.target_version:
            self.reanalysis.refresh(learner.target_model)
            self.target_version = learner.target_version
        while len(self.reanalysis) <= self.config.reanalyse_prefetch:
            batch = self.replay.sample_batch(learner.per_beta())
            self.reanalysis.submit(batch, learner.update_count + len(self.reanalysis))
        return self.reanalysis.next()

    def train_step(self, t_env):
        """One update: the next batch and its targets to the learner, its priorities back to the replay."""
        batch, policy = self.next()
        priorities = self.learner.update(batch, policy, t_env)
        self.replay.update_priorities(batch.rows, priorities)

    def state_dict(self):
        """The batches in flight with their targets (ReanalysisPool.state_dict: waits for the workers)."""
        return self.reanalysis.state_dict()

    def load_state_dict(self, state):
        self.reanalysis.load_state_dict(state)

    def save(self, path):
        torch.save(self.state_dict(), f"{path}/{REANALYSIS_FILE}")

    def load(self, path):
        """Loads save(path); a checkpoint written before prefetching has no such file and starts an empty queue."""
        try:
            state = load_state(f"{path}/{REANALYSIS_FILE}", allowed=(MAZeroBatch, mazero_learner.PolicyTargets,
                                                                     SearchStats))
        except FileNotFoundError:
            return
        self.load_state_dict(state)

    def close(self):
        """Stops the reanalysis workers (if any)."""
        self.reanalysis.close()
