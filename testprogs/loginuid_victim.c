/*
 * loginuid_victim: the audit login uid (/proc/self/loginuid).
 *
 * Before READY it sets its own login uid to 4242 (the kernel lets a task with no login
 * uid set it once; with one set, CAP_AUDIT_CONTROL is needed, unless the audit config
 * makes it immutable: then the victim cannot set up and says so). After the go file
 * /proc/self/loginuid must read 4242, and a thread started after the restore must have
 * inherited it.
 */
#include "victim.h"

#include <pthread.h>

#define WANT 4242u

static unsigned read_loginuid(const char *path)
{
	char buf[64];
	if (v_read_file(path, buf, sizeof buf) < 0)
		return 0;
	return (unsigned)strtoul(buf, NULL, 10);
}

static unsigned thread_saw;

static void *thread_main(void *arg)
{
	(void)arg;
	thread_saw = read_loginuid("/proc/thread-self/loginuid");
	return NULL;
}

int main(void)
{
	if (access("/proc/self/loginuid", F_OK) != 0)
		v_die("no /proc/self/loginuid (kernel without CONFIG_AUDIT)");
	if (read_loginuid("/proc/self/loginuid") != WANT) {
		int fd = open("/proc/self/loginuid", O_WRONLY);
		if (fd < 0 || write(fd, "4242", 4) != 4)
			v_die("the kernel refuses to set loginuid: %s (immutable loginuid, or no CAP_AUDIT_CONTROL)",
			      strerror(errno));
		close(fd);
	}
	if (read_loginuid("/proc/self/loginuid") != WANT)
		v_die("loginuid reads %u after writing %u", read_loginuid("/proc/self/loginuid"), WANT);

	v_ready();
	v_wait_go();

	unsigned now = read_loginuid("/proc/self/loginuid");
	V_CHECK(now == WANT, "loginuid is %u, expected %u", now, WANT);
	pthread_t t;
	if (pthread_create(&t, NULL, thread_main, NULL) != 0 || pthread_join(t, NULL) != 0)
		v_fail("pthread_create");
	else
		V_CHECK(thread_saw == WANT, "a new thread has loginuid %u, expected %u", thread_saw, WANT);
	v_finish();
}
