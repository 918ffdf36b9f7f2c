/*
 * tree_storm: a bounded fork/exit storm, for dumps taken while the tree changes.
 *
 * The root keeps up to INFLIGHT short-lived children at a time. Child number n exits with
 * a status derived from n; on the way, one child in four first sleeps 2 ms, one in
 * sixteen forks a grandchild that sleeps 1 ms and exits 5 and reaps it, one in sixteen
 * creates a thread that sleeps 1 ms and joins it. Every 64th fork the root itself
 * creates and joins a short-lived thread. The root reaps with waitpid(-1) (blocking when INFLIGHT children
 * are out) and checks every status against the child it recorded for that pid.
 *
 * READY after WARMUP children have been reaped; the storm goes on until the go file
 * exists (at most LIMIT_S seconds, then it FAILs). Then the root stops forking, reaps
 * the children still out (with a deadline) and checks: every child it forked was reaped
 * once, with the right status; waitpid never returned a pid it did not fork, never said
 * ECHILD while children were out, never failed with EINTR (a note only); the grandchildren
 * and threads did their part. Prints the counts and PASS.
 */
#include "victim.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define INFLIGHT 16
#define WARMUP 500
#define LIMIT_S 90
#define DRAIN_MS 20000

struct slot {
	pid_t pid;
	long seq;
};

static struct slot slots[INFLIGHT];
static int inflight;
static long forked, reaped, bad_status, unknown, lost, eintr, threads_made;
static volatile long thread_work;

static int code_of(long seq)
{
	return (int)((seq * 7 + 3) % 120) + 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *tiny_thread(void *arg)
{
	__atomic_add_fetch(&thread_work, (long)(intptr_t)arg, __ATOMIC_SEQ_CST);
	return NULL;
}

static void *sleepy_thread(void *arg)
{
	v_sleep_ms(1);
	return tiny_thread(arg);
}

__attribute__((noreturn)) static void child_main(long seq)
{
	switch (seq % 16) {
	case 0:
	case 4:
	case 8:
	case 12:
		v_sleep_ms(2);
		break;
	case 1: {
		pid_t g = fork();
		if (g < 0)
			_exit(201);
		if (g == 0) {
			v_sleep_ms(1);
			_exit(5);
		}
		int st;
		pid_t r;
		while ((r = waitpid(g, &st, 0)) < 0 && errno == EINTR)
			;
		if (r != g || !WIFEXITED(st) || WEXITSTATUS(st) != 5)
			_exit(202);
		break;
	}
	case 2: {
		pthread_t t;
		long before = thread_work;
		if (pthread_create(&t, NULL, sleepy_thread, (void *)1) != 0)
			_exit(203);
		pthread_join(t, NULL);
		if (thread_work != before + 1)
			_exit(204);
		break;
	}
	default:
		break;
	}
	_exit(code_of(seq));
}

static void fork_one(void)
{
	long seq = forked;
	pid_t pid = fork();
	if (pid < 0) {
		if (errno == EAGAIN) {
			v_sleep_ms(1);
			return;
		}
		v_die("fork: %s", strerror(errno));
	}
	if (pid == 0)
		child_main(seq);
	forked++;
	for (int i = 0; i < INFLIGHT; i++)
		if (slots[i].pid == 0) {
			slots[i].pid = pid;
			slots[i].seq = seq;
			inflight++;
			return;
		}
	v_die("no free slot");
}

/* Reaps one child (blocking or not); returns 1 if one was reaped. */
static int reap_one(int block)
{
	int st;
	pid_t pid = waitpid(-1, &st, block ? 0 : WNOHANG);
	if (pid == 0)
		return 0;
	if (pid < 0) {
		if (errno == EINTR) {
			eintr++;
			return 0;
		}
		if (errno == ECHILD && inflight > 0) {
			if (lost == 0)
				v_fail("waitpid(-1) says ECHILD while %d children are out, e.g. pid %d", inflight,
				       slots[0].pid ? slots[0].pid : slots[1].pid);
			lost += inflight;
			for (int i = 0; i < INFLIGHT; i++)
				slots[i].pid = 0;
			inflight = 0;
			return 0;
		}
		if (errno == ECHILD)
			return 0;
		v_die("waitpid: %s", strerror(errno));
	}
	for (int i = 0; i < INFLIGHT; i++) {
		if (slots[i].pid != pid)
			continue;
		long seq = slots[i].seq;
		slots[i].pid = 0;
		inflight--;
		reaped++;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != code_of(seq)) {
			if (bad_status++ < 5)
				v_fail("child %ld (pid %d) ended with status 0x%x, expected exit %d", seq, pid,
				       st, code_of(seq));
		}
		return 1;
	}
	if (unknown++ < 5)
		v_fail("waitpid(-1) returned pid %d (status 0x%x), which is not a child we forked", pid, st);
	return 1;
}

static void root_thread(void)
{
	pthread_t t;
	int r = pthread_create(&t, NULL, tiny_thread, (void *)(intptr_t)1);
	if (r != 0)
		v_die("pthread_create: %s", strerror(r));
	pthread_join(t, NULL);
	threads_made++;
}

static int go_exists(void)
{
	struct stat st;
	return stat(v_go_path(), &st) == 0;
}

static void storm_step(void)
{
	while (inflight < INFLIGHT) {
		long before = forked;
		fork_one();
		if (forked != before && forked % 64 == 0)
			root_thread();
	}
	reap_one(1);
	while (reap_one(0))
		;
}

int main(void)
{
	(void)v_go_path();
	int64_t start = now_ms();
	while (reaped < WARMUP) {
		storm_step();
		if (now_ms() - start > LIMIT_S * 1000L)
			v_die("warm-up took longer than %d s", LIMIT_S);
	}
	v_ready();
	long at_ready = forked;
	for (long iter = 0;; iter++) {
		storm_step();
		if (iter % 8 == 0 && go_exists())
			break;
		if (now_ms() - start > LIMIT_S * 1000L) {
			v_fail("no go file within %d s", LIMIT_S);
			break;
		}
	}
	/* drain */
	int64_t drain_start = now_ms();
	while (inflight > 0) {
		if (!reap_one(0))
			v_sleep_ms(1);
		if (now_ms() - drain_start > DRAIN_MS) {
			v_fail("%d children still out %d s after the storm stopped", inflight,
			       DRAIN_MS / 1000);
			for (int i = 0; i < INFLIGHT; i++)
				if (slots[i].pid)
					kill(slots[i].pid, SIGKILL);
			while (waitpid(-1, NULL, 0) > 0)
				;
			break;
		}
	}
	pid_t extra = waitpid(-1, NULL, WNOHANG);
	V_CHECK(extra < 0 && errno == ECHILD, "after the storm waitpid(-1) still finds a child (%d)", extra);
	V_CHECK(forked == reaped + lost, "forked %ld children, reaped %ld, lost %ld", forked, reaped, lost);
	V_CHECK(lost == 0, "%ld children were lost (never reaped)", lost);
	V_CHECK(bad_status == 0, "%ld children ended with a wrong status", bad_status);
	V_CHECK(unknown == 0, "waitpid returned %ld pids we did not fork", unknown);
	V_CHECK(threads_made == forked / 64, "made %ld threads, expected %ld", threads_made, forked / 64);
	V_CHECK(thread_work == threads_made, "threads did %ld units of work, expected %ld", thread_work,
		threads_made);
	if (eintr)
		v_print("note: waitpid failed with EINTR %ld time(s)\n", eintr);
	v_print("storm: forked %ld children (%ld after READY), %ld threads\n", forked, forked - at_ready,
		threads_made);
	v_finish();
}
