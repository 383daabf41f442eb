/* The training driver (mmd_train.h) against a mock objective on the host - linear
 * regression with a float Adam, deterministic like the engine - and the measurement-set
 * reader against good and bad sets. No device needed. */
#include <sys/stat.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_scene.h"
#include "mmd_test.h"
#include "mmd_train.h"

static char g_dir[] = "/tmp/train_test_XXXXXX";

/* ---------------------------------------------------------------------------------------
 * Mock objective: pose i has features x_i (NP of them) and a target y_i; the loss of a
 * pose is (w . x_i - y_i)^2. Parameters and Adam moments are floats, as in the engine.
 */

#define NP 4
#define NPOSE 23

typedef struct mock {
    float w[NP], g[NP], m[NP], v[NP];
    int64_t t;
    double x[NPOSE][NP], y[NPOSE];
    /* logging of the poses each training step saw */
    size_t log[4096];
    size_t n_log;
    /* scripted validation losses (one per evaluation call), used when n_script > 0 */
    const double *script;
    size_t n_script, at_script;
    int nan_at_step; /* >0: the loss of that training step is NaN */
    int n_steps;
} mock;

static void mock_init(mock *k)
{
    memset(k, 0, sizeof *k);
    mmd_rng r;
    mmd_rng_seed(&r, 42, 7);
    const double w_true[NP] = {0.5, -1.25, 2.0, 0.75};
    for (int i = 0; i < NPOSE; i++) {
        k->y[i] = 0;
        for (int j = 0; j < NP; j++) {
            k->x[i][j] = 2 * mmd_rng_uniform(&r) - 1;
            k->y[i] += w_true[j] * k->x[i][j];
        }
        k->y[i] += 0.05 * (mmd_rng_uniform(&r) - 0.5);
    }
    for (int j = 0; j < NP; j++) k->w[j] = 0.1f * (float)j;
}

static void m_get(void *c, float *raw) { memcpy(raw, ((mock *)c)->w, sizeof(float) * NP); }
static mmd_status m_set(void *c, const float *raw)
{
    memcpy(((mock *)c)->w, raw, sizeof(float) * NP);
    return MMD_OK;
}
static void m_zero(void *c) { memset(((mock *)c)->g, 0, sizeof(float) * NP); }
static mmd_status m_loss(void *c, const size_t *ids, size_t n, double *loss, int want_grad)
{
    mock *k = c;
    if (!want_grad && k->n_script) {
        *loss = k->script[k->at_script < k->n_script ? k->at_script : k->n_script - 1];
        k->at_script++;
        return MMD_OK;
    }
    double sum = 0, g[NP] = {0};
    for (size_t b = 0; b < n; b++) {
        size_t i = ids[b];
        if (i >= NPOSE) return mmd_error(MMD_ERR_INTERNAL, "mock: pose %zu", i);
        double r = -k->y[i];
        for (int j = 0; j < NP; j++) r += (double)k->w[j] * k->x[i][j];
        sum += r * r;
        for (int j = 0; j < NP; j++) g[j] += 2 * r * k->x[i][j] / (double)n;
        if (want_grad && k->n_log < sizeof k->log / sizeof *k->log) k->log[k->n_log++] = i;
    }
    if (want_grad) {
        for (int j = 0; j < NP; j++) k->g[j] += (float)g[j];
        k->n_steps++;
        if (k->nan_at_step && k->n_steps == k->nan_at_step) {
            *loss = NAN;
            return MMD_OK;
        }
    }
    *loss = sum / (double)n;
    return MMD_OK;
}
static mmd_status m_step(void *c, double lr)
{
    mock *k = c;
    k->t++;
    const float b1 = 0.9f, b2 = 0.999f;
    float c1 = 1.0f - powf(b1, (float)k->t), c2 = 1.0f - powf(b2, (float)k->t);
    for (int j = 0; j < NP; j++) {
        k->m[j] = b1 * k->m[j] + (1 - b1) * k->g[j];
        k->v[j] = b2 * k->v[j] + (1 - b2) * k->g[j] * k->g[j];
        k->w[j] -= (float)lr * (k->m[j] / c1) / (sqrtf(k->v[j] / c2) + 1e-8f);
    }
    return MMD_OK;
}
static void m_get_opt(void *c, int64_t *step, float *m, float *v)
{
    mock *k = c;
    *step = k->t;
    memcpy(m, k->m, sizeof k->m);
    memcpy(v, k->v, sizeof k->v);
}
static mmd_status m_set_opt(void *c, int64_t step, const float *m, const float *v)
{
    mock *k = c;
    k->t = step;
    memcpy(k->m, m, sizeof k->m);
    memcpy(k->v, v, sizeof k->v);
    return MMD_OK;
}

static mmd_train_objective objective(mock *k)
{
    mmd_train_objective o = {k, NP, m_get, m_set, m_zero, m_loss, m_step, m_get_opt, m_set_opt};
    return o;
}

static mmd_train_options opts(const char *ck)
{
    mmd_train_options o = mmd_train_defaults();
    o.lr = 0.05;
    o.batch_poses = 5;
    o.epochs = 30;
    o.val_fraction = 0.2;
    o.early_stop_patience = 0;
    o.seed = 3;
    o.checkpoint_every = 2;
    o.checkpoint_path = ck;
    o.progress = 0;
    return o;
}

