"""The strategies view of `litbench report`: Pareto fronts, whole training costs and lineage, exact on
hand examples, then end to end on a real MLflow store."""

from __future__ import annotations

import math
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cli import main
from core import tags as tag
from core.store import client_for, experiment_id_for
from reports import synthetic
from reports.build import write_report
from reports.collect import ReportInputError
from reports.lineage import (
    ancestors,
    lineage_table,
    pareto_front,
    strategies_table,
    training_cost,
    variants,
)

NAN = math.nan
STRATEGY_FILES = {
    "strategies.md",
    "strategies.csv",
    "lineage.md",
    "lineage.csv",
    "pareto_size.png",
    "pareto_latency.png",
}

# ---------------------------------------------------------------- the pure functions, by hand


def test_pareto_front_keeps_what_nothing_beats_on_both_axes() -> None:
    points = [(10, 0.90), (5, 0.88), (20, 0.91), (5, 0.85), (30, 0.905), (8, 0.88)]
    # (5, .85): same size as (5, .88), worse; (8, .88): bigger, no better; (30, .905): (20, .91) beats it
    assert pareto_front(points) == [1, 0, 2]
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.45), (4, 0.1)], maximize_y=False) == [0, 1, 3]
    assert pareto_front([(1, 0.5), (2, 0.4), (3, 0.45), (4, 0.1)], maximize_y=True) == [0]


def test_pareto_front_keeps_equal_points_and_drops_nan() -> None:
    points = [(1, 0.9), (1, 0.9), (NAN, 1.0), (2, NAN), (0.5, 0.1)]
    assert pareto_front(points) == [4, 0, 1]
    assert pareto_front([]) == []
    assert pareto_front([(3, 0.2)]) == [0]


def test_ancestors_follow_a_two_level_chain_and_refuse_a_loop() -> None:
    parent_of = {"finetune": "continued", "continued": "pretrain", "pretrain": ""}
    assert ancestors("finetune", parent_of) == ["continued", "pretrain"]
    assert ancestors("pretrain", parent_of) == []
    assert ancestors("not-in-the-store", parent_of) == []
    with pytest.raises(ReportInputError, match="loop"):
        ancestors("a", {"a": "b", "b": "a"})


def _facts(rows: list[tuple]) -> pd.DataFrame:
    columns = ["run_id", "parent_run", "teacher_run", "perf/fit_time_s", "perf/teacher_logits_s"]
    return pd.DataFrame(rows, columns=columns)


def test_training_cost_adds_parents_and_teachers_recursively() -> None:
    facts = _facts(
        [
            ("pre", "", "", 100.0, NAN),
            ("ft", "pre", "", 10.0, NAN),
            ("ft2", "ft", "", 5.0, NAN),  # two levels: ft2 <- ft <- pre
            ("teacher", "pre", "", 20.0, NAN),
            ("student", "", "teacher", 3.0, 2.0),
            ("orphan", "gone", "", 7.0, NAN),  # its parent is not in the store
            ("plain", "", "", 4.0, NAN),
        ]
    )
    cost = training_cost(facts)
    expected = {  # fit_time_s, parent_cost_s, teacher_cost_s, cost_s
        "pre": (100, 0, 0, 100),
        "ft": (10, 100, 0, 110),
        "ft2": (5, 110, 0, 115),
        "teacher": (20, 100, 0, 120),
        "student": (3, 0, 120 + 2, 125),  # the teacher's whole cost plus the logits
        "plain": (4, 0, 0, 4),
    }
    for run_id, row in expected.items():
        assert tuple(cost.loc[run_id]) == pytest.approx(row), run_id
    assert cost.at["orphan", "fit_time_s"] == 7.0
    assert math.isnan(cost.at["orphan", "parent_cost_s"]) and math.isnan(cost.at["orphan", "cost_s"])


def test_training_cost_refuses_a_loop_and_a_missing_time_is_unknown() -> None:
    with pytest.raises(ReportInputError, match="loop"):
        training_cost(_facts([("a", "b", "", 1.0, NAN), ("b", "a", "", 1.0, NAN)]))
    cost = training_cost(_facts([("pre", "", "", NAN, NAN), ("ft", "pre", "", 10.0, NAN)]))
    assert math.isnan(cost.at["ft", "cost_s"])  # never silently smaller


