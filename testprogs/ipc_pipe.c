/*
 * ipc_pipe: pipes whose two ends are both in the tree, with data in flight.
 *
 * - Pipe A (capacity raised to 128 KiB with F_SETPIPE_SZ): a forked producer writes a
 *   1 MiB byte stream (a known function of the position) in 4 KiB chunks; at READY the
 *   pipe is full (FIONREAD == capacity) and the producer is blocked in write(). The
 *   consumer (the root) reads nothing before the go file. After it: the capacity and
 *   FIONREAD are as at the dump, the consumer reads the whole stream (every byte at its
 *   position, nothing lost, added or reordered) and then EOF (no stray write end was
 *   left open by the restore), and the producer exits 0 (its own checks passed).
 * - Pipe B (capacity 8 KiB): read end O_NONBLOCK, write end blocking, 11 bytes queued.
 *   After restore: flags and capacity as set, exactly those bytes, then EAGAIN, and the
 *   pipe still carries new data.
 * - Pipe C: both ends O_NONBLOCK, filled to its capacity (16 KiB): a further write
 *   fails with EAGAIN; the data reads back intact.
 */
#include "victim.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>

#define CAP_A (128 * 1024)
#define TOTAL_A (1024 * 1024)
#define CHUNK 4096
#define CAP_B 8192
#define CAP_C 16384

static const char msg_b[] = "hello\0world"; /* 11 bytes, with a NUL inside */

static unsigned char stream_byte(uint64_t pos)
{
	uint64_t w = v_mix(pos / 8 + 0x5157);
	return (unsigned char)(w >> (8 * (pos % 8)));
}

static unsigned char c_byte(size_t i)
{
	return (unsigned char)(v_mix(i + 77) >> 13);
}

static int fionread(int fd)
{
	int n = -1;
	if (ioctl(fd, FIONREAD, &n) != 0)
		return -1;
	return n;
}

