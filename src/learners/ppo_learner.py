"""PPO for MAPPO (critic_type cv_critic: V(state, agent id)) and IPPO (ac_critic: V(obs, agent id)).

One call of `train` takes the episodes just collected (on-policy: buffer_size = batch_size = batch_size_run) and
runs `epochs` full-batch updates of the actor (clipped surrogate + entropy bonus) and of the critic (optionally
clipped, optionally Huber, value loss). Advantages are GAE(lambda), normalised over the agents that had a choice.

Masks. The runners write the final observation of every episode, so `filled[t + 1]` marks the transitions
(t -> t + 1) that happened; an agent with one available action (a dead SMAC/SMAX unit: no-op only) has no
decision to learn from and is left out of the policy loss, the entropy and the advantage statistics.
Per-agent rewards (common_reward False, EPyMARL's semantics): rewards [B, T, n_agents] give each agent the GAE of
its own reward; a team reward [B, T, 1] is shared by all agents.
Time-outs: the runners store terminated=False at a time-out, so GAE bootstraps from the value of the final
observation; true terminals stop the bootstrap.
"""
import torch
import torch.nn.functional as F
from torch.optim import Adam

from modules.critics import REGISTRY as critic_REGISTRY
from utils.checkpoint import load_state
from utils.divergence import check_finite
from utils.value_norm import ValueNorm

# floor for probabilities inside logarithms: masked actions have probability exactly 0
MIN_PROB = 1e-10
# added to the advantage std before dividing, so a batch of equal advantages stays finite (MAPPO's 1e-5)
ADV_STD_EPS = 1e-5


def gae_advantages(rewards, values, terminated, mask, gamma, gae_lambda):
    """GAE(lambda) advantages.

    rewards [B, T-1, 1 or N], values [B, T, N] (the last step holds the value of the final observation),
    terminated [B, T-1, 1] (1 only for true terminals), mask [B, T-1, 1] (1 for transitions that happened).
    Returns advantages [B, T-1, N], zero where mask is 0.
    """
    steps = rewards.shape[1]
    advantages = torch.zeros_like(values[:, :-1])
    next_advantage = torch.zeros_like(values[:, 0])
    for t in reversed(range(steps)):
        not_terminal = 1.0 - terminated[:, t]
        delta = rewards[:, t] + gamma * not_terminal * values[:, t + 1] - values[:, t]
        # the episode's last transition (terminal or time-out) has no successor advantage to add
        next_valid = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(mask[:, t])
        advantage = (delta + gamma * gae_lambda * not_terminal * next_valid * next_advantage) * mask[:, t]
        advantages[:, t] = advantage
        next_advantage = advantage
    return advantages


def clipped_surrogate(log_probs, old_log_probs, advantages, eps_clip):
    """PPO's clipped objective per element (to be maximised): min(r A, clip(r, 1 - eps, 1 + eps) A)."""
    ratio = torch.exp(log_probs - old_log_probs)
    return torch.min(ratio * advantages, torch.clamp(ratio, 1.0 - eps_clip, 1.0 + eps_clip) * advantages)


def value_loss(values, old_values, targets, value_clip, huber_delta):
    """Per-element critic loss; with value_clip (a float) the pessimistic max of the clipped and unclipped loss;
    Huber with huber_delta, or squared error if huber_delta is None."""
    def loss(pred):
        if huber_delta is None:
            return (pred - targets).pow(2)
        return F.huber_loss(pred, targets, reduction="none", delta=huber_delta)

    if value_clip is None:
        return loss(values)
    clipped = old_values + (values - old_values).clamp(-value_clip, value_clip)
    return torch.max(loss(values), loss(clipped))


def masked_mean(x, mask):
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


