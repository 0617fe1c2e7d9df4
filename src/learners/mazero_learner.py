"""MAZero learner: K-step unroll with reward / value / policy (AWPO) / consistency losses (paper Eqs. 10-14;
docs/mazero.md, "Learner"). K = unroll_steps and K_s = sampled_actions throughout this file.

One update (`MAZeroLearner.update`) takes a `MAZeroBatch` sampled from the replay and its policy targets (a
search with the target network at o_{t..t+K} for a `reanalyse_ratio` share of the batch, the stored self-play
search statistics for the rest: `reanalyse_policy_targets`, computed by learners/mazero_feed.py beforehand, in
process or on Ray workers) and does three steps: value targets (n-step returns bootstrapped from the target
network, "pred-re", with the off-policy n-shrink the replay applied to the horizons), the unroll losses and the
gradient step, and the logged statistics; it returns the batch's new PER priorities. The learner never touches the
replay: the run loop samples, reanalyses and writes the priorities back (docs/mazero.md, "Run loop"). The batch
moves to the learner's `device` once (docs/mazero_scaleout.md).
"""
import copy
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from config_checks import OneOf
from mcts.search import avail_or_all
from utils.checkpoint import load_state
from utils.config_record import check_record
from utils.divergence import check_finite
from utils.value_transform import logits_to_scalar, scalar_to_two_hot


@dataclass(frozen=True)
class LearnerConfig:
    """What the learner's update reads (docs/mazero.md, "Learner"); fields are config keys."""
    device: str  # where the model, its target network and each batch live: "cuda" or "cpu" (run.common.make_args)
    gamma: float  # discount of the n-step value targets
    unroll_steps: int  # K, model unroll with the real actions
    value_support_size: int  # value head: two-hot over [-size, size] after h(x)
    reward_support_size: int  # reward head: two-hot over [-size, size] after h(x)
    two_hot_target: str  # "exact" two-hot targets, or the official code's "official" (utils/value_transform.py)
    latent_grad_scale_at: str  # where the 0.5 latent-gradient scale sits: "next_step" (MuZero) or "latent"
    timeout_terminal: bool  # time-outs terminal in the value targets (no bootstrap); False = bootstrap them
    lr: float  # Adam learning rate (constant)
    optim_eps: float  # Adam epsilon
    grad_norm_clip: float  # gradient-norm clip
    reward_loss_coef: float  # weight of the reward cross-entropy
    value_loss_coef: float  # weight of the value cross-entropy
    policy_loss_coef: float  # weight of the policy loss
    consistency_loss_coef: float  # weight of the SimSiam consistency loss
    target_model_interval: int  # updates between target-network refreshes
    per_beta_start: float  # PER importance-weight exponent beta at the first update, annealed linearly to 1
    t_max: int  # env steps of the run: with updates_per_env_step, the updates over which beta anneals
    updates_per_env_step: float  # gradient updates per env step
    learner_log_interval: int  # env steps between logs of the learner's statistics

    def __post_init__(self):
        check_record(self, device=OneOf(("cuda", "cpu")))


# ---------------------------------------------------------------------------------------------------------------
# Targets and loss terms as pure functions (unit-tested by hand in tests/test_mazero_learner.py)
# ---------------------------------------------------------------------------------------------------------------
def n_step_value_targets(rewards, bootstrap_values, horizons, steps_left, terminated, gamma):
    """z_{t+k} = sum_{j<h_k} gamma^j u_{t+k+j} + gamma^{h_k} v̂(o_{t+k+h_k}).

    rewards [B, K+n] (u_t.., 0 past the end), bootstrap_values [B, K+1] (target value at row t+k+h_k),
    horizons [B, K+1] (h_k), steps_left [B] (T - t), terminated [B]. The bootstrap is dropped at a true terminal
    (t+k+h_k = T of a terminated episode) and kept at a time-out; past the end (t+k >= T) the target is 0.
    """
    B, roots = horizons.shape  # roots = K + 1: the unroll steps k = 0..K
    device = horizons.device
    z = torch.zeros(B, roots, device=device)
    # every h_k <= n = rewards' width - K; terms j >= h_k are zero (no host sync on horizons.max())
    for j in range(rewards.shape[1] - roots + 1):
        k_plus_j = torch.arange(roots, device=device).unsqueeze(0) + j
        z += (gamma ** j) * rewards.gather(1, k_plus_j.expand(B, -1)) * (j < horizons)
    k = torch.arange(roots, device=device).unsqueeze(0)
    inside = k < steps_left.unsqueeze(1)
    at_terminal = (k + horizons == steps_left.unsqueeze(1)) & terminated.unsqueeze(1)
    use_bootstrap = inside & ~at_terminal
    z += torch.where(use_bootstrap, (gamma ** horizons.float()) * bootstrap_values, torch.zeros((), device=device))
    return z


