/*
 * tree_vfork: a child created by vfork, still sharing its parent's memory (it has not
 * exec'ed or exited), survives dump, kill and restore together with its parent.
 *
 * The parent sets a word, then vforks; it stays inside vfork until the child ends. The
 * child checks it sees the parent's word (the same memory), prints READY, polls the go
 * file, then checks its pid, ppid and the word again, writes its results into the
 * shared memory and _exits 7. The parent, back from vfork, checks: the child's results
 * are visible in its own memory (the memory was still shared after restore, and vfork did
 * not return before the child's last write), the child is ending or ended (R or Z: its
 * exit releases the memory before it becomes a zombie), waitpid gives exit status 7;
 * then prints PASS.
 *
 * The child only makes system calls and calls functions that keep to their own stack
 * frames below the parent's (as a vfork child must).
 */
#include "victim.h"

#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define MAGIC 0x5eed1234u

static volatile unsigned parent_word;
static volatile unsigned child_word;
static volatile pid_t child_pid_seen, child_ppid_seen, child_pid_after, child_ppid_after;
static volatile int child_saw_parent_word, child_saw_parent_word_after;

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

int main(void)
{
	(void)v_go_path();
	pid_t parent = getpid();
	parent_word = MAGIC;
	pid_t c = vfork();
	if (c < 0)
		v_die("vfork: %s", strerror(errno));
	if (c == 0) {
		child_pid_seen = (pid_t)syscall(SYS_getpid);
		child_ppid_seen = (pid_t)syscall(SYS_getppid);
		child_saw_parent_word = parent_word == MAGIC;
		v_ready();
		struct stat st;
		const char *go = getenv("STASIS_GO");
		struct timespec ts = { 0, 10000000 };
		for (long i = 0; go && stat(go, &st) != 0 && i < 12000; i++)
			nanosleep(&ts, NULL);
		child_pid_after = (pid_t)syscall(SYS_getpid);
		child_ppid_after = (pid_t)syscall(SYS_getppid);
		child_saw_parent_word_after = parent_word == MAGIC;
		child_word = MAGIC ^ 0xffffffffu;
		_exit(7);
	}
	/*
	 * Back from vfork: the child has exited (or exec'ed). Its last write before _exit is
	 * in our memory (it may still be finishing its exit, so its state can be R or Z).
	 */
	char cs = proc_state_of(c);
	V_CHECK(cs == 'Z' || cs == 'R' || cs == 'X' || cs == '?',
		"vfork returned while the child (%d) is in state '%c', not ending", c, cs);
	V_CHECK(child_word == (MAGIC ^ 0xffffffffu),
		"the child's write is not in the parent's memory (word 0x%x): the memory was not shared",
		child_word);
	V_CHECK(child_pid_seen == c && child_ppid_seen == parent,
		"before the dump the child saw pid %d ppid %d, expected %d %d", child_pid_seen,
		child_ppid_seen, c, parent);
	V_CHECK(child_pid_after == c && child_ppid_after == parent,
		"after the go file the child saw pid %d ppid %d, expected %d %d", child_pid_after,
		child_ppid_after, c, parent);
	V_CHECK(child_saw_parent_word && child_saw_parent_word_after,
		"the child did not see the parent's word (before %d, after %d)", child_saw_parent_word,
		child_saw_parent_word_after);
	V_CHECK(getpid() == parent, "the parent's pid is %d, it was %d", getpid(), parent);
	int st = 0;
	pid_t r = 0;
	for (int i = 0; i < 1000 && r == 0; i++) {
		r = waitpid(c, &st, WNOHANG);
		if (r == 0)
			v_sleep_ms(10);
	}
	if (r != c)
		v_fail("waitpid(child %d) gave %d (%s)", c, r, r < 0 ? strerror(errno) : "not ended");
	else
		V_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "the child ended with status 0x%x, expected exit 7",
			st);
	v_finish();
}
