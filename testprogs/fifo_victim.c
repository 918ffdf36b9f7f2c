/*
 * fifo_victim: a named pipe opened three ways (read-write, read-only non-blocking,
 * write-only) with bytes queued in it at dump. After restore: the same access modes and
 * flags, the queued bytes come out once and in order, and the three descriptors are
 * still ends of one FIFO (what is written on one is read on another).
 */
#include "victim.h"

#include <sys/stat.h>

int main(void)
{
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
	v_ready();
	v_wait_go();

	V_CHECK((fcntl(rw, F_GETFL) & O_ACCMODE) == O_RDWR, "rw end: access mode changed");
	V_CHECK((fcntl(rd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDONLY | O_NONBLOCK),
		"read end: flags %#x", fcntl(rd, F_GETFL));
	V_CHECK((fcntl(wr, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == O_WRONLY, "write end: flags %#x",
		fcntl(wr, F_GETFL));
	struct stat after;
	fstat(rd, &after);
	V_CHECK(S_ISFIFO(after.st_mode) && after.st_ino == before.st_ino, "read end is not the same FIFO");
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
