/*
 * seccomp_tree: seccomp filters inherited across fork, and synchronised across threads.
 *
 *   F1  getppid -> EPERM,  installed by the main thread before anything else;
 *   the child (fork) inherits F1 and adds F2: getsid -> EACCES (the parent has not F2);
 *   the main thread then starts two threads and installs F3 (getpriority -> EBUSY) with
 *   SECCOMP_FILTER_FLAG_TSYNC: all three threads have F1 and F3, shared.
 *
 * After the go file every thread (and the child) checks what is denied and what is not,
 * and its Seccomp_filters count. Then the main thread installs F4 (getpgid -> EXDEV)
 * with TSYNC once more: this only works if the kernel still finds every thread's filters
 * to be the caller's (shared, not copies); both threads must then be denied getpgid.
 * The child prints its own FAIL lines and exits 1 on failure; the parent checks that.
 */
#include "victim.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static long deny(long nr, int err, unsigned flags)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 4, .filter = f };
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

static int filters(void)
{
	static __thread char buf[8192];
	if (v_read_file("/proc/thread-self/status", buf, sizeof buf) < 0)
		return -1;
	char *p = strstr(buf, "Seccomp_filters:\t");
	return p ? atoi(p + strlen("Seccomp_filters:\t")) : -1;
}

static int denied(long r, int err)
{
	return r == -1 && errno == err;
}

static void check_parent_thread(const char *who, int expect_filters, int expect_f4)
{
	errno = 0;
	V_CHECK(denied(syscall(SYS_getppid), EPERM), "%s: getppid not denied (F1)", who);
	errno = 0;
	V_CHECK(syscall(SYS_getsid, 0) >= 0, "%s: getsid denied: %s (F2 is the child's only)", who, strerror(errno));
	errno = 0;
	V_CHECK(denied(syscall(SYS_getpriority, PRIO_PROCESS, 0), EBUSY), "%s: getpriority not denied (F3, TSYNC)",
		who);
	errno = 0;
	long r = syscall(SYS_getpgid, 0);
	if (expect_f4)
		V_CHECK(denied(r, EXDEV), "%s: getpgid not denied (F4, TSYNC after restore)", who);
	else
		V_CHECK(r >= 0, "%s: getpgid denied before F4", who);
	V_CHECK(filters() == expect_filters, "%s: %d filters, expected %d", who, filters(), expect_filters);
}

static volatile int threads_up, phase, done[2];

static void *worker(void *arg)
{
	int i = (int)(long)arg;
	char who[16];
	snprintf(who, sizeof who, "thread %d", i);
	__atomic_add_fetch(&threads_up, 1, __ATOMIC_SEQ_CST);
	while (phase < 1)
		usleep(1000);
	check_parent_thread(who, 2, 0);
	done[i] = 1;
	while (phase < 2)
		usleep(1000);
	check_parent_thread(who, 3, 1);
	done[i] = 2;
	return NULL;
}

int main(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		v_die("no_new_privs: %s", strerror(errno));
	if (deny(SYS_getppid, EPERM, 0) != 0)
		v_die("seccomp F1: %s", strerror(errno));
	int ready[2];
	if (pipe(ready) != 0)
		v_die("pipe");
	pid_t child = fork();
	if (child < 0)
		v_die("fork");
	if (child == 0) {
		if (deny(SYS_getsid, EACCES, 0) != 0)
			v_die("child: seccomp F2: %s", strerror(errno));
		if (write(ready[1], "r", 1) != 1)
			v_die("child: write");
		close(ready[0]);
		close(ready[1]);
		v_wait_go();
		errno = 0;
		V_CHECK(denied(syscall(SYS_getppid), EPERM), "child: getppid not denied (F1, inherited)");
		errno = 0;
		V_CHECK(denied(syscall(SYS_getsid, 0), EACCES), "child: getsid not denied (F2)");
		errno = 0;
		V_CHECK(syscall(SYS_getpriority, PRIO_PROCESS, 0) != -1,
			"child: getpriority denied (F3 came after the fork)");
		V_CHECK(filters() == 2, "child: %d filters, expected 2", filters());
		_exit(v_failures ? 1 : 0);
	}
	char c;
	if (read(ready[0], &c, 1) != 1)
		v_die("the child did not get ready");
	close(ready[0]);
	close(ready[1]);

	pthread_t th[2];
	for (long i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i) != 0)
			v_die("pthread_create");
	while (threads_up < 2)
		usleep(1000);
	long r = deny(SYS_getpriority, EBUSY, SECCOMP_FILTER_FLAG_TSYNC);
	if (r != 0)
		v_die("seccomp F3 with TSYNC: %ld (%s)", r, strerror(errno));

	v_ready();
	v_wait_go();

	check_parent_thread("main", 2, 0);
	phase = 1;
	while (!(done[0] && done[1]))
		usleep(1000);
	errno = 0;
	r = deny(SYS_getpgid, EXDEV, SECCOMP_FILTER_FLAG_TSYNC);
	V_CHECK(r == 0, "F4 with TSYNC after restore returned %ld (%s): a thread's filters are not shared", r,
		r < 0 ? strerror(errno) : "the tid of the thread out of sync");
	if (r == 0) {
		check_parent_thread("main", 3, 1);
		phase = 2;
		for (int i = 0; i < 2; i++)
			pthread_join(th[i], NULL);
		V_CHECK(done[0] == 2 && done[1] == 2, "the threads did not finish their checks");
	}
	int st = 0;
	V_CHECK(waitpid(child, &st, 0) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child failed its checks (status 0x%x)", st);
	v_finish();
}
