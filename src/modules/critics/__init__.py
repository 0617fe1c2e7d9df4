"""Critic registry (key `critic_type`) for actor-critic learners: REGISTRY[name](scheme, args)."""
REGISTRY = {}