static void producer(int wfd)
{
	static unsigned char buf[CHUNK];
	uint64_t pos = 0;
	while (pos < TOTAL_A) {
		for (size_t i = 0; i < CHUNK; i++)
			buf[i] = stream_byte(pos + i);
		size_t off = 0;
		while (off < CHUNK) {
			ssize_t n = write(wfd, buf + off, CHUNK - off);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				v_fail("producer: write at %llu: %s", (unsigned long long)(pos + off),
				       strerror(errno));
				_exit(1);
			}
			off += (size_t)n;
		}
		pos += CHUNK;
	}
	int fl = fcntl(wfd, F_GETFL);
	V_CHECK((fl & O_ACCMODE) == O_WRONLY && !(fl & O_NONBLOCK),
		"producer: write end flags 0x%x, expected O_WRONLY, blocking", fl);
	int cap = fcntl(wfd, F_GETPIPE_SZ);
	V_CHECK(cap == CAP_A, "producer: F_GETPIPE_SZ on the write end is %d, expected %d", cap,
		CAP_A);
	close(wfd);
	_exit(v_failures ? 1 : 0);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	int a[2], b[2], c[2];
	if (pipe(a) != 0 || pipe(b) != 0 || pipe2(c, O_NONBLOCK) != 0)
		v_die("pipe: %s", strerror(errno));
	if (fcntl(a[1], F_SETPIPE_SZ, CAP_A) != CAP_A)
		v_die("F_SETPIPE_SZ %d: %s", CAP_A, strerror(errno));
	if (fcntl(b[0], F_SETPIPE_SZ, CAP_B) != CAP_B)
		v_die("F_SETPIPE_SZ %d: %s", CAP_B, strerror(errno));
	if (fcntl(c[0], F_SETPIPE_SZ, CAP_C) != CAP_C)
		v_die("F_SETPIPE_SZ %d: %s", CAP_C, strerror(errno));

	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		close(a[0]);
		close(b[0]);
		close(b[1]);
		close(c[0]);
		close(c[1]);
		producer(a[1]);
	}
	close(a[1]);

	/* B: read end nonblocking, write end blocking, 11 bytes queued */
	if (fcntl(b[0], F_SETFL, O_NONBLOCK) != 0)
		v_die("F_SETFL: %s", strerror(errno));
	if (write(b[1], msg_b, sizeof(msg_b) - 1) != (ssize_t)sizeof(msg_b) - 1)
		v_die("write b: %s", strerror(errno));

	/* C: fill it to capacity */
	static unsigned char cbuf[CAP_C];
	for (size_t i = 0; i < CAP_C; i++)
		cbuf[i] = c_byte(i);
	if (write(c[1], cbuf, CAP_C) != CAP_C)
		v_die("fill c: %s", strerror(errno));
	if (write(c[1], "x", 1) != -1 || errno != EAGAIN)
		v_die("pipe c is not full after %d bytes", CAP_C);

	/* wait until the producer has filled pipe A and blocks */
	int full = 0;
	for (int i = 0; i < 1000 && !full; i++) {
		full = fionread(a[0]) == CAP_A;
		if (!full)
			v_sleep_ms(5);
	}
	if (!full)
		v_die("pipe A holds %d bytes after 5 s, expected %d", fionread(a[0]), CAP_A);
	char path[64], st[512];
	int blocked = 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)child);
	for (int i = 0; i < 500 && !blocked; i++) {
		if (v_read_file(path, st, sizeof(st)) > 0) {
			char *p = strrchr(st, ')');
			blocked = p && p[2] == 'S';
		}
		if (!blocked)
			v_sleep_ms(10);
	}
	if (!blocked)
		v_die("the producer is not sleeping in write");

	v_ready();
	v_wait_go();

	/* pipe A */
	int cap = fcntl(a[0], F_GETPIPE_SZ);
	V_CHECK(cap == CAP_A, "pipe A: F_GETPIPE_SZ %d, expected %d", cap, CAP_A);
	int fl = fcntl(a[0], F_GETFL);
	V_CHECK((fl & O_ACCMODE) == O_RDONLY && !(fl & O_NONBLOCK),
		"pipe A: read end flags 0x%x, expected O_RDONLY, blocking", fl);
	int q = fionread(a[0]);
	V_CHECK(q == CAP_A, "pipe A: %d bytes in flight after restore, expected %d", q, CAP_A);
	static unsigned char rbuf[3001]; /* an odd size: reads cross the writer's chunks */
	uint64_t pos = 0;
	int bad = 0, eof = 0;
	while (!eof) {
		struct pollfd pfd = { a[0], POLLIN, 0 };
		int r = poll(&pfd, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r == 0) {
			v_fail("pipe A: no data and no EOF within 5 s after %llu bytes (a write end left open?)",
			       (unsigned long long)pos);
			break;
		}
		ssize_t n = read(a[0], rbuf, sizeof(rbuf));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			v_fail("pipe A: read after %llu bytes: %s", (unsigned long long)pos,
			       strerror(errno));
			break;
		}
		if (n == 0) {
			eof = 1;
			break;
		}
		for (ssize_t i = 0; i < n && !bad; i++)
			if (rbuf[i] != stream_byte(pos + (uint64_t)i)) {
				v_fail("pipe A: byte %llu is 0x%02x, expected 0x%02x",
				       (unsigned long long)(pos + (uint64_t)i), rbuf[i],
				       stream_byte(pos + (uint64_t)i));
				bad = 1;
			}
		pos += (uint64_t)n;
		if (bad)
			break;
	}
	if (eof)
		V_CHECK(pos == TOTAL_A, "pipe A: EOF after %llu bytes, expected %d",
			(unsigned long long)pos, TOTAL_A);
	close(a[0]);
	if (bad || !eof)
		kill(child, SIGKILL);
	int status = 0;
	pid_t w;
	for (int i = 0; i < 500; i++) {
		w = waitpid(child, &status, WNOHANG);
		if (w != 0)
			break;
		v_sleep_ms(10);
	}
	if (w != child)
		v_fail("producer %d did not exit within 5 s (waitpid %d: %s)", (int)child, (int)w,
		       strerror(errno));
	else
		V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			"producer ended with status 0x%x, expected exit 0", status);

	/* pipe B */
	cap = fcntl(b[0], F_GETPIPE_SZ);
	V_CHECK(cap == CAP_B, "pipe B: F_GETPIPE_SZ %d, expected %d", cap, CAP_B);
	fl = fcntl(b[0], F_GETFL);
	V_CHECK((fl & O_ACCMODE) == O_RDONLY && (fl & O_NONBLOCK),
		"pipe B: read end flags 0x%x, expected O_RDONLY|O_NONBLOCK", fl);
	fl = fcntl(b[1], F_GETFL);
	V_CHECK((fl & O_ACCMODE) == O_WRONLY && !(fl & O_NONBLOCK),
		"pipe B: write end flags 0x%x, expected O_WRONLY, blocking", fl);
	q = fionread(b[0]);
	V_CHECK(q == (int)sizeof(msg_b) - 1, "pipe B: %d bytes queued, expected %d", q,
		(int)sizeof(msg_b) - 1);
	char bb[64];
	ssize_t n = read(b[0], bb, sizeof(bb));
	V_CHECK(n == (ssize_t)sizeof(msg_b) - 1 && memcmp(bb, msg_b, sizeof(msg_b) - 1) == 0,
		"pipe B: read %zd bytes (%s), expected the 11 queued bytes", n,
		n < 0 ? strerror(errno) : "content compared");
	n = read(b[0], bb, sizeof(bb));
	V_CHECK(n == -1 && errno == EAGAIN, "pipe B: a read of the empty pipe gave %zd (%s), expected EAGAIN",
		n, n < 0 ? strerror(errno) : "data");
	V_CHECK(write(b[1], "again", 5) == 5, "pipe B: write after restore: %s", strerror(errno));
	n = read(b[0], bb, sizeof(bb));
	V_CHECK(n == 5 && memcmp(bb, "again", 5) == 0, "pipe B: new data did not come through (%zd)", n);

	/* pipe C */
	cap = fcntl(c[1], F_GETPIPE_SZ);
	V_CHECK(cap == CAP_C, "pipe C: F_GETPIPE_SZ %d, expected %d", cap, CAP_C);
	V_CHECK((fcntl(c[0], F_GETFL) & O_NONBLOCK) && (fcntl(c[1], F_GETFL) & O_NONBLOCK),
		"pipe C: an end lost O_NONBLOCK");
	n = write(c[1], "x", 1);
	V_CHECK(n == -1 && errno == EAGAIN, "pipe C: a write into the full pipe gave %zd (%s), expected EAGAIN",
		n, n < 0 ? strerror(errno) : "written");
	static unsigned char cin[CAP_C + 16];
	size_t got = 0;
	for (;;) {
		n = read(c[0], cin + got, sizeof(cin) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	V_CHECK(got == CAP_C, "pipe C: read back %zu bytes, expected %d", got, CAP_C);
	for (size_t i = 0; i < got && i < CAP_C; i++)
		if (cin[i] != c_byte(i)) {
			v_fail("pipe C: byte %zu differs", i);
			break;
		}
	v_finish();
}
