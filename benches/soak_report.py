#!/usr/bin/env python3
"""Judges and plots benches/soak.sh's samples.

samples.csv: every 5 s, the `cartflow run` process (RSS, descriptors, threads), the data directory's
disk and the counters of /metrics; load.csv: the paced /predict load's requests, errors and latency
per 5 s. Checks: no error (load errors, stage restarts, error lines in the run's log), no lost event
(after the drain every produced event validated, in the lake and in the online store), RSS growth
after the warm-up within 10 %, p99 steady (the last third's median p99 within 1.5x the first's), the
log's disk bounded (its peak in the second half no higher than 1.25x the first half's). Prints the
report as a Markdown table and writes the SVG (matplotlib, as MLflow brings it).
"""
import argparse
import csv
import statistics
import sys


def rows(path):
    with open(path) as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("samples")
    p.add_argument("load")
    p.add_argument("run_log")
    p.add_argument("--produced", type=int, required=True)
    p.add_argument("--start", type=float, required=True)
    p.add_argument("--end", type=float, required=True)
    p.add_argument("--warmup", type=float, default=300, help="seconds after the start RSS is not judged on")
    p.add_argument("--svg", required=True)
    a = p.parse_args()

    samples = rows(a.samples)
    load = rows(a.load)
    soak = [s for s in samples if s["unix_secs"] <= a.end]
    last = samples[-1]
    minutes = (a.end - a.start) / 60

    def per_sec(key):
        out = []
        for before, s in zip(soak, soak[1:]):
            dt = s["unix_secs"] - before["unix_secs"]
            out.append((s["unix_secs"], (s[key] - before[key]) / dt if dt else 0.0))
        return out

    checks = []

    def check(name, ok, figure):
        checks.append((name, ok, figure))

    logged = open(a.run_log).read().splitlines()
    errors_logged = [line for line in logged if " ERROR " in line or "panicked" in line]
    warnings = [line for line in logged if " WARN " in line]
    load_errors = int(sum(r["errors"] for r in load))
    requests = int(sum(r["requests"] for r in load))
    check(
        "no error",
        load_errors == 0 and last["restarts"] == 0 and not errors_logged,
        f"{load_errors} failed requests of {requests:,}; {int(last['restarts'])} stage restarts; "
        f"{len(errors_logged)} error and {len(warnings)} warning lines in the run's log",
    )
    lost = {
        "validated": a.produced - (last["valid"] + last["invalid"]),
        "lake": last["valid"] - last["lake"],
        "online store": last["valid"] - last["features"],
    }
    check(
        "no lost event",
        last["produced"] == a.produced and all(v == 0 for v in lost.values()),
        f"{int(last['produced']):,} produced of {a.produced:,}; {int(last['valid']):,} valid + "
        f"{int(last['invalid']):,} invalid; lake {int(last['lake']):,}; online store {int(last['features']):,}",
    )
    warm = [s for s in soak if s["unix_secs"] >= a.start + a.warmup]
    k = max(1, len(warm) // 10)
    rss_first = statistics.mean(s["rss_kb"] for s in warm[:k]) / 1024
    rss_last = statistics.mean(s["rss_kb"] for s in warm[-k:]) / 1024
    growth = rss_last / rss_first - 1
    # What the data directory holds beside the log and the lake: mostly the online store's snapshot,
    # the state the process keeps in memory (twice: the store and the snapshots' copy).
    state = lambda s: (s["data_bytes"] - s["log_bytes"] - s["lake_bytes"]) / 2**20  # noqa: E731
    state_first = statistics.mean(state(s) for s in warm[:k])
    state_last = statistics.mean(state(s) for s in warm[-k:])
    check(
        "RSS growth after the warm-up ≤ 10 %",
        growth <= 0.10,
        f"{rss_first:,.0f} MB → {rss_last:,.0f} MB ({growth:+.1%}); peak {max(s['rss_kb'] for s in soak) / 1024:,.0f} MB; "
        f"the online state's snapshot {state_first:,.0f} MB → {state_last:,.0f} MB "
        f"({state_last / state_first - 1:+.1%}); descriptors {int(min(s['fds'] for s in warm))}–{int(max(s['fds'] for s in warm))}",
    )
    # The load's first and last intervals are partial: leave them out.
    lat = [r for r in load[1:-1] if r["requests"] > 0]
    third = max(1, len(lat) // 3)
    p99_first = statistics.median(r["p99_ms"] for r in lat[:third])
    p99_last = statistics.median(r["p99_ms"] for r in lat[-third:])
    all_p99 = [r["p99_ms"] for r in lat]
    check(
        "p99 latency steady",
        p99_last <= 1.5 * p99_first,
        f"median of 5 s p99s: first third {p99_first:.2f} ms, last third {p99_last:.2f} ms; "
        f"worst 5 s p99 {max(all_p99):.1f} ms; p50 {statistics.median(r['p50_ms'] for r in lat):.2f} ms",
    )
    half = soak[len(soak) // 2]["unix_secs"]
    log_first = max(s["log_bytes"] for s in soak if s["unix_secs"] < half) / 2**20
    log_second = max(s["log_bytes"] for s in soak if s["unix_secs"] >= half) / 2**20
    check(
        "the log's disk bounded by retention",
        log_second <= 1.25 * log_first,
        f"peak {log_first:,.0f} MB in the first half, {log_second:,.0f} MB in the second; "
        f"lake {last['lake_bytes'] / 2**30:.2f} GB, data directory {last['data_bytes'] / 2**30:.2f} GB at the end",
    )
    produced = [r for _, r in per_sec("produced")]
    lag = [s["lag_validate"] + s["lag_lake"] + s["lag_features"] for s in warm]
    print(
        f"Soak: {minutes:.0f} min; events {statistics.median(produced):,.0f}/s (median of 5 s rates), "
        f"/predict {requests / (a.end - a.start):,.0f} req/s; consumer lag after the warm-up: median "
        f"{statistics.median(lag):,.0f}, max {max(lag):,.0f} records\n"
    )
    print("| check | result | figures |\n| --- | --- | --- |")
    for name, ok, figure in checks:
        print(f"| {name} | {'pass' if ok else '**FAIL**'} | {figure} |")
    for line in (errors_logged + warnings)[:5]:
        print(f"  {line}")

    plot(a, soak, load, per_sec)
    print(f"\nplot: {a.svg}")
    return 0 if all(ok for _, ok, _ in checks) else 1


def plot(a, soak, load, per_sec):
    try:
        import matplotlib

        matplotlib.use("svg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is missing (pip install matplotlib; .ci/run's MLflow brings it)")
    plt.rcParams["svg.hashsalt"] = "cartflow-soak"  # the same samples give the same file
    plt.rcParams["svg.fonttype"] = "none"  # text as text: a smaller file
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    m = lambda t: (t - a.start) / 60  # noqa: E731
    ax = axes[0]
    ax.plot([m(s["unix_secs"]) for s in soak], [s["rss_kb"] / 1024 for s in soak], label="RSS (MB)")
    ax.plot([m(s["unix_secs"]) for s in soak], [s["fds"] for s in soak], label="open descriptors")
    ax.set_title("cartflow run: memory and descriptors")
    ax = axes[1]
    for key, name in (("produced", "produced"), ("valid", "validated"), ("lake", "lake"), ("features", "online store")):
        r = per_sec(key)
        ax.plot([m(t) for t, _ in r], [v for _, v in r], label=f"{name} events/s")
    ax.plot([m(r["unix_secs"]) for r in load], [r["requests"] / 5 for r in load], label="/predict req/s")
    ax.set_title("throughput, per 5 s")
    ax = axes[2]
    ax.plot([m(r["unix_secs"]) for r in load], [r["p50_ms"] for r in load], label="p50")
    ax.plot([m(r["unix_secs"]) for r in load], [r["p99_ms"] for r in load], label="p99")
    ax.set_yscale("log")
    ax.set_title("/predict latency per 5 s (ms, from when each request was due)")
    ax = axes[3]
    ax.plot([m(s["unix_secs"]) for s in soak], [s["log_bytes"] / 2**20 for s in soak], label="log")
    ax.plot([m(s["unix_secs"]) for s in soak], [s["lake_bytes"] / 2**20 for s in soak], label="lake")
    ax.plot(
        [m(s["unix_secs"]) for s in soak],
        [(s["data_bytes"] - s["log_bytes"] - s["lake_bytes"]) / 2**20 for s in soak],
        label="online state snapshot and the rest",
    )
    lag = ax.twinx()
    lag.plot(
        [m(s["unix_secs"]) for s in soak],
        [s["lag_validate"] + s["lag_lake"] + s["lag_features"] for s in soak],
        color="tab:red",
        alpha=0.6,
        label="consumer lag, all stages (records, right)",
    )
    lag.legend(loc="upper right", fontsize=8)
    ax.set_title("disk (MB) and consumer lag")
    ax.set_xlabel("minutes")
    for ax in axes:
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(a.svg, metadata={"Date": None})


if __name__ == "__main__":
    sys.exit(main())
