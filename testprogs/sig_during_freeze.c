/*
 * sig_during_freeze: a signal that arrives while the dump has the process frozen is not
 * lost. The harness sends SIGUSR1 (kill, so SI_USER from the test process) once it sees
 * the dump's tracer attached; in a standalone run it sends it before the go file.
 *
 * 64 MiB of patterned memory make the dump last long enough to be caught. After the go
 * file the SIGUSR1 handler must have run exactly once, with si_code SI_USER and si_pid
 * the process that started the victim; the memory pattern is checked too.
 */
#include "victim.h"

#include <signal.h>
#include <sys/mman.h>

#define BYTES (64UL << 20)

static volatile sig_atomic_t usr1s, code, sender;

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	usr1s++;
	code = si->si_code;
	sender = si->si_pid;
}

int main(void)
{
	pid_t starter = getppid();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	uint64_t *mem = mmap(NULL, BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		v_die("mmap: %s", strerror(errno));
	for (size_t i = 0; i < BYTES / 8; i++)
		mem[i] = v_mix(i);

	v_ready();
	v_wait_go();
	/* the standalone run's signal may come with the go file */
	for (int i = 0; i < 100 && usr1s == 0; i++)
		v_sleep_ms(10);

	V_CHECK(usr1s == 1, "SIGUSR1 handled %d times, expected once", (int)usr1s);
	V_CHECK(code == SI_USER, "si_code %d, expected SI_USER", (int)code);
	V_CHECK(sender == starter, "si_pid %d, expected %d (who started the victim)", (int)sender, (int)starter);
	size_t bad = 0;
	for (size_t i = 0; i < BYTES / 8; i += 509)
		bad += mem[i] != v_mix(i);
	V_CHECK(bad == 0, "%zu memory words differ", bad);
	v_finish();
}
