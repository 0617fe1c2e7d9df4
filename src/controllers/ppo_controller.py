"""`ppo_mac`: basic_mac (rollouts are identical) plus `unroll`, the policy at every step of an episode batch in one
pass. PPO re-evaluates the policy 1 + `epochs` times per update; building the inputs, masking and softmaxing for
all steps at once (and, for the feed-forward agent, running the network once) cuts the per-step work that
dominates the update's time on CPU."""
import torch

from controllers.basic_controller import BasicMAC


class PPOMAC(BasicMAC):
    def unroll(self, batch, steps):
        """Action probabilities [B, steps, N, A] at steps 0..steps-1, from a fresh hidden state; equal to
        init_hidden(B) followed by forward(batch, t) for t = 0..steps-1."""
        B, N = batch.batch_size, self.n_agents
        inputs = self._build_sequence_inputs(batch, steps)  # [B, steps, N, d]
        hidden = self.agent.init_hidden().expand(B * N, -1)
        if self.args.use_rnn:
            outs = []
            for t in range(steps):
                out, hidden = self.agent(inputs[:, t].reshape(B * N, -1), hidden)
                outs.append(out.view(B, N, -1))
            logits = torch.stack(outs, dim=1)
        else:
            # the feed-forward agent ignores its hidden state, so all steps go through it as one batch
            logits, _ = self.agent(inputs.reshape(B * steps * N, -1), hidden)
            logits = logits.view(B, steps, N, -1)
        if self.args.mask_before_softmax:
            logits = logits.masked_fill(batch["avail_actions"][:, :steps] == 0, -1e10)
        return torch.softmax(logits, dim=-1)

    def _build_sequence_inputs(self, batch, steps):
        """[B, steps, N, d]: the inputs _build_inputs gives at each of the steps, in the same order."""
        B, N = batch.batch_size, self.n_agents
        inputs = [batch["obs"][:, :steps]]
        if self.args.obs_last_action:
            last_actions = torch.zeros_like(batch["actions_onehot"][:, :steps])
            last_actions[:, 1:] = batch["actions_onehot"][:, :steps - 1]
            inputs.append(last_actions)
        if self.args.obs_agent_id:
            eye = torch.eye(N, device=batch.device)
            inputs.append(eye.expand(B, steps, N, N))
        return torch.cat(inputs, dim=-1)
