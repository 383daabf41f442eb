/* The bad-input catalogue (docs/errors.md) as a test: every row writes one malformed input
 * into a temporary directory, runs the mmdiff command a user would run on it (MMD_BIN; or,
 * for checkpoints, which only `calibrate --resume` reads after building its device state,
 * the library loader) and checks the exit code and the exact error line. The same rows
 * must appear in docs/errors.md with the same message, so the catalogue cannot drift from
 * what the program says. `test_errors --print` prints ID, exit code and message of every
 * row as the program produces them, `--markdown` the same as rows of the docs table (to
 * update both after a deliberate change). */
#include <errno.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mmd_io.h"
#include "mmd_mlp.h"
#include "mmd_plot.h"
#include "mmd_test.h"
#include "mmd_train.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MMD_HAS_ASAN 1
#endif
#endif
#ifndef MMD_HAS_ASAN
#define MMD_HAS_ASAN 0
#endif

static char g_dir[] = "/tmp/mmd_errors_XXXXXX";
static char g_real[4096]; /* g_dir with symlinks resolved: messages may show either */
static const char *g_bin;

/* A file of a row: content may hold NUL bytes (len), or "@NAME" to copy base file NAME. */
typedef struct tfile {
    const char *name, *content;
    size_t len;
} tfile;

typedef struct row {
    const char *id;      /* stable name, also the row's key in docs/errors.md */
    const char *what;    /* the malformed input, in words (docs only) */
    tfile files[8];
    const char *args;    /* mmdiff arguments, run in the row's directory; NULL: lib() */
    mmd_status (*lib)(const char *dir);
    int rc;              /* expected exit code (library rows: the mmd_status) */
    const char *message; /* the exact message after "mmdiff: error: "; DIR = the row's directory */
} row;

#define F(name, s) {name, s, sizeof(s) - 1}
#define PLY_HEAD "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
#define PLY_FACE "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
#define PLY_TRI "0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n"
#define EXP_OK "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses: [{position_m: [0.5, 0.5, 1]}]}\n"
#define MAN_HEAD "format: mmdiff-measurements-1\nfrequency_hz: 60e9\nazimuth_deg: [0, 2, 1]\nelevation_deg: [0, 1, 1]\n"
#define EVAL "evaluate ../exp.yaml --pred ../pred.npy --truth ."
#define NPY_V1(hdr) "\x93NUMPY\x01\x00" hdr
#define GW_OK "gateway1:\n  position: [5.0, 0.26, 0]\n  orientation: [0.5, -0.5, -0.5, 0.5]\n"

static mmd_status ck_read(const char *dir);
static mmd_status geo_read(const char *dir);
static mmd_status mlp_read(const char *dir);
#define MLP_HEAD "format: mmdiff-mlp\nversion: 1\ninput: {octaves: 0}\ninit: {seed: 1}\n"
#define MLP_OK_TENSORS \
    "tensors:\n  - {name: layer0_weight, file: layer0_weight.npy}\n  - {name: layer0_bias, file: layer0_bias.npy}\n" \
    "  - {name: layer1_weight, file: layer1_weight.npy}\n  - {name: layer1_bias, file: layer1_bias.npy}\n" \
    "adam: {step: 3, m: adam_m.npy, v: adam_v.npy}\n"
#define MLP_FILES F("layer0_weight.npy", "@mlp/layer0_weight.npy"), F("layer0_bias.npy", "@mlp/layer0_bias.npy"), \
    F("layer1_weight.npy", "@mlp/layer1_weight.npy")

