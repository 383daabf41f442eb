/* The training driver of mmd_train.h: split, per-epoch shuffles, batches, validation,
 * early stopping, checkpoints and exact resume, around an objective given as callbacks.
 *
 * The live state of a run IS a checkpoint (mmd_train_checkpoint): whatever the loop needs
 * to go on lives there and nowhere else, so writing it at any step boundary and reading it
 * back continues the run bit for bit. */
#include "mmd_par.h"
#include "mmd_train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* RNG streams (mmd_rng_seed's second argument): the split and the shuffles draw from
 * different streams so changing the epoch count never moves the split. */
#define STREAM_SPLIT 0x5b11u
#define STREAM_SHUFFLE 0x5b12u

mmd_train_options mmd_train_defaults(void)
{
    mmd_train_options o;
    memset(&o, 0, sizeof o);
    o.lr = 5e-4;
    o.batch_poses = 8;
    o.epochs = 100;
    o.val_fraction = 0.1;
    o.early_stop_patience = 5;
    o.seed = 1;
    o.checkpoint_every = 1;
    o.progress = 1;
    return o;
}

void mmd_train_options_from_cfg(const mmd_cfg_train *t, mmd_train_options *o)
{
    o->lr = t->lr;
    o->batch_poses = t->batch_poses;
    o->epochs = t->epochs;
    o->val_fraction = t->val_fraction;
    o->early_stop_patience = t->early_stop_patience;
    o->seed = t->seed;
    o->checkpoint_every = t->checkpoint_every;
}

/* Uniform integer in [0, n) without modulo bias (n < 2^32). */
static size_t rng_below(mmd_rng *r, size_t n)
{
    uint32_t lim = (uint32_t)n, thresh = (uint32_t)(-lim) % lim;
    for (;;) {
        uint32_t x = mmd_rng_u32(r);
        if (x >= thresh) return x % lim;
    }
}

