#!/usr/bin/env python3
"""bench/report.py - turns a bench/run work dir into a markdown results section.

    report.py WORK                  print the results section (markdown)
    report.py --rounds WORK         print every run's figures (markdown)
    report.py --latencies RAW       p50/p90/p99/p99.9 of one dnsperf -v output
    report.py --splice RESULTS FILE replace the results section of FILE
                                    (between the bench/run markers) with RESULTS

WORK holds what bench/run recorded:
    meta.tsv   key<TAB>value (machine, versions, parameters, clk_tck)
    runs.tsv   round phase resolver dnsperf-output resolver-ticks upstream-ticks nsd-ticks
    rss.tsv    resolver when(start|after) VmRSS-kB
Phases: mem (memory fill, round 0), hit (saturation), lat (fixed rate; its
percentiles in OUTPUT.lat, from --latencies), miss (fresh names, saturation).
Every figure is the median over the rounds; ratios are medians of the
per-round ratios (each round measures all resolvers back to back), and so
are the differences of dotstub-dnssec (validating) over dotstub.
Standard library only.
"""
import json
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

START = "<!-- bench/run results: start -->"
END = "<!-- bench/run results: end -->"
PEERS_ORDER = ["responder", "dotstub", "dotstub-dnssec", "unbound", "kresd", "stubby"]
NAMES = {
    "responder": "bare UDP responder (ceiling)",
    "dotstub": "dotstub",
    "dotstub-dnssec": "dotstub, validating",
    "unbound": "Unbound",
    "kresd": "Knot Resolver",
    "stubby": "Stubby",
}


def parse_dnsperf(path, want_latencies=False):
    """The summary figures of one dnsperf run, and per-query latencies (-v)."""
    text = Path(path).read_text(errors="replace")

    def num(pattern, default=0.0):
        m = re.search(pattern, text)
        return float(m.group(1)) if m else default

    run = {
        "sent": num(r"Queries sent:\s+(\d+)"),
        "completed": num(r"Queries completed:\s+(\d+)"),
        "lost": num(r"Queries lost:\s+(\d+)"),
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "runtime": num(r"Run time \(s\):\s+([\d.]+)"),
        "avg_latency": num(r"Average Latency \(s\):\s+([\d.]+)"),
        "rcodes": {},
    }
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        for code, count in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
            run["rcodes"][code] = int(count)
    if want_latencies:
        run["latencies"] = sorted(
            float(line.split()[-1]) for line in text.splitlines() if line.startswith("> ")
        )
    return run


def latency_summary(raw_path):
    """Percentiles (s) of one dnsperf -v run, as one JSON line."""
    run = parse_dnsperf(raw_path, want_latencies=True)
    pct = {f"p{p}": percentile(run["latencies"], run["lost"], p) for p in (50, 90, 99, 99.9)}
    return json.dumps({k: (None if math.isinf(v) else v) for k, v in pct.items()})


def percentile(sorted_values, lost, p):
    """Nearest-rank percentile, lost queries counted as infinitely slow."""
    n = len(sorted_values) + int(lost)
    if n == 0:
        return math.nan
    k = max(1, math.ceil(p / 100 * n))
    return sorted_values[k - 1] if k <= len(sorted_values) else math.inf


