"""The search's algorithms by name: the Optuna sampler, the Tune scheduler, the Optuna searcher
over the search's stored study, and what a searcher holds (its sampler, its finished trials)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.search.optuna import OptunaSearch

from tuner.errors import MimlTuneError
from tuner.search.storage import RunFolder
from tuner.spec import SearchSpec
from tuner.trial import RepeatsSchedule, rung_milestones


def sampler_for(name: str, seed: int, trials: int = 100) -> Any:
    """The Optuna sampler registered under ``name``, seeded.

    TPE starts with random trials before it models anything; Optuna's default of 10 would leave
    a 12-trial search random, so a third of the budget (3 to 10 trials) is used instead.
    """
    import optuna

    startup = tpe_startup_trials(trials)
    factories: dict[str, Callable[[], Any]] = {
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
        "gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "qmc": lambda: optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False),
    }
    if name not in factories:
        raise MimlTuneError(f"unknown sampler {name!r}; allowed: {', '.join(factories)}")
    return factories[name]()


def tpe_startup_trials(trials: int) -> int:
    """Random trials before TPE models anything: a third of the budget, from 3 to 10."""
    return max(3, min(10, trials // 3))


def asha_settings(spec: SearchSpec) -> dict[str, Any]:
    """The keyword arguments of the search's ``ASHAScheduler``: rungs on ``epoch``, the epoch
    the trials' repeats schedule (:func:`repeats_schedule`) counts in too."""
    return {
        "time_attr": "epoch",
        "metric": spec.metric,
        "mode": spec.mode,
        "max_t": spec.max_epochs,
        "grace_period": min(spec.grace_period, spec.max_epochs),
        "reduction_factor": spec.reduction_factor,
    }


def scheduler_for(spec: SearchSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if spec.scheduler == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(**asha_settings(spec))


JOURNAL_FILE = "optuna-journal.log"
SAMPLER_ATTR = "sampler"  # the study's user attribute naming its sampler's class

_RUNNING: dict[str, StudySearch] = {}  # search folder URI -> the searcher Tune set up for it


class StudySearch(OptunaSearch):
    """Ray's :class:`OptunaSearch` over a named Optuna study in a storage of the search's own, and
    public about what it was built with.

    The study is the searcher's durable state: ``optuna.load_study(study_name=..., storage=...)``
    reads its trials (a resume checks them, a report can compute importances from them). Tune
    still saves and restores the searcher as a whole (its sampler's random state, the Optuna
    trial of each Tune trial); the restored searcher reads the same study.

    The search's starting point is enqueued once, when the study is new: Tune sets up the
    searcher it unpickles on a resume again, and Ray's own ``points_to_evaluate`` would then
    enqueue the point a second time into a stored study.

    Args:
        metric, mode: the searched metric and its direction.
        sampler: the Optuna sampler.
        storage: the Optuna storage (see :func:`study_storage`).
        study_name: the study's name in ``storage`` (the search's name).
        key: the search folder's URI, under which Tune's set-up registers the searcher in this
            process (:func:`running_searcher`).
        starting_point: a configuration tried first.

    Attributes:
        sampler_name: the sampler's class name, also stored as the study's ``sampler`` user
            attribute.
        restored: whether Tune restored this searcher from a saved state in this process.
    """

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        sampler: Any,
        storage: Any,
        study_name: str,
        key: str,
        starting_point: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(
            metric=metric, mode=mode, sampler=sampler, storage=storage, study_name=study_name
        )
        self.sampler_name = type(sampler).__name__
        self.storage = storage
        self.study_name = study_name
        self.key: str | None = key
        self.starting_point = dict(starting_point or {})
        self.restored = False

    def study(self) -> Any:
        """The searcher's Optuna study, loaded from its storage."""
        return stored_study(self.storage, self.study_name)

    def set_search_properties(
        self, metric: str | None, mode: str | None, config: dict, **spec: Any
    ) -> bool:
        from ray.tune.utils.util import validate_warmstart

        if not super().set_search_properties(metric, mode, config, **spec):
            return False
        study = self.study()
        if study.user_attrs.get(SAMPLER_ATTR) != self.sampler_name:
            study.set_user_attr(SAMPLER_ATTR, self.sampler_name)
        if self.starting_point and not study.get_trials(deepcopy=False):
            validate_warmstart(list(self.convert_search_space(config)), [self.starting_point], [])
            study.enqueue_trial(self.starting_point)
        if self.key is not None:
            _RUNNING[self.key] = self
        return True

    def restore(self, checkpoint_path: str) -> None:
        self.key = None  # a saved state of this class says which search it belongs to
        super().restore(checkpoint_path)
        self.restored = True


def study_storage(folder: RunFolder) -> Any:
    """The Optuna storage of a search's study.

    In a local search folder, a journal file (``optuna-journal.log``) that outlives the driver.
    Behind a URI (``s3://``, ``gs://``), where a file cannot be appended to, the study is kept in
    memory: it then lives only in Tune's saved searcher state, which a resume restores, and
    :func:`load_study_of` finds no stored study.
    """
    import optuna

    if folder.is_uri:
        return optuna.storages.InMemoryStorage()
    path = Path(folder.path) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return _journal(path)


def _journal(path: Path) -> Any:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(str(path)))


