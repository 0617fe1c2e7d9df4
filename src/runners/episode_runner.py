"""`episode` runner: one env in this process, one episode per `run()` call (EPyMARL's EpisodeRunner).

It is the parallel runner over a single env stepped in-process (no worker process), so it behaves identically
and is easy to debug; SMAX uses its native batch of one.
"""
from envs import make_vec_env
from runners.parallel_runner import ParallelRunner


class EpisodeRunner(ParallelRunner):
    def __init__(self, args, logger):
        if args.batch_size_run != 1:
            raise ValueError(f"runner 'episode' runs one env; got batch_size_run={args.batch_size_run} "
                             f"(use runner=parallel for several envs)")
        super().__init__(args, logger)

    def make_env(self):
        return make_vec_env(self.args.env, self.env_args(), 1, self.args.env_args["seed"], in_process=True)
