/* Tests for NPY, JSON, CSV and PNG output (src/io). All files go to a mkdtemp folder that
 * is removed at the end; the PNGs are decoded back with stb_image to check pixels. */
#include "mmd_io.h"
#include "mmd_plot.h"
#include "mmd_test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#define STB_IMAGE_IMPLEMENTATION
#define STBI_ONLY_PNG
#include <stb_image.h>
#pragma GCC diagnostic pop

static char g_dir[256];

static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static void write_raw(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static char *slurp(const char *path, size_t *n)
{
    char *d = NULL;
    if (mmd_read_file(path, &d, n) != MMD_OK) return NULL;
    return d;
}

static int contains(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

/* ---------------------------------------------------------------------------------------
 * NPY
 */

/* Build an NPY file by hand: magic, version, header length of the right width, dict
 * padded to 64 bytes, then raw bytes. */
static void make_npy(const char *path, int major, const char *dict, const void *data, size_t n)
{
    unsigned char buf[4096];
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64, hl = total - pre;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    if (major == 1) {
        buf[8] = (unsigned char)hl;
        buf[9] = (unsigned char)(hl >> 8);
    } else {
        for (int k = 0; k < 4; k++) buf[8 + k] = (unsigned char)(hl >> (8 * k));
    }
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', total - pre - dl - 1);
    buf[total - 1] = '\n';
    if (n) memcpy(buf + total, data, n);
    write_raw(path, buf, total + n);
}

static void check_header_text(const char *path, const char *descr, const char *shape)
{
    size_t n = 0;
    char *d = slurp(path, &n);
    CHECK(d && n >= 64, "%s: readable", path);
    if (!d) return;
    CHECK(!memcmp(d, "\x93NUMPY\x01\x00", 8), "%s: magic + version 1.0", path);
    size_t hl = (size_t)(unsigned char)d[8] | (size_t)(unsigned char)d[9] << 8;
    CHECK((10 + hl) % 64 == 0, "%s: header padded to 64 (len %zu)", path, hl);
    CHECK(d[10 + hl - 1] == '\n', "%s: header ends with newline", path);
    char expect[256];
    snprintf(expect, sizeof expect, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
             descr, shape);
    CHECK(!strncmp(d + 10, expect, strlen(expect)), "%s: header dict as numpy writes it: %.80s",
          path, d + 10);
    free(d);
}

static void test_npy_roundtrip(void)
{
    /* float32, ranks 1..3 (and 0) */
    float f[24];
    for (int i = 0; i < 24; i++) f[i] = (float)(i * 0.37 - 3.1);
    f[5] = NAN;
    f[6] = -INFINITY;
    const size_t shapes[4][3] = {{0}, {24}, {4, 6}, {2, 3, 4}};
    const char *shape_txt[4] = {"()", "(24,)", "(4, 6)", "(2, 3, 4)"};
    for (int r = 0; r <= 3; r++) {
        char name[64];
        snprintf(name, sizeof name, "f32_rank%d.npy", r);
        const char *p = tpath(name);
        CHECK(mmd_npy_write(p, MMD_DT_F32, shapes[r], r, f) == MMD_OK, "write %s: %s", name,
              mmd_last_error());
        check_header_text(p, "<f4", shape_txt[r]);
        mmd_array a;
        mmd_status st = mmd_npy_read_f32(p, &a);
        CHECK(st == MMD_OK, "read %s: %s", name, mmd_last_error());
        size_t cnt = 1;
        for (int k = 0; k < r; k++) cnt *= shapes[r][k];
        CHECK(a.ndim == r && a.count == cnt, "%s: ndim %d count %zu", name, a.ndim, a.count);
        for (int k = 0; k < r; k++)
            CHECK(a.shape[k] == shapes[r][k], "%s: shape[%d] %zu", name, k, a.shape[k]);
        int same = st == MMD_OK;
        for (size_t i = 0; same && i < cnt; i++)
            same = memcmp(&a.data[i], &f[i], 4) == 0; /* bitwise, NaN included */
        CHECK(same, "%s: data bitwise equal", name);
        mmd_array_free(&a);
    }
    /* float64: read converts to float */
    double d[6] = {1.0, -2.5, 1e-30, 3.141592653589793, 1e300, -0.0};
    const size_t s23[2] = {2, 3};
    CHECK(mmd_npy_write(tpath("f64.npy"), MMD_DT_F64, s23, 2, d) == MMD_OK, "write f64");
    check_header_text(tpath("f64.npy"), "<f8", "(2, 3)");
    mmd_array a;
    CHECK(mmd_npy_read_f32(tpath("f64.npy"), &a) == MMD_OK, "read f64: %s", mmd_last_error());
    CHECK(a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3, "f64 shape");
    for (int i = 0; i < 5 && a.data; i++) CHECK(a.data[i] == (float)d[i], "f64[%d] -> %g", i, a.data[i]);
    CHECK(a.data && isinf(a.data[4]), "1e300 -> inf as float");
    mmd_array_free(&a);

    /* int32 and uint8: written only; check header and raw little-endian bytes */
    int32_t iv[12];
    for (int i = 0; i < 12; i++) iv[i] = (i - 6) * 100000;
    uint8_t u8[12];
    for (int i = 0; i < 12; i++) u8[i] = (uint8_t)(i * 21);
    for (int r = 1; r <= 3; r++) {
        const size_t sh[3][3] = {{12}, {3, 4}, {2, 3, 2}};
        const char *st[3] = {"(12,)", "(3, 4)", "(2, 3, 2)"};
        char n1[64], n2[64];
        snprintf(n1, sizeof n1, "i32_%d.npy", r);
        snprintf(n2, sizeof n2, "u8_%d.npy", r);
        CHECK(mmd_npy_write(tpath(n1), MMD_DT_I32, sh[r - 1], r, iv) == MMD_OK, "write %s", n1);
        CHECK(mmd_npy_write(tpath(n2), MMD_DT_U8, sh[r - 1], r, u8) == MMD_OK, "write %s", n2);
        check_header_text(tpath(n1), "<i4", st[r - 1]);
        check_header_text(tpath(n2), "|u1", st[r - 1]);
        size_t n = 0;
        unsigned char *raw = (unsigned char *)slurp(tpath(n1), &n);
        CHECK(raw && n == 128 + 48, "%s size %zu", n1, n);
        int ok = raw && n == 176;
        for (int i = 0; ok && i < 12; i++) {
            uint32_t v = (uint32_t)raw[128 + 4 * i] | (uint32_t)raw[129 + 4 * i] << 8 |
                         (uint32_t)raw[130 + 4 * i] << 16 | (uint32_t)raw[131 + 4 * i] << 24;
            ok = (int32_t)v == iv[i];
        }
        CHECK(ok, "%s: little-endian int32 data", n1);
        free(raw);
        raw = (unsigned char *)slurp(tpath(n2), &n);
        CHECK(raw && n == 128 + 12 && !memcmp(raw + 128, u8, 12), "%s data", n2);
        free(raw);
        /* reading an integer array as float is refused with the dtype named */
        mmd_status s = mmd_npy_read_f32(tpath(n1), &a);
        CHECK(s == MMD_ERR_INVALID && contains(mmd_last_error(), "'<i4'"), "i32 read refused: %s",
              mmd_last_error());
    }
}

static void test_npy_handmade(void)
{
    /* big-endian float32 */
    const unsigned char be4[12] = {0x3f, 0x80, 0, 0, 0xc0, 0x20, 0, 0, 0x7f, 0x80, 0, 0};
    make_npy(tpath("be_f4.npy"), 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (3,), }",
             be4, 12);
    mmd_array a;
    CHECK(mmd_npy_read_f32(tpath("be_f4.npy"), &a) == MMD_OK, ">f4: %s", mmd_last_error());
    CHECK(a.count == 3 && a.data && a.data[0] == 1.0f && a.data[1] == -2.5f && isinf(a.data[2]),
          ">f4 values");
    mmd_array_free(&a);
    /* big-endian float64 (2.0 and -0.375), version 2.0, spacing as older numpy wrote it */
    const unsigned char be8[16] = {0x40, 0, 0, 0, 0, 0, 0, 0, 0xbf, 0xd8, 0, 0, 0, 0, 0, 0};
    make_npy(tpath("be_f8_v2.npy"), 2, "{'descr':'>f8','fortran_order':False,'shape':(1,2)}", be8,
             16);
    CHECK(mmd_npy_read_f32(tpath("be_f8_v2.npy"), &a) == MMD_OK, ">f8 v2: %s", mmd_last_error());
    CHECK(a.ndim == 2 && a.shape[0] == 1 && a.shape[1] == 2 && a.data && a.data[0] == 2.0f &&
              a.data[1] == -0.375f,
          ">f8 v2 values");
    mmd_array_free(&a);
    /* version 3.0, little-endian, keys in another order, double quotes */
    const float le[2] = {0.5f, 7.0f};
    make_npy(tpath("v3.npy"), 3, "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}",
             le, 8);
    CHECK(mmd_npy_read_f32(tpath("v3.npy"), &a) == MMD_OK, "v3: %s", mmd_last_error());
    CHECK(a.count == 2 && a.data && a.data[1] == 7.0f, "v3 values");
    mmd_array_free(&a);
    /* empty array */
    make_npy(tpath("empty.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }",
             NULL, 0);
    CHECK(mmd_npy_read_f32(tpath("empty.npy"), &a) == MMD_OK && a.count == 0 && a.ndim == 2,
          "empty array: %s", mmd_last_error());
    mmd_array_free(&a);
}

static void expect_bad(const char *name, mmd_status want, const char *what)
{
    mmd_array a;
    mmd_clear_error();
    mmd_status st = mmd_npy_read_f32(tpath(name), &a);
    const char *msg = mmd_last_error();
    CHECK(st == want, "%s: status %s, want %s (%s)", name, mmd_status_name(st),
          mmd_status_name(want), msg);
    CHECK(contains(msg, tpath(name)), "%s: message names the file: %s", name, msg);
    CHECK(contains(msg, what), "%s: message says '%s': %s", name, what, msg);
    CHECK(a.data == NULL && a.count == 0, "%s: output cleared", name);
}

static void test_npy_bad(void)
{
    float four[4] = {1, 2, 3, 4};
    write_raw(tpath("bad_magic.npy"), "\x93NUMPX\x01\x00\x10\x00{}", 12);
    expect_bad("bad_magic.npy", MMD_ERR_PARSE, "magic");
    write_raw(tpath("tiny.npy"), "\x93NU", 3);
    expect_bad("tiny.npy", MMD_ERR_PARSE, "not an NPY file");
    make_npy(tpath("bad_version.npy"), 4, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
             four, 16);
    expect_bad("bad_version.npy", MMD_ERR_PARSE, "version 4.0");
    make_npy(tpath("truncated.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }",
             four, 10);
    expect_bad("truncated.npy", MMD_ERR_PARSE, "needs 16 bytes");
    make_npy(tpath("trailing.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
             four, 16);
    expect_bad("trailing.npy", MMD_ERR_PARSE, "trailing");
    make_npy(tpath("fortran.npy"), 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
             four, 16);
    expect_bad("fortran.npy", MMD_ERR_INVALID, "Fortran");
    make_npy(tpath("c8.npy"), 1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", four,
             16);
    expect_bad("c8.npy", MMD_ERR_INVALID, "'<c8'");
    make_npy(tpath("toolarge.npy"), 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (1000, 1000), }", four, 16);
    expect_bad("toolarge.npy", MMD_ERR_PARSE, "(1000, 1000)");
    make_npy(tpath("absurd.npy"), 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (1048576, 1048576), }", four, 16);
    expect_bad("absurd.npy", MMD_ERR_INVALID, "refusing");
    make_npy(tpath("overflow.npy"), 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }",
             four, 16);
    expect_bad("overflow.npy", MMD_ERR_INVALID, "absurdly large");
    make_npy(tpath("nokey.npy"), 1, "{'descr': '<f4', 'shape': (4,), }", four, 16);
    expect_bad("nokey.npy", MMD_ERR_PARSE, "missing key 'fortran_order'");
    make_npy(tpath("extrakey.npy"), 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'x': 1}", four, 16);
    expect_bad("extrakey.npy", MMD_ERR_PARSE, "unexpected key 'x'");
    make_npy(tpath("syntax.npy"), 1, "{'descr': '<f4' 'fortran_order': False, 'shape': (4,)}", four,
             16);
    expect_bad("syntax.npy", MMD_ERR_PARSE, "malformed NPY header");
    make_npy(tpath("unterminated.npy"), 1, "{'descr': '<f4, 'fortran_order': False}", four, 16);
    expect_bad("unterminated.npy", MMD_ERR_PARSE, "malformed NPY header");
    make_npy(tpath("shape_int.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (4), }",
             four, 16);
    expect_bad("shape_int.npy", MMD_ERR_PARSE, "(5,)");
    make_npy(tpath("neg.npy"), 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (-4,), }",
             four, 16);
    expect_bad("neg.npy", MMD_ERR_PARSE, "non-negative integer");
    make_npy(tpath("junk_after.npy"), 1,
             "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), } x", four, 16);
    expect_bad("junk_after.npy", MMD_ERR_PARSE, "only padding");
    /* header length field pointing past the end of the file */
    unsigned char hdr[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0xff, 0xff, '{', '}'};
    write_raw(tpath("hlen.npy"), hdr, 16);
    expect_bad("hlen.npy", MMD_ERR_PARSE, "header length");
    mmd_array a;
    CHECK(mmd_npy_read_f32(tpath("missing.npy"), &a) == MMD_ERR_IO &&
              contains(mmd_last_error(), "missing.npy"),
          "missing file: %s", mmd_last_error());
}

/* ---------------------------------------------------------------------------------------
 * JSON
 */

static void test_json(void)
{
    mmd_json j;
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_string(&j, "s", "a\"b\\c\n\t\x01\x1f/");
    mmd_json_kv_string(&j, "u", "30\xc2\xb0 \xe6\x97\xa5 \xf0\x9f\x93\xa1");
    mmd_json_kv_string(&j, "bad", "x\xff\xc3y");
    mmd_json_kv_double(&j, "nan", NAN);
    mmd_json_kv_float(&j, "inf", INFINITY);
    mmd_json_kv_double(&j, "tenth", 0.1);
    mmd_json_kv_double(&j, "third", 1.0 / 3.0);
    mmd_json_kv_float(&j, "f", 0.1f);
    mmd_json_kv_float(&j, "f3", 1.0f / 3.0f);
    mmd_json_kv_int(&j, "big", -9007199254740993LL);
    mmd_json_kv_bool(&j, "t", true);
    mmd_json_key(&j, "nul");
    mmd_json_null(&j);
    mmd_json_key(&j, "empty");
    mmd_json_begin_array(&j);
    mmd_json_end_array(&j);
    const double v[3] = {1, 2.5, NAN};
    mmd_json_kv_doubles(&j, "v", v, 3);
    mmd_json_key(&j, "list");
    mmd_json_begin_array(&j);
    mmd_json_begin_object(&j);
    mmd_json_kv_int(&j, "k", 1);
    mmd_json_end_object(&j);
    mmd_json_string(&j, NULL);
    mmd_json_end_array(&j);
    mmd_json_end_object(&j);
    CHECK(mmd_json_status(&j) == MMD_OK, "json ok: %s", mmd_last_error());
    const char *expect =
        "{\n"
        "  \"s\": \"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\",\n"
        "  \"u\": \"30\xc2\xb0 \xe6\x97\xa5 \xf0\x9f\x93\xa1\",\n"
        "  \"bad\": \"x\\ufffd\\ufffdy\",\n"
        "  \"nan\": null,\n"
        "  \"inf\": null,\n"
        "  \"tenth\": 0.1,\n"
        "  \"third\": 0.3333333333333333,\n"
        "  \"f\": 0.1,\n"
        "  \"f3\": 0.33333334,\n"
        "  \"big\": -9007199254740993,\n"
        "  \"t\": true,\n"
        "  \"nul\": null,\n"
        "  \"empty\": [],\n"
        "  \"v\": [1, 2.5, null],\n"
        "  \"list\": [\n"
        "    {\n"
        "      \"k\": 1\n"
        "    },\n"
        "    null\n"
        "  ]\n"
        "}";
    CHECK(!strcmp(mmd_json_text(&j), expect), "json text:\n%s\nexpected:\n%s", mmd_json_text(&j),
          expect);
    CHECK(mmd_json_save(&j, tpath("doc.json")) == MMD_OK, "json save: %s", mmd_last_error());
    size_t n = 0;
    char *d = slurp(tpath("doc.json"), &n);
    CHECK(d && n == strlen(expect) + 1 && d[n - 1] == '\n' && !strncmp(d, expect, n - 1),
          "saved json = text + newline");
    free(d);
    mmd_json_free(&j);

    /* misuse is sticky and reported, nothing is written */
    mmd_json_init(&j);
    mmd_json_begin_object(&j);
    mmd_json_int(&j, 5); /* value without key */
    mmd_json_kv_int(&j, "later", 1);
    CHECK(mmd_json_status(&j) == MMD_ERR_INTERNAL && contains(mmd_last_error(), "without a key"),
          "misuse detected: %s", mmd_last_error());
    CHECK(mmd_json_save(&j, tpath("misuse.json")) != MMD_OK && access(tpath("misuse.json"), F_OK) != 0,
          "misuse not saved");
    mmd_json_free(&j);
    mmd_json_init(&j);
    mmd_json_begin_array(&j);
    CHECK(mmd_json_save(&j, tpath("open.json")) != MMD_OK && contains(mmd_last_error(), "incomplete"),
          "incomplete doc refused: %s", mmd_last_error());
    mmd_json_end_object(&j);
    CHECK(mmd_json_status(&j) != MMD_OK, "mismatched end detected");
    mmd_json_free(&j);

    char b[32];
    mmd_fmt_double(b, 1e-300);
    CHECK(!strcmp(b, "1e-300"), "fmt 1e-300: %s", b);
    mmd_fmt_double(b, 0.1 + 0.2);
    CHECK(strtod(b, NULL) == 0.1 + 0.2 && !strcmp(b, "0.30000000000000004"), "fmt 0.1+0.2: %s", b);
}

/* ---------------------------------------------------------------------------------------
 * CSV
 */

static void expect_csv_bad(const char *name, const char *text, mmd_status want, const char *what)
{
    write_raw(tpath(name), text, strlen(text));
    mmd_pose_row *p = NULL;
    size_t n = 99;
    mmd_status st = mmd_poses_csv_read(tpath(name), &p, &n);
    CHECK(st == want, "%s: status %s want %s (%s)", name, mmd_status_name(st), mmd_status_name(want),
          mmd_last_error());
    CHECK(contains(mmd_last_error(), what), "%s: message has '%s': %s", name, what, mmd_last_error());
    CHECK(p == NULL && n == 0, "%s: outputs cleared", name);
    free(p);
}

static void test_csv(void)
{
    const char *good = "\xef\xbb\xbf# poses along a trajectory\r\n"
                       "\r\n"
                       "id, roll_deg ,yaw_deg,x_m,\"y_m\",z_m,pitch_deg,note\r\n"
                       "0,0,90,1.5,2.25,1.2,-10,first  # trailing comment\r\n"
                       "   # indented comment\n"
                       "1,5e-1,-45,-1e-3,0,1.2,0,second\n"
                       "2,0,0,3,4,5,6,x"; /* no final newline */
    write_raw(tpath("good.csv"), good, strlen(good));
    mmd_pose_row *p = NULL;
    size_t n = 0;
    mmd_status st = mmd_poses_csv_read(tpath("good.csv"), &p, &n);
    CHECK(st == MMD_OK && n == 3, "good csv: %s (n %zu)", mmd_last_error(), n);
    if (st == MMD_OK && n == 3) {
        CHECK(p[0].x_m == 1.5 && p[0].y_m == 2.25 && p[0].z_m == 1.2 && p[0].yaw_deg == 90 &&
                  p[0].pitch_deg == -10 && p[0].roll_deg == 0,
              "row 0 by name");
        CHECK(p[1].x_m == -1e-3 && p[1].roll_deg == 0.5 && p[1].yaw_deg == -45, "row 1");
        CHECK(p[2].pitch_deg == 6 && p[2].z_m == 5, "row 2");
    }
    /* round trip through the writer, exact */
    mmd_pose_row w[3] = {{0.1, -2.0 / 3.0, 1e-17, 359.99999999999994, -90, 180},
                         {1, 2, 3, 4, 5, 6},
                         {-0.0, 0, 0, 0, 0, 0}};
    CHECK(mmd_poses_csv_write(tpath("out.csv"), w, 3) == MMD_OK, "csv write: %s", mmd_last_error());
    mmd_pose_row *r = NULL;
    size_t rn = 0;
    CHECK(mmd_poses_csv_read(tpath("out.csv"), &r, &rn) == MMD_OK && rn == 3, "csv reread");
    CHECK(r && !memcmp(r, w, sizeof w), "csv round trip exact");
    size_t tn = 0;
    char *t = slurp(tpath("out.csv"), &tn);
    const char *head = "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n0.1,-0.6666666666666666,1e-17,";
    CHECK(t && !strncmp(t, head, strlen(head)), "csv text: %.80s", t ? t : "");
    free(t);
    free(r);
    free(p);
    mmd_pose_row bad = {NAN, 0, 0, 0, 0, 0};
    CHECK(mmd_poses_csv_write(tpath("nan.csv"), &bad, 1) == MMD_ERR_INVALID, "NaN pose not written");
    /* header only: 0 poses */
    write_raw(tpath("hdr.csv"), "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n", 39);
    p = NULL;
    CHECK(mmd_poses_csv_read(tpath("hdr.csv"), &p, &n) == MMD_OK && n == 0, "header only");
    free(p);

    const char *H = "x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s1,2,3,4,5,6\n1,2,abc,4,5,6\n", H);
    expect_csv_bad("nonnum.csv", buf, MMD_ERR_PARSE, "nonnum.csv:3: field 'z_m' (column 3): \"abc\"");
    snprintf(buf, sizeof buf, "# c\n%s1,2,3,nan,5,6\n", H);
    expect_csv_bad("nan.csv", buf, MMD_ERR_INVALID, "nan.csv:3: field 'yaw_deg'");
    snprintf(buf, sizeof buf, "%s1,2,3,4,5,6\r\n1,2,3,4,5\r\n", H);
    expect_csv_bad("count.csv", buf, MMD_ERR_PARSE, "count.csv:3: expected 6 fields");
    expect_csv_bad("missing.csv", "x_m,y_m,yaw_deg,roll_deg\n1,2,4,5\n", MMD_ERR_PARSE,
                   "missing.csv:1: missing column 'z_m'");
    expect_csv_bad("nohdr.csv", "1,2,3,4,5,6\n", MMD_ERR_PARSE, "looks like data");
    expect_csv_bad("empty.csv", "# nothing\n\n", MMD_ERR_PARSE, "no header");
    expect_csv_bad("dup.csv", "x_m,x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg\n", MMD_ERR_PARSE,
                   "'x_m' appears twice");
    snprintf(buf, sizeof buf, "%s1,2,3,4,5,\n", H);
    expect_csv_bad("emptyfield.csv", buf, MMD_ERR_PARSE, "emptyfield.csv:2: field 'roll_deg'");
    snprintf(buf, sizeof buf, "%s1,2,3,4,5,6x\n", H);
    expect_csv_bad("suffix.csv", buf, MMD_ERR_PARSE, "\"6x\" is not a number");
}

/* ---------------------------------------------------------------------------------------
 * Colour maps and PNG figures
 */

static int near_rgb(const unsigned char *a, int r, int g, int b, int tol)
{
    return abs(a[0] - r) <= tol && abs(a[1] - g) <= tol && abs(a[2] - b) <= tol;
}

static void test_colormap(void)
{
    unsigned char c[3];
    /* matplotlib's tables, rounded to 8 bits: entries 0, 64, 128, 192, 255 */
    static const int vir[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98},
                                  {253, 231, 37}};
    static const int mag[3][3] = {{0, 0, 4}, {183, 55, 121}, {252, 253, 191}};
    const int idx[5] = {0, 64, 128, 192, 255};
    for (int k = 0; k < 5; k++) {
        mmd_colormap_viridis((idx[k] + 0.5) / 256.0, c);
        CHECK(near_rgb(c, vir[k][0], vir[k][1], vir[k][2], 1), "viridis[%d] = %d,%d,%d", idx[k],
              c[0], c[1], c[2]);
    }
    const int midx[3] = {0, 128, 255};
    for (int k = 0; k < 3; k++) {
        mmd_colormap_magma((midx[k] + 0.5) / 256.0, c);
        CHECK(near_rgb(c, mag[k][0], mag[k][1], mag[k][2], 1), "magma[%d] = %d,%d,%d", midx[k],
              c[0], c[1], c[2]);
    }
    unsigned char lo[3], hi[3], clamp_lo[3], clamp_hi[3];
    mmd_colormap_viridis(0, lo);
    mmd_colormap_viridis(1, hi);
    mmd_colormap_viridis(-5, clamp_lo);
    mmd_colormap_viridis(7, clamp_hi);
    CHECK(!memcmp(lo, clamp_lo, 3) && !memcmp(hi, clamp_hi, 3), "clamping");
    mmd_colormap_viridis(NAN, c);
    CHECK(c[0] == MMD_NODATA_R && c[1] == MMD_NODATA_G && c[2] == MMD_NODATA_B, "NaN is grey");
    /* the no-data grey is far from every colour of both maps */
    int mind = 1 << 30;
    for (int i = 0; i < 256; i++)
        for (int m = 0; m < 2; m++) {
            mmd_colormap((mmd_cmap)m, (i + 0.5) / 256.0, c);
            int d = abs(c[0] - MMD_NODATA_R) + abs(c[1] - MMD_NODATA_G) + abs(c[2] - MMD_NODATA_B);
            if (d < mind) mind = d;
        }
    CHECK(mind >= 100, "no-data grey distinct from the colour maps (L1 distance %d)", mind);
    mmd_cmap cm;
    CHECK(mmd_cmap_from_name("Magma", &cm) == MMD_OK && cm == MMD_CMAP_MAGMA, "cmap by name");
    CHECK(mmd_cmap_from_name("jet", &cm) == MMD_ERR_INVALID && contains(mmd_last_error(), "viridis"),
          "unknown cmap");
}

static unsigned char *load_png(const char *path, int *w, int *h)
{
    size_t n = 0;
    char *d = slurp(path, &n);
    CHECK(d && n > 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8), "%s: PNG signature", path);
    int comp = 0;
    unsigned char *img =
        d ? stbi_load_from_memory((const unsigned char *)d, (int)n, w, h, &comp, 3) : NULL;
    CHECK(img != NULL, "%s: decodes as PNG", path);
    free(d);
    return img;
}

