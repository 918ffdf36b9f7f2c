/*
 * blocking_victim MODE [MS]: frozen inside a blocking system call.
 *
 * Prints READY and immediately enters the blocking call named by MODE, so a dump taken
 * right after READY finds it inside that call. After restore the call must go on as the
 * kernel would after a signal that does not run a handler: restarted (with the time
 * already slept taken into account) or returning EINTR; each mode loops on EINTR like a
 * careful program does, and then checks the outcome.
 *
 * Timed modes (MS, default 3000, is how long they block):
 *   nanosleep        relative nanosleep, resumed with the remaining time on EINTR;
 *                    checks that at least MS elapsed (CLOCK_MONOTONIC).
 *   clock_nanosleep  absolute CLOCK_MONOTONIC deadline; checks the clock passed it.
 *   poll             poll(NULL, 0, MS); must return 0 (timeout), not early.
 *   select           select() with no fds and a timeout; must return 0, not early.
 *   futex            FUTEX_WAIT on a private word with a timeout; ETIMEDOUT, not early.
 *
 * Signal modes (wait until the harness sends SIGUSR1 after the go file exists):
 *   pause            pause() until the SIGUSR1 handler ran.
 *   sigsuspend       sigsuspend() with a temporary mask; after the wake-up the blocked
 *                    mask must be the original one again (SIGUSR1 and SIGUSR2 blocked).
 *
 * Not covered yet (need pipes, sockets or child processes, not supported by the tool
 * yet): read on a pipe or socket, wait/waitpid on a child, epoll_wait.
 */
#include "victim.h"

#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/syscall.h>

static volatile sig_atomic_t got_usr1;
static int interrupted;

static void on_usr1(int sig)
{
	(void)sig;
	got_usr1 = 1;
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec ns_ts(int64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
	return ts;
}

static void check_elapsed(const char *mode, int64_t start, long ms)
{
	int64_t el = now_ns() - start;
	V_CHECK(el >= (int64_t)ms * 1000000, "%s returned after %lld ms, before its %ld ms were up",
		mode, (long long)(el / 1000000), ms);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "nanosleep";
	long ms = argc > 2 ? atol(argv[2]) : 3000;
	(void)v_go_path();

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0)
		v_die("sigaction: %s", strerror(errno));

	int64_t start = now_ns();
	if (strcmp(mode, "nanosleep") == 0) {
		struct timespec req = ns_ts((int64_t)ms * 1000000), rem = { 0, 0 };
		v_ready();
		while (nanosleep(&req, &rem) != 0) {
			if (errno != EINTR) {
				v_fail("nanosleep: %s", strerror(errno));
				break;
			}
			interrupted++;
			req = rem;
		}
		check_elapsed(mode, start, ms);
	} else if (strcmp(mode, "clock_nanosleep") == 0) {
		struct timespec dl = ns_ts(start + (int64_t)ms * 1000000);
		v_ready();
		int r;
		while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &dl, NULL)) != 0) {
			if (r != EINTR) {
				v_fail("clock_nanosleep: %s", strerror(r));
				break;
			}
			interrupted++;
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		V_CHECK(now.tv_sec > dl.tv_sec || (now.tv_sec == dl.tv_sec && now.tv_nsec >= dl.tv_nsec),
			"clock_nanosleep returned before its deadline");
	} else if (strcmp(mode, "poll") == 0) {
		int64_t end = start + (int64_t)ms * 1000000;
		v_ready();
		for (;;) {
			int left = (int)((end - now_ns()) / 1000000);
			int r = poll(NULL, 0, left > 0 ? left + 1 : 0);
			if (r == 0 && now_ns() >= end)
				break;
			if (r < 0 && errno != EINTR) {
				v_fail("poll: %s", strerror(errno));
				break;
			}
			if (r > 0) {
				v_fail("poll with no fds returned %d", r);
				break;
			}
			interrupted++;
		}
		check_elapsed(mode, start, ms);
	} else if (strcmp(mode, "select") == 0) {
		struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
		v_ready();
		for (;;) {
			int r = select(0, NULL, NULL, NULL, &tv);
			if (r == 0)
				break;
			if (r < 0 && errno != EINTR) {
				v_fail("select: %s", strerror(errno));
				break;
			}
			interrupted++; /* tv holds the time left */
		}
		check_elapsed(mode, start, ms);
	} else if (strcmp(mode, "futex") == 0) {
		static uint32_t word;
		int64_t end = start + (int64_t)ms * 1000000;
		v_ready();
		for (;;) {
			int64_t left = end - now_ns();
			if (left < 0)
				left = 0;
			struct timespec ts = ns_ts(left);
			long r = syscall(SYS_futex, &word, FUTEX_WAIT_PRIVATE, 0, &ts, NULL, 0);
			if (r == 0) {
				v_fail("FUTEX_WAIT returned 0 although nobody woke it");
				break;
			}
			if (errno == ETIMEDOUT)
				break;
			if (errno != EINTR) {
				v_fail("futex: %s", strerror(errno));
				break;
			}
			interrupted++;
		}
		check_elapsed(mode, start, ms);
	} else if (strcmp(mode, "pause") == 0) {
		v_ready();
		while (!got_usr1) {
			int r = pause();
			if (r != -1 || errno != EINTR)
				v_fail("pause returned %d (%s), expected -1 EINTR", r, strerror(errno));
		}
	} else if (strcmp(mode, "sigsuspend") == 0) {
		sigset_t block, empty, now;
		sigemptyset(&block);
		sigaddset(&block, SIGUSR1);
		sigaddset(&block, SIGUSR2);
		sigprocmask(SIG_SETMASK, &block, NULL);
		sigemptyset(&empty);
		sigaddset(&empty, SIGUSR2); /* the temporary mask: SIGUSR1 allowed */
		v_ready();
		while (!got_usr1) {
			int r = sigsuspend(&empty);
			if (r != -1 || errno != EINTR)
				v_fail("sigsuspend returned %d (%s), expected -1 EINTR", r, strerror(errno));
		}
		sigprocmask(SIG_BLOCK, NULL, &now);
		for (int s = 1; s < 65; s++)
			if (sigismember(&now, s) != sigismember(&block, s))
				v_fail("after sigsuspend signal %d is %sblocked: the original mask was not put back",
				       s, sigismember(&now, s) ? "" : "not ");
	} else {
		v_die("unknown mode %s", mode);
	}
	v_wait_go();
	if (interrupted)
		v_print("note: %s was interrupted %d time(s)\n", mode, interrupted);
	v_finish();
}
