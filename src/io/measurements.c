/* Measurement sets (SPEC 6, mmd_train.h): manifest.yaml + poses CSV + spectra NPY(s), read
 * strictly and checked against the experiment before any training starts, so that a
 * wrong file costs an error message rather than hours of fitting the wrong thing. */
#include "mmd_io.h"
#include "mmd_train.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MANIFEST_FORMAT "mmdiff-measurements-1"

/* Grids are compared with a tolerance: a manifest written by another tool may print
 * 0.1 as 0.10000000000000001 or round it to 6 digits. */
#define GRID_TOL 1e-6

typedef struct mctx {
    const char *file; /* manifest path, for messages */
} mctx;

#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
static mmd_status fail_at(const mctx *c, const mmd_ynode *n, const char *field, const char *fmt, ...)
{
    char msg[1024], where[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n) mmd_yaml_where(n, where, sizeof where);
    else snprintf(where, sizeof where, "%s", c->file);
    return mmd_error(MMD_ERR_INVALID, "%s: %s: %s", where, field, msg);
}

static int scalar_number(const mmd_ynode *n, double *v)
{
    if (!n || n->kind != MMD_YAML_SCALAR || n->quoted || n->is_null || !n->text || !n->text[0]) return 0;
    char *end = NULL;
    errno = 0;
    double x = strtod(n->text, &end);
    while (end && (*end == ' ' || *end == '\t')) end++;
    if (!end || *end || errno == ERANGE || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

static int scalar_int(const mmd_ynode *n, long long lo, long long hi, long long *v)
{
    double x;
    if (!scalar_number(n, &x) || x != floor(x) || x < (double)lo || x > (double)hi) return 0;
    *v = (long long)x;
    return 1;
}

static const char *scalar_text(const mmd_ynode *n)
{
    return n && n->kind == MMD_YAML_SCALAR && !n->is_null && n->text ? n->text : NULL;
}

/* [start, stop, step] with the experiment's own rules (whole number of steps). */
static mmd_status read_grid(const mctx *c, const mmd_ynode *root, const char *key, mmd_cfg_grid *g)
{
    const mmd_ynode *v = mmd_yaml_get(root, key);
    if (!v) return fail_at(c, NULL, key, "missing; expected [start, stop, step] in degrees");
    double t[3];
    if (v->kind != MMD_YAML_SEQ || v->n != 3 || !scalar_number(v->items[0], &t[0]) ||
        !scalar_number(v->items[1], &t[1]) || !scalar_number(v->items[2], &t[2]))
        return fail_at(c, v, key, "expected [start, stop, step] (three finite numbers, degrees)");
    if (!(t[2] > 0 && t[1] >= t[0]))
        return fail_at(c, v, key, "expected start <= stop and step > 0, got [%g, %g, %g]", t[0], t[1], t[2]);
    double k = (t[1] - t[0]) / t[2], kr = floor(k + 0.5);
    if (fabs(k - kr) > 1e-6 * (kr > 1 ? kr : 1))
        return fail_at(c, v, key, "stop - start = %g is not a whole number of steps of %g", t[1] - t[0], t[2]);
    if (kr + 1 > 1e6) return fail_at(c, v, key, "more than 1e6 bins");
    g->start = t[0];
    g->stop = t[1];
    g->step = t[2];
    g->count = (int)kr + 1;
    return MMD_OK;
}

static void copy_name(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s ? s : "");
}

static mmd_status read_array(const mctx *c, const mmd_ynode *root, mmd_measurements *m)
{
    const mmd_ynode *a = mmd_yaml_get(root, "array");
    if (!a || (a->kind == MMD_YAML_SCALAR && a->is_null)) return MMD_OK;
    if (a->kind != MMD_YAML_MAP)
        return fail_at(c, a, "array", "expected a map {rows, cols, spacing_wavelengths, window, element}");
    long long r = 0, k = 0;
    double sp = 0;
    const mmd_ynode *n;
    if (!(n = mmd_yaml_get(a, "rows")) || !scalar_int(n, 1, 1 << 20, &r))
        return fail_at(c, n ? n : a, "array.rows", "expected a positive integer");
    if (!(n = mmd_yaml_get(a, "cols")) || !scalar_int(n, 1, 1 << 20, &k))
        return fail_at(c, n ? n : a, "array.cols", "expected a positive integer");
    if ((n = mmd_yaml_get(a, "spacing_wavelengths")) && (!scalar_number(n, &sp) || !(sp > 0)))
        return fail_at(c, n, "array.spacing_wavelengths", "expected a number > 0");
    m->has_array = 1;
    m->array_rows = (int)r;
    m->array_cols = (int)k;
    m->array_spacing_wavelengths = sp; /* 0 = not given */
    copy_name(m->array_window, sizeof m->array_window, scalar_text(mmd_yaml_get(a, "window")));
    copy_name(m->array_element, sizeof m->array_element, scalar_text(mmd_yaml_get(a, "element")));
    return MMD_OK;
}

/* Check and convert one spectrum in place: linear powers must be finite and >= 0; dB
 * values finite or -inf (no power). */
static mmd_status check_values(const char *file, float *s, size_t n, int n_el, int n_az, size_t pose, int db)
{
    for (size_t i = 0; i < n; i++) {
        float x = s[i];
        int el = (int)(i / (size_t)n_az), az = (int)(i % (size_t)n_az);
        if (db) {
            if (isnan(x) || (isinf(x) && x > 0))
                return mmd_error(MMD_ERR_INVALID,
                                 "%s: pose %zu, bin [elevation %d, azimuth %d]: %g dB; expected a finite "
                                 "power in dB (or -inf for no power)",
                                 file, pose, el, az, (double)x);
            s[i] = isinf(x) ? 0.0f : (float)pow(10.0, 0.1 * (double)x);
        } else if (!isfinite(x) || x < 0) {
            return mmd_error(MMD_ERR_INVALID,
                             "%s: pose %zu, bin [elevation %d, azimuth %d]: power %g; expected a finite "
                             "linear power >= 0 (units: linear_power)",
                             file, pose, el, az, (double)x);
        }
    }
    (void)n_el;
    return MMD_OK;
}

static void shape_text(const mmd_array *a, char *buf, size_t cap)
{
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < a->ndim && k < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%zu", i ? ", " : "", a->shape[i]);
    if (k < cap) snprintf(buf + k, cap - k, "%s)", a->ndim == 1 ? "," : "");
}

static mmd_status read_stacked(const mctx *c, mmd_measurements *m, int db)
{
    mmd_array a;
    mmd_status st = mmd_npy_read_f32(m->spectra_file, &a);
    if (st != MMD_OK) return st;
    char got[256];
    shape_text(&a, got, sizeof got);
    int ok = (a.ndim == 3 && a.shape[0] == m->n_poses && a.shape[1] == (size_t)m->n_el &&
              a.shape[2] == (size_t)m->n_az) ||
             (a.ndim == 2 && m->n_poses == 1 && a.shape[0] == (size_t)m->n_el && a.shape[1] == (size_t)m->n_az);
    if (!ok) {
        mmd_array_free(&a);
        return mmd_error(MMD_ERR_INVALID,
                         "%s: spectra: shape %s; expected (%zu, %d, %d) = (poses in %s, elevation bins of "
                         "elevation_deg, azimuth bins of azimuth_deg) as given by %s",
                         m->spectra_file, got, m->n_poses, m->n_el, m->n_az, m->poses_file, c->file);
    }
    size_t per = (size_t)m->n_el * (size_t)m->n_az;
    for (size_t k = 0; k < m->n_poses; k++) {
        st = check_values(m->spectra_file, a.data + k * per, per, m->n_el, m->n_az, k, db);
        if (st != MMD_OK) {
            mmd_array_free(&a);
            return st;
        }
    }
    m->spectra = a.data; /* ownership moves */
    return MMD_OK;
}

static mmd_status read_per_pose(const mctx *c, const mmd_ynode *list, const char *dir, mmd_measurements *m,
                                int db)
{
    if (list->n != m->n_poses)
        return fail_at(c, list, "spectra", "lists %zu files but %s has %zu poses; expected one NPY per pose",
                       list->n, m->poses_file, m->n_poses);
    size_t per = (size_t)m->n_el * (size_t)m->n_az;
    /* bound the allocation by what is on disk: every file must hold per floats */
    char **paths = mmd_calloc(list->n, sizeof *paths, "measurement file list");
    if (!paths) return MMD_ERR_NOMEM;
    mmd_status st = MMD_OK;
    unsigned long long on_disk = 0;
    for (size_t k = 0; st == MMD_OK && k < list->n; k++) {
        const char *t = scalar_text(list->items[k]);
        if (!t || !t[0]) {
            st = fail_at(c, list->items[k], "spectra", "item %zu: expected a file name", k);
            break;
        }
        paths[k] = mmd_path_join(dir, t, 0);
        struct stat sb;
        if (!paths[k]) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
        else if (stat(paths[k], &sb) != 0)
            st = mmd_error(MMD_ERR_IO, "%s: cannot open: %s (listed as spectra item %zu in %s)", paths[k],
                           strerror(errno), k, c->file);
        else on_disk += (unsigned long long)sb.st_size;
    }
    if (st == MMD_OK && (double)per * (double)m->n_poses * 4.0 > (double)on_disk)
        st = mmd_error(MMD_ERR_INVALID, "%s: spectra: the %zu listed files hold %llu bytes, fewer than %zu poses x %d x %d "
                       "float32 values need",
                       c->file, list->n, on_disk, m->n_poses, m->n_el, m->n_az);
    float *all = st == MMD_OK ? mmd_malloc(m->n_poses * per, sizeof(float), "measured spectra") : NULL;
    if (st == MMD_OK && !all) st = MMD_ERR_NOMEM;
    for (size_t k = 0; st == MMD_OK && k < list->n; k++) {
        mmd_array a;
        st = mmd_npy_read_f32(paths[k], &a);
        if (st != MMD_OK) break;
        int ok = (a.ndim == 2 && a.shape[0] == (size_t)m->n_el && a.shape[1] == (size_t)m->n_az) ||
                 (a.ndim == 3 && a.shape[0] == 1 && a.shape[1] == (size_t)m->n_el && a.shape[2] == (size_t)m->n_az);
        if (!ok) {
            char got[256];
            shape_text(&a, got, sizeof got);
            st = mmd_error(MMD_ERR_INVALID,
                           "%s: spectrum of pose %zu: shape %s; expected (%d, %d) = (elevation bins, azimuth bins) "
                           "of the grids in %s",
                           paths[k], k, got, m->n_el, m->n_az, c->file);
        } else {
            memcpy(all + k * per, a.data, per * sizeof(float));
            st = check_values(paths[k], all + k * per, per, m->n_el, m->n_az, k, db);
        }
        mmd_array_free(&a);
    }
    for (size_t k = 0; k < list->n; k++) free(paths[k]);
    free(paths);
    if (st != MMD_OK) {
        free(all);
        return st;
    }
    m->spectra = all;
    return MMD_OK;
}

void mmd_measurements_free(mmd_measurements *m)
{
    if (!m) return;
    free(m->manifest);
    free(m->poses_file);
    free(m->spectra_file);
    free(m->poses);
    free(m->spectra);
    memset(m, 0, sizeof *m);
}

mmd_status mmd_measurements_read(const char *path, mmd_measurements *out)
{
    memset(out, 0, sizeof *out);
    mmd_measurements m = {0};
    struct stat sb;
    if (!path || !path[0]) return mmd_error(MMD_ERR_INVALID, "train.measurements: no measurement set given");
    if (stat(path, &sb) != 0)
        return mmd_error(MMD_ERR_IO, "%s: cannot open measurement set: %s (expected a directory with manifest.yaml, "
                         "poses.csv and spectra.npy, as `mmdiff simulate` writes with output.measurements: true)",
                         path, strerror(errno));
    m.manifest = S_ISDIR(sb.st_mode) ? mmd_path_join(path, "manifest.yaml", 0) : strdup(path);
    if (!m.manifest) return mmd_error(MMD_ERR_NOMEM, "out of memory");
    if (stat(m.manifest, &sb) != 0) {
        mmd_status st = mmd_error(MMD_ERR_IO, "%s: cannot open the measurement manifest: %s", m.manifest,
                                  strerror(errno));
        mmd_measurements_free(&m);
        return st;
    }
    if (!S_ISREG(sb.st_mode) || (size_t)sb.st_size > MMD_MANIFEST_MAX_BYTES) {
        mmd_status st = mmd_error(MMD_ERR_INVALID, "%s: not a measurement manifest (%s)", m.manifest,
                                  S_ISREG(sb.st_mode) ? "larger than 64 MiB" : "not a regular file");
        mmd_measurements_free(&m);
        return st;
    }
    mctx c = {m.manifest};
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_file(m.manifest, &root);
    if (st == MMD_OK && (!root || root->kind != MMD_YAML_MAP))
        st = mmd_error(MMD_ERR_PARSE, "%s: expected a YAML map (format, frequency_hz, poses, spectra, azimuth_deg, "
                       "elevation_deg, ...)",
                       m.manifest);
    /* the manifest's directory: relative file names resolve against it */
    char *dir = NULL;
    if (st == MMD_OK) {
        const char *slash = strrchr(m.manifest, '/');
        dir = slash ? strndup(m.manifest, slash == m.manifest ? 1 : (size_t)(slash - m.manifest)) : strdup(".");
        if (!dir) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
    }
    const mmd_ynode *n;
    if (st == MMD_OK && (n = mmd_yaml_get(root, "format"))) {
        const char *t = scalar_text(n);
        if (!t || strcmp(t, MANIFEST_FORMAT) != 0)
            st = fail_at(&c, n, "format", "'%s' is not a format this version reads; expected %s", t ? t : "(not text)",
                         MANIFEST_FORMAT);
    }
    if (st == MMD_OK) {
        n = mmd_yaml_get(root, "frequency_hz");
        if (!n) st = fail_at(&c, NULL, "frequency_hz", "missing; expected the carrier frequency in Hz");
        else if (!scalar_number(n, &m.frequency_hz) || !(m.frequency_hz > 0))
            st = fail_at(&c, n, "frequency_hz", "expected a frequency in Hz > 0, got '%s'",
                         scalar_text(n) ? scalar_text(n) : "(not a number)");
    }
    int db = 0;
    if (st == MMD_OK && (n = mmd_yaml_get(root, "units"))) {
        const char *t = scalar_text(n);
        if (t && !strcmp(t, "linear_power")) db = 0;
        else if (t && !strcmp(t, "db")) db = 1;
        else st = fail_at(&c, n, "units", "'%s' unknown; expected linear_power or db", t ? t : "(not text)");
    }
    if (st == MMD_OK) st = read_grid(&c, root, "azimuth_deg", &m.azimuth_deg);
    if (st == MMD_OK) st = read_grid(&c, root, "elevation_deg", &m.elevation_deg);
    if (st == MMD_OK) st = read_array(&c, root, &m);
    m.n_az = m.azimuth_deg.count;
    m.n_el = m.elevation_deg.count;
    if (st == MMD_OK) {
        n = mmd_yaml_get(root, "poses");
        const char *t = n ? scalar_text(n) : "poses.csv";
        if (!t || !t[0]) st = fail_at(&c, n, "poses", "expected the name of the poses CSV file");
        else if (!(m.poses_file = mmd_path_join(dir, t, 0))) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
    }
    if (st == MMD_OK) st = mmd_cfg_read_poses_csv(m.poses_file, &m.poses, &m.n_poses);
    if (st == MMD_OK && m.n_poses == 0)
        st = mmd_error(MMD_ERR_INVALID, "%s: no poses (a header and no rows); a measurement set needs at least one",
                       m.poses_file);
    const mmd_ynode *sp = st == MMD_OK ? mmd_yaml_get(root, "spectra") : NULL;
    if (st == MMD_OK && sp && sp->kind == MMD_YAML_SEQ) {
        st = read_per_pose(&c, sp, dir, &m, db);
    } else if (st == MMD_OK) {
        const char *t = sp ? scalar_text(sp) : "spectra.npy";
        if (!t || !t[0]) st = fail_at(&c, sp, "spectra", "expected an NPY file name or a list of them (one per pose)");
        else if (!(m.spectra_file = mmd_path_join(dir, t, 0))) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
        if (st == MMD_OK) st = read_stacked(&c, &m, db);
    }
    if (st == MMD_OK && (n = mmd_yaml_get(root, "shape"))) {
        long long s[3];
        if (n->kind != MMD_YAML_SEQ || n->n != 3 || !scalar_int(n->items[0], 0, 1LL << 40, &s[0]) ||
            !scalar_int(n->items[1], 0, 1LL << 40, &s[1]) || !scalar_int(n->items[2], 0, 1LL << 40, &s[2]))
            st = fail_at(&c, n, "shape", "expected [poses, elevation bins, azimuth bins]");
        else if ((size_t)s[0] != m.n_poses || s[1] != m.n_el || s[2] != m.n_az)
            st = fail_at(&c, n, "shape", "[%lld, %lld, %lld] disagrees with the data: %zu poses in %s, %d x %d bins "
                         "from elevation_deg x azimuth_deg",
                         s[0], s[1], s[2], m.n_poses, m.poses_file, m.n_el, m.n_az);
    }
    if (st == MMD_OK) {
        uint64_t h = mmd_hash64(m.poses, m.n_poses * sizeof *m.poses, MMD_FNV_SEED);
        m.hash = mmd_hash64(m.spectra, m.n_poses * (size_t)m.n_el * (size_t)m.n_az * sizeof(float), h);
    }
    free(dir);
    mmd_yaml_free(root);
    if (st != MMD_OK) {
        mmd_measurements_free(&m);
        return st;
    }
    *out = m;
    return MMD_OK;
}

static int same(double a, double b) { return fabs(a - b) <= GRID_TOL * (1.0 + fabs(b)); }

static mmd_status check_grid(const mmd_measurements *m, const char *key, const mmd_cfg_grid *g,
                             const mmd_cfg_grid *want)
{
    if (g->count == want->count && same(g->start, want->start) && same(g->stop, want->stop) &&
        same(g->step, want->step))
        return MMD_OK;
    return mmd_error(MMD_ERR_INVALID,
                     "%s: %s: the measurements use [%.10g, %.10g, %.10g] (%d bins) but the experiment's aoa.%s is "
                     "[%.10g, %.10g, %.10g] (%d bins); set aoa.%s to the measured grid",
                     m->manifest, key, g->start, g->stop, g->step, g->count, key, want->start, want->stop,
                     want->step, want->count, key);
}

mmd_status mmd_measurements_check(const mmd_measurements *m, const mmd_experiment *e)
{
    if (!same(m->frequency_hz, e->scene.frequency_hz) || fabs(m->frequency_hz - e->scene.frequency_hz) > 1.0)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: frequency_hz: the measurements were taken at %.10g Hz but the experiment's "
                         "scene.frequency_hz is %.10g Hz",
                         m->manifest, m->frequency_hz, e->scene.frequency_hz);
    mmd_status st = check_grid(m, "azimuth_deg", &m->azimuth_deg, &e->aoa.azimuth_deg);
    if (st == MMD_OK) st = check_grid(m, "elevation_deg", &m->elevation_deg, &e->aoa.elevation_deg);
    if (st != MMD_OK || !m->has_array) return st;
    const mmd_cfg_array *a = &e->rx.array;
    if (m->array_rows != a->rows || m->array_cols != a->cols)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: array: the measurements were taken with a %d x %d array but the experiment's "
                         "rx.array is %d x %d (rows x cols)",
                         m->manifest, m->array_rows, m->array_cols, a->rows, a->cols);
    if (m->array_spacing_wavelengths > 0 && !same(m->array_spacing_wavelengths, a->spacing_wavelengths))
        return mmd_error(MMD_ERR_INVALID,
                         "%s: array.spacing_wavelengths: %.10g in the measurements, %.10g in the experiment's "
                         "rx.array.spacing_wavelengths",
                         m->manifest, m->array_spacing_wavelengths, a->spacing_wavelengths);
    const char *w = mmd_cfg_enum_name("rx.array.window", a->window);
    if (m->array_window[0] && w && strcmp(m->array_window, w) != 0)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: array.window: '%s' in the measurements, '%s' in the experiment's rx.array.window",
                         m->manifest, m->array_window, w);
    const char *el = mmd_cfg_enum_name("rx.array.element", a->element);
    if (m->array_element[0] && el && strcmp(m->array_element, el) != 0)
        return mmd_error(MMD_ERR_INVALID,
                         "%s: array.element: '%s' in the measurements, '%s' in the experiment's rx.array.element",
                         m->manifest, m->array_element, el);
    return MMD_OK;
}