static const unsigned char *pix(const unsigned char *img, int w, int x, int y)
{
    return img + 3 * ((size_t)y * (size_t)w + (size_t)x);
}

static void test_heatmap(void)
{
    /* 12 x 8 cells, value = ix + 12 iy on a known range, NaN and -inf cells */
    enum { NX = 12, NY = 8 };
    float v[NX * NY];
    for (int iy = 0; iy < NY; iy++)
        for (int ix = 0; ix < NX; ix++) v[iy * NX + ix] = (float)(ix + NX * iy) - 100.0f;
    v[3 * NX + 4] = NAN;
    v[0 * NX + 11] = -INFINITY;
    /* the marker lies outside the map (clipped); the outline runs along cell edges, so
     * neither touches a cell centre */
    mmd_plot_marker mk = {2.0, 1.5, MMD_MARKER_CIRCLE, "TX"};
    double outline[] = {0.1, 0.1, 1.1, 0.1, 1.1, 0.7, 0.1, 0.7};
    mmd_plot_polyline ol = {outline, 4, true};
    mmd_plot_layout lay;
    mmd_heatmap_params p = mmd_heatmap_defaults();
    p.data = v;
    p.nx = NX;
    p.ny = NY;
    p.x0 = 0;
    p.x1 = 1.2;
    p.y0 = 0;
    p.y1 = 0.8;
    p.vmin = -100;
    p.vmax = -100 + 95;
    p.title = "test map";
    p.xlabel = "x [m]";
    p.ylabel = "y [m]";
    p.cbar_label = "path gain [dB]";
    p.equal_aspect = true;
    p.markers = &mk;
    p.n_markers = 1;
    p.overlays = &ol;
    p.n_overlays = 1;
    p.layout = &lay;
    mmd_status st = mmd_plot_heatmap(tpath("map.png"), tpath("map.json"), &p);
    CHECK(st == MMD_OK, "heatmap: %s", mmd_last_error());
    int w = 0, h = 0;
    unsigned char *img = load_png(tpath("map.png"), &w, &h);
    CHECK(w == lay.width && h == lay.height, "size %dx%d = layout %dx%d", w, h, lay.width, lay.height);
    CHECK((w > h ? w : h) >= 600, "long side >= 600 px (%d x %d)", w, h);
    int pw = lay.plot[0][2], ph = lay.plot[0][3];
    CHECK(pw % NX == 0 && ph % NY == 0 && pw / NX == ph / NY, "square equal cells: %dx%d px area",
          pw, ph);
    if (img) {
        int bad = 0;
        for (int iy = 0; iy < NY; iy++)
            for (int ix = 0; ix < NX; ix++) {
                int cx = lay.plot[0][0] + (int)((ix + 0.5) * pw / NX);
                int cy = lay.plot[0][1] + ph - 1 - (int)((iy + 0.5) * ph / NY);
                float val = v[iy * NX + ix];
                unsigned char want[3];
                if (isnan(val) || isinf(val)) mmd_colormap_viridis(NAN, want);
                else mmd_colormap_viridis((val - p.vmin) / (p.vmax - p.vmin), want);
                const unsigned char *got = pix(img, w, cx, cy);
                if (memcmp(got, want, 3)) {
                    if (bad++ < 5)
                        CHECK(0, "cell (%d,%d) at px (%d,%d): got %d,%d,%d want %d,%d,%d", ix, iy,
                              cx, cy, got[0], got[1], got[2], want[0], want[1], want[2]);
                }
            }
        CHECK(bad == 0, "%d cell centres differ from viridis(value)", bad);
        /* NaN cell (4, 3) and -inf cell (11, 0) are the grey */
        int cx = lay.plot[0][0] + (int)(4.5 * pw / NX), cy = lay.plot[0][1] + ph - 1 - (int)(3.5 * ph / NY);
        CHECK(near_rgb(pix(img, w, cx, cy), MMD_NODATA_R, MMD_NODATA_G, MMD_NODATA_B, 0), "NaN grey");
        /* the lowest colour is not the grey */
        unsigned char low[3];
        mmd_colormap_viridis(0, low);
        CHECK(!near_rgb(low, MMD_NODATA_R, MMD_NODATA_G, MMD_NODATA_B, 30), "lowest != grey");
        /* colorbar: top pixel row is the top colour, bottom row the bottom colour */
        unsigned char top[3];
        mmd_colormap_viridis(1, top);
        const unsigned char *cbt = pix(img, w, lay.colorbar[0] + lay.colorbar[2] / 2, lay.colorbar[1]);
        const unsigned char *cbb =
            pix(img, w, lay.colorbar[0] + lay.colorbar[2] / 2, lay.colorbar[1] + lay.colorbar[3] - 1);
        CHECK(!memcmp(cbt, top, 3) && !memcmp(cbb, low, 3), "colorbar ends");
        /* something dark was drawn left of the plot (tick labels) and below it */
        int ink = 0;
        for (int y = lay.plot[0][1]; y < lay.plot[0][1] + ph; y++)
            for (int x = 0; x < lay.plot[0][0] - 2; x++) ink += pix(img, w, x, y)[0] < 100;
        CHECK(ink > 200, "y tick labels drawn (%d dark px)", ink);
    }
    stbi_image_free(img);
    size_t n = 0;
    char *js = slurp(tpath("map.json"), &n);
    CHECK(contains(js, "\"vmin\": -100") && contains(js, "\"vmax\": -5") &&
              contains(js, "\"cmap\": \"viridis\"") && contains(js, "\"cell_size\": [0.1, 0.1]") &&
              contains(js, "\"units\": \"path gain [dB]\"") && contains(js, "\"nodata_cells\": 2") &&
              contains(js, "\"image\": \"map.png\""),
          "sidecar json:\n%s", js ? js : "(none)");
    char area[96];
    snprintf(area, sizeof area, "\"plot_area_px\": [%d, %d, %d, %d]", lay.plot[0][0], lay.plot[0][1],
             pw, ph);
    CHECK(contains(js, area), "sidecar has %s", area);
    free(js);

    /* auto range: vmax = max, vmin = max - 40 dB; values below are clipped */
    p.vmin = p.vmax = NAN;
    p.dynamic_range = 40;
    p.layout = &lay;
    CHECK(mmd_plot_heatmap(tpath("auto.png"), NULL, &p) == MMD_OK, "auto: %s", mmd_last_error());
    CHECK(lay.vmax == -100 + 95 && lay.vmin == lay.vmax - 40, "auto range %g..%g", lay.vmin, lay.vmax);
    CHECK(access(tpath("auto.json"), F_OK) != 0, "no sidecar when not asked");

    /* more cells than pixels: the strongest cell of a pixel wins, a 1-cell peak survives */
    int bx = 4000, by = 10;
    float *big = malloc(sizeof(float) * (size_t)bx * (size_t)by);
    for (int i = 0; i < bx * by; i++) big[i] = -50;
    big[5 * bx + 1234] = 0;
    mmd_heatmap_params q = mmd_heatmap_defaults();
    q.data = big;
    q.nx = bx;
    q.ny = by;
    q.x0 = 0;
    q.x1 = 4000;
    q.y0 = 0;
    q.y1 = 10;
    q.layout = &lay;
    CHECK(mmd_plot_heatmap(tpath("big.png"), NULL, &q) == MMD_OK, "pooled: %s", mmd_last_error());
    img = load_png(tpath("big.png"), &w, &h);
    if (img) {
        unsigned char top[3];
        mmd_colormap_viridis(1, top);
        int found = 0;
        for (int y = lay.plot[0][1]; y < lay.plot[0][1] + lay.plot[0][3]; y++)
            for (int x = lay.plot[0][0]; x < lay.plot[0][0] + lay.plot[0][2]; x++)
                found += !memcmp(pix(img, w, x, y), top, 3);
        CHECK(found > 0, "single-cell peak visible after pooling");
    }
    stbi_image_free(img);
    free(big);

    /* bad input */
    q.x1 = q.x0;
    CHECK(mmd_plot_heatmap(tpath("bad.png"), NULL, &q) == MMD_ERR_INVALID &&
              contains(mmd_last_error(), "bad.png"),
          "empty extent refused: %s", mmd_last_error());
    q.x1 = 10;
    q.data = NULL;
    CHECK(mmd_plot_heatmap(tpath("bad.png"), NULL, &q) == MMD_ERR_INVALID, "no data refused");
    /* all NaN still renders (grey) */
    float allnan[4] = {NAN, NAN, NAN, NAN};
    q.data = allnan;
    q.nx = q.ny = 2;
    q.x1 = 1;
    q.y1 = 1;
    CHECK(mmd_plot_heatmap(tpath("nan.png"), NULL, &q) == MMD_OK, "all-NaN map: %s", mmd_last_error());
}

