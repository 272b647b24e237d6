// SPDX-License-Identifier: MIT
/*
 * rig's test harness for guest programs; see harness.h.
 *
 * Each subtest runs in a child process of its own, in its own process group:
 * a crash or a hang ends that subtest only (the parent kills the group after
 * --timeout), and the child, not the parent, writes the start marker to the
 * kernel log, so the printk caller id of the marker is the task that does the
 * subtest's work (rig attributes a report to the last test its task started).
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define EXIT_SKIP 77
#define INDENT "    "
/* The marker rig's attribution reads: "rig: start ktap:<suite>.<subtest>". */
#define MARKER_KIND "ktap:"

double time_scale = 1.0;

/* What a child leaves for its parent: the skip reason or the failure. */
struct outcome {
	char message[1024];
};

static struct outcome *outcome;
/* Where the markers go; NULL when it cannot be written. */
static const char *kmsg_path;
/* The process group of the subtest running now, 0 between subtests. */
static volatile sig_atomic_t running_group;

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int64_t ms_to_ns(double ms)
{
	return (int64_t)(ms * time_scale * 1e6);
}

void sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000l };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void vdiag(const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];
	char *p, *nl;

	vsnprintf(line, sizeof(line), fmt, ap);
	/* one "# " line per line of the message, at the subtest's level */
	for (p = line; p; p = nl) {
		nl = strchr(p, '\n');
		if (nl)
			*nl++ = '\0';
		printf(INDENT "# %s%s\n", prefix, p);
	}
	fflush(stdout);
}

void diag(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag("", fmt, ap);
	va_end(ap);
}

void fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag("FAIL: ", fmt, ap);
	va_end(ap);
	va_start(ap, fmt);
	if (outcome)
		vsnprintf(outcome->message, sizeof(outcome->message), fmt, ap);
	va_end(ap);
	exit(1);
}

void skip(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (outcome)
		vsnprintf(outcome->message, sizeof(outcome->message), fmt, ap);
	va_end(ap);
	exit(EXIT_SKIP);
}

/*
 * One open per marker: /dev/kmsg rate-limits what is written through one open
 * file (10 lines per 5 s unless printk.devkmsg=on), which a run of quick
 * subtests would exceed, silently losing markers.
 */
