/*
 * ipcns_victim MODE: a process in an IPC namespace of its own (it unshares CLONE_NEWIPC
 * itself, as root), with System V objects and a POSIX message queue in it. Prints
 * "KEYS shm=K msg=K sem=K MQ /name" before READY so that the tests can check that the
 * host's namespace never gets them.
 *
 * ns: (a session leader) in the new namespace, with chosen ids (the *_next_id files): segment A (key, id 77,
 *   3 pages, mode 0640, owner 1234:2345) filled and attached read-write; segment B
 *   (private, 1 page) filled and attached by nobody; queue Q (key, id 4242, mode 0620,
 *   owner 1234:2345, msg_qbytes 3000) with three messages; queue E (private) made by a
 *   helper child that sent one message and exited (no process of the tree used it); a
 *   semaphore set S (key, id 3, 2 semaphores, mode 0660) with values 5 and 9; a POSIX queue
 *   (mode 0640, maxmsg 4, msgsize 32) with two messages. A child shares A (fork) and waits.
 *   After restore: the namespace is not the one the process started in (the tests check
 *   from outside that it is not theirs either), every
 *   object is there with its id, key, owner, mode and contents (and no other object is),
 *   the child's write to A and its message to Q arrive, the POSIX queue holds its messages.
 * mq-unheld: in a namespace of its own, POSIX queues whose descriptors it closed (they stay,
 *   and the dump must take them) and one it keeps open (see mq_unheld_mode).
 * mq-notify: such a queue with a notification registered (the dump must refuse it; see
 *   mq_notify_mode).
 * mq-clash: such a queue under the name of a queue it holds from the host's namespace (the
 *   dump must refuse it; see mq_clash_mode).
 * split: the process stays in its namespace and its child unshares one of its own (the
 *   dump must refuse the tree).
 */
#include "victim.h"

#include <mqueue.h>
#include <sched.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PG 4096

struct msg {
	long mtype;
	char text[256];
};

static const struct {
	long type;
	const char *text;
} msgs[] = { { 2, "two" }, { 1, "one" }, { 5, "five: the longest of the three" } };
#define NMSGS (sizeof msgs / sizeof msgs[0])

static unsigned char pattern(int seg, size_t off)
{
	return (unsigned char)(seg * 13 + off * 5 + off / PG);
}

static key_t unique_key(int kind)
{
	return (key_t)(0x5b000000 | (kind << 20) | (getpid() & 0xfffff));
}

static void ns_of(const char *path, char *out, size_t size)
{
	ssize_t n = readlink(path, out, size - 1);
	out[n < 0 ? 0 : n] = 0;
}

static void next_id(const char *kind, int id)
{
	char path[64], text[16];
	snprintf(path, sizeof path, "/proc/sys/kernel/%s_next_id", kind);
	int fd = open(path, O_WRONLY);
	int n = snprintf(text, sizeof text, "%d", id);
	if (fd < 0 || write(fd, text, (size_t)n) != n)
		v_die("%s: %s", path, strerror(errno));
	close(fd);
}

/* Lines of /proc/sysvipc/NAME, less the header: the objects of this namespace. */
static int count_objects(const char *name)
{
	char path[64];
	static char buf[16384];
	snprintf(path, sizeof path, "/proc/sysvipc/%s", name);
	ssize_t n = v_read_file(path, buf, sizeof buf);
	int lines = 0;
	for (ssize_t i = 0; i < n; i++)
		lines += buf[i] == '\n';
	return lines - 1;
}

static int split_mode(void)
{
	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		if (unshare(CLONE_NEWIPC) < 0)
			_exit(2);
		v_wait_go();
		_exit(0);
	}
	v_sleep_ms(50);
	v_ready();
	v_wait_go();
	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) &&
			WEXITSTATUS(status) == 0,
		"child status %#x", status);
	v_finish();
}

