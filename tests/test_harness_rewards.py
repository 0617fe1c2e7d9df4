"""Per-agent rewards (EPyMARL's common_reward / reward_scalarisation) and the save_replay key checks."""
import numpy as np
import pytest
import torch

from components.episode_buffer import ReplayBuffer
from controllers import REGISTRY as mac_REGISTRY
from envs.capabilities import check_reward_and_replay_keys
from helpers.harness_helpers import load_json, make_args, merged_config, run_main, sacred_runs
from learners import REGISTRY as learner_REGISTRY
from run.common import add_env_info, build_scheme
from runners import REGISTRY as runner_REGISTRY

LBF = "lbforaging:Foraging-8x8-2p-3f-v3"


class RecordingLogger:
    def __init__(self):
        self.stats = {}

    def log_stat(self, key, value, t, to_sacred=True):
        self.stats.setdefault(key, []).append((t, float(value)))


def lbf_runner(alg, common_reward, seed=3):
    args = make_args(alg, "gymma", seed=seed, common_reward=common_reward, **{"env_args.key": LBF,
                     "env_args.time_limit": 30}, runner="episode", batch_size_run=1, test_nepisode=1,
                     runner_log_interval=0)
    logger = RecordingLogger()
    runner = runner_REGISTRY["episode"](args=args, logger=logger)
    env_info = runner.get_env_info()
    add_env_info(args, env_info)
    mac_cls = mac_REGISTRY[args.mac]
    scheme, groups, preprocess = build_scheme(args, env_info, mac_cls)
    buffer = ReplayBuffer(scheme, groups, 8, env_info["episode_limit"] + 1, preprocess=preprocess)
    mac = mac_cls(buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    return args, runner, buffer, logger


def test_runner_stores_one_reward_per_agent_and_logs_epymarl_names():
    torch.manual_seed(0)
    _, team_runner, _, _ = lbf_runner("ippo", common_reward=True)
    team_rewards = [team_runner.run()["reward"][0, :, 0].numpy() for _ in range(6)]
    torch.manual_seed(0)
    _, agent_runner, _, logger = lbf_runner("ippo", common_reward=False)
    agent_rewards = [agent_runner.run()["reward"][0].numpy() for _ in range(6)]
    assert agent_rewards[0].shape == (31, 2)  # episode_limit + 1 steps, one reward per agent
    # the same seeds give the same episodes; the team reward is the sum of the agents' rewards
    np.testing.assert_allclose([r.sum(1) for r in agent_rewards], team_rewards, rtol=1e-6)
    assert sum(r.sum() for r in team_rewards) > 0, "random agents collect some food in 6 episodes"
    per_agent = np.array([r.sum(0) for r in agent_rewards])  # [episodes, agents]
    assert logger.stats["agent_1_return_mean"][-1][1] == pytest.approx(per_agent[-1, 1])
    assert logger.stats["total_return_mean"][-1][1] == pytest.approx(per_agent[-1].sum())
    assert "return_mean" not in logger.stats
    agent_runner.close_env()
    team_runner.close_env()


@pytest.mark.parametrize("alg", ["iql", "ippo", "mappo"])
def test_learners_train_on_per_agent_rewards(alg):
    args, runner, buffer, _ = lbf_runner(alg, common_reward=False)
    learner = learner_REGISTRY[args.learner](runner.mac, buffer.scheme, RecordingLogger(), args)
    batch = runner.run()
    parameters = [p.detach().clone() for p in runner.mac.parameters()]
    learner.train(batch, 0, 0)
    assert any(not torch.equal(before, after) for before, after in zip(parameters, runner.mac.parameters()))
    runner.close_env()


@pytest.mark.parametrize("alg, reason", [
    ("qmix", "QMIX mixes the agents' utilities"), ("vdn", "VDN sums the agents' utilities"),
    ("mazero", "MAZero's centralised model predicts one team reward")])
def test_team_reward_learners_refuse_per_agent_rewards(alg, reason):
    config = merged_config(alg, "gymma", common_reward=False)
    with pytest.raises(ValueError, match=f"common_reward=False is not supported by {alg}: {reason}"):
        check_reward_and_replay_keys(config)


@pytest.mark.parametrize("overrides, message", [
    ({"common_reward": False, "env": "smax"}, "needs an env with per-agent rewards .*'smax' gives one team reward"),
    ({"reward_scalarisation": "max"}, "reward_scalarisation must be one of sum, mean, got 'max'"),
    ({"common_reward": "no"}, "common_reward must be True or False"),
    ({"save_replay": True, "evaluate": True}, "env 'gymma' cannot save replays"),
    ({"save_replay": True, "env": "sc2"}, "save_replay=True saves the replay of an evaluation: set evaluate=True"),
])
def test_bad_reward_and_replay_keys(overrides, message):
    config = merged_config("ippo", "gymma", **overrides)
    with pytest.raises(ValueError, match=message):
        check_reward_and_replay_keys(config)


@pytest.mark.subprocess
def test_main_ippo_with_per_agent_rewards_and_qmix_refusal(tmp_path):
    common = ["--env-config=gymma", "with", f"env_args.key={LBF}", "env_args.time_limit=25", "common_reward=False",
              "t_max=200", "test_interval=100", "test_nepisode=8", "log_interval=100", "runner_log_interval=100",
              "learner_log_interval=100", "save_git_info=False"]
    run_main(["--config=ippo"] + common + ["batch_size_run=2", "batch_size=2", "buffer_size=2", "epochs=2"], tmp_path)
    (run_dir,) = sacred_runs(tmp_path, "ippo", LBF)
    assert load_json(run_dir, "run.json")["status"] == "COMPLETED"
    metrics = load_json(run_dir, "metrics.json")
    assert {"test_total_return_mean", "test_agent_0_return_mean", "test_agent_1_return_mean", "pg_loss"} <= set(metrics)
    refused = run_main(["--config=qmix"] + common, tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "common_reward=False is not supported by qmix: QMIX mixes" in refused.stderr
