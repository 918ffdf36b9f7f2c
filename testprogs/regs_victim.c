/*
 * regs_victim: the CPU state survives dump, kill and restore.
 *
 * An assembly loop loads known patterns into every general-purpose register (rax..r15),
 * the vector registers (zmm0-30 and k0-6 with AVX-512, else ymm0-14), the x87 stack,
 * the x87 control word and MXCSR, sets the direction flag, and then checks all of them
 * continuously, together with rsp, the fs base (a __thread variable read through %fs)
 * and the gs base (set with arch_prctl and read through %gs). Between rounds of
 * checks it polls the go file with raw stat/nanosleep syscalls, which preserve every
 * register but rax, rcx and r11 (those three are reloaded after each syscall and checked
 * in the spin phase, where a dump can stop the process between any two instructions).
 * READY is written from inside the loop function once everything is loaded.
 *
 * Usage: regs_victim [SPIN [SLEEP_MS]]: SPIN checks per round (default 400000), SLEEP_MS
 * between rounds (default 10; 0 keeps the process in user mode almost all the time, so
 * that a dump interrupts it between two instructions rather than in a syscall).
 *
 * After the go file appears it runs one more full round of checks, saves the x87/SSE
 * state with fxsave and returns to C, which compares it with the state saved before
 * READY and checks fs/gs base and the segment selectors.
 */
#include "victim.h"

#include <asm/prctl.h>
#include <cpuid.h>
#include <sys/syscall.h>

#define WANT_MXCSR 0xFFC0 /* round toward zero, FTZ, DAZ, all exceptions masked */
#define WANT_FCW 0x0C7F	  /* truncate, single precision, all exceptions masked */
#define STR_(x) #x
#define STR(x) STR_(x)

/* Shared with the assembly below (referenced by symbol name). */
uint64_t pat_gpr[16] __attribute__((aligned(64)));
uint8_t pat_vec[32][64] __attribute__((aligned(64)));
uint64_t pat_k[8] __attribute__((aligned(64)));
long double pat_st[8] __attribute__((aligned(16)));
uint16_t want_fcw = WANT_FCW;
uint32_t want_mxcsr = WANT_MXCSR;
uint32_t default_mxcsr = 0x1F80;
uint64_t spin_iters = 400000, spin_cnt, done_flag, saved_rsp, rounds, tmp_word;
const char *go_path;
struct timespec poll_ts = { 0, 10 * 1000 * 1000 };
uint64_t fail_idx, fail_val;
uint8_t fail_vec[64] __attribute__((aligned(64)));
uint8_t fx_before[512] __attribute__((aligned(64))), fx_after[512] __attribute__((aligned(64)));
uint8_t stat_buf[256] __attribute__((aligned(16)));
const char ready_msg[] = "READY\n";
uint64_t gs_area[8] __attribute__((aligned(64)));
__thread uint64_t tls_word;

/* 0 when every check passed until the go file appeared, 1 at the first mismatch. */
int regs_loop_avx512(void);
int regs_loop_avx(void);

/* fail_idx values */
#define F_RSP 16
#define F_DF 17
#define F_GS 18
#define F_FS 19
#define F_VEC 100
#define F_K 200
#define F_MXCSR 300
#define F_FCW 301