def test_variants_are_the_test_stages_with_a_size_or_latency() -> None:
    columns = [
        "test/acc",
        "test_int8/acc",
        "test_int8/size_mb",
        "test_mismatched/acc",  # MNLI's second split: no size, no latency
        "test_bf16/latency_ms_example",
        "test_fp32/size_mb",
    ]
    assert variants(columns) == ["fp32", "bf16", "int8"]
    assert variants(["test/acc"]) == ["fp32"]


def test_strategies_table_by_hand() -> None:
    scored = pd.DataFrame(
        {
            "run_id": ["r0", "r1", "r2"],
            "config": ["a", "a", "b"],
            "stage": ["finetune", "finetune", ""],
            "test/acc": [0.80, 0.90, 0.70],
            "test_fp32/acc": [0.81, NAN, NAN],  # r1 and r2 fall back to test/acc
            "test_fp32/size_mb": [20.0, 22.0, 10.0],
            "test_int8/acc": [0.78, 0.86, NAN],  # b was not quantized: no int8 row
            "test_int8/size_mb": [6.0, 6.0, NAN],
        }
    )
    cost = pd.DataFrame(
        {"fit_time_s": [1.0, 3.0, 5.0], "parent_cost_s": [10.0, 10.0, 0.0], "teacher_cost_s": 0.0},
        index=pd.Index(["r0", "r1", "r2"], name="run_id"),
    )
    cost["cost_s"] = cost.sum(axis=1)
    table = strategies_table(scored, "acc", "max", cost).set_index(["config", "variant"])
    assert list(table.index) == [("a", "fp32"), ("a", "int8"), ("b", "fp32")]  # best first
    fp32 = table.loc[("a", "fp32")]
    assert fp32["n"] == 2 and fp32["mean"] == pytest.approx(0.855) and fp32["stage"] == "finetune"
    low, high = stats.t.interval(0.95, 1, loc=0.855, scale=stats.sem([0.81, 0.90]))
    # accuracy lies in [0, 1]: so does its interval (the Student-t one, clipped)
    assert (fp32["ci_low"], fp32["ci_high"]) == pytest.approx((max(low, 0.0), min(high, 1.0)))
    assert high > 1.0
    assert fp32["size_mb"] == 21.0 and fp32["fit_time_s"] == 2.0 and fp32["cost_s"] == 12.0
    assert table.loc[("a", "int8"), "mean"] == pytest.approx(0.82)
    assert table.loc[("a", "int8"), "size_mb"] == 6.0 and table.loc[("a", "int8"), "cost_s"] == 12.0
    assert table.loc[("b", "fp32"), "n"] == 1 and math.isnan(table.loc[("b", "fp32"), "ci_low"])
    assert math.isnan(table.loc[("b", "fp32"), "latency_ms_example"])


def test_lineage_table_names_parents_teachers_and_the_chain() -> None:
    facts = pd.DataFrame(
        {
            "run_id": ["p", "c", "g", "s", "t"],
            "run_name": ["pre-s0", "cont-s0", "ft-s0", "kd-s0", "big-s0"],
            "stage": ["pretrain", "pretrain", "finetune", "finetune", "teacher"],
            "task_metric": ["mlm_loss", "mlm_loss", "acc", "acc", "acc"],
            "parent_run": ["", "p", "c", "", ""],
            "parent_part": ["", "all", "encoder", "", ""],
            "teacher_run": ["", "", "", "t", ""],
            "val/mlm_loss": [3.0, 2.5, NAN, NAN, NAN],
            "val/acc": [NAN, NAN, 0.9, 0.85, 0.93],
        }
    )
    table = lineage_table(facts, ["g", "s", "t"])
    assert table[["run", "relation", "source_run", "part", "source_metric"]].values.tolist() == [
        ["ft-s0", "parent", "cont-s0", "encoder", "val/mlm_loss"],
        ["kd-s0", "teacher", "big-s0", "logits", "val/acc"],
    ]
    assert list(table["source_value"]) == [2.5, 0.93]
    assert table.at[0, "chain"] == "ft-s0 <- cont-s0 <- pre-s0"


