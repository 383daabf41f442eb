/* CSV pose lists (see mmd_io.h). */
#include "mmd_io.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const pose_cols[6] = {"x_m", "y_m", "z_m", "yaw_deg", "pitch_deg", "roll_deg"};

/* Split one line (already stripped of comment and line end) into fields in place.
 * Returns the number of fields; `fields` grows as needed. */
static mmd_status split_fields(char *line, char ***fields, size_t *cap, size_t *nfields)
{
    size_t n = 0;
    char *p = line;
    for (;;) {
        if (n == *cap) {
            size_t nc = *cap ? *cap * 2 : 16;
            char **nf = mmd_realloc(*fields, nc, sizeof(char *), "CSV fields");
            if (!nf) return MMD_ERR_NOMEM;
            *fields = nf;
            *cap = nc;
        }
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        /* trim spaces, then one pair of surrounding double quotes */
        while (*p == ' ' || *p == '\t') p++;
        char *e = p + strlen(p);
        while (e > p && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
        if (e - p >= 2 && p[0] == '"' && e[-1] == '"') {
            e[-1] = 0;
            p++;
        }
        (*fields)[n++] = p;
        if (!comma) break;
        p = comma + 1;
    }
    *nfields = n;
    return MMD_OK;
}

static int is_blank(const char *s)
{
    while (*s == ' ' || *s == '\t') s++;
    return *s == 0;
}

mmd_status mmd_poses_csv_read(const char *path, mmd_pose_row **poses, size_t *count)
{
    *poses = NULL;
    *count = 0;
    char *text = NULL;
    size_t size = 0;
    mmd_status st = mmd_read_file(path, &text, &size);
    if (st) return st;
    if (memchr(text, 0, size)) {
        free(text);
        return mmd_error(MMD_ERR_PARSE, "%s: contains a NUL byte; expected a text CSV file", path);
    }
    char **fields = NULL;
    size_t fcap = 0, nf = 0, ncols = 0, n = 0, cap = 0;
    int col_index[6] = {-1, -1, -1, -1, -1, -1};
    int header_line = 0;
    mmd_pose_row *out = NULL;

    char *p = text;
    if ((unsigned char)p[0] == 0xef && (unsigned char)p[1] == 0xbb && (unsigned char)p[2] == 0xbf)
        p += 3; /* UTF-8 byte-order mark from spreadsheet exports */
    for (int lineno = 1; *p; lineno++) {
        char *line = p;
        char *nl = strchr(p, '\n');
        if (nl) {
            *nl = 0;
            p = nl + 1;
        } else {
            p += strlen(p);
        }
        size_t len = strlen(line);
        if (len && line[len - 1] == '\r') line[--len] = 0;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        if (is_blank(line)) continue;
        if ((st = split_fields(line, &fields, &fcap, &nf))) goto fail;

        if (!header_line) {
            header_line = lineno;
            ncols = nf;
            for (size_t c = 0; c < nf; c++)
                for (int k = 0; k < 6; k++)
                    if (!strcmp(fields[c], pose_cols[k])) {
                        if (col_index[k] >= 0) {
                            st = mmd_error(MMD_ERR_PARSE,
                                           "%s:%d: column '%s' appears twice in the header",
                                           path, lineno, pose_cols[k]);
                            goto fail;
                        }
                        col_index[k] = (int)c;
                    }
            /* orientation columns are optional (0 deg): a list of positions is enough */
            for (int k = 0; k < 3; k++)
                if (col_index[k] < 0) {
                    int numeric = nf > 0 && (isdigit((unsigned char)fields[0][0]) ||
                                             fields[0][0] == '-' || fields[0][0] == '.');
                    st = mmd_error(MMD_ERR_PARSE,
                                   "%s:%d: missing column '%s' in the header%s (expected the "
                                   "columns x_m,y_m,z_m and optionally yaw_deg,pitch_deg,roll_deg, "
                                   "in any order)",
                                   path, lineno, pose_cols[k],
                                   numeric ? " (the first line looks like data: a header line "
                                             "is required)"
                                           : "");
                    goto fail;
                }
            continue;
        }
        if (nf != ncols) {
            st = mmd_error(MMD_ERR_PARSE, "%s:%d: expected %zu fields (as in the header on line %d), got %zu",
                           path, lineno, ncols, header_line, nf);
            goto fail;
        }
        double v[6];
        for (int k = 0; k < 6; k++) {
            if (col_index[k] < 0) {
                v[k] = 0.0;
                continue;
            }
            const char *f = fields[col_index[k]];
            char *endp = NULL;
            errno = 0;
            double d = strtod(f, &endp);
            if (!*f || endp == f || *endp) {
                st = mmd_error(MMD_ERR_PARSE,
                               "%s:%d: field '%s' (column %d): \"%.40s\" is not a number",
                               path, lineno, pose_cols[k], col_index[k] + 1, f);
                goto fail;
            }
            if (!isfinite(d)) {
                st = mmd_error(MMD_ERR_INVALID,
                               "%s:%d: field '%s' (column %d): \"%.40s\" is not a finite number",
                               path, lineno, pose_cols[k], col_index[k] + 1, f);
                goto fail;
            }
            v[k] = d;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            mmd_pose_row *no = mmd_realloc(out, nc, sizeof *out, "poses");
            if (!no) {
                st = MMD_ERR_NOMEM;
                goto fail;
            }
            out = no;
            cap = nc;
        }
        out[n++] = (mmd_pose_row){v[0], v[1], v[2], v[3], v[4], v[5]};
    }
    if (!header_line) {
        st = mmd_error(MMD_ERR_PARSE,
                       "%s: no header line; expected x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg",
                       path);
        goto fail;
    }
    free(fields);
    free(text);
    *poses = out;
    *count = n;
    return MMD_OK;

fail:
    free(fields);
    free(text);
    free(out);
    return st;
}

mmd_status mmd_poses_csv_write(const char *path, const mmd_pose_row *poses, size_t count)
{
    /* 6 numbers of at most 24 characters and their separators per row */
    size_t cap = 64 + count * (6 * 26 + 2);
    char *buf = mmd_malloc(cap, 1, "CSV text");
    if (!buf) return MMD_ERR_NOMEM;
    size_t len = (size_t)snprintf(buf, cap, "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n");
    for (size_t i = 0; i < count; i++) {
        const double v[6] = {poses[i].x_m,     poses[i].y_m,       poses[i].z_m,
                             poses[i].yaw_deg, poses[i].pitch_deg, poses[i].roll_deg};
        for (int k = 0; k < 6; k++) {
            if (!isfinite(v[k])) {
                free(buf);
                return mmd_error(MMD_ERR_INVALID, "%s: pose %zu has a non-finite %s", path, i,
                                 pose_cols[k]);
            }
            char num[32];
            int m = mmd_fmt_double(num, v[k]);
            memcpy(buf + len, num, (size_t)m);
            len += (size_t)m;
            buf[len++] = k < 5 ? ',' : '\n';
        }
    }
    mmd_status st = mmd_write_file_atomic(path, buf, len);
    free(buf);
    return st;
}
