"""py_victim: a python3 interpreter whose state survives dump, kill and restore.

Holds state in objects (a class with slots and properties, nested dicts and lists, a
closure, a big bytes object, a set) and in suspended generators (one mid-way through an
infinite Fibonacci sequence, one inside a try/finally of a nested generator), records a
digest of it, prints READY, polls the go file with time.sleep, and then checks the
digest, resumes the generators and checks the values they yield next, and checks that
the interpreter still works (imports, allocation, an open file reads on).
Follows the victim protocol of testprogs/README.md.
"""

import hashlib
import os
import sys
import time


def say(s):
    os.write(1, s.encode())


class Account:
    __slots__ = ("name", "balance", "history")

    def __init__(self, name, balance):
        self.name = name
        self.balance = balance
        self.history = []

    def deposit(self, n):
        self.balance += n
        self.history.append(("deposit", n))

    @property
    def summary(self):
        return f"{self.name}:{self.balance}:{len(self.history)}"


def fib():
    a, b = 0, 1
    while True:
        yield a
        a, b = b, a + b


def inner(n):
    try:
        for i in range(n):
            yield i * i
    finally:
        LOG.append("inner closed")


def outer():
    yield "start"
    yield from inner(10)
    yield "end"


def make_counter(start):
    count = [start]

    def bump(k=1):
        count[0] += k
        return count[0]

    return bump


LOG = []


def digest(state):
    h = hashlib.sha256()
    h.update(repr(sorted(state["dict"].items())).encode())
    h.update(repr(state["list"]).encode())
    h.update(state["blob"])
    h.update(repr(sorted(state["set"])).encode())
    h.update(repr([a.summary for a in state["accounts"]]).encode())
    return h.hexdigest()


def main():
    go = os.environ["STASIS_GO"]
    tmp = os.environ.get("STASIS_TMP") or "/tmp"
    failures = []

    accounts = [Account(f"acct{i}", i * 10) for i in range(200)]
    for i, a in enumerate(accounts):
        for j in range(i % 7):
            a.deposit(j + 1)
    state = {
        "dict": {f"k{i}": [i, str(i) * 3, {"n": i}] for i in range(20000)},
        "list": [i * i for i in range(50000)],
        "blob": bytes((i * 7 + 3) % 256 for i in range(1 << 20)),
        "set": {i * 3 for i in range(10000)},
        "accounts": accounts,
    }
    before = digest(state)

    gen = fib()
    for _ in range(50):
        next(gen)  # next value is fib(50)
    nested = outer()
    assert next(nested) == "start"
    assert next(nested) == 0
    assert next(nested) == 1  # suspended inside inner(), inside try/finally

    counter = make_counter(100)
    counter(5)

    path = os.path.join(tmp, f"py-victim-{os.getpid()}.txt")
    with open(path, "w") as f:
        f.write("".join(f"row {i}\n" for i in range(1000)))
    fh = open(path)
    for _ in range(123):
        fh.readline()

    say("READY\n")
    ticks = 0
    while not os.path.exists(go):
        time.sleep(0.01)
        ticks += 1

    after = digest(state)
    if after != before:
        failures.append(f"state digest {after}, was {before}")
    v = next(gen)
    if v != 12586269025:
        failures.append(f"generator yielded {v}, expected fib(50) = 12586269025")
    if next(gen) != 20365011074:
        failures.append("generator does not go on with fib(51)")
    rest = list(nested)
    if rest != [4, 9, 16, 25, 36, 49, 64, 81, "end"]:
        failures.append(f"nested generator yielded {rest}")
    if LOG != ["inner closed"]:
        failures.append(f"finally block of the inner generator: log {LOG}")
    if counter() != 106:
        failures.append("closure state lost")
    line = fh.readline()
    if line != "row 123\n":
        failures.append(f"open file reads {line!r}, expected 'row 123'")
    fh.close()
    # the interpreter still works: a fresh import, allocation, formatting
    import json
    import decimal

    if json.loads(json.dumps({"a": [1, 2]})) != {"a": [1, 2]}:
        failures.append("json round trip")
    if str(decimal.Decimal(1) / decimal.Decimal(7))[:8] != "0.142857":
        failures.append("decimal")
    big = [str(i) for i in range(200000)]
    if len("".join(big)) != 1088890:
        failures.append("allocation after restore")
    if not os.environ.get("STASIS_TMP"):
        os.unlink(path)

    if failures:
        for f in failures:
            say(f"FAIL: {f}\n")
        sys.exit(1)
    say("PASS\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
