"""MAZero's typed config: one frozen record per part, built once per run from the config namespace (issue 26).

Each part reads its own small record instead of the whole `args` namespace; every field is the config key of the
same name (src/config/algs/mazero.yaml), read by `utils.config_record.record_from_config` and checked by the
record's `__post_init__` (a ValueError naming the key). `build_mazero_config` builds them all, so a bad value
stops the run before anything trains. The controller, a registry part built as REGISTRY[name](scheme, groups,
args), reads its three records (acting, model, search) from args itself, with the same record classes. The run
loop's own record is here rather than in run/mazero_run.py, which builds the config: that module imports this one.
"""
from dataclasses import dataclass

from components.mazero_replay import ReplayConfig
from config_checks import check_keys
from controllers.mazero_controller import ActingConfig
from learners.mazero_learner import LearnerConfig
from learners.mazero_reanalyse import ReanalysisConfig
from mcts.search import SearchConfig
from modules.mazero.model import ModelConfig
from utils.config_record import check_record, record_from_config


@dataclass(frozen=True)
class LoopConfig:
    """The MAZero keys of the run loop (run/mazero_run.py) and its self-play actors (run/mazero_selfplay.py)."""
    updates_per_env_step: float  # replay ratio: the loop trains until updates = updates_per_env_step * t_env
    selfplay_workers: int  # Ray actors collecting self-play episodes beside the learner; 0 = collect in turn
    selfplay_refresh: int  # updates between refreshes of the self-play actors' weights
    batch_size_run: int  # envs per runner batch: the episodes one self-play request collects
    seed: int  # the run's seed: each self-play actor's seed derives from it (run.mazero_selfplay.actor_seed)

    def __post_init__(self):
        check_record(self)


@dataclass(frozen=True)
class MAZeroConfig:
    """Every record of a MAZero run; the reanalysis search is `reanalysis.search`."""
    model: ModelConfig  # the world model (modules/mazero/model.py)
    search: SearchConfig  # the self-play and test search (mcts/search.py)
    replay: ReplayConfig  # the replay's storage and sampled batches (components/mazero_replay.py)
    learner: LearnerConfig  # the gradient step and the target network (learners/mazero_learner.py)
    reanalysis: ReanalysisConfig  # the policy targets, their search and workers (learners/mazero_reanalyse.py)
    acting: ActingConfig  # the controller's acting (controllers/mazero_controller.py)
    loop: LoopConfig  # the run loop's MAZero keys (run/mazero_run.py)


def reanalysis_search_config(args):
    """The reanalysis search's record: the self-play search with num_simulations = reanalyse_num_simulations
    unless that is null (the official code searches with one S)."""
    check_keys(vars(args), ["reanalyse_num_simulations"])
    count = args.reanalyse_num_simulations
    return SearchConfig.from_config(args, num_simulations=args.num_simulations if count is None else count)


def build_mazero_config(args):
    """MAZeroConfig of the run's config namespace `args` (with the env's n_agents and n_actions, and `device`);
    raises ValueError naming the first key whose value a record refuses."""
    return MAZeroConfig(
        model=ModelConfig.from_config(args),
        search=SearchConfig.from_config(args),
        replay=record_from_config(ReplayConfig, args),
        learner=record_from_config(LearnerConfig, args),
        reanalysis=record_from_config(ReanalysisConfig, args, search=reanalysis_search_config(args)),
        acting=record_from_config(ActingConfig, args),
        loop=record_from_config(LoopConfig, args),
    )