# ---------------------------------------------------------------- end to end, on a real store


def _log(
    client, experiment_id: str, name: str, config: str, *, tags=None, metrics=None, seed=0, data="glue"
) -> str:
    """One FINISHED run tagged as `litbench grid` tags a text-classification cell."""
    from mlflow.entities import Metric, Param

    run_tags = {
        tag.SPEC_HASH: uuid.uuid5(uuid.NAMESPACE_URL, f"{experiment_id}/{name}").hex,
        tag.CONFIG: config,
        tag.GRID: "strategies",
        tag.TASK_KIND: "text_classification",
        tag.TASK_METRIC: "acc",
        tag.TASK_MODE: "max",
        **(tags or {}),
    }
    run = client.create_run(experiment_id, run_name=name, tags=run_tags)
    params = [Param("seed", str(seed)), Param("data.name", data)]
    params += [Param("data.task", "sst2")] if data == "glue" else []
    logged = [Metric(key, float(value), 0, 0) for key, value in (metrics or {}).items()]
    client.log_batch(run.info.run_id, metrics=logged, params=params)
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


PRETRAIN = {tag.TASK_KIND: "masked_lm", tag.TASK_METRIC: "mlm_loss", tag.TASK_MODE: "min"}


def _variant(prefix: str, size: float, latency: float, acc: float | None = None) -> dict[str, float]:
    facts = {f"{prefix}/size_mb": size, f"{prefix}/latency_ms_batch": 32 * latency}
    facts[f"{prefix}/latency_ms_example"] = latency
    return facts | ({f"{prefix}/acc": acc} if acc is not None else {})


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """One pretraining run, a teacher, 2 fine-tuned seeds of it (fp32 + int8), 2 distilled seeds."""
    root = tmp_path_factory.mktemp("strategies")
    uri = f"sqlite:///{root}/mlflow.db"
    client = client_for(uri)
    exp = experiment_id_for(client, "strategies", uri)
    ids = {}
    ids["pre"] = _log(
        client,
        exp,
        "mlm-s0",
        "mlm",
        tags={**PRETRAIN, tag.STAGE: "pretrain"},
        metrics={"val/mlm_loss": 2.5, "perf/fit_time_s": 100.0},
    )
    ids["teacher"] = _log(
        client,
        exp,
        "big-s0",
        "big",
        tags={tag.STAGE: "teacher"},
        metrics={
            "val/acc": 0.92,
            "test/acc": 0.93,
            "perf/fit_time_s": 50.0,
            **_variant("test_fp32", 90, 2.0),
        },
    )
    for seed, (acc, int8, fit) in enumerate([(0.88, 0.870, 10.0), (0.90, 0.885, 12.0)]):
        ids[f"ft{seed}"] = _log(
            client,
            exp,
            f"ft-enc-s{seed}",
            "ft-enc",
            seed=seed,
            tags={tag.STAGE: "finetune", tag.PARENT_RUN: ids["pre"], tag.PARENT_PART: "encoder"},
            metrics={  # no test_fp32/acc: the fp32 row reads test/acc
                "test/acc": acc,
                "perf/fit_time_s": fit,
                **_variant("test_fp32", 20, 0.5),
                **_variant("test_int8", 6, 0.3, int8),
            },
        )
    for seed, (acc, int8, fit, logits) in enumerate([(0.86, 0.80, 8.0, 3.0), (0.87, 0.81, 9.0, 5.0)]):
        ids[f"kd{seed}"] = _log(
            client,
            exp,
            f"kd-s{seed}",
            "kd",
            seed=seed,
            tags={tag.STAGE: "finetune", tag.TEACHER_RUN: ids["teacher"]},
            metrics={
                "test/acc": acc,
                "perf/fit_time_s": fit,
                "perf/teacher_logits_s": logits,
                **_variant("test_fp32", 20, 0.5, acc),
                **_variant("test_int8", 6, 0.3, int8),
            },
        )
    return uri, ids


