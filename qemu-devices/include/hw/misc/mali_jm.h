/*
 * rig's emulated Mali job-manager GPU (a Mali-G52 as panfrost sees it)
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_MISC_MALI_JM_H
#define HW_MISC_MALI_JM_H

#include "hw/sysbus.h"
#include "qom/object.h"
#include "qemu/timer.h"
#include "exec/memory.h"

#define TYPE_MALI_JM "mali-jm"
OBJECT_DECLARE_SIMPLE_TYPE(MaliJMState, MALI_JM)

#define MALI_JM_MMIO_SIZE   0x4000
#define MALI_JM_NUM_SLOTS   3
#define MALI_JM_NUM_AS      8

/* Interrupt outputs, in the order of the device tree's interrupt-names */
enum {
    MALI_JM_IRQ_JOB = 0,
    MALI_JM_IRQ_MMU = 1,
    MALI_JM_IRQ_GPU = 2,
    MALI_JM_NUM_IRQS = 3,
};

typedef enum MaliSlotRun {
    MALI_SLOT_IDLE = 0,
    MALI_SLOT_RUNNING,      /* walking its chain from the timer */
    MALI_SLOT_STALLED,      /* a GPU access faulted; waits for the MMU */
    MALI_SLOT_HUNG,         /* fault injection: never completes */
} MaliSlotRun;

typedef struct MaliJobSlot {
    /* current job chain */
    uint64_t head;
    uint64_t tail;
    uint64_t affinity;
    uint32_t config;
    uint32_t xaffinity;
    uint32_t status;
    /* the queued one (_NEXT registers) */
    uint64_t head_next;
    uint64_t affinity_next;
    uint32_t config_next;
    uint32_t xaffinity_next;
    uint32_t flush_id_next;
    bool start_pending;     /* JS_COMMAND_NEXT reads 1 */

    MaliSlotRun run;
    uint64_t job;           /* the job being executed (GPU VA) */
    int stall_as;           /* the AS a stalled job waits for */
} MaliJobSlot;

typedef struct MaliAddressSpace {
    /* as programmed */
    uint64_t transtab;
    uint64_t memattr;
    uint64_t lockaddr;
    uint64_t transcfg;
    /* as latched by AS_COMMAND_UPDATE: what the walker uses */
    uint64_t cur_transtab;
    uint64_t cur_transcfg;
    uint64_t cur_memattr;
    uint32_t faultstatus;
    uint64_t faultaddress;
    bool active_stuck;      /* fault injection: AS_STATUS.AS_ACTIVE stays set */
} MaliAddressSpace;

struct MaliJMState {
    SysBusDevice parent_obj;

    MemoryRegion iomem;
    MemoryRegion *dma_mr;
    AddressSpace dma_as;
    qemu_irq irq[MALI_JM_NUM_IRQS];
    QEMUTimer exec_timer;

    /* GPU control */
    uint32_t gpu_irq_raw;
    uint32_t gpu_irq_mask;
    uint32_t gpu_fault_status;
    uint64_t gpu_fault_address;
    uint32_t latest_flush;
    uint64_t shader_ready;
    uint64_t tiler_ready;
    uint64_t l2_ready;
    uint64_t stack_ready;
    uint64_t perfcnt_base;
    uint32_t perfcnt_cfg;
    uint32_t prfcnt_en[4];
    uint32_t jm_config;
    uint32_t shader_config;
    uint32_t tiler_config;
    uint32_t l2_mmu_config;
    uint32_t coherency_enable;
    bool cycle_counting;
    uint64_t cycles_base;    /* cycles counted up to cycle_started */
    int64_t cycle_started;   /* QEMU_CLOCK_VIRTUAL ns */

    /* job control */
    uint32_t job_irq_raw;
    uint32_t job_irq_mask;
    MaliJobSlot slot[MALI_JM_NUM_SLOTS];

    /* MMU */
    uint32_t mmu_irq_raw;
    uint32_t mmu_irq_mask;
    MaliAddressSpace as[MALI_JM_NUM_AS];

    bool line[MALI_JM_NUM_IRQS];

    /* tuning (properties) */
    uint32_t job_latency_ns;
    uint32_t tick_ns;
    uint32_t jobs_per_tick;
    uint64_t timestamp_hz;

    /* fault injection (QOM properties, settable at run time) */
    uint32_t inject_hang_jobs;
    uint32_t inject_fail_jobs;
    uint32_t inject_fail_code;
    uint32_t inject_drop_irqs;
    uint32_t inject_stick_as_active;
    uint32_t inject_ignore_soft_resets;

    /* counters (read-only QOM properties) */
    uint64_t cnt_chains_started;
    uint64_t cnt_jobs_run;
    uint64_t cnt_jobs_failed;
    uint64_t cnt_jobs_hung;
    uint64_t cnt_mmu_faults;
    uint64_t cnt_soft_resets;
    uint64_t cnt_hard_resets;
    uint64_t cnt_soft_stops;
    uint64_t cnt_hard_stops;
    uint64_t cnt_irqs_raised;
    uint64_t cnt_irqs_dropped;
    uint64_t cnt_as_commands;
};

#endif
