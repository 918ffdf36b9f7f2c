/*
 * unsupported_victim MODE: holds a file descriptor stasis cannot checkpoint yet, so a
 * dump must fail, name the kind of fd, and leave the process running exactly as before.
 *
 *   io_uring   an io_uring instance (io_uring_setup), fd 7
 *   perf       a perf_event fd counting this task's clock (perf_event_open), fd 7
 *   timer      an armed POSIX timer on CLOCK_THREAD_CPUTIME_ID in a process with a second
 *              thread (which thread's clock it counts is not visible from outside)
 *   seccomp_notify  a seccomp filter that sends getppid to a user-space supervisor
 *              (SECCOMP_RET_USER_NOTIF, installed with SECCOMP_FILTER_FLAG_NEW_LISTENER);
 *              the listener is closed, so getppid fails with ENOSYS; fd 7 is /dev/null
 *   seccomp_listener  the same filter, its listener kept open at fd 7
 *   scm_rights a perf_event fd in flight in a unix socket (SCM_RIGHTS), fd 7
 *              receives it (files in flight are dumped; a perf_event fd is not)
 *
 * Besides that fd it holds ordinary state: memory with a pattern, a regular file at an
 * offset (fd 8), a blocked mask, a signal handler, a sigaltstack. No restore happens in
 * its tests: after the failed dump the harness creates the go file, and the same
 * process checks that nothing changed, that it is not traced or stopped, and that the
 * special fd still works.
 */
#include "victim.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <signal.h>
#include <sys/syscall.h>

#define SPECIAL_FD 7
#define FILE_FD 8

static uint64_t pattern[1 << 16];
static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