__asm__(
	/* cmp a GPR with its pattern */
	".macro CHKG reg, idx\n"
	"  cmp pat_gpr+8*\\idx(%rip), %\\reg\n"
	"  je 1f\n"
	"  mov %\\reg, fail_val(%rip)\n"
	"  movq $\\idx, fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	".endm\n"
	".macro LDG reg, idx\n"
	"  mov pat_gpr+8*\\idx(%rip), %\\reg\n"
	".endm\n"
	".macro CHKZ i\n"
	"  vpxorq pat_vec+64*\\i(%rip), %zmm\\i, %zmm31\n"
	"  vptestmq %zmm31, %zmm31, %k7\n"
	"  kortestw %k7, %k7\n"
	"  jz 1f\n"
	"  vmovdqu64 %zmm\\i, fail_vec(%rip)\n"
	"  movq $(100+\\i), fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	".endm\n"
	".macro CHKY i\n"
	"  vpxor pat_vec+64*\\i(%rip), %ymm\\i, %ymm15\n"
	"  vptest %ymm15, %ymm15\n"
	"  jz 1f\n"
	"  vmovdqu %ymm\\i, fail_vec(%rip)\n"
	"  movq $(100+\\i), fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	".endm\n"
	".macro CHKK i\n"
	"  kmovq pat_k+8*\\i(%rip), %k7\n"
	"  kxorq %k\\i, %k7, %k7\n"
	"  kortestq %k7, %k7\n"
	"  jz 1f\n"
	"  kmovq %k\\i, fail_val(%rip)\n"
	"  movq $(200+\\i), fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	".endm\n"
	".macro REGS_FN name, avx512\n"
	".globl \\name\n"
	".type \\name, @function\n"
	"\\name:\n"
	"  push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"  mov %rsp, saved_rsp(%rip)\n"
	"  movq $0, done_flag(%rip)\n"
	/* vector registers */
	"  .if \\avx512\n"
	"  .irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30\n"
	"  vmovdqu64 pat_vec+64*\\i(%rip), %zmm\\i\n"
	"  .endr\n"
	"  .irp i,0,1,2,3,4,5,6\n"
	"  kmovq pat_k+8*\\i(%rip), %k\\i\n"
	"  .endr\n"
	"  .else\n"
	"  .irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14\n"
	"  vmovdqu pat_vec+64*\\i(%rip), %ymm\\i\n"
	"  .endr\n"
	"  .endif\n"
	/* x87 and MXCSR */
	"  fninit\n"
	"  fldcw want_fcw(%rip)\n"
	"  .irp i,0,1,2,3,4,5,6,7\n"
	"  fldt pat_st+16*\\i(%rip)\n"
	"  .endr\n"
	"  ldmxcsr want_mxcsr(%rip)\n"
	"  fxsave64 fx_before(%rip)\n"
	/* READY */
	"  mov $1, %eax\n"
	"  mov $1, %edi\n"
	"  lea ready_msg(%rip), %rsi\n"
	"  mov $6, %edx\n"
	"  syscall\n"
	/* general-purpose registers and the direction flag */
	"  std\n"
	"  LDG rax,0\n LDG rbx,1\n LDG rcx,2\n LDG rdx,3\n LDG rsi,4\n LDG rdi,5\n LDG rbp,6\n"
	"  LDG r8,7\n LDG r9,8\n LDG r10,9\n LDG r11,10\n LDG r12,11\n LDG r13,12\n LDG r14,13\n"
	"  LDG r15,14\n"
	"2:\n" /* a round: spin_iters checks of everything, then a poll */
	"  incq rounds(%rip)\n"
	"  mov spin_iters(%rip), %rax\n"
	"  mov %rax, spin_cnt(%rip)\n"
	"  LDG rax,0\n"
	"3:\n"
	"  CHKG rax,0\n CHKG rbx,1\n CHKG rcx,2\n CHKG rdx,3\n CHKG rsi,4\n CHKG rdi,5\n"
	"  CHKG rbp,6\n CHKG r8,7\n CHKG r9,8\n CHKG r10,9\n CHKG r11,10\n CHKG r12,11\n"
	"  CHKG r13,12\n CHKG r14,13\n CHKG r15,14\n"
	"  cmp saved_rsp(%rip), %rsp\n"
	"  je 1f\n"
	"  mov %rsp, fail_val(%rip)\n"
	"  movq $" STR(F_RSP) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  pushfq\n"
	"  testl $0x400, (%rsp)\n"
	"  lea 8(%rsp), %rsp\n"
	"  jnz 1f\n"
	"  movq $" STR(F_DF) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  cmp %gs:0, %rax\n"
	"  je 1f\n"
	"  movq $" STR(F_GS) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  cmp %fs:tls_word@tpoff, %rbx\n"
	"  je 1f\n"
	"  movq $" STR(F_FS) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  .if \\avx512\n"
	"  .irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30\n"
	"  CHKZ \\i\n"
	"  .endr\n"
	"  .irp i,0,1,2,3,4,5,6\n"
	"  CHKK \\i\n"
	"  .endr\n"
	"  .else\n"
	"  .irp i,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14\n"
	"  CHKY \\i\n"
	"  .endr\n"
	"  .endif\n"
	"  stmxcsr tmp_word(%rip)\n"
	"  cmpl $" STR(WANT_MXCSR) ", tmp_word(%rip)\n"
	"  je 1f\n"
	"  movq $" STR(F_MXCSR) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  fnstcw tmp_word(%rip)\n"
	"  cmpw $" STR(WANT_FCW) ", tmp_word(%rip)\n"
	"  je 1f\n"
	"  movq $" STR(F_FCW) ", fail_idx(%rip)\n"
	"  jmp regs_fail\n"
	"1:\n"
	"  decq spin_cnt(%rip)\n"
	"  jnz 3b\n"
	"  cmpq $0, done_flag(%rip)\n"
	"  jne 4f\n"
	/* poll: stat(go_path) then nanosleep(10 ms); rdi/rsi saved, rax/rcx/r11 reloaded */
	"  push %rdi\n"
	"  push %rsi\n"
	"  mov go_path(%rip), %rdi\n"
	"  lea stat_buf(%rip), %rsi\n"
	"  mov $4, %eax\n"
	"  syscall\n"
	"  test %rax, %rax\n"
	"  jnz 5f\n"
	"  movq $1, done_flag(%rip)\n" /* go: one more full round, then finish */
	"  jmp 6f\n"
	"5:\n"
	"  lea poll_ts(%rip), %rdi\n"
	"  xor %esi, %esi\n"
	"  mov $35, %eax\n"
	"  syscall\n"
	"6:\n"
	"  pop %rsi\n"
	"  pop %rdi\n"
	"  LDG rax,0\n LDG rcx,2\n LDG r11,10\n"
	"  jmp 2b\n"
	"4:\n"
	"  fxsave64 fx_after(%rip)\n"
	"  xor %eax, %eax\n"
	"  jmp regs_out\n"
	".size \\name, .-\\name\n"
	".endm\n"
	".text\n"
	"REGS_FN regs_loop_avx512, 1\n"
	"REGS_FN regs_loop_avx, 0\n"
	"regs_fail:\n"
	"  mov $1, %eax\n"
	"regs_out:\n"
	"  cld\n"
	"  mov saved_rsp(%rip), %rsp\n"
	"  pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"  fninit\n"
	"  ldmxcsr default_mxcsr(%rip)\n"
	"  vzeroupper\n"
	"  ret\n");

