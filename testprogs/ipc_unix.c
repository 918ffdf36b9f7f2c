/*
 * ipc_unix: unix sockets with both ends in the tree, listeners and a bound datagram
 * socket.
 *
 * - a SOCK_STREAM socketpair with bytes queued both ways (several writes); SO_SNDBUF and
 *   SO_PEEK_OFF set on one end (a peek after restore starts at the peek offset); the
 *   other end did shutdown(SHUT_WR): after its data the reader sees EOF, and writing on
 *   the shut end fails with EPIPE, while the other direction still works;
 * - a SOCK_DGRAM socketpair with datagrams of different sizes (one empty) queued both
 *   ways: each comes back whole, in order, then EAGAIN; one end O_NONBLOCK, the other
 *   has SO_RCVBUF and SO_PASSCRED (so its queued datagrams carry credentials; a new
 *   datagram carries ours) -- with the argument "creds-on-empty", SO_PASSCRED is set on
 *   the bound datagram socket below instead, which has nothing queued;
 * - a SOCK_SEQPACKET socketpair with records queued both ways: boundaries kept; one end
 *   has SO_RCVTIMEO 0.3 s (a blocking recv on it, once drained, gives EAGAIN after about
 *   that long) and SO_RCVLOWAT 3, the other SO_SNDTIMEO about 1.25 s (as the kernel
 *   rounds it);
 * - listening stream sockets bound to a path in $STASIS_TMP and to an abstract name
 *   (no connection waiting): after restore getsockname and SO_ACCEPTCONN are as
 *   before, and a new client connects, is accepted, and data goes both ways; the path
 *   listener's file has mode 0606 and owner 1234:5678, as a server sets who may connect,
 *   and has them again after restore;
 * - a datagram socket bound to a path that was unlinked since: after restore its name
 *   is the same and the path is still free;
 * - an unconnected datagram socket bound to a path: a new datagram sent to the path
 *   arrives;
 * - a second datagram socket bound to a path with one datagram queued (from a socket
 *   closed since): it is there once after restore;
 * - a stream and a datagram socketpair whose other end was closed after sending: the
 *   queued bytes / datagram are read, then end of file (stream), and sending fails with
 *   EPIPE (stream) or ECONNREFUSED (datagram);
 * - a stream socketpair across fork: at READY the child's greeting is queued unread in
 *   the parent and the child is blocked in read(); after restore they talk 100 rounds.
 */
#include "victim.h"

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static struct timeval sndtimeo_sq1;

static int get_int(int fd, int level, int opt)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, level, opt, &v, &l) != 0)
		return -12345;
	return v;
}

static void send_all(int fd, const void *p, size_t n, const char *what)
{
	ssize_t r = send(fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (r != (ssize_t)n)
		v_die("send %s (%zu bytes): %zd %s", what, n, r, strerror(errno));
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)(v_mix(i * 131 + seed) >> 7);
}

/* Receives one message with poll (timeout ms); returns its length, -1 on error/timeout. */
static ssize_t recv_wait(int fd, void *buf, size_t n, int ms)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	int r;
	do
		r = poll(&pfd, 1, ms);
	while (r < 0 && errno == EINTR);
	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	return recv(fd, buf, n, MSG_DONTWAIT);
}

/* Queued datagram/record sizes, in order. */
static const size_t dg_a2b[] = { 5, 0, 1500, 17, 4000 };
static const size_t dg_b2a[] = { 300, 1, 64 };
static const size_t sq_a2b[] = { 1, 2048, 33, 7 };
static const size_t sq_b2a[] = { 100, 5000 };
#define NELEM(x) (sizeof(x) / sizeof((x)[0]))

/* Stream writes (concatenated by the receiver). */
static const size_t st_a2b[] = { 10, 3000, 1, 777 };
static const size_t st_b2a[] = { 4096, 5 };

/* dir/name into sun_path (the victim cannot run if it does not fit). */
static void set_path(struct sockaddr_un *sa, const char *dir, const char *name)
{
	size_t dl = strlen(dir), nl = strlen(name);
	if (dl + 1 + nl + 1 > sizeof(sa->sun_path))
		v_die("socket path %s/%s is too long", dir, name);
	memcpy(sa->sun_path, dir, dl);
	sa->sun_path[dl] = '/';
	memcpy(sa->sun_path + dl + 1, name, nl + 1);
}

