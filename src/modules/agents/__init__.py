"""Agent network registry (key `agent`): constructors called as REGISTRY[name](input_dim, args).

`mazero` and `mazero_flat` are MAZero's centralised world models (src/modules/mazero/), not per-agent networks: the
`mazero_mac` builds one for all agents.
"""
from modules.agents.rnn_agent import RNNAgent
from modules.mazero.flat_model import FlatMuZeroModel
from modules.mazero.model import MAZeroModel

REGISTRY = {
    "rnn": RNNAgent,
    "mazero": MAZeroModel,
    "mazero_flat": FlatMuZeroModel,
}
