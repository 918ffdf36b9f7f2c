/*
 * ipc_extsk: unix sockets whose peer is in a helper outside the tree (a grandchild whose
 * parent exited, re-parented to the test process), for `dump --ext-unix-sk`.
 *
 * - a SOCK_STREAM socketpair: the helper holds the other end and has sent "from outside"
 *   before READY, which we have not read;
 * - a SOCK_DGRAM socket connected to the helper's datagram socket bound to a path in
 *   $STASIS_TMP (like a logging socket), with one datagram sent before READY.
 *
 * After the go file we send a second datagram, then read the stream: the queued bytes,
 * then end of file, and a write gives EPIPE. Without a restore the helper closes its end
 * once it has both datagrams; after a restore the peer of the restored stream socket is
 * gone (it was outside the tree), so the end of file comes at once. getpeername of the
 * datagram socket still names the helper's path. The helper exits 0 when it has received
 * both datagrams, in order (the test checks its status).
 *
 * The helper prints "helper: PID" before READY.
 */
#include "victim.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static const char queued[] = "from outside";

static int wait_in(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1;
}

static void helper_main(int stream, int dgram)
{
	v_wait_go();
	char buf[64];
	ssize_t n = wait_in(dgram, 5000) ? recv(dgram, buf, sizeof(buf), 0) : -1;
	V_CHECK(n == 6 && memcmp(buf, "before", 6) == 0, "helper: first datagram %zd bytes", n);
	n = wait_in(dgram, 5000) ? recv(dgram, buf, sizeof(buf), 0) : -1;
	V_CHECK(n == 5 && memcmp(buf, "after", 5) == 0, "helper: second datagram %zd bytes", n);
	close(stream);
	_exit(v_failures ? 1 : 0);
}

int main(void)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	const char *dir = v_tmp();
	if (strlen(dir) + sizeof("/log.sock") > sizeof(a.sun_path))
		v_die("%s: too long for a socket path", dir);
	strcpy(a.sun_path, dir);
	strcat(a.sun_path, "/log.sock");
	unlink(a.sun_path);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(a.sun_path) + 1);

	int sp[2], sync[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0 || pipe(sync) != 0)
		v_die("socketpair/pipe: %s", strerror(errno));
	pid_t mid = fork();
	if (mid < 0)
		v_die("fork: %s", strerror(errno));
	if (mid == 0) {
		pid_t h = fork();
		if (h != 0)
			_exit(h < 0 ? 1 : 0);
		/* the helper: outside the tree once its parent is gone */
		close(sp[0]);
		close(sync[0]);
		int d = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (d < 0 || bind(d, (struct sockaddr *)&a, alen) != 0)
			v_die("helper: bind %s: %s", a.sun_path, strerror(errno));
		if (write(sp[1], queued, strlen(queued)) != (ssize_t)strlen(queued))
			v_die("helper: write: %s", strerror(errno));
		v_print("helper: %d\n", (int)getpid());
		if (write(sync[1], "h", 1) != 1)
			v_die("helper: sync: %s", strerror(errno));
		close(sync[1]);
		helper_main(sp[1], d);
	}
	close(sp[1]);
	close(sync[1]);
	int status;
	if (waitpid(mid, &status, 0) != mid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		v_die("the helper's parent failed");
	char b;
	if (!wait_in(sync[0], 5000) || read(sync[0], &b, 1) != 1)
		v_die("the helper did not start");
	close(sync[0]);
	int d = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (d < 0 || connect(d, (struct sockaddr *)&a, alen) != 0 || send(d, "before", 6, 0) != 6)
		v_die("datagram to the helper: %s", strerror(errno));
	int s = sp[0];
	/* the helper's bytes are queued for us */
	if (!wait_in(s, 5000))
		v_die("nothing queued from the helper");

	v_ready();
	v_wait_go();

	V_CHECK(send(d, "after", 5, 0) == 5, "datagram after go: %s", strerror(errno));
	struct sockaddr_un peer;
	socklen_t plen = sizeof(peer);
	V_CHECK(getpeername(d, (struct sockaddr *)&peer, &plen) == 0 && strcmp(peer.sun_path, a.sun_path) == 0,
		"datagram socket: peer %s, expected %s", plen > offsetof(struct sockaddr_un, sun_path) ? peer.sun_path : "(none)",
		a.sun_path);
	char buf[64];
	size_t have = 0;
	ssize_t n = 0;
	while (have < sizeof(buf) && wait_in(s, 5000) && (n = read(s, buf + have, sizeof(buf) - have)) > 0)
		have += (size_t)n;
	V_CHECK(have == strlen(queued) && memcmp(buf, queued, have) == 0, "stream: %zu bytes before the end", have);
	V_CHECK(n == 0, "stream: expected end of file after the queued bytes, read gave %zd (%s)", n,
		n < 0 ? strerror(errno) : "data");
	n = send(s, "x", 1, MSG_NOSIGNAL);
	V_CHECK(n < 0 && errno == EPIPE, "stream: a write after the end gave %zd (%s), expected EPIPE", n,
		n < 0 ? strerror(errno) : "sent");
	v_finish();
}
