// SPDX-License-Identifier: MIT
/*
 * rig's own panfrost subtests: the paths IGT does not reach and the GEM shmem
 * series rig exists for touch: heap BOs growing on GPU faults, madvise and
 * the shrinker's purge, address-space stealing, runtime PM between jobs, a
 * PRIME-imported buffer used by a job, closing with jobs queued, and the
 * scheduler's timeout and reset.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <drm/drm_mode.h>

#include "harness.h"
#include "panfrost.h"
#include "tests.h"

/* panfrost's runtime-PM autosuspend delay is 50 ms: sleeping longer between
 * jobs lets the GPU suspend, so each job resumes (and resets) it */
#define AUTOSUSPEND_GAP_MS 200
/* The scheduler gives a job 500 ms; the reset after it runs under emulation
 * with debug options, so rig's own windows are wide (IGT's are not). */
#define TIMEOUT_AND_RESET_MS 5000

static uint32_t read32(const struct pan_bo *bo, uint32_t at)
{
	return *(volatile uint32_t *)((char *)bo->map + at);
}

void test_heap_fault_growth(void)
{
	/* four 2 MiB chunks, each first touched by a GPU write: four faults,
	 * each mapping a chunk of the heap */
	static const uint32_t targets[] = {
		0x40, SZ_2M + 0x1040, 2 * SZ_2M + 0x2080, 4 * SZ_2M - 4,
	};
	const unsigned int n = sizeof(targets) / sizeof(targets[0]);
	int fd = pan_open();
	struct pan_bo heap, job;
	struct mali_job_header *h[8];
	uint32_t sync = syncobj_create(fd), bos[2];
	uint64_t offset;
	unsigned int i, round;

	CHECK_RET(pan_try_create_bo(fd, 4 * SZ_2M, PANFROST_BO_HEAP, &heap), -EINVAL);
	heap = pan_create_bo(fd, 4 * SZ_2M, PANFROST_BO_HEAP | PANFROST_BO_NOEXEC);
	/* heap pages are not pinned: no CPU mapping */
	CHECK_RET(pan_try_mmap_offset(fd, heap.handle, &offset), -EINVAL);
	diag("heap BO of %u MiB at GPU VA 0x%llx", heap.size >> 20,
	     (unsigned long long)heap.offset);

	job = pan_create_bo(fd, SZ_4K, 0);
	pan_map_bo(fd, &job);
	bos[0] = job.handle;
	bos[1] = heap.handle;
	/* round 0 faults each chunk in; round 1 writes where it is mapped already */
	for (round = 0; round < 2; round++) {
		for (i = 0; i < n; i++) {
			h[i] = job_write_value(&job, i * MALI_JOB_STRIDE, heap.offset + targets[i],
					       MALI_WRITE_IMMEDIATE_32, 0x4ea90000 | (round << 8) | i);
			h[i]->index = i + 1;
			if (i)
				h[i - 1]->next = job_va(&job, i * MALI_JOB_STRIDE);
		}
		pan_submit(fd, &(struct pan_submit){ .jc = job_va(&job, 0), .bos = bos,
						     .nbos = 2, .out_sync = sync });
		CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(TIMEOUT_AND_RESET_MS)),
			"round %u: the chain of %u heap writes did not end within %.0f ms",
			round, n, TIMEOUT_AND_RESET_MS * time_scale);
		for (i = 0; i < n; i++) {
			CHECK_F(h[i]->exception_status == MALI_EXCEPTION_DONE,
				"round %u: heap write at +0x%x: exception_status 0x%x", round,
				targets[i], h[i]->exception_status);
		}
		CHECK_F(syncobj_fence_status(fd, sync) == 1,
			"round %u: the chain's fence has error %d", round,
			syncobj_fence_status(fd, sync));
	}
	pan_close_bo(fd, &job);
	pan_close_bo(fd, &heap);
	close(fd);
}

