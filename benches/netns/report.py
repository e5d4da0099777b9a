#!/usr/bin/env python3
"""Summary for benches/netns/throughput.sh: medians per target and ratios to Go Nebula's.

usage: report.py META_JSON RESULTS_JSONL [OUT_JSON]
Prints the table to stdout; with OUT_JSON also writes meta, raw rounds, medians and ratios there.
"""
import json
import statistics
import sys

# (key, column title, divisor, format, lower_is_better)
METRICS = [
    ("tcp1_bps", "TCP x1 Mbit/s", 1e6, "%.0f", False),
    ("tcp4_bps", "TCP x4 Mbit/s", 1e6, "%.0f", False),
    ("udp_bps", "UDP<=1% Mbit/s", 1e6, "%.0f", False),
    ("rtt_ms", "ping RTT ms", 1, "%.3f", True),
    ("cpu_s_per_gb", "daemon CPU s/GB", 1, "%.2f", True),
]


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    meta = json.load(open(sys.argv[1]))
    rounds = []
    with open(sys.argv[2]) as f:
        for line in f:
            line = line.strip()
            if line:
                rounds.append(json.loads(line))
    targets = meta.get("targets") or sorted({r["target"] for r in rounds})
    base = next((t for t in targets if t.startswith("go-")), None)

    medians, ratios, counts = {}, {}, {}
    for t in targets:
        ok = [r for r in rounds if r["target"] == t and r["ok"]]
        counts[t] = {"ok": len(ok), "rounds": sum(1 for r in rounds if r["target"] == t)}
        medians[t] = {}
        for key, *_ in METRICS:
            vals = [r[key] for r in ok if r.get(key) is not None]
            medians[t][key] = statistics.median(vals) if vals else None
        lim = [r.get("udp_sender_limited") for r in ok if r.get("udp_bps") is not None]
        medians[t]["udp_sender_limited_rounds"] = sum(1 for x in lim if x)
    for t in targets:
        ratios[t] = {}
        for key, *_ in METRICS:
            v = medians[t][key]
            b = medians.get(base, {}).get(key) if base else None
            ratios[t][key] = v / b if v is not None and b else None

    print()
    print("medians over %d round(s); MTU %s, cipher %s (wireguard-go: ChaCha20-Poly1305); "
          "(x) = ratio to %s" % (meta.get("rounds", 0), meta.get("mtu"), meta.get("cipher"),
                                  base or "Go (not run)"))
    print("higher is better for throughput, lower for RTT and CPU; daemon CPU = both daemons' "
          "utime+stime during TCP x1 per GB received")
    widths = [14] + [max(len(m[1]), 16) for m in METRICS] + [6]
    head = ["target"] + [m[1] for m in METRICS] + ["ok"]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for t in targets:
        cells = [t]
        for key, _, div, fmt, _ in METRICS:
            v = medians[t][key]
            if v is None:
                cells.append("-")
                continue
            s = fmt % (v / div)
            r = ratios[t][key]
            if r is not None:
                s += " (%.2fx)" % r
            cells.append(s)
        cells.append("%d/%d" % (counts[t]["ok"], counts[t]["rounds"]))
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
    notes = [t for t in targets if medians[t]["udp_sender_limited_rounds"]]
    if notes:
        print("UDP sender-limited (iperf3 could not offer more at <=1%% loss) in some rounds for: %s"
              % ", ".join(notes))
    failed = [r for r in rounds if not r["ok"]]
    for r in failed:
        print("round %d %s failed: %s" % (r["round"], r["target"], r.get("error")))
    print("load average at start: %s; machine has %s CPUs" % (
        " ".join(meta.get("loadavg_at_start", [])), meta.get("cpus")))

    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            json.dump({"meta": meta, "rounds": rounds, "median": medians, "counts": counts,
                       "ratio_to": base, "ratio_to_go": ratios}, f, indent=2)
            f.write("\n")
        print("results written to %s" % sys.argv[3])


if __name__ == "__main__":
    main()
