"""Fixed rounding of the raw tables into display tables: what Markdown, LaTeX and HTML print.

Rounding is by column kind, never by value, so the same store prints the same digits every time.
The HTML helpers at the end make the one self-contained page every report writes (grid and study).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from reports.tables import ReportTables

PLUS_MINUS = " ± "


def number(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}" if abs(value) >= 1000 else f"{value:.{digits}f}"


def digits_for(metric: str) -> int:
    """Epochs to a tenth (a mean over seeds), throughput whole, seconds to a tenth, megabytes and
    milliseconds to 2 places, the rest to 4."""
    if metric.endswith(("size_mb", "latency_ms_batch", "latency_ms_example")):
        return 2
    if metric.endswith(("epoch", "epochs_to_target")):
        return 1
    if metric.endswith("per_s"):
        return 0
    if metric.endswith("_s"):
        return 1
    return 4


def p_value(value: float) -> str:
    if value is None or math.isnan(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def mean_std(frame: pd.DataFrame, prefix: str, digits: int, pm: str = PLUS_MINUS) -> list[str]:
    return [
        number(m, digits) + ("" if math.isnan(s) else pm + number(s, digits))
        for m, s in zip(frame[f"{prefix}mean"], frame[f"{prefix}std"], strict=True)
    ]


def ci_header(methods: pd.Series | None) -> str:
    """The header of an interval column, naming the method: "95% CI (Student-t, clipped to [0, 1])"."""
    named = [] if methods is None else sorted(set(methods.dropna().astype(str)))
    return f"95% CI ({'; '.join(named)})" if named else "95% CI"


def marginal_title(tables: ReportTables, factor: str) -> str:
    """The caption of a factor's marginal table: the factor and what each row pools."""
    pooled = tables.pooled.get(factor)
    return f"Marginal: {factor} ({pooled})" if pooled else f"Marginal: {factor}"


def interval(frame: pd.DataFrame, prefix: str, digits: int) -> list[str]:
    return [
        "–" if math.isnan(lo) else f"[{number(lo, digits)}, {number(hi, digits)}]"
        for lo, hi in zip(frame[f"{prefix}ci_low"], frame[f"{prefix}ci_high"], strict=True)
    ]


def configurations(tables: ReportTables, factors: list[str], pm: str = PLUS_MINUS) -> pd.DataFrame:
    """The paste-ready configuration table: primary metric with CI, then the perf columns that exist."""
    raw = tables.configurations
    metric = tables.metric.name
    digits = digits_for(metric)
    shown = pd.DataFrame({"rank": raw["rank"].astype(str), "config": raw["config"]})
    for factor in factors:
        shown[factor] = raw[factor].astype(str)
    shown["n"] = raw["n"].astype(str)
    shown[f"{metric} (mean{pm.strip()}std)"] = mean_std(raw, f"{metric} ", digits, pm)
    shown[ci_header(raw.get(f"{metric} ci_method"))] = interval(raw, f"{metric} ", digits)
    validation = _validation_twin(metric)
    extra = [m for m in (validation, *_perf_columns(raw)) if m and f"{m} mean" in raw]
    for name in extra:
        shown[f"{name}{' (final)' if name == validation else ''}"] = mean_std(
            raw, f"{name} ", digits_for(name), pm
        )
    if "model.num_params" in raw:
        shown["params"] = [number(v, 0) for v in raw["model.num_params"]]
    return shown


def _validation_twin(metric: str) -> str | None:
    stage, _, name = metric.partition("/")
    return f"val/{name}" if stage == "test" else None


def _perf_columns(raw: pd.DataFrame) -> list[str]:
    from reports.tables import PERF_METRICS

    return [m for m in PERF_METRICS if f"{m} mean" in raw and m != "perf/epochs_to_target"]


def versus_best(tables: ReportTables) -> pd.DataFrame:
    raw = tables.versus_best
    digits = digits_for(tables.metric.name)
    return pd.DataFrame(
        {
            "config": raw["config"],
            "mean": [number(v, digits) for v in raw["mean"]],
            "Δ vs best": ["–" if i == 0 else _signed(d, digits) for i, d in enumerate(raw["delta"])],
            "p (Welch)": [p_value(v) for v in raw["p_value"]],
            "p (Holm)": [p_value(v) for v in raw["p_holm"]],
            "verdict": raw["verdict"],
        }
    )


def _signed(value: float, digits: int) -> str:
    return f"{round(value, digits) + 0.0:+.{digits}f}"  # + 0.0 turns a rounded -0.0 into 0.0


def marginal(tables: ReportTables, factor: str, pm: str = PLUS_MINUS) -> pd.DataFrame:
    raw = tables.marginals[factor]
    digits = digits_for(tables.metric.name)
    return pd.DataFrame(
        {
            "rank": raw["rank"].astype(str),
            factor: raw["level"].astype(str),
            "configs": raw["n_configs"].astype(str),
            "runs": raw["n"].astype(str),
            f"{tables.metric.name} (mean{pm.strip()}std)": mean_std(raw, "", digits, pm),
            ci_header(raw.get("ci_method")): interval(raw, "", digits),
        }
    )


def unfinished(tables: ReportTables) -> pd.DataFrame:
    raw = tables.unfinished
    return pd.DataFrame(
        {
            "run": raw["run_name"].fillna("").astype(str),
            "status": raw["status"].astype(str),
            "reason": raw["reason"].fillna("").astype(str),
            "run id": raw["run_id"].astype(str),
        }
    )


# ---------------------------------------------------------------- one self-contained HTML page

HTML_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto;
       max-width: 1200px; color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table.litbench { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1rem; }
table.litbench th { text-align: left; border-bottom: 2px solid #333; padding: 4px 10px; }
table.litbench td { border-bottom: 1px solid #e4e4e4; padding: 3px 10px; white-space: nowrap; }
table.litbench tr:first-child td { font-weight: 600; }
table.litbench tr:nth-child(even) td { background: #f7f7f9; }
code { background: #f2f2f5; padding: 0 3px; border-radius: 3px; }
figure { margin: 1rem 0; } img { max-width: 100%; border: 1px solid #eee; }
.summary { background: #f6f8fb; border-left: 4px solid #4c72b0; padding: 0.5rem 1rem; }
"""


def html_page(title: str, summary: str, sections: Iterable[str]) -> str:
    """The summary's paragraphs (its Markdown heading becomes the page's <h1>), then ``sections``."""
    paragraphs = [p for p in summary.split("\n\n")[1:] if p.strip()]
    body = [f"<h1>{html.escape(title)}</h1>", '<div class="summary">']
    body += [f"<p>{inline_markdown(p)}</p>" for p in paragraphs]
    body.append("</div>")
    body += sections
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}: litbench report</title>\n<style>{HTML_CSS}</style>\n</head>\n"
        "<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def html_table(title: str, frame: pd.DataFrame) -> str:
    table = frame.to_html(index=False, border=0, classes="litbench") if len(frame) else "<p>none</p>"
    return f"<h2>{html.escape(title)}</h2>\n{table}"


def html_figure(title: str, path: Path) -> str:
    """The PNG inlined as base64, so the page is one file that can be mailed or attached."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return (
        f"<h2>{html.escape(title)}</h2>\n"
        f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}"></figure>'
    )


def inline_markdown(text: str) -> str:
    text = html.escape(text.strip())
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)
