// SPDX-License-Identifier: MIT
/* Helpers for rig-panfrost; see panfrost.h. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <drm/drm_mode.h>
#include <linux/sync_file.h>

#include "harness.h"
#include "panfrost.h"

char pan_device_path[64];

static int drm_ioctl(int fd, unsigned long request, void *arg)
{
	int ret;

	do {
		ret = ioctl(fd, request, arg);
	} while (ret == -1 && (errno == EINTR || errno == EAGAIN));
	return ret == -1 ? -errno : 0;
}

int drm_version_name(int fd, char *name, size_t len)
{
	struct drm_version v = { .name = name, .name_len = len - 1 };
	int ret;

	memset(name, 0, len);
	ret = drm_ioctl(fd, DRM_IOCTL_VERSION, &v);
	return ret;
}

static bool is_driver(const char *path, const char *driver)
{
	char name[64];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	bool yes;

	if (fd < 0)
		return false;
	yes = !drm_version_name(fd, name, sizeof(name)) && !strcmp(name, driver);
	close(fd);
	return yes;
}

const char *pan_find_device(void)
{
	static const char *const patterns[] = { "/dev/dri/renderD%d", "/dev/dri/card%d" };
	static const int first[] = { 128, 0 };
	unsigned int p;
	int i;

	for (p = 0; p < 2; p++) {
		for (i = first[p]; i < first[p] + 64; i++) {
			snprintf(pan_device_path, sizeof(pan_device_path), patterns[p], i);
			if (is_driver(pan_device_path, "panfrost"))
				return NULL;
		}
	}
	pan_device_path[0] = '\0';
	if (access("/dev/dri", F_OK))
		return "no panfrost device: /dev/dri does not exist (no DRM driver bound)";
	return "no panfrost device: no /dev/dri node is driven by panfrost";
}

int kernel_version(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0;
	return major * 1000 + minor;
}

void pan_describe(void)
{
	struct utsname u;
	uint64_t id = 0, js = 0, as = 0;
	int fd = pan_try_open();

	uname(&u);
	if (fd >= 0) {
		pan_try_get_param(fd, DRM_PANFROST_PARAM_GPU_PROD_ID, 0, &id);
		pan_try_get_param(fd, DRM_PANFROST_PARAM_JS_PRESENT, 0, &js);
		pan_try_get_param(fd, DRM_PANFROST_PARAM_AS_PRESENT, 0, &as);
		close(fd);
	}
	printf("# device %s: GPU_PROD_ID 0x%llx, JS_PRESENT 0x%llx, AS_PRESENT 0x%llx; kernel %s\n",
	       pan_device_path, (unsigned long long)id, (unsigned long long)js,
	       (unsigned long long)as, u.release);
}

int pan_try_open(void)
{
	int fd = open(pan_device_path, O_RDWR | O_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int pan_open(void)
{
	int fd = pan_try_open();

	if (fd < 0)
		fail("open %s: %s", pan_device_path, strerror(-fd));
	return fd;
}

int pan_try_create_bo(int fd, uint32_t size, uint32_t flags, struct pan_bo *bo)
{
	struct drm_panfrost_create_bo c = { .size = size, .flags = flags };
	int ret = drm_ioctl(fd, DRM_IOCTL_PANFROST_CREATE_BO, &c);

	memset(bo, 0, sizeof(*bo));
	if (ret)
		return ret;
	bo->handle = c.handle;
	bo->size = size;
	bo->offset = c.offset;
	return 0;
}

struct pan_bo pan_create_bo(int fd, uint32_t size, uint32_t flags)
{
	struct pan_bo bo;
	int ret = pan_try_create_bo(fd, size, flags, &bo);

	if (ret)
		fail("CREATE_BO size %u flags 0x%x: %s", size, flags, strerror(-ret));
	return bo;
}

int pan_try_mmap_offset(int fd, uint32_t handle, uint64_t *offset)
{
	struct drm_panfrost_mmap_bo m = { .handle = handle };
	int ret = drm_ioctl(fd, DRM_IOCTL_PANFROST_MMAP_BO, &m);

	*offset = m.offset;
	return ret;
}

void *pan_map_bo(int fd, struct pan_bo *bo)
{
	uint64_t offset;
	int ret = pan_try_mmap_offset(fd, bo->handle, &offset);

	if (ret)
		fail("MMAP_BO handle %u: %s", bo->handle, strerror(-ret));
	bo->map = mmap(NULL, bo->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
	if (bo->map == MAP_FAILED) {
		bo->map = NULL;
		fail("mmap of BO %u (%u bytes): %s", bo->handle, bo->size, strerror(errno));
	}
	return bo->map;
}

int gem_try_close(int fd, uint32_t handle)
{
	struct drm_gem_close c = { .handle = handle };

	return drm_ioctl(fd, DRM_IOCTL_GEM_CLOSE, &c);
}

void pan_close_bo(int fd, struct pan_bo *bo)
{
	int ret;

	if (bo->map)
		munmap(bo->map, bo->size);
	bo->map = NULL;
	ret = gem_try_close(fd, bo->handle);
	if (ret)
		fail("GEM_CLOSE handle %u: %s", bo->handle, strerror(-ret));
}

int pan_try_madvise(int fd, uint32_t handle, uint32_t madv, uint32_t *retained)
{
	struct drm_panfrost_madvise m = { .handle = handle, .madv = madv };
	int ret = drm_ioctl(fd, DRM_IOCTL_PANFROST_MADVISE, &m);

	if (retained)
		*retained = m.retained;
	return ret;
}

int pan_try_get_param(int fd, uint32_t param, uint32_t pad, uint64_t *value)
{
	struct drm_panfrost_get_param g = { .param = param, .pad = pad };
	int ret = drm_ioctl(fd, DRM_IOCTL_PANFROST_GET_PARAM, &g);

	*value = g.value;
	return ret;
}

int pan_try_get_bo_offset(int fd, uint32_t handle, uint64_t *offset)
{
	struct drm_panfrost_get_bo_offset g = { .handle = handle };
	int ret = drm_ioctl(fd, DRM_IOCTL_PANFROST_GET_BO_OFFSET, &g);

	*offset = g.offset;
	return ret;
}

uint32_t syncobj_create(int fd)
{
	struct drm_syncobj_create c = { 0 };
	int ret = drm_ioctl(fd, DRM_IOCTL_SYNCOBJ_CREATE, &c);

	if (ret)
		fail("SYNCOBJ_CREATE: %s", strerror(-ret));
	return c.handle;
}

void syncobj_destroy(int fd, uint32_t handle)
{
	struct drm_syncobj_destroy d = { .handle = handle };

	drm_ioctl(fd, DRM_IOCTL_SYNCOBJ_DESTROY, &d);
}

int syncobj_wait(int fd, uint32_t handle, int64_t timeout_ns)
{
	struct drm_syncobj_wait w = {
		.handles = (uintptr_t)&handle,
		.count_handles = 1,
		.timeout_nsec = (int64_t)now_ns() + timeout_ns,
	};
	int ret;

	/* not drm_ioctl(): an interrupted wait is retried with the same deadline */
	do {
		ret = ioctl(fd, DRM_IOCTL_SYNCOBJ_WAIT, &w);
	} while (ret == -1 && errno == EINTR);
	if (ret == -1 && errno != ETIME)
		fail("SYNCOBJ_WAIT: %s", strerror(errno));
	return ret == -1 ? -ETIME : 0;
}

