"""EPyMARL's `basic_mac`: one agent network shared by all agents, inputs obs (+ last action) (+ agent id)."""
import torch

from components.action_selectors import REGISTRY as action_REGISTRY
from modules.agents import REGISTRY as agent_REGISTRY
from utils.checkpoint import load_state


class BasicMAC:
    def __init__(self, scheme, groups, args):
        self.args = args
        self.n_agents = args.n_agents
        self.agent_output_type = args.agent_output_type
        if self.agent_output_type not in ("q", "pi_logits"):
            raise ValueError(f"agent_output_type must be 'q' or 'pi_logits', got {self.agent_output_type!r}")
        self.agent = agent_REGISTRY[args.agent](self._input_dim(scheme), args)
        self.action_selector = action_REGISTRY[args.action_selector](args)
        self.hidden_states = None

    def select_actions(self, ep_batch, t_ep, t_env, bs=slice(None), test_mode=False):
        """Actions [len(bs), N] at step t_ep for the envs `bs` (the forward pass runs on the whole batch so the
        recurrent state of every env advances in step)."""
        avail_actions = ep_batch["avail_actions"][:, t_ep]
        agent_outputs = self.forward(ep_batch, t_ep, test_mode=test_mode)
        return self.action_selector.select_action(agent_outputs[bs], avail_actions[bs], t_env, test_mode=test_mode)

    def forward(self, ep_batch, t, test_mode=False):
        """Per-agent outputs [B, N, n_actions] at step t: Q-values, or masked action probabilities (pi_logits)."""
        agent_inputs = self._build_inputs(ep_batch, t)
        avail_actions = ep_batch["avail_actions"][:, t]
        agent_outs, self.hidden_states = self.agent(agent_inputs, self.hidden_states)
        if self.agent_output_type == "pi_logits":
            if self.args.mask_before_softmax:
                agent_outs = agent_outs.masked_fill(avail_actions.reshape(agent_outs.shape) == 0, -1e10)
            agent_outs = torch.softmax(agent_outs, dim=-1)
        return agent_outs.view(ep_batch.batch_size, self.n_agents, -1)

    def unroll(self, ep_batch):
        """Outputs of every step [B, T, N, n_actions] (Q-values; training-time forward of the learner).

        A feed-forward agent (`use_rnn: False`) has no state to carry, so all steps go through in one call.
        """
        self.init_hidden(ep_batch.batch_size)
        if self.args.use_rnn or self.agent_output_type != "q":
            return torch.stack([self.forward(ep_batch, t) for t in range(ep_batch.max_seq_length)], dim=1)
        inputs = self._build_inputs(ep_batch, slice(None))
        agent_outs, _ = self.agent(inputs, self.hidden_states)
        return agent_outs.view(ep_batch.batch_size, ep_batch.max_seq_length, self.n_agents, -1)

    def init_hidden(self, batch_size):
        self.hidden_states = self.agent.init_hidden().unsqueeze(0).expand(batch_size, self.n_agents, -1)

    def parameters(self):
        return self.agent.parameters()

    def load_state(self, other_mac):
        self.agent.load_state_dict(other_mac.agent.state_dict())

    def to(self, device):
        self.agent.to(device)

    def save_models(self, path):
        torch.save(self.agent.state_dict(), f"{path}/agent.th")

    def load_models(self, path):
        self.agent.load_state_dict(load_state(f"{path}/agent.th"))

    def _build_inputs(self, batch, t):
        """Agent inputs, one row per (env, [step,] agent): obs, then the previous one-hot action, then the one-hot
        agent id. An int t gives [B * N, input_dim]; t = slice(None) gives every step, [B * T * N, ...]."""
        obs = batch["obs"][:, t]
        inputs = [obs]
        if self.args.obs_last_action:
            onehot = batch["actions_onehot"]
            if isinstance(t, slice):
                inputs.append(torch.cat([torch.zeros_like(onehot[:, :1]), onehot[:, :-1]], dim=1)[:, t])
            elif t == 0:
                inputs.append(torch.zeros_like(onehot[:, 0]))
            else:
                inputs.append(onehot[:, t - 1])
        if self.args.obs_agent_id:
            eye = torch.eye(self.n_agents, device=batch.device, dtype=obs.dtype)
            inputs.append(eye.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(inputs, dim=-1).flatten(0, -2)

    def _input_dim(self, scheme):
        input_dim = scheme["obs"]["vshape"]
        if self.args.obs_last_action:
            input_dim += scheme["actions_onehot"]["vshape"][0]
        if self.args.obs_agent_id:
            input_dim += self.n_agents
        return input_dim
