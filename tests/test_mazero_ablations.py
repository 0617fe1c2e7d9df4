"""The paper's ablation switches (Figs. 5-6): each one removes its component, shown by what the code computes."""
import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from components.mazero_replay import MAZeroReplayBuffer, ReplayConfig
from controllers.mazero_controller import MAZeroMAC
from helpers.harness_helpers import load_json, run_main, sacred_runs
from learners.mazero_learner import LearnerConfig, MAZeroLearner
from helpers.mazero_args import SMALL, mazero_args
from helpers.mazero_learner_helpers import make_feed
from mcts import ptree
from mcts.search import MCTSSearch, SearchConfig, SearchStats
from modules.agents import REGISTRY as agent_REGISTRY
from modules.mazero.action_space import JointActions
from modules.mazero.model import AgentLinear, MAZeroModel, ModelConfig
from modules.mazero.flat_model import MAX_JOINT_ACTIONS, FlatMuZeroModel
from utils.config_record import record_from_config

torch.set_num_threads(1)


def _n_params(module):
    return sum(p.numel() for p in module.parameters())


# --- use_os_lambda: False -----------------------------------------------------------------------------------------
class RecordingTrees(ptree.SampledTrees):
    """ptree that records each simulation's parent, tree actions, leaf value and reward."""

    def prepare(self, values, probs, avail_actions, noise, noise_eps):
        self.log = {"root_values": np.asarray(values, np.float64), "parents": [], "actions": [], "values": [],
                    "rewards": []}
        return super().prepare(values, probs, avail_actions, noise, noise_eps)

    def select(self):
        parents, actions = super().select()
        self.log["parents"].append(np.asarray(parents).copy())
        self.log["actions"].append(np.asarray(actions).copy())
        return parents, actions

    def expand(self, values, rewards, probs):
        self.log["values"].append(np.asarray(values, np.float64))
        self.log["rewards"].append(np.asarray(rewards, np.float64))
        return super().expand(values, rewards, probs)


def _brute_force_mean_backup(log, b, gamma):
    """Root value and root-child Q of tree b from the definition of the mean backup: V(s) = mean over every node u
    of s's subtree (s included) of the discounted return from s to u, ending in v(u)."""
    S = len(log["parents"])
    parent = [-1] + [int(log["parents"][j][b]) for j in range(S)]
    value = [log["root_values"][b]] + [log["values"][j][b] for j in range(S)]
    reward = [0.0] + [log["rewards"][j][b] for j in range(S)]

    def mean_value(node):
        returns = []
        for u in range(S + 1):
            path, x = [], u
            while x != -1 and x != node:
                path.append(x)
                x = parent[x]
            if x != node:
                continue  # u is not in node's subtree
            path.reverse()  # node's child ... u
            g = sum(gamma ** k * reward[p] for k, p in enumerate(path)) + gamma ** len(path) * value[u]
            returns.append(g)
        return np.mean(returns)

    root_children = {tuple(log["actions"][j][b]): j + 1 for j in range(S) if parent[j + 1] == 0}
    q = {a: reward[c] + gamma * mean_value(c) for a, c in root_children.items()}
    return mean_value(0), q


def _search_model(args, D):
    torch.manual_seed(1)
    model = MAZeroModel(D, ModelConfig.from_config(args)).eval()
    with torch.no_grad():  # non-zero heads: values, rewards and priors differ between nodes
        for head in (model.value_head, model.reward_head, model.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    return model


def test_use_os_lambda_false_search_backs_up_the_plain_mean():
    N, A, D, B = 3, 4, 6, 5
    g = torch.Generator().manual_seed(0)
    inputs = torch.randn(B, N, D, generator=g)
    avail_actions = torch.ones(B, N, A, dtype=torch.bool)
    root_values = {}
    for use_os_lambda in (False, True):
        args = mazero_args(N, A, num_simulations=20, sampled_actions=5, use_os_lambda=use_os_lambda, **SMALL)
        trees = []  # the search's tree object, kept to read its log

        def make_trees(*tree_args, **tree_kwargs):
            trees.append(RecordingTrees(*tree_args, **tree_kwargs))
            return trees[-1]

        search = MCTSSearch(SearchConfig.from_config(args), seed=3, tree_cls=make_trees)
        result = search.run(_search_model(args, D), inputs, avail_actions, add_noise=True)
        root_values[use_os_lambda] = result.root_values
        for b in range(B):
            expected_root, expected_q = _brute_force_mean_backup(trees[0].log, b, args.gamma)
            matches = result.root_values[b] == pytest.approx(expected_root, abs=1e-5)
            assert matches == (not use_os_lambda), (use_os_lambda, b)
            if not use_os_lambda:
                for k in range(result.num_children[b]):
                    action = tuple(result.stats.joint_actions[b, k].tolist())
                    assert float(result.stats.q_values[b, k]) == pytest.approx(expected_q[action], abs=1e-5)
    # same inputs, same seed: the OS(lambda) backup gives other root values
    assert not np.allclose(root_values[False], root_values[True], atol=1e-4)


# --- policy_loss: bc ------------------------------------------------------------------------------------------------
def _buffer(args, obs_dim, qvalue_seed):
    buf = MAZeroReplayBuffer(record_from_config(ReplayConfig, args, buffer_transitions=200, seed=0), obs_dim)
    g = torch.Generator().manual_seed(0)
    q = torch.Generator().manual_seed(qvalue_seed)
    T = 6
    for e in range(3):
        search_actions = torch.randint(0, args.n_actions, (T, args.sampled_actions, args.n_agents), generator=g)
        search_actions[:, -1] = -1
        buf.add_episode(torch.randn(T + 1, args.n_agents, obs_dim, generator=g),
                        torch.randint(0, args.n_actions, (T, args.n_agents), generator=g),
                        torch.ones(T + 1, args.n_agents, args.n_actions, dtype=torch.bool),
                        torch.rand(T, generator=g), e % 2 == 0,
                        SearchStats(joint_actions=search_actions,
                                    visits=torch.rand(T, args.sampled_actions, generator=g) * 5,
                                    q_values=torch.randn(T, args.sampled_actions, generator=q) * 3,
                                    network_value=torch.zeros(T)))
    rows = np.array([0, 2, 7, 10, 15])
    buf.sample = lambda batch_transitions, beta: (rows, torch.ones(len(rows)))  # a fixed batch
    return buf


class Logger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t):
        self.stats[key] = value