def test_report_writes_the_strategies_view_with_hand_computed_numbers(store, tmp_path: Path) -> None:
    uri, ids = store
    report = write_report(uri, "strategies", tmp_path / "out")
    out = report.out_dir
    assert STRATEGY_FILES <= {p.name for p in report.files} <= {p.name for p in out.iterdir()}

    table = pd.read_csv(out / "strategies.csv", keep_default_na=False, na_values=[""])
    table = table.set_index(["config", "variant"])
    assert set(table.index) == {("ft-enc", "fp32"), ("ft-enc", "int8"), ("kd", "fp32"), ("kd", "int8")} | {
        ("big", "fp32")
    }  # the pretraining run is a parent, not a scored row
    expected = {  # n, mean, size_mb, latency_ms_example, fit_time_s, parent_cost_s, teacher_cost_s, cost_s
        ("ft-enc", "fp32"): (2, np.mean([0.88, 0.90]), 20, 0.5, 11, 100, 0, 111),
        ("ft-enc", "int8"): (2, np.mean([0.870, 0.885]), 6, 0.3, 11, 100, 0, 111),
        ("kd", "fp32"): (2, np.mean([0.86, 0.87]), 20, 0.5, 8.5, 0, np.mean([53, 55]), np.mean([61, 64])),
        ("kd", "int8"): (2, np.mean([0.80, 0.81]), 6, 0.3, 8.5, 0, 54, 62.5),
        ("big", "fp32"): (1, 0.93, 90, 2.0, 50, 0, 0, 50),
    }
    columns = ["n", "mean", "size_mb", "latency_ms_example", "fit_time_s", "parent_cost_s"]
    columns += ["teacher_cost_s", "cost_s"]
    for key, row in expected.items():
        assert tuple(table.loc[key, columns]) == pytest.approx(row), key
    assert table.loc[("ft-enc", "fp32"), "stage"] == "finetune" and table.loc[("big", "fp32"), "rank"] == 1
    low, high = stats.t.interval(0.95, 1, loc=0.89, scale=stats.sem([0.88, 0.90]))
    expected_ci = [max(low, 0.0), min(high, 1.0)]
    assert table.loc[("ft-enc", "fp32"), ["ci_low", "ci_high"]].tolist() == pytest.approx(expected_ci)

    front = {("ft-enc", "int8"), ("ft-enc", "fp32"), ("big", "fp32")}  # kd is beaten at each size
    for x in ("size_mb", "latency_ms_example"):
        assert set(table.index[table[f"pareto_{x}"]]) == front, x
    markdown = (out / "strategies.md").read_text()
    assert "counted in full for each child" in markdown
    section = markdown.split("## Pareto front: test/acc against size_mb")[1].split("##")[0]
    assert [line.split("`")[1] for line in section.splitlines() if line.startswith("- ")] == [
        "ft-enc [int8]",
        "ft-enc [fp32]",
        "big [fp32]",
    ]
    assert "Pareto front against size_mb is `ft-enc [int8]`" in (out / "summary.md").read_text()

    lineage = pd.read_csv(out / "lineage.csv", keep_default_na=False).set_index("run")
    assert sorted(lineage.index) == ["ft-enc-s0", "ft-enc-s1", "kd-s0", "kd-s1"]
    parent = lineage.loc["ft-enc-s0"]
    assert (parent["relation"], parent["source_run"], parent["source_run_id"]) == (
        "parent",
        "mlm-s0",
        ids["pre"],
    )
    assert (parent["part"], parent["source_metric"], parent["source_value"]) == (
        "encoder",
        "val/mlm_loss",
        2.5,
    )
    teacher = lineage.loc["kd-s1"]
    assert (teacher["relation"], teacher["source_run"], teacher["source_value"]) == (
        "teacher",
        "big-s0",
        0.92,
    )
    assert lineage.loc["ft-enc-s1", "run_id"] == ids["ft1"]


