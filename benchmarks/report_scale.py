"""How long `litbench report` takes on a big grid: 2,000 tracked runs in a fresh SQLite store.

    .venv/bin/python benchmarks/report_scale.py [--runs 2000] [--target-s 20]

The store is filled through MLflow's own API (a synthetic grid, 5 models x 4 optimizers x 20 learning
rates x 5 seeds, tagged as `litbench grid` tags runs, with a learning curve each). Then, each as a
fresh process the way a user runs it:

- baseline: `mlflow.search_runs` of the experiment into pandas, the least any report must do;
- report:   `litbench report` (tables in four formats, CSVs, plots, summary).

Prints both wall times, their ratio, and whether the report met the target.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reports import synthetic  # noqa: E402

SEEDS = 5
PAIRS = len(synthetic.MODELS) * len(synthetic.OPTIMIZERS)


def timed(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2000, help="tracked runs in the store (default: 2000)")
    parser.add_argument("--target-s", type=float, default=20.0, help="the report's time budget (default: 20)")
    args = parser.parse_args()
    configs_per_pair = max(1, args.runs // (PAIRS * SEEDS))

    with tempfile.TemporaryDirectory(prefix="litbench-report-scale-") as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
        grid = list(synthetic.cells(configs_per_pair, SEEDS))
        start = time.perf_counter()
        synthetic.log_grid(uri, "scale", grid, epochs=10, failed=len(grid) // 100)
        print(f"filled {uri} with {len(grid)} runs in {time.perf_counter() - start:.1f} s")

        search = (
            f"import mlflow; mlflow.set_tracking_uri({uri!r}); "
            "e = mlflow.get_experiment_by_name('scale'); "
            "print(len(mlflow.search_runs([e.experiment_id], max_results=100000)))"
        )
        baseline = timed([sys.executable, "-c", search], root)
        report = timed(
            [
                sys.executable,
                "-m",
                "cli",
                "report",
                "scale",
                "--tracking-uri",
                uri,
                "--out",
                "out",
            ],
            root,
        )
        files = sorted(p.name for p in (root / "out").iterdir())

    print(f"baseline (mlflow.search_runs into pandas, fresh process): {baseline:.2f} s")
    print(f"litbench report ({len(files)} files, fresh process):        {report:.2f} s")
    print(f"ratio report / baseline: {report / baseline:.2f}x")
    verdict = "meets" if report < args.target_s else "MISSES"
    print(f"{verdict} the target of {args.target_s:.0f} s for {len(grid)} runs")
    return 0 if report < args.target_s else 1


if __name__ == "__main__":
    sys.exit(main())
