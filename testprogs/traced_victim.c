/*
 * traced_victim: a process of the tree traced by another one (its parent), which the
 * dump must refuse, naming both, without disturbing either.
 *
 * The parent forks a child and PTRACE_SEIZEs it (no stop), and prints "tracee: PID".
 * After the go file the child checks that it is still traced by its parent, reports
 * that over a pipe and waits in read(); the parent checks that the trace still works
 * (PTRACE_INTERRUPT, the event stop, PTRACE_GETREGS, PTRACE_DETACH), lets the child go,
 * and checks that it exited 0.
 */
#include "victim.h"

#include <signal.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>

static int tracer_of(pid_t pid)
{
	char path[64], buf[4096], val[32];
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (v_read_file(path, buf, sizeof buf) < 0 || v_status_field(buf, "TracerPid", val, sizeof val) != 0)
		return -1;
	return atoi(val);
}

int main(void)
{
	int ready[2], report[2];
	if (pipe(ready) != 0 || pipe(report) != 0)
		v_die("pipe");
	pid_t child = fork();
	if (child < 0)
		v_die("fork");
	if (child == 0) {
		char c;
		close(ready[1]);
		close(report[0]);
		if (read(ready[0], &c, 1) != 1)
			_exit(2);
		v_wait_go();
		int t = tracer_of(getpid());
		if (t != getppid())
			v_print("FAIL: tracee: traced by %d, expected my parent %d\n", t, (int)getppid());
		if (write(report[1], t == getppid() ? "y" : "n", 1) != 1)
			_exit(3);
		/* wait until the parent is done with the trace (it closes its end) */
		while (read(ready[0], &c, 1) > 0)
			;
		_exit(t == getppid() ? 0 : 1);
	}
	close(ready[0]);
	close(report[1]);
	if (ptrace(PTRACE_SEIZE, child, 0, 0) != 0)
		v_die("PTRACE_SEIZE: %s", strerror(errno));
	if (write(ready[1], "g", 1) != 1)
		v_die("write");
	if (tracer_of(child) != getpid())
		v_die("the child is not traced by us");
	v_print("tracee: %d\n", (int)child);

	v_ready();
	v_wait_go();

	V_CHECK(tracer_of(child) == getpid(), "the child's tracer is %d, expected %d", tracer_of(child), (int)getpid());
	char c = 0;
	V_CHECK(read(report[0], &c, 1) == 1 && c == 'y', "the child did not see itself traced by us");
	int st = 0;
	if (ptrace(PTRACE_INTERRUPT, child, 0, 0) != 0) {
		v_fail("PTRACE_INTERRUPT: %s", strerror(errno));
	} else if (waitpid(child, &st, __WALL) != child) {
		v_fail("waitpid after PTRACE_INTERRUPT: %s", strerror(errno));
	} else {
		V_CHECK(WIFSTOPPED(st) && (st >> 16) == PTRACE_EVENT_STOP, "not an event stop: status 0x%x", st);
		struct user_regs_struct regs;
		V_CHECK(ptrace(PTRACE_GETREGS, child, 0, &regs) == 0, "PTRACE_GETREGS: %s", strerror(errno));
		V_CHECK(ptrace(PTRACE_DETACH, child, 0, 0) == 0, "PTRACE_DETACH: %s", strerror(errno));
	}
	close(ready[1]);
	V_CHECK(waitpid(child, &st, __WALL) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child ended with status 0x%x", st);
	v_finish();
}