static void fill(struct pan_bo *bo, uint32_t seed)
{
	uint32_t *p = bo->map, i;

	for (i = 0; i < bo->size / 4; i++)
		p[i] = seed ^ (i * 0x9e3779b1u);
}

static void check_fill(const struct pan_bo *bo, uint32_t seed, const char *what)
{
	const volatile uint32_t *p = bo->map;
	uint32_t i;

	for (i = 0; i < bo->size / 4; i++)
		CHECK_F(p[i] == (seed ^ (i * 0x9e3779b1u)), "%s: word %u is 0x%08x", what, i, p[i]);
}

void test_madvise_retained(void)
{
	int fd = pan_open();
	struct pan_bo bo = pan_create_bo(fd, 16 * SZ_4K, 0);
	uint32_t retained;

	/* (panfrost does not check the madv value: only known values are sent) */
	CHECK_RET(pan_try_madvise(fd, 0xdead, PANFROST_MADV_DONTNEED, &retained), -ENOENT);

	pan_map_bo(fd, &bo);
	fill(&bo, 0x5eed);
	CHECK_RET(pan_try_madvise(fd, bo.handle, PANFROST_MADV_DONTNEED, &retained), 0);
	CHECK_F(retained == 1, "DONTNEED on a BO with pages: retained %u", retained);
	CHECK_RET(pan_try_madvise(fd, bo.handle, PANFROST_MADV_WILLNEED, &retained), 0);
	CHECK_F(retained == 1, "WILLNEED without pressure: retained %u", retained);
	check_fill(&bo, 0x5eed, "after DONTNEED and WILLNEED");

	/* the BO is still mapped on the GPU: a job writes into it */
	run_write32(fd, bo.offset + 0x100, bo.handle, 0xa11ce5, 1000);
	CHECK_F(read32(&bo, 0x100) == 0xa11ce5, "the job's write reads back as 0x%08x",
		read32(&bo, 0x100));
	pan_close_bo(fd, &bo);
	close(fd);
}

void test_madvise_purge(void)
{
	enum { NBOS = 16, BO_SIZE = 256 * SZ_4K };
	int fd = pan_open();
	struct pan_bo bos[NBOS], keep, fresh;
	uint32_t retained, purged = 0, i, tries;

	keep = pan_create_bo(fd, BO_SIZE, 0);
	pan_map_bo(fd, &keep);
	fill(&keep, 0x6ee9);
	for (i = 0; i < NBOS; i++) {
		bos[i] = pan_create_bo(fd, BO_SIZE, 0);
		pan_map_bo(fd, &bos[i]);
		fill(&bos[i], i);
		/* no CPU mapping left: a purge need not zap one */
		munmap(bos[i].map, bos[i].size);
		bos[i].map = NULL;
		CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_DONTNEED, &retained), 0);
	}

	/* the shrinker purges DONTNEED BOs it can lock; a busy one waits for the next call */
	for (tries = 0; tries < 5 && purged < NBOS; tries++) {
		if (!drop_caches())
			skip("cannot write /proc/sys/vm/drop_caches (not root?)");
		sleep_ms(50);
		for (i = 0, purged = 0; i < NBOS; i++) {
			CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_DONTNEED,
						  &retained), 0);
			purged += !retained;
		}
	}
	diag("%u of %u DONTNEED BOs purged after %u drop_caches", purged, NBOS, tries);
	CHECK_F(purged > 0, "the shrinker purged none of %u DONTNEED BOs", NBOS);
	for (i = 0; i < NBOS; i++) {
		CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_WILLNEED, &retained), 0);
		pan_close_bo(fd, &bos[i]);
	}

	/* what was not DONTNEED keeps its pages and its contents */
	CHECK_RET(pan_try_madvise(fd, keep.handle, PANFROST_MADV_WILLNEED, &retained), 0);
	CHECK_F(retained == 1, "a WILLNEED BO lost its pages to the shrinker");
	check_fill(&keep, 0x6ee9, "the WILLNEED BO after the purge");

	/* the purges tore down GPU mappings; new BOs map and jobs write again */
	fresh = pan_create_bo(fd, BO_SIZE, 0);
	pan_map_bo(fd, &fresh);
	run_write32(fd, fresh.offset + BO_SIZE - 4, fresh.handle, 0xf4e54, 1000);
	CHECK_F(read32(&fresh, BO_SIZE - 4) == 0xf4e54, "the job's write reads back as 0x%08x",
		read32(&fresh, BO_SIZE - 4));
	run_write32(fd, keep.offset, keep.handle, 0x6ee9, 1000);
	CHECK_F(read32(&keep, 0) == 0x6ee9, "the job's write to the kept BO reads back as 0x%08x",
		read32(&keep, 0));
	pan_close_bo(fd, &fresh);
	pan_close_bo(fd, &keep);
	close(fd);
}

