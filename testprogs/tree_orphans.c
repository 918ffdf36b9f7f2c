/*
 * tree_orphans [subreaper]: orphans re-parented to a child subreaper inside the tree,
 * and a process group and a session whose leaders have exited, survive dump, kill and
 * restore. With the argument "subreaper" only the orphan O, in R's own group (P does
 * not make a group of its own, there is no S and T): the subreaper relation alone.
 *
 *   root R        PR_SET_CHILD_SUBREAPER
 *   ├── (P)       setpgid(0, 0), forks O, exits (reaped by R): group P has no leader
 *   ├── O         orphan re-parented to R, in group P
 *   ├── (S)       setsid(), forks T, exits (reaped by R): session S has no leader
 *   └── T         orphan re-parented to R, in session S and group S
 *
 * Before READY R reaps P and S (both exit 0) and waits until O and T are its children
 * and have recorded their ids. After the go file O and T compare pid, ppid (R), pgid
 * and sid with what they recorded; then O forks a grandchild G and exits: G must be
 * re-parented to R (the subreaper relation holds after restore), checks that, and exits
 * 0. R checks that it is still a child subreaper, reaps O, T and G (with a deadline) and
 * checks that all exited 0, then prints PASS.
 */
#include "victim.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#define LIMIT_MS 20000

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static const char *role = "R";
static struct ids rec;
static int leaderless = 1; /* P makes its own group; S and T exist */

static struct ids current(void)
{
	struct ids c = { getpid(), getppid(), getpgid(0), getsid(0) };
	return c;
}

static void marker(char *buf, size_t size, const char *r, const char *what)
{
	snprintf(buf, size, "%s/%s-%s", v_tmp(), what, r);
}

/* Writes our pid to $STASIS_TMP/WHAT-R (written to a temporary name, then renamed). */
static void make_file(const char *r, const char *what)
{
	char p[4200], tmp[4300], text[32];
	marker(p, sizeof(p), r, what);
	snprintf(tmp, sizeof(tmp), "%s.tmp", p);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		v_die("%s: create %s: %s", role, tmp, strerror(errno));
	int n = snprintf(text, sizeof(text), "%d\n", getpid());
	v_write_all(fd, text, (size_t)n);
	close(fd);
	if (rename(tmp, p) != 0)
		v_die("%s: rename %s: %s", role, tmp, strerror(errno));
}

/* The pid in $STASIS_TMP/WHAT-R, or 0 if there is no such file yet. */
static pid_t file_pid(const char *r, const char *what)
{
	char p[4200], text[64];
	marker(p, sizeof(p), r, what);
	if (v_read_file(p, text, sizeof(text)) <= 0)
		return 0;
	return (pid_t)atoi(text);
}

static void wait_go_bounded(void)
{
	const char *go = v_go_path();
	struct stat st;
	for (long waited = 0; stat(go, &st) != 0; waited += 10) {
		if (waited > 120000) {
			v_print("FAIL: %s (pid %d): no go file within 120 s, giving up\n", role, getpid());
			_exit(3);
		}
		v_sleep_ms(10);
	}
}

static void check_ids(void)
{
	struct ids c = current();
	V_CHECK(c.pid == rec.pid, "%s: getpid() is %d, it was %d", role, c.pid, rec.pid);
	V_CHECK(c.ppid == rec.ppid, "%s: getppid() is %d, it was %d", role, c.ppid, rec.ppid);
	V_CHECK(c.pgid == rec.pgid, "%s: getpgid(0) is %d, it was %d", role, c.pgid, rec.pgid);
	V_CHECK(c.sid == rec.sid, "%s: getsid(0) is %d, it was %d", role, c.sid, rec.sid);
}

/* Waits until our parent is `want` (after the original parent exited). */
static int wait_parent(pid_t want)
{
	for (long waited = 0; waited < LIMIT_MS; waited += 2) {
		if (getppid() == want)
			return 0;
		v_sleep_ms(2);
	}
	return -1;
}

__attribute__((noreturn)) static void run_g(pid_t o, pid_t root)
{
	role = "G";
	for (long waited = 0; getppid() == o && waited < LIMIT_MS; waited += 2)
		v_sleep_ms(2);
	V_CHECK(getppid() == root,
		"G: after its parent O (%d) exited it was re-parented to %d, expected the subreaper R (%d)",
		o, getppid(), root);
	_exit(v_failures ? 1 : 0);
}

