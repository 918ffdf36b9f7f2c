/*
 * ipc_scm: a unix-socket server with three clients (forked children) mid-conversation,
 * with files in flight (SCM_RIGHTS) that only the queues hold.
 *
 * The server listens on an abstract name; each client connects, says hello, gets an ack.
 * Then, at READY (nothing below has been received yet):
 *   - client 0 has sent a request the server has not read; the server has sent it a
 *     message carrying one end of a SOCK_SEQPACKET socketpair (the server keeps the
 *     other end) with two records queued in it;
 *   - client 1 has a message carrying the read end of a pipe whose write end the server
 *     keeps, with bytes in the pipe;
 *   - client 2 has a message carrying a regular file opened read-write at offset 7, twice
 *     (two descriptors of one open file description); the server closed its own.
 * After the go file each client receives its message and checks the file it carries:
 * the records queued in the passed socket (then answers through it), the pipe's bytes
 * (then the server writes more and closes its end: EOF after them), the file's content
 * at offset 7 and that both descriptors share the offset. The server answers client 0's
 * request, checks the answer through the passed socket, collects "ok" from every client
 * and their exit statuses.
 */
#include "victim.h"

#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define NCLIENTS 3
#define MSG 16 /* every message on a connection is 16 bytes */

static const char file_text[] = "0123456789abcdefghijklmnopqrstuvwxyz";
static const char pipe_first[] = "bytes in the pipe at dump;";
static const char pipe_more[] = "bytes written after restore";

static void msg16(char *out, const char *text)
{
	memset(out, 0, MSG);
	strncpy(out, text, MSG - 1);
}

/* Sends one 16-byte message with up to two descriptors. */
static void send_fds(int sock, const char *text, const int *fds, int nfds)
{
	char buf[MSG];
	msg16(buf, text);
	char cbuf[CMSG_SPACE(2 * sizeof(int))];
	memset(cbuf, 0, sizeof(cbuf));
	struct iovec iov = { .iov_base = buf, .iov_len = MSG };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (nfds > 0) {
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
	}
	if (sendmsg(sock, &m, MSG_NOSIGNAL) != MSG)
		v_die("sendmsg %s: %s", text, strerror(errno));
}

/* Receives one 16-byte message (waiting up to 5 s) and the descriptors it carries;
 * returns how many descriptors, -1 on error. */
