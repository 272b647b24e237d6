// SPDX-License-Identifier: MIT
/*
 * A program on rig's guest test harness (images/programs/panfrost/harness.c)
 * with one subtest per way a subtest can end, for tests/unit/test_ktap_program.py.
 */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "harness.h"

static void passes(void)
{
	diag("all good");
}

static void fails(void)
{
	int value = 3;

	diag("about to check");
	CHECK_F(value == 4, "value is %d", value);
}

static void skips(void)
{
	skip("needs a second KMS device");
}

static void crashes(void)
{
	raise(SIGSEGV);
}

static void hangs(void)
{
	for (;;)
		pause();
}

static void returns_error(void)
{
	CHECK_RET(-22, -14);
}

static const struct subtest tests[] = {
	{ "suite_a", "passes", passes, "returns", false },
	{ "suite_a", "fails", fails, "a CHECK fails", false },
	{ "suite_a", "skips", skips, "skips with a reason", false },
	{ "suite_b", "crashes", crashes, "SIGSEGV", false },
	{ "suite_b", "hangs", hangs, "never returns", false },
	{ "suite_b", "returns-error", returns_error, "an ioctl-style -errno check", false },
	{ "suite_c", "manual", passes, "runs only when named", true },
};

static const char *probe(void)
{
	return getenv("SELFTEST_SKIP_ALL");
}

int main(int argc, char **argv)
{
	static const struct harness h = {
		.program = "harness-selftest",
		.tests = tests,
		.count = sizeof(tests) / sizeof(tests[0]),
		.probe = probe,
	};

	return harness_main(&h, argc, argv);
}
