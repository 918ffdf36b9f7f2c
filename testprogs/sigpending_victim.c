/*
 * sigpending_victim: blocked signals that are pending at dump time are still pending
 * after restore, with their siginfo, in order, thread-directed ones on the thread and
 * process-directed ones on the process.
 *
 * With everything of interest blocked, it queues: SIGUSR1 with tgkill() (thread-directed,
 * SI_TKILL), SIGUSR2 with kill() (process-directed, SI_USER), SIGRTMIN+2 three times with
 * sigqueue() and values 1, 2, 3 (process-directed, SI_QUEUE, all three must be kept
 * in order), SIGRTMIN+6 with rt_tgsigqueueinfo() and value 9 (thread-directed).
 * After the go file it compares SigPnd/ShdPnd of /proc/self/status and then collects
 * every signal with sigtimedwait(), checking signo, code, value and sender.
 */
#include "victim.h"

#include <signal.h>
#include <sys/syscall.h>

static char status_before[8192], status_after[8192];

struct want {
	int sig, code, value, from_self;
};

int main(void)
{
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR1);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, SIGRTMIN + 2);
	sigaddset(&block, SIGRTMIN + 6);
	sigaddset(&block, SIGTERM);
	if (sigprocmask(SIG_SETMASK, &block, NULL) != 0)
		v_die("sigprocmask: %s", strerror(errno));

	pid_t me = getpid();
	/* learn the si_code the kernel gives tgkill() (SI_TKILL on most kernels) */
	siginfo_t si;
	syscall(SYS_tgkill, me, me, SIGTERM);
	struct timespec zero = { 0, 0 };
	if (sigtimedwait(&block, &si, &zero) != SIGTERM)
		v_die("sigtimedwait: %s", strerror(errno));
	int tkill_code = si.si_code;

	syscall(SYS_tgkill, me, me, SIGUSR1);
	kill(me, SIGUSR2);
	for (int i = 1; i <= 3; i++) {
		union sigval v = { .sival_int = i };
		if (sigqueue(me, SIGRTMIN + 2, v) != 0)
			v_die("sigqueue: %s", strerror(errno));
	}
	memset(&si, 0, sizeof(si));
	si.si_signo = SIGRTMIN + 6;
	si.si_code = SI_QUEUE;
	si.si_pid = me;
	si.si_uid = getuid();
	si.si_value.sival_int = 9;
	if (syscall(SYS_rt_tgsigqueueinfo, me, me, SIGRTMIN + 6, &si) != 0)
		v_die("rt_tgsigqueueinfo: %s", strerror(errno));

	if (v_read_file("/proc/self/status", status_before, sizeof(status_before)) < 0)
		v_die("read status");

	v_ready();
	v_wait_go();

	if (v_read_file("/proc/self/status", status_after, sizeof(status_after)) < 0)
		v_die("read status");
	/* (SigQ counts the signals queued for the whole uid: not comparable) */
	static const char *keys[] = { "SigPnd", "ShdPnd", "SigBlk" };
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char a[128] = "-", b[128] = "-";
		v_status_field(status_before, keys[i], a, sizeof(a));
		v_status_field(status_after, keys[i], b, sizeof(b));
		V_CHECK(strcmp(a, b) == 0, "/proc/self/status %s was %s, now %s", keys[i], a, b);
	}

	/* the thread's own queue is taken first, then the process's; lower numbers first,
	 * queued real-time signals in the order they were sent */
	const struct want want[] = {
		{ SIGUSR1, tkill_code, 0, 1 },
		{ SIGRTMIN + 6, SI_QUEUE, 9, 1 },
		{ SIGUSR2, SI_USER, 0, 1 },
		{ SIGRTMIN + 2, SI_QUEUE, 1, 1 },
		{ SIGRTMIN + 2, SI_QUEUE, 2, 1 },
		{ SIGRTMIN + 2, SI_QUEUE, 3, 1 },
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		int sig = want[i].sig;
		memset(&si, 0, sizeof(si));
		int got = sigtimedwait(&block, &si, &zero);
		if (got < 0) {
			v_fail("signal %d (#%zu) is no longer pending: %s", sig, i, strerror(errno));
			break;
		}
		if (got != sig) {
			v_fail("pending signal #%zu is %d, expected %d", i, got, sig);
			continue;
		}
		V_CHECK(si.si_code == want[i].code, "signal %d: si_code %d, expected %d", sig,
			si.si_code, want[i].code);
		V_CHECK(si.si_pid == me, "signal %d: si_pid %d, expected %d", sig, si.si_pid, me);
		if (want[i].code == SI_QUEUE)
			V_CHECK(si.si_value.sival_int == want[i].value,
				"signal %d: si_value %d, expected %d", sig, si.si_value.sival_int,
				want[i].value);
	}
	int extra = sigtimedwait(&block, &si, &zero);
	V_CHECK(extra < 0, "an extra signal %d was pending", extra);
	v_finish();
}
