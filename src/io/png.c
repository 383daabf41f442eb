/* RGB canvas, drawing primitives, bitmap text and PNG encoding (see plot_internal.h). */
#include "mmd_plot.h"
#include "plot_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* stb headers are third-party: keep their warnings out of our -Wall -Wextra build. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wmissing-braces"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wcast-qual"
/* static: another module (or a test) may also compile stb_image_write's implementation */
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
#include <stb_easy_font.h>
#pragma GCC diagnostic pop

/* ---------------------------------------------------------------------------------------
 * Canvas
 */

mmd_status mmd_cv_init(mmd_canvas *c, int w, int h, unsigned bg)
{
    memset(c, 0, sizeof *c);
    if (w < 1 || h < 1 || w > 16384 || h > 16384)
        return mmd_error(MMD_ERR_INVALID, "image size %d x %d outside 1..16384", w, h);
    c->rgb = mmd_malloc((size_t)w * (size_t)h, 3, "image");
    if (!c->rgb) return MMD_ERR_NOMEM;
    c->w = w;
    c->h = h;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
        c->rgb[3 * i] = (unsigned char)(bg >> 16);
        c->rgb[3 * i + 1] = (unsigned char)(bg >> 8);
        c->rgb[3 * i + 2] = (unsigned char)bg;
    }
    mmd_cv_reset_clip(c);
    return MMD_OK;
}

void mmd_cv_free(mmd_canvas *c)
{
    free(c->rgb);
    memset(c, 0, sizeof *c);
}

void mmd_cv_set_clip(mmd_canvas *c, int x0, int y0, int x1, int y1)
{
    c->clip[0] = x0 < 0 ? 0 : x0;
    c->clip[1] = y0 < 0 ? 0 : y0;
    c->clip[2] = x1 > c->w ? c->w : x1;
    c->clip[3] = y1 > c->h ? c->h : y1;
}

void mmd_cv_reset_clip(mmd_canvas *c) { mmd_cv_set_clip(c, 0, 0, c->w, c->h); }

static int inside(const mmd_canvas *c, int x, int y)
{
    return x >= c->clip[0] && x < c->clip[2] && y >= c->clip[1] && y < c->clip[3];
}

void mmd_cv_put(mmd_canvas *c, int x, int y, const unsigned char rgb[3])
{
    if (!inside(c, x, y)) return;
    unsigned char *p = c->rgb + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
    p[0] = rgb[0];
    p[1] = rgb[1];
    p[2] = rgb[2];
}

void mmd_cv_blend(mmd_canvas *c, int x, int y, unsigned rgb, float a)
{
    if (!(a > 0) || !inside(c, x, y)) return;
    if (a > 1) a = 1;
    unsigned char *p = c->rgb + 3 * ((size_t)y * (size_t)c->w + (size_t)x);
    const float src[3] = {(float)((rgb >> 16) & 255), (float)((rgb >> 8) & 255),
                          (float)(rgb & 255)};
    for (int k = 0; k < 3; k++) p[k] = (unsigned char)lrintf(p[k] + a * (src[k] - p[k]));
}

void mmd_cv_fill(mmd_canvas *c, int x0, int y0, int x1, int y1, unsigned rgb)
{
    if (x0 < c->clip[0]) x0 = c->clip[0];
    if (y0 < c->clip[1]) y0 = c->clip[1];
    if (x1 > c->clip[2]) x1 = c->clip[2];
    if (y1 > c->clip[3]) y1 = c->clip[3];
    const unsigned char v[3] = {(unsigned char)(rgb >> 16), (unsigned char)(rgb >> 8),
                                (unsigned char)rgb};
    for (int y = y0; y < y1; y++) {
        unsigned char *p = c->rgb + 3 * ((size_t)y * (size_t)c->w + (size_t)x0);
        for (int x = x0; x < x1; x++, p += 3) {
            p[0] = v[0];
            p[1] = v[1];
            p[2] = v[2];
        }
    }
}