static void test_lines_and_panels(void)
{
    double x[10], y1[10], y2[10];
    for (int i = 0; i < 10; i++) {
        x[i] = 10 * i;
        y1[i] = -0.1 * i;
        y2[i] = i == 4 ? NAN : -2 + 0.05 * i;
    }
    mmd_line_series s[2] = {{x, y1, 10, "alpha_r = 10", 0, false, true},
                            {x, y2, 10, "alpha_r = 120", 0x000000, true, false}};
    double hl = -3;
    mmd_plot_layout lay;
    mmd_lineplot_params p = mmd_lineplot_defaults();
    p.series = s;
    p.n_series = 2;
    p.title = "deviation";
    p.xlabel = "incidence [deg]";
    p.ylabel = "deviation [dB]";
    p.hlines = &hl;
    p.n_hlines = 1;
    p.layout = &lay;
    CHECK(mmd_plot_lines(tpath("lines.png"), tpath("lines.json"), &p) == MMD_OK, "lines: %s",
          mmd_last_error());
    int w, h;
    unsigned char *img = load_png(tpath("lines.png"), &w, &h);
    CHECK(w == 900 && h == 600, "line plot size %dx%d", w, h);
    if (img) {
        /* first series colour is tab10 blue: found somewhere in the plot area */
        int blue = 0;
        for (int yy = lay.plot[0][1]; yy < lay.plot[0][1] + lay.plot[0][3]; yy++)
            for (int xx = lay.plot[0][0]; xx < lay.plot[0][0] + lay.plot[0][2]; xx++)
                blue += near_rgb(pix(img, w, xx, yy), 0x1f, 0x77, 0xb4, 2);
        CHECK(blue > 100, "blue line drawn (%d px)", blue);
    }
    stbi_image_free(img);
    char *js = slurp(tpath("lines.json"), NULL);
    CHECK(contains(js, "\"color\": \"#1f77b4\"") && contains(js, "\"label\": \"alpha_r = 120\""),
          "line sidecar");
    free(js);

    /* two panels, one shared scale */
    float a[6] = {0, 1, 2, 3, 4, 5}, b[6] = {10, 11, 12, 13, 14, NAN};
    mmd_heatmap_params hp[2] = {mmd_heatmap_defaults(), mmd_heatmap_defaults()};
    for (int k = 0; k < 2; k++) {
        hp[k].data = k ? b : a;
        hp[k].nx = 3;
        hp[k].ny = 2;
        hp[k].x1 = 3;
        hp[k].y1 = 2;
        hp[k].equal_aspect = true;
        hp[k].title = k ? "noisy" : "clean";
    }
    hp[0].cbar_label = "power [dB]";
    mmd_heatmap_figure fig = {hp, 2, "clean vs noisy", 0, 0, &lay};
    CHECK(mmd_plot_heatmaps(tpath("panels.png"), tpath("panels.json"), &fig) == MMD_OK, "panels: %s",
          mmd_last_error());
    CHECK(lay.n_panels == 2 && lay.vmin == 0 && lay.vmax == 14, "shared range %g..%g", lay.vmin, lay.vmax);
    img = load_png(tpath("panels.png"), &w, &h);
    if (img) {
        /* value 0 in panel 0 and value 14 in panel 1 map to the two ends of ONE scale */
        unsigned char lo[3], hi[3];
        mmd_colormap_viridis(0, lo);
        mmd_colormap_viridis(1, hi);
        int x0 = lay.plot[0][0] + lay.plot[0][2] / 6, y0 = lay.plot[0][1] + lay.plot[0][3] * 3 / 4;
        int x1 = lay.plot[1][0] + lay.plot[1][2] * 3 / 6, y1 = lay.plot[1][1] + lay.plot[1][3] / 4;
        CHECK(!memcmp(pix(img, w, x0, y0), lo, 3), "panel 0 low end");
        CHECK(!memcmp(pix(img, w, x1, y1), hi, 3), "panel 1 high end");
        CHECK(lay.plot[1][0] > lay.plot[0][0] + lay.plot[0][2], "panels side by side");
    }
    stbi_image_free(img);
    /* far-off points and markers are clipped cheaply, not looped over or overflowed */
    double fx[3] = {0, 1, 2}, fy[3] = {0, 1e300, -1e300};
    mmd_line_series far = {fx, fy, 3, "far", 0, true, true};
    mmd_lineplot_params fp = mmd_lineplot_defaults();
    fp.series = &far;
    fp.n_series = 1;
    fp.ymin = -1;
    fp.ymax = 1;
    CHECK(mmd_plot_lines(tpath("far.png"), NULL, &fp) == MMD_OK, "far points: %s", mmd_last_error());
    mmd_plot_marker farm[2] = {{1e300, -1e300, MMD_MARKER_CIRCLE, "far"},
                               {1, 1, MMD_MARKER_TRIANGLE, "near"}};
    hp[0].markers = farm;
    hp[0].n_markers = 2;
    fig.n_panels = 1;
    CHECK(mmd_plot_heatmaps(tpath("farm.png"), NULL, &fig) == MMD_OK, "far marker: %s",
          mmd_last_error());

    js = slurp(tpath("panels.json"), NULL);
    CHECK(contains(js, "\"panels\": [") && contains(js, "\"title\": \"noisy\""), "panels sidecar");
    free(js);
}

