"""Everything that reads results: trials into pandas, Pareto fronts, hypervolume, the report.

Works on a run directory alone: no Ray, no `search`. Imports pandas, numpy, matplotlib,
`models` and `trainables` only.
"""

from analysis.dominance import hypervolume_2d, non_dominated_sort
from analysis.load import Run, load_run
from analysis.pareto import (
    Front,
    front,
    fronts,
    hypervolume_over_time,
    knee_point,
    pareto_front,
    reference_params,
)
from analysis.published import PUBLISHED_REFERENCE, PublishedPoint, published_for
from analysis.report import write_report

__all__ = [
    "PUBLISHED_REFERENCE",
    "Front",
    "PublishedPoint",
    "Run",
    "front",
    "fronts",
    "hypervolume_2d",
    "hypervolume_over_time",
    "knee_point",
    "load_run",
    "non_dominated_sort",
    "pareto_front",
    "published_for",
    "reference_params",
    "write_report",
]
