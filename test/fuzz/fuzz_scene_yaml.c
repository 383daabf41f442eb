/* Scene YAML loader (src/scene/scene_yaml.c). Input: the YAML, optionally FUZZ_SEP and the
 * PLY it may name as "mesh.ply" (default: one valid triangle). */
#include "fuzz_common.h"
#include "mmd_scene.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_part parts[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, parts, 2);
    fuzz_mkdir("meshes");
    fuzz_write_part("mesh.ply", parts, n, 1, fuzz_default_ply);
    fuzz_write_part("meshes/mesh.ply", parts, n, 1, fuzz_default_ply);
    const char *path = fuzz_write_part("scene.yaml", parts, n, 0, "");
    mmd_scene *s = NULL;
    mmd_status st = mmd_scene_load_yaml(path, &s);
    fuzz_check_status(st);
    if (st == MMD_OK)
        for (uint32_t t = 0; t < s->n_triangles; t++)
            if (s->tri_material[t] >= s->n_materials || s->tri_object[t] >= s->n_objects) abort();
    mmd_scene_destroy(s);
    return 0;
}