int syncobj_fence_status(int fd, uint32_t handle)
{
	struct drm_syncobj_handle h = {
		.handle = handle,
		.flags = DRM_SYNCOBJ_HANDLE_TO_FD_FLAGS_EXPORT_SYNC_FILE,
		.fd = -1,
	};
	struct sync_file_info info = { 0 };
	int ret = drm_ioctl(fd, DRM_IOCTL_SYNCOBJ_HANDLE_TO_FD, &h);

	if (ret)
		fail("SYNCOBJ_HANDLE_TO_FD (sync file): %s", strerror(-ret));
	ret = drm_ioctl(h.fd, SYNC_IOC_FILE_INFO, &info);
	close(h.fd);
	if (ret)
		fail("SYNC_IOC_FILE_INFO: %s", strerror(-ret));
	return info.status;
}

int pan_try_submit(int fd, const struct pan_submit *s)
{
	struct drm_panfrost_submit submit = {
		.jc = s->jc,
		.in_syncs = (uintptr_t)s->in_syncs,
		.in_sync_count = s->nin_syncs,
		.out_sync = s->out_sync,
		.bo_handles = (uintptr_t)s->bos,
		.bo_handle_count = s->nbos,
		.requirements = s->requirements,
	};

	return drm_ioctl(fd, DRM_IOCTL_PANFROST_SUBMIT, &submit);
}

