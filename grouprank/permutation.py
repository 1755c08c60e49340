"""Listwise reranking math: sliding windows, permutation parsing and repair, ranks to scores.

Pure functions, no model. The windows and the repair follow rank_llm's listwise rerankers (which
follow RankGPT): windows move from the bottom of the list to the top, and a generated permutation
is repaired by reading every number in the output, dropping ids that are unknown or repeated, and
appending the ids the model left out in their current order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+")


def sliding_windows(n: int, window: int, step: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` windows over ``n`` documents, in the order they run (bottom first).

    The last window always starts at the top, so the best documents found lower down can reach
    rank 1; each window overlaps the previous one by ``window - step`` documents.

    Example:
        >>> sliding_windows(45, window=20, step=10)
        [(25, 45), (15, 35), (5, 25), (0, 15)]
        >>> sliding_windows(100, 20, 10)[0], len(sliding_windows(100, 20, 10))
        ((80, 100), 9)
        >>> sliding_windows(7, 20, 10), sliding_windows(0, 20, 10)
        ([(0, 7)], [])
    """
    if window < 1 or not 1 <= step <= window:
        raise ValueError(f"need window >= 1 and 1 <= step <= window, got {window}, {step}")
    windows: list[tuple[int, int]] = []
    end = n
    while end > 0:
        start = max(0, end - window)
        windows.append((start, end))
        if start == 0:
            break
        end -= step
    return windows


@dataclass(frozen=True)
class Repair:
    """What had to be fixed to turn one generated ranking into a permutation of ``n`` ids."""

    # Numbers outside 1..n.
    unknown: int
    # Ids named again after their first mention (only the first mention counts).
    repeated: int
    # Ids never named; appended after the named ones in their current order.
    missing: int

    @property
    def total(self) -> int:
        """All fixes together; 0 means the model wrote a valid permutation."""
        return self.unknown + self.repeated + self.missing


def parse_permutation(output: str, n: int) -> tuple[list[int], Repair]:
    """Reads a ranking like ``[3] > [1] > [2]`` into a 0-based permutation of ``range(n)``.

    Every run of digits counts as an id, whatever surrounds it (rank_llm's reading), so
    ``3 > 1``, ``[3],[1]`` and ``[3] [1]`` read alike. Unknown and repeated ids are dropped and the
    missing ones appended in their current order; an output naming no id keeps the order.

    Example:
        >>> parse_permutation("[3] > [1] > [9] > [3]", 4)
        ([2, 0, 1, 3], Repair(unknown=1, repeated=1, missing=2))
        >>> parse_permutation("no idea", 2)
        ([0, 1], Repair(unknown=0, repeated=0, missing=2))
    """
    named: list[int] = []
    seen: set[int] = set()
    unknown = repeated = 0
    for match in _NUMBER.finditer(output or ""):
        index = int(match.group()) - 1
        if not 0 <= index < n:
            unknown += 1
        elif index in seen:
            repeated += 1
        else:
            seen.add(index)
            named.append(index)
    missing = [i for i in range(n) if i not in seen]
    return named + missing, Repair(unknown, repeated, len(missing))


def apply_permutation(items: list, start: int, end: int, permutation: list[int]) -> list:
    """A copy of ``items`` whose slice ``[start, end)`` is reordered by ``permutation``.

    Example:
        >>> apply_permutation(["a", "b", "c", "d"], 1, 4, [2, 0, 1])
        ['a', 'd', 'b', 'c']
    """
    window = items[start:end]
    if sorted(permutation) != list(range(len(window))):
        raise ValueError(f"{permutation} is not a permutation of {len(window)} positions")
    return items[:start] + [window[i] for i in permutation] + items[end:]


def rank_scores(order: list[int]) -> list[float]:
    """0-10 scores, aligned with the original positions, from a final ranking of ``n`` documents.

    ``order[r]`` is the original position of the document ranked ``r + 1``; that document gets
    ``10 * (1 - r / n)``: 10 for rank 1, down in equal steps to ``10 / n`` for rank n. Only the
    order carries information; the even spacing makes scores of different queries comparable and
    lets the job's fusion with the first-stage score treat them like any model score.

    Example:
        >>> rank_scores([2, 0, 1, 3])
        [7.5, 5.0, 10.0, 2.5]
    """
    n = len(order)
    scores = [0.0] * n
    for rank, position in enumerate(order):
        scores[position] = 10.0 * (n - rank) / n
    return scores
