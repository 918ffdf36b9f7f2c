/*
 * seccomp_victim: two stacked seccomp filters survive dump and restore, and stay in
 * force. Filter 1 (installed first) makes getppid() fail with EPERM; filter 2 makes
 * getsid() fail with EACCES. A second thread installs a third filter of
 * its own (no TSYNC) making getpriority() fail with EBUSY: only that thread has it.
 * After the go file each check is made again from inside; /proc/self/status must still
 * say "Seccomp: 2" with 2 filters (3 in the thread).
 */
#include "victim.h"

#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

static void deny(long nr, int err)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = 4, .filter = f };
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
		v_die("seccomp: %s", strerror(errno));
}

static int status_field(const char *name)
{
	static char buf[8192];
	if (v_read_file("/proc/thread-self/status", buf, sizeof buf) < 0)
		return -1;
	char *p = strstr(buf, name);
	return p ? atoi(p + strlen(name)) : -1;
}

static void check_common(const char *who)
{
	errno = 0;
	V_CHECK(syscall(SYS_getppid) == -1 && errno == EPERM, "%s: getppid not denied with EPERM", who);
	errno = 0;
	V_CHECK(syscall(SYS_getsid, 0) == -1 && errno == EACCES, "%s: getsid not denied with EACCES", who);
	V_CHECK(syscall(SYS_gettid) > 0, "%s: gettid should be allowed", who);
	V_CHECK(status_field("Seccomp:\t") == 2, "%s: Seccomp mode is %d", who, status_field("Seccomp:\t"));
}

static volatile int thread_ready, thread_go, thread_done;

static void *worker(void *arg)
{
	(void)arg;
	deny(SYS_getpriority, EBUSY);
	thread_ready = 1;
	while (!thread_go)
		usleep(1000);
	check_common("thread");
	errno = 0;
	V_CHECK(syscall(SYS_getpriority, PRIO_PROCESS, 0) == -1 && errno == EBUSY,
		"thread: getpriority not denied with EBUSY");
	V_CHECK(status_field("Seccomp_filters:\t") == 3, "thread: %d filters, expected 3",
		status_field("Seccomp_filters:\t"));
	thread_done = 1;
	return NULL;
}

int main(void)
{
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		v_die("no_new_privs: %s", strerror(errno));
	deny(SYS_getppid, EPERM);
	deny(SYS_getsid, EACCES);
	pthread_t t;
	if (pthread_create(&t, NULL, worker, NULL) != 0)
		v_die("pthread_create");
	while (!thread_ready)
		usleep(1000);
	v_ready();
	v_wait_go();
	check_common("main");
	V_CHECK(syscall(SYS_getpriority, PRIO_PROCESS, 0) != -1, "main: getpriority is denied, but only the thread had that filter");
	V_CHECK(status_field("Seccomp_filters:\t") == 2, "main: %d filters, expected 2",
		status_field("Seccomp_filters:\t"));
	thread_go = 1;
	pthread_join(t, NULL);
	V_CHECK(thread_done, "the thread did not finish its checks");
	v_finish();
}