ROOT_STD_FLOOR = 0.01  # "root" normalisation: below this spread of Q the children count as equal (a 0.17 hit on 2s3z)


def policy_target_weights(advantages, mask, policy_loss, awpo_alpha, adv_clip, awpo_advantage_norm="batch"):
    """Per-child weights w of the policy loss; advantages and mask [..., K_s] (the children of each root).

    AWPO (paper Eq. 10), w = min(exp(Ã / alpha), clip), with Ã by `awpo_advantage_norm`:
    "batch" (the official code's): (A - mean) / std over every valid entry of the batch, so a root whose children
    differ by little next to the spread between states gets weights near 1;
    "root": (A - mean) / max(std, ROOT_STD_FLOOR) over each root's own valid children, so every state's ranking of
    its children sharpens its target alike (docs/mazero.md, "Learner").
    BC: w = 1 (Sampled MuZero's -sum omega log pi).
    """
    if policy_loss == "bc":
        return mask.float()
    if awpo_advantage_norm == "root":
        count = mask.sum(-1, keepdim=True).clamp(min=1)
        mean = torch.where(mask, advantages, 0.0).sum(-1, keepdim=True) / count
        var = torch.where(mask, (advantages - mean) ** 2, 0.0).sum(-1, keepdim=True) / count  # population
        normalised = (advantages - mean) / var.sqrt().clamp(min=ROOT_STD_FLOOR)
        awpo_weights = torch.exp(normalised / awpo_alpha).clamp(max=adv_clip)
        return torch.where(mask, awpo_weights, torch.zeros(()))
    valid = advantages[mask]
    if valid.numel() == 0:
        return torch.zeros_like(advantages)
    mean = valid.mean()
    std = valid.std(unbiased=False)  # population std, as the official code's numpy nanstd
    normalised = (advantages - mean) / (std + 1e-5)
    awpo_weights = torch.exp(normalised / awpo_alpha).clamp(max=adv_clip)
    return torch.where(mask, awpo_weights, torch.zeros(()))


def joint_log_probs(policy_logits, joint_actions):
    """log pi(a | s) = sum_i log P(a^i | s^i) for sampled joint actions.

    policy_logits [B, N, A], joint_actions [B, K_s, N] (-1 padding gives log-prob 0). Returns [B, K_s].
    """
    log_probs = F.log_softmax(policy_logits, dim=-1)  # [B, N, A]
    index = joint_actions.clamp(min=0).permute(0, 2, 1)  # [B, N, K_s]
    per_agent = log_probs.gather(2, index).permute(0, 2, 1)  # [B, K_s, N]
    return (per_agent * (joint_actions >= 0)).sum(-1)


def support_cross_entropy(logits, scalars, support_size, two_hot_target="exact"):
    """-sum p log softmax(logits) with p the two-hot target of `scalars` over [-support_size, support_size] after
    h(x) (utils.value_transform.scalar_to_two_hot); logits [..., 2 support_size + 1], scalars [...]."""
    target = scalar_to_two_hot(scalars, support_size, two_hot_target)
    return -(target * F.log_softmax(logits, dim=-1)).sum(-1)