void mmd_cv_frame(mmd_canvas *c, int x0, int y0, int x1, int y1, unsigned rgb)
{
    mmd_cv_fill(c, x0, y0, x1, y0 + 1, rgb);
    mmd_cv_fill(c, x0, y1 - 1, x1, y1, rgb);
    mmd_cv_fill(c, x0, y0, x0 + 1, y1, rgb);
    mmd_cv_fill(c, x1 - 1, y0, x1, y1, rgb);
}

/* Coverage of a pixel by a shape at signed distance d (px) from its edge: a 1-px ramp
 * is cheap and looks like matplotlib's Agg antialiasing at these sizes. */
static float coverage(double d)
{
    if (d <= -0.5) return 1.0f;
    if (d >= 0.5) return 0.0f;
    return (float)(0.5 - d);
}

void mmd_cv_line(mmd_canvas *c, double x0, double y0, double x1, double y1, float width,
                 unsigned rgb)
{
    if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1)) return;
    double hw = 0.5 * width, pad = hw + 1.0;
    double bx0 = fmin(x0, x1) - pad, bx1 = fmax(x0, x1) + pad;
    double by0 = fmin(y0, y1) - pad, by1 = fmax(y0, y1) + pad;
    if (bx1 < c->clip[0] || by1 < c->clip[1] || bx0 > c->clip[2] || by0 > c->clip[3]) return;
    int ix0 = (int)fmax(floor(bx0), c->clip[0]), ix1 = (int)fmin(ceil(bx1), c->clip[2]);
    int iy0 = (int)fmax(floor(by0), c->clip[1]), iy1 = (int)fmin(ceil(by1), c->clip[3]);
    double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    for (int y = iy0; y < iy1; y++)
        for (int x = ix0; x < ix1; x++) {
            double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
            if (t < 0) t = 0;
            if (t > 1) t = 1;
            double ex = px - t * dx, ey = py - t * dy;
            float a = coverage(sqrt(ex * ex + ey * ey) - hw);
            if (a > 0) mmd_cv_blend(c, x, y, rgb, a);
        }
}

/* Clip segment p0-p1 to the box [x0, x1] x [y0, y1] (Liang-Barsky); returns 0 if nothing
 * is left, else the parameters t0 <= t1 of the visible part. */
static int clip_segment(double px, double py, double dx, double dy, double x0, double y0,
                        double x1, double y1, double *t0, double *t1)
{
    double a = 0, b = 1;
    const double p[4] = {-dx, dx, -dy, dy}, q[4] = {px - x0, x1 - px, py - y0, y1 - py};
    for (int k = 0; k < 4; k++) {
        if (p[k] == 0) {
            if (q[k] < 0) return 0;
            continue;
        }
        double r = q[k] / p[k];
        if (p[k] < 0) {
            if (r > b) return 0;
            if (r > a) a = r;
        } else {
            if (r < a) return 0;
            if (r < b) b = r;
        }
    }
    *t0 = a;
    *t1 = b;
    return 1;
}

void mmd_cv_dashed(mmd_canvas *c, double x0, double y0, double x1, double y1, float width,
                   unsigned rgb, double dash, double gap, double *phase)
{
    double len = hypot(x1 - x0, y1 - y0), period = dash + gap;
    if (!(len > 0) || !isfinite(len) || !(period > 0)) return;
    double ph = phase ? fmod(*phase, period) : 0;
    /* Dash only the visible part: a point far off-canvas must not cost a loop over
     * millions of dashes. The pattern phase still advances over the hidden parts. */
    double pad = width + 2, t0, t1;
    if (!clip_segment(x0, y0, x1 - x0, y1 - y0, c->clip[0] - pad, c->clip[1] - pad,
                      c->clip[2] + pad, c->clip[3] + pad, &t0, &t1)) {
        if (phase) *phase = fmod(ph + len, period);
        return;
    }
    ph = fmod(ph + t0 * len, period);
    double s = t0 * len, e_all = t1 * len;
    while (s < e_all) {
        int in_dash = ph < dash;
        double step = in_dash ? dash - ph : period - ph;
        double e = fmin(e_all, s + step);
        if (in_dash) {
            double a = s / len, b = e / len;
            mmd_cv_line(c, x0 + a * (x1 - x0), y0 + a * (y1 - y0), x0 + b * (x1 - x0),
                        y0 + b * (y1 - y0), width, rgb);
        }
        ph = fmod(ph + (e - s), period);
        s = e;
    }
    if (phase) *phase = fmod(ph + (1 - t1) * len, period);
}

