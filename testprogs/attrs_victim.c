/*
 * attrs_victim: task attributes survive dump, kill and restore.
 *
 * Sets comm, cwd, umask, rlimits, personality, uid/gid/groups, capability sets (effective,
 * permitted, inheritable, bounding, ambient, securebits), signal dispositions for every
 * signal (handler, flags, mask, restorer), the blocked mask, sigaltstack, no_new_privs,
 * dumpable, parent-death signal, child-subreaper, scheduling policy and nice,
 * oom_score_adj, THP-disable; records them and glibc's rseq registration. After the go
 * file it compares everything and also checks behaviour: handlers run with the right
 * mask, on the alternate stack when asked, SA_RESETHAND resets, ignored signals are
 * ignored, a dropped capability is really missing, rseq is registered and updated by
 * the kernel, uname obeys the personality.
 *
 * Must run as root (it changes credentials).
 */
#include "victim.h"

#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif
#ifndef SECBIT_KEEP_CAPS
#define SECBIT_KEEP_CAPS (1 << 4)
#endif

#define NSIG_K 64
#define COMM "stasis-attrs!"
#define OOM_ADJ 345
#define STR_OOM "345"
#define NICE 7
#define PERSONA (ADDR_NO_RANDOMIZE | UNAME26)

struct ksigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static int rt_sigaction_raw(int sig, const struct ksigaction *act, struct ksigaction *old)
{
	return (int)syscall(SYS_rt_sigaction, sig, act, old, 8);
}

/* ---- recorded state ---------------------------------------------------------------- */

static struct ksigaction sa_before[NSIG_K + 1];
static struct rlimit rl_before[RLIM_NLIMITS];
static char cwd_before[4200];
static struct stat cwd_st, root_st;
static sigset_t blocked_before;
static stack_t ss_before;
static struct __user_cap_data_struct cap_before[2];
static int bset_before[64], amb_before[64], last_cap;
static int securebits_before;
static uid_t ruid, euid, suid;
static gid_t rgid, egid, sgid;
static gid_t groups_before[64];
static int ngroups_before;
static pid_t pgid_before, sid_before;
static int rseq_len;
static char status_before[8192], status_after[8192];

static char *altstack;
#define ALTSTACK_SIZE (64 * 1024)

/* ---- handlers ------------------------------------------------------------------------ */

static volatile int h_sig, h_code, h_value, h_onstack, h_count;
static sigset_t h_mask;

static void note_handler(int sig, int code, int value)
{
	char here;
	h_sig = sig;
	h_code = code;
	h_value = value;
	h_onstack = &here >= altstack && &here < altstack + ALTSTACK_SIZE;
	sigprocmask(SIG_BLOCK, NULL, &h_mask);
	h_count++;
}

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	note_handler(sig, si->si_code, si->si_value.sival_int);
}

static void h_plain(int sig)
{
	note_handler(sig, 0, 0);
}

static void set_handler(int sig, void *handler, unsigned long flags, const int *mask_sigs)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = handler;
	else
		sa.sa_handler = handler;
	sa.sa_flags = (int)flags;
	sigemptyset(&sa.sa_mask);
	for (; mask_sigs && *mask_sigs; mask_sigs++)
		sigaddset(&sa.sa_mask, *mask_sigs);
	if (sigaction(sig, &sa, NULL) != 0)
		v_die("sigaction %d: %s", sig, strerror(errno));
}

/* ---- capabilities -------------------------------------------------------------------- */

static void capget_now(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	if (syscall(SYS_capget, &h, d) != 0)
		v_die("capget: %s", strerror(errno));
}

static void cap_clear(struct __user_cap_data_struct d[2], int cap, int eff, int perm, int inh)
{
	uint32_t bit = 1u << (cap % 32);
	if (eff)
		d[cap / 32].effective &= ~bit;
	if (perm)
		d[cap / 32].permitted &= ~bit;
	if (inh)
		d[cap / 32].inheritable &= ~bit;
}