def stored_study(storage: Any, study_name: str) -> Any:
    """The Optuna study ``study_name`` of ``storage`` (``KeyError`` when it holds none)."""
    import optuna

    # A sampler is given only so that loading does not build Optuna's default one.
    return optuna.load_study(
        study_name=study_name, storage=storage, sampler=optuna.samplers.RandomSampler()
    )


def load_study_of(folder: RunFolder) -> Any | None:
    """The study a search stored in its local folder, or ``None`` (a search folder behind a URI,
    a search launched before the study was stored, or none yet)."""
    path = Path(folder.path) / JOURNAL_FILE
    if folder.is_uri or not path.is_file():
        return None
    try:
        return stored_study(_journal(path), folder.name)
    except KeyError:
        return None


def end_stopped_trials(folder: RunFolder) -> int:
    """Marks as PRUNED the trials the stored study still holds as RUNNING once the time budget
    stopped the search: Tune ended them, and a resume checks that the study holds every trial
    Tune's state holds as finished. Returns how many were marked."""
    from optuna.trial import TrialState

    study = load_study_of(folder)
    if study is None:
        return 0
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study.tell(trial.number, state=TrialState.PRUNED)
    return len(running)


def make_searcher(spec: SearchSpec, folder: RunFolder) -> StudySearch:
    """The search's Optuna searcher, its study named after the search and stored in ``folder``."""
    return StudySearch(
        metric=spec.metric,
        mode=spec.mode,
        sampler=sampler_for(spec.sampler, spec.seed, spec.trials),
        storage=study_storage(folder),
        study_name=folder.name,
        key=folder.uri,
        starting_point=spec.starting_point(),
    )


def running_searcher(key: str) -> Any:
    """The searcher Tune set up in this process for the search at ``key`` (a folder's URI), or
    ``None`` when Tune set up none of ours (a random search in its place)."""
    return _RUNNING.get(key)


def forget_searcher(key: str) -> None:
    _RUNNING.pop(key, None)


def _unwrapped(searcher: Any) -> Any:
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    while isinstance(searcher, ConcurrencyLimiter | SearchGenerator):
        searcher = searcher.searcher
    return searcher


def describe_searcher(searcher: Any) -> tuple[str, str]:
    """``(searcher class, sampler class)`` of a Tune searcher, through its wrappers:
    ``OptunaSearch`` and the sampler it was built with for the search's :class:`StudySearch`;
    for another Optuna searcher the sampler is unknown (Ray keeps it private)."""
    searcher = _unwrapped(searcher)
    if searcher is None:
        return "no searcher", "no sampler"
    if isinstance(searcher, StudySearch):
        return "OptunaSearch", str(searcher.sampler_name)
    return type(searcher).__name__, "an unknown sampler"


def finished_in_study(searcher: Any) -> int:
    """Trials the searcher's Optuna study holds as finished (complete, pruned or failed)."""
    searcher = _unwrapped(searcher)
    if not isinstance(searcher, StudySearch):
        return 0
    try:
        study = searcher.study()
    except (KeyError, OSError):  # no such study; a journal that is gone
        return 0
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def was_restored(searcher: Any) -> bool:
    """Whether Tune restored the searcher from a saved state in this process."""
    searcher = _unwrapped(searcher)
    return isinstance(searcher, StudySearch) and bool(searcher.restored)


def repeats_schedule(spec: SearchSpec) -> RepeatsSchedule | None:
    """The CV repeats a trial trains at each epoch under ``fidelity: repeats``: one repeat up to
    ASHA's first rung, ``reduction_factor`` times more at each rung survived, all of them at the
    trial's last epoch. ``None`` (every repeat from the first epoch) under ``fidelity: epochs``,
    without ASHA, or with a single repeat."""
    if spec.fidelity != "repeats" or spec.scheduler != "asha" or spec.cv_repeats < 2:
        return None
    grace = min(spec.grace_period, spec.max_epochs)
    milestones = rung_milestones(spec.max_epochs, grace, spec.reduction_factor)
    if not milestones:
        return None
    return RepeatsSchedule(tuple(milestones), spec.cv_repeats, growth=spec.reduction_factor)