static void check_messages(int fd, const size_t *sizes, size_t count, unsigned seed, const char *what)
{
	static unsigned char buf[65536], want[65536];
	for (size_t i = 0; i < count; i++) {
		ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n < 0) {
			v_fail("%s: message %zu of %zu: recv: %s", what, i + 1, count, strerror(errno));
			return;
		}
		fill(want, sizes[i], seed + (unsigned)i);
		if ((size_t)n != sizes[i]) {
			v_fail("%s: message %zu is %zd bytes, expected %zu (boundaries or order lost)",
			       what, i + 1, n, sizes[i]);
			return;
		}
		if (memcmp(buf, want, sizes[i]) != 0) {
			v_fail("%s: message %zu (%zu bytes) has other content", what, i + 1, sizes[i]);
			return;
		}
	}
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	V_CHECK(n < 0 && errno == EAGAIN, "%s: after the %zu queued messages recv gave %zd (%s), expected EAGAIN",
		what, count, n, n < 0 ? strerror(errno) : "more data");
}

static void queue_messages(int fd, const size_t *sizes, size_t count, unsigned seed, const char *what)
{
	static unsigned char buf[65536];
	for (size_t i = 0; i < count; i++) {
		fill(buf, sizes[i], seed + (unsigned)i);
		send_all(fd, buf, sizes[i], what);
	}
}

/* The stream contents: writes concatenated; each write filled with its own seed. */
static size_t stream_expected(unsigned char *out, const size_t *sizes, size_t count, unsigned seed)
{
	size_t off = 0;
	for (size_t i = 0; i < count; i++) {
		fill(out + off, sizes[i], seed + (unsigned)i);
		off += sizes[i];
	}
	return off;
}

static void check_listener(int l, const struct sockaddr_un *want, socklen_t wantlen, const char *what)
{
	struct sockaddr_un sa;
	socklen_t len = sizeof(sa);
	memset(&sa, 0, sizeof(sa));
	if (getsockname(l, (struct sockaddr *)&sa, &len) != 0) {
		v_fail("%s: getsockname: %s", what, strerror(errno));
		return;
	}
	V_CHECK(len == wantlen && memcmp(&sa, want, len) == 0,
		"%s: bound to another address after restore (length %u, expected %u; path '%s')", what,
		(unsigned)len, (unsigned)wantlen, sa.sun_path[0] ? sa.sun_path : sa.sun_path + 1);
	V_CHECK(get_int(l, SOL_SOCKET, SO_ACCEPTCONN) == 1, "%s: not listening (SO_ACCEPTCONN %d)", what,
		get_int(l, SOL_SOCKET, SO_ACCEPTCONN));
	V_CHECK(get_int(l, SOL_SOCKET, SO_TYPE) == SOCK_STREAM, "%s: SO_TYPE %d", what,
		get_int(l, SOL_SOCKET, SO_TYPE));
	int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c < 0 || connect(c, (const struct sockaddr *)want, wantlen) != 0) {
		v_fail("%s: connect to it after restore: %s", what, strerror(errno));
		if (c >= 0)
			close(c);
		return;
	}
	struct pollfd pfd = { l, POLLIN, 0 };
	if (poll(&pfd, 1, 5000) != 1) {
		v_fail("%s: the new connection is not seen by the listener within 5 s", what);
		close(c);
		return;
	}
	int s = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (s < 0) {
		v_fail("%s: accept: %s", what, strerror(errno));
		close(c);
		return;
	}
	char buf[16];
	V_CHECK(send(c, "ping", 4, MSG_NOSIGNAL) == 4, "%s: client send: %s", what, strerror(errno));
	ssize_t n = recv_wait(s, buf, sizeof(buf), 5000);
	V_CHECK(n == 4 && memcmp(buf, "ping", 4) == 0, "%s: accepted socket got %zd bytes", what, n);
	V_CHECK(send(s, "pong!", 5, MSG_NOSIGNAL) == 5, "%s: server send: %s", what, strerror(errno));
	n = recv_wait(c, buf, sizeof(buf), 5000);
	V_CHECK(n == 5 && memcmp(buf, "pong!", 5) == 0, "%s: client got %zd bytes", what, n);
	close(s);
	close(c);
}