/* Shapes wholly outside the clip box are skipped before any float-to-int conversion
 * (a marker at 1e300 would otherwise overflow the pixel loop bounds). */
static int box_visible(const mmd_canvas *c, double cx, double cy, double pad)
{
    return isfinite(cx) && isfinite(cy) && cx + pad >= c->clip[0] && cx - pad <= c->clip[2] &&
           cy + pad >= c->clip[1] && cy - pad <= c->clip[3];
}

void mmd_cv_ring(mmd_canvas *c, double cx, double cy, double r, float width, unsigned rgb)
{
    double pad = r + width + 1;
    if (!box_visible(c, cx, cy, pad) || !(r < 1e5)) return;
    for (int y = (int)floor(cy - pad); y <= (int)ceil(cy + pad); y++)
        for (int x = (int)floor(cx - pad); x <= (int)ceil(cx + pad); x++) {
            double d = fabs(hypot(x + 0.5 - cx, y + 0.5 - cy) - r) - 0.5 * width;
            float a = coverage(d);
            if (a > 0) mmd_cv_blend(c, x, y, rgb, a);
        }
}

void mmd_cv_disc(mmd_canvas *c, double cx, double cy, double r, unsigned rgb)
{
    double pad = r + 1;
    if (!box_visible(c, cx, cy, pad) || !(r < 1e5)) return;
    for (int y = (int)floor(cy - pad); y <= (int)ceil(cy + pad); y++)
        for (int x = (int)floor(cx - pad); x <= (int)ceil(cx + pad); x++) {
            float a = coverage(hypot(x + 0.5 - cx, y + 0.5 - cy) - r);
            if (a > 0) mmd_cv_blend(c, x, y, rgb, a);
        }
}

/* ---------------------------------------------------------------------------------------
 * Text: stb_easy_font builds glyphs from axis-aligned quads in a 1-unit grid (caps 7
 * units high, descenders to 9); we scale them by an integer so edges stay crisp.
 */

#define GLYPH_H 9

/* Quads of one character at unit scale, as rectangles [x0,x1) x [y0,y1); returns the
 * count and the advance. stb_easy_font indexes its tables with (c - 32), so anything
 * outside printable ASCII must be mapped before it gets there. */
static int glyph_quads(unsigned char ch, float rects[][4], int max_rects, int *advance)
{
    if (ch < 32 || ch > 126) ch = '?';
    char s[2] = {(char)ch, 0};
    char vbuf[64 * 64];
    int nq = stb_easy_font_print(0, 0, s, NULL, vbuf, (int)sizeof vbuf);
    if (nq > max_rects) nq = max_rects;
    for (int q = 0; q < nq; q++) {
        float x0 = 1e9f, y0 = 1e9f, x1 = -1e9f, y1 = -1e9f;
        for (int v = 0; v < 4; v++) {
            float vx, vy;
            memcpy(&vx, vbuf + 64 * q + 16 * v, sizeof vx);
            memcpy(&vy, vbuf + 64 * q + 16 * v + 4, sizeof vy);
            x0 = fminf(x0, vx);
            x1 = fmaxf(x1, vx);
            y0 = fminf(y0, vy);
            y1 = fmaxf(y1, vy);
        }
        rects[q][0] = x0;
        rects[q][1] = y0;
        rects[q][2] = x1;
        rects[q][3] = y1;
    }
    *advance = stb_easy_font_charinfo[ch - 32].advance & 15;
    return nq;
}

/* The degree sign, which the font lacks: a 3x3 ring raised to cap height. */
static int degree_quads(float rects[][4], int *advance)
{
    static const float r[4][4] = {{0, 0, 3, 1}, {0, 2, 3, 3}, {0, 1, 1, 2}, {2, 1, 3, 2}};
    memcpy(rects, r, sizeof r);
    *advance = 4;
    return 4;
}

