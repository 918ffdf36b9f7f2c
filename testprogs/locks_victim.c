/*
 * locks_victim: file locks of each kind, held by the right owner after restore.
 *
 * In $STASIS_TMP:
 *   fd 5  posix.dat (O_RDWR): the parent's POSIX write lock on [0, 100) and read lock on
 *         [200, EOF); the child (which inherits fd 5, one description) holds its own POSIX
 *         write lock on [100, 150);
 *   fd 6  ofd.dat (O_RDWR): an OFD write lock on [10, 20]; fd 7 is a dup (same description);
 *   fd 8  flock.dat: flock LOCK_EX;
 *   fd 9  shared.dat: flock LOCK_SH, on a description the child shares (inherited).
 * The child blocks reading a pipe from the parent.
 *
 * After the go file a helper process forked then (so a fresh, unrelated owner) checks
 * with F_GETLK, F_OFD_GETLK and flock(LOCK_NB) that each lock is held, with its type,
 * range and owner (the parent's or the child's PID for POSIX locks, -1 for OFD locks),
 * and that nothing is locked where nothing was. The parent also checks that its own
 * locks do not block itself and that its fdinfo shows them. Then it lets the child go;
 * the child checks its lock is still its own and exits.
 */
#include "victim.h"

#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

static char posix_path[4200], ofd_path[4200], flock_path[4200], shared_path[4200];

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		v_die("fd %d: %s", want, strerror(errno));
	close(fd);
}

static void make(const char *path, int want)
{
	place(open(path, O_RDWR | O_CREAT | O_EXCL, 0600), want);
	static char zero[8192];
	if (write(want, zero, sizeof(zero)) != sizeof(zero))
		v_die("write %s", path);
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

/* What F_GETLK (or F_OFD_GETLK) says about a `type` lock on [start, start + len). */
static void expect(int fd, int cmd, short type, off_t start, off_t len, short want_type, pid_t want_pid,
		   const char *what)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	if (fcntl(fd, cmd, &fl) != 0) {
		v_fail("%s: getlk: %s", what, strerror(errno));
		return;
	}
	if (fl.l_type != want_type || (want_type != F_UNLCK && fl.l_pid != want_pid))
		v_fail("%s: type %d pid %d (range %ld+%ld), expected type %d pid %d", what, fl.l_type, fl.l_pid,
		       (long)fl.l_start, (long)fl.l_len, want_type, want_pid);
}

static void expect_flock(const char *path, int op, int want_ok, const char *what)
{
	int fd = open(path, O_RDONLY);
	int r = flock(fd, op | LOCK_NB);
	if (want_ok && r != 0)
		v_fail("%s: flock failed: %s", what, strerror(errno));
	if (!want_ok && (r == 0 || errno != EWOULDBLOCK))
		v_fail("%s: flock %s", what, r == 0 ? "succeeded" : strerror(errno));
	close(fd);
}

static int helper(pid_t parent, pid_t child)
{
	int p = open(posix_path, O_RDWR);
	int o = open(ofd_path, O_RDWR);
	if (p < 0 || o < 0)
		v_die("helper open");
	expect(p, F_GETLK, F_RDLCK, 0, 100, F_WRLCK, parent, "parent's POSIX write lock [0,100)");
	expect(p, F_GETLK, F_WRLCK, 50, 1, F_WRLCK, parent, "parent's POSIX write lock at 50");
	expect(p, F_GETLK, F_WRLCK, 100, 50, F_WRLCK, child, "child's POSIX write lock [100,150)");
	expect(p, F_GETLK, F_RDLCK, 120, 1, F_WRLCK, child, "child's POSIX write lock at 120");
	expect(p, F_GETLK, F_WRLCK, 150, 50, F_UNLCK, 0, "nothing on [150,200)");
	expect(p, F_GETLK, F_WRLCK, 200, 10, F_RDLCK, parent, "parent's POSIX read lock at 200");
	expect(p, F_GETLK, F_WRLCK, 1 << 30, 1, F_RDLCK, parent, "parent's POSIX read lock to EOF");
	expect(p, F_GETLK, F_RDLCK, 200, 0, F_UNLCK, 0, "a read lock is compatible with [200,EOF)");
	expect(o, F_OFD_GETLK, F_RDLCK, 10, 11, F_WRLCK, -1, "OFD write lock [10,20]");
	expect(o, F_OFD_GETLK, F_RDLCK, 20, 1, F_WRLCK, -1, "OFD write lock at 20");
	expect(o, F_OFD_GETLK, F_WRLCK, 0, 10, F_UNLCK, 0, "nothing on [0,10) of ofd.dat");
	expect(o, F_OFD_GETLK, F_WRLCK, 21, 100, F_UNLCK, 0, "nothing after 20 of ofd.dat");
	expect(o, F_GETLK, F_WRLCK, 15, 1, F_WRLCK, -1, "OFD lock seen by F_GETLK");
	expect_flock(flock_path, LOCK_SH, 0, "flock.dat is locked exclusively");
	expect_flock(shared_path, LOCK_EX, 0, "shared.dat is locked (shared)");
	expect_flock(shared_path, LOCK_SH, 1, "shared.dat admits another shared lock");
	expect_flock(ofd_path, LOCK_EX, 1, "no flock on ofd.dat");
	return v_failures ? 1 : 0;
}

