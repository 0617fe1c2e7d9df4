"""Learner registry (key `learner`): constructors called as REGISTRY[name](mac, scheme, logger, args)."""
from learners.mazero_learner import MAZeroLearner
from learners.ppo_learner import PPOLearner
from learners.q_learner import QLearner

REGISTRY = {
    "q_learner": QLearner,
    "mazero_learner": MAZeroLearner,
    "ppo_learner": PPOLearner,
}
