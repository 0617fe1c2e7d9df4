"""MAZero learner: K-step unroll with reward / value / policy (AWPO) / consistency losses (MAZero spec §4-§5).

Targets: n-step value targets bootstrapped from the target network's predicted value ("pred-re") with the
off-policy n-shrink; policy targets from a search with the target network at o_{t..t+K} for a `reanalyse_ratio`
share of the batch, the self-play search statistics stored at collection for the rest.
"""
import copy
import time

import torch
import torch.nn.functional as F

from mcts.search import MCTSSearch, legal_or_all
from utils.value_transform import logits_to_scalar, scalar_to_two_hot


# ---------------------------------------------------------------------------------------------------------------
# Targets and loss terms as pure functions (unit-tested by hand in tests/test_mazero_learner.py)
# ---------------------------------------------------------------------------------------------------------------
def off_policy_td_steps(age, td_steps, age_per_step):
    """n' = clip(n - floor(age / age_per_step), 1, n): older transitions bootstrap sooner (spec §5.4)."""
    return (td_steps - torch.div(age, age_per_step, rounding_mode="floor").long()).clamp(1, td_steps)


def bootstrap_offsets(steps_left, td_steps, unroll_steps):
    """h_k = min(n', T - (t+k)), 0 past the end: the horizon of the value target at unroll step k.

    steps_left [B] = T - t, td_steps [B] = n'. Returns [B, K+1].
    """
    k = torch.arange(unroll_steps + 1).unsqueeze(0)
    return torch.minimum(td_steps.unsqueeze(1), steps_left.unsqueeze(1) - k).clamp(min=0)


def n_step_value_targets(rewards, bootstrap_values, horizons, steps_left, terminated, gamma):
    """z_{t+k} = sum_{j<h_k} gamma^j u_{t+k+j} + gamma^{h_k} v̂(o_{t+k+h_k}).

    rewards [B, K+n] (u_t.., 0 past the end), bootstrap_values [B, K+1] (target value at row t+k+h_k),
    horizons [B, K+1] (h_k), steps_left [B] (T - t), terminated [B]. The bootstrap is dropped at a true terminal
    (t+k+h_k = T of a terminated episode) and kept at a time-out; past the end (t+k >= T) the target is 0.
    """
    B, K1 = horizons.shape
    z = torch.zeros(B, K1)
    for j in range(int(horizons.max().item()) if horizons.numel() else 0):
        k_plus_j = torch.arange(K1).unsqueeze(0) + j
        z += (gamma ** j) * rewards.gather(1, k_plus_j.expand(B, -1)) * (j < horizons)
    k = torch.arange(K1).unsqueeze(0)
    inside = k < steps_left.unsqueeze(1)
    at_terminal = (k + horizons == steps_left.unsqueeze(1)) & terminated.unsqueeze(1)
    use_bootstrap = inside & ~at_terminal
    z += torch.where(use_bootstrap, (gamma ** horizons.float()) * bootstrap_values, torch.zeros(()))
    return z


def policy_target_weights(advantages, mask, policy_loss, awpo_alpha, adv_clip):
    """Per-child weights w of the policy loss.

    AWPO (spec §4.2): advantages normalised over every valid entry of the batch, w = min(exp(Ã / alpha), clip).
    BC: w = 1 (Sampled MuZero's -sum omega log pi).
    """
    if policy_loss == "bc":
        return mask.float()
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


