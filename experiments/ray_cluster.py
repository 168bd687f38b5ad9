"""The Ray cluster a command hands its cells and trials to: connect, look at its nodes, check them.

``connect(address)`` joins a running cluster (``ray start --head`` on one machine, ``ray start
--address`` on the others, or KubeRay), or starts a local one when no address is given. Everything a
user can get wrong is one ``InputError`` before anything trains: Ray not installed, an address nothing
answers on, a cell that needs more CPUs or GPUs than any node has, a tracking store the other nodes
cannot reach, a data directory a node cannot read.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import InputError

ADDRESS_ENV = "RAY_ADDRESS"  # Ray's own variable: `ray start --head` prints it
AUTH_MODE_ENV = "RAY_AUTH_MODE"  # Ray's: token, or disabled
CONNECT_TIMEOUT_S = 5.0
NODE_CHECK_TIMEOUT_S = 900.0  # a node's data check may download its data set first
LOCAL_STORES = ("sqlite:", "file:")


class RayClusterError(InputError):
    """Ray is missing, unreachable, or its cluster cannot run what was asked; nothing was run."""


@dataclass(frozen=True)
class Node:
    node_id: str
    ip: str
    hostname: str
    cpus: float
    gpus: float

    @property
    def label(self) -> str:
        """A short name for progress lines: host, and the node id's head where hosts repeat."""
        return f"{self.hostname}/{self.node_id[:6]}"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayClusterError(
            "--executor ray needs Ray, which is not installed in this environment. Install it with "
            "`pip install 'litbench[ray]'` (on every node of the cluster), or drop --executor ray to "
            "use the local process pool."
        ) from None
    return ray


def resolve_address(address: str | None) -> str | None:
    """``--ray-address``, else ``$RAY_ADDRESS``, else None (a local cluster of this machine's cores)."""
    return address or os.environ.get(ADDRESS_ENV) or None


def connect(address: str | None) -> Any:
    """The ``ray`` module, connected to the cluster at ``address`` (``host:port`` of its head, or
    ``auto`` for the cluster this machine belongs to), or to a new local one when ``address`` is None."""
    _offer_token()  # before Ray is imported: it reads the mode once
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local"):
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,  # each cell's output goes to its run's log, not the grid command's
            configure_logging=False,
            runtime_env={"env_vars": {"PYTHONUNBUFFERED": "1"}},
        )
    except Exception as err:  # Ray raises plain Exception for a head that does not start or answer
        where = f"at {address}" if address else "on this machine"
        raise RayClusterError(
            f"could not connect to a Ray cluster {where}: {' '.join(str(err).split())}. Start one with "
            "`ray start --head` and pass the address it prints as --ray-address (or $RAY_ADDRESS). If "
            "Ray's log above says the authentication token is missing or incorrect, copy the head "
            "node's ~/.ray/auth_token to this machine (or set $RAY_AUTH_TOKEN to its contents)."
        ) from None
    return ray


def _offer_token() -> None:
    """Send this machine's Ray token where one exists. `ray start` turns token authentication on
    (Ray 2.60 does), but a driver sends the token only in token mode, so without this a plain `ray
    start --head` refuses the grid command. A cluster without authentication accepts a driver that
    sends one."""
    if os.environ.get(AUTH_MODE_ENV):
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token_file):
        os.environ[AUTH_MODE_ENV] = "token"


def _check_reachable(address: str) -> None:
    """A plain TCP connect with a short timeout: Ray's own client retries for a minute or more."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise RayClusterError(
            f"--ray-address {address!r} is not host:port. Give the head node's address as `ray start "
            "--head` prints it (e.g. 10.0.0.5:6379), or `auto` for the cluster this machine is part of."
        )
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as err:
        raise RayClusterError(
            f"no Ray head node answers at {address} ({err}). Check the address and that `ray start "
            f"--head --port {port}` runs there and that this machine can reach it (firewall, VPN); "
            "or drop --ray-address to run a local Ray cluster on this machine."
        ) from None


def alive_nodes(ray: Any) -> list[Node]:
    nodes = []
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        resources = node.get("Resources", {})
        nodes.append(
            Node(
                node_id=node["NodeID"],
                ip=node.get("NodeManagerAddress", ""),
                hostname=node.get("NodeManagerHostname", "") or node.get("NodeManagerAddress", ""),
                cpus=float(resources.get("CPU", 0)),
                gpus=float(resources.get("GPU", 0)),
            )
        )
    return nodes


def task_resources(devices: int, on_gpu: bool, cpus_per_run: int, runs_per_gpu: int) -> dict[str, float]:
    """The Ray resources of one cell or trial: CPUs for each of its processes, and its GPUs (a 1/K
    share of one with ``runs_per_gpu`` K, all k for a run over k devices) when it runs on GPUs."""
    gpus = (devices if devices > 1 else 1 / runs_per_gpu) if on_gpu else 0
    return {"num_cpus": cpus_per_run * devices, "num_gpus": gpus}


def this_node(ray: Any) -> tuple[str, str]:
    """In a Ray worker: its node's id and the short name progress lines and tags use."""
    import socket

    node_id = ray.get_runtime_context().get_node_id()
    return node_id, f"{socket.gethostname()}/{node_id[:6]}"


