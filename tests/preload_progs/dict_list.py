# dict_list.py — a dict/list/str-heavy workload with deterministic output.
import collections, json, random

rng = random.Random(12345)
words = ["".join(rng.choice("abcdefghijklmnop") for _ in range(rng.randint(1, 12)))
         for _ in range(60000)]
counts = collections.Counter(words)
index = {}
for i, w in enumerate(words):
    index.setdefault(w[:3], []).append(i)
nested = [{"id": i, "tags": [w.upper() for w in words[i:i + 5]], "n": i * i}
          for i in range(0, 40000, 3)]
blob = json.dumps(nested)
back = json.loads(blob)
assert back == nested
big = {}
for round_ in range(5):
    for i in range(50000):
        big[(round_, i)] = str(i) * (i % 7)
    for i in range(0, 50000, 2):
        del big[(round_, i)]
print(len(words), len(counts), counts.most_common(5))
print(sorted(index)[:10], sum(len(v) for v in index.values()))
print(len(blob), sum(d["n"] for d in back) % 1000003)
print(len(big), sum(len(v) for v in big.values()))
print(sorted(set(words))[-3:])
