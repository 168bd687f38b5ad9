"""What the encoded-text cache saves: a GLUE task's setup with an empty cache, then again with it.

    LITBENCH_DATA_DIR=../shared/data .venv/bin/python benchmarks/text_cache.py [--task sst2] [--kind word]

Each setup runs in a fresh process, as a second `litbench run` would: the first fits the tokenizer
and encodes every split (a miss), the second reads the cache file (a hit). Prints both wall times of
`GlueDataModule.setup()`, their ratio, and checks that the two gave identical ids.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import hashlib, json, sys, time
from datamodules import create_datamodule
dm = create_datamodule(
    "glue", data_dir=sys.argv[1], task=sys.argv[2], tokenizer={"kind": sys.argv[3]}, download=False
)
start = time.perf_counter()
dm.setup()
seconds = time.perf_counter() - start
digest = hashlib.sha256(b"".join(d.a.flat.numpy().tobytes() for d in dm.datasets.values())).hexdigest()
print(json.dumps({"seconds": seconds, "hit": dm.corpus.cache_hit, "ids": digest, "sizes": dm.sizes()}))
"""


def setup_once(data_dir: str, task: str, kind: str, cache: str) -> dict:
    env = {**os.environ, "LITBENCH_CACHE_DIR": cache}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, data_dir, task, kind],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--kind", default="word", choices=["word", "bpe"])
    parser.add_argument("--data-dir", default=os.environ.get("LITBENCH_DATA_DIR", "data"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="litbench-cache-bench-") as cache:
        miss = setup_once(args.data_dir, args.task, args.kind, cache)
        hit = setup_once(args.data_dir, args.task, args.kind, cache)
    assert (miss["hit"], hit["hit"]) == (False, True), (miss, hit)
    assert miss["ids"] == hit["ids"], "the cache gave different ids"
    print(f"task {args.task}, {args.kind} tokenizer, splits {miss['sizes']}")
    print(f"first setup (fit + encode, cache miss): {miss['seconds']:.2f} s")
    print(f"second setup (cache hit):               {hit['seconds']:.2f} s")
    print(f"ratio miss/hit: {miss['seconds'] / hit['seconds']:.1f}x; identical ids: yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
