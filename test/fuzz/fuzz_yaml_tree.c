/* The YAML tree (src/config/yaml_tree.c) every YAML reader sits on, straight from memory,
 * with and without positions (files / --set values). */
#include "fuzz_common.h"
#include "mmd_config.h"

/* Walk the tree: every node is well-formed (catches half-built nodes on error paths). */
static void walk(const mmd_ynode *n, int depth)
{
    if (!n || depth > 10000) abort();
    if (n->kind == MMD_YAML_SCALAR) {
        if (!n->text) abort();
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == MMD_YAML_MAP && (!n->keys[i] || n->keys[i]->kind != MMD_YAML_SCALAR)) abort();
        walk(n->items[i], depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_dir(); /* quiet logging */
    for (int positions = 1; positions >= 0; positions--) {
        mmd_ynode *root = NULL;
        mmd_status st = mmd_yaml_load_string((const char *)data, size, "fuzz.yaml", positions, &root);
        fuzz_check_status(st);
        if (st == MMD_OK && root) walk(root, 0);
        mmd_yaml_free(root);
        if (st != MMD_OK) break;
    }
    return 0;
}
