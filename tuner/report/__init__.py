"""The report of a finished search: PNG figures, one self-contained HTML page, a terminal table.

Everything is read back from MLflow (the search's parent run and its trial child runs), so a
report can be made on any machine that reaches the tracking store, long after the search (only
the importances prefer the search's stored Optuna study, where its folder is on this machine):

- ``leaderboard.png``: the top trials' fold-mean metric with fold-std error bars, peers as lines;
- ``history.png``: each trial's final metric in trial order and the best so far;
- ``importances.png``: Optuna's fANOVA importances of the completed trials, from the search's
  stored Optuna study where this machine reads it, else from a study rebuilt from the runs;
- ``parallel.png``: parallel coordinates of the top trials, each parameter scaled to [0, 1];
- ``curves.png``: fold-mean metric by epoch of the top trials and of every pruned trial;
- ``peers.png``: the best trial beside each peer model on every metric (CV mean ± std).

``index.html`` shows them with the leaderboard, the peer comparison and the search's settings;
``report.json`` holds the numbers behind them. The same files go to the parent run's artifacts
under ``report/``.

Layout: :mod:`~tuner.report.records` reads the search back from MLflow,
:mod:`~tuner.report.importances` computes fANOVA importances on the stored study or over the
spec's Optuna distributions, :mod:`~tuner.report.figures` draws the PNGs,
:mod:`~tuner.report.page` writes the HTML page and the terminal table, and
:mod:`~tuner.report.build` puts the files in place.
"""

from tuner.report.build import DATA_FILE, REPORT_KIND, build_report
from tuner.report.figures import FIGURES, best_so_far, learning_curves, scaled
from tuner.report.importances import (
    Importances,
    importance_study,
    param_importances,
    search_importances,
)
from tuner.report.records import (
    SearchRecord,
    TrialRecord,
    fetch_curves,
    last_attempt,
    read_search,
    space_domains,
    typed_param,
)
from tuner.spec import in_domain

__all__ = [
    "DATA_FILE",
    "FIGURES",
    "REPORT_KIND",
    "Importances",
    "SearchRecord",
    "TrialRecord",
    "best_so_far",
    "build_report",
    "fetch_curves",
    "importance_study",
    "in_domain",
    "last_attempt",
    "learning_curves",
    "param_importances",
    "read_search",
    "scaled",
    "search_importances",
    "space_domains",
    "typed_param",
]
