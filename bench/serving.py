"""Benchmark 2: the real `stages serve` on 127.0.0.1 under a bounded load, next to the in-process predict() floor.

Load is closed-loop: `concurrency` client threads each send requests back to back until `requests_total` were sent
or `time_cap_s` passed, so every scenario stops by itself. Loopback only.
"""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.common import Model, Section, median, percentile, sample_bodies, verdict
from issue_titles.contract import MODEL_NAME

V1_PATH = "/api/v1.0/predictions"  # the Seldon protocol's route (and the tutorial's)
V2_PATH = f"/v2/models/{MODEL_NAME}/infer"


@dataclass(frozen=True)
class Scenario:
    protocol: str  # "v1" or "v2"
    bodies_per_request: int
    concurrency: int


def payload(protocol: str, bodies: list[str]) -> bytes:
    if protocol == "v1":
        return json.dumps({"data": {"ndarray": [[body] for body in bodies]}}).encode()
    return json.dumps(
        {"inputs": [{"name": "bodies", "shape": [len(bodies)], "datatype": "BYTES", "data": bodies}]}
    ).encode()


def load(url: str, body: bytes, concurrency: int, requests_total: int, time_cap_s: float) -> dict:
    """Closed-loop load; returns latencies of successful requests, errors, and throughput over the wall time."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.perf_counter() + time_cap_s

    def worker() -> None:
        session = requests.Session()
        while True:
            with lock:
                if sent[0] >= requests_total or time.perf_counter() > deadline:
                    return
                sent[0] += 1
            started = time.perf_counter()
            try:
                response = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
                elapsed = time.perf_counter() - started
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                    else:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
            except requests.RequestException as error:
                with lock:
                    errors.append(str(error)[:200])

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_cap_s + 120)
    wall = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def in_process_floor(model: Model, bodies: list[str], repeats: int) -> dict[int, float]:
    """Median seconds of `TitlePredictor.predict` for 1 and 32 bodies, called directly (no HTTP), loaded and warmed up
    the way the server does (small batches XLA-compiled), so the difference is what HTTP and batching cost."""
    from issue_titles.predictor import SERVING_COMPILED_BATCH_LIMIT, TitlePredictor

    predictor = TitlePredictor.load(model.path, compiled_batch_limit=SERVING_COMPILED_BATCH_LIMIT)
    predictor.warm_up()
    floors = {}
    for size in (1, 32):
        batch = bodies[:size]
        predictor.predict(batch)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            predictor.predict(batch)
            times.append(time.perf_counter() - started)
        floors[size] = median(times)
    return floors


def server_vm_hwm_kb(pid: int) -> int | None:
    """Peak resident memory (VmHWM) of a live process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def run(model: Model, quick: bool, scratch: Path, plots_dir: Path) -> tuple[Section, dict]:
    """Returns the section and extra facts (server peak RSS) for the pipeline section."""
    from localpach.serve import free_port, start_server, stop_server, wait_ready  # how `localpach serve` runs it

    bodies = sample_bodies(64)
    concurrencies = (1, 8) if quick else (1, 8, 32)
    protocols = ("v1",) if quick else ("v1", "v2")
    sizes = (1,) if quick else (1, 32)
    requests_total = 40 if quick else 400
    time_cap_s = 5.0 if quick else 15.0

    floors = in_process_floor(model, bodies, repeats=10 if quick else 50)
    base_url = f"http://127.0.0.1:{(port := free_port())}"
    results: list[tuple[Scenario, dict]] = []
    with open(scratch / "server.log", "wb") as log:
        server = start_server(model.path, "127.0.0.1", port, log)
        try:
            wait_ready(base_url, server, timeout=180)
            for protocol in protocols:  # warm both routes and both batch shapes
                for size in sizes:
                    load(
                        base_url + (V1_PATH if protocol == "v1" else V2_PATH),
                        payload(protocol, bodies[:size]),
                        2,
                        10,
                        30,
                    )
            for protocol in protocols:
                for size in sizes:
                    for concurrency in concurrencies:
                        scenario = Scenario(protocol, size, concurrency)
                        url = base_url + (V1_PATH if protocol == "v1" else V2_PATH)
                        if size == 1:  # at least 30 per client: a burst on the shared cores must not decide the ratio
                            total = max(requests_total, 30 * concurrency)
                        else:
                            total = max(concurrency * 4, requests_total // 4)
                        results.append(
                            (scenario, load(url, payload(protocol, bodies[:size]), concurrency, total, time_cap_s))
                        )
            rss_kb = server_vm_hwm_kb(server.pid)
        finally:
            stop_server(server)

    section = Section(
        "Serving (stages serve on 127.0.0.1, closed-loop load)",
        ["protocol", "bodies/req", "concurrency", "requests ok", "errors", "p50 ms", "p99 ms", "req/s", "titles/s"],
    )
    for size, floor in floors.items():
        section.rows.append(
            [
                "in-process predict()",
                size,
                1,
                "-",
                "-",
                f"{floor * 1000:.1f}",
                "-",
                f"{1 / floor:.1f}",
                f"{size / floor:.1f}",
            ]
        )
    summary = {}
    for scenario, outcome in results:
        latencies = outcome["latencies"]
        throughput = len(latencies) / outcome["wall_s"] if outcome["wall_s"] else 0.0
        p50 = median(latencies)
        summary[scenario] = {"p50": p50, "throughput": throughput}
        section.rows.append(
            [
                scenario.protocol,
                scenario.bodies_per_request,
                scenario.concurrency,
                len(latencies),
                len(outcome["errors"]),
                f"{p50 * 1000:.1f}",
                f"{percentile(latencies, 0.99) * 1000:.1f}",
                f"{throughput:.1f}",
                f"{throughput * scenario.bodies_per_request:.1f}",
            ]
        )
        if outcome["errors"]:
            section.notes.append(f"{scenario}: first error: {outcome['errors'][0]}")
    from issue_titles.serving.limits import ServingLimits

    limits = ServingLimits.from_env()
    section.notes.append(
        f"Model: {model.origin}. Server: `stages serve` (MLServer), started like the serving image, adaptive "
        f"batching max_batch_size={limits.adaptive_batch_size}, "
        f"max_batch_time={limits.adaptive_batch_time * 1000:g} ms (a lone request waits that long for company, "
        "which counts in the concurrency-1 overhead; batches that queue behind the busy model thread are merged "
        f"into one call). Each scenario stops after a fixed request count (1 body: {requests_total} or 30 per "
        f"client if more; 32 bodies: {requests_total // 4} or 4 per client if more) or {time_cap_s:.0f} s. "
        "The load generator (Python threads) shares the same 2 cores as "
        "the server, so high-concurrency numbers include client CPU contention."
    )
    one_c1 = summary.get(Scenario("v1", 1, 1))
    if one_c1:
        overhead = one_c1["p50"] - floors[1]
        section.targets.append(
            (
                "serving 1 body p50 <= 15 ms at concurrency 1 (v1)",
                f"{one_c1['p50'] * 1000:.1f} ms",
                verdict(one_c1["p50"] <= 0.015),
            )
        )
        section.targets.append(
            ("server overhead (p50 - in-process) <= 5 ms", f"{overhead * 1000:.1f} ms", verdict(overhead <= 0.005))
        )
    one_c32 = summary.get(Scenario("v1", 1, 32))
    if one_c1 and one_c32:
        ratio = one_c32["throughput"] / one_c1["throughput"]
        section.targets.append(
            ("throughput at concurrency 32 >= 5x concurrency 1 (v1, 1 body)", f"{ratio:.1f}x", verdict(ratio >= 5))
        )
    section.plots.append(_plot(summary, plots_dir))
    return section, {"server_peak_rss_kb": rss_kb}


def _plot(summary: dict, plots_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots_dir.mkdir(parents=True, exist_ok=True)
    path = plots_dir / "serving.png"
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    series: dict[tuple[str, int], list[tuple[int, dict]]] = {}
    for scenario, values in summary.items():
        series.setdefault((scenario.protocol, scenario.bodies_per_request), []).append((scenario.concurrency, values))
    for (protocol, size), points in series.items():
        points.sort()
        xs = [concurrency for concurrency, _ in points]
        label = f"{protocol}, {size} body/req"
        left.plot(xs, [values["p50"] * 1000 for _, values in points], marker="o", label=label)
        right.plot(xs, [values["throughput"] * size for _, values in points], marker="o", label=label)
    left.set_xlabel("concurrency")
    left.set_ylabel("p50 latency (ms)")
    right.set_xlabel("concurrency")
    right.set_ylabel("titles / s")
    left.legend()
    figure.suptitle("Serving on 127.0.0.1")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
