/*
 * tree_sessions: a process tree of depth 3 with two sessions, several process groups
 * and a zombie survives dump, kill and restore.
 *
 *   root R            the harness's session and process group
 *   ├── Z             exits at once with status 42; not reaped before READY (a zombie)
 *   ├── A             setsid(): leader of a second session (and of its process group)
 *   │   ├── A1        in A's session and A's process group
 *   │   └── A2        in A's session, its own process group (setpgid(0, 0))
 *   └── B             R's session, its own process group (setpgid(0, 0))
 *
 * Every process records its pid, ppid, pgid and sid once set up (and checks that they
 * are what the layout above says), then creates a marker file in $STASIS_TMP; R prints
 * READY when every marker exists and Z has exited (waitid WNOWAIT). After the go file
 * each process compares getpid(), getppid(), getpgid(0) and getsid(0) with what it
 * recorded (R: all but its ppid, which is the restore tool's) and exits 0 if they match,
 * 1 otherwise, printing FAIL lines itself. A reaps A1 and A2, and exits 1 unless both
 * exited 0. R checks that Z is still its zombie child (/proc), reaps it and checks
 * WEXITSTATUS == 42, reaps A and B and checks that they exited 0, then prints PASS.
 * Every wait has a deadline; every process ends by itself if the go file never comes.
 */
#include "victim.h"

#include <signal.h>
#include <sys/wait.h>

#define GO_LIMIT_MS 120000
#define REAP_LIMIT_MS 20000

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static const char *role = "R";
static struct ids rec;

static struct ids current(void)
{
	struct ids c = { getpid(), getppid(), getpgid(0), getsid(0) };
	return c;
}

static void record(const char *r)
{
	role = r;
	rec = current();
}

static void expect(int cond, const char *what)
{
	if (!cond)
		v_die("%s: %s (pid %d ppid %d pgid %d sid %d)", role, what, rec.pid, rec.ppid,
		      rec.pgid, rec.sid);
}

static void marker_path(char *buf, size_t size, const char *r)
{
	snprintf(buf, size, "%s/ready-%s", v_tmp(), r);
}

static void mark_ready(void)
{
	char p[4200];
	marker_path(p, sizeof(p), role);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		v_die("%s: create %s: %s", role, p, strerror(errno));
	close(fd);
}

static void wait_go_bounded(void)
{
	const char *go = v_go_path();
	struct stat st;
	for (long waited = 0; stat(go, &st) != 0; waited += 10) {
		if (waited > GO_LIMIT_MS) {
			v_print("FAIL: %s (pid %d): no go file within %d s, giving up\n", role, getpid(),
				GO_LIMIT_MS / 1000);
			_exit(3);
		}
		v_sleep_ms(10);
	}
}

static void check_ids(int check_ppid)
{
	struct ids c = current();
	V_CHECK(c.pid == rec.pid, "%s: getpid() is %d, it was %d", role, c.pid, rec.pid);
	if (check_ppid)
		V_CHECK(c.ppid == rec.ppid, "%s: getppid() is %d, it was %d", role, c.ppid, rec.ppid);
	V_CHECK(c.pgid == rec.pgid, "%s: getpgid(0) is %d, it was %d", role, c.pgid, rec.pgid);
	V_CHECK(c.sid == rec.sid, "%s: getsid(0) is %d, it was %d", role, c.sid, rec.sid);
}

/* Reaps pid with a deadline; returns its status, or -1 (reported) if it did not end. */
static int reap(pid_t pid, const char *name)
{
	int st;
	for (long waited = 0;; waited += 5) {
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid)
			return st;
		if (r < 0) {
			v_fail("%s: waitpid(%s, pid %d): %s", role, name, pid, strerror(errno));
			return -1;
		}
		if (waited > REAP_LIMIT_MS) {
			v_fail("%s: %s (pid %d) did not exit within %d s", role, name, pid,
			       REAP_LIMIT_MS / 1000);
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		v_sleep_ms(5);
	}
}

static void expect_exit(pid_t pid, const char *name, int code)
{
	int st = reap(pid, name);
	if (st == -1)
		return;
	if (WIFEXITED(st))
		V_CHECK(WEXITSTATUS(st) == code, "%s: %s (pid %d) exited with %d, expected %d", role,
			name, pid, WEXITSTATUS(st), code);
	else
		v_fail("%s: %s (pid %d) was killed by signal %d, expected exit %d", role, name, pid,
		       WTERMSIG(st), code);
}

