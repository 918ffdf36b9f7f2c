/*
 * ipc_anon: an epoll loop over anonymous-inode fds.
 *
 * - eventfd in semaphore mode with count 3 (nonblocking): after restore the loop reads
 *   it exactly 3 times (each read gives 1), then it is not ready and a read gives EAGAIN;
 * - a plain eventfd with count 0x123456789, registered edge-triggered in a nested epoll
 *   (itself registered in the outer one): the outer loop sees the nested epoll ready, the
 *   nested one reports the eventfd with its data, and one read gives the whole count;
 * - a periodic timerfd (CLOCK_MONOTONIC, 50 ms, ticks left unread before the dump):
 *   timerfd_gettime keeps the interval, and after the backlog is read it keeps ticking at
 *   about 20 per second; a one-shot timerfd 1000 s away still has about that left;
 * - a signalfd for SIGUSR1 (blocked, one pending): delivers it exactly once, with our
 *   pid; a SIGUSR2 raised after restore (not in its mask) is not reported by it;
 * - a pipe's read end registered, then dup'ed to fd 40 and closed, its number reused by
 *   /dev/null (not registered), and an eventfd registered, dup'ed to fd 41 and closed
 *   (its number left free): the registrations still name the old numbers; after restore
 *   the loop sees the pipe's bytes and the eventfd's count through them (read from fds 40
 *   and 41), /dev/null is still at the reused number, the free number is still free, and
 *   EPOLL_CTL_DEL by the new numbers fails with ENOENT (the key is the old number);
 * - every registration's events and data, read from /proc/self/fdinfo of both epoll
 *   fds, are the same as before the dump; every event the loop sees carries one of the
 *   registered data values.
 */
#include "victim.h"

#include <inttypes.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/sysmacros.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>

#define D_EFD 0x1111000000000001ULL
#define D_TFD 0x2222000000000002ULL
#define D_SFD 0x3333000000000003ULL
#define D_EP2 0x4444000000000004ULL
#define D_EFD2 0x5555000000000005ULL
#define D_PIPE 0x6666000000000006ULL
#define D_EFD3 0x7777000000000007ULL
#define BIG 0x123456789ULL
#define PIPE_AT 40
#define EFD3_AT 41

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * The "tfd: events: data:" part of every registration in an epoll fd's fdinfo, ordered
 * by fd (the kernel lists them in the order of its internal tree, keyed by struct file
 * addresses, which means nothing across a restore).
 */
static void epoll_regs(int ep, char *out, size_t size)
{
	char path[64], text[8192];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	out[0] = 0;
	if (v_read_file(path, text, sizeof(text)) < 0) {
		snprintf(out, size, "<cannot read %s>", path);
		return;
	}
	struct {
		int tfd;
		unsigned events;
		unsigned long long data;
	} r[32];
	int n = 0;
	for (char *p = text; p && *p && n < 32;) {
		char *nl = strchr(p, '\n');
		if (strncmp(p, "tfd:", 4) == 0 &&
		    sscanf(p, "tfd: %d events: %x data: %llx", &r[n].tfd, &r[n].events, &r[n].data) == 3)
			n++;
		p = nl ? nl + 1 : NULL;
	}
	size_t len = 0;
	for (int fd = 0; fd < 1024; fd++)
		for (int i = 0; i < n; i++)
			if (r[i].tfd == fd && len < size)
				len += (size_t)snprintf(out + len, size - len, "tfd %d events %x data %llx\n", r[i].tfd,
							r[i].events, r[i].data);
}

static int sigmask_line(int fd, char *out, size_t size)
{
	char path[64], text[4096];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (v_read_file(path, text, sizeof(text)) < 0)
		return -1;
	return v_status_field(text, "sigmask", out, size);
}