static int recv_fds(int sock, char *text, int *fds, int max)
{
	struct pollfd p = { sock, POLLIN, 0 };
	int r;
	do
		r = poll(&p, 1, 5000);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		return -1;
	char cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec iov = { .iov_base = text, .iov_len = MSG };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	ssize_t n = recvmsg(sock, &m, MSG_WAITALL);
	if (n != MSG)
		return -1;
	int count = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
		for (int i = 0; i < k && count < max; i++)
			memcpy(&fds[count++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	return count;
}

static int recv_text(int sock, char *text)
{
	int none[4];
	return recv_fds(sock, text, none, 4) == 0 ? 0 : -1;
}

static void client_main(int i, const char *name, socklen_t len)
{
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, name, len - offsetof(struct sockaddr_un, sun_path));
	if (s < 0 || connect(s, (struct sockaddr *)&a, len) != 0)
		v_die("client %d: connect: %s", i, strerror(errno));
	char text[MSG], want[MSG];
	snprintf(text, sizeof(text), "hello %d", i);
	send_fds(s, text, NULL, 0);
	if (recv_text(s, text) != 0 || strcmp(text, "ack") != 0)
		v_die("client %d: no ack", i);
	if (i == 0)
		send_fds(s, "request 0", NULL, 0);
	else
		send_fds(s, "parked", NULL, 0);

	v_wait_go();

	int fds[4];
	int n = recv_fds(s, text, fds, 4);
	if (i == 0) {
		V_CHECK(n == 1 && strcmp(text, "socket") == 0, "client 0: message %.16s with %d fd(s)", text, n);
		if (n == 1) {
			char rec[64];
			int type = 0;
			socklen_t l = sizeof(type);
			getsockopt(fds[0], SOL_SOCKET, SO_TYPE, &type, &l);
			V_CHECK(type == SOCK_SEQPACKET, "client 0: the passed socket has type %d", type);
			ssize_t r = recv(fds[0], rec, sizeof(rec), MSG_DONTWAIT);
			V_CHECK(r == 11 && memcmp(rec, "first rec\0\0", 11) == 0,
				"client 0: first record through the passed socket: %zd bytes", r);
			r = recv(fds[0], rec, sizeof(rec), MSG_DONTWAIT);
			V_CHECK(r == 3 && memcmp(rec, "2nd", 3) == 0,
				"client 0: second record through the passed socket: %zd bytes", r);
			r = recv(fds[0], rec, sizeof(rec), MSG_DONTWAIT);
			V_CHECK(r < 0 && errno == EAGAIN, "client 0: a third record? %zd", r);
			V_CHECK(send(fds[0], "back through it", 15, 0) == 15,
				"client 0: send through the passed socket: %s", strerror(errno));
		}
		V_CHECK(recv_text(s, text) == 0 && strcmp(text, "answer 0") == 0,
			"client 0: answer to the request: %.16s", text);
	} else if (i == 1) {
		V_CHECK(n == 1 && strcmp(text, "pipe") == 0, "client 1: message %.16s with %d fd(s)", text, n);
		if (n == 1) {
			char got[128];
			size_t have = 0;
			ssize_t r;
			while (have < sizeof(got) && (r = read(fds[0], got + have, sizeof(got) - have)) > 0)
				have += (size_t)r;
			size_t a = strlen(pipe_first), b = strlen(pipe_more);
			V_CHECK(have == a + b && memcmp(got, pipe_first, a) == 0 &&
					memcmp(got + a, pipe_more, b) == 0,
				"client 1: the pipe gave %zu bytes: %.*s", have, (int)have, got);
			int fl = fcntl(fds[0], F_GETFL);
			V_CHECK((fl & O_ACCMODE) == O_RDONLY, "client 1: the pipe end has flags %#x", fl);
		}
	} else {
		V_CHECK(n == 2 && strcmp(text, "file") == 0, "client 2: message %.16s with %d fd(s)", text, n);
		if (n == 2) {
			char got[5];
			V_CHECK(read(fds[0], got, 5) == 5 && memcmp(got, file_text + 7, 5) == 0,
				"client 2: the file does not read on from offset 7");
			off_t pos = lseek(fds[1], 0, SEEK_CUR);
			V_CHECK(pos == 12, "client 2: the second descriptor is at %ld, expected 12 (shared)", (long)pos);
			int fl = fcntl(fds[0], F_GETFL);
			V_CHECK((fl & O_ACCMODE) == O_RDWR, "client 2: the file has flags %#x", fl);
			char path[4096];
			snprintf(path, sizeof(path), "%s/scm-file", v_tmp());
			struct stat st1, st2;
			V_CHECK(fstat(fds[0], &st1) == 0 && stat(path, &st2) == 0 && st1.st_ino == st2.st_ino,
				"client 2: the passed file is not %s", path);
		}
	}
	snprintf(want, sizeof(want), "ok %d", i);
	send_fds(s, want, NULL, 0);
	_exit(v_failures ? 1 : 0);
}

int main(void)
{
	(void)v_tmp(); /* made once, before the clients fork */
	char name[64];
	int nlen = snprintf(name, sizeof(name), "%cstasis-scm-%d", 0, (int)getpid());
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	memcpy(a.sun_path, name, (size_t)nlen);
	socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + nlen);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 8) != 0)
		v_die("listen: %s", strerror(errno));

	pid_t kids[NCLIENTS];
	for (int i = 0; i < NCLIENTS; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			v_die("fork: %s", strerror(errno));
		if (kids[i] == 0) {
			close(l);
			client_main(i, name, alen);
		}
	}
	int conn[NCLIENTS];
	for (int k = 0; k < NCLIENTS; k++) {
		int c = accept(l, NULL, NULL);
		char text[MSG];
		if (c < 0 || recv_text(c, text) != 0 || strncmp(text, "hello ", 6) != 0)
			v_die("accept/hello: %s", strerror(errno));
		int i = text[6] - '0';
		if (i < 0 || i >= NCLIENTS)
			v_die("bad hello %s", text);
		conn[i] = c;
		send_fds(c, "ack", NULL, 0);
	}
	char text[MSG];
	for (int i = 1; i < NCLIENTS; i++)
		if (recv_text(conn[i], text) != 0 || strcmp(text, "parked") != 0)
			v_die("client %d did not park", i);
	/* client 0's request: wait until it is queued, leave it unread */
	struct pollfd p = { conn[0], POLLIN, 0 };
	if (poll(&p, 1, 5000) != 1)
		v_die("no request from client 0");

	/* client 0: a socketpair end with two records queued in it */
	int sp[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) != 0)
		v_die("socketpair: %s", strerror(errno));
	if (send(sp[0], "first rec\0\0", 11, 0) != 11 || send(sp[0], "2nd", 3, 0) != 3)
		v_die("send records: %s", strerror(errno));
	send_fds(conn[0], "socket", &sp[1], 1);
	close(sp[1]);

	/* client 1: a pipe's read end, bytes in the pipe */
	int pp[2];
	if (pipe(pp) != 0)
		v_die("pipe: %s", strerror(errno));
	v_write_all(pp[1], pipe_first, strlen(pipe_first));
	send_fds(conn[1], "pipe", &pp[0], 1);
	close(pp[0]);

	/* client 2: a regular file at offset 7, twice; only the queue holds it */
	char path[4096];
	snprintf(path, sizeof(path), "%s/scm-file", v_tmp());
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0)
		v_die("open %s: %s", path, strerror(errno));
	v_write_all(f, file_text, strlen(file_text));
	lseek(f, 7, SEEK_SET);
	int two[2] = { f, f };
	send_fds(conn[2], "file", two, 2);
	close(f);

	v_ready();
	v_wait_go();

	V_CHECK(recv_text(conn[0], text) == 0 && strcmp(text, "request 0") == 0,
		"server: client 0's queued request: %.16s", text);
	send_fds(conn[0], "answer 0", NULL, 0);
	v_write_all(pp[1], pipe_more, strlen(pipe_more));
	close(pp[1]);
	char back[32];
	p.fd = sp[0];
	ssize_t n = poll(&p, 1, 5000) == 1 ? recv(sp[0], back, sizeof(back), MSG_DONTWAIT) : -1;
	V_CHECK(n == 15 && memcmp(back, "back through it", 15) == 0,
		"server: through the kept socketpair end: %zd bytes", n);
	for (int i = 0; i < NCLIENTS; i++) {
		char want[MSG];
		snprintf(want, sizeof(want), "ok %d", i);
		V_CHECK(recv_text(conn[i], text) == 0 && strcmp(text, want) == 0,
			"server: client %d ended with %.16s", i, text);
	}
	for (int i = 0; i < NCLIENTS; i++) {
		int status = -1;
		pid_t w = 0;
		for (int t = 0; t < 500 && w == 0; t++) {
			w = waitpid(kids[i], &status, WNOHANG);
			if (w == 0)
				v_sleep_ms(10);
		}
		V_CHECK(w == kids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0,
			"client %d: waitpid %d, status 0x%x", i, (int)w, status);
	}
	v_finish();
}
