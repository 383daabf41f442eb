/* NeRF² RFID spatial spectra -> mmdiff measurement sets (mmd_eval.h). Conventions (from
 * shared/measurements/README.md, checked there against a Bartlett fit of all 200 images):
 * pixel (row r, column c) is elevation r deg (0..89) and azimuth c deg (0..359) in the
 * gateway's local frame, direction (cos el cos az, cos el sin az, sin el) with the array
 * broadside at el = 90; p / 255 is a min-max normalised Bartlett amplitude, so (p/255)^2
 * is the power-like value stored. The carrier is 920 MHz. */
#include "mmd_eval.h"
#include "mmd_physics.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* stb headers are third-party: keep their warnings out of our -Wall -Wextra build. The
 * static build declares functions it never defines (GIF, thread options); GCC reports
 * those at the end of the file, after any pop, so that one stays off for this file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wtype-limits"
/* static: no other module sees (or clashes with) this copy; PNG is all NeRF² uses */
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#define STBI_NO_STDIO
#include <stb_image.h>
#pragma GCC diagnostic pop

#define DEG (M_PI / 180.0)
/* PNGs of 360 x 90 8-bit pixels are 6-9 kB; anything this large is not one */
#define PNG_MAX_BYTES ((size_t)16 << 20)

/* stb_image allocates what a chunk header claims before reading the chunk (a 67-byte file
 * whose IDAT claims 1.3 GB gets a 1.3 GB buffer), so check that every chunk, up to IEND,
 * lies inside the file first. 0 when they do; else a message in why. */
static int png_check_chunks(const unsigned char *p, size_t size, char *why, size_t cap)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size < 8 || memcmp(p, sig, 8) != 0) {
        snprintf(why, cap, "no PNG signature");
        return -1;
    }
    for (size_t at = 8;;) {
        if (size - at < 12) {
            snprintf(why, cap, "file ends at byte %zu inside a chunk header: truncated", at);
            return -1;
        }
        uint32_t len = (uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 | (uint32_t)p[at + 2] << 8 | p[at + 3];
        char type[5];
        for (int i = 0; i < 4; i++) type[i] = isalpha(p[at + 4 + (size_t)i]) ? (char)p[at + 4 + (size_t)i] : '?';
        type[4] = 0;
        if (len > size - at - 12) {
            snprintf(why, cap, "chunk '%s' at byte %zu claims %u bytes, only %zu follow: truncated or corrupt", type, at,
                     len, size - at - 12);
            return -1;
        }
        if (!memcmp(type, "IEND", 4)) return 0;
        at += 12 + (size_t)len;
    }
}