static int ns_mode(void)
{
	char host_ns[128], own_ns[128];
	/* Its own session: a copy restored into a new PID namespace has its group leader. */
	if (setsid() < 0)
		v_die("setsid: %s", strerror(errno));
	ns_of("/proc/self/ns/ipc", host_ns, sizeof host_ns);
	if (unshare(CLONE_NEWIPC) < 0)
		v_die("unshare(CLONE_NEWIPC): %s", strerror(errno));
	ns_of("/proc/self/ns/ipc", own_ns, sizeof own_ns);
	if (!strcmp(host_ns, own_ns))
		v_die("unshare left the IPC namespace as it was (%s)", own_ns);

	size_t size_a = 3 * PG;
	next_id("shm", 77);
	int a = shmget(unique_key(1), size_a, IPC_CREAT | IPC_EXCL | 0640);
	int b = shmget(IPC_PRIVATE, PG, IPC_CREAT | 0600);
	if (a != 77 || b < 0)
		v_die("shmget: A %d, B %d: %s", a, b, strerror(errno));
	struct shmid_ds ds;
	shmctl(a, IPC_STAT, &ds);
	ds.shm_perm.uid = 1234;
	ds.shm_perm.gid = 2345;
	if (shmctl(a, IPC_SET, &ds) < 0)
		v_die("IPC_SET A: %s", strerror(errno));
	unsigned char *pa = shmat(a, NULL, 0);
	unsigned char *pb = shmat(b, NULL, 0);
	if (pa == (void *)-1 || pb == (void *)-1)
		v_die("shmat: %s", strerror(errno));
	for (size_t i = 0; i < size_a; i++)
		pa[i] = pattern(1, i);
	for (size_t i = 0; i < PG; i++)
		pb[i] = pattern(2, i);
	shmdt(pb);

	next_id("msg", 4242);
	int q = msgget(unique_key(2), IPC_CREAT | IPC_EXCL | 0620);
	if (q != 4242)
		v_die("msgget Q: %d: %s", q, strerror(errno));
	struct msqid_ds mds;
	msgctl(q, IPC_STAT, &mds);
	mds.msg_perm.uid = 1234;
	mds.msg_perm.gid = 2345;
	mds.msg_qbytes = 3000;
	if (msgctl(q, IPC_SET, &mds) < 0)
		v_die("IPC_SET Q: %s", strerror(errno));
	static struct msg m;
	for (size_t i = 0; i < NMSGS; i++) {
		m.mtype = msgs[i].type;
		size_t len = strlen(msgs[i].text);
		memcpy(m.text, msgs[i].text, len);
		if (msgsnd(q, &m, len, IPC_NOWAIT) < 0)
			v_die("msgsnd: %s", strerror(errno));
	}
	/* E is made and used only by a helper that is gone before the dump. */
	int pipefd[2];
	if (pipe(pipefd) < 0)
		v_die("pipe: %s", strerror(errno));
	pid_t helper = fork();
	if (helper == 0) {
		int e = msgget(IPC_PRIVATE, IPC_CREAT | 0600);
		m.mtype = 8;
		memcpy(m.text, "from the helper", 15);
		if (e < 0 || msgsnd(e, &m, 15, IPC_NOWAIT) < 0)
			_exit(1);
		(void)!write(pipefd[1], &e, sizeof e);
		_exit(0);
	}
	int e = -1;
	if (helper < 0 || read(pipefd[0], &e, sizeof e) != sizeof e)
		v_die("the helper made no queue");
	waitpid(helper, NULL, 0);
	close(pipefd[0]);
	close(pipefd[1]);

	next_id("sem", 3);
	int s = semget(unique_key(3), 2, IPC_CREAT | IPC_EXCL | 0660);
	if (s != 3)
		v_die("semget: %d: %s", s, strerror(errno));
	unsigned short vals[2] = { 5, 9 };
	if (semctl(s, 0, SETALL, vals) < 0)
		v_die("SETALL: %s", strerror(errno));

	char mq_name[64];
	snprintf(mq_name, sizeof mq_name, "/ipcns_victim_%d", getpid());
	struct mq_attr at = { .mq_maxmsg = 4, .mq_msgsize = 32 };
	mqd_t mq = mq_open(mq_name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0640, &at);
	if (mq == (mqd_t)-1)
		v_die("mq_open: %s", strerror(errno));
	if (mq_send(mq, "low", 3, 1) < 0 || mq_send(mq, "high", 4, 3) < 0)
		v_die("mq_send: %s", strerror(errno));

	pid_t child = fork();
	if (child < 0)
		v_die("fork: %s", strerror(errno));
	if (child == 0) {
		v_wait_go();
		int ok = pa[PG + 1] == pattern(1, PG + 1);
		pa[2 * PG + 9] = 0x77;
		m.mtype = 9;
		memcpy(m.text, "child", 5);
		if (msgsnd(q, &m, 5, IPC_NOWAIT) < 0)
			ok = 0;
		_exit(ok ? 0 : 3);
	}
	v_print("KEYS shm=%d msg=%d sem=%d MQ %s\n", unique_key(1), unique_key(2), unique_key(3),
		mq_name);
	v_ready();
	v_wait_go();

	char now_ns[128];
	ns_of("/proc/self/ns/ipc", now_ns, sizeof now_ns);
	V_CHECK(strcmp(now_ns, host_ns) != 0, "in the IPC namespace the process started in (%s)",
		now_ns);
	V_CHECK(count_objects("shm") == 2, "%d shm segments in the namespace, expected 2",
		count_objects("shm"));
	V_CHECK(count_objects("msg") == 2, "%d message queues in the namespace, expected 2",
		count_objects("msg"));
	V_CHECK(count_objects("sem") == 1, "%d semaphore sets in the namespace, expected 1",
		count_objects("sem"));

	int status = 0;
	V_CHECK(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
	V_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed (status %#x)",
		status);

	struct shmid_ds sa, sb;
	V_CHECK(shmctl(a, IPC_STAT, &sa) == 0, "IPC_STAT A (77): %s", strerror(errno));
	V_CHECK(sa.shm_segsz == size_a && sa.shm_perm.__key == unique_key(1) &&
			sa.shm_perm.uid == 1234 && sa.shm_perm.gid == 2345 &&
			(sa.shm_perm.mode & 0777) == 0640,
		"A: size %zu key %#x owner %u:%u mode %o", sa.shm_segsz, sa.shm_perm.__key,
		sa.shm_perm.uid, sa.shm_perm.gid, sa.shm_perm.mode & 0777);
	V_CHECK(sa.shm_nattch == 1, "A nattch %lu, expected 1", sa.shm_nattch);
	size_t bad = 0;
	for (size_t i = 0; i < size_a; i++)
		bad += i != 2 * PG + 9 && pa[i] != pattern(1, i);
	V_CHECK(bad == 0, "A: %zu bytes differ", bad);
	V_CHECK(pa[2 * PG + 9] == 0x77, "the child's write to A did not arrive");
	V_CHECK(shmctl(b, IPC_STAT, &sb) == 0, "IPC_STAT B (%d): %s", b, strerror(errno));
	pb = shmat(b, NULL, SHM_RDONLY);
	V_CHECK(pb != (void *)-1, "shmat B: %s", strerror(errno));
	if (pb != (void *)-1) {
		bad = 0;
		for (size_t i = 0; i < PG; i++)
			bad += pb[i] != pattern(2, i);
		V_CHECK(bad == 0, "B: %zu bytes differ", bad);
		shmdt(pb);
	}

	struct msqid_ds st;
	V_CHECK(msgctl(q, IPC_STAT, &st) == 0, "IPC_STAT Q (4242): %s", strerror(errno));
	V_CHECK(st.msg_perm.__key == unique_key(2) && st.msg_perm.uid == 1234 &&
			st.msg_perm.gid == 2345 && (st.msg_perm.mode & 0777) == 0620 &&
			st.msg_qbytes == 3000,
		"Q: key %#x owner %u:%u mode %o qbytes %lu", st.msg_perm.__key, st.msg_perm.uid,
		st.msg_perm.gid, st.msg_perm.mode & 0777, st.msg_qbytes);
	for (size_t i = 0; i <= NMSGS; i++) {
		long type = i < NMSGS ? msgs[i].type : 9;
		const char *text = i < NMSGS ? msgs[i].text : "child";
		ssize_t n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT);
		V_CHECK(n == (ssize_t)strlen(text) && m.mtype == type && !memcmp(m.text, text, (size_t)n),
			"Q message %zu: %zd bytes type %ld, expected type %ld \"%s\"", i, n, m.mtype,
			type, text);
	}
	ssize_t n = msgrcv(e, &m, sizeof m.text, 0, IPC_NOWAIT);
	V_CHECK(n == 15 && m.mtype == 8 && !memcmp(m.text, "from the helper", 15),
		"E (%d): %zd bytes type %ld (%s)", e, n, m.mtype, n < 0 ? strerror(errno) : "");

	struct semid_ds sem;
	union {
		struct semid_ds *buf;
		unsigned short *array;
	} arg = { .buf = &sem };
	V_CHECK(semctl(s, 0, IPC_STAT, arg) == 0, "IPC_STAT S (3): %s", strerror(errno));
	V_CHECK(sem.sem_perm.__key == unique_key(3) && (sem.sem_perm.mode & 0777) == 0660 &&
			sem.sem_nsems == 2,
		"S: key %#x mode %o nsems %lu", sem.sem_perm.__key, sem.sem_perm.mode & 0777,
		sem.sem_nsems);
	unsigned short got[2] = { 0, 0 };
	arg.array = got;
	V_CHECK(semctl(s, 0, GETALL, arg) == 0 && got[0] == 5 && got[1] == 9,
		"S values %u %u, expected 5 9", got[0], got[1]);

	struct mq_attr now;
	V_CHECK(mq_getattr(mq, &now) == 0 && now.mq_curmsgs == 2 && now.mq_maxmsg == 4,
		"POSIX queue: %ld messages, maxmsg %ld", now.mq_curmsgs, now.mq_maxmsg);
	char text[32];
	unsigned prio = 0;
	n = mq_receive(mq, text, sizeof text, &prio);
	V_CHECK(n == 4 && prio == 3 && !memcmp(text, "high", 4), "POSIX queue: first %zd prio %u",
		n, prio);
	n = mq_receive(mq, text, sizeof text, &prio);
	V_CHECK(n == 3 && prio == 1 && !memcmp(text, "low", 3), "POSIX queue: second %zd prio %u",
		n, prio);
	mq_unlink(mq_name);
	v_finish();
}

