/*
 * rig's emulated Mali job-manager GPU: a Mali-G52 (GPU_ID 0x72120000) as the
 * Linux panfrost driver drives it.
 *
 * What is modelled: GPU control (identity, soft/hard reset, power domains with
 * READY bits, interrupts, cache-clean commands, the latest flush id, cycle
 * counter and timestamp), job control (three slots with the two-deep _NEXT
 * queue, JS_STATE, DONE/FAILED interrupts, a failed slot held until the
 * driver acknowledges it, soft and hard stop, descriptor write-back), an
 * eight-address-space MMU walking Mali-LPAE page tables (4 levels, 2 MiB and
 * 1 GiB blocks, read/write permissions) whose translation and permission
 * faults stall the job until the driver maps the page and flushes, and the
 * execution of NULL, WRITE_VALUE and CACHE_FLUSH jobs. Every other job type
 * fails with JOB_CONFIG_FAULT: there are no shader cores.
 *
 * Job chains run from a QEMU_CLOCK_VIRTUAL timer, a bounded number of jobs
 * per tick, so an endless chain never stalls QEMU.
 *
 * Fault injection (hang, fail, lose an interrupt, stuck AS_ACTIVE, ignored
 * soft reset) and counters are QOM properties, settable with -global and
 * QMP qom-set, readable with qom-get.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "hw/irq.h"
#include "hw/qdev-properties.h"
#include "hw/misc/mali_jm.h"
#include "migration/vmstate.h"
#include "system/dma.h"
#include "exec/address-spaces.h"

/* Identity of a Mali-G52 r0p0 (values of a real part, see MALI.md) */
#define MALI_GPU_ID             0x72120000u
#define MALI_L2_FEATURES        0x07110206u
#define MALI_CORE_FEATURES      0x00000000u
#define MALI_TILER_FEATURES     0x00000809u
#define MALI_MEM_FEATURES       0x00000001u
#define MALI_MMU_FEATURES       0x00002830u     /* VA 48 bits, PA 40 bits */
#define MALI_AS_PRESENT         0x000000ffu
#define MALI_JS_PRESENT         0x00000007u
#define MALI_SHADER_PRESENT     0x3ull
#define MALI_TILER_PRESENT      0x1ull
#define MALI_L2_PRESENT         0x1ull
#define MALI_STACK_PRESENT      0x1ull
#define MALI_THREAD_MAX_THREADS 768
#define MALI_THREAD_MAX_WG      384
#define MALI_THREAD_MAX_BARRIER 384
#define MALI_COHERENCY_FEATURES 0x1u            /* ACE-Lite */

/* GPU control registers */
#define GPU_ID                  0x000
#define GPU_L2_FEATURES         0x004
#define GPU_CORE_FEATURES       0x008
#define GPU_TILER_FEATURES      0x00c
#define GPU_MEM_FEATURES        0x010
#define GPU_MMU_FEATURES        0x014
#define GPU_AS_PRESENT          0x018
#define GPU_JS_PRESENT          0x01c
#define GPU_INT_RAWSTAT         0x020
#define GPU_INT_CLEAR           0x024
#define GPU_INT_MASK            0x028
#define GPU_INT_STAT            0x02c
#define GPU_CMD                 0x030
#define GPU_STATUS              0x034
#define GPU_LATEST_FLUSH_ID     0x038
#define GPU_FAULT_STATUS        0x03c
#define GPU_FAULT_ADDRESS_LO    0x040
#define GPU_FAULT_ADDRESS_HI    0x044
#define GPU_AFBC_FEATURES       0x04c
#define GPU_PWR_KEY             0x050
#define GPU_PWR_OVERRIDE0       0x054
#define GPU_PWR_OVERRIDE1       0x058
#define GPU_PERFCNT_BASE_LO     0x060
#define GPU_PERFCNT_BASE_HI     0x064
#define GPU_PERFCNT_CFG         0x068
#define GPU_PRFCNT_JM_EN        0x06c
#define GPU_PRFCNT_SHADER_EN    0x070
#define GPU_PRFCNT_TILER_EN     0x074
#define GPU_PRFCNT_MMU_L2_EN    0x07c
#define GPU_CYCLE_COUNT_LO      0x090
#define GPU_CYCLE_COUNT_HI      0x094
#define GPU_TIMESTAMP_LO        0x098
#define GPU_TIMESTAMP_HI        0x09c
#define GPU_THREAD_MAX_THREADS  0x0a0
#define GPU_THREAD_MAX_WG_SIZE  0x0a4
#define GPU_THREAD_MAX_BARRIER  0x0a8
#define GPU_THREAD_FEATURES     0x0ac
#define GPU_TEXTURE_FEATURES0   0x0b0
#define GPU_JS_FEATURES0        0x0c0
#define GPU_SHADER_PRESENT_LO   0x100
#define GPU_TILER_PRESENT_LO    0x110
#define GPU_L2_PRESENT_LO       0x120
#define GPU_SHADER_READY_LO     0x140
#define GPU_TILER_READY_LO      0x150
#define GPU_L2_READY_LO         0x160
#define GPU_SHADER_PWRON_LO     0x180
#define GPU_TILER_PWRON_LO      0x190
#define GPU_L2_PWRON_LO         0x1a0
#define GPU_SHADER_PWROFF_LO    0x1c0
#define GPU_TILER_PWROFF_LO     0x1d0
#define GPU_L2_PWROFF_LO        0x1e0
#define GPU_PWRTRANS_FIRST      0x200
#define GPU_PWRACTIVE_LAST      0x264
#define GPU_COHERENCY_FEATURES  0x300
#define GPU_COHERENCY_ENABLE    0x304
#define GPU_THREAD_TLS_ALLOC    0x310
#define GPU_STACK_PRESENT_LO    0xe00
#define GPU_STACK_READY_LO      0xe10
#define GPU_STACK_PWRON_LO      0xe20
#define GPU_STACK_PWROFF_LO     0xe30
#define GPU_STACK_PWRTRANS_LO   0xe40
#define GPU_JM_CONFIG           0xf00
#define GPU_SHADER_CONFIG       0xf04
#define GPU_TILER_CONFIG        0xf08
#define GPU_L2_MMU_CONFIG       0xf0c

#define GPU_IRQ_FAULT                   (1u << 0)
#define GPU_IRQ_MULTIPLE_FAULT          (1u << 7)
#define GPU_IRQ_RESET_COMPLETED         (1u << 8)
#define GPU_IRQ_POWER_CHANGED           (1u << 9)
#define GPU_IRQ_POWER_CHANGED_ALL       (1u << 10)
#define GPU_IRQ_PERFCNT_SAMPLE_DONE     (1u << 16)
#define GPU_IRQ_CLEAN_CACHES_COMPLETED  (1u << 17)
#define GPU_IRQ_VALID   (GPU_IRQ_FAULT | GPU_IRQ_MULTIPLE_FAULT | \
                         GPU_IRQ_RESET_COMPLETED | GPU_IRQ_POWER_CHANGED | \
                         GPU_IRQ_POWER_CHANGED_ALL | \
                         GPU_IRQ_PERFCNT_SAMPLE_DONE | \
                         GPU_IRQ_CLEAN_CACHES_COMPLETED)

#define GPU_CMD_NOP                 0
#define GPU_CMD_SOFT_RESET          1
#define GPU_CMD_HARD_RESET          2
#define GPU_CMD_PERFCNT_CLEAR       3
#define GPU_CMD_PERFCNT_SAMPLE      4
#define GPU_CMD_CYCLE_COUNT_START   5
#define GPU_CMD_CYCLE_COUNT_STOP    6
#define GPU_CMD_CLEAN_CACHES        7
#define GPU_CMD_CLEAN_INV_CACHES    8

