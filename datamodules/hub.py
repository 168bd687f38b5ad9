"""Hugging Face hub look-ups that fail fast when the hub cannot be reached.

Offline, ``datasets.load_dataset`` retries each request five times with back-off, printing a line per
retry: 30 s and a dozen lines of noise before litbench can say which files to put where. One TCP dial
to the hub (a few seconds at most) tells first; when it fails, the hub libraries are switched to
offline mode, which reads their cache only and fails at once for what is not there.
"""

from __future__ import annotations

import os
import socket
import sys
from urllib.parse import urlsplit

DIAL_TIMEOUT_S = 3.0
_OFFLINE_VALUES = ("1", "on", "yes", "true")


def ensure_reachable_or_offline() -> bool:
    """True when the hub answers; else switches the hub libraries to their cache only, and False."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in _OFFLINE_VALUES:
        return False
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        with socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=DIAL_TIMEOUT_S):
            return True
    except OSError:
        pass
    os.environ["HF_HUB_OFFLINE"] = "1"  # read when the hub libraries are imported
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    # already imported in this process: their module-level switches, read at each request
    hub_constants = sys.modules.get("huggingface_hub.constants")
    if hub_constants is not None:
        hub_constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True
    return False