def policy_loss_terms(action_space, policy_logits, joint_actions, coef):
    """-sum_j coef_j log pi(a_j | s) per root: policy_logits of the model's policy, joint_actions [B, K_s, N] per
    agent (encoded into the policy's action space: the joint index for agent: mazero_flat), coef [B, K_s]."""
    policy_actions = action_space.encode(joint_actions)
    return -(coef * joint_log_probs(policy_logits, policy_actions)).sum(-1)


def scale_gradient(tensor, scale):
    """Identity forward; gradient multiplied by `scale` (MuZero's latent-gradient scaling)."""
    return tensor * scale + tensor.detach() * (1.0 - scale)


@dataclass
class PolicyTargets:
    """The policy loss's targets at unroll steps k = 0..K."""
    joint_actions: torch.Tensor  # [B, K+1, K_s, N] sampled joint actions, -1 padded
    omega: torch.Tensor  # [B, K+1, K_s] visit shares n_j / S
    advantages: torch.Tensor  # [B, K+1, K_s] Q(s, a_j) - v̂(s)
    coef: torch.Tensor  # [B, K+1, K_s] omega * w: visit share times the AWPO (or BC) weight
    mask: torch.Tensor  # [B, K+1, K_s] bool: a real child of a root before the episode end
    awpo_weights: torch.Tensor  # [B, K+1, K_s] the AWPO (or BC) weights w
    search_seconds: float  # wall-clock of the reanalysis search

    def to(self, device):
        return PolicyTargets(**{name: value.to(device) if isinstance(value, torch.Tensor) else value
                                for name, value in vars(self).items()})


def value_targets(batch, target_model, config):
    """z_{t+k} for k = 0..K (n_step_value_targets), bootstrapped from target_model's value at o_{t+k+h_k}; config:
    LearnerConfig.

    With `timeout_terminal` every episode end is a terminal, as in the official code: the replay stores a time-out
    as not terminated, and every stored episode ends in a terminal or a time-out."""
    B, roots = batch.horizons.shape
    offsets = torch.arange(roots, device=batch.horizons.device).unsqueeze(0) + batch.horizons
    boot_inputs = batch.inputs[torch.arange(B, device=offsets.device).unsqueeze(1), offsets]  # [B, K+1, N, D]
    _, boot_logits, _ = target_model.initial_inference(boot_inputs.flatten(0, 1))
    boot_values = logits_to_scalar(boot_logits, config.value_support_size).view(B, roots)
    terminated = batch.terminated | bool(config.timeout_terminal)
    return n_step_value_targets(batch.rewards, boot_values, batch.horizons, batch.steps_left, terminated,
                                config.gamma)


def reanalyse_policy_targets(batch, target_model, search, config):
    """Policy targets of a batch: a fresh search with target_model (eval mode) for the first reanalyse_ratio share
    of the batch, the stored self-play statistics for the rest; config: ReanalysisConfig
    (learners/mazero_reanalyse.py). Reads nothing but its arguments (and advances `search`'s random state), so
    another process holding a copy of the target model can run it."""
    search_stats = batch.search_stats.clone()
    B, roots = search_stats.visits.shape[:2]
    before_end = batch.before_end[:, :roots]
    n_reanalyse = int(round(config.reanalyse_ratio * B))
    seconds = 0.0
    if n_reanalyse > 0:
        # PER already samples at random, so the first n_reanalyse elements are a random share of the batch.
        # Only roots before the episode end are searched: the policy loss masks the others.
        searched = torch.zeros(B, roots, dtype=torch.bool)
        searched[:n_reanalyse] = before_end[:n_reanalyse]
        start = time.perf_counter()
        result = search.run(target_model, batch.inputs[:, :roots][searched],
                            avail_or_all(batch.avail_actions[searched]), add_noise=True)
        seconds = time.perf_counter() - start
        search_stats[searched] = result.stats
    mask = (search_stats.joint_actions[..., 0] >= 0) & before_end.unsqueeze(-1)
    omega = search_stats.policy_target  # n_j / S, or the Gumbel root's improved policy (mcts.search.SearchStats)
    advantages = search_stats.q_values - search_stats.network_value.unsqueeze(-1)
    awpo_weights = policy_target_weights(advantages, mask, config.policy_loss, config.awpo_alpha, config.adv_clip,
                                         config.awpo_advantage_norm)
    return PolicyTargets(joint_actions=search_stats.joint_actions, omega=omega, advantages=advantages,
                         coef=omega * awpo_weights, mask=mask, awpo_weights=awpo_weights, search_seconds=seconds)


