#!/usr/bin/env python3
# Loopback load on a running UniAD scoring service (bench/scoring-service/probe.sh runs it):
#   load.py PORT REQUESTS CONCURRENCY DATA_DIR
# REQUESTS POSTs of the PNGs under DATA_DIR/**/test/**, CONCURRENCY at a time on keep-alive connections; prints req/s, p50, p99.
import glob, http.client, math, sys, threading, time
port, total, conc = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
files = sorted(glob.glob(sys.argv[4] + "/**/test/**/*.png", recursive=True))
images = [(f.split("/")[-2] + "-" + f.split("/")[-1], open(f, "rb").read()) for f in files]
lat = [0.0] * total
nxt = [0]
lock = threading.Lock()
errors = []
def worker():
    c = http.client.HTTPConnection("127.0.0.1", port)
    while True:
        with lock:
            i = nxt[0]; nxt[0] += 1
        if i >= total: break
        name, body = images[i % len(images)]
        t = time.perf_counter()
        c.request("POST", "/score?name=" + name, body, {"Content-Type": "image/png"})
        r = c.getresponse(); data = r.read()
        lat[i] = (time.perf_counter() - t) * 1000
        if r.status != 200 or b'"score":' not in data: errors.append((i, r.status, data[:200]))
start = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(conc)]
[t.start() for t in ts]; [t.join() for t in ts]
el = time.perf_counter() - start
s = sorted(lat)
q = lambda p: s[max(0, min(len(s) - 1, math.ceil(p * len(s)) - 1))]  # nearest rank, as LoadTests
print(f"{total} requests, {conc} concurrent, {len(images)} distinct images, {total/el:.0f} req/s, p50 {q(0.5):.1f} ms, p99 {q(0.99):.1f} ms, {el:.1f} s, errors {len(errors)}")
if errors: print(errors[:3]); sys.exit(1)
