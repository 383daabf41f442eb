/*
 * mmd_io.h - result and measurement files: NPY arrays, a JSON writer and CSV pose lists.
 * Every file is written atomically (temp file + rename), so a crash or a full disk never
 * leaves a half-written result behind; every read error names the file and what was
 * expected. Formats are described in docs/outputs.md.
 *
 * NPY (NumPy's .npy, C order; read: float32/float64 little/big-endian -> float):
 *     size_t shape[2] = {91, 181};
 *     mmd_npy_write("spectrum.npy", MMD_DT_F32, shape, 2, spec);
 *     mmd_array a;
 *     if (mmd_npy_read_f32("measured.npy", &a) != MMD_OK) { ...mmd_last_error()... }
 *     ... a.data[i * a.shape[1] + j] ...
 *     mmd_array_free(&a);
 *
 * JSON (streaming builder, pretty-printed with a 2-space indent):
 *     mmd_json j;
 *     mmd_json_init(&j);
 *     mmd_json_begin_object(&j);
 *     mmd_json_kv_string(&j, "device", "pocl");
 *     mmd_json_key(&j, "extent_m");
 *     mmd_json_begin_array_inline(&j);          // [0, 10, 0, 8] on one line
 *     for (int k = 0; k < 4; k++) mmd_json_double(&j, ext[k]);
 *     mmd_json_end_array(&j);
 *     mmd_json_end_object(&j);
 *     mmd_status st = mmd_json_save(&j, "result.json");   // also reports misuse
 *     mmd_json_free(&j);
 *
 * CSV poses (`x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg`, columns by name):
 *     mmd_pose_row *p = NULL; size_t n = 0;
 *     if (mmd_poses_csv_read("poses.csv", &p, &n) != MMD_OK) { ... }
 *     free(p);
 */
#ifndef MMD_IO_H
#define MMD_IO_H

#include "mmd_core.h"

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------
 * NPY
 */

typedef enum mmd_dtype {
    MMD_DT_F32 = 0, /* '<f4' */
    MMD_DT_F64,     /* '<f8' */
    MMD_DT_I32,     /* '<i4' */
    MMD_DT_U8       /* '|u1' */
} mmd_dtype;

/* Bytes per element of a dtype. */
size_t mmd_dtype_size(mmd_dtype dt);

/* Ranks above this are rejected (numpy allows 64; nothing here needs more than 4). */
#define MMD_NPY_MAX_DIMS 8

/* Refuse headers that claim more elements than this, before any allocation, whatever the
 * file size (2^34 floats = 64 GiB: more than any result this tool writes). */
#define MMD_NPY_MAX_ELEMS ((size_t)1 << 34)

/* A float32 array read from an NPY file, C order (last index fastest). ndim 0 is a scalar
 * (count 1). `data` is malloc'ed; free with mmd_array_free. */
typedef struct mmd_array {
    int ndim;
    size_t shape[MMD_NPY_MAX_DIMS];
    size_t count; /* product of shape */
    float *data;
} mmd_array;

/* Write `data` (count = product of shape, C order, host layout) as a version 1.0 NPY file
 * with a little-endian dtype, header padded with spaces to a multiple of 64 bytes
 * (newline included). ndim may be 0 (scalar) to MMD_NPY_MAX_DIMS. Atomic. */
mmd_status mmd_npy_write(const char *path, mmd_dtype dtype, const size_t *shape, int ndim,
                         const void *data);

/* Read an NPY file of float32 or float64 (any byte order; float64 is rounded to float) in
 * C order, versions 1.0, 2.0 and 3.0. Strict: the magic, version, header length, the
 * header dict (exactly the keys descr, fortran_order, shape), the shape and the data size
 * (must equal the rest of the file) are validated; errors are MMD_ERR_PARSE (malformed),
 * MMD_ERR_INVALID (well-formed but unsupported: other dtypes, fortran_order True) or
 * MMD_ERR_IO, with a message naming the file. On error `out` is zeroed. */
mmd_status mmd_npy_read_f32(const char *path, mmd_array *out);

void mmd_array_free(mmd_array *a);