static const struct {
	unsigned prio;
	const char *text;
} unheld_sent[] = { { 2, "two, first" }, { 7, "seven, first" }, { 2, "two, second" },
		    { 0, "zero" }, { 7, "seven, second: the longest message" } };
/* The order a queue gives them: highest priority first, oldest first within one. */
static const int unheld_order[] = { 1, 4, 0, 2, 3 };
#define N_UNHELD (sizeof unheld_sent / sizeof unheld_sent[0])

/* Whether a descriptor of this process names the queue "/NAME". */
static int holds_queue(const char *name)
{
	char path[64], link[256];
	for (int fd = 0; fd < 1024; fd++) {
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, link, sizeof link - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		if (!strcmp(link, name))
			return 1;
	}
	return 0;
}

static void check_queue(const char *name, long maxmsg, long msgsize, long curmsgs, mode_t mode,
			uid_t uid, gid_t gid)
{
	V_CHECK(!holds_queue(name), "%s: a descriptor of the process holds it", name);
	mqd_t mq = mq_open(name, O_RDONLY | O_NONBLOCK);
	V_CHECK(mq != (mqd_t)-1, "%s is gone: %s", name, strerror(errno));
	if (mq == (mqd_t)-1)
		return;
	struct mq_attr at;
	struct stat st;
	V_CHECK(mq_getattr(mq, &at) == 0 && at.mq_maxmsg == maxmsg && at.mq_msgsize == msgsize &&
			at.mq_curmsgs == curmsgs,
		"%s: maxmsg %ld msgsize %ld curmsgs %ld, expected %ld %ld %ld", name, at.mq_maxmsg,
		at.mq_msgsize, at.mq_curmsgs, maxmsg, msgsize, curmsgs);
	V_CHECK(fstat(mq, &st) == 0 && (st.st_mode & 07777) == mode && st.st_uid == uid &&
			st.st_gid == gid,
		"%s: mode %o owner %u:%u, expected %o %u:%u", name, st.st_mode & 07777, st.st_uid,
		st.st_gid, mode, uid, gid);
	mq_close(mq);
}

