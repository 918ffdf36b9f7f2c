/*
 * ipc_pty: a program driven through a pseudo-terminal by another process of the tree.
 *
 * The parent opens a pty master and sets the window size (33 rows, 101 columns). The
 * child makes a new session, takes the slave as its controlling terminal (TIOCSCTTY)
 * and puts it in raw-ish mode (no ICANON, no ECHO, VMIN 1, output processing with
 * ONLCR kept). It forks a grandchild in a process group of its own and makes that group
 * the terminal's foreground. At READY, bytes are queued both ways: the child wrote
 * "out\nqueued" (the master has "out\r\nqueued" to read) and the parent wrote
 * "IN-QUEUED" (the slave has it to read); nobody has read them.
 *
 * After the go file: the parent reads exactly "out\r\nqueued" (no second \r: output
 * processing is not applied twice); the child checks its settings, the window size, that
 * the terminal is its controlling terminal (tcgetsid, tty_nr in /proc/self/stat) with
 * the grandchild's group in the foreground (which the grandchild checks too), takes the
 * foreground back, reads exactly "IN-QUEUED", then answers "ping" with
 * "pong <ttyname>"; the parent checks
 * that the name is its master's slave (ptsname). The child also holds /dev/tty (opened
 * O_NONBLOCK once the slave is its controlling terminal, and shared with the
 * grandchild): after restore it is still /dev/tty (link text, device 5,0, flags), stands
 * for the new slave (TIOCGDEV), shows the same foreground group, and the "pong" answer
 * is written through it. A restore makes a new pty, with the
 * same index if it is free then (else another, e.g. after dump --leave-running, when the
 * original still holds it): the victim checks that the pair is consistent, and prints
 * "pty-before:"/"pty-after:" lines.
 *
 * With "canonical", the slave stays in canonical mode and the queued input is a whole
 * line and a line being typed ("IN-QUEUED\npart"): after restore the child reads the
 * whole line, and nothing more (the line being typed is not complete, so not readable),
 * then "partping\n" once the parent has written "ping\n".
 */
#include "victim.h"

#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>

static int canonical;

static int wait_in(int fd, int ms)
{
	struct pollfd p = { fd, POLLIN, 0 };
	int r;
	do
		r = poll(&p, 1, ms);
	while (r < 0 && errno == EINTR);
	return r == 1;
}

/* Reads exactly n bytes (waiting up to 5 s) and compares; then, if asked, nothing more
 * within 20 ms. */
static void expect(int fd, const char *want, size_t n, const char *who, int nothing_after)
{
	char buf[256];
	size_t have = 0;
	while (have < n && wait_in(fd, 5000)) {
		ssize_t r = read(fd, buf + have, n - have);
		if (r <= 0)
			break;
		have += (size_t)r;
	}
	V_CHECK(have == n && memcmp(buf, want, n) == 0, "%s: read %zu bytes, expected %zu (%.*s)", who, have, n,
		(int)have, buf);
	ssize_t r;
	/* (a hang-up, once the other side is gone, reads as EIO: not data) */
	if (nothing_after && wait_in(fd, 20) && (r = read(fd, buf, sizeof(buf))) > 0) {
		v_fail("%s: %zd more bytes after the expected ones (%.*s)", who, r, (int)r, buf);
	}
}

static long tty_nr_of_self(void)
{
	char text[1024];
	if (v_read_file("/proc/self/stat", text, sizeof(text)) < 0)
		return -1;
	char *p = strrchr(text, ')');
	long nr = -1;
	/* state ppid pgrp session tty_nr */
	if (!p || sscanf(p + 2, "%*c %*d %*d %*d %ld", &nr) != 1)
		return -1;
	return nr;
}

static void grandchild_main(int s)
{
	v_wait_go();
	V_CHECK(tcgetpgrp(s) == getpgrp(), "grandchild: foreground group %d, expected ours %d", (int)tcgetpgrp(s),
		(int)getpgrp());
	_exit(v_failures ? 1 : 0);
}