void test_as_steal(void)
{
	enum { MAX_CLIENTS = 24 };
	struct {
		int fd;
		struct pan_bo target, job;
		struct mali_job_header *h;
		uint32_t sync;
	} c[MAX_CLIENTS];
	uint64_t as_present = 0;
	unsigned int n, i, round, spaces;
	int fd = pan_open();

	CHECK_RET(pan_try_get_param(fd, DRM_PANFROST_PARAM_AS_PRESENT, 0, &as_present), 0);
	close(fd);
	spaces = __builtin_popcountll(as_present);
	/* more clients than address spaces: later ones take an idle one's AS */
	n = spaces + 4 < MAX_CLIENTS ? spaces + 4 : MAX_CLIENTS;
	diag("%u address spaces (AS_PRESENT 0x%llx), %u clients", spaces,
	     (unsigned long long)as_present, n);
	for (i = 0; i < n; i++) {
		c[i].fd = pan_open();
		c[i].target = pan_create_bo(c[i].fd, SZ_4K, 0);
		pan_map_bo(c[i].fd, &c[i].target);
		c[i].job = pan_create_bo(c[i].fd, SZ_4K, 0);
		pan_map_bo(c[i].fd, &c[i].job);
		c[i].sync = syncobj_create(c[i].fd);
	}
	for (round = 0; round < 3; round++) {
		/* all clients' jobs in flight at once, in a different order each round */
		for (i = 0; i < n; i++) {
			unsigned int k = round == 1 ? n - 1 - i : i;
			uint32_t bos[2] = { c[k].job.handle, c[k].target.handle };

			c[k].h = job_write_value(&c[k].job, 0, c[k].target.offset + 4 * round,
						 MALI_WRITE_IMMEDIATE_32, 0xa5000000 | round << 8 | k);
			pan_submit(c[k].fd, &(struct pan_submit){ .jc = job_va(&c[k].job, 0),
								  .bos = bos, .nbos = 2,
								  .out_sync = c[k].sync });
		}
		for (i = 0; i < n; i++) {
			CHECK_F(!syncobj_wait(c[i].fd, c[i].sync, ms_to_ns(TIMEOUT_AND_RESET_MS)),
				"round %u: client %u's job did not end", round, i);
			check_done(c[i].h, "client's WRITE_VALUE job");
			CHECK_F(read32(&c[i].target, 4 * round) == (0xa5000000 | round << 8 | i),
				"round %u: client %u reads 0x%08x: a write went to another address space",
				round, i, read32(&c[i].target, 4 * round));
		}
	}
	for (i = 0; i < n; i++)
		close(c[i].fd);
}