static const char *reg_name(uint64_t idx)
{
	static const char *g[] = { "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8",
				   "r9",  "r10", "r11", "r12", "r13", "r14", "r15" };
	static char buf[32];
	if (idx < 15)
		return g[idx];
	switch (idx) {
	case F_RSP:
		return "rsp";
	case F_DF:
		return "the direction flag (rflags.DF)";
	case F_GS:
		return "the gs base (%gs:0)";
	case F_FS:
		return "the fs base (__thread variable through %fs)";
	case F_MXCSR:
		return "MXCSR";
	case F_FCW:
		return "the x87 control word";
	}
	if (idx >= F_VEC && idx < F_VEC + 32)
		snprintf(buf, sizeof(buf), "vector register %lu", (unsigned long)(idx - F_VEC));
	else if (idx >= F_K && idx < F_K + 8)
		snprintf(buf, sizeof(buf), "k%lu", (unsigned long)(idx - F_K));
	else
		snprintf(buf, sizeof(buf), "check %lu", (unsigned long)idx);
	return buf;
}

static uint64_t get_base(int code)
{
	unsigned long v = 0;
	if (syscall(SYS_arch_prctl, code, &v) != 0)
		v_die("arch_prctl: %s", strerror(errno));
	return v;
}

struct selectors {
	uint16_t cs, ss, ds, es, fs, gs;
};

static struct selectors get_selectors(void)
{
	struct selectors s;
	__asm__ volatile("mov %%cs, %0" : "=r"(s.cs));
	__asm__ volatile("mov %%ss, %0" : "=r"(s.ss));
	__asm__ volatile("mov %%ds, %0" : "=r"(s.ds));
	__asm__ volatile("mov %%es, %0" : "=r"(s.es));
	__asm__ volatile("mov %%fs, %0" : "=r"(s.fs));
	__asm__ volatile("mov %%gs, %0" : "=r"(s.gs));
	return s;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[n - 1 - i]);
}

/* Compares parts of the fxsave images taken before READY and after the go file. */
static void compare_fxsave(void)
{
	static const struct {
		size_t off, len;
		const char *what;
	} parts[] = {
		{ 0, 2, "x87 control word (FCW)" }, { 2, 2, "x87 status word (FSW)" },
		{ 4, 1, "x87 tag word (FTW)" },	    { 6, 2, "x87 last opcode (FOP)" },
		{ 24, 4, "MXCSR" },		    { 28, 4, "MXCSR_MASK" },
	};
	char a[80], b[80];
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (memcmp(fx_before + parts[i].off, fx_after + parts[i].off, parts[i].len)) {
			hex(a, fx_before + parts[i].off, parts[i].len);
			hex(b, fx_after + parts[i].off, parts[i].len);
			v_fail("%s was %s, now %s", parts[i].what, a, b);
		}
	for (int i = 0; i < 8; i++)
		if (memcmp(fx_before + 32 + 16 * i, fx_after + 32 + 16 * i, 10)) {
			hex(a, fx_before + 32 + 16 * i, 10);
			hex(b, fx_after + 32 + 16 * i, 10);
			v_fail("x87 register st%d was %s, now %s", i, a, b);
		}
}

