# Run with python3 to recompute the golden outputs of Example_lectureCountries and
# Example_lectureRunningCounts (lecture_example_test.go) without the engine.
# Independent model of the lecture's programs 2 and 3 (order rules: reduceByKey keeps
# first occurrence order, sortBy is stable, joins keep the left side's order).
from datetime import datetime, timedelta
def line(ip): return "2016-12-06T08:58:35.318+0000 %s 200 GET /codemove/TTCENCUFMH3C 0.026" % ip
spec = ["185.28.193.95*3 120.52.73.97*2 120.52.73.98",
        "120.52.73.97*4 120.52.73.98*2 178.22.148.122 _",
        "178.22.148.122*5 185.28.193.95",
        "120.52.73.98*2"]
batches = []
for s in spec:
    b = []
    for f in s.split():
        if f == "_": b.append(""); continue
        ip, _, n = f.partition("*")
        b += [line(ip)] * int(n or 1)
    batches.append(b)

def reduceByKey(pairs):
    out = {}
    for k, v in pairs:
        out[k] = out[k] + v if k in out else v
    return list(out.items())
def top(rdd, n):
    s = sorted(rdd, key=lambda x: x[1], reverse=True)  # stable
    return [v for i, v in enumerate(s) if i < n]
def pprint(t, rdd, num=10):
    print("-------------------------------------------")
    print("Time: %s" % t)
    print("-------------------------------------------")
    for r in rdd[:num]: print(r)
    if len(rdd) > num: print("...")
    print("")

def windowed(interval, length, slide, nbatches):
    start = datetime(2020, 3, 9, 0, 28, 0)
    for i in range(1, nbatches + 1):
        if i % (slide // interval): continue
        lo = max(1, i - length // interval + 1)
        w = [l for j in range(lo, i + 1) if j <= len(batches) for l in batches[j - 1]]
        yield start + timedelta(seconds=interval * (i - 1)), w

print("# program 2")
csv = "185.28.193.95,PT\n120.52.73.97,CN\n\n120.52.73.98,CN\n10.0.0.1,US\n"
countries = [tuple(l.split(",")[:2]) for l in csv.split("\n") if len(l) > 0]
for t, w in windowed(10, 30, 10, 4):
    counts = reduceByKey([(l.split(" ")[1], 1) for l in w if len(l) > 0])
    res = [(k, (v, c)) for k, v in top(counts, 3) for kk, c in countries if kk == k]
    pprint(t, res)

print("# program 3")
state = {}
for t, w in windowed(5, 10, 5, 5):
    result = reduceByKey([(l.split(" ")[1], 1) for l in w if len(l) > 0])
    # updateStateByKey(updateFunction): runs for every key with state or values
    newvals = {}
    for k, v in result: newvals.setdefault(k, []).append(v)
    for k in list(state) + [k for k in newvals if k not in state]:
        rc = state.get(k)
        if rc is None: rc = 0
        state[k] = sum(newvals.get(k, []), rc)
    res = [(k, (v, state[k])) for k, v in top(result, 3) if k in state]
    pprint(t, res)
