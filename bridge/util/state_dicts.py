"""Comparing a checkpoint's tensors with a model's, for error messages that say what is off.

Works on shapes only (no torch import), so both weight loaders (generator, DensePose) share it.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def key_mismatch(own: Mapping[str, Sequence[int]], given: Mapping[str, Sequence[int]]) -> str | None:
    """None when ``given`` has exactly ``own``'s names and shapes; else a one-line account such
    as ``2 missing (e.g. a, b); 1 with wrong shapes (e.g. c: file (3,), model (4,))``."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    wrong = sorted(k for k in set(own) & set(given) if tuple(own[k]) != tuple(given[k]))
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} with wrong shapes (e.g. {k}: file {tuple(given[k])}, model {tuple(own[k])})")
    return "; ".join(parts) or None
