"""Set operations on sorted half-open intervals [begin, end) of integers or datetimes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TypeVar

T = TypeVar("T", int, datetime)


def union(spans: Iterable[tuple[T, T]]) -> list[tuple[T, T]]:
    """Sorted, disjoint union of `spans`; empty spans vanish and touching spans are joined."""
    merged: list[tuple[T, T]] = []
    for begin, end in sorted(spans):
        if end <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((begin, end))
    return merged


def subtract(base: Sequence[tuple[T, T]], cuts: Sequence[tuple[T, T]]) -> list[tuple[T, T]]:
    """Parts of `base` outside every span of `cuts` (both sorted and disjoint)."""
    result: list[tuple[T, T]] = []
    first_cut = 0
    for begin, end in base:
        cursor = begin
        # Cuts ending before this span cannot touch later spans either (both lists are sorted).
        while first_cut < len(cuts) and cuts[first_cut][1] <= begin:
            first_cut += 1
        for cut_begin, cut_end in cuts[first_cut:]:
            if cut_begin >= end:
                break
            if cut_begin > cursor:
                result.append((cursor, cut_begin))
            if cut_end > cursor:
                cursor = cut_end
        if cursor < end:
            result.append((cursor, end))
    return result
