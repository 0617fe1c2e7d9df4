import numpy as np
import pytest
import torch

import mcts
from mazero_args import mazero_args
from mcts import ptree
from mcts.search import MCTSSearch
from modules.mazero.model import MAZeroModel
from utils.value_transform import logits_to_scalar

torch.set_num_threads(1)

N, A, D = 3, 5, 7


def _model(args):
    torch.manual_seed(1)
    model = MAZeroModel(D, args).eval()
    # Non-zero heads so that priors, values and rewards differ between nodes.
    with torch.no_grad():
        for head in (model.value_head, model.reward_head, model.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    return model


def _reference_search(model, args, inputs, legal, noise, seed):
    """The search loop written out plainly against ptree: per-simulation Python-list latents, no pool."""
    B = inputs.shape[0]
    trees = ptree.SampledTrees(B, N, A, args.sampled_actions, args.num_simulations, rho=args.os_rho,
                               lam=args.os_lambda, discount=args.gamma, pb_c_base=args.pb_c_base,
                               pb_c_init=args.pb_c_init, value_delta_min=args.value_delta_min, seed=seed)
    with torch.no_grad():
        latent, v, p = model.initial_inference(inputs)
        trees.prepare(logits_to_scalar(v, 5).numpy(), torch.softmax(p, -1).numpy(), legal, noise,
                      args.root_exploration_fraction)
        latents = [latent]
        for _ in range(args.num_simulations):
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
    legal = torch.rand(B, N, A, generator=g) > 0.4
    legal[..., 0] = True  # SMAC's no-op stays available
    return inputs, legal.numpy()


def test_driver_matches_plain_ptree_loop():
    args = mazero_args(N, A, num_simulations=12, sampled_actions=6)
    model = _model(args)
    inputs, legal = _inputs(4)
    search = MCTSSearch(args, seed=5, tree_cls=ptree.SampledTrees)
    result = search.run(model, inputs, legal, add_noise=False)
    ref_values, ref_children = _reference_search(model, args, inputs, legal, None, seed=5 * 1000003)
    np.testing.assert_array_equal(result.stats.joint_actions.numpy(), ref_children["actions"])
    np.testing.assert_array_equal(result.stats.visits.numpy(), ref_children["visits"])
    np.testing.assert_allclose(result.root_values, ref_values, rtol=1e-6)
    np.testing.assert_allclose(result.stats.q_values.numpy(), ref_children["q_values"], rtol=1e-6)
    assert (result.stats.visits.sum(1) == args.num_simulations).all()


@pytest.mark.skipif(mcts.ctree is None, reason="mcts.ctree not built")
def test_driver_same_results_with_compiled_tree():
    args = mazero_args(N, A, num_simulations=12, sampled_actions=6)
    model = _model(args)
    inputs, legal = _inputs(4)
    results = [MCTSSearch(args, seed=5, tree_cls=cls).run(model, inputs, legal, add_noise=True)
               for cls in (ptree.SampledTrees, mcts.ctree.SampledTrees)]
    np.testing.assert_array_equal(results[0].stats.joint_actions, results[1].stats.joint_actions)
    np.testing.assert_array_equal(results[0].stats.visits, results[1].stats.visits)
    np.testing.assert_allclose(results[0].root_values, results[1].root_values, rtol=1e-5)


def test_root_children_legal_and_noise_changes_samples():
    args = mazero_args(N, A, num_simulations=8, sampled_actions=10)
    model = _model(args)
    inputs, legal = _inputs(16)
    search = MCTSSearch(args, seed=0, tree_cls=ptree.SampledTrees)
    noisy = search.run(model, inputs, legal, add_noise=True)
    for b in range(16):
        for k in range(noisy.num_children[b]):
            assert all(legal[b, i, noisy.stats.joint_actions[b, k, i]] for i in range(N))
        assert (noisy.stats.joint_actions[b, noisy.num_children[b]:] == -1).all()
    # Same seed without noise: the sampled root children differ somewhere (the noise reached the root prior).
    clean = MCTSSearch(args, seed=0, tree_cls=ptree.SampledTrees).run(model, inputs, legal, add_noise=False)
    assert not torch.equal(noisy.stats.joint_actions, clean.stats.joint_actions)


def test_rejects_agent_without_legal_action():
    args = mazero_args(N, A, num_simulations=2, sampled_actions=2)
    inputs, legal = _inputs(2)
    legal[1, 2] = False
    with pytest.raises(ValueError, match="legal action"):
        MCTSSearch(args, seed=0, tree_cls=ptree.SampledTrees).run(_model(args), inputs, legal, add_noise=False)


def test_use_os_lambda_false_gives_plain_mean_backup():
    model_args = mazero_args(N, A, num_simulations=12, sampled_actions=6)
    model = _model(model_args)
    inputs, legal = _inputs(4)
    values = {}
    for flag in (True, False):
        args = mazero_args(N, A, num_simulations=12, sampled_actions=6, use_os_lambda=flag)
        search = MCTSSearch(args, seed=5, tree_cls=ptree.SampledTrees)
        assert search.tree_kwargs["use_os_lambda"] is flag
        values[flag] = search.run(model, inputs, legal, add_noise=False).root_values
    assert not np.allclose(values[True], values[False])


def test_traced_network_follows_the_weights_it_was_traced_with():
    # The search traces the model once; later weight changes (optimiser steps, load_state_dict) must reach it.
    args = mazero_args(N, A, num_simulations=8, sampled_actions=4)
    model, other = _model(args), MAZeroModel(D, args).eval()
    with torch.no_grad():
        for head in (other.value_head, other.reward_head, other.policy_head):
            head.net[-1].weight.normal_(0, 0.5)
    inputs, legal = _inputs(3)
    search = MCTSSearch(args, seed=2, tree_cls=ptree.SampledTrees)
    search.run(model, inputs, legal, add_noise=False)  # traced with the first weights
    model.load_state_dict(other.state_dict())
    after = search.run(model, inputs, legal, add_noise=False)
    search.reseed(2)
    search.num_searches = 1
    fresh = MCTSSearch(args, seed=2, tree_cls=ptree.SampledTrees)
    fresh.num_searches = 1
    expected = fresh.run(other, inputs, legal, add_noise=False)  # a new trace of the new weights
    np.testing.assert_array_equal(after.stats.visits.numpy(), expected.stats.visits.numpy())
    np.testing.assert_array_equal(after.root_values, expected.root_values)
    torch.testing.assert_close(after.policy_logits, other.initial_inference(inputs)[2], rtol=0, atol=0)


def test_search_network_trace_equals_eager_for_both_models():
    from mcts.search import SearchNetwork, trace_search_network
    from modules.mazero.flat_model import FlatMuZeroModel
    args = mazero_args(N, A, num_simulations=4, sampled_actions=4)
    for model in (_model(args), FlatMuZeroModel(D, args).eval()):
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
    args = mazero_args(N, A, num_simulations=8, sampled_actions=4)
    model = _model(args)
    inputs, legal = _inputs(3)
    traced = MCTSSearch(args, seed=4, tree_cls=ptree.SampledTrees).run(model, inputs, legal, add_noise=True)

    def fail(*args, **kwargs):
        raise RuntimeError("tracing is not supported here")
    monkeypatch.setattr(torch.jit, "trace_module", fail)
    with pytest.warns(RuntimeWarning, match="tracing is not supported here"):
        eager = MCTSSearch(args, seed=4, tree_cls=ptree.SampledTrees).run(model, inputs, legal, add_noise=True)
    np.testing.assert_array_equal(eager.stats.visits.numpy(), traced.stats.visits.numpy())
    np.testing.assert_array_equal(eager.root_values, traced.root_values)
