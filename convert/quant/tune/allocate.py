"""The worst-language allocation: one type per group, minimising the highest predicted KLD
over the languages within a byte budget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from seachat.convert.errors import UserError
from seachat.convert.quant.tune.groups import Group


@dataclass
class Allocation:
    choice: dict[str, str]  # group key -> type
    n_bytes: int  # tensor bytes of the whole model with this choice
    predicted: dict[str, float]  # language -> predicted KLD
    budget_bytes: int

    @property
    def worst(self) -> tuple[str, float]:
        lang = max(self.predicted, key=self.predicted.get)
        return lang, self.predicted[lang]


def _delta_matrix(groups: list[Group], delta: dict, languages: list[str]) -> list[np.ndarray]:
    """Per group: array (n_types, n_languages); the source type (top rung) costs 0."""
    out = []
    for g in groups:
        rows = []
        for ty in g.ladder:
            if ty == g.ladder[-1]:
                rows.append(np.zeros(len(languages)))
                continue
            entry = delta.get(f"{g.key}|{ty}")
            if entry is None:
                raise UserError(f"no measurement for {g.key} at {ty}; run the measurement again")
            rows.append(np.array([max(0.0, float(entry[lang])) for lang in languages]))
        out.append(np.vstack(rows))
    return out


def _mckp(costs: list[np.ndarray], weights: list[np.ndarray], cap: int) -> list[int] | None:
    """Exact multiple-choice knapsack by DP: one option per group, total weight <= cap,
    minimal total cost. Returns the option index per group, or None if nothing fits."""
    inf = np.inf
    dp = np.full(cap + 1, inf)
    dp[0] = 0.0
    choices = []
    for c, w in zip(costs, weights, strict=True):
        new = np.full(cap + 1, inf)
        arg = np.full(cap + 1, -1, dtype=np.int16)
        for j in range(len(c)):
            wj = int(w[j])
            if wj > cap:
                continue
            cand = dp[: cap + 1 - wj] + c[j]
            better = cand < new[wj:]
            new[wj:][better] = cand[better]
            arg[wj:][better] = j
        dp = new
        choices.append(arg)
    if not np.isfinite(dp).any():
        return None
    b = int(np.argmin(dp))
    picked = []
    for g in range(len(costs) - 1, -1, -1):
        j = int(choices[g][b])
        picked.append(j)
        b -= int(weights[g][j])
    return picked[::-1]


def allocate(
    groups: list[Group],
    delta: dict,
    languages: list[str],
    budget_bytes: int,
    fixed_bytes: int,
    *,
    iterations: int = 150,
    patience: int = 40,
    cells: int = 8000,
) -> Allocation:
    """Minimise the worst language's predicted KLD within the byte budget."""
    mats = _delta_matrix(groups, delta, languages)
    avail = budget_bytes - fixed_bytes
    min_bytes = sum(min(g.nbytes[t] for t in g.ladder) for g in groups)
    if avail < min_bytes:
        raise UserError(
            f"budget of {budget_bytes} bytes is below the smallest this model can be made with these ladders ({min_bytes + fixed_bytes} bytes); raise --budget"
        )
    unit = max(1, math.ceil(avail / cells))
    weights = [np.array([math.ceil(g.nbytes[t] / unit) for t in g.ladder]) for g in groups]
    cap = avail // unit
    lam = np.full(len(languages), 1.0 / len(languages))
    best: tuple[float, float, list[int]] | None = None
    since_best = 0
    for _ in range(iterations):
        costs = [m @ lam for m in mats]
        picked = _mckp(costs, weights, cap)
        if picked is None:
            break
        k = sum(m[j] for m, j in zip(mats, picked, strict=True))
        key = (float(k.max()), float(k.mean()), picked)
        since_best += 1
        if best is None or key[:2] < best[:2]:
            best, since_best = key, 0
        if since_best > patience:  # the weights have settled: the local search polishes
            break
        lam = lam * np.exp(0.5 * k / max(float(k.max()), 1e-12))
        lam /= lam.sum()
    if best is None:
        raise UserError("no type assignment fits the budget")
    picked = _local_search(best[2], mats, groups, avail)
    choice = {g.key: g.ladder[j] for g, j in zip(groups, picked, strict=True)}
    k = sum(m[j] for m, j in zip(mats, picked, strict=True))
    n_bytes = fixed_bytes + sum(g.nbytes[g.ladder[j]] for g, j in zip(groups, picked, strict=True))
    return Allocation(
        choice,
        n_bytes,
        {lang: float(v) for lang, v in zip(languages, k, strict=True)},
        budget_bytes,
    )


def _local_search(
    picked: list[int], mats: list[np.ndarray], groups: list[Group], avail: int
) -> list[int]:
    """Single-group changes that lower the worst language (then the mean) within budget, the
    best first, until none does: this also spends what the knapsack's byte units left over."""
    picked = list(picked)
    sizes = [np.array([g.nbytes[t] for t in g.ladder]) for g in groups]
    total = sum(m[j] for m, j in zip(mats, picked, strict=True))
    used = int(sum(int(s[j]) for s, j in zip(sizes, picked, strict=True)))
    current = (float(total.max()), float(total.mean()))
    for _ in range(20 * len(groups) + 200):
        best_move = None
        for gi, (m, s) in enumerate(zip(mats, sizes, strict=True)):
            trial = total[None, :] - m[picked[gi]] + m  # (types, languages)
            fits = used - s[picked[gi]] + s <= avail
            worst, mean = trial.max(axis=1), trial.mean(axis=1)
            for j in np.flatnonzero(fits):
                score = (float(worst[j]), float(mean[j]))
                if (
                    j != picked[gi]
                    and score < current
                    and (best_move is None or score < best_move[0])
                ):
                    best_move = (score, gi, int(j))
        if best_move is None:
            break
        current, gi, j = best_move
        total = total - mats[gi][picked[gi]] + mats[gi][j]
        used += int(sizes[gi][j] - sizes[gi][picked[gi]])
        picked[gi] = j
    return picked
