"""Critic registry (key `critic_type`) for actor-critic learners: REGISTRY[name](scheme, args)."""
from modules.critics.ac_critic import ACCritic
from modules.critics.cv_critic import CentralVCritic

REGISTRY = {
    "cv_critic": CentralVCritic,
    "ac_critic": ACCritic,
}