/* Job control registers */
#define JOB_INT_RAWSTAT         0x1000
#define JOB_INT_CLEAR           0x1004
#define JOB_INT_MASK            0x1008
#define JOB_INT_STAT            0x100c
#define JOB_INT_JS_STATE        0x1010
#define JOB_INT_THROTTLE        0x1014
#define JS_BASE                 0x1800
#define JS_STRIDE               0x80
#define JS_HEAD_LO              0x00
#define JS_HEAD_HI              0x04
#define JS_TAIL_LO              0x08
#define JS_TAIL_HI              0x0c
#define JS_AFFINITY_LO          0x10
#define JS_AFFINITY_HI          0x14
#define JS_CONFIG               0x18
#define JS_XAFFINITY            0x1c
#define JS_COMMAND              0x20
#define JS_STATUS               0x24
#define JS_HEAD_NEXT_LO         0x40
#define JS_HEAD_NEXT_HI         0x44
#define JS_AFFINITY_NEXT_LO     0x50
#define JS_AFFINITY_NEXT_HI     0x54
#define JS_CONFIG_NEXT          0x58
#define JS_XAFFINITY_NEXT       0x5c
#define JS_COMMAND_NEXT         0x60
#define JS_FLUSH_ID_NEXT        0x70

#define JOB_IRQ_DONE(j)         (1u << (j))
#define JOB_IRQ_FAILED(j)       (1u << (16 + (j)))
#define JOB_IRQ_VALID           0x00070007u

#define JS_CONFIG_AS_MASK       0xfu
#define JS_CONFIG_CHAIN_FLAG    (1u << 11)

#define JS_COMMAND_NOP          0
#define JS_COMMAND_START        1
#define JS_COMMAND_SOFT_STOP    2
#define JS_COMMAND_HARD_STOP    3
#define JS_COMMAND_SOFT_STOP_0  4
#define JS_COMMAND_HARD_STOP_0  5
#define JS_COMMAND_SOFT_STOP_1  6
#define JS_COMMAND_HARD_STOP_1  7

/* JS_STATUS and descriptor exception codes (drm_panfrost_exception_type) */
#define EXC_NOT_STARTED         0x00
#define EXC_DONE                0x01
#define EXC_STOPPED             0x03
#define EXC_TERMINATED          0x04
#define EXC_ACTIVE              0x08
#define EXC_JOB_CONFIG_FAULT    0x40
#define EXC_JOB_BUS_FAULT       0x48
#define EXC_DATA_INVALID_FAULT  0x58
#define EXC_TRANSLATION_FAULT   0xc0    /* + level */
#define EXC_PERMISSION_FAULT    0xc8    /* + level */
#define EXC_TRANSTAB_BUS_FAULT  0xd0    /* + level */

/* MMU registers */
#define MMU_INT_RAWSTAT         0x2000
#define MMU_INT_CLEAR           0x2004
#define MMU_INT_MASK            0x2008
#define MMU_INT_STAT            0x200c
#define MMU_AS_BASE             0x2400
#define MMU_AS_STRIDE           0x40
#define AS_TRANSTAB_LO          0x00
#define AS_TRANSTAB_HI          0x04
#define AS_MEMATTR_LO           0x08
#define AS_MEMATTR_HI           0x0c
#define AS_LOCKADDR_LO          0x10
#define AS_LOCKADDR_HI          0x14
#define AS_COMMAND              0x18
#define AS_FAULTSTATUS          0x1c
#define AS_FAULTADDRESS_LO      0x20
#define AS_FAULTADDRESS_HI      0x24
#define AS_STATUS               0x28
#define AS_TRANSCFG_LO          0x30
#define AS_TRANSCFG_HI          0x34
#define AS_FAULTEXTRA_LO        0x38
#define AS_FAULTEXTRA_HI        0x3c

#define MMU_IRQ_VALID           0x00ff00ffu

#define AS_COMMAND_NOP          0
#define AS_COMMAND_UPDATE       1
#define AS_COMMAND_LOCK         2
#define AS_COMMAND_UNLOCK       3
#define AS_COMMAND_FLUSH_PT     4
#define AS_COMMAND_FLUSH_MEM    5

#define AS_STATUS_ACTIVE        1u

#define TRANSTAB_ADRMODE_MASK   0x3ull
#define TRANSTAB_ADRMODE_IDENT  0x2ull
#define TRANSTAB_ADRMODE_TABLE  0x3ull
#define TRANSTAB_ADDR_MASK      0x0000fffffffff000ull
#define TRANSCFG_ADRMODE_MASK   0xfull
#define TRANSCFG_ADRMODE_LEGACY 0x0ull
#define TRANSCFG_ADRMODE_UNMAPPED 0x1ull
#define TRANSCFG_ADRMODE_IDENT  0x2ull

#define FAULT_ACCESS_READ       (2u << 8)
#define FAULT_ACCESS_WRITE      (3u << 8)

/* Mali-LPAE descriptors */
#define PTE_TYPE_MASK           0x3ull
#define PTE_TYPE_BLOCK          0x1ull  /* also the page type at level 3 */
#define PTE_TYPE_TABLE          0x3ull
#define PTE_ADDR_MASK           0x0000fffffffff000ull
#define PTE_HAP_READ            (1ull << 6)
#define PTE_HAP_WRITE           (1ull << 7)
#define MALI_VA_BITS            48

/* Job descriptor header (Mesa "Job Header") and job types */
#define JOB_HDR_EXC_STATUS      0
#define JOB_HDR_FAULT_POINTER   8
#define JOB_HDR_TYPE            16
#define JOB_HDR_NEXT            24
#define JOB_HDR_SIZE            32
#define JOB_TYPE_NULL           1
#define JOB_TYPE_WRITE_VALUE    2
#define JOB_TYPE_CACHE_FLUSH    3
#define WV_ADDRESS              32
#define WV_TYPE                 40
#define WV_IMMEDIATE            48
#define WV_END                  56
#define WV_CYCLE_COUNTER        1
#define WV_SYSTEM_TIMESTAMP     2
#define WV_ZERO                 3
#define WV_IMMEDIATE_8          4
#define WV_IMMEDIATE_16         5
#define WV_IMMEDIATE_32         6
#define WV_IMMEDIATE_64         7

typedef enum MaliXlate {
    XLATE_OK,
    XLATE_FAULT,        /* MMU fault raised (or queued): the job stalls */
    XLATE_UNMAPPED,     /* AS switched off: the job fails with a bus fault */
} MaliXlate;

typedef enum MaliJobResult {
    JOB_OK,
    JOB_STALL,
    JOB_FAIL,
    JOB_HANG,
} MaliJobResult;

static void mali_update_irqs(MaliJMState *s)
{
    bool level[MALI_JM_NUM_IRQS] = {
        [MALI_JM_IRQ_JOB] = (s->job_irq_raw & s->job_irq_mask) != 0,
        [MALI_JM_IRQ_MMU] = (s->mmu_irq_raw & s->mmu_irq_mask) != 0,
        [MALI_JM_IRQ_GPU] = (s->gpu_irq_raw & s->gpu_irq_mask) != 0,
    };
    int i;

    for (i = 0; i < MALI_JM_NUM_IRQS; i++) {
        if (level[i] && !s->line[i]) {
            s->cnt_irqs_raised++;
        }
        s->line[i] = level[i];
        qemu_set_irq(s->irq[i], level[i]);
    }
}

static void mali_raise_gpu(MaliJMState *s, uint32_t bits)
{
    s->gpu_irq_raw |= bits;
    mali_update_irqs(s);
}

static uint64_t mali_now_ns(void)
{
    return qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
}

/* The GPU clock is taken as 1 GHz: one cycle per nanosecond of virtual time */
static uint64_t mali_cycle_count(MaliJMState *s)
{
    if (!s->cycle_counting) {
        return s->cycles_base;
    }
    return s->cycles_base + (mali_now_ns() - s->cycle_started);
}

/* The system timestamp counts at the CPU's generic-timer frequency */
static uint64_t mali_timestamp(MaliJMState *s)
{
    return muldiv64(mali_now_ns(), s->timestamp_hz, NANOSECONDS_PER_SECOND);
}