/*
 * mq-unheld: in a namespace of its own, queue A (maxmsg 6, msgsize 48, mode 0620, owner
 * 1234:2345) with five messages of priorities 2 7 2 0 7 and queue E (empty, maxmsg 1,
 * msgsize 8, mode 0600) whose descriptors it closed, and queue H which it keeps open with
 * one message. After the go file no descriptor holds A or E, both are there with their
 * attributes, owner and mode, A gives its messages in priority order, H its message.
 */
static int mq_unheld_mode(void)
{
	if (unshare(CLONE_NEWIPC) < 0)
		v_die("unshare(CLONE_NEWIPC): %s", strerror(errno));
	struct mq_attr at = { .mq_maxmsg = 6, .mq_msgsize = 48 };
	mqd_t a = mq_open("/ipcns_unheld_a", O_CREAT | O_EXCL | O_WRONLY | O_NONBLOCK, 0620, &at);
	if (a == (mqd_t)-1)
		v_die("mq_open A: %s", strerror(errno));
	for (size_t i = 0; i < N_UNHELD; i++)
		if (mq_send(a, unheld_sent[i].text, strlen(unheld_sent[i].text),
			    unheld_sent[i].prio) < 0)
			v_die("mq_send A: %s", strerror(errno));
	if (fchown(a, 1234, 2345) < 0 || fchmod(a, 0620) < 0)
		v_die("owner of A: %s", strerror(errno));
	mq_close(a);
	struct mq_attr small = { .mq_maxmsg = 1, .mq_msgsize = 8 };
	mqd_t e = mq_open("/ipcns_unheld_e", O_CREAT | O_EXCL | O_RDWR, 0600, &small);
	if (e == (mqd_t)-1)
		v_die("mq_open E: %s", strerror(errno));
	mq_close(e);
	struct mq_attr held_at = { .mq_maxmsg = 2, .mq_msgsize = 16 };
	mqd_t h = mq_open("/ipcns_held", O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &held_at);
	if (h == (mqd_t)-1 || mq_send(h, "held", 4, 3) < 0)
		v_die("mq_open/mq_send H: %s", strerror(errno));
	v_ready();
	v_wait_go();

	check_queue("/ipcns_unheld_a", 6, 48, N_UNHELD, 0620, 1234, 2345);
	check_queue("/ipcns_unheld_e", 1, 8, 0, 0600, 0, 0);
	a = mq_open("/ipcns_unheld_a", O_RDONLY | O_NONBLOCK);
	char text[48];
	unsigned prio = 0;
	for (size_t i = 0; a != (mqd_t)-1 && i < N_UNHELD; i++) {
		int want = unheld_order[i];
		const char *wtext = unheld_sent[want].text;
		ssize_t n = mq_receive(a, text, sizeof text, &prio);
		V_CHECK(n == (ssize_t)strlen(wtext) && prio == unheld_sent[want].prio &&
				!memcmp(text, wtext, (size_t)n),
			"A message %zu: %zd bytes prio %u, expected prio %u \"%s\"", i, n, prio,
			unheld_sent[want].prio, wtext);
	}
	V_CHECK(a != (mqd_t)-1 && mq_receive(a, text, sizeof text, &prio) < 0 && errno == EAGAIN,
		"A holds more messages than were sent");
	ssize_t n = mq_receive(h, text, 16, &prio);
	V_CHECK(n == 4 && prio == 3 && !memcmp(text, "held", 4), "H: %zd bytes prio %u", n, prio);
	v_finish();
}

