/*
 * ipc_extpeer MODE: holds one end of a pipe or a unix socket whose other end (or, for a
 * listener, the connecting client) is in a helper process outside the tree: a
 * grandchild whose parent exited, so it is re-parented away (to the test process, a
 * child subreaper). The dump must refuse this and leave everything running.
 *
 * MODE: pipe-read (we hold the read end, data from the helper queued), pipe-write (we
 * hold the write end, our data queued for the helper), unix-stream, unix-dgram (a
 * socketpair, data queued both ways), listener (a listening socket with the helper's
 * connection waiting in its backlog), pty (we hold a pty master, the helper its slave, in
 * raw mode, with data queued for us).
 *
 * The helper prints "helper: PID" before READY. After the go file both sides check that
 * the data queued at READY is still there (a refused dump must not consume it) and
 * exchange a new message; the helper exits 0 when its side is right (the test reaps it
 * and checks its status).
 */
#include "victim.h"

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>

static const char before[] = "queued before the dump";
static const char after[] = "sent after the go file";

static int wait_in(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1;
}

/* Reads exactly n bytes (stream) or one message (packet) and compares. */
static int expect(int fd, const char *want, size_t n, const char *who, const char *what)
{
	char buf[128];
	size_t got = 0;
	while (got < n) {
		if (!wait_in(fd, 5000)) {
			v_fail("%s: %s: nothing within 5 s after %zu bytes", who, what, got);
			return 0;
		}
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0) {
			v_fail("%s: %s: read gave %zd (%s)", who, what, r, r < 0 ? strerror(errno) : "EOF");
			return 0;
		}
		got += (size_t)r;
	}
	if (got != n || memcmp(buf, want, n) != 0) {
		v_fail("%s: %s: got %zu bytes, other than expected", who, what, got);
		return 0;
	}
	return 1;
}

static void put(int fd, const char *s, size_t n, const char *who)
{
	if (write(fd, s, n) != (ssize_t)n)
		v_fail("%s: write: %s", who, strerror(errno));
}