static const char *tmp(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

/* ---------------------------------------------------------------------------------------
 * Driver
 */

static void test_loss_decreases(void)
{
    mock k;
    mock_init(&k);
    mmd_train_objective obj = objective(&k);
    mmd_train_options o = opts(NULL);
    mmd_train_result r;
    mmd_status st = mmd_train_run(&obj, NPOSE, &o, &r);
    CHECK(st == MMD_OK, "train: %s", mmd_last_error());
    if (st != MMD_OK) return;
    CHECK(r.n_epochs == 30 && !r.interrupted && !r.stopped_early, "30 epochs ran (%zu)", r.n_epochs);
    CHECK(r.n_train == 18 && r.n_val == 5, "split 18 / 5 of 23 at val_fraction 0.2 (%zu / %zu)", r.n_train, r.n_val);
    CHECK(r.epochs[r.n_epochs - 1].loss < 0.01 * r.epochs[0].loss, "training loss falls 100x: %g -> %g",
          r.epochs[0].loss, r.epochs[r.n_epochs - 1].loss);
    CHECK(r.epochs[r.n_epochs - 1].val_loss < 0.01 * r.epochs[0].val_loss, "validation loss falls: %g -> %g",
          r.epochs[0].val_loss, r.epochs[r.n_epochs - 1].val_loss);
    CHECK(r.monitor_is_val && r.best_epoch >= 1 && r.best_epoch <= 30, "best epoch %d", r.best_epoch);
    CHECK(r.steps == 30 * 4, "4 steps per epoch (18 poses in batches of 5): %lld", (long long)r.steps);
    CHECK(r.final_loss == r.epochs[29].loss, "final_loss is the last epoch's loss");
    /* 4 steps x 30 epochs logged: each epoch covers the training set exactly once */
    int ok = k.n_log == 30 * 18;
    for (int e = 0; ok && e < 30; e++) {
        int seen[NPOSE] = {0};
        for (int i = 0; i < 18; i++) seen[k.log[e * 18 + i]]++;
        for (size_t i = 0; i < r.n_train; i++) ok &= seen[r.train_ids[i]] == 1;
        for (size_t i = 0; i < r.n_val; i++) ok &= seen[r.val_ids[i]] == 0;
    }
    CHECK(ok, "every epoch visits each training pose once and no validation pose");
    /* consecutive epochs are in different orders */
    CHECK(memcmp(k.log, k.log + 18, 18 * sizeof *k.log) != 0, "epochs are shuffled");
    mmd_train_result_free(&r);
}

static void test_split_and_shuffle_determinism(void)
{
    size_t *t1, *v1, *t2, *v2, n1, m1, n2, m2;
    CHECK(mmd_train_split(50, 0.1, 9, &t1, &n1, &v1, &m1) == MMD_OK, "split");
    CHECK(mmd_train_split(50, 0.1, 9, &t2, &n2, &v2, &m2) == MMD_OK, "split");
    CHECK(n1 == 45 && m1 == 5, "50 poses, val 0.1 -> 45 / 5 (%zu / %zu)", n1, m1);
    CHECK(n1 == n2 && !memcmp(t1, t2, n1 * sizeof *t1) && !memcmp(v1, v2, m1 * sizeof *v1), "same seed, same split");
    int sorted = 1;
    for (size_t i = 1; i < n1; i++) sorted &= t1[i - 1] < t1[i];
    for (size_t i = 1; i < m1; i++) sorted &= v1[i - 1] < v1[i];
    CHECK(sorted, "split lists ascending");
    free(t2), free(v2);
    CHECK(mmd_train_split(50, 0.1, 10, &t2, &n2, &v2, &m2) == MMD_OK, "split");
    CHECK(memcmp(v1, v2, m1 * sizeof *v1) != 0, "another seed, another split");
    free(t1), free(v1), free(t2), free(v2);
    CHECK(mmd_train_split(1, 0.5, 1, &t1, &n1, &v1, &m1) == MMD_OK && n1 == 1 && m1 == 0,
          "one pose: trained on, none held out");
    free(t1), free(v1);
    CHECK(mmd_train_split(10, 0, 1, &t1, &n1, &v1, &m1) == MMD_OK && n1 == 10 && m1 == 0, "val_fraction 0");
    free(t1), free(v1);

    /* two runs with one seed see the same batches; another seed sees others */
    mock a, b, c;
    mock_init(&a), mock_init(&b), mock_init(&c);
    mmd_train_objective oa = objective(&a), ob = objective(&b), oc = objective(&c);
    mmd_train_options o = opts(NULL);
    o.epochs = 5;
    mmd_train_result r;
    mmd_train_run(&oa, NPOSE, &o, &r), mmd_train_result_free(&r);
    mmd_train_run(&ob, NPOSE, &o, &r), mmd_train_result_free(&r);
    o.seed = 4;
    mmd_train_run(&oc, NPOSE, &o, &r), mmd_train_result_free(&r);
    CHECK(a.n_log == b.n_log && !memcmp(a.log, b.log, a.n_log * sizeof *a.log), "same seed, same order");
    CHECK(!memcmp(a.w, b.w, sizeof a.w), "same seed, same parameters");
    CHECK(a.n_log != c.n_log || memcmp(a.log, c.log, a.n_log * sizeof *a.log) != 0, "another seed, another order");
}

typedef struct snap {
    mock *k;
    int epoch;
    float w[NP];
} snap;

static int snap_at(void *user, int epoch, size_t step, size_t steps, double loss)
{
    snap *s = user;
    if (epoch == s->epoch && step == steps) memcpy(s->w, s->k->w, sizeof s->w);
    return 0;
}

static void test_early_stopping(void)
{
    mock k;
    mock_init(&k);
    static const double val[] = {5, 4, 3, 3.5, 3.6, 3.7, 3.8, 3.9};
    k.script = val;
    k.n_script = 8;
    mmd_train_objective obj = objective(&k);
    mmd_train_options o = opts(tmp("early.bin"));
    o.early_stop_patience = 2;
    o.batch_poses = 8; /* 5 validation poses: one evaluation call per epoch */
    snap s = {&k, 3, {0}};
    o.on_step = snap_at;
    o.user = &s;
    mmd_train_result r;
    mmd_status st = mmd_train_run(&obj, NPOSE, &o, &r);
    CHECK(st == MMD_OK, "train: %s", mmd_last_error());
    if (st != MMD_OK) return;
    CHECK(r.stopped_early && r.n_epochs == 5, "stopped after 2 epochs without improvement: %zu epochs", r.n_epochs);
    CHECK(r.best_epoch == 3 && r.best_loss == 3.0, "best epoch 3 (%d, %g)", r.best_epoch, r.best_loss);
    CHECK(!memcmp(k.w, s.w, sizeof s.w), "the parameters of epoch 3 are restored");
    mmd_train_result_free(&r);
    /* the final checkpoint knows it is done: resuming does nothing and gives the same result */
    mmd_train_checkpoint c;
    CHECK(mmd_train_checkpoint_read(tmp("early.bin"), &c) == MMD_OK && c.finished && c.stopped_early &&
              c.epoch == 5 && c.best_epoch == 3,
          "final checkpoint: finished, stopped early, epoch 5, best 3");
    mmd_train_checkpoint_free(&c);
    mock k2;
    mock_init(&k2);
    mmd_train_objective obj2 = objective(&k2);
    o.resume = 1;
    o.on_step = NULL;
    st = mmd_train_run(&obj2, NPOSE, &o, &r);
    CHECK(st == MMD_OK && r.resumed && r.stopped_early && r.n_epochs == 5 && k2.n_steps == 0 &&
              !memcmp(k2.w, s.w, sizeof s.w),
          "resuming a finished run: no steps, best parameters (%s)", st ? mmd_last_error() : "ok");
    mmd_train_result_free(&r);
    /* ... unless asked for more: no patience and more epochs continue the stopped run */
    mock k4;
    mock_init(&k4);
    k4.script = val + 5; /* the evaluations that epochs 6 and 7 would have seen */
    k4.n_script = 3;
    mmd_train_objective obj4 = objective(&k4);
    o.early_stop_patience = 0;
    o.epochs = 7;
    st = mmd_train_run(&obj4, NPOSE, &o, &r);
    CHECK(st == MMD_OK && r.n_epochs == 7 && !r.stopped_early && r.best_epoch == 3 && k4.n_steps == 2 * 3 &&
              !memcmp(k4.w, s.w, sizeof s.w),
          "a stopped run extended: 7 epochs, best still 3 (%s)", st ? mmd_last_error() : "ok");
    mmd_train_result_free(&r);
    /* no validation poses: the training loss is watched */
    mock k3;
    mock_init(&k3);
    mmd_train_objective obj3 = objective(&k3);
    o = opts(NULL);
    o.val_fraction = 0;
    o.early_stop_patience = 1;
    st = mmd_train_run(&obj3, NPOSE, &o, &r);
    CHECK(st == MMD_OK && !r.monitor_is_val && r.n_val == 0 && isnan(r.epochs[0].val_loss),
          "without validation poses early stopping watches the training loss");
    mmd_train_result_free(&r);
}

static void test_nan_loss(void)
{
    mock k;
    mock_init(&k);
    k.nan_at_step = 7;
    mmd_train_objective obj = objective(&k);
    mmd_train_options o = opts(NULL);
    mmd_train_result r;
    mmd_status st = mmd_train_run(&obj, NPOSE, &o, &r);
    CHECK(st == MMD_ERR_INVALID && strstr(mmd_last_error(), "epoch 2, step 3") && strstr(mmd_last_error(), "nan"),
          "NaN loss is an error naming epoch and step: %s", mmd_last_error());
    mmd_train_result_free(&r);
    mmd_train_objective bad = obj;
    bad.step = NULL;
    CHECK(mmd_train_run(&bad, NPOSE, &o, &r) == MMD_ERR_INVALID, "incomplete objective refused");
    o.batch_poses = 0;
    CHECK(mmd_train_run(&obj, NPOSE, &o, &r) == MMD_ERR_INVALID && strstr(mmd_last_error(), "batch_poses"),
          "batch_poses 0 refused");
    o = opts(NULL);
    CHECK(mmd_train_run(&obj, 0, &o, &r) == MMD_ERR_INVALID, "no poses refused");
}

/* ---------------------------------------------------------------------------------------
 * Checkpoints and resume
 */

static int file_bytes(const char *path, unsigned char **data, size_t *n)
{
    char *d;
    if (mmd_read_file(path, &d, n) != MMD_OK) return 0;
    *data = (unsigned char *)d;
    return 1;
}

static void write_bytes(const char *path, const void *d, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(d, 1, n, f);
    fclose(f);
}

static void test_checkpoint_round_trip(void)
{
    mmd_train_checkpoint c = {0}, d;
    uint64_t tr[3] = {0, 2, 3}, va[1] = {1}, perm[3] = {3, 0, 2};
    mmd_train_epoch h[2] = {{1.5, 2.5, 0.25}, {1.25, NAN, 0.5}};
    float p[2] = {1.0f, -2.5f}, m[2] = {0.125f, 3e-9f}, v[2] = {1e-30f, 7.0f}, b[2] = {0.5f, 0.25f};
    c.n_params = 2, c.n_poses = 4, c.data_hash = 0x0123456789abcdefULL, c.seed = -5, c.lr = 1e-3;
    c.batch_poses = 2, c.monitor_is_val = 1, c.epoch = 2, c.batch_pos = 1, c.epoch_loss_sum = 0.75;
    c.epoch_loss_count = 2, c.epoch_seconds = 0.125, c.steps = 5, c.opt_step = 5, c.best_loss = 2.5;
    c.best_epoch = 1, c.bad_epochs = 1, c.rng_state = 0xfeedfacecafebeefULL, c.rng_inc = 77;
    c.n_train = 3, c.n_val = 1, c.train_ids = tr, c.val_ids = va, c.perm = perm, c.n_history = 2, c.history = h;
    c.params = p, c.opt_m = m, c.opt_v = v, c.best_params = b;
    const char *path = tmp("rt.bin");
    CHECK(mmd_train_checkpoint_write(path, &c) == MMD_OK, "write: %s", mmd_last_error());
    mmd_status st = mmd_train_checkpoint_read(path, &d);
    CHECK(st == MMD_OK, "read: %s", mmd_last_error());
    if (st != MMD_OK) return;
    CHECK(d.n_params == 2 && d.n_poses == 4 && d.data_hash == c.data_hash && d.seed == -5 && d.lr == 1e-3 &&
              d.batch_poses == 2 && d.monitor_is_val == 1 && d.epoch == 2 && d.batch_pos == 1 &&
              d.epoch_loss_sum == 0.75 && d.epoch_loss_count == 2 && d.epoch_seconds == 0.125 && d.steps == 5 &&
              d.opt_step == 5 && d.best_loss == 2.5 && d.best_epoch == 1 && d.bad_epochs == 1 &&
              d.rng_state == c.rng_state && d.rng_inc == 77,
          "scalars round-trip");
    CHECK(!memcmp(d.train_ids, tr, sizeof tr) && !memcmp(d.val_ids, va, sizeof va) && !memcmp(d.perm, perm, sizeof perm),
          "pose lists round-trip");
    CHECK(d.n_history == 2 && d.history[0].loss == 1.5 && d.history[1].seconds == 0.5 && isnan(d.history[1].val_loss),
          "history round-trips (NaN too)");
    CHECK(!memcmp(d.params, p, sizeof p) && !memcmp(d.opt_m, m, sizeof m) && !memcmp(d.opt_v, v, sizeof v) &&
              !memcmp(d.best_params, b, sizeof b),
          "float arrays round-trip bit for bit");
    mmd_train_checkpoint_free(&d);

    /* damage it every way */
    unsigned char *bytes;
    size_t n;
    if (!file_bytes(path, &bytes, &n)) return;
    const char *bad = tmp("bad.bin");
    write_bytes(bad, bytes, n - 5);
    st = mmd_train_checkpoint_read(bad, &d);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "truncated") && strstr(mmd_last_error(), "bad.bin"),
          "truncated checkpoint refused: %s", mmd_last_error());
    write_bytes(bad, bytes, 20);
    st = mmd_train_checkpoint_read(bad, &d);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "truncated"), "checkpoint cut in its header: %s",
          mmd_last_error());
    bytes[n / 2] ^= 0x10;
    write_bytes(bad, bytes, n);
    st = mmd_train_checkpoint_read(bad, &d);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "corrupted"), "flipped bit refused: %s", mmd_last_error());
    bytes[n / 2] ^= 0x10;
    bytes[0] = 'X';
    write_bytes(bad, bytes, n);
    st = mmd_train_checkpoint_read(bad, &d);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "not an mmdiff checkpoint"), "foreign file refused: %s",
          mmd_last_error());
    bytes[0] = 'M';
    unsigned char *longer = malloc(n + 3);
    memcpy(longer, bytes, n);
    memset(longer + n, 0, 3);
    write_bytes(bad, longer, n + 3);
    st = mmd_train_checkpoint_read(bad, &d);
    CHECK(st == MMD_ERR_PARSE && strstr(mmd_last_error(), "longer"), "trailing bytes refused: %s", mmd_last_error());
    free(longer);
    write_bytes(bad, "", 0);
    CHECK(mmd_train_checkpoint_read(bad, &d) == MMD_ERR_PARSE, "empty file refused: %s", mmd_last_error());
    CHECK(mmd_train_checkpoint_read(tmp("none.bin"), &d) == MMD_ERR_IO, "missing file: io error");
    free(bytes);
}

