"""The `default` run loop (EPyMARL's run_sequential): collect episodes, train, test, save, log.

Works for off-policy learners (replay of `buffer_size` episodes) and on-policy ones (buffer_size = batch_size =
batch_size_run: every update sees exactly the episodes just collected).
"""
from components.episode_buffer import ReplayBuffer
from controllers import REGISTRY as mac_REGISTRY
from learners import REGISTRY as le_REGISTRY
from run.common import (
    Progress, add_env_info, build_scheme, evaluate_sequential, load_models,
    run_loop, run_test_episodes, save_models, with_runner,
)


def run(_run, _config, _log):
    run_loop(run_sequential, _run, _config, _log)


def run_sequential(args, logger):
    with_runner(_train, args, logger)


def _train(args, logger, runner):
    env_info = runner.get_env_info()
    add_env_info(args, env_info)
    mac_cls = mac_REGISTRY[args.mac]
    scheme, groups, preprocess = build_scheme(args, env_info, mac_cls)
    buffer_device = "cpu" if args.buffer_cpu_only else args.device
    buffer = ReplayBuffer(scheme, groups, args.buffer_size, env_info["episode_limit"] + 1,
                          preprocess=preprocess, device=buffer_device)
    mac = mac_cls(buffer.scheme, groups, args)
    runner.setup(scheme=scheme, groups=groups, preprocess=preprocess, mac=mac)
    learner = le_REGISTRY[args.learner](mac, buffer.scheme, logger, args)
    learner.to(args.device)

    model_save_time = 0
    if args.checkpoint_path:
        runner.t_env = load_models(args, learner, logger)
        model_save_time = runner.t_env
    elif args.evaluate:
        logger.console_logger.warning("evaluate=True without checkpoint_path: evaluating an untrained policy")
    if args.evaluate:
        evaluate_sequential(args, runner, logger)
        return

    episode = 0
    last_test_T = -args.test_interval - 1
    last_log_T = 0
    progress = Progress(runner.t_env, args.t_max)
    logger.info(f"Beginning training for {args.t_max} timesteps")
    logger.setup_progress(args.t_max, runner.t_env)

    while runner.t_env <= args.t_max:
        episode_batch = runner.run(test_mode=False)
        buffer.insert_episode_batch(episode_batch)
        if buffer.can_sample(args.batch_size):
            sample = buffer.sample(args.batch_size)
            sample = sample[:, :sample.max_t_filled()]  # drop the all-padding tail
            if sample.device != args.device:
                sample.to(args.device)
            learner.train(sample, runner.t_env, episode)

        if runner.t_env - last_test_T >= args.test_interval:
            logger.info(progress.message(runner.t_env))
            last_test_T = runner.t_env
            run_test_episodes(args, runner)

        if args.save_model and (runner.t_env - model_save_time >= args.save_model_interval or model_save_time == 0):
            model_save_time = runner.t_env
            save_models(args, learner, runner.t_env, logger)

        episode += args.batch_size_run
        if runner.t_env - last_log_T >= args.log_interval:
            logger.log_stat("episode", episode, runner.t_env)
            logger.print_recent_stats()
            last_log_T = runner.t_env
        logger.update_progress(runner.t_env)

    logger.info("Finished training")
