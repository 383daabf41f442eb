/* Scene loading: the shipped Sionna and indoor scenes load with the documented counts and
 * bboxes; PLY variants decode; bad inputs fail with messages that name the file and say
 * what is wrong. */
#include "mmd_scene.h"
#include "mmd_test.h"

#include <stdint.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------- */
/* Helpers                                                                             */

static char g_dir[256];
static char g_files[64][512];
static int g_n_files;

/* Write `data` to g_dir/name; returns the path (stable until the end of the test). */
static const char *put_file(const char *name, const void *data, size_t size)
{
    if (g_n_files >= 64) return "/nonexistent";
    char *path = g_files[g_n_files++];
    snprintf(path, 512, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return path;
    if (size) fwrite(data, 1, size, f);
    fclose(f);
    return path;
}

static const char *put_text(const char *name, const char *text) { return put_file(name, text, strlen(text)); }

/* Byte buffer for building binary PLYs. */
typedef struct buf {
    unsigned char d[8192];
    size_t n;
    int big;
} buf;

static void put_bytes(buf *b, const void *p, size_t n)
{
    unsigned char t[8];
    memcpy(t, p, n);
    if (b->big)
        for (size_t i = 0; i < n / 2; i++) {
            unsigned char x = t[i];
            t[i] = t[n - 1 - i];
            t[n - 1 - i] = x;
        }
    if (b->n + n <= sizeof b->d) memcpy(b->d + b->n, t, n);
    b->n += n;
}
static void put_str(buf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->n + n <= sizeof b->d) memcpy(b->d + b->n, s, n);
    b->n += n;
}
static void put_f32(buf *b, float v) { put_bytes(b, &v, 4); }
static void put_f64(buf *b, double v) { put_bytes(b, &v, 8); }
static void put_u8(buf *b, uint8_t v) { put_bytes(b, &v, 1); }
static void put_i16(buf *b, int16_t v) { put_bytes(b, &v, 2); }
static void put_i32(buf *b, int32_t v) { put_bytes(b, &v, 4); }
static void put_u32(buf *b, uint32_t v) { put_bytes(b, &v, 4); }

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Loading `path` must fail with `want`, and the message must name the file and contain
 * `phrase`. */
static void expect_fail(const char *what, const char *path, mmd_status want, const char *phrase)
{
    mmd_clear_error();
    mmd_scene *s = (mmd_scene *)&g_n_files; /* must be reset to NULL */
    mmd_status st = mmd_scene_load(path, &s);
    const char *msg = mmd_last_error();
    if (getenv("MMD_TEST_VERBOSE")) fprintf(stderr, "  %-28s -> %s\n", what, msg);
    CHECK(st == want, "%s: status %s, want %s (%s)", what, mmd_status_name(st), mmd_status_name(want), msg);
    CHECK(s == NULL, "%s: out not NULL on failure", what);
    if (st == MMD_OK) mmd_scene_destroy(s);
    CHECK(strstr(msg, base_name(path)) != NULL, "%s: message does not name the file: %s", what, msg);
    CHECK(strstr(msg, phrase) != NULL, "%s: message lacks '%s': %s", what, phrase, msg);
}

/* Structural invariants every loaded scene must satisfy. */
static void check_consistent(const char *what, const mmd_scene *s)
{
    int ok = s->n_triangles > 0 && s->n_objects > 0 && s->n_materials > 0;
    for (size_t i = 0; i < 3 * (size_t)s->n_triangles && ok; i++) ok = s->indices[i] < s->n_vertices;
    CHECK(ok, "%s: index out of range or empty", what);
    uint32_t next = 0;
    ok = 1;
    for (uint32_t o = 0; o < s->n_objects; o++) {
        const mmd_scene_object *ob = &s->objects[o];
        ok &= ob->first_tri == next && ob->material < s->n_materials;
        for (uint32_t t = ob->first_tri; t < ob->first_tri + ob->n_tris && ok; t++)
            ok = s->tri_object[t] == o && s->tri_material[t] < s->n_materials;
        next += ob->n_tris;
    }
    CHECK(ok && next == s->n_triangles, "%s: objects not contiguous / not covering all triangles", what);
    ok = 1;
    for (size_t i = 0; i < 3 * (size_t)s->n_vertices; i++) ok &= isfinite(s->vertices[i]) != 0;
    CHECK(ok, "%s: non-finite vertex", what);
}

/* ---------------------------------------------------------------------------------- */
/* Shipped scenes                                                                      */

