"""MAZero learner: K-step unroll with reward / value / policy (AWPO) / consistency losses (paper Eqs. 10-14;
docs/mazero.md, "Learner"). K = unroll_steps throughout this file.

One update (`MAZeroLearner.update`) takes a `MAZeroBatch` sampled from the replay and its policy targets (a
search with the target network at o_{t..t+K} for a `reanalyse_ratio` share of the batch, the stored self-play
search statistics for the rest: `reanalyse_policy_targets`, computed by learners/mazero_feed.py beforehand, in
process or on Ray workers) and does three steps: value targets (n-step returns bootstrapped from the target
network, "pred-re", with the off-policy n-shrink the replay applied to the horizons), the unroll losses and the
gradient step, and the logged statistics; it returns the batch's new PER priorities. The learner never touches the
replay: the run loop samples, reanalyses and writes the priorities back (docs/mazero.md, "Run loop"). The batch
moves to `args.device` once (docs/mazero_scaleout.md).
"""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from config_checks import SETTING_KEYS, check_keys
from mcts.search import legal_or_all
from utils.checkpoint import load_state
from utils.divergence import check_finite
from utils.value_transform import logits_to_scalar, scalar_to_two_hot


# ---------------------------------------------------------------------------------------------------------------
# Targets and loss terms as pure functions (unit-tested by hand in tests/test_mazero_learner.py)
# ---------------------------------------------------------------------------------------------------------------
def n_step_value_targets(rewards, bootstrap_values, horizons, steps_left, terminated, gamma):
    """z_{t+k} = sum_{j<h_k} gamma^j u_{t+k+j} + gamma^{h_k} v̂(o_{t+k+h_k}).

    rewards [B, K+n] (u_t.., 0 past the end), bootstrap_values [B, K+1] (target value at row t+k+h_k),
    horizons [B, K+1] (h_k), steps_left [B] (T - t), terminated [B]. The bootstrap is dropped at a true terminal
    (t+k+h_k = T of a terminated episode) and kept at a time-out; past the end (t+k >= T) the target is 0.
    """
    B, K1 = horizons.shape
    device = horizons.device
    z = torch.zeros(B, K1, device=device)
    # every h_k <= n = rewards' width - K; terms j >= h_k are zero (no host sync on horizons.max())
    for j in range(rewards.shape[1] - K1 + 1):
        k_plus_j = torch.arange(K1, device=device).unsqueeze(0) + j
        z += (gamma ** j) * rewards.gather(1, k_plus_j.expand(B, -1)) * (j < horizons)
    k = torch.arange(K1, device=device).unsqueeze(0)
    inside = k < steps_left.unsqueeze(1)
    at_terminal = (k + horizons == steps_left.unsqueeze(1)) & terminated.unsqueeze(1)
    use_bootstrap = inside & ~at_terminal
    z += torch.where(use_bootstrap, (gamma ** horizons.float()) * bootstrap_values, torch.zeros((), device=device))
    return z


ROOT_STD_FLOOR = 0.01  # "root" normalisation: below this spread of Q the children count as equal (a 0.17 hit on 2s3z)


def policy_target_weights(advantages, mask, policy_loss, awpo_alpha, adv_clip, advantage_norm="batch"):
    """Per-child weights w of the policy loss; advantages and mask [..., Ks] (the children of each root).

    AWPO (paper Eq. 10), w = min(exp(Ã / alpha), clip), with Ã by `advantage_norm`:
    "batch" (the official code's): (A - mean) / std over every valid entry of the batch, so a root whose children
    differ by little next to the spread between states gets weights near 1;
    "root": (A - mean) / max(std, ROOT_STD_FLOOR) over each root's own valid children, so every state's ranking of
    its children sharpens its target alike (docs/mazero.md, "Learner").
    BC: w = 1 (Sampled MuZero's -sum omega log pi).
    """
    if policy_loss == "bc":
        return mask.float()
    if advantage_norm == "root":
        count = mask.sum(-1, keepdim=True).clamp(min=1)
        mean = torch.where(mask, advantages, 0.0).sum(-1, keepdim=True) / count
        var = torch.where(mask, (advantages - mean) ** 2, 0.0).sum(-1, keepdim=True) / count  # population
        normalised = (advantages - mean) / var.sqrt().clamp(min=ROOT_STD_FLOOR)
        weights = torch.exp(normalised / awpo_alpha).clamp(max=adv_clip)
        return torch.where(mask, weights, torch.zeros(()))
    valid = advantages[mask]
    if valid.numel() == 0:
        return torch.zeros_like(advantages)
    mean = valid.mean()
    std = valid.std(unbiased=False)  # numpy nanstd: population std
    normalised = (advantages - mean) / (std + 1e-5)
    weights = torch.exp(normalised / awpo_alpha).clamp(max=adv_clip)
    return torch.where(mask, weights, torch.zeros(()))


