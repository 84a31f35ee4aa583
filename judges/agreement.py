"""Agreement between judges who labelled the same items: Cohen's kappa (two judges) and
Krippendorff's alpha for nominal data (any number of judges, missing labels allowed).

Both correct raw agreement for the agreement expected by chance: 1 is perfect, 0 is chance, below 0
is systematic disagreement. Labels are any hashable values (here: the chosen option index).
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import permutations
from typing import Hashable, Mapping, Sequence


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Cohen's kappa of two judges' labels on the same items (paired by position)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} labels against {len(b)}")
    n = len(a)
    if n == 0:
        return math.nan
    observed = sum(x == y for x, y in zip(a, b)) / n
    count_a, count_b = Counter(a), Counter(b)
    expected = sum(count_a[c] * count_b[c] for c in count_a) / (n * n)
    if expected == 1.0:  # both judges used one and the same label throughout: kappa is undefined
        return math.nan
    return (observed - expected) / (1.0 - expected)


def krippendorff_alpha_nominal(units: Sequence[Sequence[Hashable]]) -> float:
    """Krippendorff's alpha (nominal) over units, each the labels it received from any judges.

    Units with fewer than two labels carry no information about agreement and are dropped.
    """
    coincidences: Counter[tuple[Hashable, Hashable]] = Counter()
    for labels in units:
        m = len(labels)
        if m < 2:
            continue
        for x, y in permutations(labels, 2):
            coincidences[(x, y)] += 1.0 / (m - 1)
    totals: Counter[Hashable] = Counter()
    for (x, _), weight in coincidences.items():
        totals[x] += weight
    n = sum(totals.values())
    if n <= 1:
        return math.nan
    disagreement = sum(w for (x, y), w in coincidences.items() if x != y)
    expected = sum(totals[x] * totals[y] for x in totals for y in totals if x != y)
    if expected == 0:  # a single label value in the whole data: alpha is undefined
        return math.nan
    return 1.0 - (n - 1) * disagreement / expected


def agreement(labels: Mapping[str, Mapping[Hashable, Hashable]]) -> dict:
    """Agreement among judges, given judge -> {item: label}.

    Two judges: Cohen's kappa on the items both labelled. Three or more: Krippendorff's alpha
    (nominal) over items labelled by at least two judges.
    """
    judges = sorted(j for j, items in labels.items() if items)
    if len(judges) < 2:
        return {"judges": judges, "measure": None, "value": math.nan, "n_items": 0}
    if len(judges) == 2:
        first, second = (labels[j] for j in judges)
        shared = sorted(set(first) & set(second), key=str)
        value = cohen_kappa([first[i] for i in shared], [second[i] for i in shared])
        raw = sum(first[i] == second[i] for i in shared) / len(shared) if shared else math.nan
        return {"judges": judges, "measure": "cohen_kappa", "value": value, "n_items": len(shared),
                "raw_agreement": raw}
    items = sorted({i for j in judges for i in labels[j]}, key=str)
    units = [[labels[j][i] for j in judges if i in labels[j]] for i in items]
    units = [u for u in units if len(u) >= 2]
    return {"judges": judges, "measure": "krippendorff_alpha", "value": krippendorff_alpha_nominal(units),
            "n_items": len(units)}