__attribute__((noreturn)) static void run_o(pid_t root, pid_t p)
{
	role = "O";
	if (wait_parent(root) != 0)
		v_die("O: not re-parented to R within %d s (parent %d)", LIMIT_MS / 1000, getppid());
	rec = current();
	if (rec.pgid != p)
		v_die("O: in group %d, expected P's %d", rec.pgid, p);
	make_file("O", "ready");
	wait_go_bounded();
	check_ids();
	pid_t me = getpid();
	pid_t g = fork();
	if (g < 0)
		v_die("O: fork: %s", strerror(errno));
	if (g == 0)
		run_g(me, root);
	_exit(v_failures ? 1 : 0);
}

__attribute__((noreturn)) static void run_t(pid_t root, pid_t s)
{
	role = "T";
	if (wait_parent(root) != 0)
		v_die("T: not re-parented to R within %d s (parent %d)", LIMIT_MS / 1000, getppid());
	rec = current();
	if (rec.sid != s || rec.pgid != s)
		v_die("T: in session %d group %d, expected S's %d", rec.sid, rec.pgid, s);
	make_file("T", "ready");
	wait_go_bounded();
	check_ids();
	_exit(v_failures ? 1 : 0);
}

/* Reaps pid (or any child with pid -1) with a deadline; returns its pid, status in *st. */
static pid_t reap(pid_t pid, int *st, const char *name)
{
	for (long waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, st, WNOHANG);
		if (r > 0)
			return r;
		if (r < 0) {
			v_fail("R: waitpid(%s): %s", name, strerror(errno));
			return -1;
		}
		if (waited > LIMIT_MS) {
			v_fail("R: %s did not exit within %d s", name, LIMIT_MS / 1000);
			return -1;
		}
		v_sleep_ms(5);
	}
}

static void expect_ok(pid_t pid, int st, const char *name)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		v_fail("R: %s (%d) ended with status 0x%x, expected exit 0", name, pid, st);
}

int main(int argc, char **argv)
{
	(void)v_go_path();
	leaderless = !(argc > 1 && strcmp(argv[1], "subreaper") == 0);
	pid_t root = getpid();
	rec = current();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
		v_die("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));

	pid_t p = fork();
	if (p < 0)
		v_die("fork: %s", strerror(errno));
	if (p == 0) {
		if (leaderless && setpgid(0, 0) != 0)
			v_die("P: setpgid: %s", strerror(errno));
		pid_t o = fork();
		if (o < 0)
			v_die("P: fork: %s", strerror(errno));
		if (o == 0)
			run_o(root, getpgid(0));
		_exit(0);
	}
	pid_t s = leaderless ? fork() : 0;
	if (s < 0)
		v_die("fork: %s", strerror(errno));
	if (leaderless && s == 0) {
		if (setsid() < 0)
			v_die("S: setsid: %s", strerror(errno));
		pid_t t = fork();
		if (t < 0)
			v_die("S: fork: %s", strerror(errno));
		if (t == 0)
			run_t(root, getsid(0));
		_exit(0);
	}
	int st;
	if (reap(p, &st, "P") == p)
		expect_ok(p, st, "P");
	if (leaderless && reap(s, &st, "S") == s)
		expect_ok(s, st, "S");
	pid_t o = 0, t = 0;
	for (long waited = 0; !(o = file_pid("O", "ready")) || (leaderless && !(t = file_pid("T", "ready")));
	     waited += 5) {
		if (waited > LIMIT_MS)
			v_die("O and T not ready within %d s", LIMIT_MS / 1000);
		v_sleep_ms(5);
	}
	if (v_failures)
		v_die("setup failed");
	if (leaderless)
		v_print("R %d; O %d in group %d without leader; T %d in session %d without leader\n",
			root, o, p, t, s);
	else
		v_print("R %d; O %d (its parent P %d has exited)\n", root, o, p);
	v_ready();
	wait_go_bounded();

	struct ids c = current();
	V_CHECK(c.pid == rec.pid, "R: getpid() is %d, it was %d", c.pid, rec.pid);
	V_CHECK(c.pgid == rec.pgid && c.sid == rec.sid, "R: pgid/sid %d/%d, were %d/%d", c.pgid, c.sid,
		rec.pgid, rec.sid);
	int sub = -1;
	prctl(PR_GET_CHILD_SUBREAPER, &sub, 0, 0, 0);
	V_CHECK(sub == 1, "R: PR_GET_CHILD_SUBREAPER is %d, expected 1", sub);
	/* O and T, then G (re-parented to us when O exits) */
	if (reap(o, &st, "O") == o)
		expect_ok(o, st, "O");
	if (leaderless && reap(t, &st, "T") == t)
		expect_ok(t, st, "T");
	pid_t g = reap(-1, &st, "G");
	if (g > 0)
		expect_ok(g, st, "G");
	pid_t extra = waitpid(-1, NULL, WNOHANG);
	V_CHECK(extra < 0 && errno == ECHILD, "R: another child is left (%d)", extra);
	v_finish();
}