def joint_log_probs(policy_logits, joint_actions):
    """log pi(a | s) = sum_i log P(a^i | s^i) for sampled joint actions.

    policy_logits [B, N, A], joint_actions [B, K, N] (-1 padding gives log-prob 0). Returns [B, K].
    """
    log_probs = F.log_softmax(policy_logits, dim=-1)  # [B, N, A]
    B, K, N = joint_actions.shape
    index = joint_actions.clamp(min=0).permute(0, 2, 1)  # [B, N, K]
    per_agent = log_probs.gather(2, index).permute(0, 2, 1)  # [B, K, N]
    return (per_agent * (joint_actions >= 0)).sum(-1)


def scale_gradient(tensor, scale):
    """Identity forward; gradient multiplied by `scale` (MuZero's latent-gradient scaling)."""
    return tensor * scale + tensor.detach() * (1.0 - scale)


@dataclass
class PolicyTargets:
    """The policy loss's targets at unroll steps k = 0..K; Ks = sampled_actions."""
    joint_actions: torch.Tensor  # [B, K+1, Ks, N] sampled joint actions, -1 padded
    omega: torch.Tensor  # [B, K+1, Ks] visit shares n_j / S
    advantages: torch.Tensor  # [B, K+1, Ks] Q(s, a_j) - v̂(s)
    coef: torch.Tensor  # [B, K+1, Ks] omega * w: visit share times the AWPO (or BC) weight
    mask: torch.Tensor  # [B, K+1, Ks] bool: a real child of a root before the episode end
    weights: torch.Tensor  # [B, K+1, Ks] the AWPO (or BC) weights w
    search_seconds: float  # wall-clock of the reanalysis search

    def to(self, device):
        return PolicyTargets(**{name: value.to(device) if isinstance(value, torch.Tensor) else value
                                for name, value in vars(self).items()})


def value_targets(batch, target_model, args):
    """z_{t+k} for k = 0..K (n_step_value_targets), bootstrapped from target_model's value at o_{t+k+h_k}.

    With `timeout_terminal` every episode end is a terminal, as in the official code: the replay stores a time-out
    as not terminated, and every stored episode ends in a terminal or a time-out."""
    B, K1 = batch.horizons.shape
    offsets = torch.arange(K1, device=batch.horizons.device).unsqueeze(0) + batch.horizons
    boot_inputs = batch.inputs[torch.arange(B, device=offsets.device).unsqueeze(1), offsets]  # [B, K+1, N, D]
    _, boot_logits, _ = target_model.initial_inference(boot_inputs.flatten(0, 1))
    boot_values = logits_to_scalar(boot_logits, args.value_support_size).view(B, K1)
    terminated = batch.terminated | bool(args.timeout_terminal)
    return n_step_value_targets(batch.rewards, boot_values, batch.horizons, batch.steps_left, terminated, args.gamma)


def reanalyse_policy_targets(batch, target_model, search, args):
    """Policy targets of a batch: a fresh search with target_model (eval mode) for the first reanalyse_ratio share
    of the batch, the stored self-play statistics for the rest. Reads nothing but its arguments (and advances
    `search`'s random state), so another process holding a copy of the target model can run it."""
    stats = batch.search.clone()
    B, K1 = stats.visits.shape[:2]
    before_end = batch.before_end[:, :K1]
    n_reanalyse = int(round(args.reanalyse_ratio * B))
    seconds = 0.0
    if n_reanalyse > 0:
        # PER already samples at random, so the first n_reanalyse elements are a random share of the batch.
        # Only roots before the episode end are searched: the policy loss masks the others.
        searched = torch.zeros(B, K1, dtype=torch.bool)
        searched[:n_reanalyse] = before_end[:n_reanalyse]
        start = time.perf_counter()
        result = search.run(target_model, batch.inputs[:, :K1][searched], legal_or_all(batch.avail[searched]),
                            add_noise=True)
        seconds = time.perf_counter() - start
        stats[searched] = result.stats
    mask = (stats.joint_actions[..., 0] >= 0) & before_end.unsqueeze(-1)
    omega = stats.policy_target  # n_j / S, or the Gumbel root's improved policy (mcts.search.SearchStats)
    advantages = stats.q_values - stats.network_value.unsqueeze(-1)
    weights = policy_target_weights(advantages, mask, args.policy_loss, args.awpo_alpha, args.adv_clip,
                                     args.awpo_advantage_norm)
    return PolicyTargets(joint_actions=stats.joint_actions, omega=omega, advantages=advantages, coef=omega * weights,
                         mask=mask, weights=weights, search_seconds=seconds)