@dataclass
class UnrollLosses:
    """Per-sample loss terms [B], each summed over the unroll steps, and the network's root value v̂_0."""
    reward: torch.Tensor
    value: torch.Tensor
    policy: torch.Tensor
    consistency: torch.Tensor
    root_value: torch.Tensor  # [B], detached


class MAZeroLearner:
    """The model's gradient steps and its target network (docs/mazero.md, "Learner"); config: LearnerConfig. `mac`
    holds the online model (`mac.agent`) and saves it with the learner's files."""

    def __init__(self, mac, logger, config):
        self.config = config
        self.mac = mac
        self.logger = logger
        self.model = mac.agent
        # Target network for reanalysis and value bootstraps. The official learner hands over the snapshot taken
        # one interval earlier, so the target lags the online model by 1-2 intervals (docs/mazero.md, "Learner").
        self.target_model = copy.deepcopy(self.model).eval()
        self.target_snapshot = copy.deepcopy(self.model).eval()
        # fused: one kernel for all ~100 parameter tensors (4x faster than the per-tensor default on a 3m model)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=config.lr, eps=config.optim_eps, fused=True)
        self.update_count = 0
        # Counts the target network's changes (refreshes and loads): reanalysis reloads its copy when it moves.
        self.target_version = 0
        self.total_updates = max(1, int(config.t_max * config.updates_per_env_step))
        self.log_stats_t = -config.learner_log_interval - 1

    def state_dict(self):
        """What a resumed run needs besides the files of save_models: the log clock."""
        return {"log_stats_t": self.log_stats_t}

    def load_state_dict(self, state):
        self.log_stats_t = state["log_stats_t"]

    def per_beta(self):
        """PER beta annealed linearly from per_beta_start to 1 over the run's updates."""
        frac = min(1.0, self.update_count / self.total_updates)
        return self.config.per_beta_start + (1.0 - self.config.per_beta_start) * frac

    def update(self, cpu_batch, policy, t_env):
        """One gradient step on a batch sampled from the replay (CPU) and its policy targets; returns the batch's new
        PER priorities |v̂_0 - z_0| + 1e-6 (numpy [B]) for the caller to write back to the replay."""
        config = self.config
        batch, policy = cpu_batch.to(config.device), policy.to(config.device)  # one copy per update
        with torch.no_grad():
            self.target_model.eval()
            targets = value_targets(batch, self.target_model, config)
        losses = self.unroll_losses(batch, targets, policy)
        per_sample = (config.reward_loss_coef * losses.reward + config.value_loss_coef * losses.value
                      + config.policy_loss_coef * losses.policy + config.consistency_loss_coef * losses.consistency)
        # 1/K scaling of the whole loss (EfficientZero's gradient hook), weighted by the PER importance weights.
        loss = (batch.is_weights * per_sample).mean() / config.unroll_steps

        self.optimiser.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_norm_clip)
        self.optimiser.step()
        check_finite(t_env, {"loss": loss, "grad_norm": grad_norm}, self.model.parameters())
        self.model.eval()

        priorities = ((losses.root_value - targets[:, 0]).abs() + 1e-6).cpu().numpy()
        self.update_count += 1
        if self.update_count % config.target_model_interval == 0:
            self.target_model.load_state_dict(self.target_snapshot.state_dict())
            self.target_snapshot.load_state_dict(self.model.state_dict())
            self.target_version += 1
        if t_env - self.log_stats_t >= config.learner_log_interval:
            self.log_stats(t_env, loss, losses, grad_norm, targets, policy)
        return priorities

    def unroll_latents(self, batch):
        """Unrolls the online model K steps from o_t with the real actions (train mode): the latents the value and
        policy heads read at k = 0..K, the latents flowing on to steps 1..K (the consistency head's input) and the
        reward logits of steps 1..K. The 0.5 latent-gradient scale sits where latent_grad_scale_at says."""
        latent = self.model.represent(batch.inputs[:, 0])
        head_latents, next_latents, reward_logits = [latent], [], []
        scale_latent_itself = self.config.latent_grad_scale_at == "latent"
        for k in range(1, self.config.unroll_steps + 1):
            latent, step_reward_logits = self.model.dynamics(latent, batch.actions[:, k - 1])
            reward_logits.append(step_reward_logits)
            if scale_latent_itself:  # the official hook: step k's value and policy gradients halved too
                latent = scale_gradient(latent, 0.5)
            head_latents.append(latent)
            if not scale_latent_itself:  # MuZero: only what flows on (to step k+1 and the consistency head)
                latent = scale_gradient(latent, 0.5)
            next_latents.append(latent)
        return head_latents, next_latents, reward_logits

    def unroll_losses(self, batch, targets, policy):
        """The loss terms of the K-step unroll (unroll_latents); targets [B, K+1] are the z_{t+k}.

        Only the dynamics runs step by step; the value / policy heads, the projection and every loss term run once
        on all K+1 steps stacked (the heads have no dropout and act per sample, so this is the same function in
        fewer, larger calls)."""
        config = self.config
        unroll_steps = config.unroll_steps
        inputs = batch.inputs[:, :unroll_steps + 1]  # [B, K+1, N, D]
        B = inputs.shape[0]
        with torch.no_grad():  # consistency targets: stop-gradient projection of the online representation
            real_latents = self.model.represent(inputs[:, 1:].flatten(0, 1))  # of the real o_{t+k}, [B*K, N, H]
            consistency_targets = self.model.project(real_latents, with_predictor=False)
        self.model.train()
        head_latents, next_latents, reward_logits = self.unroll_latents(batch)
        value_logits, policy_logits = self.model.predict(torch.stack(head_latents, 1).flatten(0, 1))
        value_logits = value_logits.view(B, unroll_steps + 1, -1)
        root_value = logits_to_scalar(value_logits[:, 0].detach(), config.value_support_size)
        value_loss = support_cross_entropy(value_logits, targets, config.value_support_size, config.two_hot_target)
        reward_loss = support_cross_entropy(torch.stack(reward_logits, 1), batch.rewards[:, :unroll_steps],
                                            config.reward_support_size, config.two_hot_target)
        policy_loss = policy_loss_terms(self.model.action_space, policy_logits, policy.joint_actions.flatten(0, 1),
                                        policy.coef.flatten(0, 1)).view(B, unroll_steps + 1)
        predicted = self.model.project(torch.stack(next_latents, 1).flatten(0, 1), with_predictor=True)
        consistency_loss = -F.cosine_similarity(predicted, consistency_targets, dim=-1).view(B, unroll_steps)
        return UnrollLosses(reward=reward_loss.sum(1), value=value_loss.sum(1), policy=policy_loss.sum(1),
                            consistency=consistency_loss.sum(1), root_value=root_value)

    def log_stats(self, t_env, loss, losses, grad_norm, targets, policy):
        valid = policy.mask
        stats = {
            "loss": float(loss.item()) * self.config.unroll_steps,
            "reward_loss": float(losses.reward.detach().mean()),
            "value_loss": float(losses.value.detach().mean()),
            "policy_loss": float(losses.policy.detach().mean()),
            "consistency_loss": float(losses.consistency.detach().mean()),
            "grad_norm": float(grad_norm),
            "value_target_mean": float(targets[:, 0].mean()),
            "value_pred_mean": float(losses.root_value.mean()),
            "awpo_weight_mean": float(policy.awpo_weights[valid].mean()) if bool(valid.any()) else 0.0,
            "per_beta": float(self.per_beta()),
            "updates": float(self.update_count),
        }
        for key, value in stats.items():
            self.logger.log_stat(key, value, t_env)
        self.log_stats_t = t_env

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