mmd_status mmd_nerf2_read_png(const char *path, float *out)
{
    char *data = NULL;
    size_t size = 0;
    struct stat sb;
    if (stat(path, &sb) != 0) return mmd_error(MMD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if ((size_t)sb.st_size > PNG_MAX_BYTES)
        return mmd_error(MMD_ERR_INVALID, "%s: %lld bytes; not a 360 x 90 spectrum PNG", path, (long long)sb.st_size);
    mmd_status st = mmd_read_file(path, &data, &size);
    if (st != MMD_OK) return st;
    int w = 0, h = 0, comp = 0;
    char why[160];
    if (png_check_chunks((const unsigned char *)data, size, why, sizeof why) != 0) {
        free(data);
        return mmd_error(MMD_ERR_PARSE, "%s: not a readable PNG (%s)", path, why);
    }
    if (size > (size_t)0x7fffffff || !stbi_info_from_memory((const unsigned char *)data, (int)size, &w, &h, &comp)) {
        free(data);
        return mmd_error(MMD_ERR_PARSE, "%s: not a readable PNG (%s)", path, stbi_failure_reason());
    }
    if (w != MMD_NERF2_WIDTH || h != MMD_NERF2_HEIGHT) {
        free(data);
        return mmd_error(MMD_ERR_INVALID, "%s: image is %d x %d pixels; expected %d x %d (azimuth 0..359 deg across, "
                         "elevation 0..89 deg down)",
                         path, w, h, MMD_NERF2_WIDTH, MMD_NERF2_HEIGHT);
    }
    int is16 = stbi_is_16_bit_from_memory((const unsigned char *)data, (int)size);
    if (comp != 1 || is16) {
        free(data);
        return mmd_error(MMD_ERR_INVALID, "%s: %d channel%s%s; expected one 8-bit greyscale channel (NeRF² spectra)",
                         path, comp, comp == 1 ? "" : "s", is16 ? " of 16 bits" : "");
    }
    unsigned char *px = stbi_load_from_memory((const unsigned char *)data, (int)size, &w, &h, &comp, 1);
    free(data);
    if (!px) return mmd_error(MMD_ERR_PARSE, "%s: cannot decode the PNG (%s)", path, stbi_failure_reason());
    for (int i = 0; i < MMD_NERF2_WIDTH * MMD_NERF2_HEIGHT; i++) {
        double a = px[i] / 255.0;
        out[i] = (float)(a * a); /* amplitude -> power (up to NeRF²'s min-max scaling) */
    }
    stbi_image_free(px);
    return MMD_OK;
}

void mmd_nerf2_pose_from_quat(const double q[4], const double position[3], mmd_cfg_pose *pose)
{
    double n = sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3]);
    double x = q[0] / n, y = q[1] / n, z = q[2] / n, w = q[3] / n;
    /* SciPy Rotation.from_quat([x, y, z, w]).as_matrix(): local -> world */
    double R00 = 1 - 2 * (y * y + z * z), R01 = 2 * (x * y - z * w);
    double R10 = 2 * (x * y + z * w), R11 = 1 - 2 * (x * x + z * z);
    double R20 = 2 * (x * z - y * w), R21 = 2 * (y * z + x * w), R22 = 1 - 2 * (x * x + y * y);
    /* R = Rz(yaw) Ry(pitch) Rx(roll) (mmd_rotation_ypr): R20 = -sin(pitch) */
    double sp = -R20;
    sp = sp > 1 ? 1 : sp < -1 ? -1 : sp;
    double pitch = asin(sp), yaw, roll;
    if (fabs(sp) < 1 - 1e-12) {
        yaw = atan2(R10, R00);
        roll = atan2(R21, R22);
    } else { /* gimbal lock: put the whole turn about z into roll */
        yaw = 0;
        roll = atan2(sp * R01, R11);
    }
    memset(pose, 0, sizeof *pose);
    memcpy(pose->position_m, position, 3 * sizeof(double));
    /* + 0.0: no "-0" in files */
    pose->yaw_deg = yaw / DEG + 0.0;
    pose->pitch_deg = pitch / DEG + 0.0;
    pose->roll_deg = roll / DEG + 0.0;
}

/* ---------------------------------------------------------------------------------------
 * Text files
 */

static int yaml_numbers(const mmd_ynode *n, double *v, size_t count)
{
    if (!n || n->kind != MMD_YAML_SEQ || n->n != count) return 0;
    for (size_t k = 0; k < count; k++) {
        const mmd_ynode *it = n->items[k];
        if (it->kind != MMD_YAML_SCALAR || it->quoted || !it->text) return 0;
        char *end = NULL;
        errno = 0;
        v[k] = strtod(it->text, &end);
        if (end == it->text || *end || errno || !isfinite(v[k])) return 0;
    }
    return 1;
}

static mmd_status read_gateway(const char *path, double pos[3], double quat[4])
{
    mmd_ynode *root = NULL;
    mmd_status st = mmd_yaml_load_file(path, &root);
    if (st != MMD_OK) return st;
    const mmd_ynode *g = mmd_yaml_get(root, "gateway1");
    char where[1200];
    if (!g || g->kind != MMD_YAML_MAP)
        st = mmd_error(MMD_ERR_INVALID, "%s: gateway1: missing; expected a map {position: [x, y, z], orientation: "
                       "[x, y, z, w]}",
                       path);
    const mmd_ynode *n = st == MMD_OK ? mmd_yaml_get(g, "position") : NULL;
    if (st == MMD_OK && !yaml_numbers(n, pos, 3))
        st = mmd_error(MMD_ERR_INVALID, "%s: gateway1.position: expected [x, y, z] (three finite numbers, metres)",
                       n ? mmd_yaml_where(n, where, sizeof where) : path);
    n = st == MMD_OK ? mmd_yaml_get(g, "orientation") : NULL;
    if (st == MMD_OK && !yaml_numbers(n, quat, 4))
        st = mmd_error(MMD_ERR_INVALID, "%s: gateway1.orientation: expected a quaternion [x, y, z, w] (scalar last, "
                       "four finite numbers)",
                       n ? mmd_yaml_where(n, where, sizeof where) : path);
    if (st == MMD_OK) {
        double nn = sqrt(quat[0] * quat[0] + quat[1] * quat[1] + quat[2] * quat[2] + quat[3] * quat[3]);
        if (fabs(nn - 1) > 1e-3)
            st = mmd_error(MMD_ERR_INVALID, "%s: gateway1.orientation: norm %g; expected a unit quaternion",
                           mmd_yaml_where(n, where, sizeof where), nn);
    }
    mmd_yaml_free(root);
    return st;
}

