"""A store on a read-only mount: `ls`, `report` and `ui` read it; `run`, `grid` and `tune` refuse it
in one paragraph, exit 2, before anything trains.

The mount is real: each command runs in a mount namespace (``unshare``) where the store's folder is
bind-mounted read-only, as a copy on a read-only volume would be. Root passes a permission check, so
``chmod`` could not show this; the kernel refuses writes to a read-only mount for root too.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cli import main
from tests.test_bad_inputs import TINY

REPO = Path(__file__).resolve().parents[1]
GRID = "name: tiny\nbase:\n" + "".join(f"  {line}\n" for line in TINY.splitlines()) + "seeds: [0, 1]\n"
BEGIN, END = "@@litbench-begin ", "@@litbench-exit "


def unshare_prefix() -> list[str] | None:
    """The unshare command that lets this user bind-mount a folder read-only, or None."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "-m"], ["unshare", "-rm"]):  # root; else a user namespace
        probe = subprocess.run([*prefix, "true"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return None


UNSHARE = unshare_prefix()
pytestmark = pytest.mark.skipif(
    UNSHARE is None, reason="no mount namespace here (unshare -m / -rm refused), so no read-only mount"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_read_only(store: Path, cwd: Path, commands: list[str], port: int) -> dict[str, tuple[int, str]]:
    """Each litbench command (and a `litbench ui` probed over HTTP) with ``store`` mounted read-only;
    returns each command's exit status and output."""
    cli = f"{shlex.quote(sys.executable)} -m cli"
    folder = shlex.quote(str(store))
    lines = [f"mount --bind -o ro {folder} {folder} || exit 99", f"cd {shlex.quote(str(cwd))}"]
    for command in commands:
        lines += [f"echo '{BEGIN}{command}'", f"{cli} {command} 2>&1", f'echo "{END}$?"']
    health = f"http://127.0.0.1:{port}/health"
    lines += [
        f"echo '{BEGIN}ui'",
        f"{cli} ui --port {port} --tracking-uri sqlite:///{folder}/mlflow.db > ui.log 2>&1 &",
        f"for i in $(seq 120); do curl -sf {health} >/dev/null && break; sleep 0.5; done",
        f"curl -s -X POST -H 'Content-Type: application/json' -d '{{\"max_results\": 10}}' "
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search",
        "echo",
        "kill -TERM $!; wait $!",
        f'echo "{END}$?"',
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [*UNSHARE, "bash", "-c", "\n".join(lines)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode != 99, f"the read-only bind mount failed: {done.stderr}"
    results: dict[str, tuple[int, str]] = {}
    for block in done.stdout.split(BEGIN)[1:]:
        name, _, rest = block.partition("\n")
        text, _, code = rest.rpartition(END)
        results[name] = (int(code.split()[0]), text)
    return results


def test_a_read_only_store_is_read_by_ls_report_and_ui_and_refused_by_writers(tmp_path, capsys) -> None:
    store = tmp_path / "store"
    uri = f"sqlite:///{store / 'mlflow.db'}"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(TINY)
    (tmp_path / "tiny_grid.yaml").write_text(GRID)
    assert main(["run", str(spec), "--experiment", "tiny", "--tracking-uri", uri]) == 0
    capsys.readouterr()
    before = fingerprint(store)
    cwd = tmp_path / "work"
    cwd.mkdir()
    study = REPO / "experiments" / "studies" / "digits_lr.yaml"
    readers = [f"ls --tracking-uri {uri}", f"ls tiny --tracking-uri {uri}"]
    readers.append(f"report tiny --out {tmp_path / 'report'} --tracking-uri {uri}")
    writers = [
        f"run {spec} --tracking-uri {uri}",
        f"grid {tmp_path / 'tiny_grid.yaml'} --tracking-uri {uri}",
        f"tune {study} --trials 1 --tracking-uri {uri}",
    ]
    dry_run = f"grid {tmp_path / 'tiny_grid.yaml'} --dry-run --tracking-uri {uri}"
    results = run_read_only(store, cwd, [*readers, dry_run, *writers], free_port())

    for command in [*readers, dry_run]:
        code, text = results[command]
        assert code == 0, f"{command}: {text}"
        assert "Traceback" not in text
    assert "tiny" in results[readers[0]][1]
    assert "mlp-adam-lr0.01-s0" in results[readers[1]][1] and "FINISHED" in results[readers[1]][1]
    assert (tmp_path / "report" / "summary.md").exists()
    assert "missing" in results[dry_run][1]  # seed 1 is not run yet, and the plan says so
    for command in writers:
        code, text = results[command]
        assert code == 2, f"{command}: {text}"
        assert "Traceback" not in text
        assert "read-only" in text and str(store) in text and "--tracking-uri" in text, text
    code, text = results["ui"]
    assert '"name": "tiny"' in text, text  # the server answered from the read-only store
    assert code == 0, (tmp_path / "work" / "ui.log").read_text()
    assert fingerprint(store) == before
    assert sorted(p.name for p in cwd.iterdir()) == ["ui.log"]  # no ./mlruns, no optuna.db