/* ---- reset --------------------------------------------------------------- */

static void mali_reset_state(MaliJMState *s)
{
    int i;

    timer_del(&s->exec_timer);
    s->gpu_irq_raw = 0;
    s->gpu_irq_mask = 0;
    s->gpu_fault_status = 0;
    s->gpu_fault_address = 0;
    s->shader_ready = 0;
    s->tiler_ready = 0;
    s->l2_ready = 0;
    s->stack_ready = 0;
    s->perfcnt_base = 0;
    s->perfcnt_cfg = 0;
    memset(s->prfcnt_en, 0, sizeof(s->prfcnt_en));
    s->jm_config = 0;
    s->shader_config = 0;
    s->tiler_config = 0;
    s->l2_mmu_config = 0;
    s->coherency_enable = 0;
    s->cycle_counting = false;
    s->cycles_base = 0;
    s->cycle_started = 0;

    /* Abandon every job: no write-back, no completion interrupt */
    s->job_irq_raw = 0;
    s->job_irq_mask = 0;
    memset(s->slot, 0, sizeof(s->slot));
    for (i = 0; i < MALI_JM_NUM_SLOTS; i++) {
        s->slot[i].stall_as = -1;
    }

    /* Every AS unmapped (TRANSTAB mode 0) with TRANSCFG legacy */
    s->mmu_irq_raw = 0;
    s->mmu_irq_mask = 0;
    memset(s->as, 0, sizeof(s->as));

    mali_update_irqs(s);
}

static void mali_reset_hold(Object *obj, ResetType type)
{
    MaliJMState *s = MALI_JM(obj);

    mali_reset_state(s);
}

static void mali_gpu_reset(MaliJMState *s, bool hard)
{
    /* The flush id survives: the driver compares it across resets */
    mali_reset_state(s);
    if (hard) {
        s->cnt_hard_resets++;
    } else {
        s->cnt_soft_resets++;
    }
    mali_raise_gpu(s, GPU_IRQ_RESET_COMPLETED);
}

/* ---- MMU ----------------------------------------------------------------- */

static bool mali_as_unmapped(MaliAddressSpace *as)
{
    uint64_t cfg = as->cur_transcfg & TRANSCFG_ADRMODE_MASK;
    uint64_t mode = as->cur_transtab & TRANSTAB_ADRMODE_MASK;

    if (cfg == TRANSCFG_ADRMODE_UNMAPPED) {
        return true;
    }
    if (cfg == TRANSCFG_ADRMODE_IDENT) {
        return false;
    }
    if (cfg != TRANSCFG_ADRMODE_LEGACY) {
        /* AArch64 formats are not modelled: panfrost uses them for no G52 */
        return true;
    }
    return mode != TRANSTAB_ADRMODE_TABLE && mode != TRANSTAB_ADRMODE_IDENT;
}

static bool mali_as_identity(MaliAddressSpace *as)
{
    uint64_t cfg = as->cur_transcfg & TRANSCFG_ADRMODE_MASK;

    return cfg == TRANSCFG_ADRMODE_IDENT ||
           (cfg == TRANSCFG_ADRMODE_LEGACY &&
            (as->cur_transtab & TRANSTAB_ADRMODE_MASK) ==
            TRANSTAB_ADRMODE_IDENT);
}

/*
 * Report a fault on address space @asn. One fault is outstanding per AS:
 * while its interrupt bit is set, other faulting jobs stall without
 * latching and fault again (and report) when they are retried.
 */
static void mali_mmu_fault(MaliJMState *s, int asn, uint64_t va,
                           uint32_t status)
{
    MaliAddressSpace *as = &s->as[asn];

    if (s->mmu_irq_raw & (1u << asn)) {
        return;
    }
    as->faultstatus = status;
    as->faultaddress = va;
    s->mmu_irq_raw |= 1u << asn;
    s->cnt_mmu_faults++;
    mali_update_irqs(s);
}

/*
 * Translate a GPU virtual address through the 4-level Mali-LPAE table of
 * address space @asn. Each descriptor is read once per walk: the guest may
 * edit the tables concurrently.
 */
static MaliXlate mali_translate(MaliJMState *s, int asn, uint64_t va,
                                bool write, hwaddr *pa, bool report)
{
    MaliAddressSpace *as = &s->as[asn];
    uint32_t access = write ? FAULT_ACCESS_WRITE : FAULT_ACCESS_READ;
    uint64_t table, desc;
    int level;

    if (mali_as_unmapped(as)) {
        return XLATE_UNMAPPED;
    }
    if (mali_as_identity(as)) {
        *pa = va;
        return XLATE_OK;
    }
    if (va >> MALI_VA_BITS) {
        if (report) {
            mali_mmu_fault(s, asn, va, EXC_TRANSLATION_FAULT | access);
        }
        return XLATE_FAULT;
    }

    table = as->cur_transtab & TRANSTAB_ADDR_MASK;
    for (level = 0; level < 4; level++) {
        int shift = 39 - 9 * level;
        uint64_t index = (va >> shift) & 0x1ff;
        MemTxResult res;

        res = ldq_le_dma(&s->dma_as, table + index * 8, &desc,
                         MEMTXATTRS_UNSPECIFIED);
        if (res != MEMTX_OK) {
            if (report) {
                mali_mmu_fault(s, asn, va,
                               (EXC_TRANSTAB_BUS_FAULT + level) | access);
            }
            return XLATE_FAULT;
        }
        if (level < 3 && (desc & PTE_TYPE_MASK) == PTE_TYPE_TABLE) {
            table = desc & PTE_ADDR_MASK;
            continue;
        }
        if ((desc & PTE_TYPE_MASK) != PTE_TYPE_BLOCK || level == 0) {
            if (report) {
                mali_mmu_fault(s, asn, va,
                               (EXC_TRANSLATION_FAULT + level) | access);
            }
            return XLATE_FAULT;
        }
        /* a 1 GiB block (level 1), 2 MiB block (level 2) or 4 KiB page */
        if (!(desc & (write ? PTE_HAP_WRITE : PTE_HAP_READ))) {
            if (report) {
                mali_mmu_fault(s, asn, va,
                               (EXC_PERMISSION_FAULT + level) | access);
            }
            return XLATE_FAULT;
        }
        *pa = (desc & PTE_ADDR_MASK & ~((1ull << shift) - 1)) |
              (va & ((1ull << shift) - 1));
        return XLATE_OK;
    }
    g_assert_not_reached();
}

/* ---- job execution ------------------------------------------------------- */

typedef struct MaliJobCtx {
    MaliJMState *s;
    MaliJobSlot *js;
    int asn;
    uint32_t fail_code;
    uint64_t fault_va;
} MaliJobCtx;

/*
 * Copy @len bytes between the job's GPU address space and @buf, page by page.
 * A fault stalls the job (or fails it if the AS is switched off).
 */
static MaliJobResult mali_access(MaliJobCtx *c, uint64_t va, void *buf,
                                 unsigned len, bool write)
{
    uint8_t *p = buf;

    while (len) {
        unsigned chunk = MIN(len, 0x1000 - (va & 0xfff));
        MemTxResult res;
        hwaddr pa;

        switch (mali_translate(c->s, c->asn, va, write, &pa, true)) {
        case XLATE_OK:
            break;
        case XLATE_FAULT:
            c->js->stall_as = c->asn;
            return JOB_STALL;
        case XLATE_UNMAPPED:
            c->fail_code = EXC_JOB_BUS_FAULT;
            c->fault_va = va;
            return JOB_FAIL;
        }
        if (write) {
            res = dma_memory_write(&c->s->dma_as, pa, p, chunk,
                                   MEMTXATTRS_UNSPECIFIED);
        } else {
            res = dma_memory_read(&c->s->dma_as, pa, p, chunk,
                                  MEMTXATTRS_UNSPECIFIED);
        }
        if (res != MEMTX_OK) {
            c->fail_code = EXC_JOB_BUS_FAULT;
            c->fault_va = va;
            return JOB_FAIL;
        }
        va += chunk;
        p += chunk;
        len -= chunk;
    }
    return JOB_OK;
}