int main(int argc, char **argv)
{
	if (argc > 1)
		spin_iters = strtoull(argv[1], NULL, 0);
	if (argc > 2) { /* sleep between rounds, in ms (0: busy, almost always in user mode) */
		long ms = atol(argv[2]);
		poll_ts.tv_sec = ms / 1000;
		poll_ts.tv_nsec = (ms % 1000) * 1000000L;
	}
	go_path = v_go_path();

	int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
	if (!avx512 && !__builtin_cpu_supports("avx"))
		v_die("this victim needs at least AVX");

	for (int i = 0; i < 16; i++)
		pat_gpr[i] = v_mix(0x1000 + (uint64_t)i) | 1;
	for (int i = 0; i < 32; i++)
		for (int j = 0; j < 8; j++) {
			uint64_t w = v_mix(0x2000 + (uint64_t)(i * 8 + j));
			memcpy(&pat_vec[i][j * 8], &w, 8);
		}
	for (int i = 0; i < 8; i++)
		pat_k[i] = v_mix(0x3000 + (uint64_t)i);
	for (int i = 0; i < 8; i++)
		pat_st[i] = 3.14159265358979323846264338327950288L * (i + 1) + 1.0L / (i + 3);

	/* fs: a TLS word; gs: a base pointing at a word equal to rax's pattern */
	tls_word = pat_gpr[1];
	gs_area[0] = pat_gpr[0];
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, (unsigned long)gs_area) != 0)
		v_die("arch_prctl(ARCH_SET_GS): %s", strerror(errno));
	uint64_t fs_before = get_base(ARCH_GET_FS);
	struct selectors sel_before = get_selectors();

	int r = avx512 ? regs_loop_avx512() : regs_loop_avx();

	if (r != 0) {
		if (fail_idx >= F_VEC && fail_idx < F_VEC + 32) {
			char got[140], want[140];
			size_t n = avx512 ? 64 : 32;
			hex(got, fail_vec, n);
			hex(want, pat_vec[fail_idx - F_VEC], n);
			v_fail("%s%lu holds %s, expected %s (round %lu)", avx512 ? "zmm" : "ymm",
			       (unsigned long)(fail_idx - F_VEC), got, want, (unsigned long)rounds);
		} else if (fail_idx < 16) {
			v_fail("%s holds %#lx, expected %#lx (round %lu)", reg_name(fail_idx),
			       (unsigned long)fail_val, (unsigned long)pat_gpr[fail_idx],
			       (unsigned long)rounds);
		} else if (fail_idx >= F_K && fail_idx < F_K + 8) {
			v_fail("k%lu holds %#lx, expected %#lx (round %lu)",
			       (unsigned long)(fail_idx - F_K), (unsigned long)fail_val,
			       (unsigned long)pat_k[fail_idx - F_K], (unsigned long)rounds);
		} else if (fail_idx == F_RSP) {
			v_fail("rsp holds %#lx, expected %#lx", (unsigned long)fail_val,
			       (unsigned long)saved_rsp);
		} else {
			v_fail("%s changed (round %lu)", reg_name(fail_idx), (unsigned long)rounds);
		}
	} else {
		compare_fxsave();
	}

	uint64_t fs_after = get_base(ARCH_GET_FS), gs_after = get_base(ARCH_GET_GS);
	if (fs_after != fs_before)
		v_fail("fs base was %#lx, now %#lx", (unsigned long)fs_before, (unsigned long)fs_after);
	if (gs_after != (uint64_t)(uintptr_t)gs_area)
		v_fail("gs base was %p, now %#lx", (void *)gs_area, (unsigned long)gs_after);
	if (tls_word != pat_gpr[1])
		v_fail("__thread variable holds %#lx, expected %#lx", (unsigned long)tls_word,
		       (unsigned long)pat_gpr[1]);
	struct selectors sel_after = get_selectors();
#define SEL(x)                                                                              \
	if (sel_before.x != sel_after.x)                                                    \
		v_fail("segment selector " #x " was %#x, now %#x", sel_before.x, sel_after.x);
	SEL(cs)
	SEL(ss)
	SEL(ds)
	SEL(es)
	SEL(fs)
	SEL(gs)
	if (rounds < 2)
		v_fail("the check loop ran only %lu rounds", (unsigned long)rounds);
	v_finish();
}