static void child_main(const char *slave_path)
{
	if (setsid() < 0)
		v_die("setsid: %s", strerror(errno));
	int s = open(slave_path, O_RDWR | O_NOCTTY);
	if (s < 0 || ioctl(s, TIOCSCTTY, 0) != 0)
		v_die("child: slave %s as controlling terminal: %s", slave_path, strerror(errno));
	int tty = open("/dev/tty", O_RDWR | O_NONBLOCK);
	if (tty < 0)
		v_die("child: open /dev/tty: %s", strerror(errno));
	struct termios t;
	if (tcgetattr(s, &t) != 0)
		v_die("tcgetattr: %s", strerror(errno));
	t.c_lflag &= ~(tcflag_t)(canonical ? ECHO : (ICANON | ECHO));
	t.c_oflag |= OPOST | ONLCR;
	t.c_cc[VMIN] = 1;
	t.c_cc[VTIME] = 0;
	if (tcsetattr(s, TCSANOW, &t) != 0)
		v_die("tcsetattr: %s", strerror(errno));
	struct termios set = t;
	/* the grandchild's group in the foreground (SIGTTOU would stop us: ignore it) */
	signal(SIGTTOU, SIG_IGN);
	int sync[2];
	if (pipe(sync) != 0)
		v_die("pipe: %s", strerror(errno));
	pid_t g = fork();
	if (g < 0)
		v_die("fork: %s", strerror(errno));
	if (g == 0) {
		close(sync[0]);
		setpgid(0, 0);
		close(sync[1]);
		grandchild_main(s);
	}
	setpgid(g, g);
	close(sync[1]);
	char b;
	(void)!read(sync[0], &b, 1); /* EOF once the grandchild made its group */
	close(sync[0]);
	if (tcsetpgrp(s, g) != 0)
		v_die("tcsetpgrp: %s", strerror(errno));
	v_write_all(s, "out\nqueued", 10);

	v_wait_go();

	struct termios now;
	V_CHECK(tcgetattr(s, &now) == 0 && now.c_lflag == set.c_lflag && now.c_oflag == set.c_oflag &&
			now.c_iflag == set.c_iflag && now.c_cflag == set.c_cflag &&
			memcmp(now.c_cc, set.c_cc, sizeof(set.c_cc)) == 0,
		"child: terminal settings changed (lflag %#x oflag %#x, expected %#x %#x)", now.c_lflag, now.c_oflag,
		set.c_lflag, set.c_oflag);
	struct winsize ws;
	V_CHECK(ioctl(s, TIOCGWINSZ, &ws) == 0 && ws.ws_row == 33 && ws.ws_col == 101,
		"child: window size %ux%u, expected 101x33", ws.ws_col, ws.ws_row);
	V_CHECK(tcgetsid(s) == getpid(), "child: the terminal's session is %d, expected ours %d", (int)tcgetsid(s),
		(int)getpid());
	struct stat st;
	V_CHECK(fstat(s, &st) == 0 && tty_nr_of_self() == (long)st.st_rdev,
		"child: controlling terminal %ld in /proc/self/stat, the slave is %ld", tty_nr_of_self(),
		(long)st.st_rdev);
	V_CHECK(tcgetpgrp(s) == g, "child: foreground group %d, expected the grandchild's %d", (int)tcgetpgrp(s),
		(int)g);
	char link[64], target[64] = "";
	snprintf(link, sizeof link, "/proc/self/fd/%d", tty);
	ssize_t len = readlink(link, target, sizeof target - 1);
	if (len > 0)
		target[len] = 0;
	struct stat tst;
	unsigned int real = 0;
	V_CHECK(strcmp(target, "/dev/tty") == 0, "child: the /dev/tty fd is %s", target);
	V_CHECK(fstat(tty, &tst) == 0 && tst.st_rdev == makedev(5, 0), "child: the /dev/tty fd is device %#lx",
		(unsigned long)tst.st_rdev);
	V_CHECK((fcntl(tty, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDWR | O_NONBLOCK),
		"child: /dev/tty flags %#x", fcntl(tty, F_GETFL));
	V_CHECK(ioctl(tty, TIOCGDEV, &real) == 0 && makedev((real >> 8) & 0xfff, (real & 0xff) | ((real >> 12) & 0xfff00)) == st.st_rdev,
		"child: /dev/tty stands for device %#x, not the slave %#lx", real, (unsigned long)st.st_rdev);
	V_CHECK(tcgetpgrp(tty) == g, "child: foreground group through /dev/tty %d, expected %d", (int)tcgetpgrp(tty),
		(int)g);
	int status = -1;
	V_CHECK(waitpid(g, &status, 0) == g && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"grandchild ended with 0x%x", status);
	/* back in the foreground to read (a background read would stop us) */
	V_CHECK(tcsetpgrp(s, getpgrp()) == 0, "child: tcsetpgrp: %s", strerror(errno));
	if (canonical) {
		expect(s, "IN-QUEUED\n", 10, "child: the queued whole line", 1);
		kill(getppid(), SIGUSR1); /* checked: the parent may finish the line now */
		expect(s, "partping\n", 9, "child: the line being typed, finished after go", 1);
	} else {
		expect(s, "IN-QUEUED", 9, "child: queued input", 0);
		expect(s, "ping", 4, "child: live input", 1);
	}
	char line[128];
	int n = snprintf(line, sizeof(line), "pong %s", ttyname(s) ? ttyname(s) : "?");
	v_write_all(tty, line, (size_t)n);
	_exit(v_failures ? 1 : 0);
}

int main(int argc, char **argv)
{
	canonical = argc > 1 && strcmp(argv[1], "canonical") == 0;
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0)
		v_die("posix_openpt: %s", strerror(errno));
	struct winsize ws = { .ws_row = 33, .ws_col = 101 };
	if (ioctl(m, TIOCSWINSZ, &ws) != 0)
		v_die("TIOCSWINSZ: %s", strerror(errno));
	char slave[64];
	snprintf(slave, sizeof(slave), "%s", ptsname(m));
	v_print("pty-before: %s\n", slave);
	pid_t c = fork();
	if (c < 0)
		v_die("fork: %s", strerror(errno));
	if (c == 0) {
		close(m);
		child_main(slave);
	}
	/* the child's output arrives once its settings are made */
	if (!wait_in(m, 5000))
		v_die("no output from the child");
	v_sleep_ms(50);
	if (canonical)
		v_write_all(m, "IN-QUEUED\npart", 14);
	else
		v_write_all(m, "IN-QUEUED", 9);
	v_sleep_ms(100);

	v_ready();
	v_wait_go();

	char now[64];
	snprintf(now, sizeof(now), "%s", ptsname(m) ? ptsname(m) : "?");
	v_print("pty-after: %s\n", now);
	expect(m, "out\r\nqueued", 11, "parent: queued output", 1);
	if (canonical) {
		/* only once the child has seen that the line being typed is not readable */
		sigset_t usr1;
		sigemptyset(&usr1);
		sigaddset(&usr1, SIGUSR1);
		struct timespec limit = { 10, 0 };
		V_CHECK(sigtimedwait(&usr1, NULL, &limit) == SIGUSR1, "parent: no word from the child");
		v_write_all(m, "ping\n", 5);
	} else
		v_write_all(m, "ping", 4);
	char want[128];
	int n = snprintf(want, sizeof(want), "pong %s", now);
	expect(m, want, (size_t)n, "parent: answer", 1);
	int status = -1;
	V_CHECK(waitpid(c, &status, 0) == c && WIFEXITED(status) && WEXITSTATUS(status) == 0,
		"child ended with 0x%x", status);
	v_finish();
}