static MaliJobResult mali_write_value(MaliJobCtx *c, const uint8_t *hdr)
{
    uint64_t target = ldq_le_p(hdr + WV_ADDRESS);
    uint32_t type = ldl_le_p(hdr + WV_TYPE);
    uint64_t imm = ldq_le_p(hdr + WV_IMMEDIATE);
    uint8_t out[8];
    unsigned len;

    switch (type) {
    case WV_CYCLE_COUNTER:
        stq_le_p(out, mali_cycle_count(c->s));
        len = 8;
        break;
    case WV_SYSTEM_TIMESTAMP:
        stq_le_p(out, mali_timestamp(c->s));
        len = 8;
        break;
    case WV_ZERO:
        stq_le_p(out, 0);
        len = 8;
        break;
    case WV_IMMEDIATE_8:
        out[0] = imm;
        len = 1;
        break;
    case WV_IMMEDIATE_16:
        stw_le_p(out, imm);
        len = 2;
        break;
    case WV_IMMEDIATE_32:
        stl_le_p(out, imm);
        len = 4;
        break;
    case WV_IMMEDIATE_64:
        stq_le_p(out, imm);
        len = 8;
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: WRITE_VALUE job at 0x%"
                      PRIx64 " has type %u\n", c->js->job, type);
        c->fail_code = EXC_DATA_INVALID_FAULT;
        c->fault_va = c->js->job;
        return JOB_FAIL;
    }
    return mali_access(c, target, out, len, true);
}

/*
 * Run the slot's current job. Jobs are idempotent (NULL, WRITE_VALUE,
 * CACHE_FLUSH), so a job that stalled on a fault is simply run again.
 */
static MaliJobResult mali_run_job(MaliJobCtx *c, uint64_t *next)
{
    MaliJMState *s = c->s;
    uint8_t hdr[WV_END];
    MaliJobResult r;
    uint8_t type;
    uint8_t done[4];

    if (s->inject_hang_jobs) {
        s->inject_hang_jobs--;
        s->cnt_jobs_hung++;
        return JOB_HANG;
    }
    if (s->inject_fail_jobs) {
        s->inject_fail_jobs--;
        c->fail_code = s->inject_fail_code;
        c->fault_va = c->js->job;
        return JOB_FAIL;
    }

    r = mali_access(c, c->js->job, hdr, JOB_HDR_SIZE, false);
    if (r != JOB_OK) {
        return r;
    }
    type = hdr[JOB_HDR_TYPE] >> 1;
    if (hdr[JOB_HDR_TYPE] & 1) {
        *next = ldq_le_p(hdr + JOB_HDR_NEXT);
    } else {
        *next = ldl_le_p(hdr + JOB_HDR_NEXT);
    }

    switch (type) {
    case JOB_TYPE_NULL:
    case JOB_TYPE_CACHE_FLUSH:
        /* there is no cache to flush: every access goes to memory */
        break;
    case JOB_TYPE_WRITE_VALUE:
        r = mali_access(c, c->js->job + JOB_HDR_SIZE, hdr + JOB_HDR_SIZE,
                        WV_END - JOB_HDR_SIZE, false);
        if (r == JOB_OK) {
            r = mali_write_value(c, hdr);
        }
        if (r != JOB_OK) {
            return r;
        }
        break;
    default:
        /* No shader cores: fail rather than pretend to have run it */
        qemu_log_mask(LOG_UNIMP, "mali-jm: job type %u at 0x%" PRIx64
                      " is not modelled\n", type, c->js->job);
        c->fail_code = EXC_JOB_CONFIG_FAULT;
        c->fault_va = c->js->job;
        return JOB_FAIL;
    }

    /* Descriptor write-back: exception_status = DONE */
    stl_le_p(done, EXC_DONE);
    return mali_access(c, c->js->job + JOB_HDR_EXC_STATUS, done, 4, true);
}

static void mali_try_promote(MaliJMState *s, int j);

static void mali_job_irq(MaliJMState *s, uint32_t bits)
{
    if (s->inject_drop_irqs) {
        s->inject_drop_irqs--;
        s->cnt_irqs_dropped++;
        return;
    }
    s->job_irq_raw |= bits;
    mali_update_irqs(s);
}

/* The chain ended with @status (DONE, or why it did not complete) */
static void mali_chain_end(MaliJMState *s, int j, uint32_t status)
{
    MaliJobSlot *js = &s->slot[j];

    js->run = MALI_SLOT_IDLE;
    js->stall_as = -1;
    js->status = status;
    if (status == EXC_DONE) {
        js->head = 0;
        js->tail = 0;
        mali_job_irq(s, JOB_IRQ_DONE(j));
        /* The job manager dequeues _NEXT without waiting for an ACK */
        mali_try_promote(s, j);
    } else {
        js->head = js->job;
        js->tail = js->job;
        mali_job_irq(s, JOB_IRQ_FAILED(j));
        /* _NEXT waits until the driver clears the FAILED bit */
    }
}

static void mali_job_failed(MaliJMState *s, int j, MaliJobCtx *c)
{
    MaliJobSlot *js = &s->slot[j];

    s->cnt_jobs_failed++;
    qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: job at 0x%" PRIx64 " on slot %d"
                  " failed with 0x%x\n", js->job, j, c->fail_code);
    /*
     * Write the exception into the descriptor if its AS still maps it;
     * an AS that was switched off takes no write-back.
     */
    if (c->fail_code != EXC_JOB_BUS_FAULT) {
        uint8_t wb[16];
        hwaddr pa;

        stl_le_p(wb, c->fail_code);
        stl_le_p(wb + 4, 0);
        stq_le_p(wb + 8, c->fault_va);
        /* a header that does not translate is left alone, silently */
        if (mali_translate(s, c->asn, js->job, true, &pa, false) == XLATE_OK &&
            ((js->job & 0xfff) + sizeof(wb)) <= 0x1000) {
            dma_memory_write(&s->dma_as, pa, wb, sizeof(wb),
                             MEMTXATTRS_UNSPECIFIED);
        }
    }
    mali_chain_end(s, j, c->fail_code);
}

static void mali_schedule(MaliJMState *s, uint32_t delay_ns)
{
    int64_t when = mali_now_ns() + delay_ns;

    if (!timer_pending(&s->exec_timer) ||
        timer_expire_time_ns(&s->exec_timer) > when) {
        timer_mod(&s->exec_timer, when);
    }
}

static void mali_run_slot(MaliJMState *s, int j)
{
    MaliJobSlot *js = &s->slot[j];
    MaliJobCtx c = {
        .s = s, .js = js, .asn = js->config & JS_CONFIG_AS_MASK,
    };
    uint32_t budget = MAX(s->jobs_per_tick, 1);

    if (c.asn >= MALI_JM_NUM_AS) {
        c.fail_code = EXC_JOB_CONFIG_FAULT;
        c.fault_va = js->job;
        s->cnt_jobs_failed++;
        mali_chain_end(s, j, EXC_JOB_CONFIG_FAULT);
        return;
    }
    while (js->run == MALI_SLOT_RUNNING && budget--) {
        uint64_t next = 0;

        switch (mali_run_job(&c, &next)) {
        case JOB_OK:
            s->cnt_jobs_run++;
            if (!next) {
                mali_chain_end(s, j, EXC_DONE);
                return;
            }
            js->job = next;
            break;
        case JOB_STALL:
            js->run = MALI_SLOT_STALLED;
            return;
        case JOB_HANG:
            js->run = MALI_SLOT_HUNG;
            return;
        case JOB_FAIL:
            mali_job_failed(s, j, &c);
            return;
        }
    }
}