static struct rseq *rseq_area(void)
{
	return (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
}

static long rseq_probe(int len)
{
	long r = syscall(SYS_rseq, rseq_area(), len, 0, RSEQ_SIG);
	return r == 0 ? 0 : -errno;
}

static void read_status(char *buf, size_t size)
{
	if (v_read_file("/proc/self/status", buf, size) < 0)
		v_die("read status: %s", strerror(errno));
}

/* ---- setup --------------------------------------------------------------------------- */

static void setup(void)
{
	const char *tmp = v_tmp();

	/* credentials first: real and saved uid change, effective uid stays 0 */
	static const gid_t groups[] = { 1234, 5678, 42 };
	if (setgroups(3, groups) != 0)
		v_die("setgroups (run as root): %s", strerror(errno));
	if (setresgid(1111, 2222, 3333) != 0)
		v_die("setresgid: %s", strerror(errno));
	if (setresuid(4444, 0, 5555) != 0)
		v_die("setresuid: %s", strerror(errno));

	if (prctl(PR_SET_NAME, COMM) != 0)
		v_die("PR_SET_NAME: %s", strerror(errno));
	snprintf(cwd_before, sizeof(cwd_before), "%s/cwd dir", tmp);
	if (mkdir(cwd_before, 0755) != 0 && errno != EEXIST)
		v_die("mkdir %s: %s", cwd_before, strerror(errno));
	if (chdir(cwd_before) != 0)
		v_die("chdir: %s", strerror(errno));
	if (stat(".", &cwd_st) != 0 || stat("/", &root_st) != 0)
		v_die("stat: %s", strerror(errno));
	umask(027);

	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_max >= 517 && rl.rlim_cur > 517) {
		rl.rlim_cur = 517;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			v_die("setrlimit NOFILE: %s", strerror(errno));
	}
	getrlimit(RLIMIT_CORE, &rl);
	if (rl.rlim_max > (1 << 20))
		rl.rlim_max = 1 << 20;
	rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
	if (setrlimit(RLIMIT_CORE, &rl) != 0)
		v_die("setrlimit CORE: %s", strerror(errno));
	getrlimit(RLIMIT_STACK, &rl);
	if (rl.rlim_max >= (6 << 20)) {
		rl.rlim_cur = 6 << 20;
		if (setrlimit(RLIMIT_STACK, &rl) != 0)
			v_die("setrlimit STACK: %s", strerror(errno));
	}
	getrlimit(RLIMIT_CPU, &rl);
	if (rl.rlim_max >= 100000) {
		rl.rlim_cur = 100000;
		setrlimit(RLIMIT_CPU, &rl);
	}
	getrlimit(RLIMIT_MSGQUEUE, &rl);
	if (rl.rlim_cur > 4096) {
		rl.rlim_cur = 4096;
		setrlimit(RLIMIT_MSGQUEUE, &rl);
	}

	if (personality(PERSONA) < 0)
		v_die("personality: %s", strerror(errno));