static void child_main(int fd)
{
	/* greeting, then blocked in read() until the parent talks after the go file */
	const char hello[] = "hello from the child";
	if (write(fd, hello, sizeof(hello)) != (ssize_t)sizeof(hello))
		_exit(2);
	for (int round = 0; round < 100; round++) {
		uint32_t v;
		size_t got = 0;
		while (got < sizeof(v)) {
			ssize_t n = read(fd, (char *)&v + got, sizeof(v) - got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				v_fail("child: read in round %d: %zd %s", round, n, n < 0 ? strerror(errno) : "EOF");
				_exit(1);
			}
			got += (size_t)n;
		}
		uint32_t reply = (uint32_t)v_mix(v);
		if (write(fd, &reply, sizeof(reply)) != (ssize_t)sizeof(reply)) {
			v_fail("child: write in round %d: %s", round, strerror(errno));
			_exit(1);
		}
	}
	char c;
	ssize_t n = read(fd, &c, 1);
	if (n != 0) {
		v_fail("child: expected EOF after 100 rounds, read gave %zd", n);
		_exit(1);
	}
	_exit(0);
}

/* Receives one datagram of 4 bytes "cred" on fd and checks SCM_CREDENTIALS. */
static void check_creds(int fd, const char *what)
{
	char data[16];
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} cm;
	struct iovec iov = { data, sizeof(data) };
	struct msghdr mh = { 0 };
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cm.buf;
	mh.msg_controllen = sizeof(cm.buf);
	struct pollfd pfd = { fd, POLLIN, 0 };
	poll(&pfd, 1, 5000);
	ssize_t n = recvmsg(fd, &mh, MSG_DONTWAIT);
	struct cmsghdr *c = n == 4 ? CMSG_FIRSTHDR(&mh) : NULL;
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_CREDENTIALS) {
		v_fail("%s: the new datagram (%zd bytes) has no SCM_CREDENTIALS", what, n);
	} else {
		struct ucred uc;
		memcpy(&uc, CMSG_DATA(c), sizeof(uc));
		V_CHECK(uc.pid == getpid() && uc.uid == getuid(), "%s: credentials pid %d uid %d, expected %d %d", what,
			(int)uc.pid, (int)uc.uid, (int)getpid(), (int)getuid());
	}
}