/* Next line of a text buffer without its CR/LF; NULL at the end. */
static char *next_line(char **cur)
{
    char *s = *cur;
    if (!s || !*s) return NULL;
    char *e = s + strcspn(s, "\n");
    *cur = *e ? e + 1 : e;
    *e = 0;
    if (e > s && e[-1] == '\r') e[-1] = 0;
    return s;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* tx_pos.csv: header naming x, y, z (any order), then one row per spectrum. */
static mmd_status read_tx(const char *path, double **xyz, size_t *n_rows)
{
    *xyz = NULL;
    *n_rows = 0;
    char *text = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &text, &size);
    if (st != MMD_OK) return st;
    char *cur = text, *line;
    int col[3] = {-1, -1, -1}, n_cols = 0, line_no = 0;
    while ((line = next_line(&cur)) && !trim(line)[0]) line_no++;
    line_no++;
    if (!line) st = mmd_error(MMD_ERR_PARSE, "%s: empty; expected a header x,y,z and one row per spectrum", path);
    for (char *f = line, *tok; st == MMD_OK && f; n_cols++) {
        tok = f;
        f = strchr(f, ',');
        if (f) *f++ = 0;
        tok = trim(tok);
        if (!strcmp(tok, "\xef\xbb\xbfx") || !strcmp(tok, "x")) col[0] = n_cols;
        else if (!strcmp(tok, "y")) col[1] = n_cols;
        else if (!strcmp(tok, "z")) col[2] = n_cols;
    }
    for (int k = 0; st == MMD_OK && k < 3; k++)
        if (col[k] < 0)
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: missing column '%c'; expected a header x,y,z", path, line_no,
                           "xyz"[k]);
    /* at most one row per line of the file: bounds the allocation by the file size */
    size_t cap = 1;
    for (size_t i = 0; i < size; i++) cap += text[i] == '\n';
    double *v = st == MMD_OK ? mmd_malloc(cap, 3 * sizeof(double), "tag positions") : NULL;
    if (st == MMD_OK && !v) st = MMD_ERR_NOMEM;
    size_t n = 0;
    while (st == MMD_OK && (line = next_line(&cur))) {
        line_no++;
        if (!trim(line)[0]) continue;
        double row[3] = {NAN, NAN, NAN};
        int c = 0;
        for (char *f = line, *tok; f; c++) {
            tok = f;
            f = strchr(f, ',');
            if (f) *f++ = 0;
            for (int k = 0; k < 3; k++)
                if (col[k] == c) {
                    tok = trim(tok);
                    char *end = NULL;
                    errno = 0;
                    row[k] = strtod(tok, &end);
                    if (!tok[0] || *end || errno || !isfinite(row[k])) {
                        st = mmd_error(MMD_ERR_PARSE, "%s:%d: column '%c': expected a finite number, got '%s'", path,
                                       line_no, "xyz"[k], tok);
                        f = NULL;
                        break;
                    }
                }
        }
        for (int k = 0; st == MMD_OK && k < 3; k++)
            if (col[k] >= c)
                st = mmd_error(MMD_ERR_PARSE, "%s:%d: missing column '%c' (the row has %d fields)", path, line_no,
                               "xyz"[k], c);
        if (st == MMD_OK) memcpy(v + 3 * n++, row, sizeof row);
    }
    free(text);
    if (st != MMD_OK) {
        free(v);
        return st;
    }
    *xyz = v;
    *n_rows = n;
    return MMD_OK;
}

/* An index file: one spectrum number per line (5 digits in NeRF², any positive integer here). */
static mmd_status read_index(const char *path, int **stems, size_t *n)
{
    *stems = NULL;
    *n = 0;
    char *text = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &text, &size);
    if (st != MMD_OK) return st;
    size_t cap = 1;
    for (size_t i = 0; i < size; i++) cap += text[i] == '\n';
    int *s = mmd_malloc(cap, sizeof *s, "spectrum index");
    if (!s) {
        free(text);
        return MMD_ERR_NOMEM;
    }
    char *cur = text, *line;
    int line_no = 0;
    size_t k = 0;
    while (st == MMD_OK && (line = next_line(&cur))) {
        line_no++;
        char *t = trim(line);
        if (!t[0]) continue;
        char *end = NULL;
        long v = isdigit((unsigned char)t[0]) ? strtol(t, &end, 10) : 0;
        if (!end || *end || v < 1 || v > 99999999)
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: '%s'; expected a spectrum number such as 00001", path, line_no, t);
        else s[k++] = (int)v;
    }
    free(text);
    if (st != MMD_OK) {
        free(s);
        return st;
    }
    *stems = s;
    *n = k;
    return MMD_OK;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---------------------------------------------------------------------------------------
 * The set
 */