typedef struct stopper {
    int epoch;
    size_t step;
} stopper;

static int stop_at(void *user, int epoch, size_t step, size_t steps, double loss)
{
    const stopper *s = user;
    return epoch == s->epoch && step == s->step;
}

static int raise_at(void *user, int epoch, size_t step, size_t steps, double loss)
{
    if (epoch == 10 && step == 1) *(volatile sig_atomic_t *)user = 1;
    return 0;
}

static void test_resume_bit_identical(void)
{
    /* the reference: one uninterrupted run */
    mock ref;
    mock_init(&ref);
    mmd_train_objective oref = objective(&ref);
    mmd_train_options o = opts(tmp("ref.bin"));
    o.epochs = 12;
    o.early_stop_patience = 3;
    mmd_train_result rr;
    CHECK(mmd_train_run(&oref, NPOSE, &o, &rr) == MMD_OK, "reference run: %s", mmd_last_error());

    /* interrupted mid-epoch (epoch 5 after step 2), at an epoch's end (epoch 8, last step),
     * by the stop flag (epoch 10, step 1), then finished; every leg starts from a fresh
     * objective, as a new process would */
    const stopper stops[3] = {{5, 2}, {8, 4}, {0, 0}};
    int legs = 0, all_ok = 1;
    mmd_train_result r = {0};
    for (int leg = 0; leg < 4; leg++) {
        mock k;
        mock_init(&k);
        mmd_train_objective obj = objective(&k);
        mmd_train_options oi = opts(tmp("int.bin"));
        oi.epochs = 12;
        oi.early_stop_patience = 3;
        oi.resume = leg > 0;
        volatile sig_atomic_t flag = 0;
        if (leg < 2) {
            oi.on_step = stop_at;
            oi.user = (void *)&stops[leg];
        } else if (leg == 2) {
            /* the stop flag is raised during epoch 10's first step, as a signal would */
            oi.on_step = raise_at;
            oi.user = (void *)&flag;
            oi.stop = &flag;
        }
        mmd_train_result_free(&r);
        mmd_status st = mmd_train_run(&obj, NPOSE, &oi, &r);
        if (st != MMD_OK) {
            CHECK(0, "leg %d: %s", leg, mmd_last_error());
            all_ok = 0;
            break;
        }
        legs++;
        if (leg < 3) all_ok &= r.interrupted;
        if (leg == 0) CHECK(r.n_epochs == 4 && r.interrupted, "leg 0 stops in epoch 5 (%zu epochs done)", r.n_epochs);
        if (leg == 1) CHECK(r.n_epochs == 8 && r.interrupted, "leg 1 stops after epoch 8 (%zu)", r.n_epochs);
        if (leg == 2) CHECK(r.n_epochs == 9 && r.interrupted && flag, "the stop flag stops in epoch 10 (%zu)", r.n_epochs);
        if (leg == 3) {
            CHECK(!r.interrupted && r.resumed, "last leg finishes");
            CHECK(!memcmp(k.w, ref.w, sizeof k.w), "resumed run ends with the same parameter bytes");
            CHECK(r.n_epochs == rr.n_epochs && r.steps == rr.steps && r.best_epoch == rr.best_epoch &&
                      r.stopped_early == rr.stopped_early,
                  "same epochs (%zu vs %zu), steps, best epoch", r.n_epochs, rr.n_epochs);
            int same = r.n_epochs == rr.n_epochs;
            for (size_t e = 0; same && e < r.n_epochs; e++)
                same = !memcmp(&r.epochs[e].loss, &rr.epochs[e].loss, sizeof(double)) &&
                       !memcmp(&r.epochs[e].val_loss, &rr.epochs[e].val_loss, sizeof(double));
            CHECK(same, "same loss history, bit for bit");
            mock_init(&k);
        }
    }
    CHECK(legs == 4 && all_ok, "four legs ran, three interrupted");
    mmd_train_result_free(&r);
    /* and the final checkpoints hold the same parameters and optimiser state */
    mmd_train_checkpoint a, b;
    if (mmd_train_checkpoint_read(tmp("ref.bin"), &a) == MMD_OK) {
        if (mmd_train_checkpoint_read(tmp("int.bin"), &b) == MMD_OK) {
            CHECK(!memcmp(a.params, b.params, NP * 4) && !memcmp(a.opt_m, b.opt_m, NP * 4) &&
                      !memcmp(a.opt_v, b.opt_v, NP * 4) && a.opt_step == b.opt_step &&
                      !memcmp(a.best_params, b.best_params, NP * 4) && a.rng_state == b.rng_state,
                  "final checkpoints agree");
            mmd_train_checkpoint_free(&b);
        }
        mmd_train_checkpoint_free(&a);
    }
    mmd_train_result_free(&rr);

    /* resuming with the wrong settings is refused, and a damaged checkpoint too */
    mock k;
    mock_init(&k);
    mmd_train_objective obj = objective(&k);
    mmd_train_options oi = opts(tmp("int.bin"));
    oi.epochs = 20;
    oi.resume = 1;
    oi.seed = 99;
    CHECK(mmd_train_run(&obj, NPOSE, &oi, &r) == MMD_ERR_INVALID && strstr(mmd_last_error(), "train.seed"),
          "another seed refused: %s", mmd_last_error());
    oi.seed = 3;
    oi.batch_poses = 4;
    CHECK(mmd_train_run(&obj, NPOSE, &oi, &r) == MMD_ERR_INVALID && strstr(mmd_last_error(), "batch_poses"),
          "another batch size refused: %s", mmd_last_error());
    oi.batch_poses = 5;
    oi.data_hash = 1;
    CHECK(mmd_train_run(&obj, NPOSE, &oi, &r) == MMD_ERR_INVALID && strstr(mmd_last_error(), "measurement set"),
          "another data set refused: %s", mmd_last_error());
    oi.data_hash = 0;
    CHECK(mmd_train_run(&obj, NPOSE - 1, &oi, &r) == MMD_ERR_INVALID, "another pose count refused");
    oi.data_hash = 1;
    CHECK(mmd_train_resume_check(NP, NPOSE, &oi) == MMD_ERR_INVALID && strstr(mmd_last_error(), "measurement set"),
          "resume_check sees the same mismatch");
    oi.data_hash = 0;
    CHECK(mmd_train_resume_check(NP, NPOSE, &oi) == MMD_OK, "resume_check accepts the matching problem: %s",
          mmd_last_error());
    CHECK(mmd_train_resume_check(NP + 1, NPOSE, &oi) == MMD_ERR_INVALID && strstr(mmd_last_error(), "parameters"),
          "resume_check: another parameter count");
    oi.checkpoint_path = tmp("nothing-here.bin");
    CHECK(mmd_train_run(&obj, NPOSE, &oi, &r) == MMD_ERR_IO && strstr(mmd_last_error(), "no checkpoint to resume"),
          "missing checkpoint: %s", mmd_last_error());
    unsigned char *bytes;
    size_t n;
    if (file_bytes(tmp("int.bin"), &bytes, &n)) {
        write_bytes(tmp("cut.bin"), bytes, n / 2);
        oi.checkpoint_path = tmp("cut.bin");
        CHECK(mmd_train_run(&obj, NPOSE, &oi, &r) == MMD_ERR_PARSE && strstr(mmd_last_error(), "truncated"),
              "truncated checkpoint refused on resume: %s", mmd_last_error());
        free(bytes);
    }
    /* continuing a finished run for more epochs works */
    oi.checkpoint_path = tmp("int.bin");
    mmd_train_checkpoint c;
    if (mmd_train_checkpoint_read(tmp("int.bin"), &c) == MMD_OK) {
        int early = c.stopped_early;
        mmd_train_checkpoint_free(&c);
        mmd_status st = mmd_train_run(&obj, NPOSE, &oi, &r);
        CHECK(st == MMD_OK && (early ? r.n_epochs == 12 || r.n_epochs < 12 : r.n_epochs > 12),
              "resume with more epochs: %zu epochs (%s)", r.n_epochs, st ? mmd_last_error() : "ok");
        mmd_train_result_free(&r);
    }
}