static void mali_exec_timer(void *opaque)
{
    MaliJMState *s = opaque;
    bool more = false;
    int j;

    for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
        if (s->slot[j].run == MALI_SLOT_RUNNING) {
            mali_run_slot(s, j);
        }
    }
    for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
        more |= s->slot[j].run == MALI_SLOT_RUNNING;
    }
    if (more) {
        mali_schedule(s, s->tick_ns);
    }
}

/* Start the queued chain if the slot is free and not held by a failure */
static void mali_try_promote(MaliJMState *s, int j)
{
    MaliJobSlot *js = &s->slot[j];

    if (!js->start_pending || js->run != MALI_SLOT_IDLE ||
        (s->job_irq_raw & JOB_IRQ_FAILED(j))) {
        return;
    }
    js->start_pending = false;
    js->head = js->head_next;
    js->tail = js->head_next;
    js->affinity = js->affinity_next;
    js->config = js->config_next;
    js->xaffinity = js->xaffinity_next;
    js->status = EXC_ACTIVE;
    js->job = js->head_next;
    js->stall_as = -1;
    js->run = MALI_SLOT_RUNNING;
    s->cnt_chains_started++;
    if ((s->shader_ready & MALI_SHADER_PRESENT) == 0) {
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: job chain started on slot %d"
                      " with the shader cores powered off\n", j);
    }
    mali_schedule(s, s->job_latency_ns);
}

/*
 * Retry the jobs stalled on @asn once the driver has acknowledged its fault
 * and flushed (or updated) the address space: the access walks the tables
 * again from the timer, so the rest of the driver's sequence runs first.
 */
static void mali_mmu_resume(MaliJMState *s, int asn)
{
    bool kicked = false;
    int j;

    if (s->mmu_irq_raw & (1u << asn)) {
        return;
    }
    for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
        MaliJobSlot *js = &s->slot[j];

        if (js->run == MALI_SLOT_STALLED && js->stall_as == asn) {
            js->run = MALI_SLOT_RUNNING;
            js->stall_as = -1;
            kicked = true;
        }
    }
    if (kicked) {
        mali_schedule(s, s->job_latency_ns);
    }
}

/* An AS that was switched off kills the jobs stalled on it */
static void mali_mmu_kill_stalled(MaliJMState *s, int asn)
{
    int j;

    for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
        MaliJobSlot *js = &s->slot[j];

        if (js->run == MALI_SLOT_STALLED && js->stall_as == asn) {
            MaliJobCtx c = {
                .s = s, .js = js, .asn = asn,
                .fail_code = EXC_JOB_BUS_FAULT, .fault_va = js->job,
            };
            mali_job_failed(s, j, &c);
        }
    }
}

static void mali_as_command(MaliJMState *s, int asn, uint32_t cmd)
{
    MaliAddressSpace *as = &s->as[asn];

    s->cnt_as_commands++;
    switch (cmd) {
    case AS_COMMAND_NOP:
    case AS_COMMAND_LOCK:
        break;
    case AS_COMMAND_UPDATE:
        as->cur_transtab = as->transtab;
        as->cur_memattr = as->memattr;
        as->cur_transcfg = as->transcfg;
        if (mali_as_unmapped(as)) {
            mali_mmu_kill_stalled(s, asn);
        } else {
            mali_mmu_resume(s, asn);
        }
        break;
    case AS_COMMAND_UNLOCK:
    case AS_COMMAND_FLUSH_PT:
        mali_mmu_resume(s, asn);
        break;
    case AS_COMMAND_FLUSH_MEM:
        /*
         * Not a retry point: panfrost_mmu_disable() flushes before it
         * switches a faulty AS off, and the stalled job must then fail.
         */
        s->latest_flush++;
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: AS%d: unknown command %u\n",
                      asn, cmd);
        return;
    }
    if (s->inject_stick_as_active) {
        s->inject_stick_as_active--;
        as->active_stuck = true;
    }
}

/* ---- job slot commands --------------------------------------------------- */

static void mali_stop(MaliJMState *s, int j, bool hard)
{
    MaliJobSlot *js = &s->slot[j];

    if (js->run == MALI_SLOT_IDLE) {
        return;
    }
    /*
     * The model is always between jobs when the driver runs, so a soft
     * stop takes effect at once: JS_TAIL is the first job not completed.
     */
    if (hard) {
        s->cnt_hard_stops++;
        mali_chain_end(s, j, EXC_TERMINATED);
    } else {
        s->cnt_soft_stops++;
        mali_chain_end(s, j, EXC_STOPPED);
    }
}

static void mali_js_command(MaliJMState *s, int j, uint32_t cmd)
{
    bool flag = s->slot[j].config & JS_CONFIG_CHAIN_FLAG;

    switch (cmd) {
    case JS_COMMAND_NOP:
        break;
    case JS_COMMAND_SOFT_STOP:
        mali_stop(s, j, false);
        break;
    case JS_COMMAND_HARD_STOP:
        mali_stop(s, j, true);
        break;
    case JS_COMMAND_SOFT_STOP_0:
    case JS_COMMAND_SOFT_STOP_1:
        if (flag == (cmd == JS_COMMAND_SOFT_STOP_1)) {
            mali_stop(s, j, false);
        }
        break;
    case JS_COMMAND_HARD_STOP_0:
    case JS_COMMAND_HARD_STOP_1:
        if (flag == (cmd == JS_COMMAND_HARD_STOP_1)) {
            mali_stop(s, j, true);
        }
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: JS%d: unknown command %u\n",
                      j, cmd);
    }
}

static void mali_js_command_next(MaliJMState *s, int j, uint32_t cmd)
{
    MaliJobSlot *js = &s->slot[j];

    switch (cmd) {
    case JS_COMMAND_NOP:
        /* cancel a queued start; the _NEXT registers keep their values */
        js->start_pending = false;
        break;
    case JS_COMMAND_START:
        if (js->start_pending) {
            qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: JS%d: START while a "
                          "start is already queued\n", j);
        }
        js->start_pending = true;
        mali_try_promote(s, j);
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: JS%d: unknown _NEXT "
                      "command %u\n", j, cmd);
    }
}

static uint32_t mali_js_state(MaliJMState *s)
{
    uint32_t state = 0;
    int j;

    for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
        if (s->slot[j].run != MALI_SLOT_IDLE) {
            state |= 1u << j;
        }
        if (s->slot[j].start_pending) {
            state |= 1u << (16 + j);
        }
    }
    return state;
}

/* ---- GPU control --------------------------------------------------------- */

static void mali_gpu_command(MaliJMState *s, uint32_t cmd)
{
    switch (cmd) {
    case GPU_CMD_NOP:
        break;
    case GPU_CMD_SOFT_RESET:
        if (s->inject_ignore_soft_resets) {
            s->inject_ignore_soft_resets--;
            return;
        }
        mali_gpu_reset(s, false);
        break;
    case GPU_CMD_HARD_RESET:
        mali_gpu_reset(s, true);
        break;
    case GPU_CMD_PERFCNT_CLEAR:
        break;
    case GPU_CMD_PERFCNT_SAMPLE:
        /* No counters are modelled: the sample completes with nothing */
        mali_raise_gpu(s, GPU_IRQ_PERFCNT_SAMPLE_DONE);
        break;
    case GPU_CMD_CYCLE_COUNT_START:
        if (!s->cycle_counting) {
            s->cycle_counting = true;
            s->cycle_started = mali_now_ns();
        }
        break;
    case GPU_CMD_CYCLE_COUNT_STOP:
        if (s->cycle_counting) {
            s->cycles_base = mali_cycle_count(s);
            s->cycle_counting = false;
        }
        break;
    case GPU_CMD_CLEAN_CACHES:
    case GPU_CMD_CLEAN_INV_CACHES:
        s->latest_flush++;
        mali_raise_gpu(s, GPU_IRQ_CLEAN_CACHES_COMPLETED);
        break;
    default:
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: unknown GPU command %u\n",
                      cmd);
    }
}

