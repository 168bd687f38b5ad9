"""The one process layer for grid cells and tuning trials: start, log files, tail, liveness, exit reason.

Every cell, every tuning worker and every DDP trial runs in a process of its own, so a failure (an
exception, an out-of-memory kill, a segfault) ends only that process. Most are forked from a fork
server that imported torch, Lightning and MLflow once (``start_forked``); a DDP run is a command line
of its own (``start_command``), because Lightning's launcher starts the other ranks by running that
command line again. Either way the child writes stdout and stderr to a log file, gets its threads and
devices through the environment, turns SIGTERM into KeyboardInterrupt (its run ends KILLED), and
imports the plugin modules of the parent (``core.plugins``) before it builds anything.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.context
import multiprocessing.process
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.plugins import ENV as PLUGINS_ENV
from core.plugins import load_plugins, plugin_modules

# what the fork server imports once (experiments.warm: the rest of a cell's imports, and a figure)
PRELOAD = ["torch", "lightning", "mlflow", "experiments.run.runner", "experiments.warm"]
THREADS_ENV = "LITBENCH_NUM_THREADS"

_FORK_CONTEXT: multiprocessing.context.BaseContext | None = None


def fork_context() -> multiprocessing.context.BaseContext:
    """A fork server that imports torch, Lightning and MLflow once; each process forks from it.

    Forking from a warm server spares every process the seconds those imports take on a small machine.
    CUDA is never initialized in the server, so each child still chooses its GPUs through
    ``CUDA_VISIBLE_DEVICES``.
    """
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        _FORK_CONTEXT = multiprocessing.get_context("forkserver")
        _FORK_CONTEXT.set_forkserver_preload([*PRELOAD, "experiments.quick_exit"])
    return _FORK_CONTEXT


def start_fork_server() -> None:
    """Start the fork server now, so its imports overlap with the command's own start-up."""
    import multiprocessing.forkserver

    fork_context()
    multiprocessing.forkserver.ensure_running()


class Job:
    """A child process, forked (``multiprocessing``) or a command line (``subprocess``), and its log."""

    def __init__(
        self, process: subprocess.Popen | multiprocessing.process.BaseProcess, log_path: Path
    ) -> None:
        self.process = process
        self.log_path = log_path
        self.oom_kills_at_start = oom_kills()  # to tell an out-of-memory kill from another SIGKILL

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def returncode(self) -> int | None:
        """The exit status once the process ended (negative: killed by that signal), else None."""
        if isinstance(self.process, subprocess.Popen):
            return self.process.poll()
        return self.process.exitcode

    def terminate(self) -> None:
        if self.returncode() is None:
            self.process.terminate()

    def wait(self, timeout: float | None = None) -> int | None:
        if isinstance(self.process, subprocess.Popen):
            with contextlib.suppress(subprocess.TimeoutExpired):  # still running: say so, None
                self.process.wait(timeout=timeout)
        else:
            self.process.join(timeout=timeout)
        return self.returncode()

    def exit_reason(self) -> str:
        """Why the process ended without reporting: the signal or status, and its log's last lines."""
        return exit_reason(self.returncode(), self.log_path, self.oom_kills_at_start)


def bootstrap(
    env: dict[str, str] | None = None, log_path: str | None = None, plugins: Sequence[str] | None = None
) -> None:
    """What every child does first: its log, its environment and threads, SIGTERM as Ctrl-C, quiet
    libraries and the parent's plugin modules."""
    if log_path is not None:
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
    if env:
        os.environ.update(env)  # before anything touches CUDA, so CUDA_VISIBLE_DEVICES takes effect
    threads = os.environ.get(THREADS_ENV)
    # the parent stops children with SIGTERM; as KeyboardInterrupt their run is recorded as KILLED
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    prepare_process(int(threads) if threads else None, plugins)