def test_cli_report_lists_the_strategies_files(store, tmp_path: Path, capsys) -> None:
    uri, _ = store
    assert main(["report", "strategies", "--tracking-uri", uri, "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert all(name in printed for name in STRATEGY_FILES)
    html = (tmp_path / "cli" / "report.html").read_text()
    assert "Pareto front: test/acc against size_mb" in html and "Lineage:" in html


def test_a_parent_in_another_experiment_is_read_from_the_store(store, tmp_path: Path) -> None:
    uri, _ = store
    client = client_for(uri)
    elsewhere = experiment_id_for(client, "pretraining-elsewhere", uri)
    root = _log(client, elsewhere, "base-s0", "base", tags=PRETRAIN, metrics={"perf/fit_time_s": 40.0})
    middle = _log(  # two levels outside: followed up the chain
        client,
        elsewhere,
        "cont-s0",
        "cont",
        tags={**PRETRAIN, tag.PARENT_RUN: root},
        metrics={"val/mlm_loss": 2.0, "perf/fit_time_s": 30.0},
    )
    exp = experiment_id_for(client, "reuse", uri)
    linked = {"test/acc": 0.9, "perf/fit_time_s": 5.0, **_variant("test_int8", 6, 0.3, 0.88)}
    _log(client, exp, "ft-s0", "ft", tags={tag.PARENT_RUN: middle}, metrics=linked)
    _log(client, exp, "lost-s0", "lost", tags={tag.PARENT_RUN: "0" * 32}, metrics=linked)

    out = write_report(uri, "reuse", tmp_path / "reuse").out_dir
    again = write_report(uri, "reuse", tmp_path / "again").out_dir
    for name in ("strategies.csv", "strategies.md", "lineage.csv", "lineage.md"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name  # same store, same bytes
    table = pd.read_csv(out / "strategies.csv").set_index(["config", "variant"])
    assert table.loc[("ft", "fp32"), "cost_s"] == 5 + 30 + 40
    assert math.isnan(table.loc[("lost", "int8"), "cost_s"])  # its parent is in no experiment
    lineage = pd.read_csv(out / "lineage.csv", keep_default_na=False).set_index("run")
    assert lineage.loc["ft-s0", "chain"] == "ft-s0 <- cont-s0 <- base-s0"
    assert lineage.loc["lost-s0", "source_run"] == "(not in the store)"
    assert "–" in (out / "strategies.md").read_text()


def test_a_grid_without_lineage_or_variants_gets_no_strategies_view(
    tracking_uri: str, tmp_path: Path
) -> None:
    synthetic.log_grid(tracking_uri, "plain", list(synthetic.cells(configs_per_pair=1, seeds=2))[:4])
    report = write_report(tracking_uri, "plain", tmp_path / "out")
    written = {p.name for p in report.out_dir.iterdir()}
    assert not written & STRATEGY_FILES
    assert "Strategies" not in (report.out_dir / "summary.md").read_text()


def test_a_grid_over_tasks_finds_the_parent_in_the_pretraining_task(store, tmp_path: Path) -> None:
    uri, _ = store
    client = client_for(uri)
    exp = experiment_id_for(client, "two-tasks", uri)
    pretraining = {"val/mlm_loss": 2.2, "perf/fit_time_s": 60.0}
    pre = _log(client, exp, "mlm-s0", "mlm", tags=PRETRAIN, metrics=pretraining, data="wiki")
    for seed in (0, 1):
        metrics = {"test/acc": 0.8 + seed / 100, "perf/fit_time_s": 4.0, **_variant("test_int8", 6, 0.3, 0.7)}
        _log(client, exp, f"ft-s{seed}", "ft", seed=seed, tags={tag.PARENT_RUN: pre}, metrics=metrics)

    out = write_report(uri, "two-tasks", tmp_path / "out").out_dir
    fine_tuned = out / "glue_sst2"  # each task has its own report; the pretraining one scores nothing
    table = pd.read_csv(fine_tuned / "strategies.csv").set_index("variant")
    assert table.loc["fp32", "mean"] == pytest.approx(0.805) and table.loc["int8", "cost_s"] == 64.0
    assert not {p.name for p in (out / "wiki").iterdir()} & STRATEGY_FILES
    assert "Strategies (`strategies.md`)" in (out / "summary.md").read_text()
