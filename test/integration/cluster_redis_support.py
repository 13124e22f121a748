"""cluster_redis_support.py - what the cluster.redis tests (test_cluster_redis.py) need beside
cluster_support.py: turnout nodes that share counters through one Redis without etcd (each
node its own store, all from one seed whose records carry explicit ids, so that every node
names a budget, key or route alike in Redis), and reading those counters back from Redis.

    r = start_redis(env)                      # cluster_support's Redis wrapper
    a, b, c = start_redis_nodes(env, r, seed)
    wait_cluster(nodes)                       # Redis connected, three nodes beating
"""
import hashlib
import math
import os
import threading
import time
import uuid

from cluster_support import metrics, wait_for
from harness import deep_merge

PREFIX = "/turnout/"          # cluster.prefix's default: where the counters live in Redis


def new_id():
    return str(uuid.uuid4())


def key_record(name, **limits):
    """A seed key record with an explicit id and a secret the test knows:
    (record, Authorization headers)."""
    secret = "tk-" + os.urandom(24).hex()
    rec = dict({"id": new_id(), "name": name, "secret_hash": hashlib.sha256(secret.encode()).hexdigest()}, **limits)
    return rec, {"Authorization": "Bearer " + secret}


def redis_config(redis, failure="local", **more):
    """The config fragment that shares a node's counters through REDIS."""
    return deep_merge({"cluster": {"redis": "127.0.0.1:%d" % redis.port, "redis_failure": failure}}, more)


def start_redis_node(env, redis, seed, name, config=None, failure="local", build=None):
    """One node sharing REDIS's counters: its own store (NAME-data) seeded
    with SEED, its own listen and admin ports."""
    t = env.turnout(seed, deep_merge(redis_config(redis, failure), config or {}), name=name, build=build)
    t.node_name = name
    return t


def start_redis_nodes(env, redis, seed, names=("node-a", "node-b", "node-c"), config=None, failure="local"):
    return [start_redis_node(env, redis, seed, n, config, failure) for n in names]


def redis_metrics(t):
    """T's turnout_redis_* and turnout_cluster_nodes samples."""
    m = metrics(t)
    return {k: v for k, v in m.items() if k.startswith("turnout_redis_") or k == "turnout_cluster_nodes"}


def wait_cluster(nodes, n=None, timeout=10.0, connected=1):
    """Waits until every node of NODES reports Redis connected (CONNECTED)
    and N nodes alive (len(NODES) by default): the seconds it took."""
    n = len(nodes) if n is None else n

    def ok():
        for t in nodes:
            m = redis_metrics(t)
            if m.get("turnout_redis_connected") != connected or m.get("turnout_cluster_nodes") != n:
                return False
        return True
    return wait_for(ok, timeout, "every node: redis_connected %s, cluster_nodes %s" % (connected, n), step=0.05)


def redis_entry(redis, entry, prefix=PREFIX):
    """What Redis holds for ledger entry ENTRY ("b:ID", "k:ID", "t:TENANT"):
    {window tag: {"u", "t", "r": int}} of its counter hashes, and the
    members of its in-flight set (NAME:f) as a list."""
    out, flight = {}, []
    for k in redis.command("KEYS", prefix + entry + ":*") or []:
        k = k.decode()
        tag = k[len(prefix + entry) + 1:]
        if tag == "f":
            flight = [x.decode() for x in (redis.command("ZRANGE", k, 0, -1) or [])]
            continue
        flat = redis.command("HGETALL", k) or []
        out[tag] = {flat[i].decode(): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    return out, flight


def redis_requests(redis, entry, prefix=PREFIX):
    """The requests counted for ENTRY in Redis, over its windows."""
    return sum(h.get("r", 0) for h in redis_entry(redis, entry, prefix)[0].values())


def together(calls, timeout=90):
    """Runs every callable of CALLS in a thread of its own, all released at
    once (a barrier); returns their results in order (an exception is
    returned as its repr)."""
    out = [None] * len(calls)
    gate = threading.Barrier(len(calls) + 1)

    def run(i):
        try:
            gate.wait(30)
        except threading.BrokenBarrierError:
            pass
        try:
            out[i] = calls[i]()
        except Exception as e:   # noqa: B902 - reported by the caller
            out[i] = "%r" % e

    ths = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for th in ths:
        th.start()
    gate.wait(30)
    deadline = time.monotonic() + timeout
    for th in ths:
        th.join(max(0.1, deadline - time.monotonic()))
    assert not any(th.is_alive() for th in ths), "requests still running after %d s" % timeout
    return out


def percentile(samples, p):
    """The nearest-rank P-th percentile of SAMPLES."""
    s = sorted(samples)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))]