int main(int argc, char **argv)
{
	int creds_on_empty = argc > 1 && strcmp(argv[1], "creds-on-empty") == 0;
	signal(SIGPIPE, SIG_IGN);
	const char *tmp = v_tmp();

	/* parent/child pair first, so the child holds nothing else */
	int pc[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pc) != 0)
		v_die("socketpair: %s", strerror(errno));
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		close(pc[0]);
		child_main(pc[1]);
	}
	close(pc[1]);

	int st[2], dg[2], sq[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) != 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) != 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sq) != 0)
		v_die("socketpair: %s", strerror(errno));

	/* options */
	int v = 70000;
	if (setsockopt(st[0], SOL_SOCKET, SO_SNDBUF, &v, sizeof(v)) != 0)
		v_die("SO_SNDBUF: %s", strerror(errno));
	v = 50000;
	if (setsockopt(dg[1], SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0)
		v_die("SO_RCVBUF: %s", strerror(errno));
	v = 1;
	if (!creds_on_empty && setsockopt(dg[1], SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) != 0)
		v_die("SO_PASSCRED: %s", strerror(errno));
	if (fcntl(dg[0], F_SETFL, O_NONBLOCK) != 0)
		v_die("O_NONBLOCK: %s", strerror(errno));
	int sndbuf_st0 = get_int(st[0], SOL_SOCKET, SO_SNDBUF);
	int rcvbuf_dg1 = get_int(dg[1], SOL_SOCKET, SO_RCVBUF);
	int sndbuf_dg0 = get_int(dg[0], SOL_SOCKET, SO_SNDBUF);

	/* queued data */
	static unsigned char tmpbuf[65536];
	for (size_t i = 0; i < NELEM(st_a2b); i++) {
		fill(tmpbuf, st_a2b[i], 100 + (unsigned)i);
		send_all(st[0], tmpbuf, st_a2b[i], "stream a->b");
	}
	for (size_t i = 0; i < NELEM(st_b2a); i++) {
		fill(tmpbuf, st_b2a[i], 200 + (unsigned)i);
		send_all(st[1], tmpbuf, st_b2a[i], "stream b->a");
	}
	if (shutdown(st[1], SHUT_WR) != 0)
		v_die("shutdown: %s", strerror(errno));
	v = 4;
	if (setsockopt(st[0], SOL_SOCKET, SO_PEEK_OFF, &v, sizeof(v)) != 0)
		v_die("SO_PEEK_OFF: %s", strerror(errno));
	queue_messages(dg[0], dg_a2b, NELEM(dg_a2b), 300, "dgram a->b");
	queue_messages(dg[1], dg_b2a, NELEM(dg_b2a), 400, "dgram b->a");
	{
		struct timeval rt = { 0, 300000 }, st2 = { 1, 250000 };
		int lowat = 3;
		if (setsockopt(sq[0], SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof(rt)) != 0 ||
		    setsockopt(sq[0], SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) != 0 ||
		    setsockopt(sq[1], SOL_SOCKET, SO_SNDTIMEO, &st2, sizeof(st2)) != 0)
			v_die("SO_RCVTIMEO/SO_SNDTIMEO/SO_RCVLOWAT: %s", strerror(errno));
		/* the kernel keeps timeouts in jiffies: compare with what it reports now */
		socklen_t tl = sizeof(sndtimeo_sq1);
		if (getsockopt(sq[1], SOL_SOCKET, SO_SNDTIMEO, &sndtimeo_sq1, &tl) != 0)
			v_die("SO_SNDTIMEO: %s", strerror(errno));
	}
	queue_messages(sq[0], sq_a2b, NELEM(sq_a2b), 500, "seqpacket a->b");
	queue_messages(sq[1], sq_b2a, NELEM(sq_b2a), 600, "seqpacket b->a");

	/* listeners */
	struct sockaddr_un pa, aa, da;
	memset(&pa, 0, sizeof(pa));
	memset(&aa, 0, sizeof(aa));
	memset(&da, 0, sizeof(da));
	pa.sun_family = aa.sun_family = da.sun_family = AF_UNIX;
	set_path(&pa, tmp, "listen.sock");
	set_path(&da, tmp, "dgram.sock");
	unlink(pa.sun_path);
	unlink(da.sun_path);
	int alen = snprintf(aa.sun_path + 1, sizeof(aa.sun_path) - 1, "stasis-ipc-unix-%d", (int)getpid());
	socklen_t pa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(pa.sun_path) + 1);
	socklen_t aa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)alen);
	socklen_t da_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(da.sun_path) + 1);
	int lp = socket(AF_UNIX, SOCK_STREAM, 0);
	int la = socket(AF_UNIX, SOCK_STREAM, 0);
	int bd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (lp < 0 || la < 0 || bd < 0)
		v_die("socket: %s", strerror(errno));
	if (bind(lp, (struct sockaddr *)&pa, pa_len) != 0 || listen(lp, 5) != 0)
		v_die("bind/listen %s: %s", pa.sun_path, strerror(errno));
	if (chmod(pa.sun_path, 0606) != 0 || chown(pa.sun_path, 1234, 5678) != 0)
		v_die("chmod/chown %s: %s", pa.sun_path, strerror(errno));
	if (bind(la, (struct sockaddr *)&aa, aa_len) != 0 || listen(la, 3) != 0)
		v_die("bind/listen abstract: %s", strerror(errno));
	struct sockaddr_un ga;
	memset(&ga, 0, sizeof(ga));
	ga.sun_family = AF_UNIX;
	set_path(&ga, tmp, "gone.sock");
	unlink(ga.sun_path);
	socklen_t ga_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(ga.sun_path) + 1);
	int gs = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (gs < 0 || bind(gs, (struct sockaddr *)&ga, ga_len) != 0 || unlink(ga.sun_path) != 0)
		v_die("bind and unlink %s: %s", ga.sun_path, strerror(errno));
	if (bind(bd, (struct sockaddr *)&da, da_len) != 0)
		v_die("bind %s: %s", da.sun_path, strerror(errno));
	v = 1;
	if (creds_on_empty && setsockopt(bd, SOL_SOCKET, SO_PASSCRED, &v, sizeof(v)) != 0)
		v_die("SO_PASSCRED: %s", strerror(errno));
	/* a second bound datagram socket with a datagram queued from a socket since closed */
	struct sockaddr_un qa = { .sun_family = AF_UNIX };
	if (strlen(v_tmp()) + sizeof("/queued.sock") > sizeof(qa.sun_path))
		v_die("temporary directory name too long");
	strcpy(qa.sun_path, v_tmp());
	strcat(qa.sun_path, "/queued.sock");
	unlink(qa.sun_path);
	socklen_t qa_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(qa.sun_path) + 1);
	int bq = socket(AF_UNIX, SOCK_DGRAM, 0);
	int tmp_sender = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bq < 0 || tmp_sender < 0 || bind(bq, (struct sockaddr *)&qa, qa_len) != 0 ||
	    sendto(tmp_sender, "early-dg", 8, 0, (struct sockaddr *)&qa, qa_len) != 8)
		v_die("queued datagram to %s: %s", qa.sun_path, strerror(errno));
	close(tmp_sender);

	/* the child's greeting is queued for us, and the child is blocked in read() */
	struct pollfd pfd = { pc[0], POLLIN, 0 };
	if (poll(&pfd, 1, 5000) != 1)
		v_die("no greeting from the child");

	v_ready();
	/* sockets whose peer was closed, with what it sent still queued */
	int gone_st, gone_dg;
	{
		int p1[2], p2[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, p1) != 0 || socketpair(AF_UNIX, SOCK_DGRAM, 0, p2) != 0)
			v_die("socketpair: %s", strerror(errno));
		send_all(p1[1], "bye", 3, "stream, peer closing");
		send_all(p2[1], "dg-bye", 6, "datagram, peer closing");
		close(p1[1]);
		close(p2[1]);
		gone_st = p1[0];
		gone_dg = p2[0];
	}
	v_wait_go();

	/* --- peers closed --- */
	{
		char b[16];
		ssize_t r = recv(gone_st, b, sizeof(b), MSG_DONTWAIT);
		V_CHECK(r == 3 && memcmp(b, "bye", 3) == 0, "stream with its peer closed: read %zd bytes", r);
		r = recv(gone_st, b, sizeof(b), MSG_DONTWAIT);
		V_CHECK(r == 0, "stream with its peer closed: expected end of file, got %zd (%s)", r,
			r < 0 ? strerror(errno) : "data");
		r = send(gone_st, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		V_CHECK(r < 0 && errno == EPIPE, "stream with its peer closed: send gave %zd (%s), expected EPIPE", r,
			r < 0 ? strerror(errno) : "sent");
		r = recv(gone_dg, b, sizeof(b), MSG_DONTWAIT);
		V_CHECK(r == 6 && memcmp(b, "dg-bye", 6) == 0, "datagram with its peer closed: read %zd bytes", r);
		r = send(gone_dg, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		V_CHECK(r < 0 && errno == ECONNREFUSED,
			"datagram with its peer closed: send gave %zd (%s), expected ECONNREFUSED", r,
			r < 0 ? strerror(errno) : "sent");
	}

	/* --- stream pair --- */
	static unsigned char want[65536], got[65536];
	V_CHECK(get_int(st[0], SOL_SOCKET, SO_TYPE) == SOCK_STREAM, "stream: SO_TYPE changed");
	V_CHECK(get_int(st[0], SOL_SOCKET, SO_SNDBUF) == sndbuf_st0, "stream a: SO_SNDBUF %d, expected %d",
		get_int(st[0], SOL_SOCKET, SO_SNDBUF), sndbuf_st0);
	V_CHECK(get_int(st[0], SOL_SOCKET, SO_PEEK_OFF) == 4, "stream a: SO_PEEK_OFF %d, expected 4",
		get_int(st[0], SOL_SOCKET, SO_PEEK_OFF));
	size_t nb = stream_expected(want, st_b2a, NELEM(st_b2a), 200);
	int q = -1;
	ioctl(st[0], FIONREAD, &q);
	V_CHECK(q == (int)nb, "stream a: %d bytes queued, expected %zu", q, nb);
	ssize_t n = recv(st[0], got, 3, MSG_PEEK | MSG_DONTWAIT);
	V_CHECK(n == 3 && memcmp(got, want + 4, 3) == 0, "stream a: MSG_PEEK did not start at the peek offset 4 (%zd)", n);
	size_t off = 0;
	for (;;) {
		n = recv(st[0], got + off, 1000, MSG_DONTWAIT);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	V_CHECK(n == 0, "stream a: after %zu bytes expected EOF (peer did SHUT_WR), got %zd (%s)", off, n,
		n < 0 ? strerror(errno) : "");
	V_CHECK(off == nb && memcmp(got, want, nb) == 0, "stream a: read %zu bytes, expected %zu (or content differs)",
		off, nb);
	size_t na = stream_expected(want, st_a2b, NELEM(st_a2b), 100);
	q = -1;
	ioctl(st[1], FIONREAD, &q);
	V_CHECK(q == (int)na, "stream b: %d bytes queued, expected %zu", q, na);
	off = 0;
	for (;;) {
		n = recv(st[1], got + off, 999, MSG_DONTWAIT);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	V_CHECK(n < 0 && errno == EAGAIN, "stream b: after the data expected EAGAIN, got %zd", n);
	V_CHECK(off == na && memcmp(got, want, na) == 0, "stream b: read %zu bytes, expected %zu (or content differs)",
		off, na);
	n = send(st[1], "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	V_CHECK(n == -1 && errno == EPIPE, "stream b: send after SHUT_WR gave %zd (%s), expected EPIPE", n,
		n < 0 ? strerror(errno) : "sent");
	n = send(st[0], "later", 5, MSG_NOSIGNAL | MSG_DONTWAIT);
	V_CHECK(n == 5, "stream a: send after restore: %zd %s", n, strerror(errno));
	n = recv(st[1], got, sizeof(got), MSG_DONTWAIT);
	V_CHECK(n == 5 && memcmp(got, "later", 5) == 0, "stream b: new data did not arrive (%zd)", n);

	/* --- datagram pair --- */
	V_CHECK(get_int(dg[0], SOL_SOCKET, SO_TYPE) == SOCK_DGRAM, "dgram: SO_TYPE changed");
	V_CHECK(fcntl(dg[0], F_GETFL) & O_NONBLOCK, "dgram a: O_NONBLOCK lost");
	V_CHECK(!(fcntl(dg[1], F_GETFL) & O_NONBLOCK), "dgram b: became O_NONBLOCK");
	V_CHECK(get_int(dg[1], SOL_SOCKET, SO_RCVBUF) == rcvbuf_dg1, "dgram b: SO_RCVBUF %d, expected %d",
		get_int(dg[1], SOL_SOCKET, SO_RCVBUF), rcvbuf_dg1);
	V_CHECK(get_int(dg[0], SOL_SOCKET, SO_SNDBUF) == sndbuf_dg0, "dgram a: SO_SNDBUF %d, expected %d",
		get_int(dg[0], SOL_SOCKET, SO_SNDBUF), sndbuf_dg0);
	V_CHECK(get_int(dg[1], SOL_SOCKET, SO_PASSCRED) == !creds_on_empty, "dgram b: SO_PASSCRED %d, expected %d",
		get_int(dg[1], SOL_SOCKET, SO_PASSCRED), !creds_on_empty);
	V_CHECK(get_int(dg[0], SOL_SOCKET, SO_PASSCRED) == 0, "dgram a: SO_PASSCRED %d, expected 0",
		get_int(dg[0], SOL_SOCKET, SO_PASSCRED));
	check_messages(dg[1], dg_a2b, NELEM(dg_a2b), 300, "dgram a->b");
	check_messages(dg[0], dg_b2a, NELEM(dg_b2a), 400, "dgram b->a");
	n = recv(dg[0], got, 10, 0); /* O_NONBLOCK without MSG_DONTWAIT */
	V_CHECK(n == -1 && errno == EAGAIN, "dgram a: blocking-style recv on the O_NONBLOCK end gave %zd", n);
	if (!creds_on_empty) {
		/* a new datagram carries our credentials (SO_PASSCRED) */
		V_CHECK(send(dg[0], "cred", 4, MSG_NOSIGNAL) == 4, "dgram a: send: %s", strerror(errno));
		check_creds(dg[1], "dgram b");
	}

	/* --- seqpacket pair --- */
	V_CHECK(get_int(sq[0], SOL_SOCKET, SO_TYPE) == SOCK_SEQPACKET, "seqpacket: SO_TYPE changed");
	check_messages(sq[1], sq_a2b, NELEM(sq_a2b), 500, "seqpacket a->b");
	check_messages(sq[0], sq_b2a, NELEM(sq_b2a), 600, "seqpacket b->a");
	V_CHECK(send(sq[1], "rec", 3, MSG_NOSIGNAL) == 3, "seqpacket b: send: %s", strerror(errno));
	n = recv(sq[0], got, sizeof(got), MSG_DONTWAIT);
	V_CHECK(n == 3 && memcmp(got, "rec", 3) == 0, "seqpacket a: new record (%zd)", n);
	{
		struct timeval tv = { 9, 9 };
		socklen_t tl = sizeof(tv);
		V_CHECK(getsockopt(sq[0], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl) == 0 && tv.tv_sec == 0 &&
				tv.tv_usec == 300000,
			"seqpacket a: SO_RCVTIMEO %ld.%06ld, expected 0.300000", (long)tv.tv_sec, (long)tv.tv_usec);
		tl = sizeof(tv);
		V_CHECK(getsockopt(sq[1], SOL_SOCKET, SO_SNDTIMEO, &tv, &tl) == 0 &&
				tv.tv_sec == sndtimeo_sq1.tv_sec && tv.tv_usec == sndtimeo_sq1.tv_usec,
			"seqpacket b: SO_SNDTIMEO %ld.%06ld, expected %ld.%06ld", (long)tv.tv_sec, (long)tv.tv_usec,
			(long)sndtimeo_sq1.tv_sec, (long)sndtimeo_sq1.tv_usec);
		tl = sizeof(tv);
		V_CHECK(getsockopt(sq[1], SOL_SOCKET, SO_RCVTIMEO, &tv, &tl) == 0 && tv.tv_sec == 0 &&
				tv.tv_usec == 0,
			"seqpacket b: SO_RCVTIMEO %ld.%06ld, expected none", (long)tv.tv_sec, (long)tv.tv_usec);
		V_CHECK(get_int(sq[0], SOL_SOCKET, SO_RCVLOWAT) == 3, "seqpacket a: SO_RCVLOWAT %d, expected 3",
			get_int(sq[0], SOL_SOCKET, SO_RCVLOWAT));
		V_CHECK(get_int(sq[1], SOL_SOCKET, SO_RCVLOWAT) == 1, "seqpacket b: SO_RCVLOWAT %d, expected 1",
			get_int(sq[1], SOL_SOCKET, SO_RCVLOWAT));
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		n = recv(sq[0], got, sizeof(got), 0); /* blocking: the receive timeout ends it */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		V_CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && ms >= 250 && ms < 3000,
			"seqpacket a: blocking recv with SO_RCVTIMEO gave %zd after %ld ms", n, ms);
	}

	/* --- a bound datagram socket with a datagram queued --- */
	{
		char b[16];
		ssize_t r = recv(bq, b, sizeof(b), MSG_DONTWAIT);
		V_CHECK(r == 8 && memcmp(b, "early-dg", 8) == 0, "bound dgram with a queued datagram: read %zd", r);
		r = recv(bq, b, sizeof(b), MSG_DONTWAIT);
		V_CHECK(r < 0 && errno == EAGAIN, "bound dgram with a queued datagram: a second recv gave %zd", r);
	}

	/* --- listeners and the bound datagram socket --- */
	check_listener(lp, &pa, pa_len, "path listener");
	check_listener(la, &aa, aa_len, "abstract listener");
	{
		struct stat st;
		int have = stat(pa.sun_path, &st) == 0;
		V_CHECK(have && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0606 && st.st_uid == 1234 &&
				st.st_gid == 5678,
			"path listener's file: mode %o owner %u:%u, expected 606 1234:5678",
			have ? (unsigned)(st.st_mode & 07777) : 0u, have ? (unsigned)st.st_uid : 0u,
			have ? (unsigned)st.st_gid : 0u);
		V_CHECK(lstat(ga.sun_path, &st) != 0 && errno == ENOENT,
			"%s exists after restore (its socket's file was unlinked before the dump)", ga.sun_path);
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		V_CHECK(getsockname(gs, (struct sockaddr *)&sa, &len) == 0 && len == ga_len &&
				memcmp(&sa, &ga, len) == 0,
			"socket whose file was unlinked: getsockname differs after restore ('%s')", sa.sun_path);
	}
	{
		struct sockaddr_un sa;
		socklen_t len = sizeof(sa);
		memset(&sa, 0, sizeof(sa));
		V_CHECK(getsockname(bd, (struct sockaddr *)&sa, &len) == 0 && len == da_len &&
				memcmp(&sa, &da, len) == 0,
			"bound dgram: getsockname differs after restore ('%s')", sa.sun_path);
		int c = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		n = sendto(c, "to-path", 7, MSG_NOSIGNAL, (struct sockaddr *)&da, da_len);
		V_CHECK(n == 7, "bound dgram: sendto %s: %s", da.sun_path, strerror(errno));
		n = recv_wait(bd, got, sizeof(got), 5000);
		V_CHECK(n == 7 && memcmp(got, "to-path", 7) == 0, "bound dgram: got %zd bytes", n);
		V_CHECK(get_int(bd, SOL_SOCKET, SO_PASSCRED) == creds_on_empty, "bound dgram: SO_PASSCRED %d, expected %d",
			get_int(bd, SOL_SOCKET, SO_PASSCRED), creds_on_empty);
		if (creds_on_empty) {
			n = sendto(c, "cred", 4, MSG_NOSIGNAL, (struct sockaddr *)&da, da_len);
			V_CHECK(n == 4, "bound dgram: sendto %s: %s", da.sun_path, strerror(errno));
			check_creds(bd, "bound dgram");
		}
		close(c);
	}

	/* --- parent and child --- */
	{
		const char hello[] = "hello from the child";
		n = recv_wait(pc[0], got, sizeof(hello), 5000);
		V_CHECK(n == (ssize_t)sizeof(hello) && memcmp(got, hello, sizeof(hello)) == 0,
			"pair with the child: the queued greeting is %zd bytes", n);
		int ok = 1;
		for (uint32_t round = 0; round < 100 && ok; round++) {
			uint32_t x = round * 2654435761u, r = 0;
			if (send(pc[0], &x, sizeof(x), MSG_NOSIGNAL) != sizeof(x)) {
				v_fail("pair with the child: send in round %u: %s", round, strerror(errno));
				ok = 0;
				break;
			}
			size_t have = 0;
			while (have < sizeof(r)) {
				n = recv_wait(pc[0], (char *)&r + have, sizeof(r) - have, 5000);
				if (n <= 0) {
					v_fail("pair with the child: round %u: recv %zd (%s)", round, n,
					       n < 0 ? strerror(errno) : "EOF");
					ok = 0;
					break;
				}
				have += (size_t)n;
			}
			if (ok && r != (uint32_t)v_mix(x)) {
				v_fail("pair with the child: round %u: wrong reply", round);
				ok = 0;
			}
		}
		close(pc[0]);
		if (!ok)
			kill(child, SIGKILL);
		int status = 0;
		pid_t w = 0;
		for (int i = 0; i < 500 && w == 0; i++) {
			w = waitpid(child, &status, WNOHANG);
			if (w == 0)
				v_sleep_ms(10);
		}
		if (w != child)
			v_fail("child %d did not exit within 5 s", (int)child);
		else
			V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child ended with status 0x%x", status);
	}
	v_cleanup_tmp();
	v_finish();
}