static void mali_power(MaliJMState *s, uint64_t *ready, uint64_t present,
                       uint64_t bits, bool on)
{
    /* Transitions are instant: PWRTRANS always reads 0 */
    if (on) {
        *ready |= bits & present;
    } else {
        *ready &= ~bits;
    }
    mali_raise_gpu(s, GPU_IRQ_POWER_CHANGED | GPU_IRQ_POWER_CHANGED_ALL);
}

static uint64_t lo_hi(uint64_t v, hwaddr offset)
{
    return offset & 4 ? v >> 32 : (uint32_t)v;
}

static void set_lo_hi(uint64_t *v, hwaddr offset, uint32_t value)
{
    if (offset & 4) {
        *v = deposit64(*v, 32, 32, value);
    } else {
        *v = deposit64(*v, 0, 32, value);
    }
}

static uint64_t mali_gpu_read(MaliJMState *s, hwaddr a)
{
    switch (a) {
    case GPU_ID:
        return MALI_GPU_ID;
    case GPU_L2_FEATURES:
        return MALI_L2_FEATURES;
    case GPU_CORE_FEATURES:
        return MALI_CORE_FEATURES;
    case GPU_TILER_FEATURES:
        return MALI_TILER_FEATURES;
    case GPU_MEM_FEATURES:
        return MALI_MEM_FEATURES;
    case GPU_MMU_FEATURES:
        return MALI_MMU_FEATURES;
    case GPU_AS_PRESENT:
        return MALI_AS_PRESENT;
    case GPU_JS_PRESENT:
        return MALI_JS_PRESENT;
    case GPU_INT_RAWSTAT:
        return s->gpu_irq_raw;
    case GPU_INT_MASK:
        return s->gpu_irq_mask;
    case GPU_INT_STAT:
        return s->gpu_irq_raw & s->gpu_irq_mask;
    case GPU_STATUS:
        return 0;
    case GPU_LATEST_FLUSH_ID:
        return s->latest_flush;
    case GPU_FAULT_STATUS:
        return s->gpu_fault_status;
    case GPU_FAULT_ADDRESS_LO:
    case GPU_FAULT_ADDRESS_HI:
        return lo_hi(s->gpu_fault_address, a);
    case GPU_PERFCNT_BASE_LO:
    case GPU_PERFCNT_BASE_HI:
        return lo_hi(s->perfcnt_base, a);
    case GPU_PERFCNT_CFG:
        return s->perfcnt_cfg;
    case GPU_PRFCNT_JM_EN:
        return s->prfcnt_en[0];
    case GPU_PRFCNT_SHADER_EN:
        return s->prfcnt_en[1];
    case GPU_PRFCNT_TILER_EN:
        return s->prfcnt_en[2];
    case GPU_PRFCNT_MMU_L2_EN:
        return s->prfcnt_en[3];
    case GPU_CYCLE_COUNT_LO:
    case GPU_CYCLE_COUNT_HI:
        return lo_hi(mali_cycle_count(s), a);
    case GPU_TIMESTAMP_LO:
    case GPU_TIMESTAMP_HI:
        return lo_hi(mali_timestamp(s), a);
    case GPU_THREAD_MAX_THREADS:
        return MALI_THREAD_MAX_THREADS;
    case GPU_THREAD_MAX_WG_SIZE:
        return MALI_THREAD_MAX_WG;
    case GPU_THREAD_MAX_BARRIER:
        return MALI_THREAD_MAX_BARRIER;
    case GPU_JS_FEATURES0:
        return 0x20e;
    case GPU_JS_FEATURES0 + 4:
        return 0x1fe;
    case GPU_JS_FEATURES0 + 8:
        return 0x7e;
    case GPU_SHADER_PRESENT_LO:
    case GPU_SHADER_PRESENT_LO + 4:
        return lo_hi(MALI_SHADER_PRESENT, a);
    case GPU_TILER_PRESENT_LO:
    case GPU_TILER_PRESENT_LO + 4:
        return lo_hi(MALI_TILER_PRESENT, a);
    case GPU_L2_PRESENT_LO:
    case GPU_L2_PRESENT_LO + 4:
        return lo_hi(MALI_L2_PRESENT, a);
    case GPU_SHADER_READY_LO:
    case GPU_SHADER_READY_LO + 4:
        return lo_hi(s->shader_ready, a);
    case GPU_TILER_READY_LO:
    case GPU_TILER_READY_LO + 4:
        return lo_hi(s->tiler_ready, a);
    case GPU_L2_READY_LO:
    case GPU_L2_READY_LO + 4:
        return lo_hi(s->l2_ready, a);
    case GPU_COHERENCY_FEATURES:
        return MALI_COHERENCY_FEATURES;
    case GPU_COHERENCY_ENABLE:
        return s->coherency_enable;
    case GPU_STACK_PRESENT_LO:
    case GPU_STACK_PRESENT_LO + 4:
        return lo_hi(MALI_STACK_PRESENT, a);
    case GPU_STACK_READY_LO:
    case GPU_STACK_READY_LO + 4:
        return lo_hi(s->stack_ready, a);
    case GPU_JM_CONFIG:
        return s->jm_config;
    case GPU_SHADER_CONFIG:
        return s->shader_config;
    case GPU_TILER_CONFIG:
        return s->tiler_config;
    case GPU_L2_MMU_CONFIG:
        return s->l2_mmu_config;
    }
    if ((a >= GPU_PWRTRANS_FIRST && a <= GPU_PWRACTIVE_LAST) ||
        (a >= GPU_TEXTURE_FEATURES0 && a < GPU_JS_FEATURES0 + 0x40) ||
        a == GPU_AFBC_FEATURES || a == GPU_THREAD_FEATURES ||
        a == GPU_THREAD_TLS_ALLOC || a == GPU_STACK_PWRTRANS_LO ||
        a == GPU_STACK_PWRTRANS_LO + 4) {
        return 0;
    }
    qemu_log_mask(LOG_UNIMP, "mali-jm: read of GPU register 0x%03"
                  HWADDR_PRIx "\n", a);
    return 0;
}

static void mali_gpu_write(MaliJMState *s, hwaddr a, uint32_t v)
{
    switch (a) {
    case GPU_INT_CLEAR:
        s->gpu_irq_raw &= ~v;
        mali_update_irqs(s);
        return;
    case GPU_INT_MASK:
        s->gpu_irq_mask = v & GPU_IRQ_VALID;
        mali_update_irqs(s);
        return;
    case GPU_CMD:
        mali_gpu_command(s, v);
        return;
    case GPU_PWR_KEY:
    case GPU_PWR_OVERRIDE0:
    case GPU_PWR_OVERRIDE1:
        return;
    case GPU_PERFCNT_BASE_LO:
    case GPU_PERFCNT_BASE_HI:
        set_lo_hi(&s->perfcnt_base, a, v);
        return;
    case GPU_PERFCNT_CFG:
        s->perfcnt_cfg = v;
        return;
    case GPU_PRFCNT_JM_EN:
        s->prfcnt_en[0] = v;
        return;
    case GPU_PRFCNT_SHADER_EN:
        s->prfcnt_en[1] = v;
        return;
    case GPU_PRFCNT_TILER_EN:
        s->prfcnt_en[2] = v;
        return;
    case GPU_PRFCNT_MMU_L2_EN:
        s->prfcnt_en[3] = v;
        return;
    case GPU_SHADER_PWRON_LO:
    case GPU_SHADER_PWRON_LO + 4:
    case GPU_SHADER_PWROFF_LO:
    case GPU_SHADER_PWROFF_LO + 4:
        mali_power(s, &s->shader_ready, MALI_SHADER_PRESENT,
                   (uint64_t)v << (a & 4 ? 32 : 0), a < GPU_SHADER_PWROFF_LO);
        return;
    case GPU_TILER_PWRON_LO:
    case GPU_TILER_PWRON_LO + 4:
    case GPU_TILER_PWROFF_LO:
    case GPU_TILER_PWROFF_LO + 4:
        mali_power(s, &s->tiler_ready, MALI_TILER_PRESENT,
                   (uint64_t)v << (a & 4 ? 32 : 0), a < GPU_TILER_PWROFF_LO);
        return;
    case GPU_L2_PWRON_LO:
    case GPU_L2_PWRON_LO + 4:
    case GPU_L2_PWROFF_LO:
    case GPU_L2_PWROFF_LO + 4:
        mali_power(s, &s->l2_ready, MALI_L2_PRESENT,
                   (uint64_t)v << (a & 4 ? 32 : 0), a < GPU_L2_PWROFF_LO);
        return;
    case GPU_STACK_PWRON_LO:
    case GPU_STACK_PWRON_LO + 4:
    case GPU_STACK_PWROFF_LO:
    case GPU_STACK_PWROFF_LO + 4:
        mali_power(s, &s->stack_ready, MALI_STACK_PRESENT,
                   (uint64_t)v << (a & 4 ? 32 : 0), a < GPU_STACK_PWROFF_LO);
        return;
    case GPU_COHERENCY_ENABLE:
        s->coherency_enable = v;
        return;
    case GPU_JM_CONFIG:
        s->jm_config = v;
        return;
    case GPU_SHADER_CONFIG:
        s->shader_config = v;
        return;
    case GPU_TILER_CONFIG:
        s->tiler_config = v;
        return;
    case GPU_L2_MMU_CONFIG:
        s->l2_mmu_config = v;
        return;
    }
    qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: write of 0x%x to read-only or "
                  "unknown GPU register 0x%03" HWADDR_PRIx "\n", v, a);
}