static void shuffle(mmd_rng *r, uint64_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(r, i);
        uint64_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

mmd_status mmd_train_split(size_t n_poses, double val_fraction, int64_t seed, size_t **train_ids, size_t *n_train,
                           size_t **val_ids, size_t *n_val)
{
    *train_ids = *val_ids = NULL;
    *n_train = *n_val = 0;
    if (n_poses == 0) return mmd_error(MMD_ERR_INVALID, "training: no poses to train on");
    if (n_poses >= ((size_t)1 << 32)) return mmd_error(MMD_ERR_INVALID, "training: %zu poses is too many", n_poses);
    if (!(val_fraction >= 0 && val_fraction < 1))
        return mmd_error(MMD_ERR_INVALID, "train.val_fraction: %g outside [0, 1)", val_fraction);
    double want = floor(val_fraction * (double)n_poses + 0.5);
    size_t nv = want > (double)(n_poses - 1) ? n_poses - 1 : (size_t)want;
    uint64_t *perm = mmd_malloc(n_poses, sizeof *perm, "pose split");
    size_t *tr = mmd_malloc(n_poses - nv, sizeof *tr, "training poses");
    size_t *va = mmd_malloc(nv ? nv : 1, sizeof *va, "validation poses");
    if (!perm || !tr || !va) {
        free(perm), free(tr), free(va);
        return MMD_ERR_NOMEM;
    }
    for (size_t i = 0; i < n_poses; i++) perm[i] = i;
    mmd_rng r;
    mmd_rng_seed(&r, (uint64_t)seed, STREAM_SPLIT);
    shuffle(&r, perm, n_poses);
    for (size_t i = 0; i < nv; i++) va[i] = (size_t)perm[i];
    for (size_t i = nv; i < n_poses; i++) tr[i - nv] = (size_t)perm[i];
    free(perm);
    qsort(va, nv, sizeof *va, cmp_size);
    qsort(tr, n_poses - nv, sizeof *tr, cmp_size);
    *train_ids = tr;
    *val_ids = va;
    *n_train = n_poses - nv;
    *n_val = nv;
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------------
 * Checkpoint files. Little-endian fixed-width fields whatever the host, so a checkpoint
 * moves between machines; the checksum covers the whole payload.
 */

#define CK_MAGIC "MMDCKPT1"
#define CK_VERSION 1u
#define CK_HEADER 32u

typedef struct wbuf {
    unsigned char *p;
    size_t n, cap;
    int bad;
} wbuf;

static void put(wbuf *b, const void *src, size_t n)
{
    if (b->bad) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->bad = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u64(wbuf *b, uint64_t v)
{
    unsigned char t[8];
    for (int i = 0; i < 8; i++) t[i] = (unsigned char)(v >> (8 * i));
    put(b, t, 8);
}
static void put_u32(wbuf *b, uint32_t v)
{
    unsigned char t[4];
    for (int i = 0; i < 4; i++) t[i] = (unsigned char)(v >> (8 * i));
    put(b, t, 4);
}
static void put_i64(wbuf *b, int64_t v) { put_u64(b, (uint64_t)v); }
static void put_i32(wbuf *b, int32_t v) { put_u32(b, (uint32_t)v); }
static void put_f64(wbuf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    put_u64(b, u);
}
static void put_f32s(wbuf *b, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(b, u);
    }
}

typedef struct rbuf {
    const unsigned char *p;
    size_t n, at;
    int bad;
} rbuf;

static int need(rbuf *b, size_t n)
{
    if (b->bad || n > b->n - b->at) {
        b->bad = 1;
        return 0;
    }
    return 1;
}
static uint64_t get_u64(rbuf *b)
{
    if (!need(b, 8)) return 0;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b->p[b->at + i] << (8 * i);
    b->at += 8;
    return v;
}
static uint32_t get_u32(rbuf *b)
{
    if (!need(b, 4)) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)b->p[b->at + i] << (8 * i);
    b->at += 4;
    return v;
}
static int64_t get_i64(rbuf *b) { return (int64_t)get_u64(b); }
static int32_t get_i32(rbuf *b) { return (int32_t)get_u32(b); }
static double get_f64(rbuf *b)
{
    uint64_t u = get_u64(b);
    double v;
    memcpy(&v, &u, 8);
    return v;
}
/* An array of count elements of esize bytes: the count is checked against what is left
 * in the file before anything is allocated. */
static void *get_array(rbuf *b, uint64_t count, size_t esize)
{
    if (b->bad || count > (b->n - b->at) / esize) {
        b->bad = 1;
        return NULL;
    }
    return malloc(count ? (size_t)count * esize : 1);
}
static uint64_t *get_u64s(rbuf *b, uint64_t count)
{
    uint64_t *v = get_array(b, count, 8);
    for (uint64_t i = 0; v && i < count; i++) v[i] = get_u64(b);
    return v;
}
static float *get_f32s(rbuf *b, uint64_t count)
{
    float *v = get_array(b, count, 4);
    for (uint64_t i = 0; v && i < count; i++) {
        uint32_t u = get_u32(b);
        memcpy(&v[i], &u, 4);
    }
    return v;
}

mmd_status mmd_train_checkpoint_write(const char *path, const mmd_train_checkpoint *c)
{
    wbuf b = {0};
    put(&b, CK_MAGIC, 8);
    put_u32(&b, CK_VERSION);
    put_u32(&b, 0);
    put_u64(&b, 0); /* payload size, patched below */
    put_u64(&b, 0); /* checksum, patched below */
    put_u64(&b, c->n_params);
    put_u64(&b, c->n_poses);
    put_u64(&b, c->data_hash);
    put_i64(&b, c->seed);
    put_f64(&b, c->lr);
    put_i32(&b, c->batch_poses);
    put_i32(&b, c->monitor_is_val);
    put_i32(&b, c->stopped_early);
    put_i32(&b, c->finished);
    put_i64(&b, c->epoch);
    put_u64(&b, c->batch_pos);
    put_f64(&b, c->epoch_loss_sum);
    put_u64(&b, c->epoch_loss_count);
    put_f64(&b, c->epoch_seconds);
    put_i64(&b, c->steps);
    put_i64(&b, c->opt_step);
    put_f64(&b, c->best_loss);
    put_i64(&b, c->best_epoch);
    put_i64(&b, c->bad_epochs);
    put_u64(&b, c->rng_state);
    put_u64(&b, c->rng_inc);
    put_u64(&b, c->n_train);
    put_u64(&b, c->n_val);
    for (uint64_t i = 0; i < c->n_train; i++) put_u64(&b, c->train_ids[i]);
    for (uint64_t i = 0; i < c->n_val; i++) put_u64(&b, c->val_ids[i]);
    for (uint64_t i = 0; i < c->n_train; i++) put_u64(&b, c->perm[i]);
    put_u64(&b, c->n_history);
    for (uint64_t i = 0; i < c->n_history; i++) {
        put_f64(&b, c->history[i].loss);
        put_f64(&b, c->history[i].val_loss);
        put_f64(&b, c->history[i].seconds);
    }
    put_f32s(&b, c->params, c->n_params);
    put_f32s(&b, c->opt_m, c->n_params);
    put_f32s(&b, c->opt_v, c->n_params);
    put_f32s(&b, c->best_params, c->n_params);
    if (b.bad) {
        free(b.p);
        return mmd_error(MMD_ERR_NOMEM, "%s: out of memory building the checkpoint", path);
    }
    uint64_t payload = b.n - CK_HEADER, h = mmd_hash64(b.p + CK_HEADER, payload, MMD_FNV_SEED);
    for (int i = 0; i < 8; i++) {
        b.p[16 + i] = (unsigned char)(payload >> (8 * i));
        b.p[24 + i] = (unsigned char)(h >> (8 * i));
    }
    /* synced: a checkpoint is what a user falls back on after a crash or a power cut */
    mmd_status st = mmd_write_file_atomic_ex(path, b.p, b.n, NULL, 0, MMD_WRITE_SYNC);
    free(b.p);
    return st;
}

void mmd_train_checkpoint_free(mmd_train_checkpoint *c)
{
    if (!c) return;
    free(c->train_ids);
    free(c->val_ids);
    free(c->perm);
    free(c->history);
    free(c->params);
    free(c->opt_m);
    free(c->opt_v);
    free(c->best_params);
    memset(c, 0, sizeof *c);
}

mmd_status mmd_train_checkpoint_read(const char *path, mmd_train_checkpoint *c)
{
    memset(c, 0, sizeof *c);
    char *data = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &data, &size);
    if (st != MMD_OK) return st;
    const unsigned char *p = (const unsigned char *)data;
    rbuf h = {p, size, 0, 0};
    if (size < CK_HEADER || memcmp(p, CK_MAGIC, 8) != 0) {
        st = size >= 8 && memcmp(p, CK_MAGIC, 8) == 0
                 ? mmd_error(MMD_ERR_PARSE, "%s: checkpoint is truncated (%zu bytes; the header alone has %u); "
                             "refusing to resume from it",
                             path, size, CK_HEADER)
                 : mmd_error(MMD_ERR_PARSE, "%s: not an mmdiff checkpoint (expected the magic \"%s\")", path,
                             CK_MAGIC);
        free(data);
        return st;
    }
    h.at = 8;
    uint32_t version = get_u32(&h);
    (void)get_u32(&h);
    uint64_t payload = get_u64(&h), sum = get_u64(&h);
    if (version != CK_VERSION) {
        free(data);
        return mmd_error(MMD_ERR_PARSE, "%s: checkpoint version %u; this build reads version %u", path, version,
                         CK_VERSION);
    }
    if (payload != size - CK_HEADER) {
        st = mmd_error(MMD_ERR_PARSE,
                       "%s: checkpoint is %s (the header announces %llu payload bytes, the file has %zu); "
                       "refusing to resume from it",
                       path, payload > size - CK_HEADER ? "truncated" : "longer than its header says",
                       (unsigned long long)payload, size - CK_HEADER);
        free(data);
        return st;
    }
    uint64_t got = mmd_hash64(p + CK_HEADER, payload, MMD_FNV_SEED);
    if (got != sum) {
        free(data);
        return mmd_error(MMD_ERR_PARSE,
                         "%s: checkpoint is corrupted (checksum %016llx, the header says %016llx); refusing to "
                         "resume from it",
                         path, (unsigned long long)got, (unsigned long long)sum);
    }
    rbuf b = {p, size, CK_HEADER, 0};
    c->n_params = get_u64(&b);
    c->n_poses = get_u64(&b);
    c->data_hash = get_u64(&b);
    c->seed = get_i64(&b);
    c->lr = get_f64(&b);
    c->batch_poses = get_i32(&b);
    c->monitor_is_val = get_i32(&b);
    c->stopped_early = get_i32(&b);
    c->finished = get_i32(&b);
    c->epoch = get_i64(&b);
    c->batch_pos = get_u64(&b);
    c->epoch_loss_sum = get_f64(&b);
    c->epoch_loss_count = get_u64(&b);
    c->epoch_seconds = get_f64(&b);
    c->steps = get_i64(&b);
    c->opt_step = get_i64(&b);
    c->best_loss = get_f64(&b);
    c->best_epoch = get_i64(&b);
    c->bad_epochs = get_i64(&b);
    c->rng_state = get_u64(&b);
    c->rng_inc = get_u64(&b);
    c->n_train = get_u64(&b);
    c->n_val = get_u64(&b);
    c->train_ids = get_u64s(&b, c->n_train);
    c->val_ids = get_u64s(&b, c->n_val);
    c->perm = get_u64s(&b, c->n_train);
    c->n_history = get_u64(&b);
    c->history = get_array(&b, c->n_history, 24);
    for (uint64_t i = 0; c->history && i < c->n_history; i++) {
        c->history[i].loss = get_f64(&b);
        c->history[i].val_loss = get_f64(&b);
        c->history[i].seconds = get_f64(&b);
    }
    c->params = get_f32s(&b, c->n_params);
    c->opt_m = get_f32s(&b, c->n_params);
    c->opt_v = get_f32s(&b, c->n_params);
    c->best_params = get_f32s(&b, c->n_params);
    free(data);
    /* the checksum matched, so anything inconsistent here was written that way: a bug or
     * a hand-made file */
    const char *why = NULL;
    if (b.bad) why = "its fields run past the end of the file";
    else if (b.at != b.n) why = "it has bytes after the last field";
    else if (!c->train_ids || !c->val_ids || !c->perm || !c->history || !c->params || !c->opt_m || !c->opt_v ||
             !c->best_params)
        why = "out of memory";
    else if (c->n_params == 0 || c->n_train == 0 || c->n_train + c->n_val != c->n_poses)
        why = "its pose counts disagree";
    else if (c->epoch < 0 || c->n_history != (uint64_t)c->epoch || c->batch_poses < 1 ||
             c->batch_pos >= (c->n_train + (uint64_t)c->batch_poses - 1) / (uint64_t)c->batch_poses ||
             c->best_epoch < 0 || c->best_epoch > c->epoch)
        why = "its epoch, history and position disagree";
    for (uint64_t i = 0; !why && i < c->n_train; i++)
        if (c->train_ids[i] >= c->n_poses || c->perm[i] >= c->n_poses) why = "a pose index is out of range";
    for (uint64_t i = 0; !why && i < c->n_val; i++)
        if (c->val_ids[i] >= c->n_poses) why = "a pose index is out of range";
    if (why) {
        st = mmd_error(b.bad || !c->params ? MMD_ERR_PARSE : MMD_ERR_INVALID,
                       "%s: checkpoint is inconsistent (%s); refusing to resume from it", path, why);
        mmd_train_checkpoint_free(c);
        return st;
    }
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------------
 * The loop
 */

typedef struct run {
    const mmd_train_objective *obj;
    const mmd_train_options *o;
    mmd_train_checkpoint ck; /* the live state */
    mmd_rng rng;
    size_t n_batches;
    double t_start;        /* this call */
    int64_t steps_at_start;
    double step_time;      /* seconds spent in steps in this call */
    int tty;
} run;

/* Across MPI ranks a signal may reach the ranks at different steps: they stop together
 * when any of them was asked to (every rank calls this at the same points). */
static int want_stop(const run *r)
{
    double f = r->o->stop && *r->o->stop;
    if (mmd_par_size() > 1 && mmd_par_sum(&f, 1) != MMD_OK) return 1;
    return f > 0;
}

static void fmt_eta(double s, char *buf, size_t cap)
{
    if (!(s >= 0) || s > 1e8) snprintf(buf, cap, "?");
    else if (s < 60) snprintf(buf, cap, "%.0fs", s);
    else if (s < 3600) snprintf(buf, cap, "%dm%02ds", (int)(s / 60), (int)fmod(s, 60));
    else snprintf(buf, cap, "%dh%02dm", (int)(s / 3600), (int)fmod(s / 60, 60));
}

static double eta_seconds(const run *r)
{
    int64_t done = r->ck.steps - r->steps_at_start;
    if (done <= 0) return NAN;
    double per = (mmd_now() - r->t_start) / (double)done;
    double left = (double)(r->o->epochs - r->ck.epoch) * (double)r->n_batches - (double)r->ck.batch_pos;
    return per * (left > 0 ? left : 0);
}

static void show_step(const run *r, double loss)
{
    if (!r->o->progress || !r->tty || mmd_log_level() < 1) return;
    char eta[32];
    fmt_eta(eta_seconds(r), eta, sizeof eta);
    char bar[24];
    int w = (int)sizeof bar - 1, f = (int)((double)w * (double)r->ck.batch_pos / (double)r->n_batches);
    for (int i = 0; i < w; i++) bar[i] = i < f ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r\033[K[mmdiff] epoch %lld/%d [%s] step %llu/%zu loss %.5g ETA %s", (long long)r->ck.epoch + 1,
            r->o->epochs, bar, (unsigned long long)r->ck.batch_pos, r->n_batches, loss, eta);
    fflush(stderr);
}

static void show_epoch(const run *r, const mmd_train_epoch *e)
{
    if (!r->o->progress || mmd_log_level() < 1) return;
    char eta[32];
    fmt_eta(eta_seconds(r), eta, sizeof eta);
    if (r->tty) fputs("\r\033[K", stderr); /* replaces the step line */
    char val[64];
    if (isnan(e->val_loss)) snprintf(val, sizeof val, "-");
    else snprintf(val, sizeof val, "%.5g", e->val_loss);
    mmd_info("epoch %lld/%d: loss %.5g  val %s  best %.5g (epoch %lld)  %.2f s  ETA %s", (long long)r->ck.epoch,
             r->o->epochs, e->loss, val, r->ck.best_loss, (long long)r->ck.best_epoch, e->seconds, eta);
}

static mmd_status capture(run *r)
{
    r->obj->get_params(r->obj->ctx, r->ck.params);
    int64_t step = 0;
    r->obj->get_opt(r->obj->ctx, &step, r->ck.opt_m, r->ck.opt_v);
    r->ck.opt_step = step;
    r->ck.rng_state = r->rng.state;
    r->ck.rng_inc = r->rng.inc;
    return MMD_OK;
}

static mmd_status save(run *r)
{
    if (!r->o->checkpoint_path) return MMD_OK;
    capture(r);
    /* rank 0 alone writes; a failed write ends every rank (mmd_par_agree) */
    mmd_status st = mmd_par_rank() == 0 ? mmd_train_checkpoint_write(r->o->checkpoint_path, &r->ck) : MMD_OK;
    st = mmd_par_agree(st);
    if (st == MMD_OK) mmd_debug("checkpoint: %s (epoch %lld, step %llu)", r->o->checkpoint_path,
                                (long long)r->ck.epoch, (unsigned long long)r->ck.batch_pos);
    return st;
}

static mmd_status check_options(const mmd_train_objective *obj, size_t n_poses, const mmd_train_options *o)
{
    if (!obj || !obj->get_params || !obj->set_params || !obj->zero_grad || !obj->loss || !obj->step ||
        !obj->get_opt || !obj->set_opt)
        return mmd_error(MMD_ERR_INVALID, "training: incomplete objective (a callback is missing)");
    if (obj->n_params == 0) return mmd_error(MMD_ERR_INVALID, "training: the model has no parameters");
    if (n_poses == 0) return mmd_error(MMD_ERR_INVALID, "training: no poses to train on");
    if (!(o->lr > 0) || !isfinite(o->lr)) return mmd_error(MMD_ERR_INVALID, "train.lr: %g; expected > 0", o->lr);
    if (o->batch_poses < 1) return mmd_error(MMD_ERR_INVALID, "train.batch_poses: %d; expected >= 1", o->batch_poses);
    if (o->epochs < 1) return mmd_error(MMD_ERR_INVALID, "train.epochs: %d; expected >= 1", o->epochs);
    if (o->checkpoint_every < 1)
        return mmd_error(MMD_ERR_INVALID, "train.checkpoint_every: %d; expected >= 1", o->checkpoint_every);
    if (o->early_stop_patience < 0)
        return mmd_error(MMD_ERR_INVALID, "train.early_stop_patience: %d; expected >= 0", o->early_stop_patience);
    if (o->resume && !o->checkpoint_path)
        return mmd_error(MMD_ERR_INVALID, "training: --resume without a checkpoint path");
    return MMD_OK;
}

/* Read the checkpoint and check that it describes the same training problem. */
static mmd_status load_for_resume(size_t n_params, size_t n_poses, const mmd_train_options *o, const size_t *tr,
                                  size_t ntr, const size_t *va, size_t nva, mmd_train_checkpoint *out)
{
    const char *path = o->checkpoint_path;
    mmd_train_checkpoint c;
    mmd_status st = mmd_train_checkpoint_read(path, &c);
    if (st == MMD_ERR_IO && access(path, F_OK) != 0)
        return mmd_error(MMD_ERR_IO, "%s: no checkpoint to resume from (run without --resume to start afresh)",
                         path);
    if (st != MMD_OK) return st;
    if (c.n_params != n_params)
        st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint holds %llu parameters, the model has %zu (another "
                       "train.model or scene?)",
                       path, (unsigned long long)c.n_params, n_params);
    else if (c.n_poses != n_poses || c.data_hash != o->data_hash)
        st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint was written for another measurement set (%llu poses, "
                       "fingerprint %016llx; now %zu poses, %016llx)",
                       path, (unsigned long long)c.n_poses, (unsigned long long)c.data_hash, n_poses,
                       (unsigned long long)o->data_hash);
    else if (c.seed != o->seed)
        st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint was written with train.seed %lld, the experiment says %lld",
                       path, (long long)c.seed, (long long)o->seed);
    else if (c.batch_poses != o->batch_poses)
        st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint was written with train.batch_poses %d, the experiment says "
                       "%d; resume with the same value",
                       path, c.batch_poses, o->batch_poses);
    else if (c.n_train != ntr || c.n_val != nva)
        st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint has %llu training / %llu validation poses, "
                       "train.val_fraction %g gives %zu / %zu; resume with the same value",
                       path, (unsigned long long)c.n_train, (unsigned long long)c.n_val, o->val_fraction, ntr, nva);
    for (size_t i = 0; st == MMD_OK && i < ntr; i++)
        if (c.train_ids[i] != tr[i]) st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint's validation split differs", path);
    for (size_t i = 0; st == MMD_OK && i < nva; i++)
        if (c.val_ids[i] != va[i]) st = mmd_error(MMD_ERR_INVALID, "%s: checkpoint's validation split differs", path);
    if (st != MMD_OK) {
        mmd_train_checkpoint_free(&c);
        return st;
    }
    *out = c;
    return MMD_OK;
}

