/* PLY reader (src/scene/ply.c): the whole input is one .ply file, loaded as a scene (so
 * the per-face object/material split runs too). */
#include "fuzz_common.h"
#include "mmd_scene.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("in.ply", data, size);
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load_ply(path, &s);
    fuzz_check_status(st);
    if (st == MMD_OK) {
        /* a loaded scene is consistent: every index names a vertex, material and object */
        for (uint32_t t = 0; t < s->n_triangles; t++) {
            for (int k = 0; k < 3; k++)
                if (s->indices[3 * (size_t)t + k] >= s->n_vertices) abort();
            if (s->tri_material[t] >= s->n_materials || s->tri_object[t] >= s->n_objects) abort();
        }
    }
    mmd_scene_destroy(s);
    return 0;
}
