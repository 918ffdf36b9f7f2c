"""pty_bash: an interactive bash driven through a pseudo-terminal by python3 (pty.fork).

bash runs with job control on the pty (its session's controlling terminal, readline
editing the input in non-canonical mode). Before READY the driver sets a shell variable,
checks a computed answer, and leaves the output of one command unread ("queued-output"
sits in the master). After the go file it reads that output, has bash report the
variable, its pid and its terminal's window size, runs a child in the foreground (a
job: bash gives the terminal to it and takes it back), and ends bash with `exit 7`.
Follows the victim protocol of testprogs/README.md.
"""

import fcntl
import os
import pty
import select
import struct
import sys
import termios
import time


def say(s):
    os.write(1, s.encode())


def fail(msg):
    say(f"FAIL: {msg}\n")
    global failures
    failures += 1


failures = 0


def read_until(fd, marker, timeout=5.0):
    """Reads from fd until `marker` is seen; returns everything read."""
    got = b""
    end = time.monotonic() + timeout
    while marker not in got:
        left = end - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        got += chunk
    return got


def main():
    go = os.environ.get("STASIS_GO", "/tmp/stasis-go")
    pid, fd = pty.fork()
    if pid == 0:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PS1": "$ ", "TERM": "dumb", "HOME": "/"}
        os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "-i"], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    os.write(fd, b"V=before; echo answer $((6*7))\n")
    out = read_until(fd, b"answer 42")
    if b"answer 42" not in out:
        say(f"FAIL: setup: bash did not answer: {out!r}\n")
        sys.exit(1)
    read_until(fd, b"$ ", 1.0)
    # this command's output stays unread in the master until after the dump
    os.write(fd, b"echo queued-$((1+1))-output\n")
    time.sleep(0.3)
    say("READY\n")
    while not os.path.exists(go):
        time.sleep(0.01)

    out = read_until(fd, b"queued-2-output\r\n")
    if b"queued-2-output\r\n" not in out:
        fail(f"the queued output is not there: {out!r}")
    read_until(fd, b"$ ", 1.0)
    os.write(fd, b'echo "state $V $$ $(stty size)"\n')
    out = read_until(fd, b"\r\n$ ")
    want = f"state before {pid} 40 120".encode()
    if want not in out:
        fail(f"bash reports {out!r}, expected {want!r}")
    # a foreground job: bash hands the terminal to it and takes it back
    os.write(fd, b"sh -c 'read line; echo job-got-$line'\n")
    time.sleep(0.2)
    os.write(fd, b"xyz\n")
    out = read_until(fd, b"job-got-xyz")
    if b"job-got-xyz" not in out:
        fail(f"the foreground job did not read its line: {out!r}")
    read_until(fd, b"$ ", 2.0)
    os.write(fd, b"exit 7\n")
    read_until(fd, b"\x00", 2.0)
    end = time.monotonic() + 5
    status = None
    while time.monotonic() < end:
        w, st = os.waitpid(pid, os.WNOHANG)
        if w == pid:
            status = st
            break
        time.sleep(0.01)
    if status is None or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 7:
        fail(f"bash ended with status {status}, expected exit 7")
    if failures:
        say(f"FAIL: {failures} check(s) failed\n")
        sys.exit(1)
    say("PASS\n")
    sys.exit(0)


main()
