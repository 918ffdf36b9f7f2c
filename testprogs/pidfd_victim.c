/*
 * pidfd_victim: pidfds come back referring to the same processes.
 *
 *   fd 5  pidfd of child A (which waits on a pipe, then exits with 7);
 *   fd 6  pidfd of child B, PIDFD_NONBLOCK and close-on-exec (B waits for SIGUSR1 and
 *         exits 0 when it comes);
 *   fd 7  pidfd of the victim's parent, a process outside the tree that outlives the
 *         restore (the test process), or of the process given as argument;
 *   in A, fd 9: a pidfd of its parent (the victim);
 *   fd 8  a pidfd of the victim itself, opened before the forks (so A and B share it), and
 *         its dup at fd 10: one open file description in three processes.
 *
 * After the go file: fdinfo "Pid:" of each pidfd names the process it named before;
 * pidfd_send_signal(fd 6, SIGUSR1) ends B, poll says fd 6 is readable, and
 * waitid(P_PIDFD, fd 6) collects it (status 0); A (told through its pipe) checks its own
 * pidfd of the victim (fdinfo, a signal 0 through it) and exits 7, which
 * waitid(P_PIDFD, fd 5) collects; a signal 0 through fd 7 reaches the outside process.
 * kcmp says fds 8 and 10 of the victim and fd 8 of A are one description (A checks its
 * side), naming the victim.
 */
#include <linux/kcmp.h>
#include "victim.h"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int pidfd_open(pid_t pid, unsigned flags)
{
	return (int)syscall(SYS_pidfd_open, pid, flags);
}

static int pidfd_send_signal(int fd, int sig)
{
	return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
}

/* The "Pid:" of a pidfd's fdinfo, or -100. */
static int fdinfo_pid(int fd)
{
	char p[64], buf[1024], val[64];
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	if (v_read_file(p, buf, sizeof(buf)) < 0 || v_status_field(buf, "Pid", val, sizeof(val)) != 0)
		return -100;
	return atoi(val);
}

static void place(int fd, int want, int cloexec)
{
	if (fd < 0 || dup3(fd, want, cloexec ? O_CLOEXEC : 0) != want)
		v_die("fd %d: %s", want, strerror(errno));
	close(fd);
}

static volatile sig_atomic_t got_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

int main(int argc, char **argv)
{
	int go[2];
	if (pipe(go))
		v_die("pipe");
	pid_t me = getpid();
	place(pidfd_open(me, 0), 8, 0);
	if (dup2(8, 10) != 10)
		v_die("dup2: %s", strerror(errno));
	pid_t a = fork();
	if (a < 0)
		v_die("fork");
	if (a == 0) {
		close(go[1]);
		place(pidfd_open(me, 0), 9, 0);
		char c;
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		int ok = fdinfo_pid(9) == getppid() && pidfd_send_signal(9, 0) == 0 &&
			 fdinfo_pid(8) == getppid() && syscall(SYS_kcmp, getpid(), getppid(), KCMP_FILE, 8, 8) == 0;
		_exit(ok ? 7 : 1);
	}
	close(go[0]);
	sigset_t usr1, old;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	pid_t b = fork();
	if (b < 0)
		v_die("fork");
	if (b == 0) {
		signal(SIGUSR1, on_usr1);
		while (!got_usr1)
			sigsuspend(&old);
		_exit(0);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	pid_t outside = argc > 1 ? atoi(argv[1]) : getppid();
	place(pidfd_open(a, 0), 5, 0);
	place(pidfd_open(b, PIDFD_NONBLOCK), 6, 1);
	place(pidfd_open(outside, 0), 7, 0);
	v_ready();
	v_wait_go();

	if (fdinfo_pid(5) != a || fdinfo_pid(6) != b || fdinfo_pid(7) != outside)
		v_fail("fdinfo Pid: %d %d %d, expected %d %d %d", fdinfo_pid(5), fdinfo_pid(6), fdinfo_pid(7), a,
		       b, outside);
	if (fdinfo_pid(8) != me || syscall(SYS_kcmp, me, me, KCMP_FILE, 8, 10) != 0)
		v_fail("fds 8 and 10: Pid %d, or no longer one description", fdinfo_pid(8));
	if (!(fcntl(6, F_GETFL) & O_NONBLOCK) || fcntl(6, F_GETFD) != FD_CLOEXEC || fcntl(5, F_GETFD) != 0)
		v_fail("flags: fd 6 %#x/%d, fd 5 %d", fcntl(6, F_GETFL), fcntl(6, F_GETFD), fcntl(5, F_GETFD));

	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 6, &si, WEXITED) == 0 || errno != EAGAIN)
		v_fail("waitid on the nonblocking pidfd of a live child did not say EAGAIN");
	if (pidfd_send_signal(6, SIGUSR1) != 0)
		v_fail("pidfd_send_signal to B: %s", strerror(errno));
	struct pollfd pf = {.fd = 6, .events = POLLIN};
	if (poll(&pf, 1, 10000) != 1 || !(pf.revents & POLLIN))
		v_fail("the pidfd of B does not become readable when B exits");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 6, &si, WEXITED) != 0 || si.si_pid != b || si.si_code != CLD_EXITED || si.si_status != 0)
		v_fail("waitid(P_PIDFD, B): %s, pid %d code %d status %d", strerror(errno), si.si_pid, si.si_code,
		       si.si_status);

	if (write(go[1], "g", 1) != 1)
		v_fail("wake A");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 5, &si, WEXITED) != 0 || si.si_pid != a || si.si_status != 7)
		v_fail("waitid(P_PIDFD, A): %s, pid %d status %d (7: A's own pidfd of us was right)",
		       strerror(errno), si.si_pid, si.si_status);
	if (pidfd_send_signal(7, 0) != 0)
		v_fail("a signal 0 through the pidfd of the outside process: %s", strerror(errno));
	v_finish();
}
