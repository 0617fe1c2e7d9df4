"""The `default` run loop's steps (EPyMARL's run_sequential): collect episodes, train on a replay sample, test, save.

Works for off-policy learners (replay of `buffer_size` episodes) and on-policy ones (buffer_size = batch_size =
batch_size_run: every update sees exactly the episodes just collected). The cycle is run.common.train_sequential.
"""
from components.episode_buffer import ReplayBuffer
from learners import REGISTRY as le_REGISTRY
from run.common import env_scheme, load_models, models_dir, run_test_episodes
from utils.checkpoint import save_checkpoint
from utils.run_identity import trained_on


class DefaultLoop:
    def __init__(self, args, logger, runner):
        self.args, self.logger, self.runner = args, logger, runner
        env_info, mac_cls, (scheme, groups, preprocess) = env_scheme(args, runner)
        buffer_device = "cpu" if args.buffer_cpu_only else args.device
        self.buffer = ReplayBuffer(scheme, groups, args.buffer_size, env_info["episode_limit"] + 1,
                                   preprocess=preprocess, device=buffer_device)
        self.mac = mac_cls(self.buffer.scheme, groups, args)
        runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=self.mac)
        self.learner = le_REGISTRY[args.learner](self.mac, self.buffer.scheme, logger, args)
        self.learner.to(args.device)

    def restore(self, counters):
        """Loads the learner's files; the next checkpoint follows save_model_interval from the loaded t_env."""
        self.runner.t_env = load_models(self.args, self.learner, self.logger)
        counters.last_save_T = self.runner.t_env
        return counters

    def start(self):
        pass

    def collect(self):
        self.buffer.insert_episode_batch(self.runner.run(test_mode=False))

    def train(self, episode):
        args = self.args
        if self.buffer.can_sample(args.batch_size):
            sample = self.buffer.sample(args.batch_size)
            sample = sample[:, :sample.max_t_filled()]  # drop the all-padding tail
            if sample.device != args.device:
                sample.to(args.device)
            self.learner.train(sample, self.runner.t_env, episode)

    def test(self):
        run_test_episodes(self.args, self.runner)

    def log(self, t_env):
        pass

    def save(self, counters):
        path = save_checkpoint(models_dir(self.args), self.runner.t_env, self.learner.save_models,
                               trained_on=trained_on(self.args))
        self.logger.info(f"Saved models to {path}")
        self.logger.save_to_wandb(path, self.runner.t_env)

    def close(self):
        pass