/* Registers a notification (SIGEV_NONE) on the queue of descriptor *arg, then exits. */
static int register_notify(void *arg)
{
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_NONE;
	return mq_notify(*(mqd_t *)arg, &sev) < 0;
}

/*
 * mq-notify: in a namespace of its own, queue N (two messages) with a notification that a
 * child sharing its descriptor table (CLONE_FILES) registered before it exited; the process
 * then closes N (the registration is its dead owner's: it stays). The dump must refuse it;
 * after the go file N holds both messages in order and is still registered (EBUSY).
 */
static int mq_notify_mode(void)
{
	static char stack[64 * 1024];
	if (unshare(CLONE_NEWIPC) < 0)
		v_die("unshare(CLONE_NEWIPC): %s", strerror(errno));
	struct mq_attr at = { .mq_maxmsg = 4, .mq_msgsize = 16 };
	mqd_t n = mq_open("/ipcns_notify", O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &at);
	if (n == (mqd_t)-1 || mq_send(n, "low", 3, 1) < 0 || mq_send(n, "high", 4, 6) < 0)
		v_die("mq_open/mq_send N: %s", strerror(errno));
	pid_t child = clone(register_notify, stack + sizeof stack, CLONE_FILES | SIGCHLD, &n);
	int status = 0;
	if (child < 0 || waitpid(child, &status, 0) != child || status != 0)
		v_die("the child registered no notification (status %#x)", status);
	mq_close(n);
	v_ready();
	v_wait_go();
	n = mq_open("/ipcns_notify", O_RDONLY | O_NONBLOCK);
	V_CHECK(n != (mqd_t)-1, "N is gone: %s", strerror(errno));
	if (n == (mqd_t)-1)
		v_finish();
	struct sigevent sev;
	memset(&sev, 0, sizeof sev);
	sev.sigev_notify = SIGEV_NONE;
	V_CHECK(mq_notify(n, &sev) < 0 && errno == EBUSY,
		"N lost its notification registration (mq_notify: %s)", strerror(errno));
	char text[16];
	unsigned prio = 0;
	ssize_t got = mq_receive(n, text, sizeof text, &prio);
	V_CHECK(got == 4 && prio == 6 && !memcmp(text, "high", 4), "N first: %zd bytes prio %u",
		got, prio);
	got = mq_receive(n, text, sizeof text, &prio);
	V_CHECK(got == 3 && prio == 1 && !memcmp(text, "low", 3), "N second: %zd bytes prio %u",
		got, prio);
	V_CHECK(mq_receive(n, text, sizeof text, &prio) < 0 && errno == EAGAIN,
		"N holds more than its two messages");
	v_finish();
}

