"""Scoring predictions against references: pairing files, per-image measures, pooled summary, CSV and PNG."""

from unetkit.evaluation.evaluate import evaluate_pairs
from unetkit.evaluation.pairing import Pair, pair_files, pair_folders, pair_key
from unetkit.evaluation.report import write_csv, write_figure
from unetkit.evaluation.scoring import COLUMNS, ImageScore, score_arrays, score_pair, summarise

__all__ = ["Pair", "pair_files", "pair_folders", "pair_key", "ImageScore", "score_arrays", "score_pair",
           "summarise", "COLUMNS", "write_csv", "write_figure", "evaluate_pairs"]