static void test_sionna(void)
{
    /* shared/scenes/sionna/LICENSE-NOTE.md */
    static const struct {
        const char *name;
        uint32_t tris, verts;
        double lo[3], hi[3];
        const char *itu[6];
        double thickness;
    } T[] = {
        {"munich", 38938, 42293, {-805.6, -688.6, 0}, {669.9, 517.0, 98.6},
         {"marble", "metal", "brick", "wood", "concrete"}, 0.1},
        {"etoile", 13058, 14193, {-426.8, -338.1, 0}, {426.8, 338.1, 50}, {"marble", "metal", "wood", "concrete"}, 0.1},
        {"simple_street_canyon", 74, 88, {-94.0, -60.3, -0.03}, {92.4, 60.8, 50.9},
         {"glass", "wood", "marble", "brick", "concrete"}, 0.1},
        {"floor_wall", 4, 8, {-2, -2, 0}, {2, 2, 2.9}, {"concrete", "brick"}, 0.1},
        {"simple_reflector", 2, 4, {-0.5, -0.5, 0}, {0.5, 0.5, 0}, {"metal"}, 0.01},
        {"double_reflector", 4, 8, {-20, -10, 0}, {0.5, 10, 10}, {"metal"}, 0.1},
        {"triple_reflector", 6, 12, {-20, -10, 0}, {20.5, 10, 10}, {"metal"}, 0.1},
        {"box", 12, 14, {-5, -5, 0}, {5, 5, 5}, {"metal"}, 1.0},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "scenes/sionna/%s/%s.xml", T[i].name, T[i].name);
        mmd_scene *s = NULL;
        double t0 = mmd_now();
        mmd_status st = mmd_scene_load(mmd_test_path(rel), &s);
        double dt = mmd_now() - t0;
        CHECK(st == MMD_OK, "%s: %s", T[i].name, mmd_last_error());
        if (st) continue;
        if (!strcmp(T[i].name, "munich")) {
            CHECK(s->n_objects == 2367, "munich objects %u", s->n_objects);
            CHECK(dt < 1.0, "munich took %.3f s", dt);
        }
        CHECK(s->n_triangles == T[i].tris, "%s triangles %u want %u", T[i].name, s->n_triangles, T[i].tris);
        CHECK(s->n_vertices == T[i].verts, "%s vertices %u want %u", T[i].name, s->n_vertices, T[i].verts);
        for (int k = 0; k < 3; k++) {
            CHECK_NEAR(s->bbox_min[k], T[i].lo[k], 0.051, "bbox_min");
            CHECK_NEAR(s->bbox_max[k], T[i].hi[k], 0.051, "bbox_max");
        }
        uint32_t nm = 0;
        while (nm < 6 && T[i].itu[nm]) nm++;
        CHECK(s->n_materials == nm, "%s: %u materials, want %u", T[i].name, s->n_materials, nm);
        for (uint32_t m = 0; m < s->n_materials && m < nm; m++) {
            CHECK(s->materials[m].kind == MMD_MAT_ITU, "%s material %u kind", T[i].name, m);
            CHECK(!strcmp(s->materials[m].itu_name, T[i].itu[m]), "%s material %u: itu '%s' want '%s'",
                  T[i].name, m, s->materials[m].itu_name, T[i].itu[m]);
            CHECK_NEAR(s->materials[m].thickness_m, T[i].thickness, 1e-12, "thickness");
        }
        check_consistent(T[i].name, s);
        mmd_scene_destroy(s);
    }
}

/* Minimal reader for the fields of scene.yaml the test needs (the loader ignores them). */
typedef struct room_info {
    long triangles;
    double lo[3], hi[3];
    int n_shapes;
    long shape_tris[64];
    char shape_mat[64][32];
} room_info;

static int read_room(const char *path, room_info *r)
{
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "triangles:", 10)) r->triangles = atol(line + 10);
        else if (!strncmp(line, "bbox_min:", 9)) sscanf(line + 9, " [%lf, %lf, %lf]", &r->lo[0], &r->lo[1], &r->lo[2]);
        else if (!strncmp(line, "bbox_max:", 9)) sscanf(line + 9, " [%lf, %lf, %lf]", &r->hi[0], &r->hi[1], &r->hi[2]);
        else if (!strncmp(line, "  - file:", 9) && r->n_shapes < 64) r->n_shapes++;
        else if (!strncmp(line, "    triangles:", 14) && r->n_shapes > 0)
            r->shape_tris[r->n_shapes - 1] = atol(line + 14);
        else if (!strncmp(line, "    material:", 13) && r->n_shapes > 0) {
            char *q = strchr(line + 13, '"');
            char *e = q ? strchr(q + 1, '"') : NULL;
            if (q && e && e - q - 1 < 32) snprintf(r->shape_mat[r->n_shapes - 1], 32, "%.*s", (int)(e - q - 1), q + 1);
        }
    }
    fclose(f);
    return r->n_shapes > 0;
}