mmd_status mmd_train_resume_check(size_t n_params, size_t n_poses, const mmd_train_options *o)
{
    if (!o->checkpoint_path) return mmd_error(MMD_ERR_INVALID, "training: --resume without a checkpoint path");
    size_t *tr = NULL, *va = NULL, ntr = 0, nva = 0;
    mmd_status st = mmd_train_split(n_poses, o->val_fraction, o->seed, &tr, &ntr, &va, &nva);
    mmd_train_checkpoint c;
    if (st == MMD_OK) st = load_for_resume(n_params, n_poses, o, tr, ntr, va, nva, &c);
    if (st == MMD_OK) mmd_train_checkpoint_free(&c);
    free(tr);
    free(va);
    return st;
}

/* Start from a checkpoint. */
static mmd_status resume_from(run *r, size_t n_poses, const size_t *tr, size_t ntr, const size_t *va, size_t nva)
{
    const mmd_train_options *o = r->o;
    const char *path = o->checkpoint_path;
    mmd_train_checkpoint c;
    mmd_status st = load_for_resume(r->obj->n_params, n_poses, o, tr, ntr, va, nva, &c);
    if (st != MMD_OK) return st;
    if (c.lr != o->lr)
        mmd_warn("resuming with train.lr %g (the checkpoint was written with %g): the run will not match an "
                 "uninterrupted one",
                 o->lr, c.lr);
    st = r->obj->set_params(r->obj->ctx, c.params);
    if (st == MMD_OK) st = r->obj->set_opt(r->obj->ctx, c.opt_step, c.opt_m, c.opt_v);
    if (st != MMD_OK) {
        mmd_train_checkpoint_free(&c);
        return st;
    }
    mmd_train_checkpoint_free(&r->ck);
    r->ck = c;
    r->ck.lr = o->lr;
    r->rng.state = c.rng_state;
    r->rng.inc = c.rng_inc;
    mmd_info("resuming from %s: epoch %lld, step %llu (%lld steps so far)", path, (long long)c.epoch,
             (unsigned long long)c.batch_pos, (long long)c.steps);
    return MMD_OK;
}