def _one_update(policy_loss, qvalue_seed):
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.0, batch_transitions=5, t_max=1000,
                       policy_loss=policy_loss, learner_log_interval=0, attention_dropout=0.0, **SMALL)
    buf = _buffer(args, 5, qvalue_seed)
    torch.manual_seed(0)
    model = MAZeroModel(5, ModelConfig.from_config(args)).eval()
    before = copy.deepcopy(model)
    learner = MAZeroLearner(SimpleNamespace(agent=model), Logger(), record_from_config(LearnerConfig, args))
    make_feed(args, buf, learner).train_step(t_env=0)
    return args, buf, before, learner


def _hand_bc_policy_loss(args, buf, model):
    """-sum_k sum_j omega_j sum_i log pi(a^i_j | s^i_k) over the fixed batch, averaged over samples."""
    rows = buf.sample(0, 0)[0]
    K = args.unroll_steps
    window, before_end = buf.window(rows, K + 1)
    with torch.no_grad():
        latent, _, logits = model.initial_inference(buf.inputs[window[:, 0]])
        total = torch.zeros(len(rows))
        for k in range(K + 1):
            if k > 0:
                latent, _, _, logits = model.recurrent_inference(latent, buf.actions[window[:, k - 1]])
            actions = buf.search_stats.joint_actions[window[:, k]]
            visits = buf.search_stats.visits[window[:, k]]
            omega = visits / visits.sum(-1, keepdim=True)
            log_p = torch.log_softmax(logits, -1)  # [B, N, A]
            for b in range(len(rows)):
                if not before_end[b, k]:
                    continue
                for j in range(actions.shape[1]):
                    if actions[b, j, 0] >= 0:
                        total[b] -= omega[b, j] * sum(log_p[b, i, actions[b, j, i]] for i in range(args.n_agents))
    return float(total.mean())


def test_policy_loss_bc_drops_the_advantage_weights():
    for policy_loss in ("bc", "awpo"):
        updated = []
        for qvalue_seed in (1, 2):  # two buffers that differ only in the stored Q values (the advantages)
            args, buf, before, learner = _one_update(policy_loss, qvalue_seed)
            updated.append(torch.cat([p.detach().flatten() for p in learner.model.parameters()]))
            stats = learner.logger.stats
            if policy_loss == "bc":
                assert stats["awpo_weight_mean"] == 1.0
                assert stats["policy_loss"] == pytest.approx(_hand_bc_policy_loss(args, buf, before), rel=1e-5)
            else:
                assert stats["awpo_weight_mean"] != pytest.approx(1.0)
        # BC does not see the advantages at all; AWPO's update depends on them
        assert torch.equal(updated[0], updated[1]) == (policy_loss == "bc")


def _model_config(n_agents, n_actions, **overrides):
    return ModelConfig.from_config(mazero_args(n_agents, n_actions, **SMALL, **overrides))