/* The GPU's runtime PM file `name` in sysfs, or "" when it has none. */
static void read_power(const char *name, char *out, size_t len)
{
	const char *node = strrchr(pan_device_path, '/') + 1;
	char path[160];
	ssize_t got;
	int fd;

	out[0] = '\0';
	snprintf(path, sizeof(path), "/sys/class/drm/%s/device/power/%s", node, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	got = read(fd, out, len - 1);
	close(fd);
	out[got > 0 ? got : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
}

void test_runtime_pm_churn(void)
{
	enum { JOBS = 8 };
	int fd = pan_open();
	struct pan_bo target = pan_create_bo(fd, SZ_4K, 0);
	char status[32], before[32], after[32];
	unsigned int i, suspended = 0;
	bool pm;

	pan_map_bo(fd, &target);
	read_power("runtime_status", status, sizeof(status));
	read_power("runtime_suspended_time", before, sizeof(before));
	pm = status[0] && strcmp(status, "unsupported");
	if (!pm)
		diag("no runtime PM for the GPU (runtime_status '%s'): jobs only", status);
	for (i = 0; i < JOBS; i++) {
		sleep_ms(AUTOSUSPEND_GAP_MS);
		read_power("runtime_status", status, sizeof(status));
		suspended += !strcmp(status, "suspended");
		run_write32(fd, target.offset + 4 * i, target.handle, 0x9e000000 | i, 1000);
		CHECK_F(read32(&target, 4 * i) == (0x9e000000 | i),
			"job %u after an idle gap: reads 0x%08x", i, read32(&target, 4 * i));
	}
	read_power("runtime_suspended_time", after, sizeof(after));
	diag("GPU found suspended before %u of %u jobs; runtime_suspended_time %s -> %s ms",
	     suspended, JOBS, before, after);
	if (pm) {
		CHECK_F(suspended > 0, "the GPU never autosuspended in %u gaps of %u ms", JOBS,
			AUTOSUSPEND_GAP_MS);
		CHECK_F(strtoull(after, NULL, 10) > strtoull(before, NULL, 10),
			"runtime_suspended_time did not grow (%s -> %s)", before, after);
	}
	pan_close_bo(fd, &target);
	close(fd);
}

void test_prime_import_job(void)
{
	struct drm_mode_create_dumb dumb = { .width = 1024, .height = 1024, .bpp = 32 };
	struct drm_prime_handle exp = { .flags = DRM_CLOEXEC | DRM_RDWR };
	struct drm_prime_handle imp = { 0 };
	struct drm_mode_map_dumb map = { 0 };
	struct pan_bo job;
	struct mali_job_header *a, *b;
	int fd = pan_open(), kms_fd;
	uint32_t sync, bos[2];
	volatile uint32_t *cpu;
	uint64_t offset;
	char name[64];

	kms_fd = open_other_kms_card(name, sizeof(name));
	if (kms_fd < 0)
		skip("no second DRM device with dumb buffers and PRIME export (vkms)");
	CHECK_F(!ioctl(kms_fd, DRM_IOCTL_MODE_CREATE_DUMB, &dumb),
		"CREATE_DUMB on %s: %s", name, strerror(errno));
	map.handle = dumb.handle;
	CHECK_F(!ioctl(kms_fd, DRM_IOCTL_MODE_MAP_DUMB, &map), "MAP_DUMB: %s", strerror(errno));
	cpu = mmap(NULL, dumb.size, PROT_READ | PROT_WRITE, MAP_SHARED, kms_fd, map.offset);
	CHECK_F(cpu != MAP_FAILED, "mmap of the dumb buffer: %s", strerror(errno));
	exp.handle = dumb.handle;
	CHECK_F(!ioctl(kms_fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, &exp), "PRIME export: %s",
		strerror(errno));
	imp.fd = exp.fd;
	CHECK_F(!ioctl(fd, DRM_IOCTL_PRIME_FD_TO_HANDLE, &imp), "PRIME import: %s",
		strerror(errno));
	/* the exporter's pages stay referenced through the import alone */
	close(exp.fd);
	CHECK_RET(pan_try_get_bo_offset(fd, imp.handle, &offset), 0);

	job = pan_create_bo(fd, SZ_4K, 0);
	pan_map_bo(fd, &job);
	a = job_write_value(&job, 0, offset + 0x100, MALI_WRITE_IMMEDIATE_32, 0x1f0a7ed);
	b = job_write_value(&job, MALI_JOB_STRIDE, offset + dumb.size - 4,
			    MALI_WRITE_IMMEDIATE_32, 0xe0f);
	a->next = job_va(&job, MALI_JOB_STRIDE);
	b->index = 2;
	sync = syncobj_create(fd);
	bos[0] = job.handle;
	bos[1] = imp.handle;
	pan_submit(fd, &(struct pan_submit){ .jc = job_va(&job, 0), .bos = bos, .nbos = 2,
					     .out_sync = sync });
	CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(1000)),
		"the jobs writing the imported buffer did not end within %.0f ms",
		1000 * time_scale);
	check_done(a, "first write into the imported buffer");
	check_done(b, "last write into the imported buffer");
	CHECK_F(cpu[0x100 / 4] == 0x1f0a7ed && cpu[dumb.size / 4 - 1] == 0xe0f,
		"the %s dumb buffer reads 0x%08x and 0x%08x after the GPU wrote it", name,
		cpu[0x100 / 4], cpu[dumb.size / 4 - 1]);
	pan_close_bo(fd, &job);
	/* panfrost drops its import while the exporter still has the buffer mapped */
	CHECK_RET(gem_try_close(fd, imp.handle), 0);
	munmap((void *)cpu, dumb.size);
	close(kms_fd);
	close(fd);
}