int main(void)
{
	const char *dir = v_tmp();
	snprintf(posix_path, sizeof(posix_path), "%s/posix.dat", dir);
	snprintf(ofd_path, sizeof(ofd_path), "%s/ofd.dat", dir);
	snprintf(flock_path, sizeof(flock_path), "%s/flock.dat", dir);
	snprintf(shared_path, sizeof(shared_path), "%s/shared.dat", dir);
	make(posix_path, 5);
	make(ofd_path, 6);
	if (dup2(6, 7) != 7)
		v_die("dup2");
	make(flock_path, 8);
	make(shared_path, 9);
	if (setlk(5, F_SETLK, F_WRLCK, 0, 100) || setlk(5, F_SETLK, F_RDLCK, 200, 0))
		v_die("posix locks: %s", strerror(errno));
	if (setlk(6, F_OFD_SETLK, F_WRLCK, 10, 11))
		v_die("ofd lock: %s", strerror(errno));
	if (flock(8, LOCK_EX | LOCK_NB) || flock(9, LOCK_SH | LOCK_NB))
		v_die("flock: %s", strerror(errno));

	int go[2], ready[2];
	if (pipe(go) || pipe(ready))
		v_die("pipe");
	pid_t kid = fork();
	if (kid < 0)
		v_die("fork");
	if (kid == 0) {
		close(go[1]);
		close(ready[0]);
		if (setlk(5, F_SETLK, F_WRLCK, 100, 50))
			_exit(2);
		if (write(ready[1], "k", 1) != 1)
			_exit(3);
		close(ready[1]);
		char c;
		while (read(go[0], &c, 1) < 0 && errno == EINTR)
			;
		/* Its own lock does not stand in its own way. */
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 50};
		if (fcntl(5, F_GETLK, &fl) || fl.l_type != F_UNLCK)
			_exit(4);
		_exit(0);
	}
	close(go[0]);
	close(ready[1]);
	char c;
	if (read(ready[0], &c, 1) != 1)
		v_die("the child did not take its lock");
	close(ready[0]);
	v_ready();
	v_wait_go();

	pid_t me = getpid();
	pid_t h = fork();
	if (h == 0)
		_exit(helper(me, kid));
	int st = 0;
	if (waitpid(h, &st, 0) != h || !WIFEXITED(st) || WEXITSTATUS(st))
		v_fail("the helper found the locks wrong (status %#x)", st);
	expect(5, F_GETLK, F_WRLCK, 0, 100, F_UNLCK, 0, "the parent's own write lock");
	expect(5, F_GETLK, F_WRLCK, 100, 50, F_WRLCK, kid, "the child's lock, seen by the parent");
	char info[4096];
	if (v_read_file("/proc/self/fdinfo/5", info, sizeof(info)) < 0 || !strstr(info, "POSIX") ||
	    !strstr(info, " 0 99") || !strstr(info, " 200 EOF"))
		v_fail("fdinfo 5 does not show the POSIX locks:\n%s", info);
	if (v_read_file("/proc/self/fdinfo/7", info, sizeof(info)) < 0 || !strstr(info, "OFDLCK") ||
	    !strstr(info, " 10 20"))
		v_fail("fdinfo 7 does not show the OFD lock:\n%s", info);
	if (v_read_file("/proc/self/fdinfo/8", info, sizeof(info)) < 0 || !strstr(info, "FLOCK"))
		v_fail("fdinfo 8 does not show the flock:\n%s", info);
	if (write(go[1], "g", 1) != 1)
		v_fail("wake the child");
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st))
		v_fail("the child: status %#x", st);
	v_finish();
}