	/* signal dispositions */
	int m_usr1[] = { SIGUSR2, SIGTERM, 0 };
	int m_usr2[] = { SIGINT, 0 };
	int m_rt[] = { SIGRTMIN + 4, SIGQUIT, 0 };
	set_handler(SIGUSR1, h_info, SA_SIGINFO | SA_RESTART, m_usr1);
	set_handler(SIGUSR2, h_plain, SA_ONSTACK | SA_NODEFER, m_usr2);
	set_handler(SIGALRM, h_info, SA_SIGINFO | SA_ONSTACK | SA_RESETHAND, NULL);
	set_handler(SIGRTMIN + 3, h_info, SA_SIGINFO, m_rt);
	set_handler(SIGCHLD, h_plain, SA_NOCLDSTOP | SA_NOCLDWAIT | SA_RESTART, NULL);
	set_handler(SIGTERM, h_plain, 0, NULL);
	set_handler(SIGHUP, SIG_IGN, 0, NULL);
	set_handler(SIGPIPE, SIG_IGN, 0, NULL);
	set_handler(SIGWINCH, SIG_IGN, 0, NULL);
	set_handler(SIGTTOU, SIG_IGN, SA_RESTART, NULL);
	set_handler(SIGINT, SIG_DFL, SA_RESTART, NULL);

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGQUIT);
	sigaddset(&block, SIGWINCH);
	sigaddset(&block, SIGRTMIN + 5);
	sigaddset(&block, SIGRTMAX);
	if (sigprocmask(SIG_SETMASK, &block, NULL) != 0)
		v_die("sigprocmask: %s", strerror(errno));

	altstack = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (altstack == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	stack_t ss = { .ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = SS_AUTODISARM };
	if (sigaltstack(&ss, NULL) != 0)
		v_die("sigaltstack: %s", strerror(errno));

	if (prctl(PR_SET_PDEATHSIG, SIGHUP) != 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) != 0 ||
	    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0)
		v_die("prctl: %s", strerror(errno));

	struct sched_param sp = { .sched_priority = 0 };
	if (sched_setscheduler(0, SCHED_BATCH | SCHED_RESET_ON_FORK, &sp) != 0)
		v_die("sched_setscheduler: %s", strerror(errno));
	if (setpriority(PRIO_PROCESS, 0, NICE) != 0)
		v_die("setpriority: %s", strerror(errno));

	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, STR_OOM, strlen(STR_OOM)) < 0)
		v_die("oom_score_adj: %s", strerror(errno));
	close(fd);

	/* capabilities: drop some from effective+permitted, one from effective only, set
	 * inheritable, raise an ambient one, drop one from the bounding set, keep-caps */
	struct __user_cap_data_struct d[2];
	capget_now(d);
	cap_clear(d, CAP_NET_RAW, 1, 1, 0);
	cap_clear(d, CAP_SYS_TIME, 1, 1, 0);
	cap_clear(d, CAP_MKNOD, 1, 1, 0);
	cap_clear(d, CAP_SYS_BOOT, 1, 0, 0);
	d[0].inheritable |= 1u << CAP_NET_BIND_SERVICE | 1u << CAP_KILL;
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	if (syscall(SYS_capset, &h, d) != 0)
		v_die("capset: %s", strerror(errno));
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0) != 0)
		v_die("ambient raise: %s", strerror(errno));
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) != 0)
		v_die("capbset drop: %s", strerror(errno));
	if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0) != 0)
		v_die("securebits: %s", strerror(errno));

	/* last: these make /proc/self root-owned and forbid privilege gains */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		v_die("no_new_privs: %s", strerror(errno));
	if (prctl(PR_SET_DUMPABLE, 0) != 0)
		v_die("dumpable: %s", strerror(errno));

	if (__rseq_size == 0)
		v_die("glibc did not register rseq (__rseq_size is 0)");
	static const int lens[] = { 32, 20, 64 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]) && !rseq_len; i++)
		if (rseq_probe(lens[i]) == -EBUSY)
			rseq_len = lens[i];
	if (!rseq_len)
		v_die("cannot find the length glibc registered rseq with");
}

static void record(void)
{
	for (int s = 1; s <= NSIG_K; s++)
		if (rt_sigaction_raw(s, NULL, &sa_before[s]) != 0)
			v_die("rt_sigaction %d: %s", s, strerror(errno));
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &rl_before[r]);
	sigprocmask(SIG_BLOCK, NULL, &blocked_before);
	sigaltstack(NULL, &ss_before);
	capget_now(cap_before);
	char buf[32];
	last_cap = v_read_file("/proc/sys/kernel/cap_last_cap", buf, sizeof(buf)) > 0 ? atoi(buf) : 40;
	for (int c = 0; c <= last_cap && c < 64; c++) {
		bset_before[c] = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		amb_before[c] = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
	}
	securebits_before = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	getresuid(&ruid, &euid, &suid);
	getresgid(&rgid, &egid, &sgid);
	ngroups_before = getgroups(64, groups_before);
	pgid_before = getpgid(0);
	sid_before = getsid(0);
	read_status(status_before, sizeof(status_before));
}

/* ---- checks --------------------------------------------------------------------------- */

