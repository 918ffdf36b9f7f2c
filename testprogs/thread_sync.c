/*
 * thread_sync [creds]: eight pthreads working together with mutexes and condition variables
 * survive dump, kill and restore.
 *
 *   T0-T3  pass a token around a ring (one mutex, one condition variable per thread);
 *          every pass adds to the token count and to the thread's own pass count, and
 *          every thread adds to a shared sum under a second mutex.
 *   T4     blocked in pthread_cond_wait (a futex wait) until the main thread's go.
 *   T5     blocked in one nanosleep of SLEEP_MS that started just before READY.
 *   T6     blocked in poll(NULL, 0, SLEEP_MS) that started just before READY.
 *   T7     blocked in a raw FUTEX_WAIT (no timeout) until the main thread's FUTEX_WAKE.
 *
 * Every thread has a name (pthread_setname_np "sync-N"), TLS values (__thread), its own
 * blocked mask (SIGUSR2 and SIGRTMIN+1+N), its own nice value, and the ring threads
 * their own sigaltstack. Per-thread state that differs between threads:
 *   - T4 and T7 have a signal pending for them alone (rt_tgsigqueueinfo, with a value),
 *     and SIGUSR2 is pending for the process (sigqueue, with a value);
 *   - with the argument "creds", T6 has its own credentials (raw setresgid/setresuid:
 *     egid and euid 4321; kept apart so that a tool without per-thread credentials
 *     still shows how it does on everything else);
 *   - T5 holds a robust mutex and ends without unlocking it: the main thread must then
 *     get EOWNERDEAD (the kernel walks T5's robust list at its exit);
 *   - pthread_join relies on every thread's clear_child_tid.
 * READY is printed once T4-T7 are seen blocked in their system calls
 * (/proc/self/task/TID/syscall) and the ring has made some progress.
 *
 * After the go file: T4 and T7 are woken, the ring must make RING_MORE further passes,
 * T5 and T6 must have slept their full time (EINTR is allowed, with the remaining time
 * slept after it). Then every thread checks itself: gettid() is the tid it had at start,
 * its name, its TLS values, its blocked mask, its pending signals (SigPnd of
 * /proc/thread-self/status, then sigtimedwait for the value), its credentials, its nice
 * value and (ring) its sigaltstack. The main thread checks that /proc/self/task holds
 * the same nine tids with the right comm, that SIGUSR2 is pending for the process with
 * its value, joins every thread, takes the robust mutex, and checks that the counts and
 * sums add up.
 */
#include "victim.h"

#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define NTHREADS 8
#define RING 4
#define RING_BEFORE 2000 /* passes before READY */
#define RING_MORE 3000   /* passes required after the go file */
#define SLEEP_MS 2500
#define ALTSTACK_SIZE (64 * 1024)

enum { T_COND = 4, T_SLEEP = 5, T_POLL = 6, T_FUTEX = 7 };

#define OTHER_ID 4321
#define SHARED_VALUE 77

static int own_creds; /* "creds": T6 gets its own credentials */

/* threads with a signal of their own pending */
static int has_pending(int i)
{
	return i == T_COND || i == T_FUTEX;
}

/* the robust mutex T5 holds and never unlocks */
static pthread_mutex_t robust_mu;

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
#define TFAIL(...)                                 \
	do {                                       \
		pthread_mutex_lock(&out_mu);       \
		v_fail(__VA_ARGS__);               \
		pthread_mutex_unlock(&out_mu);     \
	} while (0)

/* the ring */
static pthread_mutex_t ring_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t ring_cv[RING];
static int holder;
static long token;
static long passes[RING];
static int ring_stop;

/* the shared sum */
static pthread_mutex_t sum_mu = PTHREAD_MUTEX_INITIALIZER;
static long shared_sum;
static long local_sum[NTHREADS];

/* T4 */
static pthread_mutex_t go_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go_cv = PTHREAD_COND_INITIALIZER;
static int go_flag;
static int cond_wakeups;

/* T7 */
static uint32_t futex_word;
static int futex_spurious;

