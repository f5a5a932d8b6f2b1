"""Benchmark: what the serving metrics and the access log cost per request, off vs on, side by side in one run.

Two `stages serve` processes on the same bundle, started like the serving image: one with everything off
(`--no-access-log`, no metrics server), one with MLServer's metrics server on (`--metrics-port`) and the access log
on (a line per request, to a file). Requests alternate between them in small rounds (v1, one body, concurrency 1),
so drift on the shared cores lands on both sides alike. Loopback only.
"""

import json
import time
from pathlib import Path

import requests

from bench.common import Model, Section, median, percentile, sample_bodies, verdict
from bench.serving import V1_PATH

TARGET_MS = 0.5


def _start(model: Model, port: int, extra: list[str], log_path: Path):
    import subprocess

    from localpach.serve import server_command

    log = open(log_path, "wb")
    process = subprocess.Popen(
        server_command(model.path, "127.0.0.1", port) + extra,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, log


def run(model: Model, quick: bool, scratch: Path) -> Section:
    from localpach.serve import free_port, stop_server, wait_ready

    rounds, per_round = (10, 10) if quick else (30, 20)
    body = json.dumps({"data": {"ndarray": [[sample_bodies(1)[0]]]}}).encode()
    ports = {"off": free_port(), "on": free_port()}
    metrics_port = free_port()
    servers = {
        "off": _start(model, ports["off"], ["--no-access-log"], scratch / "server-off.log"),
        "on": _start(model, ports["on"], ["--metrics-port", str(metrics_port)], scratch / "server-on.log"),
    }
    latencies: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for name, (process, _) in servers.items():
            wait_ready(f"http://127.0.0.1:{ports[name]}", process, timeout=180)
        sessions = {name: requests.Session() for name in servers}
        for name in servers:  # warm up: connection, route, decoder
            for _ in range(20):
                sessions[name].post(
                    f"http://127.0.0.1:{ports[name]}{V1_PATH}",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=60,
                )
        for round_number in range(rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for name in order:
                url = f"http://127.0.0.1:{ports[name]}{V1_PATH}"
                for _ in range(per_round):
                    started = time.perf_counter()
                    response = sessions[name].post(
                        url, data=body, headers={"Content-Type": "application/json"}, timeout=60
                    )
                    elapsed = time.perf_counter() - started
                    if response.status_code == 200:
                        latencies[name].append(elapsed)
        metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        for process, log in servers.values():
            stop_server(process)
            log.close()
    counted = next((line for line in metrics.splitlines() if line.startswith("model_infer_request_success_total")), "")
    access_lines = sum(
        1
        for line in (scratch / "server-on.log").read_text(errors="replace").splitlines()
        if "issue_titles.access" in line and V1_PATH in line
    )
    section = Section(
        "Serving observability cost (v1, 1 body, concurrency 1; metrics + access log off vs on)",
        ["server", "requests", "p50 ms", "p90 ms", "p99 ms"],
    )
    for name, label in (("off", "metrics off, access log off"), ("on", "metrics on, access log on")):
        values = latencies[name]
        section.rows.append(
            [
                label,
                len(values),
                f"{median(values) * 1000:.2f}",
                f"{percentile(values, 0.9) * 1000:.2f}",
                f"{percentile(values, 0.99) * 1000:.2f}",
            ]
        )
    delta_ms = (median(latencies["on"]) - median(latencies["off"])) * 1000
    section.targets.append(
        (
            f"metrics + access log cost <= {TARGET_MS} ms p50 at concurrency 1",
            f"{delta_ms:+.2f} ms",
            verdict(delta_ms <= TARGET_MS),
        )
    )
    section.notes.append(
        f"Model: {model.origin}. {rounds} rounds of {per_round} requests per server, alternating which goes first; "
        f"the 'on' server counted `{counted.strip() or 'no model_infer_request_success_total line'}` and wrote "
        f"{access_lines} access-log lines for the v1 route. Both servers and the client share the same cores."
    )
    return section
