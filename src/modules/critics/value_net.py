"""The value network shared by the MAPPO and IPPO critics: fc -> ReLU -> GRU over the episode (or fc -> ReLU if
`use_rnn` is False) -> fc -> one value per agent and step. The recurrent version runs nn.GRU over whole episodes
(each batch row is one episode from its first step, so the hidden state starts at zero and is never reset)."""
import torch.nn as nn
import torch.nn.functional as F


class ValueNet(nn.Module):
    def __init__(self, input_dim, args):
        super().__init__()
        self.use_rnn = args.use_rnn
        self.fc1 = nn.Linear(input_dim, args.hidden_dim)
        if self.use_rnn:
            self.rnn = nn.GRU(args.hidden_dim, args.hidden_dim, batch_first=True)
        else:
            self.rnn = nn.Linear(args.hidden_dim, args.hidden_dim)
        self.fc2 = nn.Linear(args.hidden_dim, 1)

    def forward(self, inputs):
        """inputs [B, T, N, d] -> values [B, T, N]."""
        B, T, N, _ = inputs.shape
        x = F.relu(self.fc1(inputs))
        if self.use_rnn:
            x = x.permute(0, 2, 1, 3).reshape(B * N, T, -1)
            h, _ = self.rnn(x)
            h = h.reshape(B, N, T, -1).permute(0, 2, 1, 3)
        else:
            h = F.relu(self.rnn(x))
        return self.fc2(h).squeeze(-1)


def agent_ids(batch, n_agents):
    """One-hot agent ids [B, T, N, N] for every step of `batch`."""
    eye = batch["obs"].new_zeros(n_agents, n_agents)
    eye.fill_diagonal_(1.0)
    return eye.expand(batch.batch_size, batch.max_seq_length, n_agents, n_agents)
