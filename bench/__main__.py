"""`python -m bench [names…]` (or `just bench`): run benchmarks, print ratios, save results."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import tempfile
from pathlib import Path

from bench.harness import Result, print_table, save
from shared.runtime.nats_server import NatsServer, free_port

# Module name → what it measures. Each module has `async def run(nats_url) -> list[Result]`.
SUITES = {
    "event_store": "event store append, load and replay",
    "config": "forecast scaling and message submission over HTTP",
    "audit": "audit trail rebuild",
    "scheduler": "tick lag of 10,000 sites × 2 channels ticking every minute",
    "sms": "SMS dispatch outbox → gateway → simulator beside a raw loop",
    "email": "outbox → email gateway → aiosmtpd, beside plain aiosmtplib",
    "consume": "FastStream pull subscriber and PullLoop, each beside raw nats-py",
    "webhooks": "SMS receipts and replies into the gateway's webhooks beside a raw handler",
    "scaleout": "two SMS / email gateway replicas on PostgreSQL against one (50 ms answers)",
}


async def main(selected: list[str], save_results: bool = True) -> None:
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in selected:
            server = NatsServer(port=free_port(), store_dir=Path(tmp) / name)
            server.start()
            try:
                module = importlib.import_module(f"bench.{name}")
                print(f"== {name}: {SUITES[name]}", flush=True)
                results += await module.run(server.url)
            finally:
                server.stop()
    print_table(results)
    if not save_results:
        for result in results:
            print(result.name, json.dumps(result.entry(), ensure_ascii=False))
        print("--no-save: bench/results.json left as it was")
        return
    save(results)
    print(f"results written to bench/results.json ({len(results)} entries)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("suites", nargs="*", choices=[*SUITES, []], help="default: all")
    parser.add_argument(
        "--no-save",
        action="store_true",
        help="print only; keep bench/results.json (a run on a loaded machine, a smoke run)",
    )
    args = parser.parse_args()
    asyncio.run(main(args.suites or list(SUITES), save_results=not args.no_save))
