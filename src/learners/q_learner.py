"""EPyMARL's `q_learner`: 1-step Q-learning for QMIX (mixer qmix), VDN (mixer vdn) and IQL (mixer null).

IQL also trains on per-agent rewards (common_reward False: rewards [B, T, n_agents], one TD target per agent);
QMIX and VDN need the team reward (envs/capabilities.py refuses the combination before the run starts).

Double Q (`double_q`): the online network picks the next action, the target network evaluates it. Target networks
follow `target_update_interval_or_tau`: > 1 = hard copy every that many training steps, <= 1 = soft update with
that tau after every training step.
"""
import copy

import torch
from torch.optim import Adam

from modules.mixers import REGISTRY as mixer_REGISTRY
from utils.checkpoint import load_state
from utils.divergence import check_finite
from utils.rl_utils import RunningMeanStd

# stands in for -inf when masking unavailable actions: padded steps have no available action at all, and a
# finite value keeps their (masked-out) targets finite
UNAVAILABLE_Q = -9999999.0


class QLearner:
    def __init__(self, mac, scheme, logger, args):
        self.args = args
        self.mac = mac
        self.logger = logger
        self.n_agents = args.n_agents
        if args.mixer is None:
            self.mixer = None
        elif args.mixer in mixer_REGISTRY:
            self.mixer = mixer_REGISTRY[args.mixer](args)
        else:
            raise ValueError(f"Unknown mixer {args.mixer!r}; choose one of {sorted(mixer_REGISTRY)} or null (IQL)")
        self.params = list(mac.parameters())
        if self.mixer is not None:
            self.params += list(self.mixer.parameters())
        self.optimiser = Adam(self.params, lr=args.lr)
        self.target_mac = copy.deepcopy(mac)
        self.target_mixer = copy.deepcopy(self.mixer)
        self.training_steps = 0
        self.last_target_update_step = 0
        self.log_stats_t = -args.learner_log_interval - 1
        # per-agent rewards (IQL with common_reward False) are standardised per agent, as in EPyMARL
        reward_shape = (1,) if args.common_reward else (args.n_agents,)
        self.reward_stats = RunningMeanStd(shape=reward_shape, device=args.device) if args.standardise_rewards else None

    def train(self, batch, t_env, episode_num):
        rewards = batch["reward"][:, :-1]
        actions = batch["actions"][:, :-1]
        terminated = batch["terminated"][:, :-1].float()
        mask = batch["filled"][:, :-1].float()
        mask[:, 1:] = mask[:, 1:] * (1 - terminated[:, :-1])
        avail_actions = batch["avail_actions"]

        if self.reward_stats is not None:
            self.reward_stats.update(rewards)
            rewards = (rewards - self.reward_stats.mean) / torch.sqrt(self.reward_stats.var)

        mac_out = self.mac.unroll(batch)  # [B, T, N, A]
        chosen_action_qvals = torch.gather(mac_out[:, :-1], dim=3, index=actions).squeeze(3)  # [B, T-1, N]

        with torch.no_grad():
            target_mac_out = self.target_mac.unroll(batch)[:, 1:]
            if self.args.double_q:
                online_q = mac_out.detach().masked_fill(avail_actions == 0, UNAVAILABLE_Q)
                next_actions = online_q[:, 1:].argmax(dim=3, keepdim=True)
                target_max_qvals = torch.gather(target_mac_out, 3, next_actions).squeeze(3)
            else:
                target_mac_out = target_mac_out.masked_fill(avail_actions[:, 1:] == 0, UNAVAILABLE_Q)
                target_max_qvals = target_mac_out.max(dim=3)[0]
            if self.target_mixer is not None:
                target_max_qvals = self.target_mixer(target_max_qvals, batch["state"][:, 1:])
            targets = rewards + self.args.gamma * (1 - terminated) * target_max_qvals

        if self.mixer is not None:
            chosen_action_qvals = self.mixer(chosen_action_qvals, batch["state"][:, :-1])

        mask = mask.expand_as(targets)
        masked_td_error = (chosen_action_qvals - targets) * mask
        loss = masked_td_error.pow(2).sum() / mask.sum()

        self.optimiser.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.args.grad_norm_clip)
        self.optimiser.step()
        check_finite(t_env, {"loss": loss, "grad_norm": grad_norm}, self.params)

        self.training_steps += 1
        interval_or_tau = self.args.target_update_interval_or_tau
        if interval_or_tau > 1:
            if self.training_steps - self.last_target_update_step >= interval_or_tau:
                self._update_targets_hard()
                self.last_target_update_step = self.training_steps
        else:
            self._update_targets_soft(interval_or_tau)

        if t_env - self.log_stats_t >= self.args.learner_log_interval:
            mask_elems = mask.sum().item()
            self.logger.log_stat("loss", loss.item(), t_env)
            self.logger.log_stat("grad_norm", grad_norm.item(), t_env)
            self.logger.log_stat("td_error_abs", masked_td_error.abs().sum().item() / mask_elems, t_env)
            self.logger.log_stat("q_taken_mean", (chosen_action_qvals * mask).sum().item() / mask_elems, t_env)
            self.logger.log_stat("target_mean", (targets * mask).sum().item() / mask_elems, t_env)
            self.log_stats_t = t_env

    def _update_targets_hard(self):
        self.target_mac.load_state(self.mac)
        if self.mixer is not None:
            self.target_mixer.load_state_dict(self.mixer.state_dict())

    def _update_targets_soft(self, tau):
        pairs = [(self.target_mac.agent, self.mac.agent)]
        if self.mixer is not None:
            pairs.append((self.target_mixer, self.mixer))
        with torch.no_grad():
            for target, online in pairs:
                for target_param, param in zip(target.parameters(), online.parameters()):
                    target_param.mul_(1.0 - tau).add_(param, alpha=tau)

    def to(self, device):
        for module in (self.mac, self.target_mac):
            module.to(device)
        for mixer in (self.mixer, self.target_mixer):
            if mixer is not None:
                mixer.to(device)

    def save_models(self, path):
        self.mac.save_models(path)
        if self.mixer is not None:
            torch.save(self.mixer.state_dict(), f"{path}/mixer.th")
        torch.save(self.optimiser.state_dict(), f"{path}/opt.th")

    def load_models(self, path):
        self.mac.load_models(path)
        # target networks are not saved; they restart as copies of the loaded networks
        self.target_mac.load_models(path)
        if self.mixer is not None:
            self.mixer.load_state_dict(load_state(f"{path}/mixer.th"))
            self.target_mixer.load_state_dict(self.mixer.state_dict())
        self.optimiser.load_state_dict(load_state(f"{path}/opt.th"))