void test_close_with_queued_jobs(void)
{
	enum { QUEUED = 6 };
	int fd = pan_open(), fd2;
	struct pan_bo loop = pan_create_bo(fd, SZ_4K, 0);
	struct pan_bo nulls = pan_create_bo(fd, SZ_4K, 0);
	struct pan_bo job;
	struct mali_job_header *h;
	uint32_t sync;
	unsigned int i;

	/* an endless chain in the slot and NULL jobs behind it, then close:
	 * the running chain is hard-stopped, the queued jobs dropped */
	pan_map_bo(fd, &loop);
	pan_map_bo(fd, &nulls);
	job_loop(&loop);
	pan_submit(fd, &(struct pan_submit){ .jc = job_va(&loop, 0), .bos = &loop.handle,
					     .nbos = 1 });
	for (i = 0; i < QUEUED; i++) {
		job_null(&nulls, i * MALI_JOB_STRIDE);
		pan_submit(fd, &(struct pan_submit){ .jc = job_va(&nulls, i * MALI_JOB_STRIDE),
						     .bos = &nulls.handle, .nbos = 1,
						     .out_sync = syncobj_create(fd) });
	}
	close(fd);

	/* another client's job runs afterwards */
	fd2 = pan_open();
	job = pan_create_bo(fd2, SZ_4K, 0);
	pan_map_bo(fd2, &job);
	h = job_null(&job, 0);
	sync = syncobj_create(fd2);
	pan_submit(fd2, &(struct pan_submit){ .jc = job_va(&job, 0), .bos = &job.handle,
					      .nbos = 1, .out_sync = sync });
	CHECK_F(!syncobj_wait(fd2, sync, ms_to_ns(TIMEOUT_AND_RESET_MS)),
		"a NULL job after closing a client with queued jobs did not end within %.0f ms",
		TIMEOUT_AND_RESET_MS * time_scale);
	check_done(h, "NULL job after the close");
	close(fd2);
}

