#!/usr/bin/env python3
"""bench/soak's load generator and report (standard library only).

  soak-load.py load --port P --queries N --qps R --hot H --pid PID --out DIR [...]
      Sends N UDP queries "n<i>.bench.test A" to 127.0.0.1:P at R per second:
      query k is a fresh name (never asked before: n<H + k//5>) when k % 5 == 4,
      else one of the H hot names n0..n<H-1>, drawn at random (80/20). An
      answer is matched by socket, ID and question; none within --timeout is
      lost (as dnsperf counts). Per 100 ms of send time it writes what was
      sent, answered, NOERROR, SERVFAIL, other, lost; every --rss-every s the
      VmRSS of PID. Writes DIR/t0 (its start, CLOCK_BOOTTIME) first, then at the end
      DIR/buckets.tsv, DIR/rss.tsv and DIR/load.json.
  soak-load.py report WORK
      WORK/load/*, WORK/events.tsv and WORK/meta.tsv -> markdown on stdout.

Why not dnsperf: it reports totals only, and the soak has to tell failures
inside the outage windows from failures outside them, which needs when.
"""

import argparse
import json
import os
import random
import selectors
import socket
import struct
import sys
import time
from collections import deque

BUCKET_S = 0.1
SOCKETS = 8
SUFFIX = b"\x05bench\x04test\x00"
QTAIL = b"\x00\x01\x00\x01"  # A IN
HDR_TAIL = struct.pack(">HHHHH", 0x0100, 1, 0, 0, 0)  # RD, one question
FIELDS = ("sent", "answered", "noerror", "servfail", "other", "lost")


def clock():
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def qname(i):
    label = b"n%d" % i
    return bytes((len(label),)) + label + SUFFIX


def vmrss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def udp_rcvbuf_errors():
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_drops(ports):
    """Datagrams the kernel dropped on the 127.0.0.1 UDP sockets bound to ports."""
    total = 0
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            cols = line.split()
            addr, port = cols[1].split(":")
            if addr == "0100007F" and int(port, 16) in ports:
                total += int(cols[-1])
    return total