void mmd_nerf2_free(mmd_nerf2_set *s)
{
    if (!s) return;
    mmd_measurements_free(&s->m);
    free(s->tx_m);
    free(s->stems);
    memset(s, 0, sizeof *s);
}

mmd_status mmd_nerf2_read(const char *dir, const char *split, mmd_nerf2_set *out)
{
    memset(out, 0, sizeof *out);
    if (!split) split = "all";
    if (strcmp(split, "train") && strcmp(split, "test") && strcmp(split, "all"))
        return mmd_error(MMD_ERR_INVALID, "--split %s: expected train, test or all", split);
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mmd_error(MMD_ERR_IO, "%s: not a directory (expected NeRF²'s layout: spectrum/NNNNN.png, tx_pos.csv, "
                         "gateway_info.yml, train_index.txt, test_index.txt)",
                         dir ? dir : "(null)");
    mmd_nerf2_set s;
    memset(&s, 0, sizeof s);
    char *gw = mmd_path_join(dir, "gateway_info.yml", 0), *tx = mmd_path_join(dir, "tx_pos.csv", 0);
    char *tr = mmd_path_join(dir, "train_index.txt", 0), *te = mmd_path_join(dir, "test_index.txt", 0);
    mmd_status st = gw && tx && tr && te ? MMD_OK : mmd_error(MMD_ERR_NOMEM, "out of memory");
    double pos[3] = {0}, *txyz = NULL;
    size_t n_rows = 0;
    if (st == MMD_OK) st = read_gateway(gw, pos, s.quat_xyzw);
    if (st == MMD_OK) st = read_tx(tx, &txyz, &n_rows);
    if (st == MMD_OK && n_rows == 0) st = mmd_error(MMD_ERR_INVALID, "%s: no rows; expected one tag position per spectrum", tx);
    /* which spectra: the split's index file(s), or every row */
    int *stems = NULL;
    size_t n = 0;
    if (st == MMD_OK) {
        int want_tr = strcmp(split, "test") != 0, want_te = strcmp(split, "train") != 0;
        int have_tr = file_exists(tr), have_te = file_exists(te);
        if (!strcmp(split, "all") && !have_tr && !have_te) {
            stems = mmd_malloc(n_rows, sizeof *stems, "spectrum list");
            if (!stems) st = MMD_ERR_NOMEM;
            for (size_t k = 0; stems && k < n_rows; k++) stems[k] = (int)k + 1;
            n = n_rows;
        } else {
            int *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            if (want_tr && (have_tr || strcmp(split, "all"))) st = read_index(tr, &a, &na);
            if (st == MMD_OK && want_te && (have_te || strcmp(split, "all"))) st = read_index(te, &b, &nb);
            if (st == MMD_OK && !(stems = mmd_malloc(na + nb + 1, sizeof *stems, "spectrum list"))) st = MMD_ERR_NOMEM;
            if (st == MMD_OK) {
                if (na) memcpy(stems, a, na * sizeof *a);
                if (nb) memcpy(stems + na, b, nb * sizeof *b);
                n = na + nb;
                qsort(stems, n, sizeof *stems, cmp_int);
                for (size_t k = 1; k < n; k++)
                    if (stems[k] == stems[k - 1]) {
                        st = mmd_error(MMD_ERR_INVALID, "%s, %s: spectrum %05d is listed twice (the splits must be "
                                       "disjoint)",
                                       tr, te, stems[k]);
                        break;
                    }
                if (st == MMD_OK && n == 0)
                    st = mmd_error(MMD_ERR_INVALID, "%s: the %s split lists no spectra", !strcmp(split, "test") ? te : tr,
                                   split);
            }
            free(a);
            free(b);
        }
    }
    for (size_t k = 0; st == MMD_OK && k < n; k++)
        if ((size_t)stems[k] > n_rows)
            st = mmd_error(MMD_ERR_INVALID, "%s: has %zu tag positions, but spectrum %05d needs row %d (missing pose row)",
                           tx, n_rows, stems[k], stems[k]);
    size_t per = (size_t)MMD_NERF2_WIDTH * MMD_NERF2_HEIGHT;
    if (st == MMD_OK) {
        s.m.poses = mmd_calloc(n, sizeof *s.m.poses, "NeRF² poses");
        s.m.spectra = mmd_malloc(n * per, sizeof(float), "NeRF² spectra");
        s.tx_m = mmd_malloc(n, 3 * sizeof(double), "tag positions");
        if (!s.m.poses || !s.m.spectra || !s.tx_m) st = MMD_ERR_NOMEM;
    }
    mmd_cfg_pose gwpose;
    mmd_nerf2_pose_from_quat(s.quat_xyzw, pos, &gwpose);
    for (size_t k = 0; st == MMD_OK && k < n; k++) {
        char rel[64];
        snprintf(rel, sizeof rel, "spectrum/%05d.png", stems[k]);
        char *png = mmd_path_join(dir, rel, 0);
        if (!png) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
        else st = mmd_nerf2_read_png(png, s.m.spectra + k * per);
        free(png);
        s.m.poses[k] = gwpose;
        memcpy(s.tx_m + 3 * k, txyz + 3 * (size_t)(stems[k] - 1), 3 * sizeof(double));
    }
    if (st == MMD_OK) {
        s.stems = stems;
        stems = NULL;
        s.m.n_poses = n;
        s.m.n_el = MMD_NERF2_HEIGHT;
        s.m.n_az = MMD_NERF2_WIDTH;
        s.m.frequency_hz = MMD_NERF2_FREQUENCY_HZ;
        s.m.azimuth_deg = (mmd_cfg_grid){0, MMD_NERF2_WIDTH - 1, 1, MMD_NERF2_WIDTH};
        s.m.elevation_deg = (mmd_cfg_grid){0, MMD_NERF2_HEIGHT - 1, 1, MMD_NERF2_HEIGHT};
        char *abs = realpath(dir, NULL);
        s.m.manifest = abs ? abs : strdup(dir);
        s.m.poses_file = strdup(tx);
        if (!s.m.manifest || !s.m.poses_file) st = mmd_error(MMD_ERR_NOMEM, "out of memory");
        uint64_t h = mmd_hash64(s.m.poses, n * sizeof *s.m.poses, MMD_FNV_SEED);
        s.m.hash = mmd_hash64(s.m.spectra, n * per * sizeof(float), h);
    }
    free(stems);
    free(txyz);
    free(gw);
    free(tx);
    free(tr);
    free(te);
    if (st != MMD_OK) {
        mmd_nerf2_free(&s);
        return st;
    }
    *out = s;
    return MMD_OK;
}

