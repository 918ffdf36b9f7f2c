/*
 * mqueue_victim MODE: POSIX message queues, checked from inside after restore.
 *
 * queues: queue A "/stasis-mq-PID" (O_RDWR|O_NONBLOCK, mode 0640, owner 1234:2345,
 *   maxmsg 8, msgsize 64) with five messages of priorities 1 5 5 0 9, and a second,
 *   write-only descriptor of it (another description); queue B "/stasis-mq-PID-gone"
 *   (O_RDONLY, maxmsg 2, msgsize 16) with one message, unlinked while open. After
 *   restore: attributes (mq_getattr, O_NONBLOCK), owner and mode (fstat), the messages in
 *   priority order with their priorities and texts, B's message and that B's name is
 *   gone, a message sent through the write-only descriptor arrives through the first.
 * notify: queue A with an mq_notify registration: the dump must refuse it; the victim then
 *   checks its messages are all still there.
 * fail: queue A with its messages, and an io_uring fd the tool cannot dump: the dump
 *   fails after taking the messages and giving them back; the victim checks they are all
 *   there in the same order.
 *
 * The queues are unlinked at the end.
 */
#include "victim.h"

#include <linux/io_uring.h>
#include <mqueue.h>
#include <signal.h>
#include <sys/syscall.h>

static const struct {
	unsigned prio;
	const char *text;
} msgs[] = {
	{ 1, "one" }, { 5, "five, first" }, { 5, "five, second" }, { 0, "" }, { 9, "nine: the most urgent" },
};
#define NMSGS (sizeof msgs / sizeof msgs[0])
/* The order a reader gets them in: priority, then age. */
static const int order[] = { 4, 1, 2, 0, 3 };

static char name_a[64], name_b[64];

static mqd_t make_a(void)
{
	struct mq_attr at = { 0, 8, 64, 0 };
	snprintf(name_a, sizeof name_a, "/stasis-mq-%d", getpid());
	mq_unlink(name_a);
	mqd_t a = mq_open(name_a, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0640, &at);
	if (a < 0)
		v_die("mq_open A: %s", strerror(errno));
	if (fchown(a, 1234, 2345) < 0)
		v_die("fchown: %s", strerror(errno));
	for (size_t i = 0; i < NMSGS; i++)
		if (mq_send(a, msgs[i].text, strlen(msgs[i].text), msgs[i].prio) < 0)
			v_die("mq_send: %s", strerror(errno));
	return a;
}

static void check_messages(mqd_t a, const char *what)
{
	struct mq_attr at;
	V_CHECK(mq_getattr(a, &at) == 0, "mq_getattr: %s", strerror(errno));
	V_CHECK(at.mq_maxmsg == 8 && at.mq_msgsize == 64, "%s: maxmsg %ld msgsize %ld", what,
		at.mq_maxmsg, at.mq_msgsize);
	V_CHECK(at.mq_curmsgs == NMSGS, "%s: %ld messages, expected %zu", what, at.mq_curmsgs, NMSGS);
	V_CHECK(at.mq_flags & O_NONBLOCK, "%s: O_NONBLOCK lost", what);
	char buf[64];
	for (size_t k = 0; k < NMSGS; k++) {
		unsigned prio = 99;
		ssize_t n = mq_receive(a, buf, sizeof buf, &prio);
		size_t i = order[k];
		if (n < 0) {
			v_fail("%s: message %zu: %s", what, k, strerror(errno));
			return;
		}
		V_CHECK(prio == msgs[i].prio && (size_t)n == strlen(msgs[i].text) &&
				memcmp(buf, msgs[i].text, (size_t)n) == 0,
			"%s: message %zu: priority %u \"%.*s\", expected %u \"%s\"", what, k, prio,
			(int)n, buf, msgs[i].prio, msgs[i].text);
	}
	V_CHECK(mq_receive(a, buf, sizeof buf, NULL) < 0 && errno == EAGAIN, "%s: a message too many",
		what);
}

