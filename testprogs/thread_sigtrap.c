/*
 * thread_sigtrap [handler|ignore]: threads whose restore runs remote calls that stop at
 * an int3 (a forced SIGTRAP) must keep the process's SIGTRAP disposition, their masks
 * and a SIGTRAP pending for one of them.
 *
 * handler (default): SIGTRAP has an SA_SIGINFO handler with SIGUSR2 in its mask;
 * ignore: SIGTRAP is ignored. Three threads: A blocks SIGTRAP and has one pending
 * (tgkill), B blocks SIGTRAP, C blocks only SIGUSR1. After the go file every thread
 * checks its mask, the disposition (raw rt_sigaction) and its pending set; then A
 * unblocks SIGTRAP: the handler must run exactly once in A (handler), or nothing happens
 * and nothing stays pending (ignore).
 */
#include "victim.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

struct k_sigaction {
	unsigned long handler, flags, restorer, mask;
};

static int ignore_mode;
static pthread_barrier_t go;
static volatile sig_atomic_t trap_hits;
static volatile pid_t trap_tid;
static struct k_sigaction want;
static char failures[3][256];

static void on_trap(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	(void)uc;
	trap_hits++;
	trap_tid = (pid_t)syscall(SYS_gettid);
}

static void raw_action(struct k_sigaction *out)
{
	memset(out, 0, sizeof(*out));
	syscall(SYS_rt_sigaction, SIGTRAP, NULL, out, 8);
}

static void note(int idx, const char *what)
{
	if (!failures[idx][0])
		snprintf(failures[idx], sizeof(failures[idx]), "thread %c: %s", 'A' + idx, what);
}

static void *worker(void *arg)
{
	int idx = (int)(intptr_t)arg;
	sigset_t mask, now, pend;
	sigemptyset(&mask);
	if (idx == 2)
		sigaddset(&mask, SIGUSR1);
	else
		sigaddset(&mask, SIGTRAP);
	pthread_sigmask(SIG_SETMASK, &mask, NULL);
	if (idx == 0)
		syscall(SYS_tgkill, getpid(), syscall(SYS_gettid), SIGTRAP);
	pthread_barrier_wait(&go); /* set up */
	pthread_barrier_wait(&go); /* after the go file */

	pthread_sigmask(SIG_SETMASK, NULL, &now);
	for (int s = 1; s < 64; s++)
		if (sigismember(&now, s) != sigismember(&mask, s))
			note(idx, "signal mask changed");
	struct k_sigaction act;
	raw_action(&act);
	if (memcmp(&act, &want, sizeof(act)) != 0)
		note(idx, "SIGTRAP disposition changed");
	sigpending(&pend);
	if (sigismember(&pend, SIGTRAP) != (idx == 0))
		note(idx, idx == 0 ? "its SIGTRAP is no longer pending" : "a SIGTRAP is pending");
	if (idx == 0) {
		pid_t me = (pid_t)syscall(SYS_gettid);
		sigset_t trap;
		sigemptyset(&trap);
		sigaddset(&trap, SIGTRAP);
		pthread_sigmask(SIG_UNBLOCK, &trap, NULL);
		if (ignore_mode) {
			sigpending(&pend);
			if (trap_hits != 0 || sigismember(&pend, SIGTRAP))
				note(idx, "ignored SIGTRAP ran a handler or stayed pending");
		} else if (trap_hits != 1 || trap_tid != me) {
			note(idx, "the pending SIGTRAP did not run the handler once in this thread");
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	ignore_mode = argc > 1 && strcmp(argv[1], "ignore") == 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (ignore_mode) {
		sa.sa_handler = SIG_IGN;
	} else {
		sa.sa_sigaction = on_trap;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigaddset(&sa.sa_mask, SIGUSR2);
	}
	if (sigaction(SIGTRAP, &sa, NULL) != 0)
		v_die("sigaction SIGTRAP: %s", strerror(errno));
	raw_action(&want);
	pthread_barrier_init(&go, NULL, 4);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i) != 0)
			v_die("pthread_create");
	pthread_barrier_wait(&go);
	v_ready();
	v_wait_go();
	pthread_barrier_wait(&go);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++)
		if (failures[i][0])
			v_fail("%s", failures[i]);
	struct k_sigaction act;
	raw_action(&act);
	if (memcmp(&act, &want, sizeof(act)) != 0)
		v_fail("main: SIGTRAP disposition changed");
	v_finish();
}