class PPOLearner:
    def __init__(self, mac, scheme, logger, args):
        self.args = args
        self.mac = mac
        self.logger = logger
        if args.critic_type not in critic_REGISTRY:
            raise ValueError(f"Unknown critic_type {args.critic_type!r}; choose one of {sorted(critic_REGISTRY)}")
        if args.agent_output_type != "pi_logits":
            raise ValueError(f"ppo_learner needs agent_output_type 'pi_logits', got {args.agent_output_type!r}")
        self.critic = critic_REGISTRY[args.critic_type](scheme, args)
        self.agent_params = list(mac.parameters())
        self.critic_params = list(self.critic.parameters())
        self.agent_optimiser = Adam(self.agent_params, lr=args.lr, eps=args.optim_eps)
        self.critic_optimiser = Adam(self.critic_params, lr=args.critic_lr, eps=args.optim_eps)
        self.value_norm = ValueNorm(device=args.device) if args.use_value_norm else None
        self.value_clip = args.eps_clip if args.use_value_clip else None
        self.huber_delta = args.huber_delta if args.use_huber_loss else None
        self.log_stats_t = -args.learner_log_interval - 1

    def _policy(self, batch):
        """Masked action probabilities [B, T-1, N, A] at every step that has an action to learn from."""
        return self.mac.unroll(batch)[:, :-1]

    def train(self, batch, t_env, episode_num):
        args = self.args
        rewards = batch["reward"][:, :-1]
        actions = batch["actions"][:, :-1]
        terminated = batch["terminated"][:, :-1].float()
        mask = batch["filled"][:, 1:].float()  # [B, T-1, 1]: transition t happened
        has_choice = (batch["avail_actions"][:, :-1] > 0).sum(-1) > 1
        active = mask * has_choice.float()  # [B, T-1, N]

        with torch.no_grad():
            old_pi = self._policy(batch)
            old_log_probs = torch.log(old_pi.gather(3, actions).squeeze(3).clamp_min(MIN_PROB))
            old_values = self.critic(batch)  # [B, T, N], normalised if value_norm
            values = old_values if self.value_norm is None else self.value_norm.denormalise(old_values)
            advantages = gae_advantages(rewards, values, terminated, mask, args.gamma, args.gae_lambda)
            returns = advantages + values[:, :-1]
            if self.value_norm is not None:
                self.value_norm.update(returns, mask)
                targets = self.value_norm.normalise(returns)
            else:
                targets = returns
            advantage_mean = masked_mean(advantages, active)
            advantage_std = masked_mean((advantages - advantage_mean).pow(2), active).sqrt()
            norm_advantages = (advantages - advantage_mean) / (advantage_std + ADV_STD_EPS)
            old_values = old_values[:, :-1]

        stats = {"pg_loss": [], "entropy": [], "agent_grad_norm": [], "critic_loss": [], "critic_grad_norm": []}
        for _ in range(args.epochs):
            pi = self._policy(batch)
            log_pi = torch.log(pi.clamp_min(MIN_PROB))
            log_probs = log_pi.gather(3, actions).squeeze(3)
            entropy = masked_mean(-(pi * log_pi).sum(-1), active)
            surrogate = clipped_surrogate(log_probs, old_log_probs, norm_advantages, args.eps_clip)
            pg_loss = -masked_mean(surrogate, active)
            self.agent_optimiser.zero_grad()
            (pg_loss - args.entropy_coef * entropy).backward()
            agent_grad_norm = torch.nn.utils.clip_grad_norm_(self.agent_params, args.grad_norm_clip)
            self.agent_optimiser.step()

            new_values = self.critic(batch)[:, :-1]
            critic_loss = masked_mean(value_loss(new_values, old_values, targets, self.value_clip,
                                                 self.huber_delta), mask)
            self.critic_optimiser.zero_grad()
            critic_loss.backward()
            critic_grad_norm = torch.nn.utils.clip_grad_norm_(self.critic_params, args.grad_norm_clip)
            self.critic_optimiser.step()
            epoch = {"pg_loss": pg_loss, "entropy": entropy, "agent_grad_norm": agent_grad_norm,
                     "critic_loss": critic_loss, "critic_grad_norm": critic_grad_norm}
            check_finite(t_env, epoch, self.agent_params + self.critic_params,
                         hint="lower lr, critic_lr or grad_norm_clip")
            for key, value in epoch.items():
                stats[key].append(value.item())

        if t_env - self.log_stats_t >= args.learner_log_interval:
            self._log_stats(t_env, stats, advantage_mean, masked_mean(old_pi.max(dim=-1)[0], active),
                            values[:, :-1], returns, mask)

    def _log_stats(self, t_env, per_epoch, advantage_mean, pi_max, values, returns, mask):
        """Logs the epochs' mean losses and gradient norms, then the batch's advantage, policy and value statistics."""
        stats = {key: sum(values_of_epochs) / len(values_of_epochs) for key, values_of_epochs in per_epoch.items()}
        stats.update(advantage_mean=advantage_mean.item(), pi_max=pi_max.item(),
                     q_taken_mean=masked_mean(values, mask).item(), target_mean=masked_mean(returns, mask).item(),
                     td_error_abs=masked_mean((returns - values).abs(), mask).item())
        for key, value in stats.items():
            self.logger.log_stat(key, value, t_env)
        self.log_stats_t = t_env

    def to(self, device):
        self.mac.to(device)
        self.critic.to(device)
        if self.value_norm is not None:
            self.value_norm.to(device)

    def save_models(self, path):
        self.mac.save_models(path)
        torch.save(self.critic.state_dict(), f"{path}/critic.th")
        torch.save(self.agent_optimiser.state_dict(), f"{path}/agent_opt.th")
        torch.save(self.critic_optimiser.state_dict(), f"{path}/critic_opt.th")
        if self.value_norm is not None:
            torch.save(self.value_norm.state_dict(), f"{path}/value_norm.th")

    def load_models(self, path):
        self.mac.load_models(path)
        self.critic.load_state_dict(load_state(f"{path}/critic.th"))
        self.agent_optimiser.load_state_dict(load_state(f"{path}/agent_opt.th"))
        self.critic_optimiser.load_state_dict(load_state(f"{path}/critic_opt.th"))
        if self.value_norm is not None:
            self.value_norm.load_state_dict(load_state(f"{path}/value_norm.th"))
