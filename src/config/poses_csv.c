/* Pose CSV reader for rx.poses_csv and measurement sets (SPEC 6:
 * x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg). Columns are found by header name, so extra
 * columns and other orders are fine; errors name FILE:LINE and the column. */
#include "mmd_config.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_COLS 6
static const char *const k_cols[N_COLS] = {"x_m", "y_m", "z_m", "yaw_deg", "pitch_deg",
                                           "roll_deg"};

/* Split one line in place on commas, trimming spaces (and a CR); returns the field count. */
static size_t split(char *line, char **fields, size_t cap)
{
    size_t n = 0;
    char *s = line;
    for (;;) {
        char *e = strchr(s, ',');
        if (e) *e = 0;
        while (isspace((unsigned char)*s)) s++;
        size_t len = strlen(s);
        while (len && isspace((unsigned char)s[len - 1])) s[--len] = 0;
        if (n < cap) fields[n] = s;
        n++;
        if (!e) break;
        s = e + 1;
    }
    return n;
}

static int blank_or_comment(const char *s)
{
    while (isspace((unsigned char)*s)) s++;
    return !*s || *s == '#';
}

mmd_status mmd_cfg_read_poses_csv(const char *path, mmd_cfg_pose **poses, size_t *n_poses)
{
    *poses = NULL;
    *n_poses = 0;
    char *data;
    mmd_status st = mmd_read_file(path, &data, NULL);
    if (st) return st;

    enum { MAX_FIELDS = 256 };
    char *fields[MAX_FIELDS];
    int col[N_COLS];
    for (int k = 0; k < N_COLS; k++) col[k] = -1;
    size_t n_header = 0, cap = 0, n = 0;
    int have_header = 0;
    mmd_cfg_pose *out = NULL;
    int line_no = 0;
    /* Lines are split by hand (not strtok) so that line numbers count empty lines too. */
    char *line = data;
    while (line && !st) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        line_no++;
        if (blank_or_comment(line)) {
            line = nl ? nl + 1 : NULL;
            continue;
        }
        size_t nf = split(line, fields, MAX_FIELDS);
        if (nf > MAX_FIELDS) {
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: more than %d columns", path, line_no, MAX_FIELDS);
            break;
        }
        if (!have_header) {
            have_header = 1;
            n_header = nf;
            for (size_t i = 0; i < nf; i++)
                for (int k = 0; k < N_COLS; k++)
                    if (!strcmp(fields[i], k_cols[k])) {
                        if (col[k] >= 0) {
                            st = mmd_error(MMD_ERR_PARSE, "%s:%d: column '%s' appears twice", path,
                                           line_no, k_cols[k]);
                            break;
                        }
                        col[k] = (int)i;
                    }
            for (int k = 0; k < 3 && !st; k++)
                if (col[k] < 0)
                    st = mmd_error(MMD_ERR_PARSE,
                                   "%s:%d: missing column '%s' (the header needs x_m, y_m, z_m; "
                                   "yaw_deg, pitch_deg, roll_deg are optional)",
                                   path, line_no, k_cols[k]);
            line = nl ? nl + 1 : NULL;
            continue;
        }
        if (nf != n_header) {
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: expected %zu fields like the header, got %zu",
                           path, line_no, n_header, nf);
            break;
        }
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            mmd_cfg_pose *np = mmd_realloc(out, nc, sizeof *np, "poses");
            if (!np) { st = MMD_ERR_NOMEM; break; }
            out = np;
            cap = nc;
        }
        double v[N_COLS] = {0, 0, 0, 0, 0, 0};
        for (int k = 0; k < N_COLS && !st; k++) {
            if (col[k] < 0) continue;
            const char *t = fields[col[k]];
            char *end;
            double x = strtod(t, &end);
            if (!*t || *end || !isfinite(x) || (k >= 3 && fabs(x) > 360))
                st = mmd_error(MMD_ERR_INVALID,
                               "%s:%d: column '%s': expected a finite number%s, got '%s'", path,
                               line_no, k_cols[k], k >= 3 ? " in [-360, 360] deg" : " in m", t);
            v[k] = x;
        }
        if (st) break;
        mmd_cfg_pose *p = &out[n++];
        for (int k = 0; k < 3; k++) p->position_m[k] = v[k];
        p->yaw_deg = v[3];
        p->pitch_deg = v[4];
        p->roll_deg = v[5];
        line = nl ? nl + 1 : NULL;
    }
    free(data);
    if (!st && !have_header) st = mmd_error(MMD_ERR_PARSE, "%s: empty pose file (no header)", path);
    if (!st && n == 0) st = mmd_error(MMD_ERR_PARSE, "%s: no poses after the header", path);
    if (st) {
        free(out);
        return st;
    }
    *poses = out;
    *n_poses = n;
    return MMD_OK;
}