static int queues_mode(void)
{
	mqd_t a = make_a();
	mqd_t a_w = mq_open(name_a, O_WRONLY);
	struct mq_attr bt = { 0, 2, 16, 0 };
	snprintf(name_b, sizeof name_b, "/stasis-mq-%d-gone", getpid());
	mq_unlink(name_b);
	mqd_t b = mq_open(name_b, O_CREAT | O_EXCL | O_RDONLY, 0600, &bt);
	mqd_t b_w = mq_open(name_b, O_WRONLY);
	if (a_w < 0 || b < 0 || b_w < 0)
		v_die("mq_open: %s", strerror(errno));
	mq_send(b_w, "gone", 4, 3);
	mq_close(b_w);
	mq_unlink(name_b);
	v_print("QUEUES %s %s\n", name_a, name_b);
	v_ready();
	v_wait_go();

	struct stat st;
	V_CHECK(fstat(a, &st) == 0, "fstat: %s", strerror(errno));
	V_CHECK(st.st_uid == 1234 && st.st_gid == 2345, "owner %u:%u", st.st_uid, st.st_gid);
	V_CHECK((st.st_mode & 0777) == 0640, "mode %o", st.st_mode & 0777);
	check_messages(a, "A");
	struct mq_attr at;
	V_CHECK(mq_getattr(b, &at) == 0 && at.mq_maxmsg == 2 && at.mq_msgsize == 16 &&
			at.mq_curmsgs == 1,
		"B: attributes or message count");
	V_CHECK(!(at.mq_flags & O_NONBLOCK), "B: O_NONBLOCK appeared");
	char buf[64];
	unsigned prio = 0;
	ssize_t n = mq_receive(b, buf, sizeof buf, &prio);
	V_CHECK(n == 4 && prio == 3 && memcmp(buf, "gone", 4) == 0, "B: message");
	mqd_t again = mq_open(name_b, O_RDONLY);
	V_CHECK(again < 0 && errno == ENOENT, "B's name exists again");
	V_CHECK(mq_send(a_w, "w", 1, 2) == 0, "send through the write-only descriptor: %s",
		strerror(errno));
	n = mq_receive(a, buf, sizeof buf, &prio);
	V_CHECK(n == 1 && buf[0] == 'w' && prio == 2, "the message sent through the write-only descriptor");
	V_CHECK((fcntl(a_w, F_GETFL) & O_ACCMODE) == O_WRONLY, "the second descriptor is not write-only");
	mq_unlink(name_a);
	v_finish();
}

static void on_usr1(int sig)
{
	(void)sig;
}

static int notify_mode(void)
{
	mqd_t a = make_a();
	/* Notification fires only on an empty queue: take them all, register, put back. */
	char buf[64];
	while (mq_receive(a, buf, sizeof buf, NULL) >= 0)
		;
	signal(SIGUSR1, on_usr1);
	struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR1 };
	if (mq_notify(a, &ev) < 0)
		v_die("mq_notify: %s", strerror(errno));
	v_ready();
	v_wait_go();
	/* Still registered: the queue was not touched by the refused dump. */
	V_CHECK(mq_notify(a, &ev) < 0 && errno == EBUSY, "the notification is gone");
	for (size_t i = 0; i < NMSGS; i++)
		mq_send(a, msgs[i].text, strlen(msgs[i].text), msgs[i].prio);
	check_messages(a, "after the refused dump");
	mq_unlink(name_a);
	v_finish();
}

static int fail_mode(void)
{
	mqd_t a = make_a();
	struct io_uring_params p;
	memset(&p, 0, sizeof p);
	int ring = (int)syscall(__NR_io_uring_setup, 4, &p);
	if (ring < 0)
		v_die("io_uring_setup: %s", strerror(errno));
	if (dup2(ring, 30) < 0)
		v_die("dup2");
	close(ring);
	v_ready();
	v_wait_go();
	check_messages(a, "after the failed dump");
	mq_unlink(name_a);
	v_finish();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "queues"))
		return queues_mode();
	if (!strcmp(mode, "notify"))
		return notify_mode();
	if (!strcmp(mode, "fail"))
		return fail_mode();
	v_die("usage: mqueue_victim queues|notify|fail");
}
