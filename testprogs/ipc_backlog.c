/*
 * ipc_backlog [early-data]: a listening unix socket (SOCK_STREAM, bound to a path in
 * $STASIS_TMP) with three connections waiting to be accepted at READY, in a known order:
 * a client socket of the server process itself, then forked children A and B. Nothing
 * has been accepted.
 *
 * After the go file the server accepts three times: the connections come in the order
 * they were made (each client names itself with one byte after go), each gets a reply
 * that its client checks, and a fourth accept finds nothing (EAGAIN). The listener's
 * name and backlog are as before; the children exit 0.
 *
 * With "early-data", child A sends a byte before READY: what a connection not yet
 * accepted holds cannot be read, so the dump must be refused; the victim then goes on
 * and A's early byte arrives before its name.
 */
#include "victim.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static struct sockaddr_un addr;
static socklen_t addr_len;
static int early;

static int connect_client(void)
{
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&addr, addr_len) != 0)
		v_die("connect: %s", strerror(errno));
	return c;
}

static int wait_readable(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1;
}

/* A child client: connects, tells the parent, waits for go, names itself, checks the
 * reply. */
static void child_main(char me, int sync)
{
	int c = connect_client();
	if (early && me == 'A' && write(c, "e", 1) != 1)
		v_die("early write: %s", strerror(errno));
	if (write(sync, "c", 1) != 1)
		v_die("sync: %s", strerror(errno));
	close(sync);
	v_wait_go();
	V_CHECK(write(c, &me, 1) == 1, "client %c: write: %s", me, strerror(errno));
	char got[8] = { 0 };
	ssize_t n = wait_readable(c, 5000) ? read(c, got, sizeof(got)) : -1;
	char want[3] = { 'r', me, 0 };
	V_CHECK(n == 2 && memcmp(got, want, 2) == 0, "client %c: reply %zd bytes %.2s", me, n, got);
	_exit(v_failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	early = argc > 1 && strcmp(argv[1], "early-data") == 0;
	addr.sun_family = AF_UNIX;
	const char *dir = v_tmp();
	if (strlen(dir) + sizeof("/listener.sock") > sizeof(addr.sun_path))
		v_die("%s: too long for a socket path", dir);
	strcpy(addr.sun_path, dir);
	strcat(addr.sun_path, "/listener.sock");
	unlink(addr.sun_path);
	addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr.sun_path) + 1);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, addr_len) != 0 || listen(l, 7) != 0)
		v_die("listen: %s", strerror(errno));
	if (fcntl(l, F_SETFL, O_NONBLOCK) != 0)
		v_die("O_NONBLOCK: %s", strerror(errno));

	int self = connect_client();
	pid_t kids[2];
	const char names[2] = { 'A', 'B' };
	for (int i = 0; i < 2; i++) {
		int sp[2];
		if (pipe(sp) != 0)
			v_die("pipe: %s", strerror(errno));
		kids[i] = fork();
		if (kids[i] < 0)
			v_die("fork: %s", strerror(errno));
		if (kids[i] == 0) {
			close(sp[0]);
			close(l);
			close(self);
			child_main(names[i], sp[1]);
		}
		close(sp[1]);
		char b;
		if (!wait_readable(sp[0], 5000) || read(sp[0], &b, 1) != 1)
			v_die("child %c did not connect", names[i]);
		close(sp[0]);
	}

	v_ready();
	v_wait_go();

	V_CHECK(write(self, "S", 1) == 1, "self client: write: %s", strerror(errno));
	const char order[3] = { 'S', 'A', 'B' };
	for (int k = 0; k < 3; k++) {
		int c = -1;
		for (int t = 0; t < 500 && c < 0; t++) {
			c = accept(l, NULL, NULL);
			if (c < 0 && errno == EAGAIN)
				v_sleep_ms(10);
			else if (c < 0)
				break;
		}
		if (c < 0) {
			v_fail("accept %d: %s", k, strerror(errno));
			continue;
		}
		char got[4] = { 0 };
		size_t want_len = early && order[k] == 'A' ? 2 : 1;
		size_t have = 0;
		while (have < want_len && wait_readable(c, 5000)) {
			ssize_t n = read(c, got + have, want_len - have);
			if (n <= 0)
				break;
			have += (size_t)n;
		}
		if (want_len == 2)
			V_CHECK(have == 2 && got[0] == 'e' && got[1] == 'A',
				"accept %d: expected A's early byte then its name, got %zu bytes %.2s", k, have, got);
		else
			V_CHECK(have == 1 && got[0] == order[k], "accept %d: expected client %c, got %zu bytes %.1s", k,
				order[k], have, got);
		char reply[2] = { 'r', got[want_len - 1] };
		V_CHECK(write(c, reply, 2) == 2, "reply %d: %s", k, strerror(errno));
		if (order[k] == 'S') {
			char r[4] = { 0 };
			ssize_t n = wait_readable(self, 5000) ? read(self, r, sizeof(r)) : -1;
			V_CHECK(n == 2 && r[0] == 'r' && r[1] == 'S', "self client: reply %zd bytes", n);
		}
		close(c);
	}
	int extra = accept(l, NULL, NULL);
	V_CHECK(extra < 0 && errno == EAGAIN, "a fourth accept gave %d (%s)", extra, strerror(errno));
	struct sockaddr_un now;
	socklen_t now_len = sizeof(now);
	V_CHECK(getsockname(l, (struct sockaddr *)&now, &now_len) == 0 && strcmp(now.sun_path, addr.sun_path) == 0,
		"listener: name %s, expected %s", now.sun_path, addr.sun_path);
	int acc = 0;
	socklen_t al = sizeof(acc);
	V_CHECK(getsockopt(l, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == 0 && acc == 1, "listener: not listening");
	for (int i = 0; i < 2; i++) {
		int status = -1;
		pid_t w = 0;
		for (int t = 0; t < 500 && w == 0; t++) {
			w = waitpid(kids[i], &status, WNOHANG);
			if (w == 0)
				v_sleep_ms(10);
		}
		V_CHECK(w == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0,
			"client %c: waitpid %d, status 0x%x", names[i], (int)w, status);
	}
	v_finish();
}