void test_endless_chain_timeout_reset(void)
{
	int fd = pan_open(), fd2, status;
	struct pan_bo loop = pan_create_bo(fd, SZ_4K, 0);
	uint32_t sync = syncobj_create(fd);
	const struct mali_job_header *a, *b;
	struct pan_bo target;
	uint64_t start;

	pan_map_bo(fd, &loop);
	job_loop(&loop);
	a = loop.map;
	b = (const void *)((char *)loop.map + MALI_JOB_STRIDE);
	start = now_ns();
	pan_submit(fd, &(struct pan_submit){ .jc = job_va(&loop, 0), .bos = &loop.handle,
					     .nbos = 1, .out_sync = sync });
	CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(TIMEOUT_AND_RESET_MS)),
		"the endless chain was not stopped within %.0f ms",
		TIMEOUT_AND_RESET_MS * time_scale);
	status = syncobj_fence_status(fd, sync);
	diag("the endless chain ended after %llu ms, fence status %d (%s)",
	     (unsigned long long)((now_ns() - start) / 1000000), status,
	     status < 0 ? strerror(-status) : "no error");
	/* the scheduler's timeout cancels the guilty job: its fence carries an error */
	CHECK_F(status < 0, "the timed-out chain's fence signalled without an error");
	CHECK_F(a->exception_status != MALI_EXCEPTION_DONE ||
		b->exception_status != MALI_EXCEPTION_DONE, "both loop jobs read as completed");

	/* after the reset the GPU and its MMU work again, for a new client */
	fd2 = pan_open();
	target = pan_create_bo(fd2, SZ_4K, 0);
	pan_map_bo(fd2, &target);
	run_write32(fd2, target.offset + 8, target.handle, 0x2e5e7, 1000);
	CHECK_F(read32(&target, 8) == 0x2e5e7, "the write after the reset reads 0x%08x",
		read32(&target, 8));
	close(fd2);
	close(fd);
}

/* A chain of WRITE_VALUE jobs, one into each of `n` 2 MiB chunks of `heap`,
 * described in `job`: each write faults its chunk in. Returns the GPU's
 * verdict on the chain, as the fence's status (1 done, < 0 an error), and
 * leaves each job's header in h[]. */
static int heap_chain(int fd, struct pan_bo *job, const struct pan_bo *heap, unsigned int n,
		      uint32_t sync, struct mali_job_header **h)
{
	uint32_t bos[2] = { job->handle, heap->handle };
	unsigned int i;

	for (i = 0; i < n; i++) {
		h[i] = job_write_value(job, i * MALI_JOB_STRIDE, heap->offset + i * SZ_2M + 8 * i,
				       MALI_WRITE_IMMEDIATE_32, 0x4ea9f000 | i);
		h[i]->index = i + 1;
		if (i)
			h[i - 1]->next = job_va(job, i * MALI_JOB_STRIDE);
	}
	pan_submit(fd, &(struct pan_submit){ .jc = job_va(job, 0), .bos = bos, .nbos = 2,
					     .out_sync = sync });
	if (syncobj_wait(fd, sync, ms_to_ns(TIMEOUT_AND_RESET_MS)))
		return -ETIME;
	return syncobj_fence_status(fd, sync);
}

void test_heap_free(void)
{
	enum { CHUNKS = 2 };
	int fd, status;
	struct pan_bo heap, job;
	struct mali_job_header *h[CHUNKS];
	uint32_t sync;
	unsigned int i;

	/* An address space switched off by an unhandled fault keeps its fault
	 * interrupts masked until the GPU is reset (heap-fault-growth's expected
	 * failure): let the GPU autosuspend, so it is reset when it resumes. */
	sleep_ms(AUTOSUSPEND_GAP_MS);
	fd = pan_open();
	sync = syncobj_create(fd);
	heap = pan_create_bo(fd, 4 * SZ_2M, PANFROST_BO_HEAP | PANFROST_BO_NOEXEC);
	job = pan_create_bo(fd, SZ_4K, 0);
	pan_map_bo(fd, &job);
	status = heap_chain(fd, &job, &heap, CHUNKS, sync, h);
	CHECK_F(status == 1, "the chain of %u heap writes ended with status %d", CHUNKS, status);
	for (i = 0; i < CHUNKS; i++)
		check_done(h[i], "heap write");
	/* the last references: the heap BO goes, with what its faults grew
	 * (the pages, and the scatter table of each chunk) */
	pan_close_bo(fd, &job);
	pan_close_bo(fd, &heap);
	syncobj_destroy(fd, sync);
	close(fd);
}

/* A /proc/meminfo field in KiB, or -1. */
static long meminfo_kib(const char *field)
{
	char line[128];
	size_t len = strlen(field);
	long kib = -1;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, field, len) && line[len] == ':') {
			kib = strtol(line + len + 1, NULL, 10);
			break;
		}
	fclose(f);
	return kib;
}

