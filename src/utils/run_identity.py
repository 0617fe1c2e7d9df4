"""What identifies a run: its unique token (the name of its checkpoint and TensorBoard folders) and what its
checkpoints were trained on (compared with the loading run's before any weights are loaded)."""
import datetime
import secrets

# trained_on fields a loading run must share with the checkpoint: the env and map, the shapes the networks were
# built for, and the registry keys that choose which networks exist (so mazero and mazero_cpu checkpoints, which
# differ in budgets only, load into each other)
MUST_MATCH = ("env", "map_name", "key", "n_agents", "obs_shape", "state_shape", "n_actions",
              "learner", "mac", "agent", "mixer", "critic_type", "model")


def unique_token(name, seed, env_label, now=None):
    """`{name}_seed{seed}_{env_label}_{time to the second}_{8 random hex digits}`.

    The random part keeps runs started in the same second with the same seed (a fixed-seed sweep) apart: each gets
    its own results/models/<token>/ (so no run saves into, or cleans up, another's checkpoints) and tb_logs/<token>/.
    """
    stamp = (now or datetime.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    return f"{name}_seed{seed}_{env_label}_{stamp}_{secrets.token_hex(4)}"


def trained_on(args):
    """What a checkpoint of this run is made for: algorithm, env and map (or gymma key), agent count, input and
    action shapes, and the registry keys of its networks (None for the ones the algorithm does not use)."""
    env_args = getattr(args, "env_args", None) or {}
    record = {"algorithm": args.name, "env": args.env, "map_name": env_args.get("map_name"),
              "key": env_args.get("key")}
    for field in ("n_agents", "obs_shape", "state_shape", "n_actions", "learner", "mac", "agent", "mixer",
                  "critic_type", "model"):
        value = getattr(args, field, None)
        record[field] = list(value) if isinstance(value, tuple) else value
    return record


def describe(record):
    """One-line description of a trained_on record, e.g. `qmix on smax 3m (3 agents, obs 30, state 48, 9 actions)`."""
    place = " ".join(str(part) for part in (record.get("env"), record.get("map_name") or record.get("key")) if part)
    return (f"{record.get('algorithm')} on {place} ({record.get('n_agents')} agents, obs {record.get('obs_shape')}, "
            f"state {record.get('state_shape')}, {record.get('n_actions')} actions)")


def mismatch(checkpoint_record, run_record):
    """None when a checkpoint trained on `checkpoint_record` fits a run on `run_record`, else a one-line reason."""
    differing = [field for field in MUST_MATCH if checkpoint_record.get(field) != run_record.get(field)]
    if not differing:
        return None
    details = ", ".join(f"{field} {checkpoint_record.get(field)!r} vs {run_record.get(field)!r}"
                        for field in differing)
    return f"trained with {describe(checkpoint_record)}; this run is {describe(run_record)} ({details})"
