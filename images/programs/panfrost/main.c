// SPDX-License-Identifier: MIT
/*
 * rig-panfrost: panfrost's tests for rig's arm64 guests, as KTAP.
 *
 *   rig-panfrost                       every subtest
 *   rig-panfrost --run 'pan-submit*'   a glob over SUBTEST or SUITE.SUBTEST
 *   rig-panfrost --list
 *
 * Suites panfrost_gem_new, panfrost_get_param, panfrost_prime and
 * panfrost_submit are IGT's binaries of those names, subtest for subtest;
 * panfrost_rig holds rig's own. Without a panfrost device every subtest is
 * skipped with the reason.
 */
#include "harness.h"
#include "panfrost.h"
#include "tests.h"

static const struct subtest subtests[] = {
	{ "panfrost_gem_new", "gem-new-4096", test_gem_new_4096, "create and close a 4 KiB BO" },
	{ "panfrost_gem_new", "gem-new-0", test_gem_new_0, "a 0-byte BO is EINVAL" },
	{ "panfrost_gem_new", "gem-new-zeroed", test_gem_new_zeroed,
	  "a new BO does not show a freed one's contents" },
	{ "panfrost_get_param", "base-params", test_base_params, "GPU_PROD_ID is not 0" },
	{ "panfrost_get_param", "get-bad-param", test_get_bad_param, "an unknown param is EINVAL" },
	{ "panfrost_get_param", "get-bad-padding", test_get_bad_padding,
	  "non-zero padding is EINVAL" },
	{ "panfrost_prime", "gem-prime-import", test_gem_prime_import,
	  "import another KMS device's dumb buffer" },
	{ "panfrost_submit", "pan-submit", test_pan_submit, "a NULL job completes" },
	{ "panfrost_submit", "pan-submit-error-no-jc", test_error_no_jc, "jc 0 is EINVAL" },
	{ "panfrost_submit", "pan-submit-error-bad-in-syncs", test_error_bad_in_syncs,
	  "a NULL in_syncs array is EFAULT" },
	{ "panfrost_submit", "pan-submit-error-bad-bo-handles", test_error_bad_bo_handles,
	  "a NULL bo_handles array is EFAULT" },
	{ "panfrost_submit", "pan-submit-error-bad-requirements", test_error_bad_requirements,
	  "requirements 2 is EINVAL (before Linux 6.13)" },
	{ "panfrost_submit", "pan-submit-error-bad-out-sync", test_error_bad_out_sync,
	  "an unknown out_sync is ENODEV" },
	{ "panfrost_submit", "pan-reset", test_pan_reset,
	  "an endless chain times out, is reset, and the job behind it runs" },
	{ "panfrost_submit", "pan-submit-and-close", test_pan_submit_and_close,
	  "close the fd with an endless chain running" },
	{ "panfrost_submit", "pan-unhandled-pagefault", test_pan_unhandled_pagefault,
	  "a write to unmapped GPU VA fails, the next job runs" },
	{ "panfrost_rig", "heap-fault-growth", test_heap_fault_growth,
	  "a heap BO grows 2 MiB per GPU fault across four chunks" },
	{ "panfrost_rig", "madvise-retained", test_madvise_retained,
	  "DONTNEED then WILLNEED without pressure keeps pages and contents" },
	{ "panfrost_rig", "madvise-purge", test_madvise_purge,
	  "the shrinker purges DONTNEED BOs and keeps the others" },
	{ "panfrost_rig", "as-steal", test_as_steal,
	  "more clients than address spaces, jobs of all in flight" },
	{ "panfrost_rig", "runtime-pm-churn", test_runtime_pm_churn,
	  "jobs spaced past the autosuspend delay" },
	{ "panfrost_rig", "prime-import-job", test_prime_import_job,
	  "a job writes a PRIME-imported vkms dumb buffer" },
	{ "panfrost_rig", "close-with-queued-jobs", test_close_with_queued_jobs,
	  "close with a chain running and jobs queued; the GPU works after" },
	{ "panfrost_rig", "endless-chain-timeout-reset", test_endless_chain_timeout_reset,
	  "the scheduler's timeout cancels an endless chain, jobs run after the reset" },
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
