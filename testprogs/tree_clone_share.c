/*
 * tree_clone_share: processes that share an fd table (CLONE_FILES) and cwd/root/umask
 * (CLONE_FS) with their parent still share them after restore.
 *
 * The parent opens $STASIS_TMP/data.txt at fd 50, then creates:
 *   child1      clone(CLONE_FILES | CLONE_FS): one fd table and one fs with the parent;
 *   grandchild  made by child1 with clone(CLONE_FILES): the same fd table, its own fs;
 *   child2      a plain fork: shares nothing.
 *
 * After the go file:
 *   - kcmp says: parent/child1 share the fd table and fs; child1/grandchild share the fd
 *     table but not fs; parent/child2 share neither;
 *   - the grandchild reads fd 50 (the file's data, at the shared offset), opens fd 101 and
 *     ends when child1 has compared tables (SIGUSR2); child1 reaps it, opens fd 100, changes directory to sub/ and sets umask 077,
 *     then sends SIGUSR1 to the parent; the parent sees fds 100 and 101 in its own table,
 *     its cwd is sub/, its umask is 077; then it sends SIGUSR2 to child1, which ends;
 *   - child2 does not see fd 100 or 101 (its table is its own) and its cwd is unchanged;
 *   - the parent reaps both children (with a deadline) and prints PASS.
 *
 * With the argument "vm": children that share the parent's memory (clone(CLONE_VM), not
 * threads), with its handlers or its fd table (see vm_main).
 */
#include "victim.h"

#include <linux/kcmp.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define LIMIT_S 20

static const char *role = "parent";
static char dir[4096], sub[4200];

static pid_t clone_like_fork(unsigned long flags)
{
	/* No CLONE_VM and no new stack: the child runs on a copy of ours, as after fork. */
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, 0, 0, 0);
}

static int kcmp_same(pid_t a, pid_t b, int type)
{
	long r = syscall(SYS_kcmp, a, b, type, 0, 0);
	if (r < 0)
		v_fail("%s: kcmp(%d, %d, %d): %s", role, a, b, type, strerror(errno));
	return r == 0;
}

static int fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1;
}

static void wait_signal(int sig)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, sig);
	struct timespec limit = { LIMIT_S, 0 };
	if (sigtimedwait(&set, NULL, &limit) != sig)
		v_fail("%s: signal %d did not come: %s", role, sig, strerror(errno));
}

static int reap(pid_t pid, const char *name)
{
	for (int i = 0; i < LIMIT_S * 100; i++) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG | __WALL);
		if (r == pid) {
			V_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s ended with status %#x", role,
				name, st);
			return 0;
		}
		if (r < 0) {
			v_fail("%s: waitpid %s: %s", role, name, strerror(errno));
			return -1;
		}
		v_sleep_ms(10);
	}
	v_fail("%s: %s did not end in %d s", role, name, LIMIT_S);
	kill(pid, SIGKILL);
	return -1;
}

static void check_cwd(const char *want)
{
	char cwd[4200];
	if (!getcwd(cwd, sizeof(cwd))) {
		v_fail("%s: getcwd: %s", role, strerror(errno));
		return;
	}
	V_CHECK(strcmp(cwd, want) == 0, "%s: cwd is %s, expected %s", role, cwd, want);
}

static void grandchild_main(void)
{
	role = "grandchild";
	v_wait_go();
	char buf[8] = { 0 };
	ssize_t n = read(50, buf, 4);
	V_CHECK(n == 4 && memcmp(buf, "abcd", 4) == 0, "grandchild: read fd 50: %zd '%.4s'", n, buf);
	check_cwd(dir);
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 101) != 101)
		v_fail("grandchild: open fd 101: %s", strerror(errno));
	close(fd);
	/* Alive until child1 has compared tables (a zombie has none). */
	wait_signal(SIGUSR2);
	_exit(v_failures ? 1 : 0);
}

