/*
 * sigqueue_many: 100 real-time signals queued for the process at dump time, each with
 * its own value, come back complete and in order.
 *
 * With SIGRTMIN+3..SIGRTMIN+5 blocked it queues 100 signals with sigqueue(): signal i
 * (0..99) is SIGRTMIN+3+(i%3) with value 1000+i. After the go file sigtimedwait() collects exactly those 100 in the order the
 * kernel delivers real-time signals (lowest number first; queued order within one
 * number), each SI_QUEUE from this process with its value, and then nothing more.
 */
#include "victim.h"

#include <signal.h>

#define COUNT 100

int main(void)
{
	sigset_t block;
	sigemptyset(&block);
	for (int s = 3; s <= 5; s++)
		sigaddset(&block, SIGRTMIN + s);
	sigprocmask(SIG_BLOCK, &block, NULL);
	pid_t me = getpid();
	for (int i = 0; i < COUNT; i++) {
		union sigval v = { .sival_int = 1000 + i };
		if (sigqueue(me, SIGRTMIN + 3 + i % 3, v) != 0)
			v_die("sigqueue %d: %s", i, strerror(errno));
	}

	v_ready();
	v_wait_go();

	int got = 0;
	struct timespec zero = { 0, 0 };
	for (int s = 3; s <= 5; s++) {
		for (int i = s - 3; i < COUNT; i += 3) {
			siginfo_t si;
			int sig = sigtimedwait(&block, &si, &zero);
			if (sig < 0) {
				v_fail("signal %d (SIGRTMIN+%d, value %d) missing: %s", got, s, 1000 + i, strerror(errno));
				goto done;
			}
			got++;
			V_CHECK(sig == SIGRTMIN + s && si.si_value.sival_int == 1000 + i && si.si_code == SI_QUEUE &&
					si.si_pid == me,
				"signal %d: SIGRTMIN+%d value %d code %d pid %d, expected SIGRTMIN+%d value %d SI_QUEUE pid %d",
				got - 1, sig - SIGRTMIN, si.si_value.sival_int, si.si_code, (int)si.si_pid, s, 1000 + i,
				(int)me);
		}
	}
	siginfo_t extra;
	V_CHECK(sigtimedwait(&block, &extra, &zero) < 0 && errno == EAGAIN, "a signal more than the %d queued",
		COUNT);
done:
	V_CHECK(got == COUNT, "collected %d signals, expected %d", got, COUNT);
	v_finish();
}
