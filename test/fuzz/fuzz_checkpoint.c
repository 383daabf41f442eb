/* Training checkpoints (mmd_train_checkpoint_read, src/learn/train.c). The header carries
 * the payload size and an FNV-1a checksum of the payload, which random mutations would
 * almost never satisfy; so when the input starts with the magic and has a whole header,
 * the harness writes the true payload size (offset 16) and checksum (offset 24) before
 * loading, and the fuzzer explores the payload decoder. Other inputs are loaded as they
 * are (the magic / size / checksum checks themselves). */
#include "fuzz_common.h"
#include "mmd_train.h"

#define CK_MAGIC "MMDCKPT1"
#define CK_HEADER 32

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    if (size >= CK_HEADER && !memcmp(buf, CK_MAGIC, 8)) {
        put_u64(buf + 16, size - CK_HEADER);
        put_u64(buf + 24, mmd_hash64(buf + CK_HEADER, size - CK_HEADER, MMD_FNV_SEED));
    }
    const char *path = fuzz_write("train.ckpt", buf, size);
    free(buf);
    mmd_train_checkpoint c;
    mmd_status st = mmd_train_checkpoint_read(path, &c);
    fuzz_check_status(st);
    if (st == MMD_OK) {
        /* the arrays are as long as their counts say */
        volatile uint64_t s = 0;
        for (uint64_t i = 0; i < c.n_train; i++) s += c.train_ids[i] + c.perm[i];
        for (uint64_t i = 0; i < c.n_val; i++) s += c.val_ids[i];
        volatile float f = 0;
        for (uint64_t i = 0; i < c.n_params; i++) f += c.params[i] + c.opt_m[i] + c.opt_v[i] + c.best_params[i];
        for (uint64_t i = 0; i < c.n_history; i++) f += (float)c.history[i].loss;
        mmd_train_checkpoint_free(&c);
    }
    return 0;
}
