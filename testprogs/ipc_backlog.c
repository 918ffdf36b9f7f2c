/*
 * ipc_backlog [seqpacket] [early-data | pass-pipe]: a listening unix socket (SOCK_STREAM, or
 * SOCK_SEQPACKET with "seqpacket", bound to a path in $STASIS_TMP) with three connections
 * waiting to be accepted at READY, in a known order: a client socket of the server process
 * itself, then forked children A and B. Nothing has been accepted.
 *
 * After the go file the server accepts three times: the connections come in the order
 * they were made (each client names itself with one byte, one record, after go), each gets
 * a reply that its client checks, and a fourth accept finds nothing (EAGAIN). The
 * listener's name and backlog are as before; the children exit 0.
 *
 * With "early-data", A and B (the 2nd and 3rd waiting connections) send data before
 * READY, in several writes: it waits in their connections, which nobody has accepted.
 * B's last early write carries a descriptor (SCM_RIGHTS) of a file in $STASIS_TMP at
 * offset 4, which B then closes. After go each connection accepted holds exactly its
 * client's early data then its name, in order (a stream's bytes; a seqpacket's records one
 * by one, lengths and contents), then nothing more (EAGAIN); the descriptor comes with B's
 * data (with its record), at its offset, reading the rest of the file.
 *
 * "pass-pipe" is early-data where B passes the read end of a pipe instead, with bytes in
 * it, and closes both ends: nothing but the waiting connection holds that pipe, which a
 * dump refuses once it has accepted the connection (too late for the tree). Without a
 * dump the server gets the pipe and reads the bytes.
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
static int kind = SOCK_STREAM;
static int pass_pipe;
static const char pipe_text[] = "in the pipe";

/* What each client sends before READY with early-data (S, A, B), a write each. */
static const char *const early_sent[3][4] = {
	{ NULL },
	{ "a1", "a22", "a333", NULL },
	{ "b4444", "b55555", NULL },
};
/* B's last early write carries a descriptor of this file at this offset (SCM_RIGHTS),
 * which B closes: the connection holds the only reference. */
static char passed_path[4096];
static const char passed_text[] = "0123456789";
#define PASSED_AT 4

/* Sends data with descriptor fd attached (SCM_RIGHTS). */
static ssize_t send_with_fd(int c, const char *data, int fd)
{
	char control[CMSG_SPACE(sizeof(int))];
	memset(control, 0, sizeof(control));
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(c, &msg, 0);
}

/* recv() that also takes a descriptor sent with the data (*fd, -1 if none; a second one
 * is a failure). */
static ssize_t recv_with_fd(int c, char *buf, size_t len, int *fd)
{
	char control[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = { buf, len };
	struct msghdr msg = { 0 };
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = control;
	msg.msg_controllen = sizeof(control);
	ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n >= 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < count; i++) {
			int got;
			memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			V_CHECK(*fd < 0, "a second descriptor came with the data");
			*fd = got;
		}
	}
	return n;
}