static void helper(const char *mode, int fd, int sync_w, const struct sockaddr_un *addr, socklen_t alen)
{
	v_print("helper: %d\n", (int)getpid());
	if (strcmp(mode, "pipe-read") == 0 || strcmp(mode, "unix-stream") == 0 ||
	    strcmp(mode, "unix-dgram") == 0 || strcmp(mode, "pty") == 0)
		put(fd, before, sizeof(before), "helper");
	if (strcmp(mode, "listener") == 0) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (fd < 0 || connect(fd, (const struct sockaddr *)addr, alen) != 0)
			v_die("helper: connect: %s", strerror(errno));
		put(fd, before, sizeof(before), "helper");
	}
	if (write(sync_w, "s", 1) != 1)
		_exit(3);
	close(sync_w);
	/* wait for the go file (at most 2 minutes: never outlive a broken test for long) */
	struct stat st;
	const char *go = v_go_path();
	for (int i = 0; stat(go, &st) != 0; i++) {
		if (i > 12000)
			_exit(4);
		v_sleep_ms(10);
	}
	if (strcmp(mode, "pipe-read") == 0) {
		put(fd, after, sizeof(after), "helper");
	} else if (strcmp(mode, "pipe-write") == 0) {
		expect(fd, before, sizeof(before), "helper", "data queued at the dump");
		expect(fd, after, sizeof(after), "helper", "data sent after go");
	} else {
		expect(fd, before, sizeof(before), "helper", "data queued at the dump");
		put(fd, after, sizeof(after), "helper");
		expect(fd, after, sizeof(after), "helper", "the victim's reply");
		/* A pty master that closes drops what the slave has not taken in yet: the
		 * victim waits for this before it ends. */
		if (strcmp(mode, "pty") == 0)
			put(fd, "k", 1, "helper");
	}
	_exit(v_failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	if (argc != 2)
		v_die("usage: ipc_extpeer pipe-read|pipe-write|unix-stream|unix-dgram|listener|pty");
	const char *mode = argv[1];
	int mine = -1, theirs = -1;
	struct sockaddr_un addr;
	socklen_t alen = 0;
	memset(&addr, 0, sizeof(addr));
	int p[2];
	if (strcmp(mode, "pipe-read") == 0 || strcmp(mode, "pipe-write") == 0) {
		if (pipe(p) != 0)
			v_die("pipe: %s", strerror(errno));
		int r = strcmp(mode, "pipe-read") == 0;
		mine = r ? p[0] : p[1];
		theirs = r ? p[1] : p[0];
	} else if (strcmp(mode, "unix-stream") == 0 || strcmp(mode, "unix-dgram") == 0) {
		int type = strcmp(mode, "unix-stream") == 0 ? SOCK_STREAM : SOCK_DGRAM;
		if (socketpair(AF_UNIX, type, 0, p) != 0)
			v_die("socketpair: %s", strerror(errno));
		mine = p[0];
		theirs = p[1];
	} else if (strcmp(mode, "listener") == 0) {
		addr.sun_family = AF_UNIX;
		const char *dir = v_tmp();
		if (strlen(dir) + sizeof("/ext.sock") > sizeof(addr.sun_path))
			v_die("socket path under %s is too long", dir);
		memcpy(addr.sun_path, dir, strlen(dir));
		memcpy(addr.sun_path + strlen(dir), "/ext.sock", sizeof("/ext.sock"));
		unlink(addr.sun_path);
		alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr.sun_path) + 1);
		mine = socket(AF_UNIX, SOCK_STREAM, 0);
		if (mine < 0 || bind(mine, (struct sockaddr *)&addr, alen) != 0 || listen(mine, 4) != 0)
			v_die("listen on %s: %s", addr.sun_path, strerror(errno));
	} else if (strcmp(mode, "pty") == 0) {
		mine = posix_openpt(O_RDWR | O_NOCTTY);
		if (mine < 0 || grantpt(mine) != 0 || unlockpt(mine) != 0)
			v_die("posix_openpt: %s", strerror(errno));
		const char *name = ptsname(mine);
		theirs = name ? open(name, O_RDWR | O_NOCTTY) : -1;
		struct termios t;
		if (theirs < 0 || tcgetattr(theirs, &t) != 0)
			v_die("open the pty slave: %s", strerror(errno));
		cfmakeraw(&t);
		if (tcsetattr(theirs, TCSANOW, &t) != 0)
			v_die("raw mode: %s", strerror(errno));
	} else {
		v_die("unknown mode %s", mode);
	}
	int sync[2];
	if (pipe(sync) != 0)
		v_die("pipe: %s", strerror(errno));
	if (strcmp(mode, "pipe-write") == 0)
		put(mine, before, sizeof(before), "victim");
	pid_t mid = fork();
	if (mid < 0)
		v_die("fork: %s", strerror(errno));
	if (mid == 0) {
		pid_t h = fork();
		if (h == 0) {
			close(sync[0]);
			close(mine);
			helper(mode, theirs, sync[1], &addr, alen);
		}
		_exit(h < 0 ? 1 : 0);
	}
	int st = 0;
	if (waitpid(mid, &st, 0) != mid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		v_die("the intermediate child failed (0x%x)", st);
	close(sync[1]);
	if (theirs >= 0)
		close(theirs);
	char c;
	if (!wait_in(sync[0], 5000) || read(sync[0], &c, 1) != 1)
		v_die("the helper did not start");
	close(sync[0]);
	if (strcmp(mode, "pipe-read") == 0 || strcmp(mode, "unix-stream") == 0 || strcmp(mode, "unix-dgram") == 0 ||
	    strcmp(mode, "pty") == 0) {
		if (!wait_in(mine, 5000))
			v_die("nothing queued from the helper");
	}

	v_ready();
	v_wait_go();

	if (strcmp(mode, "pipe-read") == 0) {
		expect(mine, before, sizeof(before), "victim", "data queued at the dump");
		expect(mine, after, sizeof(after), "victim", "data sent after go");
	} else if (strcmp(mode, "pipe-write") == 0) {
		put(mine, after, sizeof(after), "victim");
	} else {
		int conn = mine;
		if (strcmp(mode, "listener") == 0) {
			conn = wait_in(mine, 5000) ? accept(mine, NULL, NULL) : -1;
			if (conn < 0) {
				v_fail("victim: the waiting connection cannot be accepted: %s", strerror(errno));
				v_finish();
			}
		}
		expect(conn, before, sizeof(before), "victim", "data queued at the dump");
		put(conn, before, sizeof(before), "victim");
		expect(conn, after, sizeof(after), "victim", "data sent after go");
		put(conn, after, sizeof(after), "victim");
		if (strcmp(mode, "pty") == 0)
			expect(conn, "k", 1, "victim", "the helper's last word");
	}
	v_finish();
}
