"""MAZero on the configured `device`, checked on the CPU that CI has: the update's math with every tensor on another
device (meta: any tensor made on the host fails), the search's host traffic per simulation, and bench/mazero_gpu.py."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.harness_helpers import REPO_ROOT
from learners.mazero_learner import value_targets
from helpers.mazero_args import mazero_args
from mcts.search import MCTSSearch, SearchConfig, host_block, split_block
from modules.mazero.model import MAZeroModel, ModelConfig
from helpers.mazero_learner_helpers import filled_buffer, make_feed, make_learner

torch.set_num_threads(1)
GPU_BENCH = os.path.join(REPO_ROOT, "bench", "mazero_gpu.py")


def test_value_targets_and_unroll_losses_stay_on_the_batch_device():
    args = mazero_args(2, 3, sampled_actions=4, reanalyse_ratio=0.5, num_simulations=3, batch_transitions=8,
                       t_max=1000, attention_dropout=0.0)
    learner = make_learner(args, 5)
    batch, policy = make_feed(args, filled_buffer(args, 5), learner).next()  # the replay and the reanalysis: CPU
    learner.model.to("meta")
    learner.target_model.to("meta")
    batch, policy = batch.to("meta"), policy.to("meta")
    targets = value_targets(batch, learner.target_model, learner.config)
    losses = learner.unroll_losses(batch, targets, policy)
    for loss in (targets, losses.reward, losses.value, losses.policy, losses.consistency, losses.root_value):
        assert loss.device.type == "meta"
    assert losses.value.shape == (8,)


def test_search_copies_to_the_host_once_per_simulation(monkeypatch):
    args = mazero_args(3, 4, num_simulations=6, sampled_actions=3, latent_dim=16, representation_hidden=[16],
                       dynamics_hidden=[16], attention_heads=2, attention_ff_dim=16)
    torch.manual_seed(0)
    model = MAZeroModel(7, ModelConfig.from_config(args)).eval()
    copies = []
    original_cpu = torch.Tensor.cpu

    def counted_cpu(tensor, *a, **k):
        copies.append(tuple(tensor.shape))
        return original_cpu(tensor, *a, **k)

    monkeypatch.setattr(torch.Tensor, "cpu", counted_cpu)
    monkeypatch.setattr(torch.Tensor, "item", lambda tensor: pytest.fail("host sync by .item() in the search"))
    search = MCTSSearch(SearchConfig.from_config(args), seed=0)
    result = search.run(model, torch.randn(5, 3, 7), torch.ones(5, 3, 4, dtype=torch.bool), add_noise=True)
    # the root's value and priors, then per simulation value + reward + leaf priors in one [B, 2 + N A] copy
    assert copies == [(5, 1 + 3 * 4)] + [(5, 2 + 3 * 4)] * 6
    assert result.stats.visits.sum(-1).tolist() == [6.0] * 5


def test_host_block_splits_back_into_the_tensors():
    values, probs = torch.randn(4), torch.rand(4, 2, 3)
    host_values, host_probs = split_block(host_block(values, probs), [(), (2, 3)])
    assert np.array_equal(host_values, values.numpy()) and np.array_equal(host_probs, probs.numpy())
    assert host_probs.flags["C_CONTIGUOUS"] and host_probs.dtype == np.float32


def run_gpu_bench(*args):
    return subprocess.run([sys.executable, GPU_BENCH, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.subprocess
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_gpu_bench_asked_for_cuda_without_a_gpu_says_so():
    proc = run_gpu_bench("--device", "cuda")
    assert proc.returncode == 2
    assert "torch sees no CUDA device on this machine" in proc.stderr


@pytest.mark.subprocess
def test_gpu_bench_runs_its_steps_on_the_cpu():
    proc = run_gpu_bench("--device", "cpu", "--config", "mazero_cpu", "--updates", "1", "--t-max", "100",
                         "--minutes", "4", "num_simulations=2", "sampled_actions=2", "batch_transitions=16",
                         "test_nepisode=4", "test_interval=1000")
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert any(line.startswith("update at mazero_cpu's budget") and "s wall per update over 1" in line
               for line in lines), proc.stdout
    assert "GPU memory: none used (device cpu)" in lines
    run = [line for line in lines if line.startswith("run completed")]
    assert run and "env steps/s" in run[0] and "nan" not in run[0], proc.stdout
