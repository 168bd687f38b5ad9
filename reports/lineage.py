"""Strategies, as pure functions of pandas frames: where a run's weights came from, what its whole
training cost, how each (configuration, variant) scores, and which of them nothing else beats.

A run that ``model.init_from`` another run (fine-tuning a pretrained encoder) or learned from a teacher's
logits (distillation) did not cost only its own fit: its whole cost adds the parent's and the teacher's
whole costs, recursively. A variant is the same trained weights tested another way (``test_int8/acc``,
``test_bf16/acc``); it costs no further training.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd

from core.metrics import bounds_of
from reports import stats
from reports.collect import ReportInputError

PRETRAIN_KIND = "masked_lm"  # the task kind of pretraining runs: they log val/mlm_loss, not the task metric
FULL_PRECISION = "fp32"  # the variant a run's plain test/<metric> measures
VARIANT_FACTS = ("size_mb", "latency_ms_batch", "latency_ms_example")  # test_<variant>/<fact>
FIT_TIME, TEACHER_LOGITS = "perf/fit_time_s", "perf/teacher_logits_s"
COST_COLUMNS = ("fit_time_s", "parent_cost_s", "teacher_cost_s", "cost_s")


def pareto_front(points: Sequence[tuple[float, float]], maximize_y: bool = True) -> list[int]:
    """Indices of the (x, y) points no other point dominates, x minimized and y maximized (or minimized
    with ``maximize_y=False``), in order of x.

    One point dominates another when it is no worse on both and better on one, so two equal points are
    both on the front. A point with a NaN coordinate is never on it.
    """
    sign = 1.0 if maximize_y else -1.0
    valid = [(x, sign * y, i) for i, (x, y) in enumerate(points) if not (math.isnan(x) or math.isnan(y))]
    valid.sort(key=lambda p: (p[0], -p[1], p[2]))  # by x, the best y first among equal x
    front: list[int] = []
    best, last = -math.inf, None
    for x, y, i in valid:
        # every point before has x no larger: only a strictly better y escapes domination
        if y > best or (x, y) == last:
            front.append(i)
            best, last = max(best, y), (x, y)
    return front


def ancestors(run_id: str, parent_of: Mapping[str, str]) -> list[str]:
    """The runs whose weights ``run_id``'s came from, nearest first, following parent links until a run
    without one (or one the store does not know)."""
    chain, current = [], run_id
    while parent_of.get(current):
        current = parent_of[current]
        if current == run_id or current in chain:
            raise ReportInputError(f"run {run_id}'s parent links loop back at {current}: corrupt tags")
        chain.append(current)
    return chain


def training_cost(facts: pd.DataFrame) -> pd.DataFrame:
    """The whole training cost of every run in ``facts`` (columns run_id, parent_run, teacher_run and the
    metrics perf/fit_time_s, perf/teacher_logits_s), indexed by run_id:

    - ``fit_time_s``: the run's own fit;
    - ``parent_cost_s``: its parent's whole cost (0 without a parent);
    - ``teacher_cost_s``: its teacher's whole cost plus its own perf/teacher_logits_s (0 if not distilled);
    - ``cost_s``: the sum.

    A run shared by several children (one pretraining run, k fine-tunes) is counted in full for each:
    each child's cost is what it would take to reproduce that child alone. A parent or teacher the
    store does not have, or a time it did not log, makes the cost unknown (NaN), never silently smaller.
    """
    by_id = _by_id(facts)
    fit, logits = _metric(by_id, FIT_TIME), _metric(by_id, TEACHER_LOGITS)
    parent, teacher = by_id["parent_run"], by_id["teacher_run"]
    whole: dict[str, float] = {}  # run id -> its whole cost, once computed

    def inherited(run_id: str, path: tuple[str, ...]) -> tuple[float, float]:
        """(parent_cost_s, teacher_cost_s) of a run in the store."""
        parent_s = cost_of(parent[run_id], path) if parent[run_id] else 0.0
        teacher_s = cost_of(teacher[run_id], path) + logits[run_id] if teacher[run_id] else 0.0
        return parent_s, teacher_s

    def cost_of(run_id: str, path: tuple[str, ...]) -> float:
        if run_id not in whole:
            if run_id not in by_id.index:
                return math.nan
            if run_id in path:
                raise ReportInputError(f"the parent and teacher links of run {run_id} loop back to it")
            whole[run_id] = fit[run_id] + sum(inherited(run_id, (*path, run_id)))
        return whole[run_id]

    rows = [(run_id, fit[run_id], *inherited(run_id, (run_id,))) for run_id in by_id.index]
    table = pd.DataFrame(rows, columns=["run_id", *COST_COLUMNS[:3]]).set_index("run_id")
    table["cost_s"] = table["fit_time_s"] + table["parent_cost_s"] + table["teacher_cost_s"]
    return table


def _by_id(facts: pd.DataFrame) -> pd.DataFrame:
    """``facts`` by run id, its link columns as strings ("" for none)."""
    by_id = facts.drop_duplicates("run_id", keep="last").set_index("run_id")
    for name in ("run_name", "stage", "task_metric", "parent_run", "parent_part", "teacher_run"):
        by_id[name] = by_id[name].fillna("").astype(str) if name in by_id else ""
    return by_id


def _metric(by_id: pd.DataFrame, name: str) -> pd.Series:
    if name not in by_id:
        return pd.Series(math.nan, index=by_id.index, dtype=float)
    return pd.to_numeric(by_id[name], errors="coerce")


def variants(columns: Sequence[str]) -> list[str]:
    """fp32, then every ``test_<variant>`` stage that logs a size or a latency, sorted.

    The size or latency is what marks a variant: ``test_mismatched/acc`` (MNLI's second test split)
    is a split, not a variant, and logs neither.
    """
    found = set()
    for name in columns:
        stage, _, fact = name.partition("/")
        if stage.startswith("test_") and fact in VARIANT_FACTS:
            found.add(stage.removeprefix("test_"))
    return [FULL_PRECISION, *sorted(found - {FULL_PRECISION})]


STRATEGY_COLUMNS = [
    *("rank", "config", "stage", "variant", "n", "metric", "mean", "std", "ci_low", "ci_high"),
    *VARIANT_FACTS,
    *COST_COLUMNS,
]


def strategies_table(
    scored: pd.DataFrame, metric: str, mode: str, cost: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (config, stage, variant) of the scored runs, best first: n seeds, the task metric's
    mean, std and 95% CI (``reports.stats``), the mean size and latencies of that variant, and the mean
    own and whole training costs of its runs (``training_cost``).

    ``scored``: one row per run, columns run_id, config, stage and the tracked metrics; ``metric`` a
    bare name ("acc"). The fp32 value is test_fp32/<metric>, or test/<metric> where a run lacks it.
    """
    keys = ["config", "stage", "variant"]
    parts = []
    for variant in variants(list(scored.columns)):
        stage = f"test_{variant}"
        value = _column(scored, f"{stage}/{metric}")
        if variant == FULL_PRECISION:
            value = value.combine_first(_column(scored, f"test/{metric}"))
        part = scored[["run_id", *keys[:2]]].reset_index(drop=True).assign(variant=variant)
        part["value"] = value.to_numpy()
        for fact in VARIANT_FACTS:
            part[fact] = _column(scored, f"{stage}/{fact}").to_numpy()
        parts.append(part.dropna(subset=["value"]))  # a run that did not test this variant
    long = pd.concat(parts, ignore_index=True)  # fp32 is always a variant: never an empty list
    if long.empty:
        return pd.DataFrame(columns=STRATEGY_COLUMNS)
    if cost is None:  # costs unknown: NaN columns
        cost = pd.DataFrame(math.nan, index=pd.Index([], name="run_id"), columns=list(COST_COLUMNS))
    long = long.join(cost[list(COST_COLUMNS)], on="run_id")
    table = stats.over_seeds(long, keys, "value", mode, bounds=bounds_of(f"test/{metric}"))
    ordered = long.sort_values([*keys, "run_id"], kind="stable")  # order-free means, as stats does
    facts = ordered.groupby(keys, sort=True)[list(VARIANT_FACTS)].mean()
    # one seed with an unknown cost makes the configuration's cost unknown: skipna=False
    costs = ordered.groupby(keys, sort=True)[list(COST_COLUMNS)].agg(lambda s: s.mean(skipna=False))
    table = table.join(facts, on=keys).join(costs, on=keys)
    table["metric"] = metric
    return table[STRATEGY_COLUMNS]


def _column(frame: pd.DataFrame, name: str) -> pd.Series:
    if name in frame:
        return pd.to_numeric(frame[name], errors="coerce").reset_index(drop=True)
    return pd.Series(math.nan, index=range(len(frame)), dtype=float)


UNKNOWN_RUN = "(not in the store)"  # a link to a run id no experiment of the store holds
LINEAGE_COLUMNS = [
    "run",
    "run_id",
    "relation",
    "source_run",
    "source_run_id",
    "part",
    "source_stage",
    "source_metric",
    "source_value",
    "chain",
]


def lineage_table(facts: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """One row per link of the runs ``run_ids``: relation "parent" (the weights it started from; part
    all or encoder) or "teacher" (the logits it learned from), with the source run's name, stage and
    final validation value of its own task metric (val/mlm_loss for a pretraining run), and the chain
    of run names its weights came through ("finetune-s0 <- pretrain-s0 <- pretrain-base-s0")."""
    by_id = _by_id(facts)
    parent_of = by_id["parent_run"].to_dict()
    name = lambda run_id: by_id.at[run_id, "run_name"] if run_id in by_id.index else UNKNOWN_RUN  # noqa: E731
    rows = []
    for run_id in sorted(set(run_ids) & set(by_id.index), key=lambda r: (name(r), r)):
        child = by_id.loc[run_id]
        for relation, source, part in (
            ("parent", child["parent_run"], child["parent_part"]),
            ("teacher", child["teacher_run"], "logits"),
        ):
            if not source:
                continue
            known = source in by_id.index
            metric = f"val/{by_id.at[source, 'task_metric']}" if known else ""
            value = by_id.at[source, metric] if known and metric in by_id else math.nan
            lineage = [run_id, *(ancestors(run_id, parent_of) if relation == "parent" else [source])]
            rows.append(
                {
                    "run": child["run_name"],
                    "run_id": run_id,
                    "relation": relation,
                    "source_run": name(source),
                    "source_run_id": source,
                    "part": part,
                    "source_stage": by_id.at[source, "stage"] if known else "",
                    "source_metric": metric if metric != "val/" else "",
                    "source_value": float(value),
                    "chain": " <- ".join(name(r) for r in lineage),
                }
            )
    return pd.DataFrame(rows, columns=LINEAGE_COLUMNS)