static mmd_status fresh_state(run *r, size_t n_poses, const size_t *tr, size_t ntr, const size_t *va, size_t nva)
{
    mmd_train_checkpoint *c = &r->ck;
    size_t n = r->obj->n_params;
    c->n_params = n;
    c->n_poses = n_poses;
    c->data_hash = r->o->data_hash;
    c->seed = r->o->seed;
    c->lr = r->o->lr;
    c->batch_poses = r->o->batch_poses;
    c->monitor_is_val = nva > 0;
    c->best_loss = INFINITY;
    c->n_train = ntr;
    c->n_val = nva;
    c->train_ids = mmd_malloc(ntr, sizeof *c->train_ids, "training poses");
    c->val_ids = mmd_malloc(nva ? nva : 1, sizeof *c->val_ids, "validation poses");
    c->perm = mmd_malloc(ntr, sizeof *c->perm, "epoch order");
    c->history = mmd_malloc(1, sizeof *c->history, "loss history");
    c->params = mmd_malloc(n, sizeof(float), "parameters");
    c->opt_m = mmd_malloc(n, sizeof(float), "optimiser state");
    c->opt_v = mmd_malloc(n, sizeof(float), "optimiser state");
    c->best_params = mmd_malloc(n, sizeof(float), "best parameters");
    if (!c->train_ids || !c->val_ids || !c->perm || !c->history || !c->params || !c->opt_m || !c->opt_v ||
        !c->best_params)
        return MMD_ERR_NOMEM;
    for (size_t i = 0; i < ntr; i++) c->train_ids[i] = tr[i];
    for (size_t i = 0; i < nva; i++) c->val_ids[i] = va[i];
    mmd_rng_seed(&r->rng, (uint64_t)r->o->seed, STREAM_SHUFFLE);
    capture(r);
    memcpy(c->best_params, c->params, n * sizeof(float));
    return MMD_OK;
}

