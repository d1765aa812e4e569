"""Matching a file's tensors to our network's, one to one, in stored order, by shape.

State dicts keep module order, so a generator saved by any project lists its tensors in the order
its layers were defined; names differ from project to project, shapes and order do not. The walk
pairs source tensor i with our tensor j when their shapes (and kinds: parameter or which
normalisation statistic) agree, and allows exactly two departures, both exact:

- our conv has a bias the source lacks (a conv built with bias=False): it is set to zero;
- the source has a conv bias where our conv has none because an instance norm follows, which
  subtracts every channel's mean and so cancels any bias: it is dropped.

Both can leave several walks open at once, so the search keeps every reachable (i, j) pair, visits
them in order and counts the complete walks (stopping at two: more than one is ambiguous).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

from gantrans.interop.layouts import Slot
from gantrans.interop.sources import SourceTensor

_MATCH, _MATCH_AND_DROP, _FILL = "match", "match and drop", "fill"


@dataclass(frozen=True)
class Alignment:
    """A complete one-to-one match of a source group with our network."""

    pairs: tuple[tuple[int, int], ...]  # (source index, slot index)
    dropped: tuple[int, ...]  # source indices: biases an instance norm cancels
    filled: tuple[int, ...]  # slot indices the source lacks (zero)


@dataclass(frozen=True)
class Stop:
    """Where matching got stuck: the first source tensor and our first tensor left unmatched on the
    walk that got furthest, or `several` when more than one complete walk exists."""

    source: int
    slot: int
    several: bool = False


def fits(item: SourceTensor, slot: Slot) -> bool:
    """Whether a source tensor can stand for one of ours: same shape, same kind, a number type that converts."""
    return item.shape == slot.shape and item.statistic == slot.statistic and item.floating == slot.dtype.is_floating_point


def _moves(source: Sequence[SourceTensor], slots: Sequence[Slot], i: int, j: int) -> list[tuple[tuple[int, int], str]]:
    moves = []
    if i < len(source) and j < len(slots) and fits(source[i], slots[j]):
        moves.append(((i + 1, j + 1), _MATCH))
        channels = slots[j].absorbs_bias
        if channels and i + 1 < len(source):
            bias = source[i + 1]
            if bias.shape == (channels,) and not bias.statistic and bias.floating:
                moves.append(((i + 2, j + 1), _MATCH_AND_DROP))
    if j < len(slots) and slots[j].optional:
        moves.append(((i, j + 1), _FILL))
    return moves


def align(source: Sequence[SourceTensor], slots: Sequence[Slot]) -> Alignment | Stop:
    """The one complete match of `source` with `slots`, or where matching stopped."""
    ways = {(0, 0): 1}  # reachable (source, slot) positions -> complete walks into them, capped at 2
    came_from: dict[tuple[int, int], tuple[tuple[int, int], str]] = {}
    pending = [(0, 0)]
    # Every move advances i or j, so visiting positions in (i, j) order sees all of a position's
    # predecessors before the position itself: its count is final when it is expanded.
    while pending:
        position = heapq.heappop(pending)
        for following, move in _moves(source, slots, *position):
            if following not in ways:
                ways[following] = 0
                came_from[following] = (position, move)
                heapq.heappush(pending, following)
            ways[following] = min(2, ways[following] + ways[position])
    end = (len(source), len(slots))
    if end not in ways:
        return _furthest(ways, len(slots))
    if ways[end] > 1:
        return Stop(len(source), len(slots), several=True)
    return _walk_back(came_from, end)


def _furthest(reached: dict[tuple[int, int], int], slot_count: int) -> Stop:
    """The stop of the walk that used the most source tensors: past our last tensor if one did
    (the rest is left over), else at the first of our tensors still unmatched."""
    most = max(i for i, _ in reached)
    ends = [j for i, j in reached if i == most]
    return Stop(most, slot_count if slot_count in ends else min(ends))


def _walk_back(came_from: dict[tuple[int, int], tuple[tuple[int, int], str]], end: tuple[int, int]) -> Alignment:
    pairs, dropped, filled = [], [], []
    position = end
    while position != (0, 0):
        previous, move = came_from[position]
        i, j = previous
        if move == _FILL:
            filled.append(j)
        else:
            pairs.append((i, j))
            if move == _MATCH_AND_DROP:
                dropped.append(i + 1)
        position = previous
    return Alignment(tuple(reversed(pairs)), tuple(reversed(dropped)), tuple(reversed(filled)))