/* ---------------------------------------------------------------------------------------
 * Measurement sets
 */

static const char *k_exp = "scene: {file: room.ply, frequency_hz: 60e9}\n"
                           "tx: {position_m: [1, 2, 2]}\n"
                           "rx: {array: {rows: 4, cols: 4, element: iso}}\n"
                           "aoa: {azimuth_deg: [-90, 90, 30], elevation_deg: [-20, 20, 10]}\n";

/* The manifest exactly as `simulate` writes it (cmd_simulate.c). */
static void write_set(const char *dir, size_t n, int n_el, int n_az, double freq, const char *extra)
{
    mmd_mkdirs(dir);
    char path[600], man[2048];
    mmd_pose_row *rows = calloc(n, sizeof *rows);
    for (size_t k = 0; k < n; k++) rows[k].x_m = 1 + 0.1 * (double)k, rows[k].y_m = 2, rows[k].z_m = 1.2,
                                    rows[k].yaw_deg = 10.0 * (double)k;
    snprintf(path, sizeof path, "%s/poses.csv", dir);
    mmd_poses_csv_write(path, rows, n);
    free(rows);
    float *s = calloc(n * (size_t)n_el * (size_t)n_az, sizeof *s);
    for (size_t i = 0; i < n * (size_t)n_el * (size_t)n_az; i++) s[i] = 1e-9f * (float)(i % 17);
    size_t shape[3] = {n, (size_t)n_el, (size_t)n_az};
    snprintf(path, sizeof path, "%s/spectra.npy", dir);
    mmd_npy_write(path, MMD_DT_F32, shape, 3, s);
    free(s);
    int len = snprintf(man, sizeof man,
                       "# mmdiff measurement set (SPEC 6): poses.csv + spectra.npy\n"
                       "format: mmdiff-measurements-1\n"
                       "frequency_hz: %.17g\n"
                       "poses: poses.csv\n"
                       "spectra: spectra.npy\n"
                       "shape: [%zu, %d, %d]  # [pose, elevation, azimuth]\n"
                       "units: linear_power  # received power per transmitted power (W/W), per bin\n"
                       "azimuth_deg: [%.17g, %.17g, %.17g]  # [start, stop, step], array frame\n"
                       "elevation_deg: [%.17g, %.17g, %.17g]\n"
                       "array: {rows: %d, cols: %d, spacing_wavelengths: %.17g, window: %s, element: %s}\n%s",
                       freq, n, n_el, n_az, -90.0, 90.0, 30.0, -20.0, 20.0, 10.0, 4, 4, 0.5, "hann", "iso",
                       extra ? extra : "");
    snprintf(path, sizeof path, "%s/manifest.yaml", dir);
    write_bytes(path, man, (size_t)len);
}