/* T5/T6 */
static int64_t sleep_start_ns[NTHREADS];
static int sleep_eintr[NTHREADS];
static volatile int sleep_done[NTHREADS];

static pid_t tids[NTHREADS];
static volatile int started[NTHREADS];
static pthread_t threads[NTHREADS];
static char *altstacks[RING];

static __thread long tls_val = -1;
static __thread char tls_text[32];
static __thread pid_t tls_tid;
static __thread int tls_index = -1;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void add_sum(int i, long k)
{
	pthread_mutex_lock(&sum_mu);
	shared_sum += k;
	pthread_mutex_unlock(&sum_mu);
	local_sum[i] += k;
}

static int own_signal(int i)
{
	return SIGRTMIN + 1 + i;
}

/* Per-thread setup: name, TLS, blocked signal, nice, sigaltstack (ring). */
static void setup_self(int i)
{
	char name[16];
	snprintf(name, sizeof(name), "sync-%d", i);
	if (pthread_setname_np(pthread_self(), name) != 0)
		v_die("pthread_setname_np");
	tls_index = i;
	tls_val = 1000L * i + 7;
	snprintf(tls_text, sizeof(tls_text), "tls of thread %d", i);
	tls_tid = my_tid();
	tids[i] = tls_tid;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, own_signal(i));
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_SETMASK, &set, NULL);
	if (setpriority(PRIO_PROCESS, (id_t)tls_tid, i % 5) != 0)
		v_die("setpriority: %s", strerror(errno));
	if (i == T_SLEEP && pthread_mutex_lock(&robust_mu) != 0)
		v_die("lock the robust mutex");
	if (i == T_POLL && own_creds) {
		/* raw system calls: glibc's setresuid would change every thread */
		if (syscall(SYS_setresgid, -1, OTHER_ID, -1) != 0 ||
		    syscall(SYS_setresuid, -1, OTHER_ID, -1) != 0)
			v_die("setresuid in thread %d: %s", i, strerror(errno));
	}
	if (i < RING) {
		stack_t ss = { .ss_sp = altstacks[i], .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
		if (sigaltstack(&ss, NULL) != 0)
			v_die("sigaltstack: %s", strerror(errno));
	}
	__atomic_store_n(&started[i], 1, __ATOMIC_SEQ_CST);
}