/* Mean loss over `ids` in chunks of the batch size (no gradient). */
static mmd_status eval_loss(run *r, const uint64_t *ids64, size_t n, double *out)
{
    size_t B = (size_t)r->o->batch_poses;
    size_t *ids = mmd_malloc(B, sizeof *ids, "validation batch");
    if (!ids) return MMD_ERR_NOMEM;
    double sum = 0;
    mmd_status st = MMD_OK;
    for (size_t at = 0; st == MMD_OK && at < n; at += B) {
        size_t nb = n - at < B ? n - at : B;
        for (size_t k = 0; k < nb; k++) ids[k] = (size_t)ids64[at + k];
        double l = NAN;
        st = r->obj->loss(r->obj->ctx, ids, nb, &l, 0);
        if (st == MMD_OK && !isfinite(l))
            st = mmd_error(MMD_ERR_INVALID, "training: validation loss is %g after epoch %lld (diverged? lower "
                           "train.lr)",
                           l, (long long)r->ck.epoch + 1);
        sum += l * (double)nb;
    }
    free(ids);
    *out = n ? sum / (double)n : NAN;
    return st;
}

static mmd_status fill_result(run *r, mmd_train_result *res, const size_t *tr, const size_t *va)
{
    const mmd_train_checkpoint *c = &r->ck;
    res->n_epochs = (size_t)c->n_history;
    res->epochs = mmd_malloc(res->n_epochs ? res->n_epochs : 1, sizeof *res->epochs, "loss history");
    res->train_ids = mmd_malloc(c->n_train, sizeof *res->train_ids, "training poses");
    res->val_ids = mmd_malloc(c->n_val ? c->n_val : 1, sizeof *res->val_ids, "validation poses");
    if (!res->epochs || !res->train_ids || !res->val_ids) return MMD_ERR_NOMEM;
    memcpy(res->epochs, c->history, res->n_epochs * sizeof *res->epochs);
    memcpy(res->train_ids, tr, c->n_train * sizeof *tr);
    memcpy(res->val_ids, va, c->n_val * sizeof *va);
    res->n_train = (size_t)c->n_train;
    res->n_val = (size_t)c->n_val;
    res->final_loss = res->n_epochs ? res->epochs[res->n_epochs - 1].loss : NAN;
    res->best_loss = c->best_epoch ? c->best_loss : NAN;
    res->best_epoch = (int)c->best_epoch;
    res->monitor_is_val = c->monitor_is_val;
    res->stopped_early = c->stopped_early;
    res->steps = c->steps;
    res->seconds = mmd_now() - r->t_start;
    return MMD_OK;
}