static void set_value(const char *dir, size_t index, float v)
{
    char path[600];
    snprintf(path, sizeof path, "%s/spectra.npy", dir);
    mmd_array a;
    if (mmd_npy_read_f32(path, &a) != MMD_OK) return;
    a.data[index] = v;
    mmd_npy_write(path, MMD_DT_F32, a.shape, a.ndim, a.data);
    mmd_array_free(&a);
}

static void expect_bad(const char *what, const char *path, const mmd_experiment *e, const char *n1, const char *n2)
{
    mmd_measurements m;
    mmd_status st = mmd_measurements_read(path, &m);
    if (st == MMD_OK) {
        st = mmd_measurements_check(&m, e);
        mmd_measurements_free(&m);
    }
    const char *msg = mmd_last_error();
    CHECK(st != MMD_OK && strstr(msg, n1) && (!n2 || strstr(msg, n2)), "%s: should fail naming '%s'%s%s: %s", what,
          n1, n2 ? " and " : "", n2 ? n2 : "", st ? msg : "(accepted)");
    CHECK(m.spectra == NULL && m.n_poses == 0, "%s: nothing left allocated", what);
}

static void replace_in_manifest(const char *dir, const char *from, const char *to)
{
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.yaml", dir);
    char *t;
    size_t n;
    if (mmd_read_file(path, &t, &n) != MMD_OK) return;
    char *at = strstr(t, from);
    if (!at) {
        fprintf(stderr, "test: '%s' not in the manifest\n", from);
        free(t);
        return;
    }
    char out[4096];
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - t), t, to, at + strlen(from));
    write_bytes(path, out, strlen(out));
    free(t);
}