def median(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def load(work):
    work = Path(work)
    meta = dict(
        line.split("\t", 1) for line in (work / "meta.tsv").read_text().splitlines() if "\t" in line
    )
    tck = float(meta["clk_tck"])
    runs = defaultdict(list)  # (phase, resolver) -> [run, ...]
    for line in (work / "runs.tsv").read_text().splitlines():
        rnd, phase, res, out, rt, ut, nt = line.split("\t")
        run = parse_dnsperf(out)
        # Only correct answers count: QPS and CPU are per NOERROR answer.
        good = run["rcodes"].get("NOERROR", 0) if run["rcodes"] else run["completed"]
        per = good or math.nan
        run.update(
            round=int(rnd),
            good=good,
            failed=run["sent"] - good,
            qps=run["qps"] * good / (run["completed"] or math.nan),
            cpu_us=int(rt) / tck * 1e6 / per,
            up_us=int(ut) / tck * 1e6 / per,
            nsd_ticks=int(nt),
        )
        if phase == "lat":
            pct = json.loads(Path(out + ".lat").read_text())
            for k, v in pct.items():  # None: beyond the answered queries (lost)
                run[k] = math.inf if v is None else v
        runs[(phase, res)].append(run)
    rss = defaultdict(dict)
    for line in (work / "rss.tsv").read_text().splitlines():
        res, when, kb = line.split("\t")
        rss[res][when] = int(kb) / 1024
    present = {res for _, res in runs}
    resolvers = [r for r in PEERS_ORDER if r in present]
    return meta, runs, rss, resolvers


def fig(runs, phase, res, key):
    return median([r[key] for r in runs.get((phase, res), [])])


def round_ratio(runs, phase, a, b, key):
    """Median over rounds of a's figure divided by b's in the same round."""
    by_round = {r["round"]: r[key] for r in runs.get((phase, b), [])}
    return median(
        [r[key] / by_round[r["round"]] for r in runs.get((phase, a), [])
         if by_round.get(r["round"])]
    )


def round_diff(runs, phase, a, b, key):
    """Median over rounds of a's figure minus b's in the same round."""
    by_round = {r["round"]: r[key] for r in runs.get((phase, b), [])}
    return median(
        [r[key] - by_round[r["round"]] for r in runs.get((phase, a), []) if r["round"] in by_round]
    )


def f_int(v):
    return "–" if math.isnan(v) else f"{v:,.0f}"


def f_num(v, digits=1):
    return "–" if math.isnan(v) else f"{v:.{digits}f}"


def f_ms(v):
    if math.isinf(v):
        return "lost"
    return "–" if math.isnan(v) else f"{v * 1000:.2f}"


def f_ratio(v):
    return "–" if math.isnan(v) or math.isinf(v) else f"{v:.2f}×"


def total(runs, phase, res, key):
    return int(sum(r[key] for r in runs.get((phase, res), [])))


def render(meta, runs, rss, resolvers):
    out = []
    w = out.append
    mem_n = int(meta["mem_n"])
    w(f"Measured {meta['date']} by `{meta['command']}` ({meta['mode']} mode, "
      f"{meta['rounds']} interleaved round(s), medians).\n")
    w(f"- Machine: {meta['machine']}; load average (1/5/15 min) {meta.get('loadavg', '?')}.")
    w(f"- Versions: {meta['versions']}.")
    w(f"- dotstub's cache: {meta.get('dotstub_cache', '?')}.")
    w(f"- Load: dnsperf `{meta['load']}` at saturation; cache hits: {meta['hit_names']} warmed "
      f"names for {meta['hit_s']} s; latency: the same names at `-Q {meta['lat_qps']}` for "
      f"{meta['lat_s']} s; misses: never-asked names, {meta['miss_s']} s or "
      f"{int(meta['miss_n']):,} names per resolver per round, whichever ends first; memory: RSS after the same {mem_n:,} distinct names at `-Q 10000`; "
      f"zone of {int(meta['zone_n']):,} names, all pre-warmed in the upstream.")
    w("- QPS and CPU count correct (NOERROR) answers only; *failed* = lost (no answer within "
      "dnsperf's 5 s) + other answers (SERVFAIL...), summed over the rounds. CPU is utime+stime "
      "from /proc over the run.\n")

    w(f"| resolver | hit QPS | hit CPU µs/q | hit p50 / p99 ms @ {int(meta['lat_qps']):,} qps "
      f"| miss QPS | miss CPU µs/q | upstream CPU µs/miss | RSS MiB start / after {mem_n // 1000}k "
      f"| failed hit / lat / miss |")
    w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for res in resolvers:
        miss = res != "responder"
        cells = [
            NAMES[res],
            f_int(fig(runs, "hit", res, "qps")),
            f_num(fig(runs, "hit", res, "cpu_us")),
            f"{f_ms(fig(runs, 'lat', res, 'p50'))} / {f_ms(fig(runs, 'lat', res, 'p99'))}",
            f_int(fig(runs, "miss", res, "qps")) if miss else "–",
            f_num(fig(runs, "miss", res, "cpu_us")) if miss else "–",
            f_num(fig(runs, "miss", res, "up_us")) if miss else "–",
            f"{f_num(rss[res].get('start', math.nan))} / {f_num(rss[res].get('after', math.nan))}",
            f"{total(runs, 'hit', res, 'failed')} / {total(runs, 'lat', res, 'failed')} / "
            + (f"{total(runs, 'miss', res, 'failed')}" if miss else "–"),
        ]
        w("| " + " | ".join(cells) + " |")

    if "responder" in resolvers:
        w("\nCache hits against the ceiling (resolver ÷ bare responder, same round):\n")
        w("| resolver | hit QPS ratio | hit CPU/q ratio |")
        w("| --- | ---: | ---: |")
        for res in resolvers:
            if res == "responder":
                continue
            w(f"| {NAMES[res]} | {f_ratio(round_ratio(runs, 'hit', res, 'responder', 'qps'))} "
              f"| {f_ratio(round_ratio(runs, 'hit', res, 'responder', 'cpu_us'))} |")

    if "dotstub" in resolvers and "dotstub-dnssec" in resolvers:
        render_dnssec(w, meta, runs, rss)

    peers = [r for r in resolvers if r not in ("dotstub", "dotstub-dnssec", "responder")]
    if "dotstub" in resolvers and peers:
        w("\ndotstub ÷ peer (QPS: above 1 is better for dotstub; CPU, latency and RSS: "
          "below 1 is better):\n")
        w("| peer | hit QPS | hit CPU/q | hit p99 | miss QPS | miss CPU/q | upstream CPU/miss "
          "| RSS start | RSS after |")
        w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for p in peers:
            def rss_ratio(when):
                a, b = rss["dotstub"].get(when, math.nan), rss[p].get(when, math.nan)
                return a / b if b else math.nan
            w(f"| {NAMES[p]} | {f_ratio(round_ratio(runs, 'hit', 'dotstub', p, 'qps'))} "
              f"| {f_ratio(round_ratio(runs, 'hit', 'dotstub', p, 'cpu_us'))} "
              f"| {f_ratio(round_ratio(runs, 'lat', 'dotstub', p, 'p99'))} "
              f"| {f_ratio(round_ratio(runs, 'miss', 'dotstub', p, 'qps'))} "
              f"| {f_ratio(round_ratio(runs, 'miss', 'dotstub', p, 'cpu_us'))} "
              f"| {f_ratio(round_ratio(runs, 'miss', 'dotstub', p, 'up_us'))} "
              f"| {f_ratio(rss_ratio('start'))} | {f_ratio(rss_ratio('after'))} |")

    w(f"\nCPU at a fixed {int(meta['lat_qps']):,} qps (not saturated: wake-ups are not "
      "amortised over batches), µs per answer:\n")
    w("| resolver | hit (latency runs) | miss (memory fill) |")
    w("| --- | ---: | ---: |")
    for res in resolvers:
        w(f"| {NAMES[res]} | {f_num(fig(runs, 'lat', res, 'cpu_us'))} | "
          + (f"{f_num(fig(runs, 'mem', res, 'cpu_us'))} |" if res != "responder" else "– |"))

    # Checks that the set-up measured what it claims.
    w("\nChecks:\n")
    nsd_miss = sum(total(runs, "miss", r, "nsd_ticks") for r in resolvers)
    misses = sum(total(runs, "miss", r, "good") for r in resolvers)
    w(f"- Upstream pre-warmed: {int(meta['upstream_misses_during_runs']):,} upstream cache misses "
      f"during the measured runs; nsd used {nsd_miss} CPU ticks over all {misses:,} answered "
      f"misses.")
    up_hit = {r: fig(runs, "hit", r, "up_us") for r in resolvers if r != "responder"}
    w("- Upstream CPU µs per answered *hit* (0 when the resolver answers from its cache): "
      + ", ".join(f"{NAMES[r]} {f_num(v)}" for r, v in up_hit.items()) + ".")
    odd = []
    for (phase, res), rs in sorted(runs.items()):
        codes = defaultdict(int)
        for r in rs:
            for code, n in r["rcodes"].items():
                if code != "NOERROR":
                    codes[code] += n
        if codes:
            odd.append(f"{NAMES[res]} {phase}: " + ", ".join(f"{c} {n}" for c, n in codes.items()))
    if "dnssec_check" in meta:
        w(f"- DNSSEC, dotstub-dnssec at set-up: {meta['dnssec_check']}.")
    w("- Answers other than NOERROR: " + ("; ".join(odd) if odd else "none") + ".")
    lost = [f"{NAMES[res]} {phase} {total(runs, phase, res, 'lost')}"
            for (phase, res) in sorted(runs) if total(runs, phase, res, "lost")]
    w("- Lost queries (dnsperf timeouts), all rounds: " + (", ".join(lost) if lost else "none") + ".")
    w("- Miss run length, median s: " + ", ".join(
        f"{NAMES[r]} {f_num(fig(runs, 'miss', r, 'runtime'))}" for r in resolvers if r != "responder")
      + ".")
    return "\n".join(out) + "\n"


def render_dnssec(w, meta, runs, rss):
    """What validating costs dotstub: dotstub-dnssec beside dotstub."""
    a, b = "dotstub-dnssec", "dotstub"
    mem_k = int(meta["mem_n"]) // 1000
    w("\nDNSSEC validation: the same dotstub with `validate = true` (trust anchor: the DS of "
      "bench.test.'s key, so its DNSKEY is fetched once and then comes from the key cache) "
      "beside `validate = false`; the difference is per answer, median of the per-round "
      "differences:\n")
    w("| figure | dotstub | dotstub, validating | difference | ratio |")
    w("| --- | ---: | ---: | ---: | ---: |")

    def row(label, phase, key, fmt=f_num):
        w(f"| {label} | {fmt(fig(runs, phase, b, key))} | {fmt(fig(runs, phase, a, key))} "
          f"| {fmt(round_diff(runs, phase, a, b, key))} "
          f"| {f_ratio(round_ratio(runs, phase, a, b, key))} |")

    row("miss CPU µs/q, saturation", "miss", "cpu_us")
    row("miss CPU µs/q, memory fill (`-Q 10000`)", "mem", "cpu_us")
    row("miss QPS, saturation", "miss", "qps", f_int)
    row("upstream CPU µs/miss", "miss", "up_us")
    row("hit CPU µs/q, saturation", "hit", "cpu_us")
    rss_a, rss_b = rss[a].get("after", math.nan), rss[b].get("after", math.nan)
    w(f"| RSS MiB after {mem_k}k | {f_num(rss_b)} | {f_num(rss_a)} | {f_num(rss_a - rss_b)} "
      f"| {f_ratio(rss_a / rss_b if rss_b else math.nan)} |")
    w(f"\n**Validation cost per miss: {f_num(round_diff(runs, 'miss', a, b, 'cpu_us'))} µs "
      f"of dotstub CPU (dotstub-dnssec − dotstub, at saturation), ratio "
      f"{f_ratio(round_ratio(runs, 'miss', a, b, 'cpu_us'))}.** It includes asking with DO=1 "
      "and reading the larger signed answer over TLS, checking one ECDSA P-256 RRSIG, and "
      "removing the RRSIG for dnsperf, which does not set DO.")


def render_rounds(meta, runs, rss, resolvers):
    out = ["| phase | round | resolver | QPS | CPU µs/answer | upstream CPU µs/answer "
           "| p50 / p99 ms | answered | lost | other rcodes | run s |",
           "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for phase in ("mem", "hit", "lat", "miss"):
        for res in resolvers:
            for r in sorted(runs.get((phase, res), []), key=lambda r: r["round"]):
                lat = f"{f_ms(r['p50'])} / {f_ms(r['p99'])}" if phase == "lat" else ""
                other = ", ".join(f"{c} {n}" for c, n in r["rcodes"].items() if c != "NOERROR")
                out.append(
                    f"| {phase} | {r['round']} | {NAMES[res]} | {f_int(r['qps'])} "
                    f"| {f_num(r['cpu_us'], 2)} | {f_num(r['up_us'], 2)} | {lat} "
                    f"| {int(r['good']):,} | {int(r['lost'])} | {other} | {f_num(r['runtime'])} |")
    return "\n".join(out) + "\n"


def splice(results_path, target_path):
    results = Path(results_path).read_text().rstrip("\n")
    target = Path(target_path)
    block = f"{START}\n{results}\n{END}"
    text = target.read_text() if target.exists() else "# Benchmarks\n\n## Results\n\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    target.write_text(text)


def main(argv):
    if len(argv) == 4 and argv[1] == "--splice":
        splice(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "--latencies":
        print(latency_summary(argv[2]))
    elif len(argv) == 3 and argv[1] == "--rounds":
        sys.stdout.write(render_rounds(*load(argv[2])))
    elif len(argv) == 2:
        sys.stdout.write(render(*load(argv[1])))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
