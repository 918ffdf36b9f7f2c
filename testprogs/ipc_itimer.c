/*
 * ipc_itimer: interval timers (setitimer).
 *
 * - ITIMER_REAL, 100 ms period, a SIGALRM handler counting: after restore getitimer keeps
 *   the interval exactly and the value within one period, and the handler runs about 10
 *   times a second (at least 4 and at most 9 calls in 600 ms of CLOCK_MONOTONIC);
 * - ITIMER_VIRTUAL, 5 s first expiry, 7 s period (the victim uses little CPU, so it does
 *   not fire): after restore the interval is exactly 7 s and the value between 4 and 5 s
 *   (plus up to 10 ms: setitimer adds a tick) and not more than before READY (CPU-time
 *   timers only count down; restoring must not add time);
 * - ITIMER_PROF, 20 ms period, a SIGPROF handler counting: after restore 300 ms of busy
 *   CPU time bring at least 5 SIGPROFs (about 15 expected), and the interval is kept.
 */
#include "victim.h"

#include <signal.h>
#include <sys/time.h>

static volatile sig_atomic_t alarms, profs, vtalrms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void on_prof(int sig)
{
	(void)sig;
	profs++;
}

static void on_vtalrm(int sig)
{
	(void)sig;
	vtalrms++;
}

static double clock_s(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long usec(struct timeval tv)
{
	return (long)tv.tv_sec * 1000000L + (long)tv.tv_usec;
}

int main(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	sa.sa_handler = on_prof;
	sigaction(SIGPROF, &sa, NULL);
	sa.sa_handler = on_vtalrm;
	sigaction(SIGVTALRM, &sa, NULL);

	struct itimerval real = { { 0, 100000 }, { 0, 100000 } };
	struct itimerval virt = { { 7, 0 }, { 5, 0 } };
	struct itimerval prof = { { 0, 20000 }, { 0, 20000 } };
	if (setitimer(ITIMER_REAL, &real, NULL) != 0 || setitimer(ITIMER_VIRTUAL, &virt, NULL) != 0 ||
	    setitimer(ITIMER_PROF, &prof, NULL) != 0)
		v_die("setitimer: %s", strerror(errno));
	/* make sure the real timer ticks before READY */
	double t0 = clock_s(CLOCK_MONOTONIC);
	while (alarms < 2 && clock_s(CLOCK_MONOTONIC) - t0 < 5)
		v_sleep_ms(10);
	if (alarms < 2)
		v_die("ITIMER_REAL did not fire within 5 s");

	/* CPU-time timers only count down: remember where they were */
	struct itimerval virt0, prof0;
	getitimer(ITIMER_VIRTUAL, &virt0);
	getitimer(ITIMER_PROF, &prof0);

	v_ready();
	v_wait_go();

	struct itimerval cur;
	getitimer(ITIMER_REAL, &cur);
	V_CHECK(usec(cur.it_interval) == 100000, "ITIMER_REAL: interval %ld us, expected 100000",
		usec(cur.it_interval));
	V_CHECK(usec(cur.it_value) > 0 && usec(cur.it_value) <= 100000,
		"ITIMER_REAL: value %ld us, expected within (0, 100000]", usec(cur.it_value));
	getitimer(ITIMER_VIRTUAL, &cur);
	V_CHECK(usec(cur.it_interval) == 7000000, "ITIMER_VIRTUAL: interval %ld us, expected 7000000",
		usec(cur.it_interval));
	/*
	 * (setitimer adds a tick to a CPU-time timer's first expiry, so right after setup
	 * the value reads up to a tick above 5 s; a restore must not add another one)
	 */
	V_CHECK(usec(cur.it_value) > 4000000 && usec(cur.it_value) <= 5010000,
		"ITIMER_VIRTUAL: value %ld us, expected between 4 and 5.01 s", usec(cur.it_value));
	V_CHECK(usec(cur.it_value) <= usec(virt0.it_value),
		"ITIMER_VIRTUAL: value %ld us, more than the %ld us left before READY (CPU time only counts down)",
		usec(cur.it_value), usec(virt0.it_value));
	getitimer(ITIMER_PROF, &cur);
	V_CHECK(usec(cur.it_interval) == 20000, "ITIMER_PROF: interval %ld us, expected 20000",
		usec(cur.it_interval));
	V_CHECK(usec(cur.it_value) > 0 && usec(cur.it_value) <= 30000,
		"ITIMER_PROF: value %ld us, expected within (0, 30000]", usec(cur.it_value));
	if (profs == 0) /* not fired yet: it only counted down since READY */
		V_CHECK(usec(cur.it_value) <= usec(prof0.it_value),
			"ITIMER_PROF: value %ld us, more than the %ld us left before READY (CPU time only counts down)",
			usec(cur.it_value), usec(prof0.it_value));
	V_CHECK(vtalrms == 0, "SIGVTALRM came %d times (the virtual timer is 5 s of CPU away)", (int)vtalrms);

	/* the real timer's rate over 600 ms */
	int a0 = alarms;
	double start = clock_s(CLOCK_MONOTONIC);
	while (clock_s(CLOCK_MONOTONIC) - start < 0.6)
		v_sleep_ms(5);
	int got = alarms - a0;
	V_CHECK(got >= 4 && got <= 9, "ITIMER_REAL: %d SIGALRMs in 600 ms, expected about 6 (4..9)", got);

	/* the profiling timer over 300 ms of CPU */
	int p0 = profs;
	double c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = clock_s(CLOCK_MONOTONIC);
	volatile uint64_t sink = 0;
	while (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0 < 0.3 && clock_s(CLOCK_MONOTONIC) - w0 < 5)
		for (int i = 0; i < 10000; i++)
			sink += v_mix((uint64_t)i);
	int pgot = profs - p0;
	double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
	V_CHECK(pgot >= 5, "ITIMER_PROF: %d SIGPROFs in %.3f s of CPU, expected about 15 (at least 5)", pgot, cpu);
	V_CHECK(pgot <= 25, "ITIMER_PROF: %d SIGPROFs in %.3f s of CPU, expected about 15", pgot, cpu);
	getitimer(ITIMER_VIRTUAL, &cur);
	V_CHECK(usec(cur.it_value) > 3000000, "ITIMER_VIRTUAL: value %ld us after 0.3 s of CPU", usec(cur.it_value));
	v_finish();
}
