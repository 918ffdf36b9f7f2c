"""A python3 multiprocessing pool (a real program using a process tree): three forked
workers, their pipes and the pool's semaphores (sem_open: unlinked files in /dev/shm,
mapped shared), and 32 MiB the workers share copy-on-write with the parent.

Before READY the pool computes a first batch; after the go file a second, larger batch,
then a new worker process sends the length of the shared buffer back through a queue.
Every result is compared with what this process computes itself; prints PASS or FAIL.
"""

import hashlib
import multiprocessing as mp
import os
import sys
import time


def work(i):
    h = hashlib.sha256()
    for k in range(2000):
        h.update(f"{i}:{k}".encode())
    return i, h.hexdigest()


def main():
    go = os.environ["STASIS_GO"]
    mp.set_start_method("fork")
    big = bytearray(os.urandom(1 << 20)) * 32
    digest = hashlib.sha256(big).hexdigest()

    def report(q):
        q.put((len(big), hashlib.sha256(big).hexdigest()))

    with mp.Pool(3) as pool:
        first = dict(pool.map(work, range(30)))
        os.write(1, b"READY\n")
        while not os.path.exists(go):
            time.sleep(0.01)
        second = dict(pool.map(work, range(60)))
        q = mp.Queue()
        p = mp.Process(target=report, args=(q,))
        p.start()
        seen = q.get(timeout=30)
        p.join(30)
    want = dict(work(i) for i in range(60))
    fails = []
    if any(first[i] != want[i] for i in range(30)):
        fails.append("the first batch differs")
    if any(second[i] != want[i] for i in range(60)):
        fails.append("the second batch (after restore) differs")
    if seen != (len(big), digest):
        fails.append(f"the new worker saw {seen[0]} bytes of shared memory, other than the parent's")
    if p.exitcode != 0:
        fails.append(f"the new worker ended with {p.exitcode}")
    for f in fails:
        print(f"FAIL: {f}", flush=True)
    if not fails:
        print("PASS", flush=True)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