static void test_measurements(void)
{
    mmd_experiment e;
    char origin[600];
    snprintf(origin, sizeof origin, "%s/exp.yaml", g_dir);
    if (mmd_experiment_load_string(k_exp, origin, NULL, 0, &e) != MMD_OK) {
        CHECK(0, "experiment: %s", mmd_last_error());
        return;
    }
    /* aoa grid: 7 azimuth x 5 elevation bins */
    const char *good = tmp("good");
    write_set(good, 3, 5, 7, 60e9, NULL);
    mmd_measurements m;
    mmd_status st = mmd_measurements_read(good, &m);
    CHECK(st == MMD_OK, "good set: %s", mmd_last_error());
    if (st == MMD_OK) {
        CHECK(m.n_poses == 3 && m.n_el == 5 && m.n_az == 7 && m.frequency_hz == 60e9, "good set: sizes");
        CHECK(m.poses[2].position_m[0] == 1.2 && m.poses[2].yaw_deg == 20, "good set: poses");
        CHECK(m.spectra[16] == 1e-9f * 16 && m.spectra[3 * 35 - 1] == 1e-9f * (float)((3 * 35 - 1) % 17),
              "good set: spectra");
        CHECK(m.has_array && m.array_rows == 4 && !strcmp(m.array_window, "hann"), "good set: array");
        CHECK(mmd_measurements_check(&m, &e) == MMD_OK, "good set matches the experiment: %s", mmd_last_error());
        uint64_t h = m.hash;
        mmd_measurements_free(&m);
        char man[600];
        snprintf(man, sizeof man, "%s/manifest.yaml", good);
        CHECK(mmd_measurements_read(man, &m) == MMD_OK && m.hash == h, "the manifest path reads the same set");
        mmd_measurements_free(&m);
    }
    /* per-pose files, dB units */
    const char *pp = tmp("perpose");
    write_set(pp, 2, 5, 7, 60e9, NULL);
    {
        float s[35];
        for (int i = 0; i < 35; i++) s[i] = i == 3 ? -INFINITY : -60.0f + (float)i;
        size_t shape[2] = {5, 7};
        char path[600];
        snprintf(path, sizeof path, "%s/a.npy", pp);
        mmd_npy_write(path, MMD_DT_F32, shape, 2, s);
        snprintf(path, sizeof path, "%s/b.npy", pp);
        mmd_npy_write(path, MMD_DT_F32, shape, 2, s);
        replace_in_manifest(pp, "spectra: spectra.npy", "spectra: [a.npy, b.npy]");
        replace_in_manifest(pp, "units: linear_power", "units: db");
        st = mmd_measurements_read(pp, &m);
        CHECK(st == MMD_OK && m.n_poses == 2 && m.spectra_file == NULL && m.spectra[3] == 0.0f &&
                  fabsf(m.spectra[35 + 10] - 1e-5f) < 1e-11f,
              "per-pose dB files: %s", st ? mmd_last_error() : "ok");
        mmd_measurements_free(&m);
        replace_in_manifest(pp, "spectra: [a.npy, b.npy]", "spectra: [a.npy]");
        expect_bad("per-pose list shorter than the poses", pp, &e, "manifest.yaml", "one NPY per pose");
        replace_in_manifest(pp, "spectra: [a.npy]", "spectra: [a.npy, c.npy]");
        expect_bad("per-pose file missing", pp, &e, "c.npy", "cannot open");
    }

    /* the catalogue of bad sets: each names the file and what was wrong */
    const char *d = tmp("bad1");
    expect_bad("missing directory", tmp("nope"), &e, "nope", "cannot open");
    write_set(d, 3, 5, 7, 60e9, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/manifest.yaml", d);
    remove(path);
    expect_bad("no manifest", d, &e, "manifest.yaml", "cannot open");

    d = tmp("bad2");
    write_set(d, 3, 5, 7, 60e9, NULL);
    snprintf(path, sizeof path, "%s/spectra.npy", d);
    remove(path);
    expect_bad("missing spectra file", d, &e, "spectra.npy", "cannot open");

    d = tmp("bad3");
    write_set(d, 3, 5, 7, 60e9, NULL);
    snprintf(path, sizeof path, "%s/poses.csv", d);
    remove(path);
    expect_bad("missing poses file", d, &e, "poses.csv", "cannot open");

    d = tmp("bad4");
    write_set(d, 3, 4, 7, 60e9, NULL); /* NPY has 4 elevation rows, grid says 5 */
    replace_in_manifest(d, "shape: [3, 4, 7]", "shape: [3, 5, 7]");
    expect_bad("wrong shape", d, &e, "spectra.npy", "shape (3, 4, 7)");

    d = tmp("bad5");
    write_set(d, 3, 5, 7, 60e9, NULL);
    set_value(d, 40, NAN);
    expect_bad("NaN power", d, &e, "spectra.npy", "pose 1, bin [elevation 0, azimuth 5]: power nan");

    d = tmp("bad6");
    write_set(d, 3, 5, 7, 60e9, NULL);
    set_value(d, 2, -1e-3f);
    expect_bad("negative power", d, &e, "spectra.npy", ">= 0");

    d = tmp("bad7");
    write_set(d, 3, 5, 7, 28e9, NULL);
    expect_bad("wrong frequency", d, &e, "frequency_hz", "scene.frequency_hz");

    d = tmp("bad8");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "azimuth_deg: [-90, 90, 30]", "azimuth_deg: [-60, 120, 30]");
    expect_bad("shifted azimuth grid", d, &e, "azimuth_deg", "aoa.azimuth_deg");

    d = tmp("bad9");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "rows: 4, cols: 4", "rows: 8, cols: 8");
    expect_bad("another array", d, &e, "array", "8 x 8");

    d = tmp("bad10");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "format: mmdiff-measurements-1", "format: mmdiff-measurements-7");
    expect_bad("unknown format", d, &e, "manifest.yaml:2", "format");

    d = tmp("bad11");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "elevation_deg: [-20, 20, 10]", "elevation_deg: [-20, 20]");
    expect_bad("grid with two numbers", d, &e, "elevation_deg", "[start, stop, step]");

    d = tmp("bad12");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "shape: [3, 5, 7]", "shape: [4, 5, 7]");
    expect_bad("shape key disagrees", d, &e, "shape", "3 poses");

    d = tmp("bad13");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "units: linear_power", "units: dBm");
    expect_bad("unknown units", d, &e, "units", "linear_power or db");

    d = tmp("bad14");
    write_set(d, 3, 5, 7, 60e9, NULL);
    replace_in_manifest(d, "frequency_hz: 60000000000\n", "");
    expect_bad("no frequency", d, &e, "frequency_hz", "missing");

    d = tmp("bad15");
    write_set(d, 3, 5, 7, 60e9, NULL);
    snprintf(path, sizeof path, "%s/spectra.npy", d);
    write_bytes(path, "\x93NUMPY\x01\x00", 8);
    expect_bad("truncated NPY", d, &e, "spectra.npy", "NPY");

    d = tmp("bad16");
    write_set(d, 3, 5, 7, 60e9, NULL);
    snprintf(path, sizeof path, "%s/poses.csv", d);
    write_bytes(path, "x_m,y_m,z_m\n", 12);
    expect_bad("no poses", d, &e, "poses.csv", "no poses");

    d = tmp("bad17");
    write_set(d, 3, 5, 7, 60e9, NULL);
    snprintf(path, sizeof path, "%s/manifest.yaml", d);
    write_bytes(path, "format: [\n", 10);
    expect_bad("malformed manifest", d, &e, "manifest.yaml", NULL);

    mmd_experiment_free(&e);
}

