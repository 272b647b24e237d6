/* SPDX-License-Identifier: MIT */
/*
 * rig's test harness for guest programs: subtests run one per child process,
 * results printed as KTAP (what rig's parser and KUnit use), and markers on the
 * kernel log around each subtest, so rig blames kernel reports on the subtest
 * that was running.
 *
 * A subtest is a function that returns normally to pass, or ends through
 * fail()/skip() (or a CHECK macro), which exit the child process.
 */
#ifndef RIG_HARNESS_H
#define RIG_HARNESS_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct subtest {
	const char *suite;	/* IGT's binary name for IGT's subtests */
	const char *name;
	void (*run)(void);
	const char *what;	/* one line for --list */
	/* Runs only when a --run glob names it (benchmarks: minutes of GPU time
	 * that prove nothing a plain run needs). */
	bool manual;
};

/* What the program's main gives the harness. */
struct harness {
	const char *program;
	const struct subtest *tests;
	unsigned int count;
	/* Called once before any subtest runs; returns NULL when the subtests can
	 * run, else why every one of them is skipped. */
	const char *(*probe)(void);
	/* Lines of "# ..." context printed after the KTAP header (may be NULL). */
	void (*describe)(void);
};

int harness_main(const struct harness *h, int argc, char **argv);

/* Inside a subtest (the child process). */
void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Multiplies the subtests' time windows (--time-scale): IGT's windows are for
 * real hardware, an emulated GPU under a debug kernel may need more. */
extern double time_scale;

uint64_t now_ns(void);
int64_t ms_to_ns(double ms);
void sleep_ms(unsigned int ms);

#define CHECK(cond)							\
	do {								\
		if (!(cond))						\
			fail("%s:%d: check failed: %s", __FILE__,	\
			     __LINE__, #cond);				\
	} while (0)

#define CHECK_F(cond, fmt, ...)						\
	do {								\
		if (!(cond))						\
			fail("%s:%d: check failed: %s: " fmt, __FILE__,	\
			     __LINE__, #cond, ##__VA_ARGS__);		\
	} while (0)

/* A call returning 0 or -errno must return `want` (0, or a negative errno). */
#define CHECK_RET(call, want)						\
	do {								\
		int ret__ = (call);					\
		if (ret__ != (want))					\
			fail("%s:%d: %s returned %d (%s), expected %d (%s)", \
			     __FILE__, __LINE__, #call, ret__,		\
			     strerror(-ret__), (want), strerror(-(want))); \
	} while (0)

#endif
