/*
 * epoll_in_flight: an epoll instance that only a message in flight holds (SCM_RIGHTS).
 *
 * The instance has two registrations: an eventfd with a count of 5 (EPOLLIN, data 0xE1),
 * registered under a number that was then closed (the eventfd lives on at a dup), and
 * the read end of an empty pipe (EPOLLIN, data 0xA2). It is sent over a stream
 * socketpair and the process closes its own descriptor of it: at READY only the queued
 * message holds it.
 *
 * After the go file the process receives it and checks: it is an epoll instance
 * (anon_inode:[eventpoll]); fdinfo lists both registrations with their events and data,
 * under their numbers; a wait reports exactly the eventfd (data 0xE1); after a write to
 * the pipe it reports both; after the eventfd is read (still 5) and the pipe drained, it
 * reports nothing.
 *
 * With "file-in-flight" it is the other way round: the process keeps the epoll instance,
 * and the eventfd registered in it is the file that only a message in flight holds (the
 * process closed its own). After the go file a wait on the process's own instance
 * reports the eventfd (data 0xE1); received again, it still counts 5, and once read the
 * wait reports nothing.
 */
#include "victim.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

/* Registrations that fdinfo lists for `ep` as "tfd: N events: E data: D". */
static int registered(int ep, int tfd, unsigned events, unsigned long long data)
{
	char path[64], line[256];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", ep);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int found = 0;
	while (fgets(line, sizeof line, f)) {
		int n;
		unsigned e;
		unsigned long long d;
		if (sscanf(line, "tfd: %d events: %x data: %llx", &n, &e, &d) == 3 && n == tfd &&
		    (e & events) == events && d == data)
			found++;
	}
	fclose(f);
	return found;
}

/* The data of the events a wait reports now, sorted (at most 4). */
static int ready(int ep, unsigned long long *out)
{
	struct epoll_event ev[4];
	int n = epoll_wait(ep, ev, 4, 0);
	for (int i = 0; i < n; i++)
		out[i] = ev[i].data.u64;
	for (int i = 0; i + 1 < n; i++)
		for (int j = i + 1; j < n; j++)
			if (out[j] < out[i]) {
				unsigned long long t = out[i];
				out[i] = out[j];
				out[j] = t;
			}
	return n;
}

static void send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = { .iov_base = "ep", .iov_len = 2 };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	if (sendmsg(sock, &m, 0) != 2)
		v_die("sendmsg: %s", strerror(errno));
}

static int receive_fd(int sock)
{
	char b[2], cbuf[CMSG_SPACE(sizeof(int))];
	memset(cbuf, 0, sizeof cbuf);
	struct iovec iov = { .iov_base = b, .iov_len = sizeof b };
	struct msghdr r = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
	int got = -1;
	struct cmsghdr *c;
	if (recvmsg(sock, &r, MSG_DONTWAIT) == 2 && (c = CMSG_FIRSTHDR(&r)) && c->cmsg_type == SCM_RIGHTS)
		memcpy(&got, CMSG_DATA(c), sizeof(int));
	return got;
}

/* The eventfd registered in the process's own epoll is held only by a message in flight. */
static int file_in_flight(void)
{
	int ev = eventfd(5, EFD_NONBLOCK);
	int ep = epoll_create1(0);
	int sp[2];
	if (ev < 0 || ep < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		v_die("eventfd/epoll/socketpair: %s", strerror(errno));
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 0xE1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0)
		v_die("epoll_ctl: %s", strerror(errno));
	int ev_number = ev;
	send_fd(sp[0], ev);
	close(ev);

	v_ready();
	v_wait_go();

	V_CHECK(registered(ep, ev_number, EPOLLIN, 0xE1) == 1, "no registration of the eventfd as fd %d", ev_number);
	unsigned long long d[4];
	int n = ready(ep, d);
	V_CHECK(n == 1 && d[0] == 0xE1, "first wait: %d event(s), expected the eventfd", n);
	int got = receive_fd(sp[1]);
	uint64_t count = 0;
	V_CHECK(got >= 0 && read(got, &count, sizeof count) == sizeof count && count == 5,
		"the eventfd in flight: received fd %d, count %llu, expected 5", got, (unsigned long long)count);
	n = ready(ep, d);
	V_CHECK(n == 0, "after reading the eventfd: %d event(s), expected none", n);
	v_finish();
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "file-in-flight") == 0)
		return file_in_flight();
	int ev = eventfd(5, EFD_NONBLOCK);
	int pp[2];
	int ep = epoll_create1(0);
	int sp[2];
	if (ev < 0 || pipe2(pp, O_NONBLOCK) != 0 || ep < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) != 0)
		v_die("eventfd/pipe/epoll/socketpair: %s", strerror(errno));
	struct epoll_event e = { .events = EPOLLIN, .data.u64 = 0xE1 };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0)
		v_die("epoll_ctl eventfd: %s", strerror(errno));
	e.data.u64 = 0xA2;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &e) != 0)
		v_die("epoll_ctl pipe: %s", strerror(errno));
	int ev_number = ev;
	int ev_now = dup(ev);
	close(ev);

	send_fd(sp[0], ep);
	close(ep);

	v_ready();
	v_wait_go();

	int got = receive_fd(sp[1]);
	if (got < 0) {
		v_fail("the epoll instance in flight was not received: %s", strerror(errno));
		v_finish();
	}
	char link[64], target[64] = "";
	snprintf(link, sizeof link, "/proc/self/fd/%d", got);
	ssize_t len = readlink(link, target, sizeof target - 1);
	if (len > 0)
		target[len] = 0;
	V_CHECK(strcmp(target, "anon_inode:[eventpoll]") == 0, "received %s, not an epoll instance", target);
	V_CHECK(registered(got, ev_number, EPOLLIN, 0xE1) == 1, "no registration of the eventfd as fd %d",
		ev_number);
	V_CHECK(registered(got, pp[0], EPOLLIN, 0xA2) == 1, "no registration of the pipe as fd %d", pp[0]);

	unsigned long long d[4];
	int n = ready(got, d);
	V_CHECK(n == 1 && d[0] == 0xE1, "first wait: %d event(s), expected the eventfd only", n);
	V_CHECK(write(pp[1], "x", 1) == 1, "write to the pipe: %s", strerror(errno));
	n = ready(got, d);
	V_CHECK(n == 2 && d[0] == 0xA2 && d[1] == 0xE1, "after a write to the pipe: %d event(s), expected 2", n);
	uint64_t count = 0;
	V_CHECK(read(ev_now, &count, sizeof count) == sizeof count && count == 5, "eventfd count %llu, expected 5",
		(unsigned long long)count);
	char b;
	V_CHECK(read(pp[0], &b, 1) == 1, "read the pipe: %s", strerror(errno));
	n = ready(got, d);
	V_CHECK(n == 0, "after draining both: %d event(s), expected none", n);
	v_finish();
}
