// SPDX-License-Identifier: MIT
/*
 * Benchmarks of panfrost on the GPU it finds (rig's emulated Mali): each runs
 * for a fixed time and prints its rate as "# bench: NAME RATE UNIT" for
 * bench/bench_mali.py. They run only when named (--run 'panfrost_bench.*').
 *
 * get-param-ioctls is the baseline the others are divided by: a DRM ioctl
 * that neither allocates nor touches the GPU, on the same guest, so the
 * ratios say what a job or a fault costs beyond entering the driver.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>

#include "harness.h"
#include "panfrost.h"
#include "tests.h"

#define BENCH_MS 3000
/* jobs in flight at once: the scheduler and the GPU stay busy while the
 * next submits are made */
#define NULL_JOB_BATCH 16
/* a heap BO of this many 2 MiB chunks, each faulted in by one job */
#define HEAP_CHUNKS 8
#define WAIT_MS 5000

static void report(const char *name, unsigned long count, uint64_t ns, const char *unit)
{
	diag("bench: %s %.1f %s (%lu in %.3f s)", name, count / (ns / 1e9), unit, count, ns / 1e9);
}

void bench_get_param(void)
{
	int fd = pan_open();
	uint64_t start = now_ns(), value, elapsed;
	unsigned long n = 0;

	do {
		CHECK_RET(pan_try_get_param(fd, DRM_PANFROST_PARAM_GPU_PROD_ID, 0, &value), 0);
		n++;
	} while ((elapsed = now_ns() - start) < BENCH_MS * 1000000ull);
	report("get-param-ioctls", n, elapsed, "ioctls/s");
	close(fd);
}

void bench_null_jobs(void)
{
	int fd = pan_open();
	struct pan_bo job = pan_create_bo(fd, SZ_4K, 0);
	uint32_t sync = syncobj_create(fd);
	uint64_t start, elapsed;
	unsigned long n = 0;
	unsigned int i;

	pan_map_bo(fd, &job);
	/* the GPU only writes the header's status back: one descriptor serves all */
	job_null(&job, 0);
	start = now_ns();
	do {
		for (i = 0; i < NULL_JOB_BATCH; i++)
			pan_submit(fd, &(struct pan_submit){ .jc = job_va(&job, 0),
							     .bos = &job.handle, .nbos = 1,
							     .out_sync = sync });
		CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(WAIT_MS)),
			"a batch of %u NULL jobs did not end within %.0f ms", NULL_JOB_BATCH,
			WAIT_MS * time_scale);
		CHECK_F(syncobj_fence_status(fd, sync) == 1, "a NULL job failed");
		n += NULL_JOB_BATCH;
	} while ((elapsed = now_ns() - start) < BENCH_MS * 1000000ull);
	report("null-jobs", n, elapsed, "jobs/s");
	pan_close_bo(fd, &job);
	close(fd);
}

void bench_heap_faults(void)
{
	int fd = pan_open();
	struct pan_bo job = pan_create_bo(fd, SZ_4K, 0);
	uint32_t sync = syncobj_create(fd);
	uint64_t start, elapsed;
	unsigned long faults = 0, failed = 0;
	unsigned int i;

	pan_map_bo(fd, &job);
	start = now_ns();
	do {
		struct pan_bo heap = pan_create_bo(fd, HEAP_CHUNKS * SZ_2M,
						   PANFROST_BO_HEAP | PANFROST_BO_NOEXEC);
		uint32_t bos[2] = { job.handle, heap.handle };
		struct mali_job_header *h = NULL;

		for (i = 0; i < HEAP_CHUNKS; i++) {
			struct mali_job_header *next =
				job_write_value(&job, i * MALI_JOB_STRIDE, heap.offset + i * SZ_2M,
						MALI_WRITE_IMMEDIATE_32, i);

			next->index = i + 1;
			if (h)
				h->next = job_va(&job, i * MALI_JOB_STRIDE);
			h = next;
		}
		pan_submit(fd, &(struct pan_submit){ .jc = job_va(&job, 0), .bos = bos, .nbos = 2,
						     .out_sync = sync });
		CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(WAIT_MS)),
			"a chain of %u heap faults did not end within %.0f ms", HEAP_CHUNKS,
			WAIT_MS * time_scale);
		/* a chain the scheduler timed out still counts its time: the rate is
		 * what a user would get */
		if (syncobj_fence_status(fd, sync) == 1)
			faults += HEAP_CHUNKS;
		else
			failed++;
		pan_close_bo(fd, &heap);
	} while ((elapsed = now_ns() - start) < BENCH_MS * 1000000ull);
	if (failed)
		diag("%lu chains of heap faults did not complete", failed);
	report("heap-faults", faults, elapsed, "faults/s");
	pan_close_bo(fd, &job);
	close(fd);
}
