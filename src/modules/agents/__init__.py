"""Agent network registry (key `agent`): constructors called as REGISTRY[name](input_shape, args)."""
from modules.agents.mazero_agent import MAZeroAgent
from modules.agents.mazero_flat_agent import FlatMuZeroAgent
from modules.agents.rnn_agent import RNNAgent

MAZERO_MODELS = {"mazero": MAZeroAgent, "flat": FlatMuZeroAgent}


def mazero_model(input_shape, args):
    """`agent: mazero`: the model chosen by `model` (MAZero, or the flat single-agent MuZero baseline)."""
    if args.model not in MAZERO_MODELS:
        raise ValueError(f"model must be one of {sorted(MAZERO_MODELS)}, got {args.model!r}")
    return MAZERO_MODELS[args.model](input_shape, args)


REGISTRY = {
    "rnn": RNNAgent,
    "mazero": mazero_model,
}