static void test_indoor(void)
{
    static const char *rooms[] = {"nist_box_lecture_room", "nist_lecture_room", "nist_l_room",
                                  "nist_conference_room", "nist_enterprise_cubicle", "nist_living_room",
                                  "nist_hotel_lobby", "nist_data_center", "newrf_bedroom"};
    for (size_t i = 0; i < sizeof rooms / sizeof rooms[0]; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "scenes/indoor/%s/scene.yaml", rooms[i]);
        const char *path = mmd_test_path(rel);
        room_info r;
        CHECK(read_room(path, &r), "%s: cannot read the reference fields", rooms[i]);
        mmd_scene *s = NULL;
        mmd_status st = mmd_scene_load(path, &s);
        CHECK(st == MMD_OK, "%s: %s", rooms[i], mmd_last_error());
        if (st) continue;
        CHECK(s->n_triangles == (uint32_t)r.triangles, "%s: %u triangles, want %ld", rooms[i], s->n_triangles,
              r.triangles);
        /* scene.yaml prints bboxes to 4 decimals. */
        for (int k = 0; k < 3; k++) {
            CHECK_NEAR(s->bbox_min[k], r.lo[k], 6e-5, "indoor bbox_min");
            CHECK_NEAR(s->bbox_max[k], r.hi[k], 6e-5, "indoor bbox_max");
        }
        CHECK(s->n_objects == (uint32_t)r.n_shapes, "%s: %u objects, want %d", rooms[i], s->n_objects, r.n_shapes);
        for (uint32_t o = 0; o < s->n_objects && o < (uint32_t)r.n_shapes; o++) {
            const mmd_scene_object *ob = &s->objects[o];
            const mmd_scene_material *m = &s->materials[ob->material];
            CHECK(ob->n_tris == (uint32_t)r.shape_tris[o], "%s shape %u (%s): %u triangles, want %ld", rooms[i],
                  o, ob->name, ob->n_tris, r.shape_tris[o]);
            if (r.shape_mat[o][0])
                CHECK(m->kind == MMD_MAT_ITU && !strcmp(m->itu_name, r.shape_mat[o]), "%s shape %u material %s",
                      rooms[i], o, m->name);
            else
                CHECK(m->kind == MMD_MAT_UNASSIGNED && !strcmp(m->name, "unassigned"),
                      "%s shape %u: null material -> %s", rooms[i], o, m->name);
        }
        check_consistent(rooms[i], s);
        mmd_scene_destroy(s);
    }
}

/* ---------------------------------------------------------------------------------- */
/* PLY variants                                                                        */

static void test_ply_ascii(void)
{
    /* A unit cube as 6 quads plus one pentagon fan; CRLF header; comments. */
    const char *txt =
        "ply\r\nformat ascii 1.0\r\ncomment made by test_scene\r\nobj_info nothing\r\n"
        "element vertex 9\r\nproperty float x\r\nproperty float y\r\nproperty float z\r\n"
        "element face 7\r\nproperty list uchar int vertex_indices\r\nend_header\r\n"
        "0 0 0\n1 0 0\n1 1 0\n0 1 0\n0 0 1\n1 0 1\n1 1 1\n0 1 1\n0.5 1.5 2.25\n"
        "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 1 2 6 5\n4 2 3 7 6\n4 3 0 4 7\n5 0 1 2 8 3\n";
    const char *path = put_text("quads.ply", txt);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "ascii quads: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_triangles == 6 * 2 + 3, "ascii quads: %u triangles", s->n_triangles);
    CHECK(s->n_vertices == 9, "ascii quads: %u vertices", s->n_vertices);
    /* Fan split of (0 3 2 1): (0 3 2), (0 2 1). */
    CHECK(s->indices[0] == 0 && s->indices[1] == 3 && s->indices[2] == 2 && s->indices[3] == 0 &&
              s->indices[4] == 2 && s->indices[5] == 1, "fan split order");
    CHECK(s->vertices[24] == 0.5f && s->vertices[25] == 1.5f && s->vertices[26] == 2.25f, "vertex 8 coordinates");
    CHECK(s->n_objects == 1 && !strcmp(s->objects[0].name, "quads"), "object named after the file stem");
    CHECK(s->n_materials == 1 && s->materials[0].kind == MMD_MAT_UNASSIGNED &&
              !strcmp(s->materials[0].name, "default"), "bare PLY material is 'default', unassigned");
    CHECK_NEAR(s->bbox_max[2], 2.25, 0, "bbox z");
    check_consistent("ascii quads", s);
    mmd_scene_destroy(s);
}