void mmd_train_result_free(mmd_train_result *r)
{
    if (!r) return;
    free(r->epochs);
    free(r->train_ids);
    free(r->val_ids);
    memset(r, 0, sizeof *r);
}

/* One epoch from the current position. *stopped: a stop request was honoured mid-epoch
 * (the caller checkpoints). */
static mmd_status run_epoch(run *r, size_t *batch, int *stopped)
{
    mmd_train_checkpoint *c = &r->ck;
    const mmd_train_objective *obj = r->obj;
    size_t B = (size_t)r->o->batch_poses;
    if (c->batch_pos == 0) {
        /* a new epoch: its order from the continuing shuffle stream */
        memcpy(c->perm, c->train_ids, (size_t)c->n_train * sizeof *c->perm);
        shuffle(&r->rng, c->perm, (size_t)c->n_train);
        c->epoch_loss_sum = 0;
        c->epoch_loss_count = 0;
        c->epoch_seconds = 0;
    }
    while (c->batch_pos < r->n_batches) {
        double t0 = mmd_now();
        size_t at = (size_t)c->batch_pos * B, nb = (size_t)c->n_train - at < B ? (size_t)c->n_train - at : B;
        for (size_t k = 0; k < nb; k++) batch[k] = (size_t)c->perm[at + k];
        double loss = NAN;
        obj->zero_grad(obj->ctx);
        mmd_status st = obj->loss(obj->ctx, batch, nb, &loss, 1);
        if (st == MMD_OK && !isfinite(loss))
            st = mmd_error(MMD_ERR_INVALID, "training: loss is %g at epoch %lld, step %llu (diverged? lower train.lr)",
                           loss, (long long)c->epoch + 1, (unsigned long long)c->batch_pos + 1);
        if (st == MMD_OK) st = obj->step(obj->ctx, r->o->lr);
        if (st != MMD_OK) return st;
        c->batch_pos++;
        c->steps++;
        c->epoch_loss_sum += loss * (double)nb;
        c->epoch_loss_count += nb;
        double dt = mmd_now() - t0;
        c->epoch_seconds += dt;
        r->step_time += dt;
        show_step(r, loss);
        /* injected (MMDIFF_FAULT=sigint@N, ...): the signal a user would send, after the N-th
         * step of this process, so the tests interrupt at a known point */
        if (mmd_fault("sigint", NULL)) raise(SIGINT);
        if (mmd_fault("sigterm", NULL)) raise(SIGTERM);
        if (mmd_fault("sigkill", NULL)) raise(SIGKILL);
        int ask = r->o->on_step ? r->o->on_step(r->o->user, (int)c->epoch + 1, (size_t)c->batch_pos, r->n_batches,
                                                loss)
                                : 0;
        int stop = want_stop(r); /* collective across MPI ranks: called on every step */
        if ((ask || stop) && c->batch_pos < r->n_batches) {
            *stopped = 1;
            return MMD_OK;
        }
        if (ask) *stopped = 2; /* at the epoch's end: finish its books first */
    }
    return MMD_OK;
}