static int connect_client(void)
{
	int c = socket(AF_UNIX, kind, 0);
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
	for (const char *const *m = early_sent[me == 'A' ? 1 : 2]; early && *m; m++) {
		ssize_t n;
		if (me == 'B' && !m[1]) {
			int f = open(passed_path, O_RDONLY), p[2];
			if (f < 0 || lseek(f, PASSED_AT, SEEK_SET) != PASSED_AT)
				v_die("open %s: %s", passed_path, strerror(errno));
			if (pass_pipe) {
				if (pipe(p) != 0 || write(p[1], pipe_text, strlen(pipe_text)) != (ssize_t)strlen(pipe_text))
					v_die("pipe: %s", strerror(errno));
				close(p[1]);
				close(f);
				f = p[0];
			}
			n = send_with_fd(c, *m, f);
			close(f);
		} else {
			n = write(c, *m, strlen(*m));
		}
		if (n != (ssize_t)strlen(*m))
			v_die("early write: %s", strerror(errno));
	}
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

/* Reads what connection k must hold: its client's early data (with early-data), then its
 * name, and checks that nothing more is there. Returns the name read. */
static char read_connection(int c, int k, char me)
{
	const char *want[8];
	int n_want = 0;
	for (const char *const *m = early_sent[k]; early && *m; m++)
		want[n_want++] = *m;
	static char names[3][2] = { "S", "A", "B" };
	want[n_want++] = names[k];
	char got[64] = { 0 };
	int passed = -1;
	/* Which record carries the descriptor (B's last early one), or -1. */
	int fd_record = early && k == 2 ? n_want - 2 : -1;
	if (kind == SOCK_SEQPACKET) {
		for (int i = 0; i < n_want; i++) {
			memset(got, 0, sizeof(got));
			int had = passed;
			ssize_t n = wait_readable(c, 5000) ? recv_with_fd(c, got, sizeof(got) - 1, &passed) : -1;
			V_CHECK(n == (ssize_t)strlen(want[i]) && memcmp(got, want[i], (size_t)n) == 0,
				"accept %d (client %c): record %d: got %zd bytes \"%s\", expected \"%s\"", k, me, i, n,
				got, want[i]);
			V_CHECK((passed != had) == (i == fd_record),
				"accept %d (client %c): record %d: a descriptor %s", k, me, i,
				passed != had ? "came with it" : "should have come with it");
		}
	} else {
		char all[64] = { 0 };
		for (int i = 0; i < n_want; i++)
			strcat(all, want[i]);
		size_t want_len = strlen(all), have = 0;
		while (have < want_len && wait_readable(c, 5000)) {
			ssize_t n = recv_with_fd(c, got + have, want_len - have, &passed);
			if (n <= 0)
				break;
			have += (size_t)n;
		}
		V_CHECK(have == want_len && memcmp(got, all, want_len) == 0,
			"accept %d (client %c): got %zu bytes \"%s\", expected \"%s\"", k, me, have, got, all);
		V_CHECK((passed >= 0) == (fd_record >= 0), "accept %d (client %c): %s", k, me,
			passed >= 0 ? "a descriptor came with the bytes" : "no descriptor came with the bytes");
	}
	if (passed >= 0 && pass_pipe) {
		char text[32] = { 0 };
		ssize_t n = read(passed, text, sizeof(text) - 1);
		V_CHECK(n == (ssize_t)strlen(pipe_text) && strcmp(text, pipe_text) == 0,
			"the pipe B sent: read %zd bytes \"%s\"", n, text);
		close(passed);
	} else if (passed >= 0) {
		char text[16] = { 0 };
		off_t at = lseek(passed, 0, SEEK_CUR);
		ssize_t n = read(passed, text, sizeof(text) - 1);
		V_CHECK(at == PASSED_AT && n == (ssize_t)strlen(passed_text + PASSED_AT) &&
				strcmp(text, passed_text + PASSED_AT) == 0,
			"the file B sent: offset %lld, read %zd bytes \"%s\"", (long long)at, n, text);
		close(passed);
	}
	char more;
	ssize_t extra = recv(c, &more, 1, MSG_DONTWAIT);
	V_CHECK(extra < 0 && errno == EAGAIN, "accept %d (client %c): more than expected (recv gave %zd)", k, me,
		extra);
	return names[k][0];
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "early-data") == 0)
			early = 1;
		else if (strcmp(argv[i], "seqpacket") == 0)
			kind = SOCK_SEQPACKET;
		else if (strcmp(argv[i], "pass-pipe") == 0)
			early = pass_pipe = 1;
		else
			v_die("unknown argument %s", argv[i]);
	}
	addr.sun_family = AF_UNIX;
	const char *dir = v_tmp();
	if (strlen(dir) + sizeof("/listener.sock") > sizeof(addr.sun_path))
		v_die("%s: too long for a socket path", dir);
	strcpy(addr.sun_path, dir);
	strcat(addr.sun_path, "/listener.sock");
	unlink(addr.sun_path);
	addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr.sun_path) + 1);
	snprintf(passed_path, sizeof(passed_path), "%s/passed.txt", dir);
	int pf = open(passed_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (pf < 0 || write(pf, passed_text, strlen(passed_text)) != (ssize_t)strlen(passed_text))
		v_die("%s: %s", passed_path, strerror(errno));
	close(pf);
	int l = socket(AF_UNIX, kind, 0);
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
		char name = read_connection(c, k, order[k]);
		char reply[2] = { 'r', name };
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
