"""Learner registry (key `learner`). EPyMARL's learners are built as REGISTRY[name](mac, scheme, logger, args) by
run/default_run.py; MAZero's, which only `run: mazero` accepts (config_checks.check_registry_parts), as
REGISTRY[name](mac, logger, LearnerConfig) by run/mazero_run.py."""
from learners.mazero_learner import MAZeroLearner
from learners.ppo_learner import PPOLearner
from learners.q_learner import QLearner

REGISTRY = {
    "q_learner": QLearner,
    "mazero_learner": MAZeroLearner,
    "ppo_learner": PPOLearner,
}