static void check_status_lines(void)
{
	static const char *keys[] = { "Name",	"Umask",  "Tgid",   "Pid",    "Uid",
				      "Gid",	"Groups", "SigBlk", "SigIgn", "SigCgt",
				      "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
				      "NoNewPrivs", "Seccomp", "THP_enabled", "NSpgid", "NSsid" };
	read_status(status_after, sizeof(status_after));
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char a[256], b[256];
		int ra = v_status_field(status_before, keys[i], a, sizeof(a));
		int rb = v_status_field(status_after, keys[i], b, sizeof(b));
		if (ra != rb || (ra == 0 && strcmp(a, b) != 0))
			v_fail("/proc/self/status %s was \"%s\", now \"%s\"", keys[i], ra ? "-" : a,
			       rb ? "-" : b);
	}
}

static void check_simple(void)
{
	char name[32] = "";
	prctl(PR_GET_NAME, name);
	V_CHECK(strcmp(name, COMM) == 0, "comm is \"%s\", expected \"%s\"", name, COMM);
	char buf[4096];
	if (v_read_file("/proc/self/comm", buf, sizeof(buf)) < 0 || strcmp(buf, COMM "\n") != 0)
		v_fail("/proc/self/comm is \"%s\"", buf);

	if (!getcwd(buf, sizeof(buf)))
		v_fail("getcwd: %s", strerror(errno));
	else
		V_CHECK(strcmp(buf, cwd_before) == 0, "cwd is \"%s\", expected \"%s\"", buf, cwd_before);
	struct stat st;
	if (stat(".", &st) != 0 || st.st_ino != cwd_st.st_ino || st.st_dev != cwd_st.st_dev)
		v_fail("\".\" is not the directory it was");
	if (stat("/", &st) != 0 || st.st_ino != root_st.st_ino || st.st_dev != root_st.st_dev)
		v_fail("\"/\" is not the directory it was");
	ssize_t n = readlink("/proc/self/root", buf, sizeof(buf) - 1);
	if (n < 0 || (buf[n] = 0, strcmp(buf, "/") != 0))
		v_fail("/proc/self/root is \"%s\"", n < 0 ? strerror(errno) : buf);

	mode_t um = umask(0);
	umask(um);
	V_CHECK(um == 027, "umask is %03o, expected 027", um);

	for (int r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit rl;
		getrlimit(r, &rl);
		if (rl.rlim_cur != rl_before[r].rlim_cur || rl.rlim_max != rl_before[r].rlim_max)
			v_fail("rlimit %d is %llu/%llu, was %llu/%llu", r,
			       (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
			       (unsigned long long)rl_before[r].rlim_cur,
			       (unsigned long long)rl_before[r].rlim_max);
	}

	int pers = personality(0xffffffff);
	V_CHECK(pers == PERSONA, "personality is %#x, expected %#x", pers, PERSONA);
	struct utsname u;
	uname(&u);
	V_CHECK(strncmp(u.release, "2.6.", 4) == 0,
		"uname release is %s: the UNAME26 personality is not in effect", u.release);

	uid_t r1, e1, s1;
	gid_t r2, e2, s2;
	getresuid(&r1, &e1, &s1);
	getresgid(&r2, &e2, &s2);
	V_CHECK(r1 == ruid && e1 == euid && s1 == suid, "uids are %d/%d/%d, expected %d/%d/%d",
		r1, e1, s1, ruid, euid, suid);
	V_CHECK(r2 == rgid && e2 == egid && s2 == sgid, "gids are %d/%d/%d, expected %d/%d/%d",
		r2, e2, s2, rgid, egid, sgid);
	gid_t groups[64];
	int ng = getgroups(64, groups);
	if (ng != ngroups_before || memcmp(groups, groups_before, sizeof(gid_t) * (size_t)ng) != 0)
		v_fail("supplementary groups differ (%d now, %d before)", ng, ngroups_before);

	V_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs is not set");
	V_CHECK(prctl(PR_GET_DUMPABLE) == 0, "dumpable is %d, expected 0", prctl(PR_GET_DUMPABLE));
	int pdeath = -1, reaper = -1;
	prctl(PR_GET_PDEATHSIG, &pdeath);
	prctl(PR_GET_CHILD_SUBREAPER, &reaper);
	V_CHECK(pdeath == SIGHUP, "parent-death signal is %d, expected %d", pdeath, SIGHUP);
	V_CHECK(reaper == 1, "child-subreaper is %d, expected 1", reaper);
	V_CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP disable is not set");

	int pol = sched_getscheduler(0);
	V_CHECK(pol == (SCHED_BATCH | SCHED_RESET_ON_FORK),
		"scheduling policy is %#x, expected SCHED_BATCH|SCHED_RESET_ON_FORK", pol);
	errno = 0;
	int nice = getpriority(PRIO_PROCESS, 0);
	V_CHECK(nice == NICE, "nice is %d, expected %d", nice, NICE);

	if (v_read_file("/proc/self/oom_score_adj", buf, sizeof(buf)) < 0 || atoi(buf) != OOM_ADJ)
		v_fail("oom_score_adj is %d, expected %d", atoi(buf), OOM_ADJ);

	V_CHECK(getpgid(0) == pgid_before, "process group is %d, was %d", getpgid(0), pgid_before);
	V_CHECK(getsid(0) == sid_before, "session is %d, was %d", getsid(0), sid_before);
}

static void check_caps(void)
{
	struct __user_cap_data_struct d[2];
	capget_now(d);
	for (int i = 0; i < 2; i++)
		if (d[i].effective != cap_before[i].effective ||
		    d[i].permitted != cap_before[i].permitted ||
		    d[i].inheritable != cap_before[i].inheritable)
			v_fail("capabilities word %d: eff/perm/inh %08x/%08x/%08x, expected %08x/%08x/%08x",
			       i, d[i].effective, d[i].permitted, d[i].inheritable,
			       cap_before[i].effective, cap_before[i].permitted, cap_before[i].inheritable);
	for (int c = 0; c <= last_cap && c < 64; c++) {
		int b = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		int a = prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0);
		V_CHECK(b == bset_before[c], "bounding set: cap %d is %d, was %d", c, b, bset_before[c]);
		V_CHECK(a == amb_before[c], "ambient set: cap %d is %d, was %d", c, a, amb_before[c]);
	}
	int sb = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
	V_CHECK(sb == securebits_before, "securebits are %#x, were %#x", sb, securebits_before);

	/* behaviour: CAP_MKNOD is gone */
	if (mknod("nod", S_IFCHR | 0600, makedev(1, 3)) == 0) {
		unlink("nod");
		v_fail("mknod of a device works: CAP_MKNOD was dropped but is back");
	} else if (errno != EPERM) {
		v_fail("mknod failed with %s, expected EPERM", strerror(errno));
	}
}