static void test_ply_big_endian(void)
{
    /* Doubles, extra vertex properties (normals, colour, a list), a skipped 'edge' element
     * between vertex and face, vertex_index (not _indices) with uint32 items, per-face
     * object_id interleaved so the loader must regroup. */
    buf b = {.big = 1};
    put_str(&b, "ply\nformat binary_big_endian 1.0\ncomment big\n"
                "element vertex 5\nproperty float64 nx\nproperty double x\nproperty double y\n"
                "property double z\nproperty float ny\nproperty uchar red\n"
                "property list uchar short extra\n"
                "element edge 2\nproperty int vertex1\nproperty int vertex2\n"
                "element face 3\nproperty uchar flags\nproperty list uint8 uint32 vertex_index\n"
                "property int object_id\nproperty list int float uvs\n"
                "end_header\n");
    const double xyz[5][3] = {{0, 0, 0}, {1.5, 0, 0}, {1.5, -2.25, 0}, {0, -2.25, 3}, {-1e3, 1e-3, 7}};
    for (int v = 0; v < 5; v++) {
        put_f64(&b, 0.25);
        for (int k = 0; k < 3; k++) put_f64(&b, xyz[v][k]);
        put_f32(&b, -1.0f);
        put_u8(&b, 200);
        put_u8(&b, (uint8_t)v); /* list length v */
        for (int j = 0; j < v; j++) put_i16(&b, (int16_t)j);
    }
    for (int e = 0; e < 2; e++) {
        put_i32(&b, e);
        put_i32(&b, e + 1);
    }
    /* face 0: quad, object 7; face 1: tri, object 3; face 2: tri, object 7 */
    const int faces[3][5] = {{4, 0, 1, 2, 3}, {3, 2, 3, 4, 0}, {3, 4, 0, 1, 0}};
    const int obj[3] = {7, 3, 7};
    for (int f = 0; f < 3; f++) {
        put_u8(&b, 0xAB);
        put_u8(&b, (uint8_t)faces[f][0]);
        for (int j = 0; j < faces[f][0]; j++) put_u32(&b, (uint32_t)faces[f][1 + j]);
        put_i32(&b, obj[f]);
        put_i32(&b, 2);
        put_f32(&b, 0.5f);
        put_f32(&b, 0.75f);
    }
    const char *path = put_file("big.ply", b.d, b.n);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "big endian: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_triangles == 4 && s->n_vertices == 5, "big endian: %u triangles %u vertices", s->n_triangles,
          s->n_vertices);
    int ok = 1;
    for (int v = 0; v < 5; v++)
        for (int k = 0; k < 3; k++) ok &= s->vertices[3 * v + k] == (float)xyz[v][k];
    CHECK(ok, "big endian: coordinates");
    CHECK(s->n_objects == 2, "big endian: %u objects", s->n_objects);
    if (s->n_objects == 2) {
        CHECK(!strcmp(s->objects[0].name, "object_3") && s->objects[0].n_tris == 1, "object_3: %s %u",
              s->objects[0].name, s->objects[0].n_tris);
        CHECK(!strcmp(s->objects[1].name, "object_7") && s->objects[1].n_tris == 3, "object_7: %s %u",
              s->objects[1].name, s->objects[1].n_tris);
        /* object_3's triangle is face 1 (2 3 4); object_7 keeps file order: 0 1 2, 0 2 3, 4 0 1. */
        const uint32_t want[12] = {2, 3, 4, 0, 1, 2, 0, 2, 3, 4, 0, 1};
        CHECK(!memcmp(s->indices, want, sizeof want), "regrouped triangle order");
    }
    check_consistent("big endian", s);
    mmd_scene_destroy(s);
}

static void test_ply_int_coords(void)
{
    /* int16 coordinates, material_index per face, upper-case extension. */
    buf b = {.big = 0};
    put_str(&b, "ply\nformat binary_little_endian 1.0\nelement vertex 4\nproperty short x\n"
                "property int16 y\nproperty int16 z\nelement face 2\n"
                "property list uchar int vertex_indices\nproperty uchar material_index\nend_header\n");
    const int16_t v[4][3] = {{0, 0, 0}, {10, 0, 0}, {10, -20, 0}, {0, -20, 5}};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 3; k++) put_i16(&b, v[i][k]);
    put_u8(&b, 3), put_i32(&b, 0), put_i32(&b, 1), put_i32(&b, 2), put_u8(&b, 4);
    put_u8(&b, 3), put_i32(&b, 0), put_i32(&b, 2), put_i32(&b, 3), put_u8(&b, 1);
    const char *path = put_file("INTS.PLY", b.d, b.n);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "int coords: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_triangles == 2 && s->vertices[7] == -20.0f && s->vertices[11] == 5.0f, "int coords values");
    CHECK(s->n_materials == 2 && !strcmp(s->materials[0].name, "material_1") &&
              !strcmp(s->materials[1].name, "material_4"), "material_<i> names");
    CHECK(s->tri_material[0] == 1 && s->tri_material[1] == 0, "per-face materials");
    CHECK(s->n_objects == 1 && !strcmp(s->objects[0].name, "INTS"), "one object");
    check_consistent("int coords", s);
    mmd_scene_destroy(s);
}

static void test_ply_crlf_binary(void)
{
    /* CRLF header before binary data (Windows writers), int8 list counts, an empty element
     * with a huge count and no properties (must not loop), a trailing element. */
    buf b = {.big = 0};
    put_str(&b, "ply\r\nformat binary_little_endian 1.0\r\nelement vertex 3\r\n"
                "property float32 x\r\nproperty float32 y\r\nproperty float32 z\r\n"
                "element nothing 1000000000000\r\n"
                "element face 1\r\nproperty list char uint16 vertex_indices\r\n"
                "element tail 1\r\nproperty double w\r\nend_header\r\n");
    for (int i = 0; i < 9; i++) put_f32(&b, (float)(i + 1));
    put_u8(&b, 3), put_i16(&b, 2), put_i16(&b, 1), put_i16(&b, 0);
    put_f64(&b, 1.0);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(put_file("crlf.ply", b.d, b.n), &s);
    CHECK(st == MMD_OK, "crlf binary: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_triangles == 1 && s->indices[0] == 2 && s->vertices[0] == 1.0f && s->vertices[8] == 9.0f,
          "crlf binary contents");
    mmd_scene_destroy(s);
    b.n -= 4; /* cut into the trailing element: still an error */
    expect_fail("truncated trailing element", put_file("crlf_cut.ply", b.d, b.n), MMD_ERR_PARSE, "truncated");
}