# --- use_communication: False ---------------------------------------------------------------------------------------
def test_use_communication_false_dynamics_sees_only_its_own_agent_and_has_no_transformer():
    torch.manual_seed(0)
    N, A, D = 3, 4, 6
    counts = {}
    for use_communication in (True, False):
        model = MAZeroModel(D, _model_config(N, A, use_communication=use_communication)).eval()
        latent = model.represent(torch.randn(2, N, D))
        actions = torch.tensor([[0, 1, 2], [3, 2, 1]])
        other_latent = latent.clone()
        other_latent[:, 1:] = model.represent(torch.randn(2, N, D))[:, 1:]  # agents 1, 2 get other latents
        other_actions = actions.clone()
        other_actions[:, 1:] = (actions[:, 1:] + 1) % A  # and other actions
        with torch.no_grad():
            base, _ = model.dynamics(latent, actions)
            moved, _ = model.dynamics(other_latent, other_actions)
        agent0_same = torch.allclose(base[:, 0], moved[:, 0], atol=0)
        assert agent0_same == (not use_communication)
        names = [name for name, _ in model.named_parameters()]
        has_transformer = any(isinstance(m, torch.nn.TransformerEncoder) for m in model.modules())
        assert has_transformer == use_communication
        assert any(name.startswith("communication.") for name in names) == use_communication
        counts[use_communication] = _n_params(model)
    # exactly the transformer's parameters (and the H extra dynamics inputs e^i) are gone
    with_comm = MAZeroModel(D, _model_config(N, A, use_communication=True))
    H, first_hidden = SMALL["latent_dim"], SMALL["dynamics_hidden"][0]
    assert counts[True] - counts[False] == _n_params(with_comm.communication) + H * first_hidden


# --- share_parameters: False ----------------------------------------------------------------------------------------
def test_share_parameters_false_gives_each_agent_its_own_weights():
    N, A, D = 3, 4, 6
    torch.manual_seed(0)
    model = MAZeroModel(D, _model_config(N, A, share_parameters=False, use_communication=False)).eval()
    with torch.no_grad():
        model.policy_head.net[-1].weight.normal_()  # non-zero policy output
    obs = torch.randn(2, N, D)
    actions = torch.tensor([[0, 1, 2], [3, 2, 1]])

    def outputs():
        with torch.no_grad():
            latent = model.represent(obs)
            next_latent, _ = model.dynamics(latent, actions)
            _, policy = model.predict(latent)
        return latent, next_latent, policy

    before = outputs()
    # the same input for every agent still gives different outputs: the weights differ
    same_obs = obs[:, :1].expand(-1, N, -1)
    with torch.no_grad():
        latent_same = model.represent(same_obs)
    assert not torch.allclose(latent_same[:, 0], latent_same[:, 1])
    # perturbing agent 0's slice of every per-agent parameter changes agent 0 only
    with torch.no_grad():
        for module in (model.feature_norm, model.representation, model.dynamics_net, model.policy_head):
            for p in module.parameters():
                assert p.shape[0] == N
                p[0] += 0.5
    after = outputs()
    for x, y in zip(before, after):
        assert not torch.allclose(x[:, 0], y[:, 0])
        assert torch.equal(x[:, 1:], y[:, 1:])


def test_share_parameters_false_scales_local_parameters_with_n_agents():
    A, D = 4, 6
    for N in (2, 3, 5):
        shared = MAZeroModel(D, _model_config(N, A, share_parameters=True))
        separate = MAZeroModel(D, _model_config(N, A, share_parameters=False))
        for name in ("feature_norm", "representation", "dynamics_net", "policy_head"):
            assert _n_params(getattr(separate, name)) == N * _n_params(getattr(shared, name)), (N, name)
        for name in ("communication", "reward_head", "value_head", "projection", "projection_predictor"):
            assert _n_params(getattr(separate, name)) == _n_params(getattr(shared, name)), (N, name)
        assert not any(isinstance(m, AgentLinear) for m in shared.modules())


# --- agent: mazero_flat ----------------------------------------------------------------------------------------------------
def test_joint_action_space_round_trip_and_available_product():
    space = JointActions(3, 4)
    every = torch.cartesian_prod(torch.arange(4), torch.arange(4), torch.arange(4))  # lexicographic, agent 0 first
    index = space.encode(every)
    assert index.squeeze(-1).tolist() == list(range(64))
    assert torch.equal(space.decode(index), every)
    padded = torch.tensor([[[-1, -1, -1], [1, 2, 3]]])
    assert space.encode(padded).tolist() == [[[-1], [27]]]
    assert space.decode(torch.tensor([[-1], [27]])).tolist() == [[-1, -1, -1], [1, 2, 3]]
    avail_actions = torch.rand(5, 3, 4) > 0.4
    joint = space.encode_avail_actions(avail_actions)
    assert joint.shape == (5, 1, 64)
    for b in range(5):
        for j, a in enumerate(every):
            assert joint[b, 0, j] == all(avail_actions[b, i, a[i]] for i in range(3))


