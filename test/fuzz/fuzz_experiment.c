/* Experiment YAML (src/config/experiment.c) with --set overrides: every line of the input
 * that starts with "#set " (a YAML comment, so the document is unchanged) also becomes one
 * KEY=VALUE override, in order. A loaded experiment must write a resolved YAML that loads
 * back into an equal experiment (what `mmdiff ... experiment.resolved.yaml` relies on). */
#include "fuzz_common.h"
#include "mmd_config.h"

#define MAX_SETS 8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    /* overrides: copies of the "#set " lines, cut at the line end */
    char *sets_buf[MAX_SETS];
    const char *sets[MAX_SETS];
    size_t n_sets = 0;
    for (size_t i = 0; i < size && n_sets < MAX_SETS; i++) {
        if ((i == 0 || text[i - 1] == '\n') && !strncmp(text + i, "#set ", 5)) {
            size_t s = i + 5, e = s;
            while (e < size && text[e] != '\n' && text[e]) e++;
            sets_buf[n_sets] = strndup(text + s, e - s);
            if (!sets_buf[n_sets]) break;
            sets[n_sets] = sets_buf[n_sets];
            n_sets++;
        }
    }
    const char *origin = fuzz_path("exp.yaml");
    mmd_experiment e;
    mmd_status st = mmd_experiment_load_string(text, origin, sets, n_sets, &e);
    fuzz_check_status(st);
    if (st == MMD_OK) {
        char *yaml = mmd_experiment_to_yaml(&e);
        if (yaml) {
            mmd_experiment back;
            mmd_status st2 = mmd_experiment_load_string(yaml, origin, NULL, 0, &back);
            if (st2 != MMD_OK || !mmd_experiment_equal(&e, &back)) {
                fprintf(stderr, "mmd fuzz: resolved YAML does not load back equal (%s)\n--- resolved:\n%s\n",
                        st2 ? mmd_last_error() : "values differ", yaml);
                abort();
            }
            mmd_experiment_free(&back);
            free(yaml);
        }
        mmd_experiment_free(&e);
    }
    for (size_t k = 0; k < n_sets; k++) free(sets_buf[k]);
    free(text);
    return 0;
}