static void write_tri_ply(const char *name, float scale)
{
    char txt[512];
    snprintf(txt, sizeof txt,
             "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
             "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n"
             "0 0 0\n%g 0 0\n0 %g 0\n3 0 1 2\n", scale, scale);
    put_text(name, txt);
}

static void test_mitsuba_features(void)
{
    write_tri_ply("tri.ply", 1.0f);
    const char *xml =
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
        "<!-- a comment with <tags> inside -->\n"
        "<scene version='2.1.0'>\n"
        "  <default name=\"mesh\" value=\"tri\"/>\n"
        "  <bsdf type=\"radio-material\" id=\"custom &amp; co\">\n"
        "    <float name=\"relative_permittivity\" value=\"4.5\"/>\n"
        "    <float name=\"conductivity\" value=\"0.25\"/>\n"
        "    <float name=\"scattering_coefficient\" value=\"0.3\"/>\n"
        "    <float name=\"thickness\" value=\"0.2\"/>\n"
        "  </bsdf>\n"
        "  <bsdf type=\"diffuse\" id=\"plain\"/>\n"
        "  <bsdf type=\"principled\" id=\"itu_wood.001\"><rgb name=\"base_color\" value=\"1 0 0\"/></bsdf>\n"
        "  <shape type=\"ply\" id=\"moved\">\n"
        "    <string name=\"filename\" value=\"$mesh.ply\"/>\n"
        "    <ref id=\"custom &amp; co\" name=\"bsdf\"/>\n"
        "    <transform name=\"to_world\">\n"
        "      <scale value=\"2\"/>\n"
        "      <rotate z=\"1\" angle=\"90\"/>\n"
        "      <translate x=\"1\" y=\"0\" z=\"3\"/>\n"
        "    </transform>\n"
        "  </shape>\n"
        "  <shape type=\"ply\" id=\"nested\">\n"
        "    <string name=\"filename\" value=\"tri.ply\"/>\n"
        "    <bsdf type=\"twosided\" id=\"mat-itu_glass\"><bsdf type=\"diffuse\"/></bsdf>\n"
        "    <transform name=\"to_world\"><matrix value=\"1 0 0 10  0 1 0 20  0 0 1 30  0 0 0 1\"/></transform>\n"
        "  </shape>\n"
        "  <shape type='ply'><string name='filename' value='tri.ply'/><ref id='plain'/></shape>\n"
        "  <shape type='ply' id='w'><string name='filename' value='tri.ply'/><ref id='itu_wood.001'/></shape>\n"
        "</scene>\n";
    const char *path = put_text("features.xml", xml);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "mitsuba features: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_objects == 4 && s->n_triangles == 4, "features: %u objects", s->n_objects);
    CHECK(s->n_materials == 4, "features: %u materials", s->n_materials);
    if (s->n_objects != 4 || s->n_materials != 4) {
        mmd_scene_destroy(s);
        return;
    }
    const mmd_scene_material *m = &s->materials[0];
    CHECK(!strcmp(m->name, "custom & co") && m->kind == MMD_MAT_RADIO, "radio material: %s", m->name);
    CHECK(m->eps_r == 4.5 && m->sigma_s_per_m == 0.25 && m->scattering == 0.3 && m->thickness_m == 0.2,
          "radio-material params");
    CHECK(s->materials[1].kind == MMD_MAT_RADIO && s->materials[1].eps_r == 1.0 &&
              s->materials[1].sigma_s_per_m == 0.0 && s->materials[1].thickness_m == 0.1,
          "plain id -> generic radio material");
    CHECK(s->materials[2].kind == MMD_MAT_ITU && !strcmp(s->materials[2].itu_name, "wood"),
          "itu_wood.001 -> wood (%s)", s->materials[2].itu_name);
    CHECK(s->materials[3].kind == MMD_MAT_ITU && !strcmp(s->materials[3].itu_name, "glass") &&
              s->objects[1].material == 3, "nested bsdf");
    CHECK(!strcmp(s->objects[0].name, "moved") && !strcmp(s->objects[2].name, "tri"), "object names %s %s",
          s->objects[0].name, s->objects[2].name);
    /* scale 2, then rotate +90 deg about z, then translate (1,0,3):
     * (1,0,0) -> (2,0,0) -> (0,2,0) -> (1,2,3); (0,1,0) -> (0,2,0) -> (-2,0,0) -> (-1,0,3). */
    const float *v = s->vertices;
    CHECK_NEAR(v[0], 1, 1e-6, "v0.x");
    CHECK_NEAR(v[2], 3, 1e-6, "v0.z");
    CHECK_NEAR(v[3], 1, 1e-6, "v1.x");
    CHECK_NEAR(v[4], 2, 1e-6, "v1.y");
    CHECK_NEAR(v[5], 3, 1e-6, "v1.z");
    CHECK_NEAR(v[6], -1, 1e-6, "v2.x");
    CHECK_NEAR(v[7], 0, 1e-6, "v2.y");
    CHECK(v[9] == 10 && v[10] == 20 && v[11] == 30, "matrix translate");
    check_consistent("features", s);
    mmd_scene_destroy(s);
}