static void check_signals(void)
{
	for (int s = 1; s <= NSIG_K; s++) {
		struct ksigaction now;
		if (rt_sigaction_raw(s, NULL, &now) != 0) {
			v_fail("rt_sigaction %d: %s", s, strerror(errno));
			continue;
		}
		struct ksigaction *b = &sa_before[s];
		if (now.handler != b->handler || now.flags != b->flags ||
		    now.restorer != b->restorer || now.mask != b->mask)
			v_fail("signal %d: handler %p flags %#lx restorer %p mask %#lx, was %p %#lx %p %#lx",
			       s, now.handler, now.flags, now.restorer, (unsigned long)now.mask,
			       b->handler, b->flags, b->restorer, (unsigned long)b->mask);
	}
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	for (int s = 1; s <= NSIG_K; s++)
		if (sigismember(&cur, s) != sigismember(&blocked_before, s))
			v_fail("signal %d is %sblocked, was %sblocked", s, sigismember(&cur, s) ? "" : "not ",
			       sigismember(&blocked_before, s) ? "" : "not ");
	stack_t ss;
	sigaltstack(NULL, &ss);
	V_CHECK(ss.ss_sp == ss_before.ss_sp && ss.ss_size == ss_before.ss_size &&
			ss.ss_flags == ss_before.ss_flags,
		"sigaltstack is %p/%zu/%#x, was %p/%zu/%#x", ss.ss_sp, ss.ss_size, ss.ss_flags,
		ss_before.ss_sp, ss_before.ss_size, ss_before.ss_flags);

	/* behaviour */
	h_count = 0;
	raise(SIGUSR1);
	V_CHECK(h_count == 1 && h_sig == SIGUSR1 && h_code == SI_TKILL,
		"SIGUSR1 handler: ran %d times, sig %d code %d", h_count, h_sig, h_code);
	V_CHECK(!h_onstack, "SIGUSR1 handler ran on the alternate stack (no SA_ONSTACK)");
	V_CHECK(sigismember(&h_mask, SIGUSR1) && sigismember(&h_mask, SIGUSR2) &&
			sigismember(&h_mask, SIGTERM) && sigismember(&h_mask, SIGQUIT) &&
			!sigismember(&h_mask, SIGINT),
		"mask inside the SIGUSR1 handler is wrong");

	h_count = 0;
	raise(SIGUSR2);
	V_CHECK(h_count == 1 && h_sig == SIGUSR2, "SIGUSR2 handler did not run");
	V_CHECK(h_onstack, "SIGUSR2 handler (SA_ONSTACK) did not run on the alternate stack");
	V_CHECK(!sigismember(&h_mask, SIGUSR2) && sigismember(&h_mask, SIGINT),
		"mask inside the SIGUSR2 handler (SA_NODEFER, mask SIGINT) is wrong");

	h_count = 0;
	union sigval v = { .sival_int = 77 };
	sigqueue(getpid(), SIGRTMIN + 3, v);
	V_CHECK(h_count == 1 && h_sig == SIGRTMIN + 3 && h_code == SI_QUEUE && h_value == 77,
		"SIGRTMIN+3 handler: ran %d times, code %d value %d", h_count, h_code, h_value);
	V_CHECK(sigismember(&h_mask, SIGRTMIN + 4), "mask inside the SIGRTMIN+3 handler is wrong");

	h_count = 0;
	raise(SIGCHLD);
	V_CHECK(h_count == 1 && h_sig == SIGCHLD, "SIGCHLD handler did not run");

	raise(SIGHUP); /* ignored: we survive */
	raise(SIGPIPE);

	h_count = 0;
	raise(SIGALRM);
	V_CHECK(h_count == 1 && h_sig == SIGALRM && h_onstack,
		"SIGALRM handler (SA_ONSTACK) ran %d times, on altstack: %d", h_count, h_onstack);
	struct ksigaction now;
	rt_sigaction_raw(SIGALRM, NULL, &now);
	V_CHECK(now.handler == SIG_DFL, "SA_RESETHAND did not reset the SIGALRM handler");
}