@dataclass
class UnrollLosses:
    """Per-sample loss terms [B], each summed over the unroll steps, and the network's root value v̂_0."""
    reward: torch.Tensor
    value: torch.Tensor
    policy: torch.Tensor
    consistency: torch.Tensor
    root_value: torch.Tensor  # [B], detached


class MAZeroLearner:
    def __init__(self, mac, scheme, logger, args):
        # main.py checked these already; a learner built without it (tests, benches) checks them here
        check_keys(vars(args), ["reanalyse_ratio", *SETTING_KEYS])
        self.args = args
        self.mac = mac
        self.logger = logger
        self.model = mac.agent
        # Target network for reanalysis and value bootstraps. The official learner hands over the snapshot taken
        # one interval earlier, so the target lags the online model by 1-2 intervals (docs/mazero.md, "Learner").
        self.target_model = copy.deepcopy(self.model).eval()
        self.target_snapshot = copy.deepcopy(self.model).eval()
        # fused: one kernel for all ~100 parameter tensors (4x faster than the per-tensor default on a 3m model)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=args.lr, eps=args.optim_eps, fused=True)
        self.update_count = 0
        # Counts the target network's changes (refreshes and loads): reanalysis reloads its copy when it moves.
        self.target_version = 0
        self.total_updates = max(1, int(args.t_max * args.updates_per_env_step))
        self.log_stats_t = -args.learner_log_interval - 1

    def state_dict(self):
        """What a resumed run needs besides the files of save_models: the log clock."""
        return {"log_stats_t": self.log_stats_t}

    def load_state_dict(self, state):
        self.log_stats_t = state["log_stats_t"]

    def per_beta(self):
        """PER beta annealed linearly from per_beta_start to 1 over the run's updates."""
        frac = min(1.0, self.update_count / self.total_updates)
        return self.args.per_beta_start + (1.0 - self.args.per_beta_start) * frac

    def update(self, cpu_batch, policy, t_env):
        """One gradient step on a batch sampled from the replay (CPU) and its policy targets; returns the batch's new
        PER priorities |v̂_0 - z_0| + 1e-6 (numpy [B]) for the caller to write back to the replay."""
        args = self.args
        batch, policy = cpu_batch.to(args.device), policy.to(args.device)  # one copy per update
        with torch.no_grad():
            self.target_model.eval()
            targets = value_targets(batch, self.target_model, args)
        losses = self.unroll_losses(batch, targets, policy)
        per_sample = (args.reward_loss_coef * losses.reward + args.value_loss_coef * losses.value
                      + args.policy_loss_coef * losses.policy + args.consistency_loss_coef * losses.consistency)
        # 1/K scaling of the whole loss (EfficientZero's gradient hook), weighted by the PER importance weights.
        loss = (batch.weights * per_sample).mean() / args.unroll_steps

        self.optimiser.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_norm_clip)
        self.optimiser.step()
        check_finite(t_env, {"loss": loss, "grad_norm": grad_norm}, self.model.parameters())
        self.model.eval()

        priorities = ((losses.root_value - targets[:, 0]).abs() + 1e-6).cpu().numpy()
        self.update_count += 1
        if self.update_count % args.target_model_interval == 0:
            self.target_model.load_state_dict(self.target_snapshot.state_dict())
            self.target_snapshot.load_state_dict(self.model.state_dict())
            self.target_version += 1
        if t_env - self.log_stats_t >= args.learner_log_interval:
            self.log_stats(t_env, loss, losses, grad_norm, targets, policy)
        return priorities

    def unroll_losses(self, batch, targets, policy):
        """Unrolls the online model K steps from o_t with the real actions; targets [B, K+1] are the z_{t+k}.

        Only the dynamics runs step by step; the value / policy heads, the projection and every loss term run once
        on all K+1 steps stacked (the heads have no dropout and act per sample, so this is the same function in
        fewer, larger calls)."""
        args = self.args
        K = args.unroll_steps
        inputs = batch.inputs[:, :K + 1]  # [B, K+1, N, D]
        B = inputs.shape[0]
        with torch.no_grad():  # consistency targets: stop-gradient projection of the online representation
            real_latents = self.model.represent(inputs[:, 1:].flatten(0, 1))  # of the real o_{t+k}, [B*K, N, H]
            consistency_targets = self.model.project(real_latents, with_predictor=False)
        self.model.train()
        latent = self.model.represent(inputs[:, 0])
        head_latents, next_latents, reward_logits = [latent], [], []
        scale_latent_itself = args.latent_grad_scale_at == "latent"
        for k in range(1, K + 1):
            latent, step_reward_logits = self.model.dynamics(latent, batch.actions[:, k - 1])
            reward_logits.append(step_reward_logits)
            if scale_latent_itself:  # the official hook: step k's value and policy gradients halved too
                latent = scale_gradient(latent, 0.5)
            head_latents.append(latent)
            if not scale_latent_itself:  # MuZero: only what flows on (to step k+1 and the consistency head)
                latent = scale_gradient(latent, 0.5)
            next_latents.append(latent)
        value_logits, policy_logits = self.model.predict(torch.stack(head_latents, 1).flatten(0, 1))
        value_logits = value_logits.view(B, K + 1, -1)
        root_value = logits_to_scalar(value_logits[:, 0].detach(), args.value_support_size)
        value_loss = self._ce(value_logits, targets, args.value_support_size, args.two_hot_target)
        reward_loss = self._ce(torch.stack(reward_logits, 1), batch.rewards[:, :K], args.reward_support_size,
                               args.two_hot_target)
        policy_loss = self._policy_loss(policy_logits, policy.joint_actions.flatten(0, 1),
                                        policy.coef.flatten(0, 1)).view(B, K + 1)
        predicted = self.model.project(torch.stack(next_latents, 1).flatten(0, 1), with_predictor=True)
        consistency_loss = -F.cosine_similarity(predicted, consistency_targets, dim=-1).view(B, K)
        return UnrollLosses(reward=reward_loss.sum(1), value=value_loss.sum(1), policy=policy_loss.sum(1),
                            consistency=consistency_loss.sum(1), root_value=root_value)

    def log_stats(self, t_env, loss, losses, grad_norm, targets, policy):
        valid = policy.mask
        stats = {
            "loss": float(loss.item()) * self.args.unroll_steps,
            "reward_loss": float(losses.reward.detach().mean()),
            "value_loss": float(losses.value.detach().mean()),
            "policy_loss": float(losses.policy.detach().mean()),
            "consistency_loss": float(losses.consistency.detach().mean()),
            "grad_norm": float(grad_norm),
            "value_target_mean": float(targets[:, 0].mean()),
            "value_pred_mean": float(losses.root_value.mean()),
            "awpo_weight_mean": float(policy.weights[valid].mean()) if bool(valid.any()) else 0.0,
            "per_beta": float(self.per_beta()),
            "updates": float(self.update_count),
        }
        for key, value in stats.items():
            self.logger.log_stat(key, value, t_env)
        self.log_stats_t = t_env

    @staticmethod
    def _ce(logits, scalars, support_size, two_hot_target="exact"):
        target = scalar_to_two_hot(scalars, support_size, two_hot_target)
        return -(target * F.log_softmax(logits, dim=-1)).sum(-1)

    def _policy_loss(self, policy_logits, joint_actions, coef):
        # per-agent joint actions [B, Ks, N] -> the policy's action space (the joint index for agent: mazero_flat)
        policy_actions = self.model.action_space.encode(joint_actions)
        return -(coef * joint_log_probs(policy_logits, policy_actions)).sum(-1)

    def save_models(self, path):
        self.mac.save_models(path)
        torch.save(self.target_model.state_dict(), f"{path}/target_agent.th")
        torch.save(self.target_snapshot.state_dict(), f"{path}/target_snapshot.th")
        torch.save(self.optimiser.state_dict(), f"{path}/opt.th")
        torch.save({"update_count": self.update_count}, f"{path}/learner_state.th")

    def load_models(self, path):
        self.mac.load_models(path)
        self.target_model.load_state_dict(load_state(f"{path}/target_agent.th"))
        self.target_snapshot.load_state_dict(load_state(f"{path}/target_snapshot.th"))
        self.optimiser.load_state_dict(load_state(f"{path}/opt.th"))
        self.update_count = load_state(f"{path}/learner_state.th")["update_count"]
        self.target_version += 1