static void test_yaml_good(void)
{
    write_tri_ply("a.ply", 1.0f);
    write_tri_ply("b.ply", 2.0f);
    const char *path = put_text("list.yml",
                                "name: test\nshapes:\n"
                                "  - {file: a.ply, material: concrete, extra: [1, 2]}\n"
                                "  - file: \"b.ply\"\n    material: ~\n"
                                "  - file: b.ply\n    material: concrete\n");
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load(path, &s);
    CHECK(st == MMD_OK, "yaml: %s", mmd_last_error());
    if (st) return;
    CHECK(s->n_objects == 3 && s->n_materials == 2, "yaml: %u objects %u materials", s->n_objects, s->n_materials);
    CHECK(s->objects[0].material == s->objects[2].material, "materials deduplicated by name");
    CHECK(s->materials[1].kind == MMD_MAT_UNASSIGNED && !strcmp(s->materials[1].name, "unassigned"), "null");
    CHECK(!strcmp(s->objects[1].name, "b"), "object named after the file stem");
    CHECK_NEAR(s->bbox_max[0], 2.0, 0, "bbox");
    mmd_scene_destroy(s);
}

/* ---------------------------------------------------------------------------------- */
/* Bad inputs                                                                          */

static const char *ply_header(const char *fmt, const char *nv, const char *nf)
{
    static char h[512];
    snprintf(h, sizeof h,
             "ply\nformat %s 1.0\nelement vertex %s\nproperty float x\nproperty float y\n"
             "property float z\nelement face %s\nproperty list uchar int vertex_indices\nend_header\n",
             fmt, nv, nf);
    return h;
}

