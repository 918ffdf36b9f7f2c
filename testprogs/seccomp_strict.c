/*
 * seccomp_strict: a child in SECCOMP_MODE_STRICT (only read, write, _exit and sigreturn
 * allowed), blocked in read() on a pipe from its parent.
 *
 * The child fills 1 MiB with a pattern, enters strict mode, tells the parent, and serves
 * commands read from the pipe: 'c' sends back a checksum of its memory, 'k' makes it call
 * getpid(), which strict mode answers with SIGKILL.
 *
 * The parent checks /proc/CHILD/status says "Seccomp: 1" before READY and again after the
 * go file, asks for the checksum (the restored child must still compute it, and only
 * with read/write), then sends 'k': the child must die of SIGKILL (strict mode is still
 * enforced, not just reported).
 */
#include "victim.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/seccomp.h>

#define WORDS (1 << 17) /* 1 MiB of uint64_t */

static uint64_t pattern[WORDS];

static uint64_t checksum(void)
{
	uint64_t sum = 0;
	for (int i = 0; i < WORDS; i++)
		sum = v_mix(sum ^ pattern[i]);
	return sum;
}

static void child(int in, int out)
{
	for (int i = 0; i < WORDS; i++)
		pattern[i] = v_mix((uint64_t)i * 7919);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0)
		_exit(2);
	/* from here on: read, write and _exit only */
	if (syscall(SYS_write, out, "s", 1) != 1)
		syscall(SYS_exit, 3);
	for (;;) {
		char cmd;
		if (syscall(SYS_read, in, &cmd, 1) != 1)
			syscall(SYS_exit, 4);
		if (cmd == 'c') {
			uint64_t sum = checksum();
			syscall(SYS_write, out, &sum, sizeof sum);
		} else if (cmd == 'k') {
			syscall(SYS_getpid);
			syscall(SYS_exit, 5); /* strict mode would not let it get here */
		}
	}
}

static int seccomp_mode(pid_t pid)
{
	char path[64], buf[4096], val[32];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (v_read_file(path, buf, sizeof buf) < 0 || v_status_field(buf, "Seccomp", val, sizeof val) != 0)
		return -1;
	return atoi(val);
}

int main(void)
{
	int to_child[2], from_child[2];
	if (pipe(to_child) != 0 || pipe(from_child) != 0)
		v_die("pipe");
	pid_t pid = fork();
	if (pid < 0)
		v_die("fork");
	if (pid == 0) {
		close(to_child[1]);
		close(from_child[0]);
		child(to_child[0], from_child[1]);
	}
	close(to_child[0]);
	close(from_child[1]);
	char c;
	if (read(from_child[0], &c, 1) != 1 || c != 's')
		v_die("the child did not enter strict mode");
	if (seccomp_mode(pid) != 1)
		v_die("the child's Seccomp mode is %d, not 1", seccomp_mode(pid));
	for (int i = 0; i < WORDS; i++)
		pattern[i] = v_mix((uint64_t)i * 7919);
	uint64_t want = checksum();

	v_ready();
	v_wait_go();

	V_CHECK(seccomp_mode(pid) == 1, "the child's Seccomp mode is %d after restore, expected 1 (strict)",
		seccomp_mode(pid));
	uint64_t got = 0;
	if (write(to_child[1], "c", 1) != 1 || read(from_child[0], &got, sizeof got) != sizeof got)
		v_fail("the child did not answer 'c'");
	else
		V_CHECK(got == want, "the child's memory checksum is %llx, expected %llx", (unsigned long long)got,
			(unsigned long long)want);
	if (write(to_child[1], "k", 1) != 1)
		v_fail("write 'k' to the child");
	int st = 0;
	V_CHECK(waitpid(pid, &st, 0) == pid, "waitpid: %s", strerror(errno));
	V_CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
		"the child, calling getpid in strict mode, ended with status 0x%x, expected SIGKILL", st);
	v_finish();
}
