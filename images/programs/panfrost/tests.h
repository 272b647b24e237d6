/* SPDX-License-Identifier: MIT */
#ifndef RIG_PANFROST_TESTS_H
#define RIG_PANFROST_TESTS_H

/* tests_igt.c: IGT's subtests */
void test_gem_new_4096(void);
void test_gem_new_0(void);
void test_gem_new_zeroed(void);
void test_base_params(void);
void test_get_bad_param(void);
void test_get_bad_padding(void);
void test_gem_prime_import(void);
void test_pan_submit(void);
void test_error_no_jc(void);
void test_error_bad_in_syncs(void);
void test_error_bad_bo_handles(void);
void test_error_bad_requirements(void);
void test_error_bad_out_sync(void);
void test_pan_reset(void);
void test_pan_submit_and_close(void);
void test_pan_unhandled_pagefault(void);

/* tests_rig.c: rig's own */
void test_heap_fault_growth(void);
void test_madvise_retained(void);
void test_madvise_purge(void);
void test_as_steal(void);
void test_runtime_pm_churn(void);
void test_prime_import_job(void);
void test_close_with_queued_jobs(void);
void test_endless_chain_timeout_reset(void);
void test_heap_free(void);
void test_purge_in_reclaim(void);

/* tests_bench.c: benchmarks, run only when named */
void bench_get_param(void);
void bench_null_jobs(void);
void bench_heap_faults(void);

#endif