mmd_status mmd_train_run(const mmd_train_objective *obj, size_t n_poses, const mmd_train_options *o,
                         mmd_train_result *res)
{
    memset(res, 0, sizeof *res);
    mmd_status st = check_options(obj, n_poses, o);
    if (st != MMD_OK) return st;
    size_t *tr = NULL, *va = NULL, ntr = 0, nva = 0;
    st = mmd_train_split(n_poses, o->val_fraction, o->seed, &tr, &ntr, &va, &nva);
    if (st != MMD_OK) return st;
    run r;
    memset(&r, 0, sizeof r);
    r.obj = obj;
    r.o = o;
    r.t_start = mmd_now();
    r.tty = isatty(2);
    r.n_batches = (ntr + (size_t)o->batch_poses - 1) / (size_t)o->batch_poses;
    st = o->resume ? resume_from(&r, n_poses, tr, ntr, va, nva) : fresh_state(&r, n_poses, tr, ntr, va, nva);
    if (st == MMD_OK && o->resume) res->resumed = 1;
    r.steps_at_start = r.ck.steps;
    /* a finished run goes on only when the options now ask for more: more epochs, and a
     * patience that its epochs without improvement have not used up */
    int patience_out = o->early_stop_patience > 0 && r.ck.bad_epochs >= o->early_stop_patience;
    if (st == MMD_OK && r.ck.finished && (r.ck.epoch >= o->epochs || patience_out)) {
        mmd_info("%s: the run already finished at epoch %lld%s; nothing to do", o->checkpoint_path,
                 (long long)r.ck.epoch, r.ck.stopped_early ? " (stopped early)" : "");
    } else if (st == MMD_OK) {
        r.ck.finished = 0;
        r.ck.stopped_early = 0;
        if (nva == 0) mmd_info("training: %zu poses, no validation poses: early stopping watches the training loss", ntr);
        else mmd_info("training: %zu poses (%zu held out for validation), %zu steps per epoch", ntr, nva, r.n_batches);
    }
    size_t *batch = st == MMD_OK ? mmd_malloc((size_t)o->batch_poses, sizeof *batch, "batch") : NULL;
    if (st == MMD_OK && !batch) st = MMD_ERR_NOMEM;
    int stopped = 0;
    while (st == MMD_OK && !r.ck.finished && r.ck.epoch < o->epochs) {
        st = run_epoch(&r, batch, &stopped);
        if (st != MMD_OK || stopped == 1) break;
        /* the epoch is complete: validate, keep the books, maybe stop early */
        double t0 = mmd_now(), val = NAN;
        st = eval_loss(&r, r.ck.val_ids, (size_t)r.ck.n_val, &val);
        if (st != MMD_OK) break;
        r.ck.epoch_seconds += mmd_now() - t0;
        mmd_train_epoch e = {r.ck.epoch_loss_count ? r.ck.epoch_loss_sum / (double)r.ck.epoch_loss_count : NAN, val,
                             r.ck.epoch_seconds};
        mmd_train_epoch *h = realloc(r.ck.history, (size_t)(r.ck.n_history + 1) * sizeof *h);
        if (!h) {
            st = mmd_error(MMD_ERR_NOMEM, "out of memory (loss history)");
            break;
        }
        r.ck.history = h;
        h[r.ck.n_history++] = e;
        r.ck.epoch++;
        r.ck.batch_pos = 0;
        r.ck.epoch_loss_sum = 0;
        r.ck.epoch_loss_count = 0;
        r.ck.epoch_seconds = 0;
        double monitor = r.ck.monitor_is_val ? val : e.loss;
        if (monitor < r.ck.best_loss) {
            r.ck.best_loss = monitor;
            r.ck.best_epoch = r.ck.epoch;
            r.ck.bad_epochs = 0;
            obj->get_params(obj->ctx, r.ck.best_params);
        } else {
            r.ck.bad_epochs++;
        }
        show_epoch(&r, &e);
        if (o->early_stop_patience > 0 && r.ck.bad_epochs >= o->early_stop_patience) {
            r.ck.stopped_early = 1;
            mmd_info("early stop: no better %s loss for %lld epochs; keeping epoch %lld (%.5g)",
                     r.ck.monitor_is_val ? "validation" : "training", (long long)r.ck.bad_epochs,
                     (long long)r.ck.best_epoch, r.ck.best_loss);
        }
        if (r.ck.stopped_early || r.ck.epoch >= o->epochs) r.ck.finished = 1;
        int asked = want_stop(&r); /* collective: every rank, every epoch */
        int stop_now = stopped == 2 || asked;
        if (r.ck.finished || stop_now || r.ck.epoch % o->checkpoint_every == 0) st = save(&r);
        if (stop_now && !r.ck.finished) {
            stopped = 1;
            break;
        }
    }
    if (st == MMD_OK && stopped == 1 && !r.ck.finished) {
        /* a mid-epoch stop still needs its checkpoint (an epoch-end stop has one) */
        if (r.ck.batch_pos != 0) st = save(&r);
        if (r.tty && o->progress && mmd_log_level() >= 1) fputc('\n', stderr);
        if (st == MMD_OK && r.ck.batch_pos)
            mmd_info("stopped in epoch %lld after step %llu/%zu%s%s", (long long)r.ck.epoch + 1,
                     (unsigned long long)r.ck.batch_pos, r.n_batches, o->checkpoint_path ? "; checkpoint " : "",
                     o->checkpoint_path ? o->checkpoint_path : "");
        else if (st == MMD_OK)
            mmd_info("stopped after epoch %lld%s%s", (long long)r.ck.epoch, o->checkpoint_path ? "; checkpoint " : "",
                     o->checkpoint_path ? o->checkpoint_path : "");
        res->interrupted = 1;
    } else if (st == MMD_OK && r.ck.best_epoch > 0) {
        /* keep the parameters of the best epoch, not the last one */
        st = obj->set_params(obj->ctx, r.ck.best_params);
    }
    if (st == MMD_OK) st = fill_result(&r, res, tr, va);
    if (st != MMD_OK) {
        int resumed = res->resumed;
        mmd_train_result_free(res);
        res->resumed = resumed;
    }
    free(batch);
    free(tr);
    free(va);
    mmd_train_checkpoint_free(&r.ck);
    return st;
}