/* ---------------------------------------------------------------------------------------
 * Writer: the same layout `simulate` writes with output.measurements, for sets made by
 * other commands (dataset, import-nerf2).
 */

static mmd_status write_poses_csv(const char *path, const mmd_measurements *m, const char *const *names,
                                  const double *extra, int n_extra)
{
    size_t cols = 6 + (size_t)n_extra, head = 64;
    for (int c = 0; c < n_extra; c++) head += strlen(names[c]) + 1;
    char *buf = mmd_malloc(head + m->n_poses * (cols * 26 + 2), 1, "poses CSV text");
    if (!buf) return MMD_ERR_NOMEM;
    size_t len = (size_t)sprintf(buf, "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg");
    for (int c = 0; c < n_extra; c++) len += (size_t)sprintf(buf + len, ",%s", names[c]);
    buf[len++] = '\n';
    for (size_t i = 0; i < m->n_poses; i++) {
        const mmd_cfg_pose *p = &m->poses[i];
        for (size_t k = 0; k < cols; k++) {
            static const char *const base[6] = {"x_m", "y_m", "z_m", "yaw_deg", "pitch_deg", "roll_deg"};
            double v = k < 3 ? p->position_m[k] : k == 3 ? p->yaw_deg : k == 4 ? p->pitch_deg : k == 5 ? p->roll_deg
                                                                                             : extra[i * (size_t)n_extra + (k - 6)];
            if (!isfinite(v)) {
                free(buf);
                return mmd_error(MMD_ERR_INVALID, "%s: pose %zu: %s is %g; expected a finite number", path, i,
                                 k < 6 ? base[k] : names[k - 6], v);
            }
            len += (size_t)mmd_fmt_double(buf + len, v);
            buf[len++] = k + 1 < cols ? ',' : '\n';
        }
    }
    mmd_status st = mmd_write_file_atomic(path, buf, len);
    free(buf);
    return st;
}