/* Walk the string: calls emit(rect) for every quad at unit scale, returns the ink width
 * (right edge of the last quad) in units. */
typedef void (*quad_fn)(void *ctx, const float r[4]);

static float walk_text(const char *s, quad_fn emit, void *ctx)
{
    float x = 0, ink = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (p && *p) {
        float rects[64][4];
        int adv = 0, nq;
        if (p[0] == 0xc2 && p[1] == 0xb0) { /* UTF-8 degree sign */
            nq = degree_quads(rects, &adv);
            p += 2;
        } else {
            unsigned char ch = *p++;
            if (ch >= 0x80) /* skip the rest of a multi-byte character: one '?' for it */
                while ((*p & 0xc0) == 0x80) p++;
            nq = glyph_quads(ch, rects, 64, &adv);
        }
        for (int q = 0; q < nq; q++) {
            float r[4] = {rects[q][0] + x, rects[q][1], rects[q][2] + x, rects[q][3]};
            if (emit) emit(ctx, r);
            if (r[2] > ink) ink = r[2];
        }
        x += (float)adv;
    }
    return ink;
}

int mmd_cv_text_width(const char *s, int scale) { return (int)ceilf(walk_text(s, NULL, NULL) * (float)scale); }

int mmd_cv_text_height(int scale) { return GLYPH_H * scale; }

typedef struct text_ctx {
    mmd_canvas *c;
    int x, y, scale, rot90, w_units;
    unsigned rgb;
} text_ctx;

static void emit_quad(void *ctx_, const float r[4])
{
    text_ctx *t = ctx_;
    int s = t->scale;
    int u0 = (int)lrintf(r[0]) * s, u1 = (int)lrintf(r[2]) * s;
    int v0 = (int)lrintf(r[1]) * s, v1 = (int)lrintf(r[3]) * s;
    if (!t->rot90) {
        mmd_cv_fill(t->c, t->x + u0, t->y + v0, t->x + u1, t->y + v1, t->rgb);
    } else {
        int W = t->w_units * s; /* reading upwards: text x runs from the box bottom up */
        mmd_cv_fill(t->c, t->x + v0, t->y + W - u1, t->x + v1, t->y + W - u0, t->rgb);
    }
}

void mmd_cv_text(mmd_canvas *c, int x, int y, const char *s, int scale, unsigned rgb, int rot90)
{
    if (!s || !*s) return;
    text_ctx t = {c, x, y, scale, rot90, 0, rgb};
    t.w_units = (int)ceilf(walk_text(s, NULL, NULL));
    walk_text(s, emit_quad, &t);
}

/* ---------------------------------------------------------------------------------------
 * PNG
 */

typedef struct png_buf {
    unsigned char *data;
    size_t len, cap;
    int failed;
} png_buf;

static void png_sink(void *ctx, void *data, int size)
{
    png_buf *b = ctx;
    if (b->failed || size <= 0) return;
    if (b->len + (size_t)size > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + (size_t)size) cap *= 2;
        unsigned char *nd = realloc(b->data, cap);
        if (!nd) {
            b->failed = 1;
            return;
        }
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, (size_t)size);
    b->len += (size_t)size;
}

mmd_status mmd_png_write_rgb(const char *path, const unsigned char *rgb, int w, int h)
{
    if (!rgb || w < 1 || h < 1 || w > 16384 || h > 16384)
        return mmd_error(MMD_ERR_INVALID, "%s: bad image (%d x %d)", path, w, h);
    png_buf b = {0};
    int ok = stbi_write_png_to_func(png_sink, &b, w, h, 3, rgb, 3 * w);
    if (!ok || b.failed) {
        free(b.data);
        return mmd_error(MMD_ERR_NOMEM, "%s: PNG encoding failed (%d x %d)", path, w, h);
    }
    mmd_status st = mmd_write_file_atomic(path, b.data, b.len);
    free(b.data);
    return st;
}

mmd_status mmd_cv_save_png(const mmd_canvas *c, const char *path)
{
    return mmd_png_write_rgb(path, c->rgb, c->w, c->h);
}