static void kmsg(const char *what, const struct subtest *t)
{
	char line[256];
	int fd, len;

	if (!kmsg_path)
		return;
	fd = open(kmsg_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	if (fd < 0)
		return;
	len = snprintf(line, sizeof(line), "rig: %s " MARKER_KIND "%s.%s\n",
		       what, t->suite, t->name);
	/* rig still gets the results should this fail; only attribution suffers */
	if (write(fd, line, len) < 0)
		kmsg_path = NULL;
	close(fd);
}

static bool selected(const struct subtest *t, char **globs, int nglobs)
{
	char full[256];
	int i;

	if (!nglobs)
		return !t->manual;
	snprintf(full, sizeof(full), "%s.%s", t->suite, t->name);
	for (i = 0; i < nglobs; i++)
		if (!fnmatch(globs[i], full, 0) || !fnmatch(globs[i], t->name, 0))
			return true;
	return false;
}

/*
 * A program killed from outside (rig's timeout, Ctrl-C) takes the running
 * subtest with it: a GPU job loop left behind would outlive the run.
 */
static void end_with_subtest(int sig)
{
	if (running_group > 0)
		kill(-running_group, SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

enum result { RESULT_PASS, RESULT_FAIL, RESULT_SKIP };

/* The single-line form of a message, for a KTAP result line's reason. */
static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '#')
			*s = *s == '#' ? '_' : ' ';
}

static enum result run_one(const struct subtest *t, unsigned int number,
			   double timeout_s)
{
	uint64_t started = now_ns();
	uint64_t deadline = started + (uint64_t)(timeout_s * 1e9);
	bool timed_out = false;
	enum result result;
	sigset_t ending, before;
	int status = 0;
	pid_t pid;

	memset(outcome, 0, sizeof(*outcome));
	/* should the program be killed while this runs, rig knows which subtest it was */
	printf(INDENT "# start: %s\n", t->name);
	fflush(stdout);
	/*
	 * A termination signal waits until running_group names the child: the
	 * child may run (and say it started) before fork() returns here, and a
	 * signal handled in between would leave it running with our stdout.
	 */
	sigemptyset(&ending);
	sigaddset(&ending, SIGTERM);
	sigaddset(&ending, SIGINT);
	sigaddset(&ending, SIGHUP);
	sigprocmask(SIG_BLOCK, &ending, &before);
	pid = fork();
	if (pid < 0) {
		sigprocmask(SIG_SETMASK, &before, NULL);
		printf(INDENT "# fork: %s\n" INDENT "not ok %u %s\n", strerror(errno),
		       number, t->name);
		return RESULT_FAIL;
	}
	if (pid == 0) {
		signal(SIGTERM, SIG_DFL);
		signal(SIGINT, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		setpgid(0, 0);
		sigprocmask(SIG_SETMASK, &before, NULL);
		kmsg("start", t);
		t->run();
		exit(0);
	}
	setpgid(pid, pid);
	running_group = pid;
	sigprocmask(SIG_SETMASK, &before, NULL);
	for (;;) {
		pid_t done = waitpid(pid, &status, WNOHANG);

		if (done == pid)
			break;
		if (done < 0 && errno != EINTR) {
			status = -1;
			break;
		}
		if (now_ns() > deadline) {
			timed_out = true;
			kill(-pid, SIGKILL);
			waitpid(pid, &status, 0);
			break;
		}
		sleep_ms(10);
	}
	/* children the subtest left behind go with it */
	kill(-pid, SIGKILL);
	running_group = 0;
	kmsg("end", t);

	if (timed_out) {
		printf(INDENT "# timed out after %.0f s\n", timeout_s);
		result = RESULT_FAIL;
	} else if (WIFSIGNALED(status)) {
		printf(INDENT "# killed by signal %d (%s)\n", WTERMSIG(status),
		       strsignal(WTERMSIG(status)));
		result = RESULT_FAIL;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		result = RESULT_PASS;
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIP) {
		result = RESULT_SKIP;
	} else {
		if (!outcome->message[0])
			printf(INDENT "# exit status %d\n", WIFEXITED(status) ?
			       WEXITSTATUS(status) : -1);
		result = RESULT_FAIL;
	}
	one_line(outcome->message);
	/* KTAP lines carry no time: rig reads a subtest's duration from this line */
	printf(INDENT "# duration: %.3f s\n", (now_ns() - started) / 1e9);
	if (result == RESULT_SKIP)
		printf(INDENT "ok %u %s # SKIP %s\n", number, t->name, outcome->message);
	else
		printf(INDENT "%s %u %s\n", result == RESULT_PASS ? "ok" : "not ok",
		       number, t->name);
	fflush(stdout);
	return result;
}

static void usage(const char *program, FILE *to)
{
	fprintf(to,
		"usage: %s [--list] [--run GLOB]... [--timeout S] [--time-scale F] [--kmsg FILE]\n"
		"  --list          the subtests, as SUITE.SUBTEST, with what each does\n"
		"  --run GLOB      only subtests whose SUITE.SUBTEST or SUBTEST matches (repeatable);\n"
		"                  the benchmarks run only when named so\n"
		"  --timeout S     a subtest still running after S seconds fails (default 120)\n"
		"  --time-scale F  multiply the subtests' time windows by F (default 1)\n"
		"  --kmsg FILE     where the subtest markers go (default /dev/kmsg)\n"
		"Prints KTAP; exit status 0 when no subtest failed, 1 otherwise, 2 for bad usage.\n",
		program);
}

int harness_main(const struct harness *h, int argc, char **argv)
{
	static const struct option options[] = {
		{ "list", no_argument, NULL, 'l' },
		{ "run", required_argument, NULL, 'r' },
		{ "timeout", required_argument, NULL, 't' },
		{ "time-scale", required_argument, NULL, 's' },
		{ "kmsg", required_argument, NULL, 'k' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char **globs = calloc(argc, sizeof(*globs));
	unsigned int i, j, suites = 0, suite_no = 0;
	const char *markers = "/dev/kmsg";
	double timeout_s = 120.0;
	bool list = false, any_fail = false;
	const char *skip_all;
	int nglobs = 0, opt, kmsg_fd, kmsg_errno;
	char *end;

	while ((opt = getopt_long(argc, argv, "lr:t:s:k:h", options, NULL)) != -1) {
		switch (opt) {
		case 'l':
			list = true;
			break;
		case 'r':
			globs[nglobs++] = optarg;
			break;
		case 't':
			timeout_s = strtod(optarg, &end);
			if (*end || timeout_s <= 0) {
				fprintf(stderr, "%s: --timeout %s: not a positive number of seconds\n",
					h->program, optarg);
				return 2;
			}
			break;
		case 's':
			time_scale = strtod(optarg, &end);
			if (*end || time_scale <= 0) {
				fprintf(stderr, "%s: --time-scale %s: not a positive number\n",
					h->program, optarg);
				return 2;
			}
			break;
		case 'k':
			markers = optarg;
			break;
		case 'h':
			usage(h->program, stdout);
			return 0;
		default:
			usage(h->program, stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", h->program, argv[optind]);
		usage(h->program, stderr);
		return 2;
	}

	bool *chosen = calloc(h->count, sizeof(*chosen));
	unsigned int nchosen = 0;

	for (i = 0; i < h->count; i++) {
		chosen[i] = selected(&h->tests[i], globs, nglobs);
		nchosen += chosen[i];
	}
	if (!nchosen) {
		fprintf(stderr, "%s: no subtest matches", h->program);
		for (i = 0; i < (unsigned int)nglobs; i++)
			fprintf(stderr, " '%s'", globs[i]);
		fprintf(stderr, " (see --list)\n");
		return 2;
	}
	if (list) {
		/* the whole list names the manual ones too: that is how they are found */
		for (i = 0; i < h->count; i++)
			if (chosen[i] || (!nglobs && h->tests[i].manual))
				printf("%s.%s\t%s%s\n", h->tests[i].suite, h->tests[i].name,
				       h->tests[i].what,
				       h->tests[i].manual ? " (runs only when named by --run)" : "");
		return 0;
	}

	outcome = mmap(NULL, sizeof(*outcome), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (outcome == MAP_FAILED) {
		fprintf(stderr, "%s: mmap: %s\n", h->program, strerror(errno));
		return 1;
	}
	signal(SIGTERM, end_with_subtest);
	signal(SIGINT, end_with_subtest);
	signal(SIGHUP, end_with_subtest);
	kmsg_fd = open(markers, O_WRONLY | O_APPEND | O_CLOEXEC);
	kmsg_errno = errno;
	if (kmsg_fd >= 0) {
		kmsg_path = markers;
		close(kmsg_fd);
	}

	/* a suite is a run of consecutive subtests with the same suite name */
	for (i = 0; i < h->count; i = j) {
		bool any = false;

		for (j = i; j < h->count && !strcmp(h->tests[j].suite, h->tests[i].suite); j++)
			any |= chosen[j];
		suites += any;
	}

	printf("KTAP version 1\n");
	skip_all = h->probe();
	if (h->describe && !skip_all)
		h->describe();
	if (!kmsg_path && !skip_all)
		printf("# %s: %s (no subtest markers in the kernel log)\n", markers,
		       strerror(kmsg_errno));
	printf("1..%u\n", suites);
	fflush(stdout);

	for (i = 0; i < h->count; i = j) {
		const char *suite = h->tests[i].suite;
		unsigned int n = 0, number = 0, failed = 0, skipped = 0;

		for (j = i; j < h->count && !strcmp(h->tests[j].suite, suite); j++)
			n += chosen[j];
		if (!n)
			continue;
		printf(INDENT "KTAP version 1\n" INDENT "# Subtest: %s\n" INDENT "1..%u\n",
		       suite, n);
		for (j = i; j < h->count && !strcmp(h->tests[j].suite, suite); j++) {
			enum result r;

			if (!chosen[j])
				continue;
			number++;
			if (skip_all) {
				printf(INDENT "ok %u %s # SKIP %s\n", number, h->tests[j].name,
				       skip_all);
				skipped++;
				continue;
			}
			r = run_one(&h->tests[j], number, timeout_s);
			failed += r == RESULT_FAIL;
			skipped += r == RESULT_SKIP;
		}
		suite_no++;
		if (failed)
			printf("not ok %u %s\n", suite_no, suite);
		else if (skipped == n)
			printf("ok %u %s # SKIP every subtest skipped\n", suite_no, suite);
		else
			printf("ok %u %s\n", suite_no, suite);
		fflush(stdout);
		any_fail |= failed > 0;
	}
	return any_fail ? 1 : 0;
}