/* A number from a one-line file such as /proc/sys/vm/min_free_kbytes, or -1. */
static long read_long(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t got;

	if (fd < 0)
		return -1;
	got = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return got > 0 ? strtol(buf, NULL, 10) : -1;
}

static void set_oom_score_adj(const char *value)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	if (write(fd, value, strlen(value)) < 0)
		diag("oom_score_adj: %s", strerror(errno));
	close(fd);
}

void test_purge_in_reclaim(void)
{
	/* 64 MiB of DONTNEED BOs: a share of panfrost's shrinker count that
	 * reclaim scans as soon as it runs short */
	enum { NBOS = 64, BO_SIZE = 256 * SZ_4K, CHUNK = 4 << 20, MAX_CHUNKS = 2048 };
	int fd = pan_open();
	struct pan_bo bos[NBOS];
	void *chunks[MAX_CHUNKS];
	uint32_t retained, purged = 0, i;
	unsigned int n = 0;
	long free_kib = meminfo_kib("MemFree"), min_kib = read_long("/proc/sys/vm/min_free_kbytes");

	CHECK_F(free_kib > 0 && min_kib > 0, "no MemFree in /proc/meminfo or no min_free_kbytes");
	for (i = 0; i < NBOS; i++) {
		bos[i] = pan_create_bo(fd, BO_SIZE, 0);
		pan_map_bo(fd, &bos[i]);
		fill(&bos[i], i);
		munmap(bos[i].map, bos[i].size);
		bos[i].map = NULL;
		CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_DONTNEED, &retained), 0);
	}
	/* if it comes to the OOM killer after all, this process goes, not sshd */
	set_oom_score_adj("1000");
	/*
	 * Anonymous memory, populated (written) at once, until the kernel
	 * reclaims: kswapd wakes once free memory falls below the low watermark
	 * and, with no page cache or swap left to take, scans the shrinkers,
	 * panfrost's among them, inside reclaim (unlike drop_caches), where
	 * lockdep sees what the shrinker's locks are taken under. MemAvailable
	 * is 0 long before that: only MemFree says how close reclaim is. Stop
	 * at the min watermark, where allocations would wait for reclaim.
	 */
	while (n < MAX_CHUNKS && !purged) {
		free_kib = meminfo_kib("MemFree");
		if (free_kib < min_kib)
			break;
		chunks[n] = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
		if (chunks[n] == MAP_FAILED)
			break;
		n++;
		for (i = 0; i < NBOS; i++) {
			CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_DONTNEED,
						  &retained), 0);
			purged += !retained;
		}
	}
	diag("%u of %u DONTNEED BOs purged by reclaim after %u MiB of anonymous memory "
	     "(MemFree %ld MiB, min watermarks %ld MiB)", purged, NBOS, n * (CHUNK >> 20),
	     free_kib >> 10, min_kib >> 10);
	while (n)
		munmap(chunks[--n], CHUNK);
	CHECK_F(purged > 0, "reclaim purged none of %u DONTNEED BOs before MemFree fell to "
		"the min watermarks", NBOS);
	/* purged BOs come back empty with WILLNEED, and new BOs work */
	for (i = 0; i < NBOS; i++) {
		CHECK_RET(pan_try_madvise(fd, bos[i].handle, PANFROST_MADV_WILLNEED, &retained), 0);
		pan_close_bo(fd, &bos[i]);
	}
	bos[0] = pan_create_bo(fd, SZ_4K, 0);
	pan_map_bo(fd, &bos[0]);
	run_write32(fd, bos[0].offset + 4, bos[0].handle, 0x9ec1a1, 1000);
	CHECK_F(read32(&bos[0], 4) == 0x9ec1a1, "the job's write reads back as 0x%08x",
		read32(&bos[0], 4));
	pan_close_bo(fd, &bos[0]);
	close(fd);
}
