/* SPDX-License-Identifier: MIT */
/*
 * Helpers for rig-panfrost: the panfrost device, its BOs, sync objects and
 * job chains, all through the raw ioctls of <drm/panfrost_drm.h>.
 *
 * Every helper named pan_try_* returns 0 or -errno; the others fail the
 * subtest on error.
 */
#ifndef RIG_PANFROST_H
#define RIG_PANFROST_H

#include <stddef.h>
#include <stdint.h>

#include <drm/drm.h>
#include <drm/panfrost_drm.h>

/*
 * Job descriptors, from the layout the Mali job manager reads (Mesa's
 * "Job Header" and "Write Value Job Payload"): a 32-byte header, 64-byte
 * aligned, then the job type's payload.
 */
struct mali_job_header {
	uint32_t exception_status;	/* written back by the GPU: 1 = done */
	uint32_t first_incomplete_task;
	uint64_t fault_pointer;
	uint8_t is_64b_type;		/* bit 0: 64-bit descriptors; bits 1-7: type */
	uint8_t barrier_flags;		/* bit 0: barrier; bits 1-7: flags */
	uint16_t index;
	uint16_t dep1;
	uint16_t dep2;
	uint64_t next;			/* GPU VA of the next job, 0 ends the chain */
} __attribute__((packed));

struct mali_write_value {
	uint64_t address;
	uint32_t type;
	uint32_t pad;
	uint64_t immediate;
} __attribute__((packed));

_Static_assert(sizeof(struct mali_job_header) == 32, "job header is 32 bytes");

enum mali_job_type {
	MALI_JOB_NULL = 1,
	MALI_JOB_WRITE_VALUE = 2,
	MALI_JOB_CACHE_FLUSH = 3,
};

enum mali_write_value_type {
	MALI_WRITE_CYCLE_COUNTER = 1,
	MALI_WRITE_SYSTEM_TIMESTAMP = 2,
	MALI_WRITE_ZERO = 3,
	MALI_WRITE_IMMEDIATE_8 = 4,
	MALI_WRITE_IMMEDIATE_16 = 5,
	MALI_WRITE_IMMEDIATE_32 = 6,
	MALI_WRITE_IMMEDIATE_64 = 7,
};

/* A job's slot in a BO: header and payload, 64-byte aligned. */
#define MALI_JOB_STRIDE 64
/* What the GPU writes into exception_status when a job completed. */
#define MALI_EXCEPTION_DONE 1

#define SZ_4K 0x1000u
#define SZ_2M 0x200000u

struct pan_bo {
	uint32_t handle;
	uint32_t size;
	uint64_t offset;	/* GPU VA in this fd's address space */
	void *map;		/* CPU mapping, or NULL */
};

/* The panfrost node found by pan_find_device(), "" when there is none. */
extern char pan_device_path[64];

/* Finds the panfrost render node; returns NULL, or why there is none. */
const char *pan_find_device(void);
void pan_describe(void);
/* The running kernel's version as major * 1000 + minor (6.12 -> 6012). */
int kernel_version(void);

int pan_open(void);
int pan_try_open(void);
int drm_version_name(int fd, char *name, size_t len);

int pan_try_create_bo(int fd, uint32_t size, uint32_t flags, struct pan_bo *bo);
struct pan_bo pan_create_bo(int fd, uint32_t size, uint32_t flags);
void *pan_map_bo(int fd, struct pan_bo *bo);
int pan_try_mmap_offset(int fd, uint32_t handle, uint64_t *offset);
void pan_close_bo(int fd, struct pan_bo *bo);
int gem_try_close(int fd, uint32_t handle);
int pan_try_madvise(int fd, uint32_t handle, uint32_t madv, uint32_t *retained);
int pan_try_get_param(int fd, uint32_t param, uint32_t pad, uint64_t *value);
int pan_try_get_bo_offset(int fd, uint32_t handle, uint64_t *offset);

uint32_t syncobj_create(int fd);
void syncobj_destroy(int fd, uint32_t handle);
/* Waits until `timeout_ns` from now; 0, or -ETIME when it did not signal. */
int syncobj_wait(int fd, uint32_t handle, int64_t timeout_ns);
/* The sync object's fence status: 1 signalled, 0 pending, < 0 its error. */
int syncobj_fence_status(int fd, uint32_t handle);

struct pan_submit {
	uint64_t jc;
	const uint32_t *bos;
	uint32_t nbos;
	uint32_t out_sync;
	uint32_t requirements;
	const uint32_t *in_syncs;
	uint32_t nin_syncs;
};

int pan_try_submit(int fd, const struct pan_submit *s);
void pan_submit(int fd, const struct pan_submit *s);

/* Job descriptors, written into a mapped BO at `at` (a byte offset). */
struct mali_job_header *job_null(struct pan_bo *bo, uint32_t at);
struct mali_job_header *job_write_value(struct pan_bo *bo, uint32_t at,
					uint64_t address, uint32_t type,
					uint64_t immediate);
static inline uint64_t job_va(const struct pan_bo *bo, uint32_t at)
{
	return bo->offset + at;
}

/*
 * IGT's "job loop": two WRITE_VALUE(Zero) jobs in `bo` at offsets 0 and 64,
 * each pointing at the other and zeroing the other's header, so the chain
 * never ends and the GPU never sees a completed header.
 */
void job_loop(struct pan_bo *bo);

/* A BO with a single job that writes `value` (32 bits) at `target`; waits for
 * it within `timeout_ms` and fails the subtest if it did not complete. */
void run_write32(int fd, uint64_t target, uint32_t target_handle, uint32_t value,
		 double timeout_ms);

/* The WRITE_VALUE job that completed must read back as done, without fault. */
void check_done(const struct mali_job_header *h, const char *what);

/* Opens the first DRM card that is not panfrost and has dumb buffers and
 * PRIME export (vkms in rig's guests); -1 when there is none. */
int open_other_kms_card(char *name, size_t len);

/* Asks every shrinker to give back what it can (drop_caches 2: slab
 * shrinkers, panfrost's included); false when the guest does not let us. */
bool drop_caches(void);

#endif