/* Per-thread check after the go file. */
static void check_self(int i)
{
	pid_t t = my_tid();
	if (t != tids[i] || t != tls_tid)
		TFAIL("thread %d: gettid() is %d, it was %d (TLS copy %d)", i, t, tids[i], tls_tid);
	if (tls_index != i || tls_val != 1000L * i + 7)
		TFAIL("thread %d: TLS values are index %d, value %ld; expected %d, %ld", i, tls_index,
		      tls_val, i, 1000L * i + 7);
	char want[32];
	snprintf(want, sizeof(want), "tls of thread %d", i);
	if (strcmp(tls_text, want) != 0)
		TFAIL("thread %d: TLS text is \"%.31s\", expected \"%s\"", i, tls_text, want);
	char name[16] = "", kname[17] = "";
	snprintf(want, sizeof(want), "sync-%d", i);
	pthread_getname_np(pthread_self(), name, sizeof(name));
	prctl(PR_GET_NAME, kname);
	if (strcmp(name, want) != 0 || strcmp(kname, want) != 0)
		TFAIL("thread %d: name is \"%s\" (prctl \"%s\"), expected \"%s\"", i, name, kname, want);
	/* credentials: T6 has its own */
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	syscall(SYS_getresuid, &ru, &eu, &su);
	syscall(SYS_getresgid, &rg, &eg, &sg);
	uid_t want_e = i == T_POLL && own_creds ? OTHER_ID : 0;
	if (ru != 0 || eu != want_e || su != 0 || rg != 0 || eg != want_e || sg != 0)
		TFAIL("thread %d: uids %d/%d/%d gids %d/%d/%d, expected 0/%d/0 and 0/%d/0", i, ru, eu,
		      su, rg, eg, sg, want_e, want_e);
	/* pending signals: SigPnd is this thread's own set */
	char status[4096], pnd[64];
	uint64_t want_pnd = has_pending(i) ? 1ULL << (own_signal(i) - 1) : 0;
	if (v_read_file("/proc/thread-self/status", status, sizeof(status)) <= 0 ||
	    v_status_field(status, "SigPnd", pnd, sizeof(pnd)) != 0) {
		TFAIL("thread %d: cannot read SigPnd", i);
	} else if (strtoull(pnd, NULL, 16) != want_pnd) {
		TFAIL("thread %d: pending for the thread (SigPnd) is %s, expected %016llx", i, pnd,
		      (unsigned long long)want_pnd);
	}
	if (has_pending(i)) {
		sigset_t one;
		sigemptyset(&one);
		sigaddset(&one, own_signal(i));
		siginfo_t si;
		struct timespec zero = { 0, 0 };
		memset(&si, 0, sizeof(si));
		int got = sigtimedwait(&one, &si, &zero);
		if (got != own_signal(i))
			TFAIL("thread %d: its pending signal %d is not there (sigtimedwait: %d, %s)", i,
			      own_signal(i), got, got < 0 ? strerror(errno) : "");
		else if (si.si_code != SI_QUEUE || si.si_value.sival_int != 1000 + i ||
			 si.si_pid != getpid())
			TFAIL("thread %d: its pending signal has code %d value %d pid %d, expected %d %d %d",
			      i, si.si_code, si.si_value.sival_int, si.si_pid, SI_QUEUE, 1000 + i, getpid());
	}
	sigset_t now;
	pthread_sigmask(SIG_BLOCK, NULL, &now);
	for (int s = 1; s < 65; s++) {
		int want_blocked = s == own_signal(i) || s == SIGUSR2;
		if (sigismember(&now, s) != want_blocked)
			TFAIL("thread %d: signal %d is %sblocked, expected %sblocked", i, s,
			      sigismember(&now, s) ? "" : "not ", want_blocked ? "" : "not ");
	}
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, (id_t)t);
	if (nice != i % 5)
		TFAIL("thread %d: nice is %d, expected %d", i, nice, i % 5);
	stack_t ss;
	sigaltstack(NULL, &ss);
	if (i < RING) {
		if (ss.ss_sp != altstacks[i] || ss.ss_size != ALTSTACK_SIZE || ss.ss_flags != 0)
			TFAIL("thread %d: sigaltstack is sp %p size %zu flags %d, expected %p %d 0", i,
			      ss.ss_sp, ss.ss_size, ss.ss_flags, (void *)altstacks[i], ALTSTACK_SIZE);
	} else if (!(ss.ss_flags & SS_DISABLE)) {
		TFAIL("thread %d: has a sigaltstack (sp %p) it never set", i, ss.ss_sp);
	}
}

static void *ring_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	setup_self(i);
	long mine = 0;
	for (;;) {
		pthread_mutex_lock(&ring_mu);
		while (!ring_stop && holder != i)
			pthread_cond_wait(&ring_cv[i], &ring_mu);
		if (ring_stop) {
			pthread_mutex_unlock(&ring_mu);
			break;
		}
		token++;
		passes[i]++;
		long k = token;
		holder = (i + 1) % RING;
		pthread_cond_signal(&ring_cv[holder]);
		pthread_mutex_unlock(&ring_mu);
		add_sum(i, k);
		if (++mine % 64 == 0)
			v_sleep_ms(1); /* leave some CPU to others */
	}
	check_self(i);
	return NULL;
}

static void *cond_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	setup_self(i);
	pthread_mutex_lock(&go_mu);
	while (!go_flag) {
		pthread_cond_wait(&go_cv, &go_mu);
		cond_wakeups++;
	}
	pthread_mutex_unlock(&go_mu);
	add_sum(i, 40000);
	check_self(i);
	return NULL;
}