static const row rows[] = {
    /* ---- PLY (mmdiff info) ---- */
    {"ply-magic", "first line is not `ply`", {F("bad.ply", "PLY\nformat ascii 1.0\n")}, "info bad.ply", NULL, 1, "bad.ply: line 1: not a PLY file (first line must be 'ply')"},
    {"ply-format", "unknown format", {F("bad.ply", "ply\nformat binary_middle_endian 1.0\nend_header\n")}, "info bad.ply", NULL, 1, "bad.ply: line 2: unknown PLY format 'binary_middle_endian' (expected ascii, binary_little_endian or binary_big_endian)"},
    {"ply-no-end-header", "header never ends", {F("bad.ply", PLY_HEAD)}, "info bad.ply", NULL, 1, "bad.ply: line 6: file ends before end_header"},
    {"ply-count-word", "element count is not a number", {F("bad.ply", "ply\nformat ascii 1.0\nelement vertex three\n")}, "info bad.ply", NULL, 1, "bad.ply: line 3: element count 'three' is not a non-negative integer"},
    {"ply-huge-count", "header claims 2^40 vertices in a tiny binary file (no allocation is attempted)",
     {F("bad.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 1099511627776\nproperty float x\nproperty float y\n"
                   "property float z\nend_header\n\0\0\0\0")}, "info bad.ply", NULL, 1, "bad.ply: truncated: expected 13194139533312 bytes of vertex data (1099511627776 elements), file ends after 4"},
    {"ply-huge-ascii", "ASCII header claims 2^40 vertices",
     {F("bad.ply", "ply\nformat ascii 1.0\nelement vertex 1099511627776\nproperty float x\nproperty float y\n"
                   "property float z\nend_header\n0 0 0\n")}, "info bad.ply", NULL, 1, "bad.ply: truncated: header line 3 declares 1099511627776 vertex elements but only 6 bytes of data follow the header"},
    {"ply-count-overflow", "element count beyond 2^64", {F("bad.ply", "ply\nformat ascii 1.0\nelement vertex 99999999999999999999999\n")}, "info bad.ply", NULL, 1, "bad.ply: line 3: element count is too large"},
    {"ply-property-first", "property before any element", {F("bad.ply", "ply\nformat ascii 1.0\nproperty float x\n")}, "info bad.ply", NULL, 1, "bad.ply: line 3: property before any element"},
    {"ply-property-type", "unknown property type", {F("bad.ply", "ply\nformat ascii 1.0\nelement vertex 3\nproperty float128 x\n")}, "info bad.ply", NULL, 1, "bad.ply: line 4: unknown property type 'float128'"},
    {"ply-no-z", "vertex element without z", {F("bad.ply", "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nend_header\n")}, "info bad.ply", NULL, 1, "bad.ply: line 3: element vertex has no property 'z'"},
    {"ply-float-indices", "face indices of a float type",
     {F("bad.ply", PLY_HEAD "element face 1\nproperty list uchar float vertex_indices\nend_header\n" PLY_TRI)}, "info bad.ply", NULL, 1, "bad.ply: line 8: face property 'vertex_indices' must have an integer item type"},
    {"ply-truncated", "binary data ends early",
     {F("bad.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
                   PLY_FACE "\x01\x02")}, "info bad.ply", NULL, 1, "bad.ply: truncated: expected 36 bytes of vertex data (3 elements), file ends after 2"},
    {"ply-index-range", "face index out of range", {F("bad.ply", PLY_HEAD PLY_FACE "0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n")}, "info bad.ply", NULL, 1, "bad.ply: face 0: vertex index 7 out of range (file has 3 vertices)"},
    {"ply-nan", "NaN coordinate", {F("bad.ply", PLY_HEAD PLY_FACE "0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n")}, "info bad.ply", NULL, 1, "bad.ply: vertex 1: coordinate is NaN (x)"},
    {"ply-float-range", "coordinate beyond float range", {F("bad.ply", PLY_HEAD PLY_FACE "0 0 0\n1e39 0 0\n0 1 0\n3 0 1 2\n")}, "info bad.ply", NULL, 1, "bad.ply: vertex 1: coordinate is infinite or beyond float range (x = 1e+39)"},
    {"ply-two-vertex-face", "face with 2 vertices", {F("bad.ply", PLY_HEAD PLY_FACE "0 0 0\n1 0 0\n0 1 0\n2 0 1\n")}, "info bad.ply", NULL, 1, "bad.ply: face 0: has 2 vertices (need at least 3)"},
    {"ply-ascii-word", "a word where a number belongs", {F("bad.ply", PLY_HEAD PLY_FACE "0 0 0\n1 zero 0\n0 1 0\n3 0 1 2\n")}, "info bad.ply", NULL, 1, "bad.ply: line 11: expected a number for property 'y' of vertex 1"},
    {"ply-negative-list", "negative list length", {F("bad.ply", PLY_HEAD "element face 1\nproperty list char int vertex_indices\nend_header\n" "0 0 0\n1 0 0\n0 1 0\n-3 0 1 2\n")}, "info bad.ply", NULL, 1, "bad.ply: face 0: negative list length -3"},
    {"ply-empty", "no faces: an empty scene", {F("bad.ply", PLY_HEAD "end_header\n0 0 0\n1 0 0\n0 1 0\n")}, "info bad.ply", NULL, 1, "bad.ply: scene has no triangles"},
    {"ply-missing", "file does not exist", {{NULL, NULL, 0}}, "info missing.ply", NULL, 1, "missing.ply: cannot open: No such file or directory"},
    /* ---- Mitsuba XML (mmdiff info) ---- */
    {"xml-unclosed", "element never closed", {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\">\n")}, "info bad.xml", NULL, 1, "bad.xml:3: element <shape> opened at line 2 is never closed"},
    {"xml-no-filename", "shape without a filename", {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\"/>\n</scene>\n")}, "info bad.xml", NULL, 1, "bad.xml:2: shape 'a' has no <string name=\"filename\" value=..>"},
    {"xml-unknown-itu", "unknown ITU material",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<bsdf type=\"itu-radio-material\" id=\"m\">\n<string name=\"type\" value=\"unobtainium\"/>\n</bsdf>\n"
                   "<shape type=\"ply\" id=\"a\">\n<string name=\"filename\" value=\"../room.ply\"/>\n<ref id=\"m\" name=\"bsdf\"/>\n</shape>\n</scene>\n")},
     "info bad.xml", NULL, 1, "bad.xml:3: bsdf 'm': unknown ITU material 'unobtainium' (expected one of: vacuum, concrete, brick, plasterboard, wood, glass, ceiling_board, chipboard, plywood, marble, floorboard, metal, very_dry_ground, medium_dry_ground, wet_ground)"},
    {"xml-unknown-ref", "reference to an undefined bsdf",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\">\n<string name=\"filename\" value=\"../room.ply\"/>\n<ref id=\"nope\" name=\"bsdf\"/>\n</shape>\n</scene>\n")},
     "info bad.xml", NULL, 1, "bad.xml:4: shape 'a' references unknown bsdf 'nope'"},
    {"xml-missing-ply", "shape names a missing PLY",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\">\n<string name=\"filename\" value=\"meshes/none.ply\"/>\n</shape>\n</scene>\n")},
     "info bad.xml", NULL, 1, "bad.xml:2: shape 'a': meshes/none.ply: cannot open: No such file or directory"},
    {"xml-matrix", "transform matrix with 15 numbers",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\">\n<string name=\"filename\" value=\"../room.ply\"/>\n<transform name=\"to_world\">\n"
                   "<matrix value=\"1 0 0 0 0 1 0 0 0 0 1 0 0 0 0\"/>\n</transform>\n</shape>\n</scene>\n")},
     "info bad.xml", NULL, 1, "bad.xml:5: <matrix> value must hold 16 (or 9) numbers"},
    {"xml-mismatched", "closing tag does not match", {F("bad.xml", "<scene version=\"2.1.0\">\n<shape type=\"ply\" id=\"a\">\n</scene>\n")}, "info bad.xml", NULL, 1, "bad.xml:3: closing tag </scene> does not match <shape> opened at line 2"},
    {"xml-default-bomb", "eight `<default>`s, each ten `$ref`s to the one before (600 MB from 654 bytes before the fix)",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<default name=\"a0\" value=\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                   "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"/>\n<default name=\"a1\" value=\"$a0$a0$a0$a0$a0$a0$a0$a0$a0$a"
                   "0\"/>\n<default name=\"a2\" value=\"$a1$a1$a1$a1$a1$a1$a1$a1$a1$a1\"/>\n<default name=\"a3\" value=\"$a2$a2$a2"
                   "$a2$a2$a2$a2$a2$a2$a2\"/>\n<default name=\"a4\" value=\"$a3$a3$a3$a3$a3$a3$a3$a3$a3$a3\"/>\n<default name=\"a5"
                   "\" value=\"$a4$a4$a4$a4$a4$a4$a4$a4$a4$a4\"/>\n<default name=\"a6\" value=\"$a5$a5$a5$a5$a5$a5$a5$a5$a5$a5\"/>"
                   "\n<default name=\"a7\" value=\"$a6$a6$a6$a6$a6$a6$a6$a6$a6$a6\"/>\n<shape type=\"ply\" id=\"s\"><string name=\""
                   "filename\" value=\"$a7\"/></shape>\n</scene>\n")}, "info bad.xml", NULL, 1, "bad.xml:8: attribute 'value': $name substitution of <default> values expands to more than 16 MiB (defaults that nest other defaults?)"},
    {"xml-duplicate-bsdf", "two bsdfs with the same id",
     {F("bad.xml", "<scene version=\"2.1.0\">\n<bsdf type=\"diffuse\" id=\"a\"/>\n<bsdf type=\"diffuse\" id=\"b\"/>\n"
                   "<bsdf type=\"diffuse\" id=\"b\"/>\n<bsdf type=\"diffuse\" id=\"a\"/>\n</scene>\n")}, "info bad.xml", NULL, 1, "bad.xml:4: bsdf id 'b' already defined at line 3"},
    {"xml-many-bsdfs", "100000 bsdfs, the last repeating the first's id (ids were compared pairwise: 5 x 10^9 comparisons)",
     {F("bad.xml", "@many_bsdfs.xml")}, "info bad.xml", NULL, 1, "bad.xml:100002: bsdf id 'b0' already defined at line 2"},
    {"xml-many-attributes", "one element with 100000 attributes (checked pairwise for repeats: 5 x 10^9 comparisons)",
     {F("bad.xml", "@many_attributes.xml")}, "info bad.xml", NULL, 1, "bad.xml:2: more than 64 attributes in <shape>"},
    {"xml-many-defaults", "100000 `<default>`s and 300000 `$ref`s, all to empty values (was 10^10 name comparisons: minutes)",
     {F("bad.xml", "@many_defaults.xml")}, "info bad.xml", NULL, 1, "bad.xml:100003: bsdf 'm': unknown ITU material '$d99999metal' (expected one of: vacuum, concrete, brick, plasterboard, wood, glass, ceiling_board, chipboard, plywood, marble, floorboard, metal, very_dry_ground, medium_dry_ground, wet_ground)"},
    /* ---- scene YAML (mmdiff info) ---- */
    {"scene-yaml-syntax", "YAML syntax error", {F("bad.yaml", "shapes:\n  - {file: a.ply\n")}, "info bad.yaml", NULL, 1, "bad.yaml:3:1: did not find expected ',' or '}' while parsing a flow mapping (started at line 2)"},
    {"scene-yaml-no-shapes", "no shapes list", {F("bad.yaml", "name: room\n")}, "info bad.yaml", NULL, 1, "bad.yaml: no 'shapes:' list (expected shapes: [{file: .., material: ..}, ...])"},
    {"scene-yaml-no-file", "entry without file", {F("bad.yaml", "shapes:\n  - {material: concrete}\n")}, "info bad.yaml", NULL, 1, "bad.yaml:2:5: shapes[0] has no 'file'"},
    {"scene-yaml-material", "unknown ITU material", {F("bad.yaml", "shapes:\n  - {file: ../room.ply, material: adamantium}\n")}, "info bad.yaml", NULL, 1, "bad.yaml:2:35: unknown material 'adamantium' (expected one of: vacuum, concrete, brick, plasterboard, wood, glass, ceiling_board, chipboard, plywood, marble, floorboard, metal, very_dry_ground, medium_dry_ground, wet_ground, or null)"},
    {"scene-yaml-null-number", "material parameter with no value (read through a NULL pointer before; found by fuzz_scene_yaml)",
     {F("bad.yaml", "shapes:\n  - {file: ../room.ply, material: {name: m0, eps_r: }}\n")}, "info bad.yaml", NULL, 1, "bad.yaml:2:53: material 'eps_r': expected a number in [0, 1e+09], got ''"},
    {"scene-yaml-missing-mesh", "entry names a missing mesh", {F("bad.yaml", "shapes:\n  - {file: none.ply, material: concrete}\n")}, "info bad.yaml", NULL, 1, "bad.yaml:2:12: shapes[0] 'none.ply': none.ply: cannot open: No such file or directory"},
    {"scene-yaml-device-file", "entry names a device, not a file (read without end before; found by review of fuzz_scene_yaml)", {F("bad.yaml", "shapes:\n  - {file: /dev/zero, material: concrete}\n")}, "info bad.yaml", NULL, 1, "bad.yaml:2:12: shapes[0] '/dev/zero': /dev/zero: not a regular file (expected a file to read)"},
    /* ---- YAML, any reader (found by fuzzing / review; the experiment loader here) ---- */
    {"yaml-alias-nodes", "aliases of aliases expanding to 10^6 nodes (billion laughs)",
     {F("exp.yaml", "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n")},
     "simulate exp.yaml", NULL, 1, "exp.yaml:5:36: aliases expand to more than 100000 nodes (alias expansion bomb?)"},
    {"yaml-alias-bytes", "a 200 kB scalar aliased 30000 times (6 GB once expanded; 320 kB file)", {F("exp.yaml", "@alias_bytes.yaml")},
     "simulate exp.yaml", NULL, 1, "exp.yaml:2:337: aliases expand to more than 16 MiB of text (alias expansion bomb?)"},
    {"yaml-many-keys", "200000 keys in one mapping (duplicate-key check was quadratic: minutes)", {F("exp.yaml", "@many_keys.yaml")},
     "simulate exp.yaml", NULL, 1, "exp.yaml:1:1: unknown key 'k0'; valid top-level keys: name, description, scene, tx, rx, aoa, solver, coverage, train, calibrate_geometry, dataset, evaluate, output"},
    /* ---- experiment YAML and --set (mmdiff simulate; fails before any device work) ---- */
    {"exp-syntax", "YAML syntax error", {F("exp.yaml", "scene: {file: ../room.ply\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:2:1: did not find expected ',' or '}' while parsing a flow mapping (started at line 1, column 8)"},
    {"exp-unknown-key", "misspelt key", {F("exp.yaml", EXP_OK "solver: {rayz: 10}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:10: unknown key 'solver.rayz' (did you mean 'rays'?); valid keys in solver: mode, rays, max_depth, alpha_r, diffuse, transmission, polarization, seed, cache_mb, normal_radius_m"},
    {"exp-not-integer", "word where an integer belongs", {F("exp.yaml", EXP_OK "solver: {rays: many}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:16: solver.rays: expected an integer in [1, 2^31-1], got 'many'"},
    {"exp-range", "value out of range", {F("exp.yaml", EXP_OK "solver: {max_depth: -1}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:21: solver.max_depth: expected an integer in [0, 32], got '-1'"},
    {"exp-enum", "unknown enumeration value", {F("exp.yaml", EXP_OK "solver: {mode: psychic}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:16: solver.mode: expected one of directional, specular, got 'psychic'"},
    {"exp-grid", "AoA grid with a zero step", {F("exp.yaml", EXP_OK "aoa: {azimuth_deg: [0, 10, 0]}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:20: aoa.azimuth_deg: expected [start, stop, step] in deg with -360 <= start <= stop <= 360, step > 0 and stop - start a whole number of steps spanning at most 360, got [0, 10, 0]"},
    {"exp-duplicate", "duplicate key", {F("exp.yaml", EXP_OK "tx: {position_m: [0, 0, 0]}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:4:1: duplicate key 'tx' (first at line 2, column 1)"},
    {"exp-not-map", "document is a list", {F("exp.yaml", "- scene\n- tx\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:1:1: expected the experiment as a mapping with keys name, description, scene, tx, rx, aoa, solver, coverage, train, calibrate_geometry, dataset, evaluate, output"},
    {"exp-poses-both", "rx.poses and rx.poses_csv together", {F("exp.yaml", "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses: [{position_m: [0.5, 0.5, 1]}], poses_csv: p.csv}\n")}, "simulate exp.yaml", NULL, 1, "exp.yaml:3:55: rx.poses_csv: give either rx.poses (a list) or rx.poses_csv (a file), not both"},
    {"set-unknown-key", "--set of an unknown key", {F("exp.yaml", EXP_OK)}, "simulate exp.yaml --set solver.rayz=5", NULL, 1, "--set solver.rayz=5: unknown key 'solver.rayz' (did you mean 'rays'?); valid keys in solver: mode, rays, max_depth, alpha_r, diffuse, transmission, polarization, seed, cache_mb, normal_radius_m"},
    {"set-bad-value", "--set value of the wrong type", {F("exp.yaml", EXP_OK)}, "simulate exp.yaml --set solver.rays=abc", NULL, 1, "--set solver.rays=abc: solver.rays: expected an integer in [1, 2^31-1], got 'abc'"},
    {"set-no-equals", "--set without '='", {F("exp.yaml", EXP_OK)}, "simulate exp.yaml --set solver.rays", NULL, 1, "--set solver.rays: expected KEY=VALUE (e.g. --set solver.rays=1000)"},
    {"set-index", "--set of a list item that does not exist", {F("exp.yaml", EXP_OK)}, "simulate exp.yaml --set rx.poses.5.yaw_deg=3", NULL, 1, "--set rx.poses.5.yaw_deg=3: no item 5 in 'rx.poses' (it has 1)"},
    {"set-flow", "--set with a malformed flow value", {F("exp.yaml", EXP_OK)}, "simulate exp.yaml --set 'tx.position_m=[1, 2'", NULL, 1, "--set tx.position_m=[1, 2: did not find expected ',' or ']' while parsing a flow sequence"},
    /* ---- pose CSV (rx.poses_csv, mmdiff simulate) ---- */
    {"csv-no-column", "header without z_m",
     {F("exp.yaml", "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses_csv: p.csv}\n"), F("p.csv", "x_m,y_m\n1,2\n")}, "simulate exp.yaml", NULL, 1, "DIR/p.csv:1: missing column 'z_m' in the header (expected the columns x_m,y_m,z_m and optionally yaw_deg,pitch_deg,roll_deg, in any order)"},
    {"csv-not-number", "a word in a number column",
     {F("exp.yaml", "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses_csv: p.csv}\n"), F("p.csv", "x_m,y_m,z_m\n1,2,3\n1,two,3\n")}, "simulate exp.yaml", NULL, 1, "DIR/p.csv:3: field 'y_m' (column 2): \"two\" is not a number"},
    {"csv-short-row", "a row with too few fields",
     {F("exp.yaml", "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses_csv: p.csv}\n"), F("p.csv", "x_m,y_m,z_m,yaw_deg\n1,2,3,4\n1,2\n")}, "simulate exp.yaml", NULL, 1, "DIR/p.csv:3: expected 4 fields (as in the header on line 1), got 2"},
    {"csv-empty", "empty file", {F("exp.yaml", "scene: {file: ../room.ply}\ntx: {position_m: [1, 2, 3]}\nrx: {poses_csv: p.csv}\n"), F("p.csv", "")}, "simulate exp.yaml", NULL, 1, "DIR/p.csv: no header line; expected x_m,y_m,z_m,yaw_deg,pitch_deg,roll_deg"},
    /* ---- NPY (mmdiff evaluate --pred FILE.npy) ---- */
    {"npy-magic", "not an NPY file", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", "PK\x03\x04 zip file")}, EVAL, NULL, 1, "../pred.npy: not an NPY file (expected the magic \"\\x93NUMPY\" and a version in the first 8 bytes)"},
    {"npy-dtype", "int16 data", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", NPY_V1("\x76\x00" "{'descr': '<i2', 'fortran_order': False, 'shape': (3,), }                                                            \n" "\0\0\0\0\0\0"))}, EVAL, NULL, 1, "../pred.npy: unsupported NPY dtype '<i2'; expected float32 or float64 ('<f4', '>f4', '<f8', '>f8')"},
    {"npy-fortran", "Fortran order", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", NPY_V1("\x76\x00" "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }                                                             \n" "\0\0\0\0"))}, EVAL, NULL, 1, "../pred.npy: NPY array is in Fortran (column-major) order; expected C order (save with np.ascontiguousarray)"},
    {"npy-truncated", "data shorter than the shape", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", NPY_V1("\x76\x00" "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }                                                          \n" "\0\0\0\0"))}, EVAL, NULL, 1, "../pred.npy: NPY data size mismatch: shape (2, 3) of 4-byte elements needs 24 bytes after the header, the file has 4 (truncated?)"},
    {"npy-huge", "shape of 2^40 elements in a tiny file (no allocation is attempted)", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", NPY_V1("\x76\x00" "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }                                                \n" "\0\0\0\0"))}, EVAL, NULL, 1, "../pred.npy: NPY shape (1099511627776,) claims 1.1e+12 elements, more than the limit of 17179869184; refusing it"},
    {"npy-header", "header dict with an unknown key", {F("manifest.yaml", "@manifest.yaml"), F("../pred.npy", NPY_V1("\x76\x00" "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}                                                      \n" "\0\0\0\0"))}, EVAL, NULL, 1, "../pred.npy: malformed NPY header: unexpected key 'x' (expected exactly 'descr', 'fortran_order' and 'shape')"},
    /* ---- measurement manifest (mmdiff evaluate --truth DIR) ---- */
    {"manifest-format", "unknown format", {F("manifest.yaml", "format: mmdiff-measurements-9\nfrequency_hz: 60e9\n")}, EVAL, NULL, 1, "./manifest.yaml:1:9: format: 'mmdiff-measurements-9' is not a format this version reads; expected mmdiff-measurements-1"},
    {"manifest-frequency", "frequency missing", {F("manifest.yaml", "format: mmdiff-measurements-1\nazimuth_deg: [0, 2, 1]\n")}, EVAL, NULL, 1, "./manifest.yaml: frequency_hz: missing; expected the carrier frequency in Hz"},
    {"manifest-grid", "grid that is not [start, stop, step]", {F("manifest.yaml", "format: mmdiff-measurements-1\nfrequency_hz: 60e9\nazimuth_deg: [0, 2]\nelevation_deg: [0, 1, 1]\n")}, EVAL, NULL, 1, "./manifest.yaml:3:14: azimuth_deg: expected [start, stop, step] (three finite numbers, degrees)"},
    {"manifest-units", "unknown units", {F("manifest.yaml", MAN_HEAD "units: watts\n")}, EVAL, NULL, 1, "./manifest.yaml:5:8: units: 'watts' unknown; expected linear_power or db"},
    {"manifest-shape", "shape disagrees with the data", {F("manifest.yaml", MAN_HEAD "shape: [5, 2, 3]\n"), F("poses.csv", "@poses.csv"), F("spectra.npy", "@spectra.npy")}, EVAL, NULL, 1, "./manifest.yaml:5:8: shape: [5, 2, 3] disagrees with the data: 1 poses in ./poses.csv, 2 x 3 bins from elevation_deg x azimuth_deg"},
    {"manifest-spectra-shape", "spectra NPY of the wrong shape", {F("manifest.yaml", "format: mmdiff-measurements-1\nfrequency_hz: 60e9\nazimuth_deg: [0, 3, 1]\nelevation_deg: [0, 1, 1]\n"), F("poses.csv", "@poses.csv"), F("spectra.npy", "@spectra.npy")}, EVAL, NULL, 1, "./spectra.npy: spectra: shape (1, 2, 3); expected (1, 2, 4) = (poses in ./poses.csv, elevation bins of elevation_deg, azimuth bins of azimuth_deg) as given by ./manifest.yaml"},
    {"manifest-negative", "negative power", {F("manifest.yaml", MAN_HEAD), F("poses.csv", "@poses.csv"), F("spectra.npy", "@negative.npy")}, EVAL, NULL, 1, "./spectra.npy: pose 0, bin [elevation 1, azimuth 1]: power -0.5; expected a finite linear power >= 0 (units: linear_power)"},
    {"manifest-no-poses", "poses CSV with a header only", {F("manifest.yaml", MAN_HEAD), F("poses.csv", "x_m,y_m,z_m\n"), F("spectra.npy", "@spectra.npy")}, EVAL, NULL, 1, "./poses.csv: no poses (a header and no rows); a measurement set needs at least one"},
    {"manifest-missing", "directory without a manifest", {{NULL, NULL, 0}}, EVAL, NULL, 1, "./manifest.yaml: cannot open the measurement manifest: No such file or directory"},
    /* ---- NeRF² directory (mmdiff import-nerf2) ---- */
    {"nerf2-gateway", "gateway_info.yml without gateway1", {F("gateway_info.yml", "dataset_name: s23\n"), F("tx_pos.csv", "x,y,z\n0,0,1\n")}, "import-nerf2 . out", NULL, 1, "./gateway_info.yml: gateway1: missing; expected a map {position: [x, y, z], orientation: [x, y, z, w]}"},
    {"nerf2-quaternion", "orientation that is not a unit quaternion", {F("gateway_info.yml", "gateway1:\n  position: [5.0, 0.26, 0]\n  orientation: [1, 1, 1, 1]\n"), F("tx_pos.csv", "x,y,z\n0,0,1\n")}, "import-nerf2 . out", NULL, 1, "./gateway_info.yml:3:16: gateway1.orientation: norm 2; expected a unit quaternion"},
    {"nerf2-tx-column", "tx_pos.csv without z", {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y\n0,0\n")}, "import-nerf2 . out", NULL, 1, "./tx_pos.csv:1: missing column 'z'; expected a header x,y,z"},
    {"nerf2-index", "index line that is not a spectrum number", {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y,z\n0,0,1\n"), F("train_index.txt", "00001\nfirst\n")}, "import-nerf2 . out", NULL, 1, "./train_index.txt:2: 'first'; expected a spectrum number such as 00001"},
    {"nerf2-twice", "spectrum in both splits", {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y,z\n0,0,1\n"), F("train_index.txt", "00001\n"), F("test_index.txt", "00001\n")}, "import-nerf2 . out", NULL, 1, "./train_index.txt, ./test_index.txt: spectrum 00001 is listed twice (the splits must be disjoint)"},
    {"nerf2-png-size", "spectrum PNG of the wrong size", {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y,z\n0,0,1\n"), F("spectrum/00001.png", "@small.png")}, "import-nerf2 . out", NULL, 1, "./spectrum/00001.png: image is 10 x 10 pixels; expected 360 x 90 (azimuth 0..359 deg across, elevation 0..89 deg down)"},
    {"nerf2-png-garbage", "spectrum file that is not a PNG", {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y,z\n0,0,1\n"), F("spectrum/00001.png", "\x89PNG\r\n\x1a\nnot really")}, "import-nerf2 . out", NULL, 1, "./spectrum/00001.png: not a readable PNG (file ends at byte 8 inside a chunk header: truncated)"},
    {"nerf2-png-chunk", "67-byte PNG whose IDAT chunk claims 1.3 GB (found by fuzz_nerf2_png: stb_image allocated it)",
     {F("gateway_info.yml", GW_OK), F("tx_pos.csv", "x,y,z\n0,0,1\n"), F("spectrum/00001.png", "\x89\x50\x4e\x47\x0d\x0a\x1a\x0a\x00\x00\x00\x0d\x49\x48\x44\x52\x00\x00\x01\x68\x00\x00\x00\x5a"
                                                  "\x08\x00\x00\x00\x00\x1b\x93\x00\xb5\x4f\xff\xe9\x49\x49\x44\x41\x54\x78\x9c\x9d\x5d\xf7\xff\xf6"
                                                  "\x49\xf7\xcc\x64\x62\x11\xb5\x3f\x70\x65\x4b\x4e\x66\xb7\xe3\x89\x5a\x50\x8b")},
     "import-nerf2 . out", NULL, 1, "./spectrum/00001.png: not a readable PNG (chunk 'IDAT' at byte 33 claims 1342171465 bytes, only 22 follow: truncated or corrupt)"},
    /* ---- neural-field models (mmd_mlp_load, as predict --model DIR) ---- */
    {"mlp-format", "model.yaml of another format", {F("model.yaml", "format: keras\nversion: 1\n")}, NULL, mlp_read, MMD_ERR_PARSE, "./model.yaml:1:9: format: expected 'mmdiff-mlp'"},
    {"mlp-huge-claim", "model.yaml claiming 16 hidden layers of 4096 (3 GB of parameters) next to small tensors; no allocation is attempted",
     {F("model.yaml", MLP_HEAD "hidden: [4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096, 4096]\n"
                      "tensors: [{name: layer0_weight, file: layer0_weight.npy}, {name: layer0_bias, file: layer0_bias.npy}, "
                      "{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}]\n"
                      "adam: {step: 0}\n"), MLP_FILES}, NULL, mlp_read, MMD_ERR_INVALID, "./layer0_weight.npy: layer0_weight: expected shape [3, 4096] as model.yaml describes (ndim 2, 6 values)"},
    {"mlp-shape", "weight tensor of the wrong shape", {F("model.yaml", MLP_HEAD "hidden: [3]\n" MLP_OK_TENSORS), MLP_FILES}, NULL, mlp_read, MMD_ERR_INVALID, "./layer0_weight.npy: layer0_weight: expected shape [3, 3] as model.yaml describes (ndim 2, 6 values)"},
    {"mlp-checksum", "tensors that do not match the checksum (a torn save)",
     {F("model.yaml", MLP_HEAD "hidden: [2]\n" MLP_OK_TENSORS "checksum: \"fnv1a64:0123456789abcdef\"\n"), MLP_FILES,
      F("layer1_bias.npy", "@mlp/layer1_bias.npy"), F("adam_m.npy", "@mlp/adam_m.npy"),
      F("adam_v.npy", "@mlp/adam_m.npy")}, NULL, mlp_read, MMD_ERR_INVALID, "./model.yaml: the tensors next to it do not match its checksum (fnv1a64:0123456789abcdef, computed fnv1a64:060cc7164e8afea6): the directory mixes files of different saves (interrupted save?)"},
    /* ---- learned object poses (mmd_geometry_yaml_read, as predict --model DIR) ---- */
    {"geometry-format", "geometry.yaml without its format line", {F("geometry.yaml", "object: plate\ntranslation_m: [0, 0, 0]\n")}, NULL, geo_read, MMD_ERR_INVALID, "geometry.yaml: format: expected mmdiff-geometry-1"},
    {"geometry-vector", "translation with two numbers", {F("geometry.yaml", "format: mmdiff-geometry-1\nobject: plate\ntranslation_m: [0, 0.1]\nrotation_rad: [0, 0]\ncentroid_m: [0, 0, 0]\n")}, NULL, geo_read, MMD_ERR_INVALID, "geometry.yaml:3:16: translation_m: expected a list of 3 numbers of magnitude <= 1000"},
    {"geometry-angle", "rotation of 100 rad", {F("geometry.yaml", "format: mmdiff-geometry-1\nobject: plate\ntranslation_m: [0, 0, 0]\nrotation_rad: [100, 0]\ncentroid_m: [0, 0, 0]\n")}, NULL, geo_read, MMD_ERR_INVALID, "geometry.yaml:4:15: rotation_rad: expected a list of 2 numbers of magnitude <= 6.28319"},
    /* ---- training checkpoints (mmd_train_checkpoint_read, as calibrate --resume) ---- */
    {"ckpt-magic", "not a checkpoint", {F("checkpoint.bin", "MMDCKPT0 and more bytes than a header has...")}, NULL, ck_read, MMD_ERR_PARSE, "checkpoint.bin: not an mmdiff checkpoint (expected the magic \"MMDCKPT1\")"},
    {"ckpt-truncated", "checkpoint cut short", {{NULL, NULL, 0}}, NULL, ck_read, MMD_ERR_PARSE, "checkpoint.bin: checkpoint is truncated (the header announces 288 payload bytes, the file has 281); refusing to resume from it"},
    {"ckpt-corrupted", "one payload byte flipped", {{NULL, NULL, 0}}, NULL, ck_read, MMD_ERR_PARSE, "checkpoint.bin: checkpoint is corrupted (checksum 771a1c7c29d1a253, the header says 01b0ac7c784fa3a3); refusing to resume from it"},
    {"ckpt-version", "a future version", {{NULL, NULL, 0}}, NULL, ck_read, MMD_ERR_PARSE, "checkpoint.bin: checkpoint version 9; this build reads version 1"},
};
#define N_ROWS (sizeof rows / sizeof rows[0])

static const row *g_row; /* the row being run (checkpoint rows damage by id) */

#define MANY_MATERIALS 200000
/* Every command runs under this limit: an input that makes a parser hang fails its row
 * (exit code 124) instead of stalling the test suite. */
#define ROW_TIMEOUT_S 30
/* ... and each row must finish well within this: the large rows above are regressions of
 * quadratic loops, which took from 30 s to minutes (the slowest row takes about 1 s) */
#define ROW_MAX_S 15.0

/* Run a shell command; stdout+stderr into *out (static buffer). Returns the exit code, or
 * 128 + signal when it crashed. */
static int run(const char *cmd, const char **out)
{
    static char buf[65536];
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    size_t n = p ? fread(buf, 1, sizeof buf - 1, p) : 0;
    buf[n] = 0;
    int status = p ? pclose(p) : -1;
    *out = buf;
    if (status == -1) return -1;
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int write_bytes(const char *path, const void *data, size_t n)
{
    /* parents first: rows write spectrum/NNNNN.png */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *s = strchr(tmp + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = 0;
        mkdir(tmp, 0755);
        *s = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return (fclose(f) == 0) && ok;
}

/* Replace every occurrence of the row directory (as created or as resolved) by "DIR". */
static void mask_dir(const char *in, const char *dir, const char *real, char *out, size_t size)
{
    size_t k = 0, ld = strlen(dir), lr = strlen(real);
    while (*in && k + 4 < size) {
        if (lr && !strncmp(in, real, lr)) {
            memcpy(out + k, "DIR", 3), k += 3, in += lr;
        } else if (!strncmp(in, dir, ld)) {
            memcpy(out + k, "DIR", 3), k += 3, in += ld;
        } else {
            out[k++] = *in++;
        }
    }
    out[k] = 0;
}

/* The message of the last "mmdiff...: error: " line of out, without its prefix. */
static void error_line(const char *out, char *msg, size_t size)
{
    msg[0] = 0;
    for (const char *l = out; l && *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        const char *tag = strstr(l, ": error: ");
        if (!strncmp(l, "mmdiff", 6) && tag && tag < l + n) {
            const char *m = tag + 9;
            size_t mn = n - (size_t)(m - l);
            if (mn >= size) mn = size - 1;
            memcpy(msg, m, mn);
            msg[mn] = 0;
        }
        l = e ? e + 1 : NULL;
    }
}

/* ---- checkpoints ---- */

static mmd_status ck_read(const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/checkpoint.bin", dir);
    if (!g_row->files[0].name) {
        /* a valid checkpoint, then the row's damage */
        uint64_t tr[3] = {0, 2, 3}, va[1] = {1}, perm[3] = {3, 0, 2};
        float p[2] = {0.5f, -1};
        mmd_train_epoch h[1] = {{1.5, 1.7, 0.1}};
        mmd_train_checkpoint c = {0};
        c.n_params = 2, c.n_poses = 4, c.epoch = 1, c.best_epoch = 1, c.batch_poses = 2;
        c.n_train = 3, c.n_val = 1, c.train_ids = tr, c.val_ids = va, c.perm = perm;
        c.n_history = 1, c.history = h;
        c.params = c.opt_m = c.opt_v = c.best_params = p;
        mmd_status st = mmd_train_checkpoint_write(path, &c);
        if (st != MMD_OK) return st;
        char *d = NULL;
        size_t n = 0;
        if ((st = mmd_read_file(path, &d, &n)) != MMD_OK) return st;
        if (!strcmp(g_row->id, "ckpt-truncated")) n -= 7;
        else if (!strcmp(g_row->id, "ckpt-corrupted")) d[n - 3] ^= 0x10;
        else if (!strcmp(g_row->id, "ckpt-version")) d[8] = 9;
        int ok = write_bytes(path, d, n);
        free(d);
        if (!ok) return mmd_error(MMD_ERR_IO, "cannot write %s", path);
    }
    mmd_train_checkpoint c;
    mmd_status st = mmd_train_checkpoint_read("checkpoint.bin", &c);
    if (st == MMD_OK) mmd_train_checkpoint_free(&c);
    return st;
}

static mmd_status geo_read(const char *dir)
{
    char object[256];
    double p[5], c[3];
    return mmd_geometry_yaml_read("geometry.yaml", object, sizeof object, p, c);
}

static mmd_status mlp_read(const char *dir)
{
    mmd_mlp *m = NULL;
    mmd_status st = mmd_mlp_load(NULL, ".", &m); /* no device: a valid model ends in "no OpenCL context" */
    mmd_mlp_destroy(m);
    return st;
}

/* ---- the shared files rows refer to ---- */

static int setup(void)
{
    char p[4096];
    static const char ply[] = PLY_HEAD PLY_FACE PLY_TRI;
    snprintf(p, sizeof p, "%s/room.ply", g_dir);
    if (!write_bytes(p, ply, sizeof ply - 1)) return 0;
    snprintf(p, sizeof p, "%s/exp.yaml", g_dir);
    if (!write_bytes(p, EXP_OK, sizeof EXP_OK - 1)) return 0;
    /* a valid 1-pose 2 x 3 set, and its parts for rows that need one of them */
    mmd_cfg_pose pose = {{1, 2, 1.5}, 0, 0, 0};
    float spec[6] = {1, 0.5f, 0.25f, 0, 0.1f, 0.2f};
    mmd_measurements m = {0};
    m.n_poses = 1, m.poses = &pose, m.n_el = 2, m.n_az = 3, m.spectra = spec, m.frequency_hz = 60e9;
    m.azimuth_deg = (mmd_cfg_grid){0, 2, 1, 3};
    m.elevation_deg = (mmd_cfg_grid){0, 1, 1, 2};
    snprintf(p, sizeof p, "%s/set", g_dir);
    if (mmd_measurements_write(p, &m, NULL, NULL, 0, NULL) != MMD_OK) return 0;
    static const char man[] = MAN_HEAD "poses: ../set/poses.csv\nspectra: ../set/spectra.npy\n";
    snprintf(p, sizeof p, "%s/manifest.yaml", g_dir);
    if (!write_bytes(p, man, sizeof man - 1)) return 0;
    size_t shape[3] = {1, 2, 3};
    spec[4] = -0.5f;
    snprintf(p, sizeof p, "%s/negative.npy", g_dir);
    if (mmd_npy_write(p, MMD_DT_F32, shape, 3, spec) != MMD_OK) return 0;
    /* the tensors of a small network (octaves 0, hidden [2]) for the model rows */
    {
        mmd_mlp_config c = mmd_mlp_defaults();
        c.octaves = 0;
        c.n_hidden = 1;
        c.hidden[0] = 2;
        size_t n = mmd_mlp_config_params(&c);
        float v[64] = {0};
        snprintf(p, sizeof p, "%s/mlp", g_dir);
        if (n > 64 || mkdir(p, 0755) != 0) return 0;
        for (int t = 0; t < 4; t++) {
            size_t off;
            int rows, cols;
            char name[64];
            mmd_mlp_config_tensor(&c, t, &off, &rows, &cols, name, sizeof name);
            snprintf(p, sizeof p, "%s/mlp/%s.npy", g_dir, name);
            size_t shape[2] = {(size_t)rows, (size_t)cols};
            if ((t % 2 ? mmd_npy_write(p, MMD_DT_F32, shape + 1, 1, v + off) : mmd_npy_write(p, MMD_DT_F32, shape, 2, v + off)))
                return 0;
        }
        snprintf(p, sizeof p, "%s/mlp/adam_m.npy", g_dir);
        if (mmd_npy_write(p, MMD_DT_F32, &n, 1, v)) return 0;
    }
    /* regression inputs too large to write out in the table */
    snprintf(p, sizeof p, "%s/alias_bytes.yaml", g_dir);
    FILE *f = fopen(p, "w");
    if (!f) return 0;
    fputs("a: &x \"", f);
    for (int i = 0; i < 200000; i++) fputc('A', f);
    fputs("\"\nb: [*x", f);
    for (int i = 1; i < 30000; i++) fputs(", *x", f);
    fputs("]\n", f);
    if (fclose(f) != 0) return 0;
    snprintf(p, sizeof p, "%s/many_defaults.xml", g_dir);
    if (!(f = fopen(p, "w"))) return 0;
    fputs("<scene version=\"2.1.0\">\n", f);
    for (int i = 0; i < 100000; i++) fprintf(f, "<default name=\"d%d\" value=\"\"/>\n", i);
    fputs("<bsdf type=\"itu-radio-material\" id=\"m\">\n<string name=\"type\" value=\"", f);
    for (int i = 0; i < 300000; i++) fputs("$d99999", f);
    fputs("metal\"/>\n</bsdf>\n</scene>\n", f);
    if (fclose(f) != 0) return 0;
    snprintf(p, sizeof p, "%s/many_bsdfs.xml", g_dir);
    if (!(f = fopen(p, "w"))) return 0;
    fputs("<scene version=\"2.1.0\">\n", f);
    for (int i = 0; i < 100000; i++) fprintf(f, "<bsdf type=\"diffuse\" id=\"b%d\"/>\n", i);
    fputs("<bsdf type=\"diffuse\" id=\"b0\"/>\n</scene>\n", f);
    if (fclose(f) != 0) return 0;
    snprintf(p, sizeof p, "%s/many_attributes.xml", g_dir);
    if (!(f = fopen(p, "w"))) return 0;
    fputs("<scene version=\"2.1.0\">\n<shape", f);
    for (int i = 0; i < 100000; i++) fprintf(f, " a%d=\"\"", i);
    fputs("/>\n</scene>\n", f);
    if (fclose(f) != 0) return 0;
    snprintf(p, sizeof p, "%s/many_keys.yaml", g_dir);
    if (!(f = fopen(p, "w"))) return 0;
    for (int i = 0; i < 200000; i++) fprintf(f, "k%d: 0\n", i);
    if (fclose(f) != 0) return 0;
    /* a binary PLY whose 200000 faces each have their own material_index (the scene
     * builder's material lookup was quadratic: minutes) */
    snprintf(p, sizeof p, "%s/many_materials.ply", g_dir);
    if (!(f = fopen(p, "wb"))) return 0;
    fprintf(f, "ply\nformat binary_little_endian 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
               "property float z\nelement face %d\nproperty list uchar int vertex_indices\n"
               "property int material_index\nend_header\n", MANY_MATERIALS);
    float v[9] = {0, 0, 0, 1, 0, 0, 0, 1, 0};
    fwrite(v, sizeof v, 1, f);
    for (int32_t i = 0; i < MANY_MATERIALS; i++) {
        unsigned char face[17] = {3, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0};
        for (int k = 0; k < 4; k++) face[13 + k] = (unsigned char)((uint32_t)i >> (8 * k));
        fwrite(face, sizeof face, 1, f);
    }
    if (fclose(f) != 0) return 0;
    unsigned char rgb[10 * 10 * 3] = {0};
    snprintf(p, sizeof p, "%s/small.png", g_dir);
    if (mmd_png_write_rgb(p, rgb, 10, 10) != MMD_OK) return 0;
    return 1;
}

/* Copy base file g_dir/src (for "@NAME" contents) to dst. */
static int copy_base(const char *src, const char *dst)
{
    char p[4096];
    if (!strcmp(src, "poses.csv") || !strcmp(src, "spectra.npy")) snprintf(p, sizeof p, "%s/set/%s", g_dir, src);
    else snprintf(p, sizeof p, "%s/%s", g_dir, src);
    char *d = NULL;
    size_t n = 0;
    if (mmd_read_file(p, &d, &n) != MMD_OK) return 0;
    int ok = write_bytes(dst, d, n);
    free(d);
    return ok;
}

/* Run one row in its own directory; the message (DIR-masked) into msg, the exit code or
 * status returned (-1: the row could not be set up). */
static int run_row(const row *r, int idx, char *msg, size_t size)
{
    char dir[4096], real[4096];
    snprintf(dir, sizeof dir, "%s/r%02d", g_dir, idx);
    if (mkdir(dir, 0755) != 0) return -1;
    if (!realpath(dir, real)) real[0] = 0;
    for (size_t k = 0; k < sizeof r->files / sizeof r->files[0] && r->files[k].name; k++) {
        char p[8192];
        snprintf(p, sizeof p, "%s/%s", dir, r->files[k].name);
        const tfile *f = &r->files[k];
        int ok = f->content[0] == '@' ? copy_base(f->content + 1, p) : write_bytes(p, f->content, f->len);
        if (!ok) return -1;
    }
    g_row = r;
    if (r->lib) {
        /* in a child process, as a command would run: a crash fails the row, and a memory
         * limit makes an allocation far beyond the input (which would succeed lazily here)
         * change the message ("out of memory allocating ...") */
        int fd[2];
        if (pipe(fd) != 0) return -1;
        pid_t pid = fork();
        if (pid < 0) return -1;
        if (pid == 0) {
            close(fd[0]);
#if !defined(__SANITIZE_ADDRESS__) && !MMD_HAS_ASAN
            struct rlimit lim = {(rlim_t)2 << 30, (rlim_t)2 << 30}; /* ASan reserves terabytes: not there */
            setrlimit(RLIMIT_AS, &lim);
#endif
            if (chdir(dir) != 0) _exit(99);
            mmd_clear_error();
            int st = (int)r->lib(dir);
            char out[4096];
            int k = snprintf(out, sizeof out, "%d\t%s", st, st ? mmd_last_error() : "");
            if (write(fd[1], out, (size_t)(k < (int)sizeof out ? k : (int)sizeof out - 1)) < 0) _exit(98);
            _exit(0);
        }
        close(fd[1]);
        char buf[4096];
        size_t n = 0;
        ssize_t got;
        while (n < sizeof buf - 1 && (got = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0) n += (size_t)got;
        buf[n] = 0;
        close(fd[0]);
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "%s: the loader's process %s %d\n", r->id, WIFSIGNALED(status) ? "died of signal" : "exited",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            msg[0] = 0;
            return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
        }
        char *tab = strchr(buf, '\t');
        mask_dir(tab ? tab + 1 : "", dir, real, msg, size);
        return atoi(buf);
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 MMDIFF_DEVICE=none-needed timeout %d %s %s", dir, ROW_TIMEOUT_S, g_bin,
             r->args);
    const char *out;
    int rc = run(cmd, &out);
    char line[4096];
    error_line(out, line, sizeof line);
    mask_dir(line, dir, real, msg, size);
    if (rc >= 128 || rc < 0) fprintf(stderr, "%s: crashed (%d):\n%s\n", r->id, rc, out);
    return rc;
}

/* docs/errors.md next to this file's folder: each row's id and message (| escaped). */
static char *read_doc(void)
{
    char path[4096];
    const char *env = getenv("MMD_ERRORS_DOC");
    if (env && env[0]) snprintf(path, sizeof path, "%s", env);
    else snprintf(path, sizeof path, "%.*sdocs/errors.md", (int)(strrchr(__FILE__, '/') ? strrchr(__FILE__, '/') - __FILE__ - 4 : 0), __FILE__);
    char *d = NULL;
    size_t n = 0;
    if (mmd_read_file(path, &d, &n) != MMD_OK) return NULL;
    return d;
}

static void md_escape(const char *in, char *out, size_t size)
{
    size_t k = 0;
    for (; *in && k + 3 < size; in++) {
        if (*in == '|') out[k++] = '\\';
        out[k++] = *in;
    }
    out[k] = 0;
}

int main(int argc, char **argv)
{
    int print = argc > 1 && !strcmp(argv[1], "--print");
    int markdown = argc > 1 && !strcmp(argv[1], "--markdown");
    print |= markdown;
    g_bin = getenv("MMD_BIN");
    if (!g_bin || !g_bin[0]) g_bin = "build/mmdiff";
    char absbin[4096];
    if (realpath(g_bin, absbin)) g_bin = absbin;
    if (!mkdtemp(g_dir)) return 1;
    if (!realpath(g_dir, g_real)) snprintf(g_real, sizeof g_real, "%s", g_dir);
    mmd_log_set_level(0);
    CHECK(setup(), "setting up the shared files in %s: %s", g_dir, mmd_last_error());
    char *doc = print ? NULL : read_doc();
    CHECK(print || doc, "docs/errors.md not found (set MMD_ERRORS_DOC)");
    for (size_t i = 0; i < N_ROWS; i++) {
        const row *r = &rows[i];
        char msg[4096];
        double t0 = mmd_now();
        int rc = run_row(r, (int)i, msg, sizeof msg);
        double dt = mmd_now() - t0;
        if (markdown) {
            /* the table rows of docs/errors.md */
            char esc[8192], what[512];
            md_escape(msg, esc, sizeof esc);
            md_escape(r->what, what, sizeof what);
            if (r->args)
                printf("| `%s` | %s | `mmdiff %s` | %d | `%s` |\n", r->id, what, r->args, rc, esc);
            else
                printf("| `%s` | %s | `%s` | `%s` | `%s` |\n", r->id, what,
                       r->lib == mlp_read   ? "mmd_mlp_load"
                       : r->lib == geo_read ? "mmd_geometry_yaml_read"
                                            : "mmd_train_checkpoint_read",
                       mmd_status_name((mmd_status)rc),
                       esc);
            continue;
        }
        if (print) {
            printf("%s\t%d\t%s\n", r->id, rc, msg);
            continue;
        }
        CHECK(rc == r->rc, "%s: exit code / status %d, want %d (message: %s)", r->id, rc, r->rc, msg);
        CHECK(dt < ROW_MAX_S, "%s: took %.1f s (limit %.0f s)", r->id, dt, ROW_MAX_S);
        CHECK(!strcmp(msg, r->message), "%s: message changed:\n    got:  %s\n    want: %s", r->id, msg, r->message);
        if (doc) {
            char key[128], esc[8192];
            snprintf(key, sizeof key, "| `%s` |", r->id);
            md_escape(r->message, esc, sizeof esc);
            const char *at = strstr(doc, key);
            const char *eol = at ? strchr(at, '\n') : NULL;
            const char *hit = at ? strstr(at, esc) : NULL;
            CHECK(at && hit && (!eol || hit < eol), "%s: docs/errors.md has no row with this id and message", r->id);
        }
    }
    free(doc);
    if (print) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        return system(cmd) != 0;
    }
    {
        /* regression (not an error): 200000 distinct per-face materials load in well under a
         * second; the quadratic lookup took minutes */
        char cmd[8300];
        const char *out;
        /* the listing is 200000 lines: keep the counts line only */
        snprintf(cmd, sizeof cmd, "cd %s && MMDIFF_LOG=0 timeout %d %s info many_materials.ply >info.txt && grep triangles: info.txt",
                 g_dir, ROW_TIMEOUT_S, g_bin);
        double t0 = mmd_now();
        int rc = run(cmd, &out);
        double dt = mmd_now() - t0;
        CHECK(rc == 0 && strstr(out, "materials: 200000"), "PLY with %d per-face materials: exit %d, %.400s",
              MANY_MATERIALS, rc, out);
        CHECK(dt < 10, "PLY with %d per-face materials took %.1f s (quadratic material lookup?)", MANY_MATERIALS, dt);
    }
    if (!mmd_t_fail) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_dir);
    } else {
        fprintf(stderr, "the failing rows' inputs are in %s/rNN (NN = row index)\n", g_dir);
    }
    return TEST_DONE();
}