/* ---------------------------------------------------------------------------------------
 * model/materials.yaml
 */

static int same_mat(const mmd_material *a, const mmd_material *b)
{
    return a->eps_r == b->eps_r && a->sigma_s_per_m == b->sigma_s_per_m && a->scattering == b->scattering &&
           a->xpd == b->xpd && a->thickness_m == b->thickness_m && a->alpha_r == b->alpha_r;
}

static void test_materials_yaml(void)
{
    const char *ply = "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                      "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
                      "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n";
    write_bytes(tmp("a.ply"), ply, strlen(ply));
    write_bytes(tmp("b \"odd\".ply"), ply, strlen(ply));
    const char *sy = "shapes:\n  - {file: a.ply, material: concrete}\n  - {file: 'b \"odd\".ply', material: metal}\n";
    write_bytes(tmp("scene.yaml"), sy, strlen(sy));
    mmd_scene *sc = NULL;
    if (mmd_scene_load(tmp("scene.yaml"), &sc) != MMD_OK) {
        CHECK(0, "scene: %s", mmd_last_error());
        return;
    }
    CHECK(sc->n_objects == 2, "two objects");
    mmd_material m[2] = {{5.25, 0.125, 0.3, 0.01, 0, 20}, {1.0 / 3.0, 1e-7, 0.999, 0.5, 0.006, 1}};
    m[1].eps_r = 1 + 1.0 / 3.0;
    const char *path = tmp("materials.yaml");
    CHECK(mmd_materials_yaml_write(path, sc, m, 60e9, "learned\nby a test") == MMD_OK, "write: %s", mmd_last_error());
    mmd_material back[2] = {{2, 0, 0, 0, 0.1, 7}, {2, 0, 0, 0, 0, 7}};
    int given[2];
    double f = 0;
    mmd_status st = mmd_materials_yaml_read(path, sc, back, given, &f);
    CHECK(st == MMD_OK, "read: %s", mmd_last_error());
    CHECK(same_mat(&back[0], &m[0]) && same_mat(&back[1], &m[1]) && given[0] && given[1] && f == 60e9,
          "materials round-trip exactly (odd object name, half-space null, frequency)");
    /* a partial file keeps the other objects; unknown names and bad values are errors */
    char text[1024];
    snprintf(text, sizeof text, "model: per_object\nmaterials:\n  a: {eps_r: 7}\n");
    write_bytes(path, text, strlen(text));
    mmd_material keep[2] = {m[0], m[1]};
    CHECK(mmd_materials_yaml_read(path, sc, keep, given, NULL) == MMD_OK && keep[0].eps_r == 7 &&
              keep[0].sigma_s_per_m == m[0].sigma_s_per_m && !given[1] && same_mat(&keep[1], &m[1]),
          "partial file: given keys replace, the rest stays");
    snprintf(text, sizeof text, "materials:\n  door: {eps_r: 7}\n");
    write_bytes(path, text, strlen(text));
    CHECK(mmd_materials_yaml_read(path, sc, keep, given, NULL) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "'door'") && strstr(mmd_last_error(), "materials.yaml:2"),
          "unknown object named with its line: %s", mmd_last_error());
    snprintf(text, sizeof text, "materials:\n  a: {eps_r: 0.5}\n");
    write_bytes(path, text, strlen(text));
    CHECK(mmd_materials_yaml_read(path, sc, keep, given, NULL) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "materials.a.eps_r"),
          "eps_r < 1: %s", mmd_last_error());
    snprintf(text, sizeof text, "materials:\n  a: {epsr: 2}\n");
    write_bytes(path, text, strlen(text));
    CHECK(mmd_materials_yaml_read(path, sc, keep, given, NULL) == MMD_ERR_INVALID &&
              strstr(mmd_last_error(), "unknown key 'epsr'"),
          "unknown key: %s", mmd_last_error());
    snprintf(text, sizeof text, "model: neural\nmaterials: {}\n");
    write_bytes(path, text, strlen(text));
    CHECK(mmd_materials_yaml_read(path, sc, keep, given, NULL) == MMD_ERR_INVALID && strstr(mmd_last_error(), "model"),
          "another model kind: %s", mmd_last_error());
    mmd_scene_destroy(sc);
}

int main(void)
{
    if (!mkdtemp(g_dir)) return 1;
    mmd_log_set_level(0);
    test_loss_decreases();
    test_split_and_shuffle_determinism();
    test_early_stopping();
    test_nan_loss();
    test_checkpoint_round_trip();
    test_resume_bit_identical();
    test_measurements();
    test_materials_yaml();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", g_dir);
    return TEST_DONE();
}
