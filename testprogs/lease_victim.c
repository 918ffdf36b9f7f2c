/*
 * lease_victim MODE: file leases (fcntl F_SETLEASE), held after restore and broken by a
 * conflicting open as before.
 *
 * leases: in $STASIS_TMP, fd 5 rd.dat (O_RDONLY) with a read lease, fd 6 wr.dat (O_RDONLY)
 *   with a write lease; a SIGIO handler counts lease-break signals. After the go file:
 *   F_GETLEASE gives each lease back, the fdinfo "lock:" lines show them as LEASE ACTIVE
 *   with this process's PID; then a helper forked then opens wr.dat read-only and rd.dat
 *   for writing (O_NONBLOCK: each open fails with EWOULDBLOCK and starts a lease break):
 *   each break sends SIGIO to this process, F_GETLEASE then shows the type the lease must
 *   become, and once released (F_UNLCK) the helper's open succeeds.
 * shared: as leases, but a child shares the descriptions (fork after F_SETLEASE; its
 *   fdinfo shows the leases with the parent's PID) and waits for the go file.
 * holder-gone: the write lease on fd 6 is taken by a child on the shared description,
 *   and the child exits: the lease stays, held by a process outside the tree (the dump
 *   must refuse); after the go file the lease is still there.
 */
#include "victim.h"

#include <signal.h>
#include <sys/wait.h>

static volatile sig_atomic_t sigio_count;

static void on_sigio(int sig)
{
	(void)sig;
	sigio_count++;
}

static char rd_path[4200], wr_path[4200];

static void place(const char *path, int want)
{
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || write(fd, "data\n", 5) != 5)
		v_die("create %s: %s", path, strerror(errno));
	close(fd);
	fd = open(path, O_RDONLY);
	if (fd < 0 || dup2(fd, want) != want)
		v_die("open %s: %s", path, strerror(errno));
	close(fd);
}

static int fdinfo_has_lease(int fd, const char *type)
{
	char path[64], want[128];
	static char buf[4096];
	snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
	if (v_read_file(path, buf, sizeof buf) <= 0)
		return 0;
	snprintf(want, sizeof want, "LEASE  ACTIVE    %s %d ", type, getpid());
	return strstr(buf, want) != NULL;
}

/* A helper opens `path` with `flags` | O_NONBLOCK: it must fail with EWOULDBLOCK (the
 * break started). Then this process must get SIGIO, see `during` from F_GETLEASE, release
 * the lease, and the helper's next open succeed. */
static void break_lease(int fd, const char *path, int flags, int during, const char *what)
{
	int before = sigio_count;
	pid_t helper = fork();
	if (helper < 0)
		v_die("fork: %s", strerror(errno));
	if (helper == 0) {
		int h = open(path, flags | O_NONBLOCK);
		if (h >= 0 || errno != EWOULDBLOCK)
			_exit(2);
		/* Blocks until the holder releases the lease. */
		h = open(path, flags);
		_exit(h >= 0 ? 0 : 3);
	}
	for (int i = 0; i < 500 && sigio_count == before; i++)
		v_sleep_ms(10);
	V_CHECK(sigio_count > before, "%s: no SIGIO after a conflicting open", what);
	int now = fcntl(fd, F_GETLEASE);
	V_CHECK(now == during, "%s: F_GETLEASE during the break %d, expected %d", what, now,
		during);
	V_CHECK(fcntl(fd, F_SETLEASE, F_UNLCK) == 0, "%s: release: %s", what, strerror(errno));
	int status = 0;
	V_CHECK(waitpid(helper, &status, 0) == helper, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"%s: the helper's opens went wrong (status %#x: 2 = the first open was not "
		"refused with EWOULDBLOCK)",
		what, status);
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	int shared = !strcmp(mode, "shared");
	int gone = !strcmp(mode, "holder-gone");
	if (!shared && !gone && strcmp(mode, "leases"))
		v_die("usage: lease_victim leases|shared|holder-gone");
	struct sigaction sa = { .sa_handler = on_sigio };
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGIO, &sa, NULL) < 0)
		v_die("sigaction: %s", strerror(errno));
	snprintf(rd_path, sizeof rd_path, "%s/rd.dat", v_tmp());
	snprintf(wr_path, sizeof wr_path, "%s/wr.dat", v_tmp());
	place(rd_path, 5);
	place(wr_path, 6);
	if (fcntl(5, F_SETLEASE, F_RDLCK) < 0)
		v_die("read lease: %s", strerror(errno));
	if (gone) {
		pid_t holder = fork();
		if (holder == 0)
			_exit(fcntl(6, F_SETLEASE, F_WRLCK) < 0 ? 1 : 0);
		int status = 0;
		if (holder < 0 || waitpid(holder, &status, 0) != holder || status != 0)
			v_die("the holder child failed to take the lease (status %#x)", status);
		v_ready();
		v_wait_go();
		V_CHECK(fcntl(6, F_GETLEASE) == F_WRLCK, "fd 6: F_GETLEASE %d after the refused dump",
			fcntl(6, F_GETLEASE));
		v_finish();
	}
	if (fcntl(6, F_SETLEASE, F_WRLCK) < 0)
		v_die("write lease: %s", strerror(errno));
	pid_t child = -1;
	if (shared) {
		child = fork();
		if (child < 0)
			v_die("fork: %s", strerror(errno));
		if (child == 0) {
			v_wait_go();
			_exit(0);
		}
	}
	v_ready();
	v_wait_go();
	if (child > 0)
		waitpid(child, NULL, 0);

	V_CHECK(fcntl(5, F_GETLEASE) == F_RDLCK, "fd 5: F_GETLEASE %d, expected a read lease",
		fcntl(5, F_GETLEASE));
	V_CHECK(fcntl(6, F_GETLEASE) == F_WRLCK, "fd 6: F_GETLEASE %d, expected a write lease",
		fcntl(6, F_GETLEASE));
	V_CHECK(fdinfo_has_lease(5, "READ"), "fd 5: fdinfo shows no active read lease of pid %d",
		getpid());
	V_CHECK(fdinfo_has_lease(6, "WRITE"), "fd 6: fdinfo shows no active write lease of pid %d",
		getpid());
	V_CHECK(sigio_count == 0, "%d SIGIO before any conflicting open", (int)sigio_count);
	/* A write lease breaks to a read lease for a reader; a read lease to none for a
	 * writer. */
	break_lease(6, wr_path, O_RDONLY, F_RDLCK, "write lease");
	break_lease(5, rd_path, O_WRONLY, F_UNLCK, "read lease");
	V_CHECK(fcntl(5, F_GETLEASE) == F_UNLCK && fcntl(6, F_GETLEASE) == F_UNLCK,
		"leases left after release: %d %d", fcntl(5, F_GETLEASE), fcntl(6, F_GETLEASE));
	v_finish();
}
