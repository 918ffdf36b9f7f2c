/*
 * tree_stopped: children stopped by job-control signals stay stopped across dump, kill
 * and restore, and continue on a later SIGCONT.
 *
 *   P        the parent (the harness's session and process group)
 *   ├── C1   raise(SIGSTOP)
 *   └── C2   setpgid(0, 0) (so that its group is not orphaned), raise(SIGTSTP)
 *
 * Before READY, P sees both stops with waitpid(WUNTRACED) (SIGSTOP and SIGTSTP) and
 * /proc/PID/stat state 'T'. After the go file P checks that both are still in state 'T'
 * (twice, 300 ms apart: they do not continue by themselves), then for each child in
 * turn creates a marker file and sends SIGCONT. A child that runs on checks that the
 * marker exists (so it did not run before the SIGCONT), its pid, ppid and process group,
 * and exits 0. P reaps both (with a deadline) and checks that they exited 0.
 *
 * A stop that the restored parent can collect again with waitpid(WUNTRACED) before the
 * SIGCONT (it was collected before the dump) is reported as a note, not a failure; but
 * if one is reported, it must name the signal that stopped the child (a shell shows
 * "Stopped (signal)" for SIGSTOP, "Stopped" for SIGTSTP).
 */
#include "victim.h"

#include <signal.h>
#include <sys/wait.h>

#define LIMIT_MS 20000

static char proc_state_of(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (v_read_file(path, buf, sizeof(buf)) <= 0)
		return '?';
	char *p = strrchr(buf, ')');
	if (!p || !p[1] || !p[2])
		return '?';
	return p[2];
}

static void marker(char *buf, size_t size, int n)
{
	snprintf(buf, size, "%s/cont-%d", v_tmp(), n);
}

__attribute__((noreturn)) static void child(int n, int sig, pid_t parent)
{
	pid_t pgid_before = getpgid(0);
	raise(sig);
	/* runs on only after a SIGCONT */
	char p[4200];
	struct stat st;
	marker(p, sizeof(p), n);
	V_CHECK(stat(p, &st) == 0,
		"C%d (pid %d) ran on before its parent's SIGCONT (no marker file)", n, getpid());
	V_CHECK(getppid() == parent, "C%d: getppid() is %d, expected %d", n, getppid(), parent);
	V_CHECK(getpgid(0) == pgid_before, "C%d: getpgid(0) is %d, it was %d", n, getpgid(0),
		pgid_before);
	_exit(v_failures ? 1 : 0);
}

/* Waits (WUNTRACED) until pid reports a stop; returns the stop signal or -1. */
static int wait_stop(pid_t pid)
{
	int st;
	for (long waited = 0; waited < LIMIT_MS; waited += 5) {
		pid_t r = waitpid(pid, &st, WUNTRACED | WNOHANG);
		if (r < 0)
			v_die("waitpid %d: %s", pid, strerror(errno));
		if (r == pid) {
			if (WIFSTOPPED(st))
				return WSTOPSIG(st);
			v_die("child %d ended (status 0x%x) instead of stopping", pid, st);
		}
		v_sleep_ms(5);
	}
	return -1;
}

static void continue_child(int n, pid_t pid)
{
	char p[4200];
	marker(p, sizeof(p), n);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		v_die("create %s: %s", p, strerror(errno));
	close(fd);
	if (kill(pid, SIGCONT) != 0) {
		v_fail("kill(C%d %d, SIGCONT): %s", n, pid, strerror(errno));
		return;
	}
	int st, continued = 0, stopped = 0;
	for (long waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, &st, WUNTRACED | WCONTINUED | WNOHANG);
		if (r < 0) {
			v_fail("waitpid C%d (%d): %s", n, pid, strerror(errno));
			return;
		}
		if (r == pid) {
			if (WIFCONTINUED(st)) {
				continued++;
				continue;
			}
			if (WIFSTOPPED(st)) {
				if (stopped++ == 0)
					v_fail("C%d (%d) stopped again (signal %d) after SIGCONT", n, pid,
					       WSTOPSIG(st));
				continue;
			}
			if (WIFEXITED(st))
				V_CHECK(WEXITSTATUS(st) == 0, "C%d (%d) exited with %d", n, pid,
					WEXITSTATUS(st));
			else
				v_fail("C%d (%d) was killed by signal %d", n, pid, WTERMSIG(st));
			return;
		}
		if (waited > LIMIT_MS) {
			v_fail("C%d (%d) did not exit within %d s after SIGCONT (state '%c')", n, pid,
			       LIMIT_MS / 1000, proc_state_of(pid));
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return;
		}
		v_sleep_ms(5);
	}
}

int main(void)
{
	(void)v_go_path();
	pid_t me = getpid();
	pid_t c1 = fork();
	if (c1 < 0)
		v_die("fork: %s", strerror(errno));
	if (c1 == 0)
		child(1, SIGSTOP, me);
	pid_t c2 = fork();
	if (c2 < 0)
		v_die("fork: %s", strerror(errno));
	if (c2 == 0) {
		if (setpgid(0, 0) != 0)
			v_die("C2: setpgid: %s", strerror(errno));
		child(2, SIGTSTP, me);
	}
	int s1 = wait_stop(c1), s2 = wait_stop(c2);
	if (s1 != SIGSTOP || s2 != SIGTSTP) {
		kill(c1, SIGKILL);
		kill(c2, SIGKILL);
		v_die("children did not stop as expected: C1 %d, C2 %d", s1, s2);
	}
	if (proc_state_of(c1) != 'T' || proc_state_of(c2) != 'T')
		v_die("children are not in state T: C1 '%c', C2 '%c'", proc_state_of(c1),
		      proc_state_of(c2));
	v_print("P %d, C1 %d (SIGSTOP), C2 %d (SIGTSTP)\n", me, c1, c2);
	v_ready();
	v_wait_go();

	for (int round = 0; round < 2; round++) {
		char t1 = proc_state_of(c1), t2 = proc_state_of(c2);
		V_CHECK(t1 == 'T', "C1 (%d) is in state '%c', expected stopped ('T')", c1, t1);
		V_CHECK(t2 == 'T', "C2 (%d) is in state '%c', expected stopped ('T')", c2, t2);
		if (round == 0)
			v_sleep_ms(300);
	}
	int st;
	pid_t pids[2] = { c1, c2 };
	int sigs[2] = { SIGSTOP, SIGTSTP };
	for (int i = 0; i < 2; i++) {
		pid_t r = waitpid(pids[i], &st, WUNTRACED | WNOHANG);
		if (r == pids[i] && WIFSTOPPED(st)) {
			v_print("note: C%d's stop (signal %d) was reported to the parent again after restore\n",
				i + 1, WSTOPSIG(st));
			V_CHECK(WSTOPSIG(st) == sigs[i],
				"C%d was stopped by signal %d, but its stop is now reported with signal %d",
				i + 1, sigs[i], WSTOPSIG(st));
		} else if (r == pids[i])
			v_fail("C%d (%d) has ended (status 0x%x) before its SIGCONT", i + 1, pids[i], st);
		else if (r < 0)
			v_fail("waitpid C%d (%d): %s", i + 1, pids[i], strerror(errno));
	}
	continue_child(1, c1);
	continue_child(2, c2);
	v_finish();
}
