"""summary.md: what won, by how much, and how sure, in a few sentences a reader can paste."""

from __future__ import annotations

import math
from collections.abc import Sequence

from reports.formatting import digits_for, number, p_value
from reports.stats import CLIPPED, STUDENT_T
from reports.tables import ReportTables


def summary_markdown(
    experiment: str, tables: ReportTables, files: list[str], notes: Sequence[str] = ()
) -> str:
    """``notes``: further paragraphs (the strategies view's), put before the list of files."""
    metric = tables.metric
    configs = tables.configurations
    digits = digits_for(metric.name)
    runs = len(tables.runs)
    direction = "higher" if metric.mode == "max" else "lower"
    lines = [f"# {experiment}: summary", ""]
    lines.append(
        f"{runs} finished runs in {len(configs)} configurations, compared on **{metric.name}** "
        f"({direction} is better; mean ± std over seeds, {_intervals(tables)}, "
        f"Welch's t-test against the best with Holm's correction)."
    )
    lines.append("")
    lines.append(_winner(tables, digits))
    if len(configs) > 1:
        lines.append("")
        lines.append(_runner_up(tables, digits))
        tied = (tables.versus_best["verdict"].str.startswith("indistinguishable")).sum()
        untested = (tables.versus_best["verdict"].str.startswith("not tested")).sum()
        sentence = (
            f"{tied} of the other {len(configs) - 1} configurations {'is' if tied == 1 else 'are'} "
            "indistinguishable from it at 95%"
        )
        if untested:
            sentence += f"; {untested} could not be tested (fewer than two seeds)"
        lines.append(sentence + ".")
    for factor, table in tables.marginals.items():
        best = table.iloc[0]
        worst = table.iloc[-1]
        lines.append("")
        lines.append(
            f"By **{factor}** ({tables.pooled.get(factor, 'pooled over the other factors')}), "
            f"`{best['level']}` leads with "
            f"{number(best['mean'], digits)} over {int(best['n'])} runs; `{worst['level']}` is last with "
            f"{number(worst['mean'], digits)}."
        )
    lines.append("")
    unfinished = len(tables.unfinished)
    if unfinished:
        statuses = tables.unfinished["status"].value_counts().sort_index()
        counted = ", ".join(f"{n} {status}" for status, n in statuses.items())
        lines.append(
            f"{unfinished} runs did not finish ({counted}); they are listed with their reasons in the "
            "report and left out of every statistic."
        )
    else:
        lines.append("Every run of the grid finished.")
    for note in notes:
        lines += ["", note]
    lines += ["", "Files: " + ", ".join(f"`{name}`" for name in files) + "."]
    return "\n".join(lines) + "\n"


def _intervals(tables: ReportTables) -> str:
    """How the intervals were made, in words (``reports.stats``): a bounded metric's are clipped."""
    name = tables.metric.name
    methods = tables.configurations.get(f"{name} ci_method")
    method = str(methods.iloc[0]) if methods is not None and len(methods) else STUDENT_T
    if method.startswith(CLIPPED):
        where = method.removeprefix(CLIPPED).strip()
        return f"95% Student-t confidence intervals of the mean clipped to {where}, the range of {name}"
    if method == STUDENT_T:
        return "95% Student-t confidence intervals of the mean"
    return f"95% confidence intervals of the mean by {method}"


def _winner(tables: ReportTables, digits: int) -> str:
    best = tables.configurations.iloc[0]
    name = tables.metric.name
    spread = "" if math.isnan(best[f"{name} std"]) else f" ± {number(best[f'{name} std'], digits)}"
    ci = (
        ""
        if math.isnan(best[f"{name} ci_low"])
        else f", 95% CI [{number(best[f'{name} ci_low'], digits)}, {number(best[f'{name} ci_high'], digits)}]"
    )
    mean = number(best[f"{name} mean"], digits)
    return f"**Best: `{best['config']}`** with {mean}{spread}{ci} over {int(best['n'])} seeds."


def _runner_up(tables: ReportTables, digits: int) -> str:
    row = tables.versus_best.iloc[1]
    gap = abs(row["delta"])
    verdict = row["verdict"]
    if verdict.startswith("not tested"):
        how_sure = "too few seeds to test the difference"
    elif verdict.startswith("worse"):
        how_sure = f"the difference is significant at 95% (Holm-adjusted p = {p_value(row['p_holm'])})"
    else:
        how_sure = (
            f"the difference is not significant at 95% (Holm-adjusted p = {p_value(row['p_holm'])}): "
            "with these seeds the two cannot be told apart"
        )
    return (
        f"The runner-up `{row['config']}` reaches {number(row['mean'], digits)}, "
        f"{number(gap, digits)} behind; {how_sure}."
    )