static void *sleep_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	setup_self(i);
	struct timespec req = { SLEEP_MS / 1000, (SLEEP_MS % 1000) * 1000000L }, rem;
	sleep_start_ns[i] = now_ns();
	while (nanosleep(&req, &rem) != 0) {
		if (errno != EINTR) {
			TFAIL("thread %d: nanosleep: %s", i, strerror(errno));
			break;
		}
		sleep_eintr[i]++;
		req = rem;
	}
	int64_t el = now_ns() - sleep_start_ns[i];
	if (el < (int64_t)SLEEP_MS * 1000000)
		TFAIL("thread %d: nanosleep(%d ms) returned after %lld ms", i, SLEEP_MS,
		      (long long)(el / 1000000));
	__atomic_store_n(&sleep_done[i], 1, __ATOMIC_SEQ_CST);
	add_sum(i, 50000);
	pthread_mutex_lock(&go_mu);
	while (!go_flag)
		pthread_cond_wait(&go_cv, &go_mu);
	pthread_mutex_unlock(&go_mu);
	check_self(i);
	return NULL;
}

static void *poll_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	setup_self(i);
	sleep_start_ns[i] = now_ns();
	int64_t end = sleep_start_ns[i] + (int64_t)SLEEP_MS * 1000000;
	int r = poll(NULL, 0, SLEEP_MS);
	for (;;) {
		if (r == 0 && now_ns() >= end)
			break;
		if (r < 0 && errno != EINTR) {
			TFAIL("thread %d: poll: %s", i, strerror(errno));
			break;
		}
		if (r > 0) {
			TFAIL("thread %d: poll with no fds returned %d", i, r);
			break;
		}
		if (r == 0) {
			TFAIL("thread %d: poll(%d ms) timed out after only %lld ms", i, SLEEP_MS,
			      (long long)((now_ns() - sleep_start_ns[i]) / 1000000));
			break;
		}
		sleep_eintr[i]++;
		int left = (int)((end - now_ns()) / 1000000);
		r = poll(NULL, 0, left > 0 ? left + 1 : 0);
	}
	__atomic_store_n(&sleep_done[i], 1, __ATOMIC_SEQ_CST);
	add_sum(i, 60000);
	pthread_mutex_lock(&go_mu);
	while (!go_flag)
		pthread_cond_wait(&go_cv, &go_mu);
	pthread_mutex_unlock(&go_mu);
	check_self(i);
	return NULL;
}

static void *futex_thread(void *arg)
{
	int i = (int)(intptr_t)arg;
	setup_self(i);
	while (__atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0) {
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		if (r == 0 && __atomic_load_n(&futex_word, __ATOMIC_SEQ_CST) == 0)
			futex_spurious++;
		if (r < 0 && errno != EINTR && errno != EAGAIN) {
			TFAIL("thread %d: FUTEX_WAIT: %s", i, strerror(errno));
			break;
		}
	}
	add_sum(i, 70000);
	check_self(i);
	return NULL;
}

/* The syscall number thread tid is blocked in, or -1 (running or unknown). */
static long blocked_syscall(pid_t tid)
{
	char path[64], buf[256];
	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tid);
	if (v_read_file(path, buf, sizeof(buf)) <= 0)
		return -1;
	if (buf[0] < '0' || buf[0] > '9')
		return -1;
	return strtol(buf, NULL, 10);
}

static int is_one_of(long nr, long a, long b)
{
	return nr == a || nr == b;
}

static void wait_blocked(void)
{
	int64_t deadline = now_ns() + 20LL * 1000000000;
	for (;;) {
		int ok = is_one_of(blocked_syscall(tids[T_COND]), SYS_futex, SYS_futex) &&
			 is_one_of(blocked_syscall(tids[T_SLEEP]), SYS_nanosleep, SYS_clock_nanosleep) &&
			 is_one_of(blocked_syscall(tids[T_POLL]), SYS_poll, SYS_ppoll) &&
			 is_one_of(blocked_syscall(tids[T_FUTEX]), SYS_futex, SYS_futex);
		pthread_mutex_lock(&ring_mu);
		long t = token;
		pthread_mutex_unlock(&ring_mu);
		if (ok && t >= RING_BEFORE)
			return;
		if (now_ns() > deadline)
			v_die("threads not blocked in their calls within 20 s (token %ld)", t);
		v_sleep_ms(2);
	}
}

