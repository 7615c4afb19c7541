"""How long vLLM takes to start on CPU with its AOT compile cache on and off (``VLLM_USE_AOT_COMPILE``).

vLLM 0.32 on CPU writes an AOT-compiled model on every start but cannot load it back ("'function' object has no
attribute 'finalize_loading'" in its log), so every start compiled the model again. serve/launcher.py turns AOT
compile off on CPU, and vLLM's older compile cache then loads. This starts one judge through judgeloop's own
launcher, the two settings alternating (A B A B ...), after one cold start of each (each setting has its own fresh
vLLM and Inductor caches), and records the seconds to ready and what vLLM logged for compiling ("init engine ...
took"). With ``--items`` it also scores those items on every start and records whether the probabilities equal the
first start's.

    python -m benchmarks.vllm_startup [--judge helpfulness-pairwise] [--pairs 2] [--items FILE]

Writes benchmarks/results/vllm_startup.json (--out to put it elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

from data.jsonl import read_jsonl
from data.schema import Item
from serve.child import free_port
from serve.config import load_serve_config
from serve.service import start_judges

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"aot_on": "1", "aot_off": "0"}
INIT = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([0-9.]+) s")


def one_start(judge: str, setting: str, cache: Path, log_dir: Path, items: list[Item]) -> dict:
    os.environ["VLLM_USE_AOT_COMPILE"] = SETTINGS[setting]  # the launcher keeps a value that is set
    # each setting its own caches, vLLM's and Inductor's, so neither reuses what the other compiled
    os.environ["VLLM_CACHE_ROOT"] = str(cache / setting / "vllm")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache / setting / "inductor")
    cfg = load_serve_config(None, [f"--vllm.port={free_port()}", f"--log_dir={log_dir}"])
    before = set(log_dir.glob("vllm-*.log"))
    start = time.perf_counter()
    with start_judges(cfg, judges=[judge], candidates=[], progress=lambda *a, **k: None) as serving:
        ready = time.perf_counter() - start
        (service,) = serving.services.values()
        probs = [v.probs for v in service.score_stream(items, True, len(items))] if items else None
    (log,) = set(log_dir.glob("vllm-*.log")) - before
    text = log.read_text(errors="replace")
    init = INIT.search(text)
    return {
        "setting": setting,
        "ready_s": round(ready, 1),
        "engine_init_s": float(init.group(1)) if init else None,
        "cache_load_failed": "due to a load failure" in text,
        "probs": probs,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--judge", default="helpfulness-pairwise", help="a spec name (its base model) or judge directory")
    p.add_argument("--pairs", type=int, default=2, help="warm A B pairs after the two cold starts")
    p.add_argument("--items", help="a JSONL of items scored on every start (the first 8)")
    p.add_argument("--out", default=str(RESULTS / "vllm_startup.json"))
    args = p.parse_args(argv)
    items = list(read_jsonl(args.items, Item))[:8] if args.items else []
    starts = []
    with tempfile.TemporaryDirectory() as tmp:  # cold: nothing compiled before this run
        log_dir = Path(tmp) / "logs"
        log_dir.mkdir()
        order = ["aot_on", "aot_off"] * (1 + args.pairs)
        for i, setting in enumerate(order):
            x = one_start(args.judge, setting, Path(tmp), log_dir, items)
            x["cold"] = i < 2
            starts.append(x)
            print(f"start {i + 1}/{len(order)} {setting}{' (cold)' if x['cold'] else ''}: ready in {x['ready_s']} s")
    first = starts[0]["probs"]
    warm = {s: [x["ready_s"] for x in starts if x["setting"] == s and not x["cold"]] for s in SETTINGS}
    result = {
        "judge": args.judge,
        "vllm_cpu_default": "aot_off (serve/launcher.py)",
        "starts": [{k: v for k, v in x.items() if k != "probs"} for x in starts],
        "warm_median_ready_s": {s: statistics.median(v) for s, v in warm.items()},
        "warm_ready_ratio_on_over_off": round(
            statistics.median(warm["aot_on"]) / statistics.median(warm["aot_off"]), 2
        ),
        "same_probs_on_every_start": None if first is None else all(x["probs"] == first for x in starts),
        "n_items_scored": len(items),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
