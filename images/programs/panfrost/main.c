// SPDX-License-Identifier: MIT
/*
 * rig-panfrost: panfrost's tests for rig's arm64 guests, as KTAP.
 *
 *   rig-panfrost                       every subtest
 *   rig-panfrost --run 'pan-submit*'   a glob over SUBTEST or SUITE.SUBTEST
 *   rig-panfrost --list
 *   rig-panfrost --run 'panfrost_bench.*'   the benchmarks (only when named)
 *
 * Suites panfrost_gem_new, panfrost_get_param, panfrost_prime and
 * panfrost_submit are IGT's binaries of those names, subtest for subtest;
 * panfrost_rig holds rig's own, panfrost_bench the benchmarks. Without a
 * panfrost device every subtest is skipped with the reason.
 */
#include "harness.h"
#include "panfrost.h"
#include "tests.h"

static const struct subtest subtests[] = {
	{ "panfrost_gem_new", "gem-new-4096", test_gem_new_4096, "create and close a 4 KiB BO", false },
	{ "panfrost_gem_new", "gem-new-0", test_gem_new_0, "a 0-byte BO is EINVAL", false },
	{ "panfrost_gem_new", "gem-new-zeroed", test_gem_new_zeroed,
	  "a new BO does not show a freed one's contents", false },
	{ "panfrost_get_param", "base-params", test_base_params, "GPU_PROD_ID is not 0", false },
	{ "panfrost_get_param", "get-bad-param", test_get_bad_param, "an unknown param is EINVAL", false },
	{ "panfrost_get_param", "get-bad-padding", test_get_bad_padding,
	  "non-zero padding is EINVAL", false },
	{ "panfrost_prime", "gem-prime-import", test_gem_prime_import,
	  "import another KMS device's dumb buffer", false },
	{ "panfrost_submit", "pan-submit", test_pan_submit, "a NULL job completes", false },
	{ "panfrost_submit", "pan-submit-error-no-jc", test_error_no_jc, "jc 0 is EINVAL", false },
	{ "panfrost_submit", "pan-submit-error-bad-in-syncs", test_error_bad_in_syncs,
	  "a NULL in_syncs array is EFAULT", false },
	{ "panfrost_submit", "pan-submit-error-bad-bo-handles", test_error_bad_bo_handles,
	  "a NULL bo_handles array is EFAULT", false },
	{ "panfrost_submit", "pan-submit-error-bad-requirements", test_error_bad_requirements,
	  "requirements 2 is EINVAL (before Linux 6.13)", false },
	{ "panfrost_submit", "pan-submit-error-bad-out-sync", test_error_bad_out_sync,
	  "an unknown out_sync is ENODEV", false },
	{ "panfrost_submit", "pan-reset", test_pan_reset,
	  "an endless chain times out, is reset, and the job behind it runs", false },
	{ "panfrost_submit", "pan-submit-and-close", test_pan_submit_and_close,
	  "close the fd with an endless chain running", false },
	{ "panfrost_submit", "pan-unhandled-pagefault", test_pan_unhandled_pagefault,
	  "a write to unmapped GPU VA fails, the next job runs", false },
	{ "panfrost_rig", "heap-fault-growth", test_heap_fault_growth,
	  "a heap BO grows 2 MiB per GPU fault across four chunks", false },
	{ "panfrost_rig", "madvise-retained", test_madvise_retained,
	  "DONTNEED then WILLNEED without pressure keeps pages and contents", false },
	{ "panfrost_rig", "madvise-purge", test_madvise_purge,
	  "the shrinker purges DONTNEED BOs and keeps the others", false },
	{ "panfrost_rig", "as-steal", test_as_steal,
	  "more clients than address spaces, jobs of all in flight", false },
	{ "panfrost_rig", "runtime-pm-churn", test_runtime_pm_churn,
	  "jobs spaced past the autosuspend delay", false },
	{ "panfrost_rig", "prime-import-job", test_prime_import_job,
	  "a job writes a PRIME-imported vkms dumb buffer", false },
	{ "panfrost_rig", "close-with-queued-jobs", test_close_with_queued_jobs,
	  "close with a chain running and jobs queued; the GPU works after", false },
	{ "panfrost_rig", "endless-chain-timeout-reset", test_endless_chain_timeout_reset,
	  "the scheduler's timeout cancels an endless chain, jobs run after the reset", false },
	{ "panfrost_rig", "heap-free", test_heap_free,
	  "a heap BO grown by GPU faults is freed with what its faults allocated", false },
	{ "panfrost_rig", "purge-in-reclaim", test_purge_in_reclaim,
	  "reclaim (not drop_caches) purges DONTNEED BOs while memory fills", false },
	{ "panfrost_bench", "get-param-ioctls", bench_get_param,
	  "benchmark: GET_PARAM ioctls per second (the baseline)", true },
	{ "panfrost_bench", "null-jobs", bench_null_jobs,
	  "benchmark: NULL jobs per second through SUBMIT", true },
	{ "panfrost_bench", "heap-faults", bench_heap_faults,
	  "benchmark: heap GPU faults per second", true },
};

int main(int argc, char **argv)
{
	static const struct harness h = {
		.program = "rig-panfrost",
		.tests = subtests,
		.count = sizeof(subtests) / sizeof(subtests[0]),
		.probe = pan_find_device,
		.describe = pan_describe,
	};

	return harness_main(&h, argc, argv);
}