def test_flat_model_is_one_agent_over_joint_actions_without_per_agent_modules():
    N, A, D = 2, 3, 5
    args = mazero_args(N, A, agent="mazero_flat", share_parameters=False, **SMALL)
    model = agent_REGISTRY["mazero_flat"](D, ModelConfig.from_config(args))
    assert isinstance(model, FlatMuZeroModel)
    assert not any(isinstance(m, (AgentLinear, torch.nn.TransformerEncoder)) for m in model.modules())
    assert not hasattr(model.core, "communication")
    assert model.core.representation.net[0].in_features == N * D  # one representation of the joint observation
    latent, value_logits, policy_logits = model.initial_inference(torch.randn(4, N, D))
    assert latent.shape == (4, 1, SMALL["latent_dim"]) and policy_logits.shape == (4, 1, A ** N)
    # dynamics takes per-agent actions and one-hot encodes the joint index
    next_latent, _ = model.dynamics(latent, torch.tensor([[0, 1], [2, 2], [1, 0], [0, 0]]))
    assert next_latent.shape == latent.shape
    assert model.core.dynamics_net.net[0].in_features == SMALL["latent_dim"] + A ** N


def test_flat_model_refuses_a_too_large_joint_action_space():
    with pytest.raises(ValueError, match=r"14 \*\* 8 = 1475789056 joint actions \(limit 4096\)"):
        FlatMuZeroModel(10, _model_config(8, 14))
    assert 9 ** 3 <= MAX_JOINT_ACTIONS  # SMAX / SMAC 3m fits


def test_flat_search_and_controller_act_with_available_per_agent_actions():
    N, A, OBS, B = 2, 3, 4, 6
    args = mazero_args(N, A, agent="mazero_flat", num_simulations=10, sampled_actions=4, test_mcts=False, **SMALL)
    torch.manual_seed(0)
    mac = MAZeroMAC({"obs": {"vshape": OBS}}, {"agents": N}, args)  # agent built by the registry from `agent`
    model = mac.agent
    assert isinstance(model, FlatMuZeroModel)
    with torch.no_grad():
        model.core.policy_head.net[-1].weight.normal_()
    g = torch.Generator().manual_seed(1)
    avail_actions = torch.rand(B, N, A, generator=g) > 0.4
    avail_actions[..., 0] = True
    batch = {"obs": torch.randn(B, 1, N, OBS, generator=g), "actions_onehot": torch.zeros(B, 1, N, A),
             "avail_actions": avail_actions[:, None].int()}
    inputs = mac.build_inputs(batch, 0)
    result = MCTSSearch(mac.search_config, seed=0, tree_cls=ptree.SampledTrees).run(model, inputs, avail_actions,
                                                                                    add_noise=True)
    assert result.stats.joint_actions.shape == (B, args.sampled_actions, N)  # stored per agent, as for MAZero
    assert (result.stats.visits.sum(1) == args.num_simulations).all()
    for b in range(B):
        for k in range(result.num_children[b]):
            assert all(avail_actions[b, i, result.stats.joint_actions[b, k, i]] for i in range(N))
    # test_mcts False: argmax of the joint policy over available joint actions, returned per agent
    chosen = mac.select_actions(batch, 0, 0, test_mode=True)
    with torch.no_grad():
        logits = model.predict(model.represent(inputs))[1]
    space = JointActions(N, A)
    expected = space.decode(logits.masked_fill(~space.encode_avail_actions(avail_actions), -float("inf")).argmax(-1))
    assert chosen.shape == (B, N) and torch.equal(chosen, expected)
    assert all(avail_actions[b, i, chosen[b, i]] for b in range(B) for i in range(N))


TINY = ["runner=episode", "batch_size_run=1", "t_max=80", "batch_transitions=8", "num_simulations=4",
        "sampled_actions=3", "reanalyse_ratio=0.5", "test_interval=40", "test_nepisode=2", "log_interval=40",
        "learner_log_interval=0", "runner_log_interval=40", "latent_dim=16", "representation_hidden=[16]",
        "dynamics_hidden=[16]", "attention_heads=2", "attention_ff_dim=16", "projection_hidden=16",
        "projection_dim=16", "predictor_hidden=8", "agent=mazero_flat"]


@pytest.mark.subprocess
def test_flat_model_trains_end_to_end_on_the_matrix_game(tmp_path):
    run_main(["--config=mazero", "--env-config=matrix", "with"] + TINY, tmp_path)
    (run_dir,) = sacred_runs(tmp_path, "mazero", "matrix")
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    info = load_json(run_dir, "info.json")
    assert info["updates"][-1] >= 20  # 0.5 updates per env step once 8 transitions are stored
    for key in ("loss", "policy_loss", "value_loss", "test_return_mean"):
        assert all(np.isfinite(v) for v in info[key]), key
    assert load_json(run_dir, "config.json")["agent"] == "mazero_flat"