def node_alive(node_id: str) -> bool | None:
    """Whether Ray node ``node_id`` is alive, or None where this process is not connected to Ray."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    try:
        return any(n["NodeID"] == node_id and n.get("Alive") for n in ray.nodes())
    except Exception:  # the cluster is gone itself: say nothing rather than guess
        return None


def check_fits(needs: Iterable[tuple[str, float, float]], nodes: Sequence[Node], address: str) -> None:
    """Every ``(what, cpus, gpus)`` fits on one alive node; else one error naming the largest node."""
    for what, cpus, gpus in needs:
        if any(n.cpus >= cpus and n.gpus >= gpus for n in nodes):
            continue
        largest = ", ".join(f"{n.label}: {n.cpus:g} CPUs, {n.gpus:g} GPUs" for n in nodes) or "no nodes"
        raise RayClusterError(
            f"{what} asks for {cpus:g} CPUs and {gpus:g} GPUs on one node, but no node of the Ray cluster "
            f"at {address} has that many ({largest}). Add a node that has them (`ray start --address "
            "... --num-gpus N`), lower the cell's trainer.devices or --cpus-per-run, or run it elsewhere."
        )


def check_store_reachable(
    tracking_uri: str, nodes: Sequence[Node], ray: Any, what: str = "the tracking store"
) -> None:
    """A store on this machine's disk (SQLite, a folder, a journal file) cannot be written from other
    hosts; ``what`` names it in the error (the tracking store, the study's storage)."""
    if not tracking_uri.startswith(LOCAL_STORES) and "://" in tracking_uri:
        return
    here = ray.util.get_node_ip_address()
    others = sorted({n.ip for n in nodes if n.ip != here})
    if others:
        raise RayClusterError(
            f"{what} {tracking_uri} is a file on this machine, but the Ray cluster has nodes on other "
            f"hosts ({', '.join(others)}) that cannot write to it. Use a server every node reaches: "
            "`mlflow server --backend-store-uri postgresql://... --host 0.0.0.0` as --tracking-uri, and "
            "a postgresql://... Optuna storage as --storage."
        )


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:400]}"


def check_data_on_nodes(ray: Any, nodes: Sequence[Node], data_specs: list[str], data_dir: str) -> dict:
    """Start, on every alive node of another host, a task (no CPU held) that prepares each data set;
    the nodes on this host share its disk, so this process checks for them, once. By node label."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from core.plugins import plugin_modules

    here = ray.util.get_node_ip_address()
    local = [node for node in nodes if node.ip == here]
    checks: dict = {}
    if local:
        problem = prepare_data_here(data_specs, data_dir, plugin_modules())
        checks |= {node.label: problem for node in local}
    check = ray.remote(num_cpus=0, max_retries=0)(prepare_data_here)
    for node in nodes:
        if node.ip != here:
            strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=False)
            checks[node.label] = check.options(scheduling_strategy=strategy).remote(
                data_specs, data_dir, plugin_modules()
            )
    return checks


def wait_data_checks(ray: Any, checks: dict, timeout: float = NODE_CHECK_TIMEOUT_S) -> list[str]:
    """The problems the node checks found (empty: every node has the data), one per node."""
    problems = []
    refs = [ref for ref in checks.values() if isinstance(ref, ray.ObjectRef)]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout) if refs else ([], [])
    for label, ref in checks.items():
        if not isinstance(ref, ray.ObjectRef):  # checked here, for a node of this host
            if ref:
                problems.append(f"node {label}: {ref}")
            continue
        if ref not in ready:
            problems.append(f"node {label} did not finish its data check in {timeout:.0f} s")
            ray.cancel(ref, force=True)
            continue
        try:
            problem = ray.get(ref)
        except ray.exceptions.RayError as err:
            problem = one_line(err)
        if problem:
            problems.append(f"node {label}: {problem}")
    return problems


def prepare_data_here(data_specs: list[str], data_dir: str, plugins: list[str]) -> str | None:
    """On one node: each data set in place (downloaded where it can be); the problem, or None."""
    import json

    from core.plugins import load_plugins

    load_plugins(plugins)
    from datamodules import create_datamodule
    from experiments.specs import DataSpec

    try:
        for text in data_specs:
            data = DataSpec.model_validate(json.loads(text))
            create_datamodule(data.name, data_dir=data_dir, **data.typed_options()).prepare_data()
    except Exception as err:
        return " ".join(str(err).split())
    return None


def warm_workers(ray: Any, cpus_per_run: int) -> list:
    """Start, on every node, as many tasks as cells fit there, each importing what a cell needs (what
    the local fork server imports once). Ray hands the cells those same worker processes, so the
    imports overlap with the command's own start instead of delaying each worker's first cell."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    warm = ray.remote(import_cell_modules)
    refs = []
    for node in alive_nodes(ray):
        strategy = NodeAffinitySchedulingStrategy(node.node_id, soft=True)
        for _ in range(max(1, int(node.cpus // cpus_per_run))):
            refs.append(warm.options(num_cpus=cpus_per_run, scheduling_strategy=strategy).remote())
    return refs


def import_cell_modules() -> None:
    """In a Ray worker: the modules a cell runs with (``experiments.processes.PRELOAD``)."""
    import importlib

    from experiments.processes import PRELOAD

    for module in PRELOAD:
        importlib.import_module(module)