/* ---------------------------------------------------------------------------------------
 * JSON writer
 *
 * Numbers are written with the fewest digits that read back to the same value (at most
 * %.9g for float, %.17g for double). JSON has no NaN or Infinity: non-finite numbers are
 * written as null (readers that need to tell them apart must look at neighbouring
 * fields). Strings are UTF-8: valid sequences pass through unchanged, quotes, backslashes
 * and control characters are escaped, invalid bytes become U+FFFD.
 *
 * Misuse (a value in an object without a key, a key outside an object, unbalanced ends)
 * and allocation failure are sticky: later calls do nothing and mmd_json_status /
 * mmd_json_save report the first problem.
 */

#define MMD_JSON_MAX_DEPTH 64

typedef struct mmd_json {
    char *buf;
    size_t len, cap;
    int depth;
    bool have_key;                         /* a key was written, its value is due */
    unsigned char kind[MMD_JSON_MAX_DEPTH];  /* 'o' object, 'a' array */
    unsigned char count[MMD_JSON_MAX_DEPTH]; /* 0 = empty so far, 1 = has members */
    unsigned char inl[MMD_JSON_MAX_DEPTH];   /* 1 = this level is written on one line */
    bool done;                             /* the top-level value is complete */
    mmd_status st;
    char err[256];
} mmd_json;

void mmd_json_init(mmd_json *j);
void mmd_json_free(mmd_json *j);
void mmd_json_begin_object(mmd_json *j);
void mmd_json_end_object(mmd_json *j);
void mmd_json_begin_array(mmd_json *j);
/* An array written on one line, with everything inside it: for short numeric vectors. */
void mmd_json_begin_array_inline(mmd_json *j);
void mmd_json_end_array(mmd_json *j);
void mmd_json_key(mmd_json *j, const char *key);
void mmd_json_string(mmd_json *j, const char *s); /* NULL writes null */
void mmd_json_float(mmd_json *j, float v);
void mmd_json_double(mmd_json *j, double v);
void mmd_json_int(mmd_json *j, long long v);
void mmd_json_bool(mmd_json *j, bool v);
void mmd_json_null(mmd_json *j);

/* key + value in one call */
void mmd_json_kv_string(mmd_json *j, const char *key, const char *s);
void mmd_json_kv_float(mmd_json *j, const char *key, float v);
void mmd_json_kv_double(mmd_json *j, const char *key, double v);
void mmd_json_kv_int(mmd_json *j, const char *key, long long v);
void mmd_json_kv_bool(mmd_json *j, const char *key, bool v);
/* key + inline array of n doubles */
void mmd_json_kv_doubles(mmd_json *j, const char *key, const double *v, size_t n);

/* MMD_OK, or the first misuse / allocation error (the message is set again on each call). */
mmd_status mmd_json_status(const mmd_json *j);
/* The text so far (NUL-terminated; "" when nothing was written). */
const char *mmd_json_text(const mmd_json *j);
/* Check the document is complete and write it (plus a final newline) atomically. */
mmd_status mmd_json_save(const mmd_json *j, const char *path);

/* Shortest "%.{15,16,17}g" text that reads back to the same double (finite v; "nan",
 * "inf", "-inf" otherwise). Returns the length. buf must hold 32 bytes. */
int mmd_fmt_double(char *buf, double v);
/* The same for float with 6..9 digits. */
int mmd_fmt_float(char *buf, float v);

/* ---------------------------------------------------------------------------------------
 * CSV pose lists
 *
 * One receiver (or camera) pose per row: position [m] and orientation [deg] as yaw
 * (about z), pitch, roll. The first non-comment line is the header; columns are found by
 * name in any order and extra columns are ignored. '#' starts a comment (to the end of
 * the line), blank lines are skipped, CRLF line ends and a UTF-8 byte-order mark are
 * accepted, fields may be surrounded by spaces or double quotes. Errors give file:line
 * and the field. A file with a header and no rows reads as 0 poses (MMD_OK).
 */

typedef struct mmd_pose_row {
    double x_m, y_m, z_m;
    double yaw_deg, pitch_deg, roll_deg;
} mmd_pose_row;

mmd_status mmd_poses_csv_read(const char *path, mmd_pose_row **poses, size_t *count);
/* Writes the header and one row per pose with round-trip precision. Atomic. */
mmd_status mmd_poses_csv_write(const char *path, const mmd_pose_row *poses, size_t count);

#ifdef __cplusplus
}
#endif
#endif
