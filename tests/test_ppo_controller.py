"""ppo_mac.unroll gives exactly what basic_mac's step-by-step forward (and basic_mac.unroll) give, for recurrent
and feed-forward agents, with and without the last-action input."""
import pytest
import torch

from components.episode_buffer import EpisodeBatch
from controllers import REGISTRY as mac_REGISTRY
from controllers.basic_controller import BasicMAC
from helpers.harness_helpers import make_args
from run.common import build_scheme

torch.set_num_threads(1)


@pytest.mark.parametrize("use_rnn", [True, False])
@pytest.mark.parametrize("obs_last_action", [True, False])
def test_unroll_matches_stepwise_forward(use_rnn, obs_last_action):
    n_agents, n_actions, steps = 3, 4, 5
    args = make_args("mappo", "matrix", use_rnn=use_rnn, obs_last_action=obs_last_action)
    args.n_agents, args.n_actions = n_agents, n_actions
    env_info = {"state_shape": 6, "obs_shape": 7, "n_actions": n_actions, "n_agents": n_agents,
                "episode_limit": steps}
    scheme, groups, preprocess = build_scheme(args, env_info, mac_REGISTRY["ppo_mac"])
    batch = EpisodeBatch(scheme, groups, 2, steps + 1, preprocess=preprocess)
    g = torch.Generator().manual_seed(1)
    avail_actions = (torch.rand(2, steps + 1, n_agents, n_actions, generator=g) < 0.7).int()
    avail_actions[..., 1] = 1  # at least one available action everywhere
    batch.update({"obs": torch.randn(2, steps + 1, n_agents, 7, generator=g), "avail_actions": avail_actions,
                  "actions": torch.randint(0, n_actions, (2, steps + 1, n_agents, 1), generator=g)})
    mac = mac_REGISTRY["ppo_mac"](batch.scheme, groups, args)

    mac.init_hidden(2)
    stepwise = torch.stack([mac.forward(batch, t) for t in range(steps + 1)], dim=1)
    unrolled = mac.unroll(batch)
    torch.testing.assert_close(unrolled, stepwise)
    torch.testing.assert_close(unrolled, BasicMAC.unroll(mac, batch))
    assert (unrolled[avail_actions == 0] == 0).all()