void pan_submit(int fd, const struct pan_submit *s)
{
	int ret = pan_try_submit(fd, s);

	if (ret)
		fail("SUBMIT jc 0x%llx: %s", (unsigned long long)s->jc, strerror(-ret));
}

static struct mali_job_header *header_at(struct pan_bo *bo, uint32_t at,
					 enum mali_job_type type)
{
	struct mali_job_header *h = (void *)((char *)bo->map + at);

	if (!bo->map || at % MALI_JOB_STRIDE || at + MALI_JOB_STRIDE > bo->size)
		fail("job at offset %u of a %u-byte BO (mapped: %s)", at, bo->size,
		     bo->map ? "yes" : "no");
	memset(h, 0, MALI_JOB_STRIDE);
	h->is_64b_type = 1 | type << 1;
	h->index = 1;
	return h;
}

struct mali_job_header *job_null(struct pan_bo *bo, uint32_t at)
{
	return header_at(bo, at, MALI_JOB_NULL);
}

struct mali_job_header *job_write_value(struct pan_bo *bo, uint32_t at,
					uint64_t address, uint32_t type,
					uint64_t immediate)
{
	struct mali_job_header *h = header_at(bo, at, MALI_JOB_WRITE_VALUE);
	struct mali_write_value *p = (void *)(h + 1);

	p->address = address;
	p->type = type;
	p->immediate = immediate;
	return h;
}

void job_loop(struct pan_bo *bo)
{
	struct mali_job_header *a, *b;

	a = job_write_value(bo, 0, job_va(bo, MALI_JOB_STRIDE), MALI_WRITE_ZERO, 0);
	b = job_write_value(bo, MALI_JOB_STRIDE, job_va(bo, 0), MALI_WRITE_ZERO, 0);
	/* IGT's loop: barrier set, flags 5 (invalidate cache, suppress prefetch) */
	a->barrier_flags = 1 | 5 << 1;
	b->barrier_flags = 1 | 5 << 1;
	a->index = 1;
	b->index = 2;
	a->next = job_va(bo, MALI_JOB_STRIDE);
	b->next = job_va(bo, 0);
}

void check_done(const struct mali_job_header *h, const char *what)
{
	CHECK_F(h->exception_status == MALI_EXCEPTION_DONE && h->fault_pointer == 0,
		"%s: exception_status 0x%x, fault_pointer 0x%llx", what,
		h->exception_status, (unsigned long long)h->fault_pointer);
}

void run_write32(int fd, uint64_t target, uint32_t target_handle, uint32_t value,
		 double timeout_ms)
{
	struct pan_bo job = pan_create_bo(fd, SZ_4K, 0);
	uint32_t sync = syncobj_create(fd);
	uint32_t bos[2] = { job.handle, target_handle };
	struct mali_job_header *h;

	pan_map_bo(fd, &job);
	h = job_write_value(&job, 0, target, MALI_WRITE_IMMEDIATE_32, value);
	pan_submit(fd, &(struct pan_submit){ .jc = job_va(&job, 0), .bos = bos,
					     .nbos = target_handle ? 2 : 1,
					     .out_sync = sync });
	CHECK_F(!syncobj_wait(fd, sync, ms_to_ns(timeout_ms)),
		"WRITE_VALUE to 0x%llx not done within %.0f ms",
		(unsigned long long)target, timeout_ms * time_scale);
	check_done(h, "WRITE_VALUE job");
	syncobj_destroy(fd, sync);
	pan_close_bo(fd, &job);
}

static int get_cap(int fd, uint64_t cap, uint64_t *value)
{
	struct drm_get_cap c = { .capability = cap };
	int ret = drm_ioctl(fd, DRM_IOCTL_GET_CAP, &c);

	*value = c.value;
	return ret;
}

int open_other_kms_card(char *name, size_t len)
{
	char path[64];
	uint64_t dumb, prime;
	int i, fd;

	for (i = 0; i < 64; i++) {
		snprintf(path, sizeof(path), "/dev/dri/card%d", i);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (!drm_version_name(fd, name, len) && strcmp(name, "panfrost") &&
		    !get_cap(fd, DRM_CAP_DUMB_BUFFER, &dumb) && dumb &&
		    !get_cap(fd, DRM_CAP_PRIME, &prime) && (prime & DRM_PRIME_CAP_EXPORT))
			return fd;
		close(fd);
	}
	return -1;
}

bool drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	bool ok;

	if (fd < 0)
		return false;
	ok = write(fd, "2", 1) == 1;
	close(fd);
	return ok;
}