mmd_status mmd_measurements_write(const char *dir, const mmd_measurements *m, const char *const *extra_names,
                                  const double *extra, int n_extra, const char *comment)
{
    if (!m || m->n_poses == 0 || !m->poses || !m->spectra || m->n_el < 1 || m->n_az < 1 || n_extra < 0 ||
        (n_extra > 0 && (!extra || !extra_names)))
        return mmd_error(MMD_ERR_INVALID, "%s: measurement set to write is empty or incomplete", dir);
    if (m->azimuth_deg.count != m->n_az || m->elevation_deg.count != m->n_el)
        return mmd_error(MMD_ERR_INVALID, "%s: grids of %d x %d bins do not describe spectra of %d x %d", dir,
                         m->elevation_deg.count, m->azimuth_deg.count, m->n_el, m->n_az);
    size_t per = (size_t)m->n_el * (size_t)m->n_az;
    for (size_t i = 0; i < m->n_poses * per; i++)
        if (!isfinite(m->spectra[i]) || m->spectra[i] < 0)
            return mmd_error(MMD_ERR_INVALID, "%s: pose %zu, bin [elevation %zu, azimuth %zu]: power %g; expected a "
                             "finite linear power >= 0",
                             dir, i / per, (i % per) / (size_t)m->n_az, i % (size_t)m->n_az, (double)m->spectra[i]);
    mmd_status st = mmd_mkdirs(dir);
    if (st != MMD_OK) return st;
    char *man = mmd_path_join(dir, "manifest.yaml", 0), *poses = mmd_path_join(dir, "poses.csv", 0),
         *spec = mmd_path_join(dir, "spectra.npy", 0);
    char *text = NULL;
    if (!man || !poses || !spec) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
    /* a stale manifest would describe the new files as the old set until the end */
    if (st == MMD_OK && remove(man) != 0 && errno != ENOENT)
        st = mmd_error(MMD_ERR_IO, "%s: cannot remove the old manifest: %s", man, strerror(errno));
    if (st == MMD_OK) st = write_poses_csv(poses, m, extra_names, extra, n_extra);
    if (st == MMD_OK) {
        size_t shape[3] = {m->n_poses, (size_t)m->n_el, (size_t)m->n_az};
        st = mmd_npy_write(spec, MMD_DT_F32, shape, 3, m->spectra);
    }
    size_t cap = 4096 + (comment ? 2 * strlen(comment) + 8 : 0);
    if (st == MMD_OK && !(text = mmd_malloc(cap, 1, "manifest text"))) st = MMD_ERR_NOMEM;
    if (st == MMD_OK) {
        size_t len = 0;
        for (const char *c = comment; c && *c;) {
            size_t l = strcspn(c, "\n");
            len += (size_t)snprintf(text + len, cap - len, "# %.*s\n", (int)l, c);
            c += l + (c[l] == '\n');
        }
        const mmd_cfg_grid *az = &m->azimuth_deg, *el = &m->elevation_deg;
        len += (size_t)snprintf(text + len, cap - len,
                                "format: " MANIFEST_FORMAT "\n"
                                "frequency_hz: %.17g\n"
                                "poses: poses.csv\n"
                                "spectra: spectra.npy\n"
                                "shape: [%zu, %d, %d]  # [pose, elevation, azimuth]\n"
                                "units: linear_power\n"
                                "azimuth_deg: [%.17g, %.17g, %.17g]  # [start, stop, step], array frame\n"
                                "elevation_deg: [%.17g, %.17g, %.17g]\n",
                                m->frequency_hz, m->n_poses, m->n_el, m->n_az, az->start, az->stop, az->step,
                                el->start, el->stop, el->step);
        if (m->has_array) {
            len += (size_t)snprintf(text + len, cap - len, "array: {rows: %d, cols: %d", m->array_rows,
                                    m->array_cols);
            if (m->array_spacing_wavelengths > 0)
                len += (size_t)snprintf(text + len, cap - len, ", spacing_wavelengths: %.17g",
                                        m->array_spacing_wavelengths);
            if (m->array_window[0]) len += (size_t)snprintf(text + len, cap - len, ", window: %s", m->array_window);
            if (m->array_element[0])
                len += (size_t)snprintf(text + len, cap - len, ", element: %s", m->array_element);
            len += (size_t)snprintf(text + len, cap - len, "}\n");
        }
        if (len >= cap) st = mmd_error(MMD_ERR_INTERNAL, "%s: manifest text too long", man);
        else st = mmd_write_file_atomic(man, text, len);
    }
    free(text);
    free(man);
    free(poses);
    free(spec);
    return st;
}