static void test_bad_ply(void)
{
    /* Truncated binary: 4 vertices, 2 faces, cut in the middle of the second face. */
    buf b = {.big = 0};
    put_str(&b, ply_header("binary_little_endian", "4", "2"));
    for (int i = 0; i < 12; i++) put_f32(&b, (float)i);
    put_u8(&b, 3), put_i32(&b, 0), put_i32(&b, 1), put_i32(&b, 2);
    put_u8(&b, 3), put_i32(&b, 0);
    expect_fail("truncated faces", put_file("trunc_face.ply", b.d, b.n), MMD_ERR_PARSE, "truncated");
    b.n = strlen(ply_header("binary_little_endian", "4", "2")) + 20; /* inside the vertices */
    expect_fail("truncated vertices", put_file("trunc_vert.ply", b.d, b.n), MMD_ERR_PARSE,
                "bytes of vertex data");

    expect_fail("index out of range",
                put_text("range.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                      "property float y\nproperty float z\nelement face 2\n"
                                      "property list uchar int vertex_indices\nend_header\n"
                                      "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 99\n"),
                MMD_ERR_INVALID, "face 1: vertex index 99 out of range (file has 3 vertices)");
    expect_fail("negative index",
                put_text("neg.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                    "property float y\nproperty float z\nelement face 1\n"
                                    "property list uchar int vertex_indices\nend_header\n"
                                    "0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n"),
                MMD_ERR_INVALID, "vertex index -1 out of range");
    expect_fail("NaN vertex (ascii)",
                put_text("nan.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                    "property float y\nproperty float z\nelement face 1\n"
                                    "property list uchar int vertex_indices\nend_header\n"
                                    "0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n"),
                MMD_ERR_INVALID, "vertex 1: coordinate is NaN");
    b.n = 0;
    put_str(&b, ply_header("binary_little_endian", "3", "1"));
    for (int i = 0; i < 9; i++) put_f32(&b, i == 7 ? NAN : (float)i);
    put_u8(&b, 3), put_i32(&b, 0), put_i32(&b, 1), put_i32(&b, 2);
    expect_fail("NaN vertex (binary)", put_file("nan_bin.ply", b.d, b.n), MMD_ERR_INVALID,
                "vertex 2: coordinate is NaN");
    b.n = 0;
    put_str(&b, ply_header("binary_little_endian", "3", "1"));
    for (int i = 0; i < 9; i++) put_f32(&b, i == 4 ? INFINITY : (float)i);
    put_u8(&b, 3), put_i32(&b, 0), put_i32(&b, 1), put_i32(&b, 2);
    expect_fail("Inf vertex", put_file("inf.ply", b.d, b.n), MMD_ERR_INVALID, "vertex 1: coordinate is infinite");

    const char *h = ply_header("binary_middle_endian", "3", "1");
    expect_fail("unknown format", put_text("fmt.ply", h), MMD_ERR_PARSE,
                "line 2: unknown PLY format 'binary_middle_endian'");
    expect_fail("2^40 vertices (binary)",
                put_text("huge.ply", ply_header("binary_little_endian", "1099511627776", "1")), MMD_ERR_PARSE,
                "truncated");
    expect_fail("2^40 vertices (ascii)", put_text("huge_a.ply", ply_header("ascii", "1099511627776", "1")),
                MMD_ERR_PARSE, "truncated");
    expect_fail("2^64 vertices", put_text("huge64.ply", ply_header("ascii", "99999999999999999999999", "1")),
                MMD_ERR_PARSE, "too large");
    expect_fail("missing end_header",
                put_text("noend.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                      "property float y\nproperty float z\n"),
                MMD_ERR_PARSE, "end_header");
    expect_fail("end_header missing before data",
                put_text("noend2.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                       "property float y\nproperty float z\n0 0 0\n"),
                MMD_ERR_PARSE, "end_header");
    expect_fail("not a PLY", put_text("junk.ply", "solid foo\n"), MMD_ERR_PARSE, "not a PLY file");
    expect_fail("unknown type",
                put_text("type.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n"),
                MMD_ERR_PARSE, "line 4: unknown property type 'quad'");
    expect_fail("no x", put_text("nox.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float y\nend_header\n1\n"),
                MMD_ERR_PARSE, "no property 'x'");
    expect_fail("two-vertex face",
                put_text("line.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                     "property float y\nproperty float z\nelement face 1\n"
                                     "property list uchar int vertex_indices\nend_header\n"
                                     "0 0 0\n1 0 0\n0 1 0\n2 0 1\n"),
                MMD_ERR_INVALID, "face 0: has 2 vertices");
    expect_fail("bad number",
                put_text("word.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                     "property float y\nproperty float z\nend_header\n0 zero 0\n"),
                MMD_ERR_PARSE, "line 8: expected a number for property 'y' of vertex 0");
    expect_fail("ascii data ends early",
                put_text("short.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                      "property float y\nproperty float z\nelement face 1\n"
                                      "property list uchar int vertex_indices\nend_header\n"
                                      "0 0 0\n1 0 0\n0 1 0\n3 0 1\n"),
                MMD_ERR_PARSE, "truncated");
    char empty[600];
    snprintf(empty, sizeof empty, "%s0 0 0\n1 0 0\n0 1 0\n", ply_header("ascii", "3", "0"));
    expect_fail("empty scene", put_text("empty.ply", empty), MMD_ERR_INVALID, "scene has no triangles");
    expect_fail("no face element",
                put_text("points.ply", "ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\n"
                                       "property float y\nproperty float z\nend_header\n0 0 0\n"),
                MMD_ERR_INVALID, "scene has no triangles");
    expect_fail("empty file", put_text("zero.ply", ""), MMD_ERR_PARSE, "end_header");
    char missing[600];
    snprintf(missing, sizeof missing, "%s/does_not_exist.ply", g_dir);
    expect_fail("missing file", missing, MMD_ERR_IO, "cannot open");
    snprintf(missing, sizeof missing, "%s/does_not_exist.yaml", g_dir);
    expect_fail("missing yaml", missing, MMD_ERR_IO, "cannot open");
    expect_fail("unknown extension", put_text("scene.obj", "v 0 0 0\n"), MMD_ERR_INVALID, "unknown scene format");
}

static void test_bad_xml(void)
{
    write_tri_ply("ok.ply", 1.0f);
    expect_fail("missing PLY",
                put_text("missing.xml", "<scene version=\"2.1.0\">\n"
                                        "  <bsdf type=\"itu-radio-material\" id=\"m\"><string name=\"type\" value=\"metal\"/></bsdf>\n"
                                        "  <shape type=\"ply\" id=\"mesh-gone\">\n"
                                        "    <string name=\"filename\" value=\"meshes/gone.ply\"/>\n"
                                        "    <ref id=\"m\" name=\"bsdf\"/>\n  </shape>\n</scene>\n"),
                MMD_ERR_IO, "missing.xml:3: shape 'mesh-gone'");
    CHECK(strstr(mmd_last_error(), "meshes/gone.ply") != NULL, "missing PLY path named: %s", mmd_last_error());
    expect_fail("unclosed element",
                put_text("unclosed.xml", "<scene>\n  <shape type=\"ply\">\n    <string name=\"filename\" "
                                         "value=\"ok.ply\"/>\n</scene>\n"),
                MMD_ERR_PARSE, "unclosed.xml:4: closing tag </scene> does not match <shape> opened at line 2");
    expect_fail("never closed", put_text("open.xml", "<scene>\n  <shape type=\"ply\">\n"), MMD_ERR_PARSE,
                "never closed");
    expect_fail("unterminated tag", put_text("tag.xml", "<scene>\n<shape type=\"ply\"\n"), MMD_ERR_PARSE,
                "expected '>'");
    expect_fail("unterminated comment", put_text("comment.xml", "<scene>\n<!-- oops\n</scene>\n"), MMD_ERR_PARSE,
                "comment.xml:2: unterminated comment");
    expect_fail("bad entity", put_text("ent.xml", "<scene>\n<bsdf id=\"a &nbsp; b\" type=\"diffuse\"/></scene>\n"),
                MMD_ERR_PARSE, "ent.xml:2: unknown entity");
    expect_fail("unknown itu (string type)",
                put_text("itu.xml", "<scene>\n  <bsdf type=\"itu-radio-material\" id=\"x\">\n"
                                    "    <string name=\"type\" value=\"unobtainium\"/>\n  </bsdf>\n</scene>\n"),
                MMD_ERR_INVALID, "itu.xml:3: bsdf 'x': unknown ITU material 'unobtainium' (expected one of: vacuum");
    expect_fail("unknown itu (id)",
                put_text("itu2.xml", "<scene>\n<bsdf type=\"twosided\" id=\"mat-itu_cheese\"/>\n</scene>\n"),
                MMD_ERR_INVALID, "itu2.xml:2: bsdf 'mat-itu_cheese': unknown ITU material 'cheese'");
    expect_fail("unsupported shape",
                put_text("obj.xml", "<scene>\n<shape type=\"obj\" id=\"o\"><string name=\"filename\" "
                                    "value=\"x.obj\"/></shape>\n</scene>\n"),
                MMD_ERR_PARSE, "obj.xml:2: shape 'o': unsupported shape type 'obj'");
    expect_fail("unknown bsdf ref",
                put_text("ref.xml", "<scene>\n<shape type=\"ply\"><string name=\"filename\" value=\"ok.ply\"/>\n"
                                    "<ref id=\"nope\"/></shape>\n</scene>\n"),
                MMD_ERR_INVALID, "ref.xml:3: shape (no id) references unknown bsdf 'nope'");
    expect_fail("wrong root", put_text("root.xml", "<mesh/>\n"), MMD_ERR_PARSE, "expected <scene>");
    expect_fail("no shapes", put_text("noshape.xml", "<scene/>\n"), MMD_ERR_INVALID, "scene has no triangles");
    expect_fail("bad shape PLY",
                put_text("badply.xml", "<scene>\n<shape type=\"ply\"><string name=\"filename\" value=\"huge.ply\"/>"
                                       "</shape>\n</scene>\n"),
                MMD_ERR_PARSE, "badply.xml:2: shape (no id): ");
}

static void test_bad_yaml(void)
{
    write_tri_ply("y.ply", 1.0f);
    expect_fail("unknown material",
                put_text("badmat.yaml", "name: x\nshapes:\n  - file: y.ply\n    material: \"unobtainium\"\n"),
                MMD_ERR_INVALID, "badmat.yaml:4:15: unknown material 'unobtainium' (expected one of: vacuum");
    expect_fail("malformed yaml", put_text("broken.yaml", "shapes:\n  - file: [y.ply\n    material: metal\n"),
                MMD_ERR_PARSE, "broken.yaml:");
    expect_fail("tab indentation", put_text("tab.yaml", "shapes:\n\t- file: y.ply\n"), MMD_ERR_PARSE, "tab.yaml:2:");
    expect_fail("missing shapes", put_text("noshapes.yaml", "name: x\n"), MMD_ERR_PARSE, "no 'shapes:' list");
    expect_fail("shape without file", put_text("nofile.yaml", "shapes:\n  - material: metal\n"), MMD_ERR_PARSE,
                "nofile.yaml:2:5: shapes[0] has no 'file'");
    expect_fail("missing shape file", put_text("gone.yaml", "shapes:\n  - file: gone.ply\n    material: metal\n"),
                MMD_ERR_IO, "gone.yaml:2:11: shapes[0] 'gone.ply'");
    expect_fail("empty yaml", put_text("empty.yaml", ""), MMD_ERR_PARSE, "empty YAML document");
    expect_fail("quoted null is a name",
                put_text("qnull.yaml", "shapes:\n  - file: y.ply\n    material: \"null\"\n"), MMD_ERR_INVALID,
                "unknown material 'null'");
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/mmd_test_scene_XXXXXX");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_sionna();
    test_indoor();
    test_ply_ascii();
    test_ply_big_endian();
    test_ply_int_coords();
    test_ply_crlf_binary();
    test_mitsuba_features();
    test_yaml_good();
    test_bad_ply();
    test_bad_xml();
    test_bad_yaml();

    CHECK(mmd_itu_known("concrete") && mmd_itu_known("wet_ground") && !mmd_itu_known("Concrete") &&
              !mmd_itu_known(NULL), "mmd_itu_known");
    mmd_scene_destroy(NULL);

    for (int i = 0; i < g_n_files; i++) unlink(g_files[i]);
    CHECK(rmdir(g_dir) == 0, "temp dir %s not empty", g_dir);
    return TEST_DONE();
}
