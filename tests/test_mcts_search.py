from dataclasses import FrozenInstanceError

import numpy as np
import pytest
import torch

from config_checks import ConfigValueError
import mcts
from helpers.mazero_args import mazero_args
from mcts import ptree
from mcts.search import MCTSSearch, SearchConfig
from modules.mazero.model import MAZeroModel, ModelConfig
from utils.value_transform import logits_to_scalar

torch.set_num_threads(1)

N, A, D = 3, 5, 7


def _config(**overrides):
    """The test's config namespace (src/config/algs/mazero.yaml with `overrides`) and its SearchConfig."""
    args = mazero_args(N, A, **overrides)
    return args, SearchConfig.from_config(args)


def _model(args):
    torch.manual_seed(1)
    model = MAZeroModel(D, ModelConfig.from_config(args)).eval()
    # Non-zero heads so that priors, values and rewards differ between nodes.
    with torch.no_grad():
        for head in (model.value_head, model.reward_head, model.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    return model


def _reference_search(model, config, inputs, avail_actions, noise, seed):
    """The search loop written out plainly against ptree: per-simulation Python-list latents, no pool."""
    B = inputs.shape[0]
    trees = ptree.SampledTrees(B, N, A, config.sampled_actions, config.num_simulations, os_rho=config.os_rho,
                               os_lambda=config.os_lambda, gamma=config.gamma, pb_c_base=config.pb_c_base,
                               pb_c_init=config.pb_c_init, value_delta_min=config.value_delta_min, seed=seed)
    with torch.no_grad():
        latent, v, p = model.initial_inference(inputs)
        trees.prepare(logits_to_scalar(v, 5).numpy(), torch.softmax(p, -1).numpy(), avail_actions, noise,
                      config.root_exploration_fraction)
        latents = [latent]
        for _ in range(config.num_simulations):
            parent, actions = trees.select()
            parents = torch.stack([latents[parent[b]][b] for b in range(B)])
            nxt, r, v, p = model.recurrent_inference(parents, torch.as_tensor(actions, dtype=torch.long))
            latents.append(nxt)
            trees.expand(logits_to_scalar(v, 5).numpy(), logits_to_scalar(r, 5).numpy(),
                         torch.softmax(p, -1).numpy())
    return trees.root_values(), trees.root_children()


def _inputs(B):
    g = torch.Generator().manual_seed(3)
    inputs = torch.randn(B, N, D, generator=g)
    avail_actions = torch.rand(B, N, A, generator=g) > 0.4
    avail_actions[..., 0] = True  # SMAC's no-op stays available
    return inputs, avail_actions.numpy()


def test_driver_matches_plain_ptree_loop():
    args, config = _config(num_simulations=12, sampled_actions=6)
    model = _model(args)
    inputs, avail_actions = _inputs(4)
    search = MCTSSearch(config, seed=5, tree_cls=ptree.SampledTrees)
    result = search.run(model, inputs, avail_actions, add_noise=False)
    ref_values, ref_children = _reference_search(model, config, inputs, avail_actions, None, seed=5 * 1000003)
    np.testing.assert_array_equal(result.stats.joint_actions.numpy(), ref_children["actions"])
    np.testing.assert_array_equal(result.stats.visits.numpy(), ref_children["visits"])
    np.testing.assert_allclose(result.root_values, ref_values, rtol=1e-6)
    np.testing.assert_allclose(result.stats.q_values.numpy(), ref_children["q_values"], rtol=1e-6)
    assert (result.stats.visits.sum(1) == config.num_simulations).all()


@pytest.mark.skipif(mcts.ctree is None, reason="mcts.ctree not built")
def test_driver_same_results_with_compiled_tree():
    args, config = _config(num_simulations=12, sampled_actions=6)
    model = _model(args)
    inputs, avail_actions = _inputs(4)
    results = [MCTSSearch(config, seed=5, tree_cls=cls).run(model, inputs, avail_actions, add_noise=True)
               for cls in (ptree.SampledTrees, mcts.ctree.SampledTrees)]
    np.testing.assert_array_equal(results[0].stats.joint_actions, results[1].stats.joint_actions)
    np.testing.assert_array_equal(results[0].stats.visits, results[1].stats.visits)
    np.testing.assert_allclose(results[0].root_values, results[1].root_values, rtol=1e-5)


def test_root_children_available_and_noise_changes_samples():
    args, config = _config(num_simulations=8, sampled_actions=10)
    model = _model(args)
    inputs, avail_actions = _inputs(16)
    search = MCTSSearch(config, seed=0, tree_cls=ptree.SampledTrees)
    noisy = search.run(model, inputs, avail_actions, add_noise=True)
    for b in range(16):
        for k in range(noisy.num_children[b]):
            assert all(avail_actions[b, i, noisy.stats.joint_actions[b, k, i]] for i in range(N))
        assert (noisy.stats.joint_actions[b, noisy.num_children[b]:] == -1).all()
    # Same seed without noise: the sampled root children differ somewhere (the noise reached the root prior).
    clean = MCTSSearch(config, seed=0, tree_cls=ptree.SampledTrees).run(model, inputs, avail_actions,
                                                                        add_noise=False)
    assert not torch.equal(noisy.stats.joint_actions, clean.stats.joint_actions)


def test_rejects_agent_without_available_action():
    args, config = _config(num_simulations=2, sampled_actions=2)
    inputs, avail_actions = _inputs(2)
    avail_actions[1, 2] = False
    search = MCTSSearch(config, seed=0, tree_cls=ptree.SampledTrees)
    with pytest.raises(ValueError, match="available action"):
        search.run(_model(args), inputs, avail_actions, add_noise=False)


def test_use_os_lambda_false_gives_plain_mean_backup():
    model = _model(mazero_args(N, A, num_simulations=12, sampled_actions=6))
    inputs, avail_actions = _inputs(4)
    values = {}
    for flag in (True, False):
        _, config = _config(num_simulations=12, sampled_actions=6, use_os_lambda=flag)
        search = MCTSSearch(config, seed=5, tree_cls=ptree.SampledTrees)
        assert config.tree_kwargs()["use_os_lambda"] is flag
        values[flag] = search.run(model, inputs, avail_actions, add_noise=False).root_values
    assert not np.allclose(values[True], values[False])


def test_traced_network_follows_the_weights_it_was_traced_with():
    # The search traces the model once; later weight changes (optimiser steps, load_state_dict) must reach it.
    args, config = _config(num_simulations=8, sampled_actions=4)
    model, other = _model(args), MAZeroModel(D, ModelConfig.from_config(args)).eval()
    with torch.no_grad():
        for head in (other.value_head, other.reward_head, other.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    inputs, avail_actions = _inputs(3)
    search = MCTSSearch(config, seed=2, tree_cls=ptree.SampledTrees)
    search.run(model, inputs, avail_actions, add_noise=False)  # traced with the first weights
    model.load_state_dict(other.state_dict())
    after = search.run(model, inputs, avail_actions, add_noise=False)
    search.reseed(2)
    search.num_searches = 1
    fresh = MCTSSearch(config, seed=2, tree_cls=ptree.SampledTrees)
    fresh.num_searches = 1
    expected = fresh.run(other, inputs, avail_actions, add_noise=False)  # a new trace of the new weights
    np.testing.assert_array_equal(after.stats.visits.numpy(), expected.stats.visits.numpy())
    np.testing.assert_array_equal(after.root_values, expected.root_values)
    torch.testing.assert_close(after.policy_logits, other.initial_inference(inputs)[2], rtol=0, atol=0)


def test_search_network_trace_equals_eager_for_both_models():
    from mcts.search import SearchNetwork, trace_search_network
    from modules.mazero.flat_model import FlatMuZeroModel
    args = mazero_args(N, A, num_simulations=4, sampled_actions=4)
    for model in (_model(args), FlatMuZeroModel(D, ModelConfig.from_config(args)).eval()):
        network = SearchNetwork(model, 5, 5)
        inputs = torch.randn(6, N, D)
        with torch.no_grad():
            latent = model.initial_inference(inputs)[0]
            tree_actions = torch.randint(0, model.action_space.factor_size, (6, model.action_space.n_factors))
            traced = trace_search_network(network, inputs[:2], latent[:2], tree_actions[:2])
            # traced on 2 roots, called on 6: the trace holds no batch size
            for eager_out, traced_out in zip(network.root(inputs) + network.step(latent, tree_actions),
                                             traced.root(inputs) + traced.step(latent, tree_actions)):
                torch.testing.assert_close(traced_out, eager_out, rtol=0, atol=0)


def test_search_runs_eagerly_with_a_warning_where_tracing_fails(monkeypatch):
    args, config = _config(num_simulations=8, sampled_actions=4)
    model = _model(args)
    inputs, avail_actions = _inputs(3)
    traced = MCTSSearch(config, seed=4, tree_cls=ptree.SampledTrees).run(model, inputs, avail_actions,
                                                                         add_noise=True)

    def fail(*args, **kwargs):
        raise RuntimeError("tracing is not supported here")
    monkeypatch.setattr(torch.jit, "trace_module", fail)
    with pytest.warns(RuntimeWarning, match="tracing is not supported here"):
        eager = MCTSSearch(config, seed=4, tree_cls=ptree.SampledTrees).run(model, inputs, avail_actions,
                                                                            add_noise=True)
    np.testing.assert_array_equal(eager.stats.visits.numpy(), traced.stats.visits.numpy())
    np.testing.assert_array_equal(eager.root_values, traced.root_values)


def test_search_config_reads_the_config_keys_and_checks_them():
    args, config = _config(num_simulations=12, reanalyse_num_simulations=5)
    assert (config.num_simulations, config.gamma, config.root_search) == (12, args.gamma, args.root_search)
    assert SearchConfig.from_config(args, num_simulations=args.reanalyse_num_simulations).num_simulations == 5
    with pytest.raises(FrozenInstanceError):
        config.num_simulations = 3
    for key, value in (("os_rho", 1.5), ("num_simulations", 0), ("root_search", "greedy"), ("use_os_lambda", 1)):
        with pytest.raises(ConfigValueError, match=f"config key '{key}'"):
            SearchConfig.from_config(args, **{key: value})
    del args.pb_c_init
    with pytest.raises(AttributeError, match="pb_c_init"):
        SearchConfig.from_config(args)
    with pytest.raises(TypeError, match="discount"):
        SearchConfig.from_config(mazero_args(N, A), discount=0.9)