def load(a):
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    hot = [qname(i) for i in range(a.hot)]
    socks, sel = [], selectors.DefaultSelector()
    for s_i in range(SOCKETS):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # root: beyond rmem_max, so a burst of answers is not dropped here
            s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
        except OSError:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.connect(("127.0.0.1", a.port))
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ, s_i)
    next_id = [rng.randrange(65536) for _ in range(SOCKETS)]
    n_buckets = int(a.queries / a.qps / BUCKET_S) + 1
    buckets = {f: [0] * n_buckets for f in FIELDS}
    lat_hist = [0] * 50001  # 0.1 ms bins up to 5 s
    outstanding, order = {}, deque()
    late = mismatched = send_errors = fresh_sent = 0
    max_lag = 0.0
    rss = []
    own_ports = {s.getsockname()[1] for s in socks}
    rcvbuf0, drops0 = udp_rcvbuf_errors(), (udp_drops({a.port}), udp_drops(own_ports))

    # One clock for the load, the samples and bench/soak's events: CLOCK_BOOTTIME
    # (/proc/uptime in bash), never stepped; the wall clock here has been seen
    # to run fast by 0.5% to 15%.
    epoch0, t0 = time.time(), clock()
    with open(os.path.join(a.out, "t0"), "w") as f:
        f.write(f"{t0:.6f}\n")
    deadline = t0 + a.queries / a.qps * 2 + 60  # hard bound on the whole run
    rss.append((0.0, vmrss_kb(a.pid), 0, time.time()))
    next_rss, next_progress = a.rss_every, 10.0
    k = 0
    while k < a.queries or outstanding:
        now = clock()
        el = now - t0
        if now > deadline:
            print("soak-load: deadline passed, stopping", file=sys.stderr)
            break
        if k < a.queries:  # send what is due
            due = min(a.queries, int(el * a.qps) + 1)
            if due - k > 1:
                max_lag = max(max_lag, (due - k - 1) / a.qps)
            b = min(int(el / BUCKET_S), n_buckets - 1)
            while k < due:
                if k % 5 == 4:
                    q = qname(a.hot + k // 5)
                    fresh_sent += 1
                else:
                    q = hot[rng.randrange(a.hot)]
                s_i = k % SOCKETS
                qid = next_id[s_i]
                next_id[s_i] = (qid + 1) & 0xFFFF
                try:
                    socks[s_i].send(struct.pack(">H", qid) + HDR_TAIL + q + QTAIL)
                except OSError:
                    send_errors += 1
                key = s_i << 16 | qid
                outstanding[key] = (now, q, b)
                order.append((now, key))
                buckets["sent"][b] += 1
                k += 1
        while order and order[0][0] + a.timeout < now:  # lost: no answer in time
            t_sent, key = order.popleft()
            entry = outstanding.get(key)
            if entry is not None and entry[0] == t_sent:
                del outstanding[key]
                buckets["lost"][entry[2]] += 1
        if el >= next_rss:
            rss.append((round(el, 3), vmrss_kb(a.pid), fresh_sent, time.time()))
            next_rss += a.rss_every
        if el >= next_progress:
            lost = sum(buckets["lost"])
            print(f"soak-load: {el:5.0f} s: {k} sent, {len(outstanding)} outstanding, "
                  f"{sum(buckets['servfail'])} SERVFAIL, {lost} lost, RSS {rss[-1][1]} kB",
                  file=sys.stderr)
            next_progress += 10
        wait = max(0.0, (k + 1) / a.qps - el) if k < a.queries else 0.05
        for skey, _ in sel.select(min(wait, 0.05)):
            s = skey.fileobj
            now = clock()
            for _ in range(512):
                try:
                    m = s.recv(4096)
                except BlockingIOError:
                    break
                if len(m) < 12:
                    mismatched += 1
                    continue
                key = skey.data << 16 | (m[0] << 8 | m[1])
                entry = outstanding.get(key)
                if entry is None:
                    late += 1  # after it was counted lost, or a duplicate
                    continue
                t_sent, q, b = entry
                if m[12:12 + len(q)] != q:
                    mismatched += 1
                    continue
                del outstanding[key]
                rcode = m[3] & 0x0F
                buckets["answered"][b] += 1
                buckets["noerror" if rcode == 0 else "servfail" if rcode == 2 else "other"][b] += 1
                lat_hist[min(int((now - t_sent) * 10000), 50000)] += 1
    duration = clock() - t0
    time.sleep(1)
    rss.append((round(clock() - t0, 3), vmrss_kb(a.pid), fresh_sent, time.time()))

    with open(os.path.join(a.out, "buckets.tsv"), "w") as f:
        f.write("t\t" + "\t".join(FIELDS) + "\n")
        for b in range(n_buckets):
            f.write(f"{b * BUCKET_S:.1f}\t" + "\t".join(str(buckets[x][b]) for x in FIELDS) + "\n")
    with open(os.path.join(a.out, "rss.tsv"), "w") as f:
        f.write("t\trss_kb\tfresh_sent\twall\n")
        for t, kb, fr, wall in rss:
            f.write(f"{t}\t{kb if kb is not None else ''}\t{fr}\t{wall:.3f}\n")

    def pct(p):
        total, acc = sum(lat_hist), 0
        for i, c in enumerate(lat_hist):
            acc += c
            if total and acc >= p * total:
                return i / 10
        return None

    summary = {f: sum(buckets[f]) for f in FIELDS}
    summary.update(
        t0=t0, epoch0=epoch0, wall_s=round(time.time() - epoch0 - 1, 1), duration_s=round(duration, 1), qps_target=a.qps, hot_names=a.hot,
        fresh_sent=fresh_sent, max_lag_s=round(max_lag, 3), late=late, mismatched=mismatched,
        send_errors=send_errors, unsent=a.queries - k, still_outstanding=len(outstanding),
        udp_rcvbuf_errors=udp_rcvbuf_errors() - rcvbuf0, udp_drops_dotstub=udp_drops({a.port}) - drops0[0],
        udp_drops_generator=udp_drops(own_ports) - drops0[1],
        latency_ms={"p50": pct(0.5), "p99": pct(0.99), "p99.9": pct(0.999), "max": pct(1.0)},
        dotstub_alive=vmrss_kb(a.pid) is not None)
    with open(os.path.join(a.out, "load.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(f"soak-load: done in {duration:.1f} s: " + ", ".join(f"{f} {summary[f]}" for f in FIELDS),
          file=sys.stderr)


def read_tsv(path):
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        return [dict(zip(head, line.rstrip("\n").split("\t"))) for line in f]


def log_lines(path, samples):
    """(s from the start, text) of the WARN/ERROR and "answering again" lines;
    their wall-clock stamps mapped to the load's clock by the samples' (t, wall)."""
    import re
    from datetime import datetime
    found = []
    for line in open(path, errors="replace"):
        line = re.sub(r"\x1b\[[0-9;]*m", "", line).rstrip()
        if not re.search(r" (WARN|ERROR) |answering again", line):
            continue
        stamp, _, text = line.partition(" ")
        try:
            w = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            continue
        before = [x for x in samples if x[1] <= w] or samples[:1]
        after = [x for x in samples if x[1] > w] or samples[-1:]
        (ta, wa), (tb, wb) = before[-1], after[0]
        t = ta + (w - wa) * ((tb - ta) / (wb - wa) if wb > wa else 1)
        found.append((t, text.strip()[:200]))
    return found


def report(work):
    meta = {r[0]: r[1] for r in (line.rstrip("\n").split("\t", 1) for line in open(f"{work}/meta.tsv"))}
    s = json.load(open(f"{work}/load/load.json"))
    events = {}
    for line in open(f"{work}/events.tsv"):
        name, t = line.split()[:2]
        events[name] = float(t) - s["t0"]
    grace = float(meta["grace_s"])
    windows = []  # (label, start, end by send time)
    if "kill" in events:
        end = events.get("restarted", events.get("restart", events["kill"]))
        windows.append(("kill", events["kill"], end + grace))
    if "stop" in events:
        windows.append(("stall", events["stop"], events.get("cont", events["stop"]) + grace))

    def window_of(t):
        for label, a, b in windows:
            if a <= t < b:
                return label
        return None

    rows = read_tsv(f"{work}/load/buckets.tsv")
    split = {w: dict.fromkeys(FIELDS, 0) for w in ["outside"] + [w[0] for w in windows]}
    bad = []  # (t, servfail + other, lost, window) for buckets with failures
    for r in rows:
        t = float(r["t"])
        w = window_of(t + 0.05) or "outside"
        for f in FIELDS:
            split[w][f] += int(r[f])
        fails, lost = int(r["servfail"]) + int(r["other"]), int(r["lost"])
        if fails or lost:
            bad.append((t, fails, lost, w))
    spans = []  # failing buckets merged when under 1 s apart
    for t, fails, lost, w in bad:
        if spans and t - spans[-1][1] <= 1.0 and spans[-1][4] == w:
            sp = spans[-1]
            spans[-1] = (sp[0], t, sp[2] + fails, sp[3] + lost, w)
        else:
            spans.append((t, t, fails, lost, w))

    rss_rows = read_tsv(f"{work}/load/rss.tsv")
    rss = [(float(r["t"]), int(r["rss_kb"]), int(r["fresh_sent"])) for r in rss_rows if r["rss_kb"]]
    clocks = [(float(r["t"]), float(r["wall"])) for r in rss_rows]
    fill_names = int(meta["fill_names"])
    after = [x for x in rss if x[2] >= fill_names]
    mib = lambda kb: f"{kb / 1024:.1f} MiB"
    peak = max(rss, key=lambda x: x[1])
    if len(after) >= 2:
        lo, hi = min(x[1] for x in after), max(x[1] for x in after)
        flat = hi / lo - 1
        flat_txt = (f"{flat * 100:.1f}% (max {mib(hi)} / min {mib(lo)}, {len(after)} samples "
                    f"from t={after[0][0]:.0f} s)")
    else:
        flat, flat_txt = None, f"not reached ({fill_names} fresh names never sent)"
    first_fault = min((w[1] for w in windows), default=float("inf"))
    calm = [x[1] for x in after if x[0] < first_fault]
    calm_txt = (f"{(max(calm) / min(calm) - 1) * 100:.1f}% ({len(calm)} samples)" if len(calm) >= 2
                else "too few samples")
    out = split["outside"]
    verdict = lambda ok: "**pass**" if ok else "**FAIL**"
    lines = [
        f"## Soak results ({meta['date']})", "",
        f"`{meta['command']}`; dotstub {meta['dotstub']}; {meta['build']}", "",
        f"{meta['machine']}. Load: {s['qps_target']} qps target, "
        f"{s['sent'] / s['duration_s']:.0f} qps achieved over {s['duration_s']:.0f} s "
        f"(generator at most {s['max_lag_s'] * 1000:.0f} ms behind schedule), 80% of {s['hot_names']} hot names, "
        f"20% fresh names; lost = no answer in {meta['timeout_s']} s. Cache: {meta['cache']}; "
        f"full by {fill_names} fresh names (max_bytes / 64 octets, the smallest entry).", "",
        "| measure | value | target |", "| --- | --- | --- |",
        f"| queries sent | {s['sent']} | |",
        f"| answers received | {s['answered']} | |",
        f"| lost (no answer) | {s['lost']} | 0: {verdict(s['lost'] == 0)} |",
        f"| NOERROR | {s['noerror']} | |",
        f"| SERVFAIL | {s['servfail']} | |",
        f"| other rcodes | {s['other']} | |",
    ]
    for label, a, b in windows:
        w = split[label]
        lines.append(f"| in the {label} window ({a:.1f}–{b:.1f} s by send time) | sent {w['sent']}, "
                     f"SERVFAIL {w['servfail']}, other {w['other']}, lost {w['lost']} | |")
    lines += [
        f"| outside the outage windows | sent {out['sent']}, SERVFAIL {out['servfail']}, "
        f"other {out['other']}, lost {out['lost']} | 0 failed: "
        f"{verdict(out['lost'] + out['servfail'] + out['other'] == 0)} |",
        f"| latency of answers p50 / p99 / p99.9 / max | {s['latency_ms']['p50']} / {s['latency_ms']['p99']} / "
        f"{s['latency_ms']['p99.9']} / {s['latency_ms']['max']} ms | |",
        f"| RSS at start | {mib(rss[0][1])} | |",
        f"| RSS at peak | {mib(peak[1])} (t={peak[0]:.0f} s) | |",
        f"| RSS at the end | {mib(rss[-1][1])} | |",
        f"| RSS flatness once the cache is full | {flat_txt} | ≤ 10%: "
        f"{verdict(flat is not None and flat <= 0.10)} |",
        f"| … of which before the first fault | {calm_txt} | |",
        f"| dotstub alive at the end | {'yes' if s['dotstub_alive'] else 'NO'} | |",
        f"| dotstub log: WARN / ERROR lines | {meta['log_warn']} / {meta['log_error']} | |",
        f"| UDP datagrams dropped by the kernel: dotstub's socket / the generator's / whole machine | "
        f"{s['udp_drops_dotstub']} / {s['udp_drops_generator']} / {s['udp_rcvbuf_errors']} | |",
        "",
        "Events (s from the start): " + ", ".join(f"{k} {v:.1f}" for k, v in events.items()) +
        f"; a window runs from the fault to the upstream's return + {grace:g} s.",
    ]
    extra = {k: s[k] for k in ("late", "mismatched", "send_errors", "unsent", "still_outstanding") if s[k]}
    if abs(s["wall_s"] - s["duration_s"]) > 1:
        extra["wall clock seconds over the load's"] = f"{s['wall_s']:.1f} vs {s['duration_s']:.1f}"
    if extra:
        lines.append("Generator anomalies: " + ", ".join(f"{k} {v}" for k, v in extra.items()) + ".")
    samples = " ".join(f"{kb / 1024:.1f}" for _, kb, _ in rss)
    lines += ["", f"RSS samples (MiB, every {meta['rss_every_s']} s, the last after the load): {samples}"]
    lines += ["", "dotstub's log, WARN and ERROR lines and upstream recoveries (s from the start):", ""]
    logged = [f"- {t:.1f} {text}" for t, text in log_lines(f"{work}/logs/dotstub.log", clocks)]
    lines += logged[:15] or ["none."]
    if len(logged) > 15:
        lines.append(f"- … {len(logged) - 15} more in logs/dotstub.log")
    lines += ["", "Failures by time (send time, failing 100 ms buckets merged when under 1 s apart):", ""]
    if spans:
        lines += ["| from (s) | to (s) | SERVFAIL+other | lost | window |", "| --- | --- | --- | --- | --- |"]
        shown = spans[:30]
        lines += [f"| {a:.1f} | {b + BUCKET_S:.1f} | {f} | {l} | {w} |" for a, b, f, l, w in shown]
        if len(spans) > len(shown):
            lines.append(f"| … | {len(spans) - len(shown)} more spans in load/buckets.tsv | | | |")
    else:
        lines.append("none.")
    print("\n".join(lines))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    lp = sub.add_parser("load")
    lp.add_argument("--port", type=int, required=True)
    lp.add_argument("--queries", type=int, required=True)
    lp.add_argument("--qps", type=float, required=True)
    lp.add_argument("--hot", type=int, default=100)
    lp.add_argument("--pid", type=int, required=True)
    lp.add_argument("--out", required=True)
    lp.add_argument("--timeout", type=float, default=5.0)
    lp.add_argument("--rss-every", type=float, default=5.0)
    lp.add_argument("--seed", type=int, default=1)
    rp = sub.add_parser("report")
    rp.add_argument("work")
    a = p.parse_args()
    load(a) if a.cmd == "load" else report(a.work)


if __name__ == "__main__":
    main()