/* /proc/self/task holds exactly the main thread and our eight, each with its name. */
static void check_tasks(void)
{
	char path[64], comm[64];
	for (int i = 0; i < NTHREADS; i++) {
		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tids[i]);
		if (v_read_file(path, comm, sizeof(comm)) < 0) {
			v_fail("thread %d: /proc/self/task/%d does not exist", i, tids[i]);
			continue;
		}
		comm[strcspn(comm, "\n")] = 0;
		char want[16];
		snprintf(want, sizeof(want), "sync-%d", i);
		V_CHECK(strcmp(comm, want) == 0, "thread %d (tid %d): comm is \"%s\", expected \"%s\"",
			i, tids[i], comm, want);
	}
	char status[4096], val[64];
	if (v_read_file("/proc/self/status", status, sizeof(status)) > 0 &&
	    v_status_field(status, "Threads", val, sizeof(val)) == 0)
		V_CHECK(atoi(val) == NTHREADS + 1, "the process has %s threads, expected %d", val,
			NTHREADS + 1);
}

int main(int argc, char **argv)
{
	(void)v_go_path();
	own_creds = argc > 1 && strcmp(argv[1], "creds") == 0;
	pid_t main_tid = my_tid();
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	pthread_mutex_init(&robust_mu, &ma);
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &usr2, NULL);
	for (int i = 0; i < RING; i++) {
		pthread_cond_init(&ring_cv[i], NULL);
		altstacks[i] = malloc(ALTSTACK_SIZE);
		if (!altstacks[i])
			v_die("malloc");
	}
	void *(*fns[NTHREADS])(void *) = { ring_thread, ring_thread,  ring_thread, ring_thread,
					     cond_thread, sleep_thread, poll_thread, futex_thread };
	for (int i = 0; i < NTHREADS; i++) {
		int r = pthread_create(&threads[i], NULL, fns[i], (void *)(intptr_t)i);
		if (r != 0)
			v_die("pthread_create: %s", strerror(r));
		while (!__atomic_load_n(&started[i], __ATOMIC_SEQ_CST))
			v_sleep_ms(1);
	}
	for (int i = 0; i < NTHREADS; i++) {
		if (!has_pending(i))
			continue;
		siginfo_t si;
		memset(&si, 0, sizeof(si));
		si.si_signo = own_signal(i);
		si.si_code = SI_QUEUE;
		si.si_pid = getpid();
		si.si_uid = getuid();
		si.si_value.sival_int = 1000 + i;
		if (syscall(SYS_rt_tgsigqueueinfo, getpid(), tids[i], own_signal(i), &si) != 0)
			v_die("rt_tgsigqueueinfo: %s", strerror(errno));
	}
	if (sigqueue(getpid(), SIGUSR2, (union sigval){ .sival_int = SHARED_VALUE }) != 0)
		v_die("sigqueue: %s", strerror(errno));
	wait_blocked();
	pthread_mutex_lock(&ring_mu);
	long token_ready = token;
	pthread_mutex_unlock(&ring_mu);
	v_ready();
	v_wait_go();

	V_CHECK(my_tid() == main_tid, "main thread: gettid() is %d, it was %d", my_tid(), main_tid);
	check_tasks();
	{
		char status[4096], shd[64];
		if (v_read_file("/proc/self/status", status, sizeof(status)) > 0 &&
		    v_status_field(status, "ShdPnd", shd, sizeof(shd)) == 0)
			V_CHECK(strtoull(shd, NULL, 16) == 1ULL << (SIGUSR2 - 1),
				"pending for the process (ShdPnd) is %s, expected only SIGUSR2", shd);
		siginfo_t si;
		struct timespec zero = { 0, 0 };
		memset(&si, 0, sizeof(si));
		int got = sigtimedwait(&usr2, &si, &zero);
		if (got != SIGUSR2)
			v_fail("SIGUSR2 is not pending for the process (sigtimedwait: %d)", got);
		else
			V_CHECK(si.si_code == SI_QUEUE && si.si_value.sival_int == SHARED_VALUE &&
					si.si_pid == getpid(),
				"SIGUSR2 has code %d value %d pid %d, expected %d %d %d", si.si_code,
				si.si_value.sival_int, si.si_pid, SI_QUEUE, SHARED_VALUE, getpid());
	}

	/* wake T4 and T7 */
	pthread_mutex_lock(&go_mu);
	go_flag = 1;
	pthread_cond_broadcast(&go_cv);
	pthread_mutex_unlock(&go_mu);
	__atomic_store_n(&futex_word, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);

	/* the ring must go on */
	int64_t deadline = now_ns() + 20LL * 1000000000;
	long token_go;
	pthread_mutex_lock(&ring_mu);
	token_go = token;
	pthread_mutex_unlock(&ring_mu);
	V_CHECK(token_go >= token_ready, "the token count went back from %ld to %ld", token_ready,
		token_go);
	for (;;) {
		pthread_mutex_lock(&ring_mu);
		long t = token;
		pthread_mutex_unlock(&ring_mu);
		if (t >= token_go + RING_MORE)
			break;
		if (now_ns() > deadline) {
			v_fail("the ring made only %ld passes in 20 s after the go file (token %ld)",
			       t - token_go, t);
			break;
		}
		v_sleep_ms(5);
	}
	pthread_mutex_lock(&ring_mu);
	ring_stop = 1;
	for (int i = 0; i < RING; i++)
		pthread_cond_broadcast(&ring_cv[i]);
	pthread_mutex_unlock(&ring_mu);

	/* every thread must finish: join with a deadline */
	for (int i = 0; i < NTHREADS; i++) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 20;
		int r = pthread_timedjoin_np(threads[i], NULL, &dl);
		if (r != 0) {
			char path[64], stat[512] = "";
			snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tids[i]);
			v_read_file(path, stat, sizeof(stat));
			v_fail("thread %d (tid %d) did not finish within 20 s (%s); stat: %s", i, tids[i],
			       strerror(r), stat);
			v_finish();
		}
	}

	{
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 5;
		int r = pthread_mutex_timedlock(&robust_mu, &dl);
		if (r == EOWNERDEAD) {
			pthread_mutex_consistent(&robust_mu);
			pthread_mutex_unlock(&robust_mu);
		} else {
			v_fail("the robust mutex thread %d held when it ended: lock gave %s, expected EOWNERDEAD (its robust list)",
			       T_SLEEP, r == 0 ? "success" : strerror(r));
			if (r == 0)
				pthread_mutex_unlock(&robust_mu);
		}
	}

	long sum_passes = 0, sum_local = 0;
	for (int i = 0; i < RING; i++) {
		sum_passes += passes[i];
		V_CHECK(passes[i] > 0, "ring thread %d made no pass", i);
	}
	for (int i = 0; i < NTHREADS; i++)
		sum_local += local_sum[i];
	V_CHECK(sum_passes == token, "the ring threads' passes add up to %ld, the token count is %ld",
		sum_passes, token);
	/* every pass k added k: the sum of the ring part is token*(token+1)/2 */
	long want = token * (token + 1) / 2 + 40000 + 50000 + 60000 + 70000;
	V_CHECK(shared_sum == sum_local, "the shared sum is %ld, the threads' own sums add up to %ld",
		shared_sum, sum_local);
	V_CHECK(shared_sum == want, "the shared sum is %ld, expected %ld (token %ld)", shared_sum,
		want, token);
	for (int i = T_SLEEP; i <= T_POLL; i++)
		if (sleep_eintr[i])
			v_print("note: thread %d's sleep was interrupted %d time(s)\n", i, sleep_eintr[i]);
	if (futex_spurious)
		v_print("note: FUTEX_WAIT returned 0 with the word unchanged %d time(s)\n",
			futex_spurious);
	v_print("ring: %ld passes (%ld after READY)\n", token, token - token_ready);
	v_finish();
}
