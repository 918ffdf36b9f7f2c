/*
 * posix_timers: POSIX timers (timer_create, raw syscalls so the ids are the kernel's).
 *
 * Sparse ids: six timers are made and three deleted first (ids 1, 3 and 5 then stay
 * free). Then:
 *   A  CLOCK_REALTIME,  SIGEV_SIGNAL SIGRTMIN,      value 0xA11CE, 100 ms period;
 *   B  CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+1,    value 0xB0B,    50 ms period;
 *   C  CLOCK_MONOTONIC, SIGEV_THREAD_ID (a worker thread) SIGRTMIN+2, value 0xC0C0,
 *      100 ms period; its handler must run in that thread;
 *   D  CLOCK_MONOTONIC, SIGEV_NONE, first expiry in 60 s, then every 7 s;
 *   E  CLOCK_REALTIME,  SIGEV_SIGNAL SIGUSR1, 40 s one-shot (must not fire);
 *   F  CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL SIGRTMIN+3, 20 ms of CPU period;
 *   G  CLOCK_BOOTTIME, created and never armed.
 * Every handler checks si_code (SI_TIMER), si_timerid and si_value.
 *
 * After the go file: timer_gettime works on every id with the same interval, the
 * one-shots have between half and all of the time they had before READY left (and no
 * more), G is still disarmed, the deleted ids are still invalid (EINVAL); over 1 s of
 * CLOCK_MONOTONIC A fires 6..14 times, B 14..26, C 6..14 (about 10, 20, 10: the
 * tolerance covers a loaded machine and a signal that was pending at dump); 300 ms of
 * busy CPU bring F at least 5 times (about 15); E never fires; no handler saw a wrong
 * si_timerid, si_value, si_code or thread; a new timer can still be made.
 */
#include "victim.h"

#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

enum { A, B, C, D, E, F, G, NT };

static int ids[NT];
static const long values[NT] = { 0xA11CE, 0xB0B, 0xC0C0, 0xD, 0xE, 0xF, 0x6 };
static volatile sig_atomic_t fired[NT], wrong[NT];
static volatile int worker_tid;
static int deleted[3];

static int timer_index(int signo)
{
	if (signo == SIGRTMIN)
		return A;
	if (signo == SIGRTMIN + 1)
		return B;
	if (signo == SIGRTMIN + 2)
		return C;
	if (signo == SIGUSR1)
		return E;
	return F;
}

static void on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int i = timer_index(sig);
	fired[i]++;
	if (si->si_code != SI_TIMER || si->si_timerid != ids[i] || si->si_value.sival_ptr != (void *)values[i])
		wrong[i]++;
	if (i == C && syscall(SYS_gettid) != worker_tid)
		wrong[i]++;
}

static int make_timer(clockid_t clock, int notify, int signo, long value, int tid)
{
	struct sigevent ev;
	memset(&ev, 0, sizeof(ev));
	ev.sigev_notify = notify;
	ev.sigev_signo = signo;
	ev.sigev_value.sival_ptr = (void *)value;
	ev.sigev_notify_thread_id = tid;
	int id = -1;
	if (syscall(SYS_timer_create, clock, &ev, &id) != 0)
		v_die("timer_create(clock %d): %s", (int)clock, strerror(errno));
	return id;
}

static void arm(int id, long interval_ms, long value_ms)
{
	struct itimerspec its = { { interval_ms / 1000, (interval_ms % 1000) * 1000000 },
				  { value_ms / 1000, (value_ms % 1000) * 1000000 } };
	if (syscall(SYS_timer_settime, id, 0, &its, NULL) != 0)
		v_die("timer_settime(%d): %s", id, strerror(errno));
}

static int get(int id, struct itimerspec *its)
{
	return (int)syscall(SYS_timer_gettime, id, its);
}

