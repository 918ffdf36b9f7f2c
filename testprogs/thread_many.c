/*
 * thread_many [N]: a process with N (default 1000) threads, each blocked in a futex
 * wait, survives dump, kill and restore.
 *
 * Every thread has a small stack (64 KiB), a name ("m<N>"), a TLS value, and records its
 * tid. Even threads wait on a condition variable for a go flag, odd threads on a
 * pthread barrier that the main thread completes after the go file. READY is printed
 * once every thread is seen blocked in futex (/proc/self/task/TID/syscall).
 *
 * After the go file: /proc/self/task must list the same N+1 tids; every thread must
 * wake, check that gettid(), its name and its TLS value are unchanged, add its index to
 * a sum and finish; the main thread joins them all (with a deadline) and checks that
 * N threads finished, the sum is N(N-1)/2, and no thread found a difference.
 */
#include "victim.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define STACK_SIZE (64 * 1024)

static int nthreads = 1000;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static pthread_barrier_t barrier;
static int go_flag;
static int arrived;
static long finished, sum, bad_tid, bad_name, bad_tls;
static pid_t *tids;
static pthread_t *threads;

static __thread long tls_val = -1;

static pid_t my_tid(void)
{
	return (pid_t)syscall(SYS_gettid);
}

static void *worker(void *arg)
{
	long i = (long)(intptr_t)arg;
	char name[16], want[16];
	snprintf(want, sizeof(want), "m%ld", i);
	prctl(PR_SET_NAME, want);
	tls_val = i * 3 + 1;
	pid_t tid = my_tid();
	tids[i] = tid;
	pthread_mutex_lock(&mu);
	arrived++;
	if (i % 2 == 0) {
		while (!go_flag)
			pthread_cond_wait(&cv, &mu);
		pthread_mutex_unlock(&mu);
	} else {
		pthread_mutex_unlock(&mu);
		pthread_barrier_wait(&barrier);
	}
	name[0] = 0;
	prctl(PR_GET_NAME, name);
	pthread_mutex_lock(&mu);
	if (my_tid() != tid)
		bad_tid++;
	if (strcmp(name, want) != 0)
		bad_name++;
	if (tls_val != i * 3 + 1)
		bad_tls++;
	finished++;
	sum += i;
	pthread_mutex_unlock(&mu);
	return NULL;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* How many of our threads are not (yet) blocked in futex. */
static int not_blocked(void)
{
	char path[64], buf[256];
	int n = 0;
	for (int i = 0; i < nthreads; i++) {
		snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", tids[i]);
		if (v_read_file(path, buf, sizeof(buf)) <= 0 || strtol(buf, NULL, 10) != SYS_futex ||
		    buf[0] < '0' || buf[0] > '9')
			n++;
	}
	return n;
}

static int cmp_pid(const void *a, const void *b)
{
	pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
	return (x > y) - (x < y);
}

/* /proc/self/task must hold exactly the main thread and the recorded tids. */
static void check_task_list(pid_t main_tid)
{
	pid_t *want = malloc(sizeof(pid_t) * (size_t)(nthreads + 1));
	pid_t *have = malloc(sizeof(pid_t) * (size_t)(nthreads + 64));
	if (!want || !have)
		v_die("malloc");
	memcpy(want, tids, sizeof(pid_t) * (size_t)nthreads);
	want[nthreads] = main_tid;
	qsort(want, (size_t)nthreads + 1, sizeof(pid_t), cmp_pid);
	int n = 0;
	DIR *d = opendir("/proc/self/task");
	if (!d) {
		v_fail("opendir /proc/self/task: %s", strerror(errno));
		return;
	}
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		if (n < nthreads + 64)
			have[n] = (pid_t)atoi(e->d_name);
		n++;
	}
	closedir(d);
	if (n != nthreads + 1) {
		v_fail("/proc/self/task lists %d threads, expected %d", n, nthreads + 1);
		return;
	}
	qsort(have, (size_t)n, sizeof(pid_t), cmp_pid);
	int diffs = 0;
	for (int i = 0; i < n; i++)
		if (have[i] != want[i] && diffs++ < 5)
			v_fail("thread list differs: position %d has tid %d, expected %d", i, have[i],
			       want[i]);
	free(want);
	free(have);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		nthreads = atoi(argv[1]);
	if (nthreads < 2)
		v_die("need at least 2 threads");
	(void)v_go_path();
	pid_t main_tid = my_tid();
	tids = calloc((size_t)nthreads, sizeof(pid_t));
	threads = calloc((size_t)nthreads, sizeof(pthread_t));
	if (!tids || !threads)
		v_die("calloc");
	int odd = nthreads / 2;
	pthread_barrier_init(&barrier, NULL, (unsigned)odd + 1);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, STACK_SIZE);
	for (int i = 0; i < nthreads; i++) {
		int r = pthread_create(&threads[i], &attr, worker, (void *)(intptr_t)i);
		if (r != 0)
			v_die("pthread_create %d: %s", i, strerror(r));
	}
	int64_t deadline = now_ms() + 30000;
	for (;;) {
		pthread_mutex_lock(&mu);
		int a = arrived;
		pthread_mutex_unlock(&mu);
		if (a == nthreads && not_blocked() == 0)
			break;
		if (now_ms() > deadline)
			v_die("only %d of %d threads arrived, %d not blocked, within 30 s", a, nthreads,
			      not_blocked());
		v_sleep_ms(10);
	}
	v_ready();
	v_wait_go();

	V_CHECK(my_tid() == main_tid, "main thread: gettid() is %d, it was %d", my_tid(), main_tid);
	check_task_list(main_tid);

	pthread_mutex_lock(&mu);
	go_flag = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	pthread_barrier_wait(&barrier);

	int joined = 0;
	for (int i = 0; i < nthreads; i++) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 20;
		int r = pthread_timedjoin_np(threads[i], NULL, &dl);
		if (r != 0) {
			v_fail("thread %d (tid %d) did not finish within 20 s: %s", i, tids[i], strerror(r));
			break;
		}
		joined++;
	}
	long want = (long)nthreads * (nthreads - 1) / 2;
	V_CHECK(joined == nthreads, "joined %d of %d threads", joined, nthreads);
	V_CHECK(finished == nthreads, "%ld of %d threads finished", finished, nthreads);
	V_CHECK(sum == want, "the threads' indexes add up to %ld, expected %ld", sum, want);
	V_CHECK(bad_tid == 0, "%ld thread(s) have a different tid after restore", bad_tid);
	V_CHECK(bad_name == 0, "%ld thread(s) have a different name after restore", bad_name);
	V_CHECK(bad_tls == 0, "%ld thread(s) have a different TLS value after restore", bad_tls);
	v_print("%ld threads finished\n", finished);
	v_finish();
}