def prepare_process(threads: int | None, plugins: Sequence[str] | None) -> None:
    """What a process does before each cell it runs (a forked child once, a Ray worker per task): its
    torch threads, quiet libraries and the plugin modules (None: those $LITBENCH_PLUGINS names)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from experiments.environment import quiet_libraries

    quiet_libraries()
    load_plugins(None if plugins is None else list(plugins))


def _forked(target: Callable[..., Any], args: tuple, env: dict[str, str], log_path: str, plugins: list[str]):
    bootstrap(env, log_path, plugins)
    target(*args)


def start_forked(target: Callable[..., Any], args: tuple, env: dict[str, str], log_path: Path) -> Job:
    """Run ``target(*args)`` (a module-level function) in a process forked from the fork server."""
    process = fork_context().Process(
        target=_forked, args=(target, args, env, str(log_path), plugin_modules()), daemon=False
    )
    process.start()
    return Job(process, log_path)


def start_command(module: str, arguments: Sequence[str], env: dict[str, str], log_path: Path) -> Job:
    """Run ``python -m module arguments...`` with the parent's environment plus ``env``; its output
    goes to ``log_path``. The module calls ``bootstrap()`` itself."""
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *arguments],
            env={**base_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Job(popen, log_path)


def base_env() -> dict[str, str]:
    """The parent's environment, with the paths and plugin modules a child command line needs."""
    env = dict(os.environ)
    roots = [str(Path(__file__).resolve().parents[1])]  # this package, wherever the command found it
    modules = plugin_modules()
    for name in modules:
        module = sys.modules.get(name)
        file = getattr(module, "__file__", None)
        if file:  # the folder the plugin's top-level package (or module) is imported from
            roots.append(str(Path(file).resolve().parents[name.count(".")]))
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in (*roots, env.get("PYTHONPATH", "")) if p))
    env["PYTHONUNBUFFERED"] = "1"
    if modules:
        env[PLUGINS_ENV] = ",".join(modules)
    return env


def tail(path: Path, lines: int = 3) -> str:
    """The last ``lines`` non-empty lines of a log, joined by `` | ``."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def exit_reason(code: int | None, log_path: Path | None = None, oom_kills_at_start: int | None = None) -> str:
    """One line: how the process ended, and its log's last lines. A SIGKILL is called an
    out-of-memory kill only where the cgroup's OOM count rose while it ran."""
    if code is None:
        reason = "worker still running"
    elif code < 0:
        reason = f"worker killed by signal {-code} ({signal.Signals(-code).name}) from outside the cell"
        if code == -signal.SIGKILL:
            now = oom_kills()
            if oom_kills_at_start is not None and now is not None and now > oom_kills_at_start:
                reason = (
                    "worker killed by the kernel's out-of-memory killer (the cgroup's oom_kill count went "
                    f"from {oom_kills_at_start} to {now}); give the cell less to hold (batch size, model) "
                    "or the machine more memory"
                )
            elif now is None:
                reason += " (a kill, a preemption or the OOM killer: this machine keeps no OOM count to tell)"
            else:
                reason += " (not out of memory: the cgroup counted no OOM kill)"
    else:
        reason = f"worker exited {code}"
    last = tail(log_path) if log_path is not None else ""
    return f"{reason}; last output: {last}" if last else reason


def oom_kills() -> int | None:
    """How many processes the kernel's OOM killer has killed in this process's cgroup (cgroup v2
    ``memory.events``), or None where the machine exposes no such count."""
    try:
        line = Path("/proc/self/cgroup").read_text().splitlines()[0]
        folder = Path("/sys/fs/cgroup") / line.split("::", 1)[1].lstrip("/")
        for events in (folder / "memory.events", Path("/sys/fs/cgroup/memory.events")):
            if events.exists():
                for row in events.read_text().splitlines():
                    key, _, value = row.partition(" ")
                    if key == "oom_kill":
                        return int(value)
    except (OSError, IndexError, ValueError):
        return None
    return None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host is alive (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
