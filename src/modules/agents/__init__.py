"""Agent network registry (key `agent`): constructors called as REGISTRY[name](input_shape, args)."""
from modules.agents.mazero_agent import MAZeroAgent
from modules.agents.rnn_agent import RNNAgent

REGISTRY = {
    "rnn": RNNAgent,
    "mazero": MAZeroAgent,
}