/* ---------------------------------------------------------------------------------------
 * Atomic writes
 */

static void test_atomic(void)
{
    const size_t one = 1;
    float f = 1;
    char bad[600];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.npy", g_dir);
    CHECK(mmd_npy_write(bad, MMD_DT_F32, &one, 1, &f) == MMD_ERR_IO && contains(mmd_last_error(), bad),
          "write into missing dir: %s", mmd_last_error());
    /* overwrite an existing file: replaced whole */
    CHECK(mmd_npy_write(tpath("f32_rank1.npy"), MMD_DT_F32, &one, 1, &f) == MMD_OK, "overwrite");
    mmd_array a;
    CHECK(mmd_npy_read_f32(tpath("f32_rank1.npy"), &a) == MMD_OK && a.count == 1, "overwritten");
    mmd_array_free(&a);

    DIR *d = opendir(g_dir);
    int temps = 0, files = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        files++;
        if (strstr(e->d_name, ".tmp")) {
            temps++;
            CHECK(0, "temp file left behind: %s", e->d_name);
        }
    }
    if (d) closedir(d);
    CHECK(files > 20 && temps == 0, "%d files, %d temp files", files, temps);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[1024];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        remove(p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/mmd_test_io_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_npy_roundtrip();
    test_npy_handmade();
    test_npy_bad();
    test_json();
    test_csv();
    test_colormap();
    test_heatmap();
    test_lines_and_panels();
    test_atomic();
    if (getenv("MMD_TEST_KEEP")) fprintf(stderr, "kept %s\n", g_dir);
    else remove_dir(g_dir);
    return TEST_DONE();
}