class MAZeroLearner:
    def __init__(self, mac, scheme, logger, args):
        if args.policy_loss not in ("awpo", "bc"):
            raise ValueError(f"policy_loss must be 'awpo' or 'bc', got {args.policy_loss!r}")
        if not 0.0 <= args.reanalyse_ratio <= 1.0:
            raise ValueError(f"reanalyse_ratio must be in [0, 1], got {args.reanalyse_ratio}")
        self.args = args
        self.mac = mac
        self.logger = logger
        self.model = mac.agent
        # Target network for reanalysis and value bootstraps. The official learner hands over the snapshot taken
        # one interval earlier, so the target lags the online model by 1-2 intervals (spec §5.4).
        self.target_model = copy.deepcopy(self.model).eval()
        self.target_snapshot = copy.deepcopy(self.model).eval()
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=args.lr, eps=args.optim_eps)
        self.search = MCTSSearch(args, seed=args.seed + 1)
        self.update_count = 0
        self.total_updates = max(1, int(args.t_max * args.updates_per_env_step))
        # auto_td_steps of the official code: the replay age (in transitions) per unit of n-shrink.
        self.off_policy_age_unit = max(1.0, args.off_policy_age_fraction * args.t_max)
        self.log_stats_t = -args.learner_log_interval - 1
        self.reanalyse_seconds = 0.0  # read by the run loop for its time profile

    def per_beta(self):
        """PER beta annealed linearly from per_beta to 1 over the run's updates."""
        frac = min(1.0, self.update_count / self.total_updates)
        return self.args.per_beta + (1.0 - self.args.per_beta) * frac

    def _policy_targets(self, buffer, window_rows, before_end):
        """Sampled joint actions, omega, advantages and mask for unroll steps k = 0..K: [B, K+1, Ks, ...]."""
        args = self.args
        B, K1 = window_rows.shape
        actions = buffer.search_actions[window_rows].clone()  # [B, K+1, Ks, N]
        visits = buffer.search_visits[window_rows].clone()
        qvalues = buffer.search_qvalues[window_rows].clone()
        baseline = buffer.search_pred_value[window_rows].clone()  # [B, K+1]
        n_reanalyse = int(round(args.reanalyse_ratio * B))
        if n_reanalyse > 0:
            # PER already samples at random, so the first n_reanalyse elements are a random share of the batch.
            # Only roots before the episode end are searched: the policy loss masks the others.
            searched = torch.zeros(B, K1, dtype=torch.bool)
            searched[:n_reanalyse] = before_end[:n_reanalyse]
            roots = window_rows[searched]
            start = time.perf_counter()
            self.target_model.eval()
            result = self.search.run(self.target_model, buffer.inputs[roots], legal_or_all(buffer.avail[roots]),
                                     add_noise=True)
            self.reanalyse_seconds += time.perf_counter() - start
            actions[searched] = torch.from_numpy(result.actions)
            visits[searched] = torch.from_numpy(result.visits)
            qvalues[searched] = torch.from_numpy(result.q_values)
            baseline[searched] = torch.from_numpy(result.pred_values)
        mask = (actions[..., 0] >= 0) & before_end.unsqueeze(-1)
        omega = visits / visits.sum(-1, keepdim=True).clamp(min=1.0)  # n_j / S (children visits sum to S)
        advantages = qvalues - baseline.unsqueeze(-1)
        return actions, omega, advantages, mask

    def train(self, buffer, t_env):
        args = self.args
        K, n = args.unroll_steps, args.td_steps
        rows, is_weights = buffer.sample(args.batch_size, self.per_beta())
        window_rows, before_end = buffer.window(rows, K + n + 1)  # offsets 0..K+n
        B = len(rows)
        steps_left = buffer.steps_to_end(rows)
        terminated = buffer.episode_terminated[torch.as_tensor(rows)]
        inputs = buffer.inputs[window_rows[:, :K + 1]]  # [B, K+1, N, D]
        actions = buffer.actions[window_rows[:, :K]]  # [B, K, N] (0 past the end)
        rewards = buffer.rewards[window_rows[:, :K + n]]  # [B, K+n] (0 past the end)

        # --- value targets (pred-re): n-step returns bootstrapped from the target network ----------------------
        with torch.no_grad():
            if args.use_off_policy_correction:
                age = buffer.transitions_collected - buffer.insert_count[torch.as_tensor(rows)]
                td = off_policy_td_steps(age, n, self.off_policy_age_unit)
            else:
                td = torch.full((B,), n, dtype=torch.long)
            horizons = bootstrap_offsets(steps_left, td, K)  # [B, K+1]
            boot_rows = window_rows.gather(1, torch.arange(K + 1).unsqueeze(0) + horizons)
            self.target_model.eval()
            _, boot_logits, _ = self.target_model.initial_inference(buffer.inputs[boot_rows.reshape(-1)])
            boot_values = logits_to_scalar(boot_logits, args.value_support_size).view(B, K + 1)
            value_targets = n_step_value_targets(rewards, boot_values, horizons, steps_left, terminated, args.gamma)

            target_actions, omega, advantages, policy_mask = self._policy_targets(
                buffer, window_rows[:, :K + 1], before_end[:, :K + 1])
            weights = policy_target_weights(advantages, policy_mask, args.policy_loss, args.awpo_alpha,
                                            args.adv_clip)
            policy_coef = omega * weights  # [B, K+1, Ks]

            # consistency targets: stop-gradient projection of the online representation of the real o_{t+k}
            real_latents = self.model.represent(inputs[:, 1:].flatten(0, 1))
            consistency_targets = self.model.project(real_latents, with_predictor=False).view(B, K, -1)

        # --- unroll ------------------------------------------------------------------------------------------------
        self.model.train()
        latent, value_logits, policy_logits = self.model.initial_inference(inputs[:, 0])
        value_pred0 = logits_to_scalar(value_logits.detach(), args.value_support_size)
        value_loss = self._ce(value_logits, value_targets[:, 0], args.value_support_size)
        policy_loss = self._policy_loss(policy_logits, target_actions[:, 0], policy_coef[:, 0])
        reward_loss = torch.zeros(B)
        consistency_loss = torch.zeros(B)
        for k in range(1, K + 1):
            latent, reward_logits, value_logits, policy_logits = self.model.recurrent_inference(latent,
                                                                                               actions[:, k - 1])
            latent = scale_gradient(latent, 0.5)
            reward_loss = reward_loss + self._ce(reward_logits, rewards[:, k - 1], args.reward_support_size)
            value_loss = value_loss + self._ce(value_logits, value_targets[:, k], args.value_support_size)
            policy_loss = policy_loss + self._policy_loss(policy_logits, target_actions[:, k], policy_coef[:, k])
            predicted = self.model.project(latent, with_predictor=True)
            consistency_loss = consistency_loss - F.cosine_similarity(predicted, consistency_targets[:, k - 1],
                                                                      dim=-1)
        per_sample = (args.reward_loss_coef * reward_loss + args.value_loss_coef * value_loss
                      + args.policy_loss_coef * policy_loss + args.consistency_loss_coef * consistency_loss)
        # 1/K scaling of the whole loss (EfficientZero's gradient hook), weighted by the PER importance weights.
        loss = (is_weights * per_sample).mean() / K

        self.optimiser.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.grad_norm_clip)
        self.optimiser.step()
        self.model.eval()

        buffer.update_priorities(rows, ((value_pred0 - value_targets[:, 0]).abs() + 1e-6).numpy())
        self.update_count += 1
        if self.update_count % args.target_model_interval == 0:
            self.target_model.load_state_dict(self.target_snapshot.state_dict())
            self.target_snapshot.load_state_dict(self.model.state_dict())

        if t_env - self.log_stats_t >= args.learner_log_interval:
            valid = policy_mask
            reward_loss, value_loss = reward_loss.detach(), value_loss.detach()
            policy_loss, consistency_loss = policy_loss.detach(), consistency_loss.detach()
            stats = {
                "loss": float(loss.item()) * K,
                "reward_loss": float(reward_loss.mean()),
                "value_loss": float(value_loss.mean()),
                "policy_loss": float(policy_loss.mean()),
                "consistency_loss": float(consistency_loss.mean()),
                "grad_norm": float(grad_norm),
                "value_target_mean": float(value_targets[:, 0].mean()),
                "value_pred_mean": float(value_pred0.mean()),
                "awpo_weight_mean": float(weights[valid].mean()) if bool(valid.any()) else 0.0,
                "per_beta": float(self.per_beta()),
                "updates": float(self.update_count),
            }
            for key, value in stats.items():
                self.logger.log_stat(key, value, t_env)
            self.log_stats_t = t_env

    @staticmethod
    def _ce(logits, scalars, support_size):
        return -(scalar_to_two_hot(scalars, support_size) * F.log_softmax(logits, dim=-1)).sum(-1)

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
        self.target_model.load_state_dict(torch.load(f"{path}/target_agent.th", map_location="cpu"))
        self.target_snapshot.load_state_dict(torch.load(f"{path}/target_snapshot.th", map_location="cpu"))
        self.optimiser.load_state_dict(torch.load(f"{path}/opt.th", map_location="cpu"))
        self.update_count = torch.load(f"{path}/learner_state.th")["update_count"]