/*
 * mq-clash: holds queue /ipcns_clash_PID of the namespace it started in (unlinked there at
 * once, so the host keeps nothing), then in a namespace of its own makes another queue of
 * that name and closes it. The dump must refuse (restore would make both by name in one
 * namespace); after the go file both queues are as they were.
 */
static int mq_clash_mode(void)
{
	char name[64];
	snprintf(name, sizeof name, "/ipcns_clash_%d", getpid());
	struct mq_attr at = { .mq_maxmsg = 2, .mq_msgsize = 16 };
	mqd_t outer = mq_open(name, O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK, 0600, &at);
	if (outer == (mqd_t)-1 || mq_unlink(name) < 0 || mq_send(outer, "outer", 5, 1) < 0)
		v_die("the outer queue %s: %s", name, strerror(errno));
	if (unshare(CLONE_NEWIPC) < 0)
		v_die("unshare(CLONE_NEWIPC): %s", strerror(errno));
	mqd_t inner = mq_open(name, O_CREAT | O_EXCL | O_RDWR, 0600, &at);
	if (inner == (mqd_t)-1 || mq_send(inner, "inner", 5, 2) < 0)
		v_die("the inner queue %s: %s", name, strerror(errno));
	mq_close(inner);
	v_print("QUEUE %s\n", name);
	v_ready();
	v_wait_go();
	char text[16];
	unsigned prio = 0;
	ssize_t n = mq_receive(outer, text, sizeof text, &prio);
	V_CHECK(n == 5 && prio == 1 && !memcmp(text, "outer", 5), "outer queue: %zd bytes prio %u",
		n, prio);
	inner = mq_open(name, O_RDONLY | O_NONBLOCK);
	V_CHECK(inner != (mqd_t)-1, "the inner queue is gone: %s", strerror(errno));
	n = inner == (mqd_t)-1 ? -1 : mq_receive(inner, text, sizeof text, &prio);
	V_CHECK(n == 5 && prio == 2 && !memcmp(text, "inner", 5), "inner queue: %zd bytes prio %u",
		n, prio);
	v_finish();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	if (!strcmp(mode, "ns"))
		return ns_mode();
	if (!strcmp(mode, "split"))
		return split_mode();
	if (!strcmp(mode, "mq-unheld"))
		return mq_unheld_mode();
	if (!strcmp(mode, "mq-notify"))
		return mq_notify_mode();
	if (!strcmp(mode, "mq-clash"))
		return mq_clash_mode();
	v_die("usage: ipcns_victim ns|mq-unheld|mq-notify|mq-clash|split");
}