mmd_status mmd_nerf2_write(const mmd_nerf2_set *s, const char *dir)
{
    static const char *const names[4] = {"tx_x_m", "tx_y_m", "tx_z_m", "sample"};
    double *extra = mmd_malloc(s->m.n_poses ? s->m.n_poses : 1, 4 * sizeof(double), "pose columns");
    if (!extra) return MMD_ERR_NOMEM;
    for (size_t k = 0; k < s->m.n_poses; k++) {
        memcpy(extra + 4 * k, s->tx_m + 3 * k, 3 * sizeof(double));
        extra[4 * k + 3] = s->stems[k];
    }
    char comment[2048];
    snprintf(comment, sizeof comment,
             "NeRF² RFID spatial spectra imported by mmdiff import-nerf2 (docs/evaluation.md) from\n"
             "%s\n"
             "receiver = the gateway (one pose, repeated); tx_x_m, tx_y_m, tx_z_m = the tag of each sample;\n"
             "sample = the source file spectrum/NNNNN.png.\n"
             "Grid: pixel (row r, column c) = elevation r deg, azimuth c deg in the gateway frame of the\n"
             "pose (direction (cos el cos az, cos el sin az, sin el); broadside = local +z = elevation 90).\n"
             "Values: (p / 255)^2 of the 8-bit pixel p: NeRF² stores a min-max normalised Bartlett amplitude,\n"
             "so these are powers up to an unknown per-sample offset and scale. Gateway quaternion\n"
             "[x, y, z, w] = [%.9g, %.9g, %.9g, %.9g].",
             s->m.manifest ? s->m.manifest : "?", s->quat_xyzw[0], s->quat_xyzw[1], s->quat_xyzw[2],
             s->quat_xyzw[3]);
    mmd_status st = mmd_measurements_write(dir, &s->m, names, extra, 4, comment);
    free(extra);
    return st;
}
