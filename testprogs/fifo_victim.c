/*
 * fifo_victim [unlinked]: a named pipe opened three ways (read-write, read-only
 * non-blocking, write-only) with bytes queued in it at dump. After restore: the same
 * access modes and flags, the queued bytes come out once and in order, and the three
 * descriptors are still ends of one FIFO (what is written on one is read on another).
 * With "unlinked" the path is removed once the ends are open: after restore the ends are
 * still one FIFO with no link, named as before with " (deleted)", and the path is free.
 */
#include "victim.h"

#include <sys/stat.h>

/* The FIFO behind fd is the one behind other: same device and inode. */
static int same_fifo(int fd, int other)
{
	struct stat a, b;
	return fstat(fd, &a) == 0 && fstat(other, &b) == 0 && S_ISFIFO(a.st_mode) &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int main(int argc, char **argv)
{
	int unlinked = argc > 1 && strcmp(argv[1], "unlinked") == 0;
	char path[4200];
	snprintf(path, sizeof path, "%s/test.fifo", v_tmp());
	unlink(path);
	if (mkfifo(path, 0600) != 0)
		v_die("mkfifo: %s", strerror(errno));
	int rw = open(path, O_RDWR);
	int rd = open(path, O_RDONLY | O_NONBLOCK);
	int wr = open(path, O_WRONLY);
	if (rw < 0 || rd < 0 || wr < 0)
		v_die("open fifo: %s", strerror(errno));
	struct stat before;
	fstat(rw, &before);
	const char msg[] = "queued in the fifo at dump";
	if (write(wr, msg, sizeof msg) != (ssize_t)sizeof msg)
		v_die("write: %s", strerror(errno));
	if (unlinked && unlink(path) != 0)
		v_die("unlink %s: %s", path, strerror(errno));
	v_ready();
	v_wait_go();

	V_CHECK((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw end: access mode changed");
	V_CHECK((fcntl(rd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDONLY | O_NONBLOCK),
		"read end: flags %#x", fcntl(rd, F_GETFL));
	V_CHECK((fcntl(wr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_WRONLY, "write end: flags %#x",
		fcntl(wr, F_GETFL));
	struct stat after;
	fstat(rd, &after);
	if (unlinked) {
		/* A new FIFO (the old inode is gone), one for all three ends, with no link. */
		V_CHECK(same_fifo(rd, rw) && same_fifo(wr, rw), "the ends are not one FIFO");
		V_CHECK(after.st_nlink == 0, "the FIFO has %lu links", (unsigned long)after.st_nlink);
		struct stat st;
		V_CHECK(stat(path, &st) != 0 && errno == ENOENT, "%s exists after restore", path);
		char link[64], want[4300], got[4300] = "";
		snprintf(link, sizeof link, "/proc/self/fd/%d", rd);
		snprintf(want, sizeof want, "%s (deleted)", path);
		ssize_t len = readlink(link, got, sizeof got - 1);
		if (len > 0)
			got[len] = 0;
		V_CHECK(strcmp(got, want) == 0, "the read end is %s, not %s", got, want);
	} else {
		V_CHECK(S_ISFIFO(after.st_mode) && after.st_ino == before.st_ino,
			"read end is not the same FIFO");
	}
	char buf[128];
	ssize_t n = read(rd, buf, sizeof buf);
	V_CHECK(n == (ssize_t)sizeof msg && memcmp(buf, msg, sizeof msg) == 0, "queued bytes: read %zd", n);
	n = read(rd, buf, sizeof buf);
	V_CHECK(n < 0 && errno == EAGAIN, "more than was queued came out (%zd)", n);
	V_CHECK(write(wr, "x", 1) == 1, "write after restore: %s", strerror(errno));
	V_CHECK(read(rw, buf, 1) == 1 && buf[0] == 'x', "the ends are not one FIFO any more");
	/* the FIFO stays: a --leave-running image is restored again after this */
	v_finish();
}