__attribute__((noreturn)) static void child_end(void)
{
	_exit(v_failures ? 1 : 0);
}

static void run_a1(pid_t a)
{
	record("A1");
	expect(rec.ppid == a && rec.sid == a && rec.pgid == a, "not in A's session and group");
	mark_ready();
	wait_go_bounded();
	check_ids(1);
	child_end();
}

static void run_a2(pid_t a)
{
	if (setpgid(0, 0) != 0)
		v_die("A2: setpgid: %s", strerror(errno));
	record("A2");
	expect(rec.ppid == a && rec.sid == a && rec.pgid == rec.pid, "not in A's session, own group");
	mark_ready();
	wait_go_bounded();
	check_ids(1);
	child_end();
}

static void run_a(void)
{
	if (setsid() < 0)
		v_die("A: setsid: %s", strerror(errno));
	record("A");
	expect(rec.sid == rec.pid && rec.pgid == rec.pid, "not a session leader");
	pid_t me = getpid();
	pid_t a1 = fork();
	if (a1 < 0)
		v_die("A: fork: %s", strerror(errno));
	if (a1 == 0)
		run_a1(me);
	pid_t a2 = fork();
	if (a2 < 0)
		v_die("A: fork: %s", strerror(errno));
	if (a2 == 0)
		run_a2(me);
	mark_ready();
	wait_go_bounded();
	check_ids(1);
	expect_exit(a1, "A1", 0);
	expect_exit(a2, "A2", 0);
	child_end();
}

static void run_b(pid_t root_sid)
{
	if (setpgid(0, 0) != 0)
		v_die("B: setpgid: %s", strerror(errno));
	record("B");
	expect(rec.sid == root_sid && rec.pgid == rec.pid, "not in R's session, own group");
	mark_ready();
	wait_go_bounded();
	check_ids(1);
	child_end();
}

static char proc_state_of(pid_t pid, pid_t *ppid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (v_read_file(path, buf, sizeof(buf)) <= 0)
		return 0;
	char *p = strrchr(buf, ')');
	if (!p || !p[1] || !p[2])
		return 0;
	char state = p[2];
	if (ppid)
		*ppid = (pid_t)atoi(p + 4);
	return state;
}

int main(void)
{
	(void)v_go_path();
	record("R");
	pid_t root = getpid();

	pid_t z = fork();
	if (z < 0)
		v_die("fork: %s", strerror(errno));
	if (z == 0)
		_exit(42);
	pid_t a = fork();
	if (a < 0)
		v_die("fork: %s", strerror(errno));
	if (a == 0)
		run_a();
	pid_t b = fork();
	if (b < 0)
		v_die("fork: %s", strerror(errno));
	if (b == 0)
		run_b(rec.sid);

	/* wait until everybody is set up and Z has exited (without reaping it) */
	const char *roles[] = { "A", "A1", "A2", "B" };
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		char p[4200];
		struct stat st;
		marker_path(p, sizeof(p), roles[i]);
		for (long waited = 0; stat(p, &st) != 0; waited += 5) {
			if (waited > 20000)
				v_die("%s did not get ready within 20 s", roles[i]);
			v_sleep_ms(5);
		}
	}
	siginfo_t si;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT) != 0)
		v_die("waitid Z: %s", strerror(errno));
	if (si.si_code != CLD_EXITED || si.si_status != 42)
		v_die("Z ended with code %d status %d", si.si_code, si.si_status);
	v_print("tree: R %d, Z %d, A %d, B %d\n", root, z, a, b);
	v_ready();
	wait_go_bounded();

	check_ids(0);
	pid_t zp = 0;
	char zs = proc_state_of(z, &zp);
	V_CHECK(zs == 'Z', "R: Z (pid %d) is in state '%c', expected a zombie ('Z')", z, zs ? zs : '?');
	V_CHECK(zp == root, "R: Z (pid %d) has parent %d, expected %d", z, zp, root);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)z, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
		v_fail("R: waitid on Z (pid %d): %s", z, strerror(errno));
	else
		V_CHECK(si.si_pid == z, "R: Z (pid %d) has not exited (waitid WNOHANG found nothing)", z);
	expect_exit(z, "Z", 42);
	expect_exit(a, "A", 0);
	expect_exit(b, "B", 0);
	pid_t left = waitpid(-1, NULL, WNOHANG);
	V_CHECK(left < 0 && errno == ECHILD, "R: waitpid(-1) found another child (%d)", left);
	v_finish();
}