int main(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		v_die("sigprocmask: %s", strerror(errno));
	sigset_t only1;
	sigemptyset(&only1);
	sigaddset(&only1, SIGUSR1);

	int efd = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	int efd2 = eventfd(0, EFD_NONBLOCK);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int tfd2 = timerfd_create(CLOCK_MONOTONIC, 0);
	int sfd = signalfd(-1, &only1, SFD_NONBLOCK);
	int ep = epoll_create1(0);
	int ep2 = epoll_create1(0);
	if (efd < 0 || efd2 < 0 || tfd < 0 || tfd2 < 0 || sfd < 0 || ep < 0 || ep2 < 0)
		v_die("creating the fds: %s", strerror(errno));
	uint64_t big = BIG;
	if (write(efd2, &big, 8) != 8)
		v_die("eventfd write: %s", strerror(errno));
	struct itimerspec its = { { 0, 50000000 }, { 0, 50000000 } };
	if (timerfd_settime(tfd, 0, &its, NULL) != 0)
		v_die("timerfd_settime: %s", strerror(errno));
	struct itimerspec far = { { 0, 0 }, { 1000, 0 } };
	if (timerfd_settime(tfd2, 0, &far, NULL) != 0)
		v_die("timerfd_settime: %s", strerror(errno));
	struct epoll_event e;
	e.events = EPOLLIN;
	e.data.u64 = D_EFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &e) != 0)
		v_die("epoll_ctl efd: %s", strerror(errno));
	e.events = EPOLLIN;
	e.data.u64 = D_TFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e) != 0)
		v_die("epoll_ctl tfd: %s", strerror(errno));
	e.events = EPOLLIN | EPOLLPRI;
	e.data.u64 = D_SFD;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &e) != 0)
		v_die("epoll_ctl sfd: %s", strerror(errno));
	e.events = EPOLLIN;
	e.data.u64 = D_EP2;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ep2, &e) != 0)
		v_die("epoll_ctl ep2: %s", strerror(errno));
	e.events = EPOLLIN | EPOLLET;
	e.data.u64 = D_EFD2;
	if (epoll_ctl(ep2, EPOLL_CTL_ADD, efd2, &e) != 0)
		v_die("epoll_ctl efd2: %s", strerror(errno));
	/* registered, then moved: the registrations keep the old numbers */
	int pp[2];
	if (pipe2(pp, O_NONBLOCK) != 0)
		v_die("pipe: %s", strerror(errno));
	e.events = EPOLLIN;
	e.data.u64 = D_PIPE;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &e) != 0)
		v_die("epoll_ctl pipe: %s", strerror(errno));
	int old_pipe_fd = pp[0];
	if (dup2(pp[0], PIPE_AT) != PIPE_AT)
		v_die("dup2: %s", strerror(errno));
	close(pp[0]);
	int reused = open("/dev/null", O_RDONLY);
	if (reused != old_pipe_fd)
		v_die("/dev/null got fd %d, expected the pipe's old %d", reused, old_pipe_fd);
	int efd3 = eventfd(0, EFD_NONBLOCK);
	e.events = EPOLLIN;
	e.data.u64 = D_EFD3;
	if (efd3 < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd3, &e) != 0)
		v_die("eventfd/epoll_ctl efd3: %s", strerror(errno));
	int old_efd3 = efd3;
	if (dup2(efd3, EFD3_AT) != EFD3_AT)
		v_die("dup2: %s", strerror(errno));
	close(efd3);
	raise(SIGUSR1);

	static char regs1[2048], regs2[2048], mask[128];
	epoll_regs(ep, regs1, sizeof(regs1));
	epoll_regs(ep2, regs2, sizeof(regs2));
	if (sigmask_line(sfd, mask, sizeof(mask)) != 0)
		v_die("no sigmask in the signalfd's fdinfo");
	/* let the periodic timer tick a few times unread */
	v_sleep_ms(200);

	v_ready();
	v_wait_go();

	static char now1[2048], now2[2048], mnow[128];
	epoll_regs(ep, now1, sizeof(now1));
	epoll_regs(ep2, now2, sizeof(now2));
	V_CHECK(strcmp(regs1, now1) == 0, "outer epoll registrations differ:\nbefore:\n%safter:\n%s", regs1, now1);
	V_CHECK(strcmp(regs2, now2) == 0, "nested epoll registrations differ:\nbefore:\n%safter:\n%s", regs2, now2);
	if (sigmask_line(sfd, mnow, sizeof(mnow)) != 0)
		v_fail("signalfd: no sigmask in fdinfo after restore");
	else
		V_CHECK(strcmp(mask, mnow) == 0, "signalfd: sigmask %s, expected %s", mnow, mask);

	struct itimerspec cur;
	if (timerfd_gettime(tfd, &cur) != 0) {
		v_fail("timerfd_gettime: %s", strerror(errno));
	} else {
		V_CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 50000000,
			"timerfd: interval %ld.%09ld, expected 0.050000000", (long)cur.it_interval.tv_sec,
			cur.it_interval.tv_nsec);
		V_CHECK(cur.it_value.tv_sec == 0 && cur.it_value.tv_nsec > 0 && cur.it_value.tv_nsec <= 50000000,
			"timerfd: next expiry in %ld.%09ld, expected within 50 ms", (long)cur.it_value.tv_sec,
			cur.it_value.tv_nsec);
	}
	if (timerfd_gettime(tfd2, &cur) != 0) {
		v_fail("timerfd_gettime (one-shot): %s", strerror(errno));
	} else {
		V_CHECK(cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 0,
			"one-shot timerfd: interval %ld.%09ld, expected 0", (long)cur.it_interval.tv_sec,
			cur.it_interval.tv_nsec);
		V_CHECK(cur.it_value.tv_sec >= 900 && cur.it_value.tv_sec < 1000,
			"one-shot timerfd: %ld.%09ld s left, expected a little under 1000 s", (long)cur.it_value.tv_sec,
			cur.it_value.tv_nsec);
	}
	V_CHECK(!(fcntl(tfd2, F_GETFL) & O_NONBLOCK) && (fcntl(tfd, F_GETFL) & O_NONBLOCK) &&
			(fcntl(efd, F_GETFL) & O_NONBLOCK) && (fcntl(sfd, F_GETFL) & O_NONBLOCK),
		"O_NONBLOCK flags of the fds differ from their setup");

	{
		struct stat st;
		V_CHECK(fstat(reused, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
				minor(st.st_rdev) == 3,
			"fd %d: not /dev/null after restore", reused);
		V_CHECK(fcntl(old_efd3, F_GETFD) < 0 && errno == EBADF, "fd %d: should be free after restore",
			old_efd3);
		V_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, PIPE_AT, NULL) < 0 && errno == ENOENT,
			"EPOLL_CTL_DEL of fd %d: expected ENOENT (registered as fd %d)", PIPE_AT, old_pipe_fd);
		V_CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, EFD3_AT, NULL) < 0 && errno == ENOENT,
			"EPOLL_CTL_DEL of fd %d: expected ENOENT (registered as fd %d)", EFD3_AT, old_efd3);
		if (write(pp[1], "moved", 5) != 5)
			v_fail("pipe write: %s", strerror(errno));
		uint64_t seven = 7;
		if (write(EFD3_AT, &seven, 8) != 8)
			v_fail("eventfd write: %s", strerror(errno));
	}

	/* the loop */
	int pipe_reads = 0, efd3_reads = 0;
	int efd_reads = 0, efd_eagain = 0, sig_reads = 0, ep2_events = 0, efd2_reads = 0, bad_data = 0;
	uint64_t ticks = 0, ticks_window = 0;
	double first_tick = 0, start = now_s();
	while (now_s() - start < 3.0) {
		if (first_tick > 0 && now_s() - first_tick >= 0.6)
			break;
		struct epoll_event evs[8];
		int n = epoll_wait(ep, evs, 8, 200);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			v_fail("epoll_wait: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t d = evs[i].data.u64, val;
			if (d == D_EFD) {
				ssize_t r = read(efd, &val, 8);
				if (r == 8) {
					efd_reads++;
					V_CHECK(val == 1, "semaphore eventfd read gave %" PRIu64 ", expected 1", val);
				} else if (r < 0 && errno == EAGAIN) {
					efd_eagain++;
				}
			} else if (d == D_TFD) {
				if (read(tfd, &val, 8) == 8) {
					if (first_tick == 0)
						first_tick = now_s(); /* the backlog: start counting from here */
					else
						ticks_window += val;
					ticks += val;
				}
			} else if (d == D_SFD) {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
					sig_reads++;
					V_CHECK(si.ssi_signo == SIGUSR1 && si.ssi_pid == (uint32_t)getpid(),
						"signalfd: signal %u from pid %u, expected SIGUSR1 from %d", si.ssi_signo,
						si.ssi_pid, (int)getpid());
				}
			} else if (d == D_EP2) {
				struct epoll_event in[4];
				int m = epoll_wait(ep2, in, 4, 0);
				for (int j = 0; j < m; j++) {
					ep2_events++;
					if (in[j].data.u64 != D_EFD2) {
						v_fail("nested epoll: event with data %" PRIx64, (uint64_t)in[j].data.u64);
						continue;
					}
					V_CHECK(in[j].events & EPOLLIN, "nested epoll: events 0x%x", in[j].events);
					if (read(efd2, &val, 8) == 8) {
						efd2_reads++;
						V_CHECK(val == BIG, "eventfd: read 0x%" PRIx64 ", expected 0x%llx", val, BIG);
					}
				}
			} else if (d == D_PIPE) {
				char buf[16];
				ssize_t r = read(PIPE_AT, buf, sizeof(buf));
				if (r > 0) {
					pipe_reads++;
					V_CHECK(r == 5 && memcmp(buf, "moved", 5) == 0, "pipe: read %zd bytes", r);
				}
			} else if (d == D_EFD3) {
				if (read(EFD3_AT, &val, 8) == 8) {
					efd3_reads++;
					V_CHECK(val == 7, "moved eventfd: read %" PRIu64 ", expected 7", val);
				}
			} else {
				bad_data++;
				v_fail("epoll: event with unknown data 0x%" PRIx64 " (events 0x%x)", d, evs[i].events);
			}
		}
		if (bad_data > 3)
			break;
	}
	uint64_t val;
	ssize_t r = read(efd, &val, 8);
	V_CHECK(efd_reads == 3, "semaphore eventfd: %d successful reads, expected 3", efd_reads);
	V_CHECK(r < 0 && errno == EAGAIN, "semaphore eventfd: a read after the 3 gave %zd, expected EAGAIN", r);
	V_CHECK(efd_eagain == 0, "semaphore eventfd: reported ready %d time(s) with nothing to read", efd_eagain);
	V_CHECK(sig_reads == 1, "signalfd: delivered SIGUSR1 %d times, expected once", sig_reads);
	V_CHECK(ep2_events == 1 && efd2_reads == 1, "nested epoll: %d event(s), %d read(s) of the eventfd, expected 1 and 1",
		ep2_events, efd2_reads);
	V_CHECK(first_tick > 0, "timerfd: never fired after restore");
	/* 0.6 s at 50 ms: 12 ticks */
	V_CHECK(ticks_window >= 8 && ticks_window <= 16,
		"timerfd: %" PRIu64 " ticks in 0.6 s after the backlog, expected about 12", ticks_window);
	V_CHECK(ticks >= 1, "timerfd: no ticks");
	V_CHECK(pipe_reads == 1, "pipe registered under its old number: %d read(s), expected 1", pipe_reads);
	V_CHECK(efd3_reads == 1, "eventfd registered under its old number: %d read(s), expected 1", efd3_reads);

	/* SIGUSR2 is not in the signalfd's mask: it must not show up there */
	raise(SIGUSR2);
	struct signalfd_siginfo si;
	r = read(sfd, &si, sizeof(si));
	V_CHECK(r < 0 && errno == EAGAIN, "signalfd: reported signal %u after raise(SIGUSR2), expected nothing",
		r > 0 ? si.ssi_signo : 0);
	sigset_t two;
	sigemptyset(&two);
	sigaddset(&two, SIGUSR2);
	struct timespec zero = { 0, 0 };
	V_CHECK(sigtimedwait(&two, NULL, &zero) == SIGUSR2, "SIGUSR2 was not pending");
	v_finish();
}
