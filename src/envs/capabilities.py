"""What each env and learner supports beyond the team-reward training loop: per-agent rewards and replays.

EPyMARL's semantics: `common_reward: True` gives every env one team reward (per-agent rewards combined by
`reward_scalarisation`); `common_reward: False` stores one reward per agent, for the learners that can train on
it (IQL, IPPO, MAPPO) and the envs that give it (gymma: lbforaging, rware, PettingZoo). `save_replay: True` with
`evaluate: True` asks the env to save a replay of the evaluation episodes (StarCraft II only).
"""

REWARD_SCALARISATIONS = ("sum", "mean")

# envs whose constructor takes common_reward and reward_scalarisation (they see one reward per agent)
PER_AGENT_REWARD_ENVS = ("gymma",)

# envs that can save a replay of the episodes they played
REPLAY_ENVS = ("sc2", "sc2v2")

# (learner, mixer) -> why it needs one team reward; a mixer of None matches any mixer
COMMON_REWARD_ONLY = {
    ("q_learner", "qmix"): "QMIX mixes the agents' utilities into one joint Q-value trained on the team reward",
    ("q_learner", "vdn"): "VDN sums the agents' utilities into one joint Q-value trained on the team reward",
    ("mazero_learner", None): "MAZero's centralised model predicts one team reward and one team value",
}


def common_reward_refusal(learner, mixer):
    """Why `learner` (with `mixer`) cannot train on per-agent rewards, or None when it can."""
    return COMMON_REWARD_ONLY.get((learner, mixer)) or COMMON_REWARD_ONLY.get((learner, None))


def check_reward_and_replay_keys(config):
    """Raises ValueError naming the key when common_reward, reward_scalarisation or save_replay cannot work."""
    if config["reward_scalarisation"] not in REWARD_SCALARISATIONS:
        raise ValueError(f"reward_scalarisation must be one of {', '.join(REWARD_SCALARISATIONS)}, "
                         f"got {config['reward_scalarisation']!r}")
    if not isinstance(config["common_reward"], bool):
        raise ValueError(f"common_reward must be True or False, got {config['common_reward']!r}")
    if not config["common_reward"]:
        reason = common_reward_refusal(config.get("learner"), config.get("mixer"))
        if reason:
            raise ValueError(f"common_reward=False is not supported by {config['name']}: {reason}. Use IQL, IPPO "
                             "or MAPPO for per-agent rewards, or set common_reward=True")
        if config["env"] not in PER_AGENT_REWARD_ENVS:
            raise ValueError(f"common_reward=False needs an env with per-agent rewards "
                             f"({', '.join(PER_AGENT_REWARD_ENVS)}); env {config['env']!r} gives one team reward")
    if config["save_replay"]:
        if config["env"] not in REPLAY_ENVS:
            raise ValueError(f"save_replay=True: env {config['env']!r} cannot save replays; only StarCraft II "
                             f"envs can ({', '.join(REPLAY_ENVS)})")
        if not config["evaluate"]:
            raise ValueError("save_replay=True saves the replay of an evaluation: set evaluate=True "
                             "(and checkpoint_path to the model to watch)")


def reward_env_args(env_key, common_reward, reward_scalarisation):
    """The reward keywords the env's constructor takes (none for envs that give one team reward)."""
    if env_key in PER_AGENT_REWARD_ENVS:
        return {"common_reward": common_reward, "reward_scalarisation": reward_scalarisation}
    return {}
