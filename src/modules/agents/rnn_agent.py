"""EPyMARL's `rnn` agent: fc -> ReLU -> GRUCell (or a second fc + ReLU if `use_rnn` is False) -> fc.

Shared across agents; inputs are flattened to [batch * n_agents, input_dim].
"""
import torch.nn as nn
import torch.nn.functional as F


class RNNAgent(nn.Module):
    def __init__(self, input_dim, args):
        super().__init__()
        self.hidden_dim = args.hidden_dim
        self.use_rnn = args.use_rnn
        self.fc1 = nn.Linear(input_dim, args.hidden_dim)
        if self.use_rnn:
            self.rnn = nn.GRUCell(args.hidden_dim, args.hidden_dim)
        else:
            self.rnn = nn.Linear(args.hidden_dim, args.hidden_dim)
        self.fc2 = nn.Linear(args.hidden_dim, args.n_actions)

    def init_hidden(self):
        # created on the same device as the parameters
        return self.fc1.weight.new_zeros(1, self.hidden_dim)

    def forward(self, inputs, hidden_state):
        x = F.relu(self.fc1(inputs))
        h_in = hidden_state.reshape(-1, self.hidden_dim)
        h = self.rnn(x, h_in) if self.use_rnn else F.relu(self.rnn(x))
        return self.fc2(h), h