static long ms(struct timespec ts)
{
	return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double clock_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
	(void)arg;
	worker_tid = (int)syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_timer;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	int sigs[] = { SIGRTMIN, SIGRTMIN + 1, SIGRTMIN + 2, SIGRTMIN + 3, SIGUSR1 };
	for (unsigned i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL) != 0)
		v_die("pthread_create");
	while (worker_tid == 0)
		v_sleep_ms(1);

	int spare[6];
	for (int i = 0; i < 6; i++)
		spare[i] = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
	for (int i = 0; i < 3; i++) {
		deleted[i] = spare[2 * i + 1];
		syscall(SYS_timer_delete, deleted[i]);
	}

	ids[A] = make_timer(CLOCK_REALTIME, SIGEV_SIGNAL, SIGRTMIN, values[A], 0);
	ids[B] = make_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, values[B], 0);
	ids[C] = make_timer(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 2, values[C], worker_tid);
	ids[D] = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, values[D], 0);
	ids[E] = make_timer(CLOCK_REALTIME, SIGEV_SIGNAL, SIGUSR1, values[E], 0);
	ids[F] = make_timer(CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL, SIGRTMIN + 3, values[F], 0);
	ids[G] = make_timer(CLOCK_BOOTTIME, SIGEV_SIGNAL, SIGRTMIN + 3, values[G], 0);
	arm(ids[A], 100, 100);
	arm(ids[B], 50, 50);
	arm(ids[C], 100, 100);
	arm(ids[D], 7000, 60000);
	arm(ids[E], 0, 40000);
	arm(ids[F], 20, 20);

	double t0 = clock_s(CLOCK_MONOTONIC);
	while ((fired[A] < 2 || fired[C] < 2) && clock_s(CLOCK_MONOTONIC) - t0 < 5)
		v_sleep_ms(10);
	if (fired[A] < 2 || fired[C] < 2)
		v_die("timers A and C did not fire within 5 s");
	struct itimerspec d0, e0;
	get(ids[D], &d0);
	get(ids[E], &e0);

	v_ready();
	v_wait_go();

	const long intervals[NT] = { 100, 50, 100, 7000, 0, 20, 0 };
	for (int i = 0; i < NT; i++) {
		struct itimerspec cur;
		if (get(ids[i], &cur) != 0) {
			v_fail("timer %c (id %d): timer_gettime: %s", 'A' + i, ids[i], strerror(errno));
			continue;
		}
		V_CHECK(ms(cur.it_interval) == intervals[i], "timer %c: interval %ld ms, expected %ld",
			'A' + i, ms(cur.it_interval), intervals[i]);
		if (i == G)
			V_CHECK(ms(cur.it_value) == 0 && cur.it_value.tv_nsec == 0,
				"timer G: armed (%ld ms left), expected disarmed", ms(cur.it_value));
		else if (i == D || i == E) {
			long before = ms(i == D ? d0.it_value : e0.it_value);
			V_CHECK(ms(cur.it_value) > before / 2 && ms(cur.it_value) <= before,
				"timer %c: %ld ms left, expected between %ld and %ld", 'A' + i, ms(cur.it_value),
				before / 2, before);
		} else
			V_CHECK(ms(cur.it_value) <= intervals[i] && (cur.it_value.tv_sec | cur.it_value.tv_nsec) != 0,
				"timer %c: %ld ms left, expected within (0, %ld]", 'A' + i, ms(cur.it_value),
				intervals[i]);
	}
	for (int i = 0; i < 3; i++) {
		struct itimerspec cur;
		errno = 0;
		V_CHECK(get(deleted[i], &cur) != 0 && errno == EINVAL,
			"deleted timer id %d: timer_gettime gave %s, expected EINVAL", deleted[i], strerror(errno));
	}
	for (int i = 0; i < NT; i++)
		V_CHECK(syscall(SYS_timer_getoverrun, ids[i]) >= 0, "timer %c: timer_getoverrun: %s", 'A' + i,
			strerror(errno));

	int a0 = fired[A], b0 = fired[B], c0 = fired[C];
	double start = clock_s(CLOCK_MONOTONIC);
	while (clock_s(CLOCK_MONOTONIC) - start < 1.0)
		v_sleep_ms(5);
	int a = fired[A] - a0, b = fired[B] - b0, c = fired[C] - c0;
	V_CHECK(a >= 6 && a <= 14, "timer A: %d signals in 1 s, expected about 10 (6..14)", a);
	V_CHECK(b >= 14 && b <= 26, "timer B: %d signals in 1 s, expected about 20 (14..26)", b);
	V_CHECK(c >= 6 && c <= 14, "timer C: %d signals in 1 s, expected about 10 (6..14)", c);

	int f0 = fired[F];
	double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
	volatile uint64_t sink = 0;
	while (clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0 < 0.3 && clock_s(CLOCK_MONOTONIC) - w0 < 5)
		for (int i = 0; i < 10000; i++)
			sink += v_mix((uint64_t)i);
	int f = fired[F] - f0;
	V_CHECK(f >= 5 && f <= 25, "timer F: %d signals in 0.3 s of CPU, expected about 15 (5..25)", f);

	V_CHECK(fired[E] == 0, "timer E (40 s one-shot) fired");
	for (int i = 0; i < NT; i++)
		V_CHECK(wrong[i] == 0, "timer %c: %d signals with a wrong si_code/si_timerid/si_value/thread",
			'A' + i, (int)wrong[i]);
	int fresh = make_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, 0, 0);
	for (int i = 0; i < NT; i++)
		V_CHECK(fresh != ids[i], "a new timer got id %d, which timer %c has", fresh, 'A' + i);
	v_finish();
}