static void check_rseq(void)
{
	long r = rseq_probe(rseq_len);
	if (r == 0)
		v_fail("rseq was not registered after restore (registering it again succeeded)");
	else if (r == -EINVAL)
		v_fail("rseq is registered with another area or length than glibc's");
	else if (r == -EPERM)
		v_fail("rseq is registered with another signature");
	else if (r != -EBUSY)
		v_fail("rseq probe returned %ld", r);
	/* the kernel keeps cpu_id up to date: poison it, take a signal, read it back */
	struct rseq *rs = rseq_area();
	int ok = 0;
	unsigned got = 0;
	int cpu = -1;
	for (int i = 0; i < 100 && !ok; i++) {
		rs->cpu_id = 0xfffffff0u;
		rs->cpu_id_start = 0xfffffff0u;
		raise(SIGUSR1);
		got = rs->cpu_id;
		cpu = sched_getcpu();
		ok = got == (unsigned)cpu && rs->cpu_id_start == (unsigned)cpu;
	}
	V_CHECK(ok, "rseq cpu_id is %u, sched_getcpu() says %d: the kernel does not update the rseq area",
		got, cpu);
}

int main(void)
{
	if (geteuid() != 0)
		v_die("must run as root");
	setup();
	record();
	v_ready();
	v_wait_go();

	check_status_lines();
	check_simple();
	check_caps();
	check_signals();
	check_rseq();
	v_cleanup_tmp();
	v_finish();
}