/* A perf_event fd counting this task's clock (user time only). */
static int task_clock_counter(void)
{
	struct perf_event_attr a;
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.type = PERF_TYPE_SOFTWARE;
	a.config = PERF_COUNT_SW_TASK_CLOCK;
	a.exclude_kernel = 1;
	return (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

static long perf_read(int fd)
{
	uint64_t v = 0;
	if (read(fd, &v, sizeof(v)) != (ssize_t)sizeof(v))
		return -1;
	return (long)v;
}

static timer_t posix_timer;

/* A filter sending getppid to a supervisor; returns its listener fd. */
static int notify_filter(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 4, .filter = f };
	int listener = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (listener < 0)
		v_die("seccomp(NEW_LISTENER): %s", strerror(errno));
	return listener;
}

static void *idle_thread(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "io_uring";
	int fd;
	if (strcmp(mode, "io_uring") == 0) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		fd = (int)syscall(SYS_io_uring_setup, 8, &p);
		if (fd < 0)
			v_die("io_uring_setup: %s (is io_uring disabled?)", strerror(errno));
	} else if (strcmp(mode, "perf") == 0) {
		fd = task_clock_counter();
		if (fd < 0)
			v_die("perf_event_open: %s", strerror(errno));
	} else if (strcmp(mode, "scm_rights") == 0) {
		/* a perf_event fd in flight: sent over a socketpair, not received yet; fd 7 is
		 * the receiving end */
		int sp[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sp) != 0)
			v_die("socketpair: %s", strerror(errno));
		int passed = task_clock_counter();
		if (passed < 0)
			v_die("perf_event_open: %s", strerror(errno));
		char cbuf[CMSG_SPACE(sizeof(int))];
		memset(cbuf, 0, sizeof(cbuf));
		struct iovec iov = { .iov_base = "fd", .iov_len = 2 };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		struct cmsghdr *c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &passed, sizeof(int));
		if (sendmsg(sp[0], &m, 0) != 2)
			v_die("sendmsg: %s", strerror(errno));
		close(passed);
		fd = sp[1];
	} else if (strcmp(mode, "seccomp_listener") == 0) {
		fd = notify_filter();
	} else if (strcmp(mode, "seccomp_notify") == 0) {
		close(notify_filter());
		errno = 0;
		if (syscall(SYS_getppid) != -1 || errno != ENOSYS)
			v_die("getppid with the listener closed: %s, expected ENOSYS", strerror(errno));
		fd = open("/dev/null", O_RDONLY);
	} else if (strcmp(mode, "timer") == 0) {
		/* a thread CPU-time POSIX timer, armed, and a second thread; fd 7 is /dev/null */
		struct sigevent ev;
		memset(&ev, 0, sizeof(ev));
		ev.sigev_notify = SIGEV_NONE;
		struct itimerspec its = { .it_value = { 1000, 0 } };
		pthread_t th;
		if (pthread_create(&th, NULL, idle_thread, NULL) != 0)
			v_die("pthread_create");
		if (timer_create(CLOCK_THREAD_CPUTIME_ID, &ev, &posix_timer) != 0 ||
		    timer_settime(posix_timer, 0, &its, NULL) != 0)
			v_die("timer_create: %s", strerror(errno));
		fd = open("/dev/null", O_RDONLY);
	} else {
		v_die("unknown mode %s", mode);
	}
	if (dup2(fd, SPECIAL_FD) != SPECIAL_FD)
		v_die("dup2: %s", strerror(errno));
	close(fd);

	for (size_t i = 0; i < sizeof(pattern) / 8; i++)
		pattern[i] = v_mix(i);
	char path[4200];
	snprintf(path, sizeof(path), "%s/unsupported.dat", v_tmp());
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || write(f, pattern, 8192) != 8192 || dup2(f, FILE_FD) != FILE_FD)
		v_die("file: %s", strerror(errno));
	close(f);
	lseek(FILE_FD, 4321, SEEK_SET);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_SETMASK, &block, NULL);
	static char alt[65536];
	stack_t ss = { .ss_sp = alt, .ss_size = sizeof(alt), .ss_flags = 0 };
	sigaltstack(&ss, NULL);
	long perf_before = strcmp(mode, "perf") == 0 ? perf_read(SPECIAL_FD) : 0;

	v_ready();
	v_wait_go();

	for (size_t i = 0; i < sizeof(pattern) / 8; i++)
		if (pattern[i] != v_mix(i)) {
			v_fail("memory changed at word %zu", i);
			break;
		}
	V_CHECK(lseek(FILE_FD, 0, SEEK_CUR) == 4321, "file offset is %lld, expected 4321",
		(long long)lseek(FILE_FD, 0, SEEK_CUR));
	sigset_t now;
	sigprocmask(SIG_BLOCK, NULL, &now);
	for (int s = 1; s < 65; s++)
		if (sigismember(&now, s) != sigismember(&block, s))
			v_fail("signal %d blocked state changed", s);
	struct sigaction cur;
	sigaction(SIGUSR1, NULL, &cur);
	V_CHECK(cur.sa_handler == on_usr1 && (cur.sa_flags & SA_RESTART), "SIGUSR1 disposition changed");
	raise(SIGUSR1);
	V_CHECK(got_usr1, "SIGUSR1 handler did not run");
	stack_t cs;
	sigaltstack(NULL, &cs);
	V_CHECK(cs.ss_sp == alt && cs.ss_size == sizeof(alt), "sigaltstack changed");

	static char status[8192];
	char val[256];
	if (v_read_file("/proc/self/status", status, sizeof(status)) < 0)
		v_die("read status");
	if (v_status_field(status, "TracerPid", val, sizeof(val)) == 0)
		V_CHECK(strcmp(val, "0") == 0, "still traced by pid %s after the failed dump", val);

	V_CHECK(fcntl(SPECIAL_FD, F_GETFD) >= 0, "the %s fd %d is gone", mode, SPECIAL_FD);
	if (strcmp(mode, "io_uring") == 0) {
		static char probe[sizeof(struct io_uring_probe) + 256 * sizeof(struct io_uring_probe_op)];
		memset(probe, 0, sizeof(probe));
		long r = syscall(SYS_io_uring_register, SPECIAL_FD, IORING_REGISTER_PROBE, probe, 256);
		V_CHECK(r == 0, "io_uring_register(PROBE) on the ring fails: %s", strerror(errno));
	} else if (strcmp(mode, "scm_rights") == 0) {
		char data[8], cbuf[CMSG_SPACE(sizeof(int))];
		struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
		struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
				    .msg_controllen = sizeof(cbuf) };
		ssize_t n = recvmsg(SPECIAL_FD, &m, MSG_DONTWAIT);
		struct cmsghdr *c = n == 2 ? CMSG_FIRSTHDR(&m) : NULL;
		V_CHECK(c && c->cmsg_type == SCM_RIGHTS, "the descriptor in flight was lost (%zd)", n);
	} else if (strcmp(mode, "seccomp_listener") == 0) {
		/* a live listener knows no notification 12345 */
		uint64_t id = 12345;
		errno = 0;
		V_CHECK(ioctl(SPECIAL_FD, SECCOMP_IOCTL_NOTIF_ID_VALID, &id) == -1 && errno == ENOENT,
			"the listener does not answer SECCOMP_IOCTL_NOTIF_ID_VALID: %s", strerror(errno));
	} else if (strcmp(mode, "seccomp_notify") == 0) {
		errno = 0;
		V_CHECK(syscall(SYS_getppid) == -1 && errno == ENOSYS,
			"getppid: %s, expected ENOSYS (the notifying filter is gone?)", strerror(errno));
	} else if (strcmp(mode, "timer") == 0) {
		struct itimerspec left;
		V_CHECK(timer_gettime(posix_timer, &left) == 0 && left.it_value.tv_sec > 900,
			"the POSIX timer is no longer armed after the failed dump");
	} else {
		for (volatile int i = 0; i < 10000000; i++)
			;
		long v = perf_read(SPECIAL_FD);
		V_CHECK(v > perf_before, "perf counter reads %ld, was %ld: it does not count", v, perf_before);
	}
	v_cleanup_tmp();
	v_finish();
}