static void child1_main(void)
{
	role = "child1";
	pid_t grandchild = clone_like_fork(CLONE_FILES);
	if (grandchild < 0)
		v_die("child1: clone: %s", strerror(errno));
	if (grandchild == 0)
		grandchild_main();
	v_wait_go();
	V_CHECK(kcmp_same(getpid(), grandchild, KCMP_FILES), "child1: no longer shares its fd table with the grandchild");
	V_CHECK(!kcmp_same(getpid(), grandchild, KCMP_FS), "child1: shares fs with the grandchild");
	V_CHECK(kcmp_same(getpid(), getppid(), KCMP_FS), "child1: no longer shares fs with the parent");
	kill(grandchild, SIGUSR2);
	reap(grandchild, "grandchild");
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 100) != 100)
		v_fail("child1: open fd 100: %s", strerror(errno));
	close(fd);
	if (chdir(sub))
		v_fail("child1: chdir %s: %s", sub, strerror(errno));
	umask(077);
	kill(getppid(), SIGUSR1);
	wait_signal(SIGUSR2);
	_exit(v_failures ? 1 : 0);
}

static void child2_main(void)
{
	role = "child2";
	v_wait_go();
	v_sleep_ms(200);
	V_CHECK(!fd_open(100) && !fd_open(101), "child2: sees fds of a table it does not share");
	check_cwd(dir);
	_exit(v_failures ? 1 : 0);
}

/*
 * "vm" mode: two children share the parent's memory without being threads:
 *   vm_a  clone(CLONE_VM | CLONE_SIGHAND): also the signal handlers (its own fd table);
 *   vm_b  clone(CLONE_VM | CLONE_FILES): also the fd table (its own handlers).
 * After the go file each child checks its pid and ppid and what kcmp says it shares with
 * the parent, then waits for the parent's word in the shared memory; the parent checks
 * the same from its side, installs a SIGUSR2 handler (vm_a must see it through the
 * shared table, vm_b must not), opens fd 120 (vm_b must see it, vm_a must not), then
 * writes the word; each child answers in the shared memory and exits 0.
 * "vm-child": vm_a has a child of its own, which the dump must refuse (the tree goes on).
 */
static volatile long vm_word, vm_answer_a, vm_answer_b;
static volatile pid_t vm_parent;
static volatile int vm_with_child;

static void usr2_handler(int sig)
{
	(void)sig;
}

static int vm_wait_word(void)
{
	for (int i = 0; i < LIMIT_S * 100; i++) {
		if (vm_word == 42)
			return 1;
		v_sleep_ms(10);
	}
	return 0;
}

static int vm_child_a(void *arg)
{
	(void)arg;
	role = "vm_a";
	pid_t grandchild = -1;
	if (vm_with_child) {
		grandchild = fork();
		if (grandchild == 0) {
			v_wait_go();
			_exit(0);
		}
	}
	v_wait_go();
	V_CHECK(getppid() == vm_parent, "vm_a: ppid %d, expected %d", getppid(), vm_parent);
	V_CHECK(kcmp_same(getpid(), vm_parent, KCMP_VM), "vm_a: no longer shares memory");
	V_CHECK(kcmp_same(getpid(), vm_parent, KCMP_SIGHAND), "vm_a: no longer shares handlers");
	V_CHECK(!kcmp_same(getpid(), vm_parent, KCMP_FILES), "vm_a: shares the fd table");
	V_CHECK(vm_wait_word(), "vm_a: the parent's word never came through the memory");
	struct sigaction sa;
	sigaction(SIGUSR2, NULL, &sa);
	V_CHECK(sa.sa_handler == usr2_handler, "vm_a: the parent's new SIGUSR2 handler is not in its table");
	V_CHECK(!fd_open(120), "vm_a: sees fd 120 of the parent's table");
	if (grandchild > 0)
		reap(grandchild, "vm_a's child");
	vm_answer_a = v_failures ? 2 : 1;
	return 0;
}

static int vm_child_b(void *arg)
{
	(void)arg;
	role = "vm_b";
	v_wait_go();
	V_CHECK(getppid() == vm_parent, "vm_b: ppid %d, expected %d", getppid(), vm_parent);
	V_CHECK(kcmp_same(getpid(), vm_parent, KCMP_VM), "vm_b: no longer shares memory");
	V_CHECK(!kcmp_same(getpid(), vm_parent, KCMP_SIGHAND), "vm_b: shares the handlers");
	V_CHECK(kcmp_same(getpid(), vm_parent, KCMP_FILES), "vm_b: no longer shares the fd table");
	V_CHECK(vm_wait_word(), "vm_b: the parent's word never came through the memory");
	struct sigaction sa;
	sigaction(SIGUSR2, NULL, &sa);
	V_CHECK(sa.sa_handler == SIG_DFL, "vm_b: sees the parent's SIGUSR2 handler");
	V_CHECK(fd_open(120), "vm_b: does not see fd 120 of the shared table");
	vm_answer_b = v_failures ? 2 : 1;
	return 0;
}

