"""`ppo_mac`: basic_mac (rollouts are identical) with a faster `unroll` for policies (agent_output_type
pi_logits). PPO re-evaluates the policy 1 + `epochs` times per update; building the inputs, masking and
softmaxing for all steps at once (and, for the feed-forward agent, running the network once) cuts the per-step
work that dominates the update's time on CPU."""
import torch

from controllers.basic_controller import BasicMAC


class PPOMAC(BasicMAC):
    def unroll(self, ep_batch):
        """Action probabilities [B, T, N, A] at every step, from a fresh hidden state; equal to init_hidden(B)
        followed by forward(ep_batch, t) for t = 0..T-1."""
        B, T, N = ep_batch.batch_size, ep_batch.max_seq_length, self.n_agents
        self.init_hidden(B)
        inputs = self._build_inputs(ep_batch, slice(None)).view(B, T, N, -1)
        if self.args.use_rnn:
            hidden = self.hidden_states
            outs = []
            for t in range(T):
                out, hidden = self.agent(inputs[:, t].reshape(B * N, -1), hidden)
                outs.append(out.view(B, N, -1))
            self.hidden_states = hidden
            logits = torch.stack(outs, dim=1)
        else:
            # the feed-forward agent ignores its hidden state, so all steps go through it as one batch
            logits, _ = self.agent(inputs.reshape(B * T * N, -1), self.hidden_states)
            logits = logits.view(B, T, N, -1)
        if self.args.mask_before_softmax:
            logits = logits.masked_fill(ep_batch["avail_actions"] == 0, -1e10)
        return torch.softmax(logits, dim=-1)
