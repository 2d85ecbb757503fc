"""PraNet-compatible evaluation of prediction folders (``medattn evaluate``)."""

from medattn.evaluation.evaluator import (
    METRIC_NAMES,
    EvalResult,
    aggregate,
    evaluate_folders,
    evaluate_pairs,
    is_binary_map,
    pair_by_stem,
    score_arrays,
)
from medattn.evaluation.report import FORMATS, render, to_csv, to_json, to_markdown

__all__ = [
    "FORMATS",
    "METRIC_NAMES",
    "EvalResult",
    "aggregate",
    "evaluate_folders",
    "evaluate_pairs",
    "is_binary_map",
    "pair_by_stem",
    "render",
    "score_arrays",
    "to_csv",
    "to_json",
    "to_markdown",
]