static void vm_main(int with_child)
{
	static char stack_a[256 * 1024] __attribute__((aligned(16)));
	static char stack_b[256 * 1024] __attribute__((aligned(16)));
	vm_parent = getpid();
	vm_with_child = with_child;
	pid_t a = clone(vm_child_a, stack_a + sizeof(stack_a), CLONE_VM | CLONE_SIGHAND | SIGCHLD, NULL);
	pid_t b = clone(vm_child_b, stack_b + sizeof(stack_b), CLONE_VM | CLONE_FILES | SIGCHLD, NULL);
	if (a < 0 || b < 0)
		v_die("clone(CLONE_VM): %s", strerror(errno));
	v_ready();
	v_wait_go();
	V_CHECK(kcmp_same(getpid(), a, KCMP_VM) && kcmp_same(getpid(), b, KCMP_VM),
		"parent: no longer shares memory with its children");
	signal(SIGUSR2, usr2_handler);
	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 120) != 120)
		v_fail("parent: open fd 120: %s", strerror(errno));
	close(fd);
	vm_word = 42;
	reap(a, "vm_a");
	reap(b, "vm_b");
	V_CHECK(vm_answer_a == 1 && vm_answer_b == 1, "parent: the children answered %ld and %ld",
		vm_answer_a, vm_answer_b);
	v_finish();
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "vm") == 0)
		vm_main(0);
	if (argc > 1 && strcmp(argv[1], "vm-child") == 0)
		vm_main(1);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);

	const char *tmp = getenv("STASIS_TMP");
	if (!tmp)
		v_die("STASIS_TMP is not set");
	if (!realpath(tmp, dir))
		v_die("realpath %s: %s", tmp, strerror(errno));
	snprintf(sub, sizeof(sub), "%s/sub", dir);
	mkdir(sub, 0755);
	if (chdir(dir))
		v_die("chdir: %s", strerror(errno));
	umask(022);
	int fd = open("data.txt", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "abcdefgh", 8) != 8 || lseek(fd, 0, SEEK_SET) != 0 || dup2(fd, 50) != 50)
		v_die("data file: %s", strerror(errno));
	close(fd);

	pid_t child1 = clone_like_fork(CLONE_FILES | CLONE_FS);
	if (child1 < 0)
		v_die("clone: %s", strerror(errno));
	if (child1 == 0)
		child1_main();
	pid_t child2 = fork();
	if (child2 < 0)
		v_die("fork: %s", strerror(errno));
	if (child2 == 0)
		child2_main();
	v_ready();

	v_wait_go();
	V_CHECK(kcmp_same(getpid(), child1, KCMP_FILES), "parent: no longer shares its fd table with child1");
	V_CHECK(kcmp_same(getpid(), child1, KCMP_FS), "parent: no longer shares fs with child1");
	V_CHECK(!kcmp_same(getpid(), child2, KCMP_FILES), "parent: shares its fd table with child2");
	V_CHECK(!kcmp_same(getpid(), child2, KCMP_FS), "parent: shares fs with child2");
	wait_signal(SIGUSR1);
	V_CHECK(fd_open(100), "parent: fd 100 that child1 opened is not in its table");
	V_CHECK(fd_open(101), "parent: fd 101 that the grandchild opened is not in its table");
	V_CHECK(lseek(50, 0, SEEK_CUR) == 4, "parent: fd 50 is at %ld, expected 4", (long)lseek(50, 0, SEEK_CUR));
	check_cwd(sub);
	mode_t m = umask(0);
	V_CHECK(m == 077, "parent: umask is %03o, expected 077 (set by child1)", m);
	umask(m);
	kill(child1, SIGUSR2);
	reap(child1, "child1");
	reap(child2, "child2");
	v_finish();
}
