"""`litbench dashboard` in a real browser: optuna-dashboard's study page and trials list show the study's
trials and its best one. Screenshots go to $LITBENCH_SCREENSHOTS (default: the test's tmp)."""

from __future__ import annotations

import socket
from pathlib import Path

import optuna

from experiments.dashboard import study_page
from tests.browser import needs_browser, screenshot_dir, wait_for
from tests.test_dashboard import running_dashboard

pytestmark = [needs_browser]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_dashboard_shows_the_study_and_its_trials(browser, tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="browser_study", storage=storage, direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 1e-4, 1e-1, log=True) * 10, n_trials=3)
    best = study.best_trial
    shots = screenshot_dir(tmp_path)

    with running_dashboard("browser_study", storage, _free_port()) as (_, url):
        page = study_page(url, optuna.storages.get_storage(storage).get_study_id_from_name("browser_study"))
        browser.get(page)
        text = wait_for(browser, lambda t: f"Best Trial (number={best.number})" in t, "the best trial")
        assert "browser_study" in text and f"{best.value}" in text
        browser.save_screenshot(str(shots / "dashboard_study.png"))

        browser.get(f"{page}/trials")
        text = wait_for(browser, lambda t: "3 Trials" in t, "the trials list")
        for trial in study.trials:
            assert f"Trial {trial.number}" in text
        assert text.count("Complete") >= 3
        browser.save_screenshot(str(shots / "dashboard_trials.png"))
