"""Findings: splits, merges, hugetlb accounting, unmapped-area cross-checks.

Each rule takes a trace (and what the model rebuilt from it) and returns a
DataFrame of findings; :data:`ANALYSES` lists them with what they need.
"""

from .analyses import ANALYSES, Analysis, skipped
from .hugetlb import KMSG_HUGETLB, hugetlb_accounting, hugetlb_anomalies
from .structure import merges, split_merge_counts, split_merge_points, split_merge_table, splits, write_sequences
from .unmapped_area import first_fit, unmapped_area_check

__all__ = [
    "ANALYSES",
    "Analysis",
    "skipped",
    "splits",
    "merges",
    "split_merge_points",
    "split_merge_table",
    "split_merge_counts",
    "write_sequences",
    "hugetlb_accounting",
    "hugetlb_anomalies",
    "KMSG_HUGETLB",
    "unmapped_area_check",
    "first_fit",
]