/* ---- job control registers ----------------------------------------------- */

static uint64_t mali_job_read(MaliJMState *s, hwaddr a)
{
    MaliJobSlot *js;

    switch (a) {
    case JOB_INT_RAWSTAT:
        return s->job_irq_raw;
    case JOB_INT_MASK:
        return s->job_irq_mask;
    case JOB_INT_STAT:
        return s->job_irq_raw & s->job_irq_mask;
    case JOB_INT_JS_STATE:
        return mali_js_state(s);
    case JOB_INT_THROTTLE:
        return 0;
    }
    if (a < JS_BASE || a >= JS_BASE + MALI_JM_NUM_SLOTS * JS_STRIDE) {
        qemu_log_mask(LOG_UNIMP, "mali-jm: read of job register 0x%04"
                      HWADDR_PRIx "\n", a);
        return 0;
    }
    js = &s->slot[(a - JS_BASE) / JS_STRIDE];
    switch ((a - JS_BASE) % JS_STRIDE) {
    case JS_HEAD_LO:
    case JS_HEAD_HI:
        /* the job being executed while the chain runs */
        return lo_hi(js->run != MALI_SLOT_IDLE ? js->job : js->head, a);
    case JS_TAIL_LO:
    case JS_TAIL_HI:
        return lo_hi(js->run != MALI_SLOT_IDLE ? js->job : js->tail, a);
    case JS_AFFINITY_LO:
    case JS_AFFINITY_HI:
        return lo_hi(js->affinity, a);
    case JS_CONFIG:
        return js->config;
    case JS_XAFFINITY:
        return js->xaffinity;
    case JS_COMMAND:
        return 0;
    case JS_STATUS:
        return js->status;
    case JS_HEAD_NEXT_LO:
    case JS_HEAD_NEXT_HI:
        return lo_hi(js->head_next, a);
    case JS_AFFINITY_NEXT_LO:
    case JS_AFFINITY_NEXT_HI:
        return lo_hi(js->affinity_next, a);
    case JS_CONFIG_NEXT:
        return js->config_next;
    case JS_XAFFINITY_NEXT:
        return js->xaffinity_next;
    case JS_COMMAND_NEXT:
        return js->start_pending ? JS_COMMAND_START : JS_COMMAND_NOP;
    case JS_FLUSH_ID_NEXT:
        return js->flush_id_next;
    }
    return 0;
}

static void mali_job_write(MaliJMState *s, hwaddr a, uint32_t v)
{
    MaliJobSlot *js;
    int j;

    switch (a) {
    case JOB_INT_CLEAR:
        s->job_irq_raw &= ~v;
        mali_update_irqs(s);
        /* a slot held by a failure may now start its queued chain */
        for (j = 0; j < MALI_JM_NUM_SLOTS; j++) {
            mali_try_promote(s, j);
        }
        return;
    case JOB_INT_MASK:
        s->job_irq_mask = v & JOB_IRQ_VALID;
        mali_update_irqs(s);
        return;
    case JOB_INT_THROTTLE:
        return;
    }
    if (a < JS_BASE || a >= JS_BASE + MALI_JM_NUM_SLOTS * JS_STRIDE) {
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: write of 0x%x to job "
                      "register 0x%04" HWADDR_PRIx "\n", v, a);
        return;
    }
    j = (a - JS_BASE) / JS_STRIDE;
    js = &s->slot[j];
    switch ((a - JS_BASE) % JS_STRIDE) {
    case JS_COMMAND:
        mali_js_command(s, j, v);
        return;
    case JS_HEAD_NEXT_LO:
    case JS_HEAD_NEXT_HI:
        set_lo_hi(&js->head_next, a, v);
        return;
    case JS_AFFINITY_NEXT_LO:
    case JS_AFFINITY_NEXT_HI:
        set_lo_hi(&js->affinity_next, a, v);
        return;
    case JS_CONFIG_NEXT:
        js->config_next = v;
        return;
    case JS_XAFFINITY_NEXT:
        js->xaffinity_next = v;
        return;
    case JS_COMMAND_NEXT:
        mali_js_command_next(s, j, v);
        return;
    case JS_FLUSH_ID_NEXT:
        js->flush_id_next = v;
        return;
    }
    qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: JS%d: write of 0x%x to "
                  "read-only register 0x%02" HWADDR_PRIx "\n", j, v,
                  (a - JS_BASE) % JS_STRIDE);
}

/* ---- MMU registers ------------------------------------------------------- */

static uint64_t mali_mmu_read(MaliJMState *s, hwaddr a)
{
    MaliAddressSpace *as;

    switch (a) {
    case MMU_INT_RAWSTAT:
        return s->mmu_irq_raw;
    case MMU_INT_MASK:
        return s->mmu_irq_mask;
    case MMU_INT_STAT:
        return s->mmu_irq_raw & s->mmu_irq_mask;
    }
    if (a < MMU_AS_BASE || a >= MMU_AS_BASE + MALI_JM_NUM_AS * MMU_AS_STRIDE) {
        qemu_log_mask(LOG_UNIMP, "mali-jm: read of MMU register 0x%04"
                      HWADDR_PRIx "\n", a);
        return 0;
    }
    as = &s->as[(a - MMU_AS_BASE) / MMU_AS_STRIDE];
    switch ((a - MMU_AS_BASE) % MMU_AS_STRIDE) {
    case AS_TRANSTAB_LO:
    case AS_TRANSTAB_HI:
        return lo_hi(as->transtab, a);
    case AS_MEMATTR_LO:
    case AS_MEMATTR_HI:
        return lo_hi(as->memattr, a);
    case AS_LOCKADDR_LO:
    case AS_LOCKADDR_HI:
        return lo_hi(as->lockaddr, a);
    case AS_FAULTSTATUS:
        return as->faultstatus;
    case AS_FAULTADDRESS_LO:
    case AS_FAULTADDRESS_HI:
        return lo_hi(as->faultaddress, a);
    case AS_STATUS:
        /* commands complete synchronously unless injection sticks them */
        return as->active_stuck ? AS_STATUS_ACTIVE : 0;
    case AS_TRANSCFG_LO:
    case AS_TRANSCFG_HI:
        return lo_hi(as->transcfg, a);
    }
    return 0;
}

