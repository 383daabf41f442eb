/*
 * plot_internal.h - private to src/io: the RGB canvas, its drawing primitives and text,
 * shared by png.c (primitives, PNG encoding), plot.c (figures) and colormap.c.
 *
 *     mmd_canvas c;
 *     mmd_cv_init(&c, 640, 480, 0xffffff);
 *     mmd_cv_line(&c, 10.5, 10.5, 200.5, 80.5, 1.5f, 0x1f77b4);
 *     mmd_cv_text(&c, 20, 100, "azimuth [deg]", 2, 0x000000, 0);
 *     mmd_cv_save_png(&c, "out.png");
 *     mmd_cv_free(&c);
 *
 * Coordinates are pixels, origin top-left; pixel (i, j) covers [i, i+1) x [j, j+1), so
 * a 1-px line through pixel centres sits at i + 0.5. Drawing is clipped to `clip`.
 */
#ifndef MMD_PLOT_INTERNAL_H
#define MMD_PLOT_INTERNAL_H

#include "mmd_plot.h"

typedef struct mmd_canvas {
    int w, h;
    unsigned char *rgb;
    int clip[4]; /* x0, y0, x1, y1 (exclusive) */
} mmd_canvas;

mmd_status mmd_cv_init(mmd_canvas *c, int w, int h, unsigned bg);
void mmd_cv_free(mmd_canvas *c);
void mmd_cv_set_clip(mmd_canvas *c, int x0, int y0, int x1, int y1);
void mmd_cv_reset_clip(mmd_canvas *c);
void mmd_cv_put(mmd_canvas *c, int x, int y, const unsigned char rgb[3]);
void mmd_cv_blend(mmd_canvas *c, int x, int y, unsigned rgb, float alpha);
/* Fill [x0, x1) x [y0, y1). */
void mmd_cv_fill(mmd_canvas *c, int x0, int y0, int x1, int y1, unsigned rgb);
/* 1-px rectangle outline just inside [x0, x1) x [y0, y1). */
void mmd_cv_frame(mmd_canvas *c, int x0, int y0, int x1, int y1, unsigned rgb);
/* Antialiased line of `width` px with round caps. */
void mmd_cv_line(mmd_canvas *c, double x0, double y0, double x1, double y1, float width,
                 unsigned rgb);
/* Dashed variant: dash and gap lengths in px; *phase carries the pattern across calls. */
void mmd_cv_dashed(mmd_canvas *c, double x0, double y0, double x1, double y1, float width,
                   unsigned rgb, double dash, double gap, double *phase);
void mmd_cv_ring(mmd_canvas *c, double cx, double cy, double r, float width, unsigned rgb);
void mmd_cv_disc(mmd_canvas *c, double cx, double cy, double r, unsigned rgb);

/* Text with stb_easy_font at an integer scale. ASCII and "°"; other bytes draw as '?'.
 * (x, y) is the top-left of the text box; with rot90 the text reads bottom to top and
 * (x, y) is the top-left of the rotated box (width = height of the text). */
int mmd_cv_text_width(const char *s, int scale);
int mmd_cv_text_height(int scale); /* box height of one line (cap + descender) */
void mmd_cv_text(mmd_canvas *c, int x, int y, const char *s, int scale, unsigned rgb,
                 int rot90);

mmd_status mmd_cv_save_png(const mmd_canvas *c, const char *path);

/* Colour-map table access for the renderers. */
void mmd_cmap_entry(mmd_cmap cmap, int i, unsigned char rgb[3]);
void mmd_cmap_lut(mmd_cmap cmap, unsigned char lut[256][3]);
int mmd_cmap_index(double t); /* matplotlib's quantisation of t to 0..255 */

#endif