static void mali_mmu_write(MaliJMState *s, hwaddr a, uint32_t v)
{
    MaliAddressSpace *as;
    int n;

    switch (a) {
    case MMU_INT_CLEAR:
        s->mmu_irq_raw &= ~v;
        mali_update_irqs(s);
        return;
    case MMU_INT_MASK:
        s->mmu_irq_mask = v & MMU_IRQ_VALID;
        mali_update_irqs(s);
        return;
    }
    if (a < MMU_AS_BASE || a >= MMU_AS_BASE + MALI_JM_NUM_AS * MMU_AS_STRIDE) {
        qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: write of 0x%x to MMU "
                      "register 0x%04" HWADDR_PRIx "\n", v, a);
        return;
    }
    n = (a - MMU_AS_BASE) / MMU_AS_STRIDE;
    as = &s->as[n];
    switch ((a - MMU_AS_BASE) % MMU_AS_STRIDE) {
    case AS_TRANSTAB_LO:
    case AS_TRANSTAB_HI:
        set_lo_hi(&as->transtab, a, v);
        return;
    case AS_MEMATTR_LO:
    case AS_MEMATTR_HI:
        set_lo_hi(&as->memattr, a, v);
        return;
    case AS_LOCKADDR_LO:
    case AS_LOCKADDR_HI:
        set_lo_hi(&as->lockaddr, a, v);
        return;
    case AS_COMMAND:
        mali_as_command(s, n, v);
        return;
    case AS_TRANSCFG_LO:
    case AS_TRANSCFG_HI:
        set_lo_hi(&as->transcfg, a, v);
        return;
    }
    qemu_log_mask(LOG_GUEST_ERROR, "mali-jm: AS%d: write of 0x%x to "
                  "read-only register 0x%02" HWADDR_PRIx "\n", n, v,
                  (a - MMU_AS_BASE) % MMU_AS_STRIDE);
}

/* ---- MMIO ---------------------------------------------------------------- */

static uint64_t mali_read(void *opaque, hwaddr addr, unsigned size)
{
    MaliJMState *s = opaque;

    if (addr < 0x1000) {
        return mali_gpu_read(s, addr);
    } else if (addr < 0x2000) {
        return mali_job_read(s, addr);
    } else if (addr < 0x3000) {
        return mali_mmu_read(s, addr);
    }
    qemu_log_mask(LOG_UNIMP, "mali-jm: read of 0x%04" HWADDR_PRIx "\n", addr);
    return 0;
}

static void mali_write(void *opaque, hwaddr addr, uint64_t value,
                       unsigned size)
{
    MaliJMState *s = opaque;

    if (addr < 0x1000) {
        mali_gpu_write(s, addr, value);
    } else if (addr < 0x2000) {
        mali_job_write(s, addr, value);
    } else if (addr < 0x3000) {
        mali_mmu_write(s, addr, value);
    } else {
        qemu_log_mask(LOG_UNIMP, "mali-jm: write to 0x%04" HWADDR_PRIx "\n",
                      addr);
    }
}

static const MemoryRegionOps mali_ops = {
    .read = mali_read,
    .write = mali_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
    .impl = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
};

/* ---- QOM ----------------------------------------------------------------- */

static void mali_realize(DeviceState *dev, Error **errp)
{
    MaliJMState *s = MALI_JM(dev);

    if (!s->dma_mr) {
        s->dma_mr = get_system_memory();
    }
    address_space_init(&s->dma_as, s->dma_mr, "mali-jm-dma");
}

static void mali_unrealize(DeviceState *dev)
{
    MaliJMState *s = MALI_JM(dev);

    timer_del(&s->exec_timer);
    address_space_destroy(&s->dma_as);
}

static void mali_init(Object *obj)
{
    MaliJMState *s = MALI_JM(obj);
    SysBusDevice *sbd = SYS_BUS_DEVICE(obj);
    int i;

    memory_region_init_io(&s->iomem, obj, &mali_ops, s, TYPE_MALI_JM,
                          MALI_JM_MMIO_SIZE);
    sysbus_init_mmio(sbd, &s->iomem);
    for (i = 0; i < MALI_JM_NUM_IRQS; i++) {
        sysbus_init_irq(sbd, &s->irq[i]);
    }
    timer_init_ns(&s->exec_timer, QEMU_CLOCK_VIRTUAL, mali_exec_timer, s);

    /*
     * Fault injection: counts of events still to inject, settable at any
     * time (qom-set) as well as with -global.
     */
    object_property_add_uint32_ptr(obj, "inject-hang-jobs",
                                   &s->inject_hang_jobs,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_add_uint32_ptr(obj, "inject-fail-jobs",
                                   &s->inject_fail_jobs,
                                   OBJ_PROP_FLAG_READWRITE);
    s->inject_fail_code = EXC_DATA_INVALID_FAULT;
    object_property_add_uint32_ptr(obj, "inject-fail-code",
                                   &s->inject_fail_code,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_add_uint32_ptr(obj, "inject-drop-irqs",
                                   &s->inject_drop_irqs,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_add_uint32_ptr(obj, "inject-stick-as-active",
                                   &s->inject_stick_as_active,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_add_uint32_ptr(obj, "inject-ignore-soft-resets",
                                   &s->inject_ignore_soft_resets,
                                   OBJ_PROP_FLAG_READWRITE);

    /* Counters, for tests to assert on with qom-get */
    object_property_add_uint64_ptr(obj, "chains-started",
                                   &s->cnt_chains_started, OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "jobs-run", &s->cnt_jobs_run,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "jobs-failed", &s->cnt_jobs_failed,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "jobs-hung", &s->cnt_jobs_hung,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "mmu-faults", &s->cnt_mmu_faults,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "soft-resets", &s->cnt_soft_resets,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "hard-resets", &s->cnt_hard_resets,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "soft-stops", &s->cnt_soft_stops,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "hard-stops", &s->cnt_hard_stops,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "irqs-raised", &s->cnt_irqs_raised,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "irqs-dropped", &s->cnt_irqs_dropped,
                                   OBJ_PROP_FLAG_READ);
    object_property_add_uint64_ptr(obj, "as-commands", &s->cnt_as_commands,
                                   OBJ_PROP_FLAG_READ);
}

static const Property mali_properties[] = {
    DEFINE_PROP_LINK("memory", MaliJMState, dma_mr,
                     TYPE_MEMORY_REGION, MemoryRegion *),
    /* virtual time from a START to the first job of the chain */
    DEFINE_PROP_UINT32("job-latency-ns", MaliJMState, job_latency_ns, 10000),
    /* a long chain runs jobs-per-tick jobs every tick-ns */
    DEFINE_PROP_UINT32("tick-ns", MaliJMState, tick_ns, 100000),
    DEFINE_PROP_UINT32("jobs-per-tick", MaliJMState, jobs_per_tick, 16),
    /* the CPU's generic-timer frequency (1 GHz for -cpu max) */
    DEFINE_PROP_UINT64("timestamp-frequency", MaliJMState, timestamp_hz,
                       1000000000),
};

static const VMStateDescription vmstate_mali_jm = {
    .name = TYPE_MALI_JM,
    .unmigratable = 1,
};

static void mali_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);

    dc->realize = mali_realize;
    dc->unrealize = mali_unrealize;
    dc->vmsd = &vmstate_mali_jm;
    dc->desc = "Mali-G52 GPU (job manager), as panfrost drives it";
    rc->phases.hold = mali_reset_hold;
    device_class_set_props(dc, mali_properties);
    set_bit(DEVICE_CATEGORY_DISPLAY, dc->categories);
}

static const TypeInfo mali_info = {
    .name = TYPE_MALI_JM,
    .parent = TYPE_SYS_BUS_DEVICE,
    .instance_size = sizeof(MaliJMState),
    .instance_init = mali_init,
    .class_init = mali_class_init,
};

static void mali_register_types(void)
{
    type_register_static(&mali_info);
}

type_init(mali_register_types)
