/* Figures: heatmaps with colorbar, side-by-side panels, line plots (see mmd_plot.h).
 *
 * The look follows matplotlib's defaults (white figure, dark frame, outward ticks at
 * 1/2/5 x 10^k steps, vertical colorbar with a rotated units label) because that is
 * what the users of this tool read every day. */
#include "mmd_io.h"
#include "mmd_plot.h"
#include "plot_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FS 2          /* text scale: stb_easy_font at 2x is legible at ~100 dpi */
#define TICK_LEN 6
#define TICK_PAD 5    /* between a tick's end and its label */
#define LABEL_PAD 10  /* between tick labels and the axis label */
#define EDGE_PAD 14   /* figure border */
#define PANEL_GAP 36
#define CBAR_GAP 22
#define CBAR_W 22

#define C_BG 0xffffff
#define C_INK 0x262626     /* text, frame and ticks */
#define C_GRID 0xe3e3e3
#define C_OVERLAY 0x161616
#define C_REFLINE 0x8c8c8c

static unsigned nodata_rgb(void)
{
    return (unsigned)MMD_NODATA_R << 16 | (unsigned)MMD_NODATA_G << 8 | MMD_NODATA_B;
}

static int text_h(void) { return mmd_cv_text_height(FS); }

/* Title: the font has one weight, so embolden by drawing it twice 1 px apart. */
static void draw_title(mmd_canvas *c, int cx, int y, const char *s)
{
    int w = mmd_cv_text_width(s, FS) + 1, x = cx - w / 2;
    if (x + w > c->w - 4) x = c->w - 4 - w; /* keep a long title on a narrow figure */
    if (x < 4) x = 4;
    mmd_cv_text(c, x, y, s, FS, C_INK, 0);
    mmd_cv_text(c, x + 1, y, s, FS, C_INK, 0);
}

/* ---------------------------------------------------------------------------------------
 * Ticks
 */

#define MAX_TICKS 64

typedef struct ticks {
    int n;
    double v[MAX_TICKS];
    char lab[MAX_TICKS][32];
    int maxw; /* widest label in px */
} ticks;

static void format_tick(char *buf, double v, double step)
{
    if (fabs(v) < 1e-9 * step) v = 0; /* no "-0" */
    double a = fabs(v);
    if (a != 0 && (a >= 1e6 || a < 1e-4)) {
        snprintf(buf, 32, "%.3g", v);
        return;
    }
    int dec = (int)ceil(-log10(step) - 1e-9);
    if (dec < 0) dec = 0;
    if (dec > 6) dec = 6;
    snprintf(buf, 32, "%.*f", dec, v);
}

static void make_ticks(double lo, double hi, double step, ticks *t)
{
    t->n = 0;
    t->maxw = 0;
    double first = ceil(lo / step - 1e-9) * step;
    for (int k = 0; t->n < MAX_TICKS; k++) {
        double v = first + k * step;
        if (v > hi + 1e-9 * step) break;
        t->v[t->n] = v;
        format_tick(t->lab[t->n], v, step);
        int w = mmd_cv_text_width(t->lab[t->n], FS);
        if (w > t->maxw) t->maxw = w;
        t->n++;
    }
}

/* Choose the smallest "nice" step whose labels do not collide on an axis `len_px` long.
 * Steps are 1/2/5 x 10^k; with `angles` also 15/30/45/90/180 instead of 20/25/50 above
 * 10, so +-90 and +-180 get labels. Horizontal axes need room for the label width,
 * vertical ones for the label height. */
static void choose_ticks(double lo, double hi, int len_px, int horizontal, int angles,
                         ticks *t)
{
    double range = hi - lo;
    if (!(range > 0) || !isfinite(range)) {
        make_ticks(lo, lo, 1, t);
        return;
    }
    double e0 = floor(log10(range / 60.0));
    static const double m125[] = {1, 2, 5};
    static const double ang[] = {15, 30, 45, 90, 180, 360};
    for (int e = (int)e0; e < (int)e0 + 20; e++) {
        double cands[8];
        int nc = 0;
        double mag = pow(10.0, e);
        for (int k = 0; k < 3; k++) {
            double s = m125[k] * mag;
            if (angles && s > 10.5) continue;
            cands[nc++] = s;
        }
        if (angles && e == 1) /* after 10: 15, 30, 45, 90, 180, 360 */
            for (int k = 0; k < 6; k++) cands[nc++] = ang[k];
        if (angles && e > 1) nc = 0;
        for (int k = 0; k < nc; k++) {
            double step = cands[k];
            if (range / step > MAX_TICKS - 2) continue;
            make_ticks(lo, hi, step, t);
            double px_per_step = len_px * step / range;
            double need = horizontal ? t->maxw + 2.2 * FS * 6 : text_h() + 12;
            if (px_per_step >= need && t->n <= (horizontal ? 11 : 12)) return;
        }
    }
    make_ticks(lo, hi, range, t); /* hopeless: label the ends only */
}

/* ---------------------------------------------------------------------------------------
 * Axes frame, ticks and labels around a plot area [x, x+w) x [y, y+h).
 */

typedef struct axes_px {
    int x, y, w, h;
    double xlo, xhi, ylo, yhi; /* data range mapped onto the area */
} axes_px;

static double to_px_x(const axes_px *a, double v) { return a->x + (v - a->xlo) / (a->xhi - a->xlo) * a->w; }
static double to_px_y(const axes_px *a, double v) { return a->y + (a->yhi - v) / (a->yhi - a->ylo) * a->h; }

static void draw_axes(mmd_canvas *c, const axes_px *a, const ticks *tx, const ticks *ty,
                      const char *xlabel, const char *ylabel, int ylabel_x)
{
    mmd_cv_reset_clip(c);
    /* the frame sits just outside the area so it never hides a data cell */
    mmd_cv_frame(c, a->x - 1, a->y - 1, a->x + a->w + 1, a->y + a->h + 1, C_INK);
    int th = text_h();
    for (int k = 0; k < tx->n; k++) {
        int px = (int)floor(to_px_x(a, tx->v[k]));
        if (px >= a->x + a->w) px = a->x + a->w; /* the right edge tick onto the frame */
        mmd_cv_fill(c, px, a->y + a->h + 1, px + 1, a->y + a->h + 1 + TICK_LEN, C_INK);
        int w = mmd_cv_text_width(tx->lab[k], FS);
        mmd_cv_text(c, px - w / 2 + 1, a->y + a->h + 1 + TICK_LEN + TICK_PAD, tx->lab[k], FS,
                    C_INK, 0);
    }
    for (int k = 0; k < ty->n; k++) {
        int py = (int)floor(to_px_y(a, ty->v[k]));
        if (py >= a->y + a->h) py = a->y + a->h;
        if (py < a->y) py = a->y - 1;
        mmd_cv_fill(c, a->x - 1 - TICK_LEN, py, a->x - 1, py + 1, C_INK);
        int w = mmd_cv_text_width(ty->lab[k], FS);
        /* centre the caps (7 of the 9 glyph units) on the tick */
        mmd_cv_text(c, a->x - 1 - TICK_LEN - TICK_PAD - w, py - 7 * FS / 2, ty->lab[k], FS,
                    C_INK, 0);
    }
    if (xlabel && *xlabel) {
        int w = mmd_cv_text_width(xlabel, FS);
        mmd_cv_text(c, a->x + a->w / 2 - w / 2,
                    a->y + a->h + 1 + TICK_LEN + TICK_PAD + th + LABEL_PAD, xlabel, FS, C_INK, 0);
    }
    if (ylabel && *ylabel) {
        int w = mmd_cv_text_width(ylabel, FS);
        mmd_cv_text(c, ylabel_x, a->y + a->h / 2 - w / 2, ylabel, FS, C_INK, 1);
    }
}

/* Vertical space below a plot area for tick labels and an axis label. */
static int bottom_block(const char *xlabel)
{
    return 1 + TICK_LEN + TICK_PAD + text_h() + (xlabel && *xlabel ? LABEL_PAD + text_h() : 0);
}

/* Horizontal space left of a plot area for tick labels (widest `tickw`) and a label. */
static int left_block(int tickw, const char *ylabel)
{
    return 1 + TICK_LEN + TICK_PAD + tickw + (ylabel && *ylabel ? LABEL_PAD + text_h() : 0);
}

/* ---------------------------------------------------------------------------------------
 * Heatmaps
 */

mmd_heatmap_params mmd_heatmap_defaults(void)
{
    mmd_heatmap_params p;
    memset(&p, 0, sizeof p);
    p.vmin = NAN;
    p.vmax = NAN;
    p.dynamic_range = 40;
    p.width = 900;
    p.height = 640;
    p.cmap = MMD_CMAP_VIRIDIS;
    return p;
}

static int is_nodata(float v) { return isnan(v) || (isinf(v) && v < 0); }

typedef struct data_stats {
    double min, max; /* over finite values (+inf counts as max) */
    size_t n_nodata, n_finite;
} data_stats;

static void scan_data(const mmd_heatmap_params *p, data_stats *s)
{
    s->min = INFINITY;
    s->max = -INFINITY;
    s->n_nodata = s->n_finite = 0;
    size_t n = (size_t)p->nx * (size_t)p->ny;
    for (size_t i = 0; i < n; i++) {
        float v = p->data[i];
        if (is_nodata(v)) {
            s->n_nodata++;
            continue;
        }
        s->n_finite++;
        if (v < s->min) s->min = v;
        if (v > s->max) s->max = v;
    }
}

static mmd_status check_heatmap(const char *path, const mmd_heatmap_params *p, int k)
{
    if (!p->data || p->nx < 1 || p->ny < 1)
        return mmd_error(MMD_ERR_INVALID, "%s: panel %d: no data (nx %d, ny %d)", path, k,
                         p->nx, p->ny);
    if ((size_t)p->nx * (size_t)p->ny > ((size_t)1 << 28))
        return mmd_error(MMD_ERR_INVALID, "%s: panel %d: %d x %d cells is too many to plot", path,
                         k, p->nx, p->ny);
    if (!(p->x1 > p->x0) || !(p->y1 > p->y0) || !isfinite(p->x1 - p->x0) ||
        !isfinite(p->y1 - p->y0))
        return mmd_error(MMD_ERR_INVALID,
                         "%s: panel %d: extent x [%g, %g], y [%g, %g] must be finite and "
                         "increasing",
                         path, k, p->x0, p->x1, p->y0, p->y1);
    if (p->n_markers < 0 || (p->n_markers && !p->markers) || p->n_overlays < 0 ||
        (p->n_overlays && !p->overlays))
        return mmd_error(MMD_ERR_INVALID, "%s: panel %d: markers/overlays given without data",
                         path, k);
    return MMD_OK;
}

/* Resolve the colour range: explicit values win; auto = [max(min, max - dyn), max]. */
static void resolve_range(double vmin_in, double vmax_in, double dyn, const data_stats *s,
                          double *vmin, double *vmax)
{
    double hi = isfinite(vmax_in) ? vmax_in : s->max;
    if (!isfinite(hi)) hi = isfinite(s->min) ? s->min : 0;
    double lo = vmin_in;
    if (!isfinite(lo)) {
        lo = isfinite(s->min) ? s->min : hi - 1;
        if (dyn > 0 && lo < hi - dyn) lo = hi - dyn;
    }
    if (!(hi > lo)) { /* flat or inverted: centre a 1-unit range on the value */
        double m = isfinite(hi) ? hi : 0;
        lo = m - 0.5;
        hi = m + 0.5;
    }
    *vmin = lo;
    *vmax = hi;
}

typedef struct panel_layout {
    axes_px ax;
    ticks tx, ty;
    int left, title_h; /* left block width, title height above the area */
    int ylabel_x;
} panel_layout;

/* Plot-area size for a panel given the space available: honours the aspect, then snaps
 * to a whole number of pixels per cell (crisp, equal cells) when that costs little. */
static void fit_area(const mmd_heatmap_params *p, int aw, int ah, int *pw, int *ph)
{
    if (aw < 40) aw = 40;
    if (ah < 40) ah = 40;
    double w = aw, h = ah;
    double dx = (p->x1 - p->x0) / p->nx, dy = (p->y1 - p->y0) / p->ny;
    if (p->equal_aspect) {
        double r = (p->y1 - p->y0) / (p->x1 - p->x0);
        if (h / w > r) h = w * r;
        else w = h / r;
    }
    int iw = (int)w, ih = (int)h;
    int square = p->equal_aspect && fabs(dx - dy) <= 1e-9 * fmax(dx, dy);
    if (square) {
        int k = (int)fmin(w / p->nx, h / p->ny);
        if (k >= 1 && (k + 1) * p->nx <= 1.2 * w && (k + 1) * p->ny <= 1.2 * h) k++;
        if (k >= 1 && k * p->nx >= 0.75 * w) {
            iw = k * p->nx;
            ih = k * p->ny;
        } else if (k < 1 && p->nx <= 3000 && p->ny <= 3000) {
            iw = p->nx; /* more cells than pixels: grow to one pixel per cell */
            ih = p->ny;
        }
    } else {
        int kx = (int)(w / p->nx), ky = (int)(h / p->ny);
        if (kx >= 1 && (kx + 1) * p->nx <= 1.2 * w) kx++;
        if (ky >= 1 && (ky + 1) * p->ny <= 1.2 * h) ky++;
        if (kx >= 1 && kx * p->nx >= 0.8 * w) iw = kx * p->nx;
        else if (kx < 1 && p->nx <= 3000) iw = p->nx;
        if (ky >= 1 && ky * p->ny >= 0.8 * h) ih = ky * p->ny;
        else if (ky < 1 && p->ny <= 3000) ih = p->ny;
        if (p->equal_aspect) { /* non-square cells: keep the data aspect exactly */
            double r = (p->y1 - p->y0) / (p->x1 - p->x0);
            ih = (int)lround(iw * r);
        }
    }
    *pw = iw < 8 ? 8 : iw;
    *ph = ih < 8 ? 8 : ih;
}

static void draw_cells(mmd_canvas *c, const axes_px *a, const mmd_heatmap_params *p,
                       unsigned char lut[256][3], double vmin, double vmax)
{
    int pw = a->w, ph = a->h, nx = p->nx, ny = p->ny;
    const unsigned char grey[3] = {MMD_NODATA_R, MMD_NODATA_G, MMD_NODATA_B};
    double inv = 1.0 / (vmax - vmin);
    for (int py = 0; py < ph; py++) {
        /* rows: top pixel row shows the last data row (y up) */
        int j0, j1;
        if (ph >= ny) {
            j0 = j1 = (int)(((long long)py * 2 + 1) * ny / (2LL * ph));
        } else {
            j0 = (int)((long long)py * ny / ph);
            j1 = (int)(((long long)(py + 1) * ny + ph - 1) / ph) - 1;
        }
        for (int px = 0; px < pw; px++) {
            int i0, i1;
            if (pw >= nx) {
                i0 = i1 = (int)(((long long)px * 2 + 1) * nx / (2LL * pw));
            } else {
                i0 = (int)((long long)px * nx / pw);
                i1 = (int)(((long long)(px + 1) * nx + pw - 1) / pw) - 1;
            }
            /* several cells per pixel: keep the strongest, so no peak vanishes */
            float best = NAN;
            for (int j = j0; j <= j1; j++)
                for (int i = i0; i <= i1; i++) {
                    float v = p->data[(size_t)(ny - 1 - j) * (size_t)nx + (size_t)i];
                    if (!is_nodata(v) && !(v <= best)) best = v;
                }
            const unsigned char *col = grey;
            if (!isnan(best)) col = lut[mmd_cmap_index(((double)best - vmin) * inv)];
            mmd_cv_put(c, a->x + px, a->y + py, col);
        }
    }
}

static void draw_overlays(mmd_canvas *c, const axes_px *a, const mmd_heatmap_params *p)
{
    mmd_cv_set_clip(c, a->x, a->y, a->x + a->w, a->y + a->h);
    for (int k = 0; k < p->n_overlays; k++) {
        const mmd_plot_polyline *pl = &p->overlays[k];
        if (!pl->xy || pl->n_points < 2) continue;
        size_t n = pl->n_points, segs = pl->closed ? n : n - 1;
        for (int pass = 0; pass < 2; pass++)
            for (size_t i = 0; i < segs; i++) {
                const double *q0 = pl->xy + 2 * i, *q1 = pl->xy + 2 * ((i + 1) % n);
                if (!isfinite(q0[0]) || !isfinite(q0[1]) || !isfinite(q1[0]) || !isfinite(q1[1]))
                    continue;
                double x0 = to_px_x(a, q0[0]), y0 = to_px_y(a, q0[1]);
                double x1 = to_px_x(a, q1[0]), y1 = to_px_y(a, q1[1]);
                /* a faint light halo first keeps dark lines readable on dark cells */
                if (pass == 0) mmd_cv_line(c, x0, y0, x1, y1, 3.2f, 0xf0f0f0);
                else mmd_cv_line(c, x0, y0, x1, y1, 1.6f, C_OVERLAY);
            }
    }
    mmd_cv_reset_clip(c);
}

static void draw_marker_shape(mmd_canvas *c, double x, double y, mmd_marker_shape shape,
                              float w, unsigned rgb)
{
    const double r = 8.5;
    switch (shape) {
    case MMD_MARKER_PLUS:
        mmd_cv_line(c, x - r, y, x + r, y, w, rgb);
        mmd_cv_line(c, x, y - r, x, y + r, w, rgb);
        break;
    case MMD_MARKER_CIRCLE:
        mmd_cv_ring(c, x, y, r, w, rgb);
        break;
    case MMD_MARKER_TRIANGLE: {
        double t = 10, xs = t * 0.866, yb = y + t * 0.5;
        mmd_cv_line(c, x, y - t, x - xs, yb, w, rgb);
        mmd_cv_line(c, x - xs, yb, x + xs, yb, w, rgb);
        mmd_cv_line(c, x + xs, yb, x, y - t, w, rgb);
        break;
    }
    case MMD_MARKER_CROSS:
    default:
        mmd_cv_line(c, x - r * 0.75, y - r * 0.75, x + r * 0.75, y + r * 0.75, w, rgb);
        mmd_cv_line(c, x - r * 0.75, y + r * 0.75, x + r * 0.75, y - r * 0.75, w, rgb);
        break;
    }
}

static void draw_markers(mmd_canvas *c, const axes_px *a, const mmd_heatmap_params *p)
{
    /* red is absent from viridis, cyan from magma */
    unsigned core = p->cmap == MMD_CMAP_MAGMA ? 0x00d0ff : 0xff1a1a;
    mmd_cv_set_clip(c, a->x, a->y, a->x + a->w, a->y + a->h);
    for (int k = 0; k < p->n_markers; k++) {
        const mmd_plot_marker *m = &p->markers[k];
        if (!isfinite(m->x) || !isfinite(m->y)) continue;
        double x = to_px_x(a, m->x), y = to_px_y(a, m->y);
        if (x < a->x - 20 || x > a->x + a->w + 20 || y < a->y - 20 || y > a->y + a->h + 20)
            continue; /* off the map: nothing of it would show */
        draw_marker_shape(c, x, y, m->shape, 5.5f, 0xffffff);
        draw_marker_shape(c, x, y, m->shape, 2.2f, core);
        if (!m->label || !*m->label) continue;
        int tw = mmd_cv_text_width(m->label, FS), th = 7 * FS; /* caps only */
        int bw = tw + 8, bh = th + 8;
        int bx = (int)x + 12, by = (int)y - 12 - bh;
        if (bx + bw > a->x + a->w) bx = (int)x - 12 - bw; /* keep the label in the plot */
        if (by < a->y) by = (int)y + 12;
        mmd_cv_fill(c, bx, by, bx + bw, by + bh, 0xffffff);
        mmd_cv_frame(c, bx, by, bx + bw, by + bh, 0x707070);
        mmd_cv_text(c, bx + 4, by + 4, m->label, FS, C_INK, 0);
    }
    mmd_cv_reset_clip(c);
}

typedef struct fig_layout {
    int W, H, top;
    int n;
    panel_layout pl[MMD_PLOT_MAX_PANELS];
    int cb_x, cb_y, cb_h; /* colorbar */
    ticks tc;
    int right;            /* width of the colorbar block */
    int fig_title_h;
} fig_layout;

static void layout_figure(const mmd_heatmap_params *ps, int n, const char *fig_title, int W,
                          int H, double vmin, double vmax, int any_nodata, fig_layout *L)
{
    memset(L, 0, sizeof *L);
    L->n = n;
    int th = text_h();
    const char *cbl = ps[0].cbar_label;
    L->fig_title_h = fig_title && *fig_title ? th + 14 : 0;
    int ptitle = 0;
    for (int k = 0; k < n; k++)
        if (ps[k].title && *ps[k].title) ptitle = th + 12;
    /* the no-data swatch sits under the colorbar on the x-label row, clear of the
     * rightmost x tick label */
    int bottom = any_nodata ? bottom_block("no data") : 0;
    for (int k = 0; k < n; k++) {
        int b = bottom_block(ps[k].xlabel);
        if (b > bottom) bottom = b;
    }
    L->top = EDGE_PAD + L->fig_title_h + ptitle;
    int avail_h = H - L->top - bottom - EDGE_PAD;

    /* two passes: tick label widths depend on the final plot size */
    int ytw[MMD_PLOT_MAX_PANELS];
    int cbw = mmd_cv_text_width("-100", FS);
    for (int k = 0; k < n; k++) ytw[k] = mmd_cv_text_width("-90", FS);
    for (int pass = 0; pass < 2; pass++) {
        int nodata_w = any_nodata ? CBAR_W + 8 + mmd_cv_text_width("no data", FS) : 0;
        int cbar_block = CBAR_W + 1 + TICK_LEN + TICK_PAD + cbw +
                         (cbl && *cbl ? LABEL_PAD + th : 0);
        L->right = CBAR_GAP + (cbar_block > nodata_w ? cbar_block : nodata_w) + EDGE_PAD;
        int lefts = 0;
        for (int k = 0; k < n; k++) lefts += left_block(ytw[k], ps[k].ylabel);
        int avail_w = (W - EDGE_PAD - lefts - (n - 1) * PANEL_GAP - L->right) / n;
        int x = EDGE_PAD, maxh = 0;
        for (int k = 0; k < n; k++) {
            panel_layout *P = &L->pl[k];
            int pw, ph;
            fit_area(&ps[k], avail_w, avail_h, &pw, &ph);
            P->ylabel_x = x;
            P->left = left_block(ytw[k], ps[k].ylabel);
            x += P->left;
            P->ax = (axes_px){x, L->top, pw, ph, ps[k].x0, ps[k].x1, ps[k].y0, ps[k].y1};
            P->title_h = ptitle;
            choose_ticks(ps[k].x0, ps[k].x1, pw, 1, ps[k].x_angle_ticks, &P->tx);
            choose_ticks(ps[k].y0, ps[k].y1, ph, 0, ps[k].y_angle_ticks, &P->ty);
            ytw[k] = P->ty.maxw;
            x += pw + PANEL_GAP;
            if (ph > maxh) maxh = ph;
        }
        x -= PANEL_GAP;
        L->cb_x = x + CBAR_GAP;
        L->cb_y = L->top;
        L->cb_h = maxh;
        choose_ticks(vmin, vmax, maxh, 0, 0, &L->tc);
        cbw = L->tc.maxw;
        L->W = L->cb_x + CBAR_W + (L->right - CBAR_GAP);
        L->H = L->top + maxh + bottom + EDGE_PAD;
    }
}

static void draw_colorbar(mmd_canvas *c, const fig_layout *L, unsigned char lut[256][3], double vmin, double vmax, const char *label,
                          int below, int above, int any_nodata, int nodata_y)
{
    int x0 = L->cb_x, y0 = L->cb_y, h = L->cb_h;
    for (int r = 0; r < h; r++) {
        double t = (h - 1 - r + 0.5) / h;
        const unsigned char *col = lut[mmd_cmap_index(t)];
        for (int x = x0; x < x0 + CBAR_W; x++) mmd_cv_put(c, x, y0 + r, col);
    }
    /* triangles as in matplotlib's extend='min'/'max': values beyond the range exist */
    for (int side = 0; side < 2; side++) {
        if (!(side == 0 ? below : above)) continue;
        const unsigned char *col = lut[side == 0 ? 0 : 255];
        unsigned rgb = (unsigned)col[0] << 16 | (unsigned)col[1] << 8 | col[2];
        int th_px = 11;
        for (int k = 0; k < th_px; k++) {
            double half = (CBAR_W / 2.0) * (1.0 - (k + 0.5) / th_px);
            int yy = side == 0 ? y0 + h + 1 + k : y0 - 2 - k;
            double cx = x0 + CBAR_W / 2.0;
            for (int x = x0; x < x0 + CBAR_W; x++) {
                double d = fabs(x + 0.5 - cx) - half;
                float a = d <= -0.5 ? 1.0f : d >= 0.5 ? 0.0f : (float)(0.5 - d);
                mmd_cv_blend(c, x, yy, rgb, a);
            }
        }
        double cx = x0 + CBAR_W / 2.0;
        double yb = side == 0 ? y0 + h + 0.5 : y0 - 0.5;
        double yt = side == 0 ? yb + th_px : yb - th_px;
        mmd_cv_line(c, x0 - 0.5, yb, cx, yt, 1.0f, C_INK);
        mmd_cv_line(c, x0 + CBAR_W + 0.5, yb, cx, yt, 1.0f, C_INK);
    }
    mmd_cv_frame(c, x0 - 1, y0 - 1, x0 + CBAR_W + 1, y0 + h + 1, C_INK);
    axes_px a = {x0, y0, CBAR_W, h, 0, 1, vmin, vmax};
    int right = x0 + CBAR_W + 1;
    for (int k = 0; k < L->tc.n; k++) {
        int py = (int)floor(to_px_y(&a, L->tc.v[k]));
        if (py >= y0 + h) py = y0 + h;
        mmd_cv_fill(c, right, py, right + TICK_LEN, py + 1, C_INK);
        mmd_cv_text(c, right + TICK_LEN + TICK_PAD, py - 7 * FS / 2, L->tc.lab[k], FS, C_INK, 0);
    }
    if (label && *label) {
        int w = mmd_cv_text_width(label, FS);
        mmd_cv_text(c, right + TICK_LEN + TICK_PAD + L->tc.maxw + LABEL_PAD, y0 + h / 2 - w / 2,
                    label, FS, C_INK, 1);
    }
    if (any_nodata) {
        int sy = nodata_y;
        mmd_cv_fill(c, x0, sy, x0 + CBAR_W, sy + 7 * FS + 2, nodata_rgb());
        mmd_cv_frame(c, x0 - 1, sy - 1, x0 + CBAR_W + 1, sy + 7 * FS + 3, C_INK);
        mmd_cv_text(c, x0 + CBAR_W + 8, sy + 1, "no data", FS, C_INK, 0);
    }
}

static void json_extent_block(mmd_json *j, const mmd_heatmap_params *p, const panel_layout *P,
                              size_t nodata, size_t below, size_t above, const data_stats *s)
{
    mmd_json_kv_string(j, "title", p->title);
    mmd_json_kv_string(j, "x_label", p->xlabel);
    mmd_json_kv_string(j, "y_label", p->ylabel);
    mmd_json_kv_int(j, "nx", p->nx);
    mmd_json_kv_int(j, "ny", p->ny);
    mmd_json_kv_string(j, "origin", "lower");
    const double xe[2] = {p->x0, p->x1}, ye[2] = {p->y0, p->y1};
    mmd_json_kv_doubles(j, "x_extent", xe, 2);
    mmd_json_kv_doubles(j, "y_extent", ye, 2);
    /* 12 significant digits: 1.2 / 12 should read 0.1, not 0.09999999999999999 */
    double cell[2] = {(p->x1 - p->x0) / p->nx, (p->y1 - p->y0) / p->ny};
    for (int k = 0; k < 2; k++) {
        char b[32];
        snprintf(b, sizeof b, "%.12g", cell[k]);
        cell[k] = strtod(b, NULL);
    }
    mmd_json_kv_doubles(j, "cell_size", cell, 2);
    mmd_json_kv_bool(j, "equal_aspect", p->equal_aspect);
    const double area[4] = {P->ax.x, P->ax.y, P->ax.w, P->ax.h};
    mmd_json_kv_doubles(j, "plot_area_px", area, 4);
    const double dr[2] = {s->min, s->max};
    mmd_json_kv_doubles(j, "data_range", dr, 2);
    mmd_json_kv_int(j, "nodata_cells", (long long)nodata);
    mmd_json_kv_int(j, "cells_below_vmin", (long long)below);
    mmd_json_kv_int(j, "cells_above_vmax", (long long)above);
    mmd_json_key(j, "markers");
    mmd_json_begin_array(j);
    for (int k = 0; k < p->n_markers; k++) {
        static const char *const shapes[] = {"cross", "plus", "circle", "triangle"};
        const mmd_plot_marker *m = &p->markers[k];
        mmd_json_begin_object(j);
        mmd_json_kv_double(j, "x", m->x);
        mmd_json_kv_double(j, "y", m->y);
        mmd_json_kv_string(j, "shape", (unsigned)m->shape < 4 ? shapes[m->shape] : "cross");
        mmd_json_kv_string(j, "label", m->label);
        mmd_json_end_object(j);
    }
    mmd_json_end_array(j);
    mmd_json_kv_int(j, "overlays", p->n_overlays);
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static mmd_status render_heatmaps(const char *png, const char *json_path,
                                  const mmd_heatmap_params *ps, int n, const char *fig_title,
                                  int W, int H, mmd_plot_layout *out)
{
    if (!png) return mmd_error(MMD_ERR_INVALID, "heatmap: no output path");
    if (n < 1 || n > MMD_PLOT_MAX_PANELS)
        return mmd_error(MMD_ERR_INVALID, "%s: %d panels (expected 1..%d)", png, n,
                         MMD_PLOT_MAX_PANELS);
    data_stats all = {INFINITY, -INFINITY, 0, 0}, st[MMD_PLOT_MAX_PANELS];
    for (int k = 0; k < n; k++) {
        mmd_status s = check_heatmap(png, &ps[k], k);
        if (s) return s;
        scan_data(&ps[k], &st[k]);
        all.min = fmin(all.min, st[k].min);
        all.max = fmax(all.max, st[k].max);
        all.n_nodata += st[k].n_nodata;
        all.n_finite += st[k].n_finite;
    }
    double dyn = ps[0].dynamic_range;
    double vmin, vmax;
    resolve_range(ps[0].vmin, ps[0].vmax, dyn, &all, &vmin, &vmax);

    size_t below[MMD_PLOT_MAX_PANELS] = {0}, above[MMD_PLOT_MAX_PANELS] = {0};
    size_t any_below = 0, any_above = 0;
    for (int k = 0; k < n; k++) {
        size_t cnt = (size_t)ps[k].nx * (size_t)ps[k].ny;
        for (size_t i = 0; i < cnt; i++) {
            float v = ps[k].data[i];
            if (is_nodata(v)) continue;
            if (v < vmin) below[k]++;
            if (v > vmax) above[k]++;
        }
        any_below += below[k];
        any_above += above[k];
    }

    if (W <= 0) W = n == 1 ? 900 : 560 * n + 200;
    if (H <= 0) H = n == 1 ? 640 : 560;
    if (W < 300) W = 300;
    if (H < 240) H = 240;
    fig_layout *L = mmd_malloc(1, sizeof *L, "figure layout");
    if (!L) return MMD_ERR_NOMEM;
    layout_figure(ps, n, fig_title, W, H, vmin, vmax, all.n_nodata > 0, L);

    mmd_canvas c;
    mmd_status s = mmd_cv_init(&c, L->W, L->H, C_BG);
    if (s) {
        free(L);
        return s;
    }
    unsigned char lut[256][3];
    mmd_cmap_lut(ps[0].cmap, lut);
    int th = text_h();
    if (L->fig_title_h) draw_title(&c, L->W / 2, EDGE_PAD, fig_title);
    for (int k = 0; k < n; k++) {
        panel_layout *P = &L->pl[k];
        const mmd_heatmap_params *p = &ps[k];
        draw_cells(&c, &P->ax, p, lut, vmin, vmax);
        draw_overlays(&c, &P->ax, p);
        draw_markers(&c, &P->ax, p);
        draw_axes(&c, &P->ax, &P->tx, &P->ty, p->xlabel, p->ylabel, P->ylabel_x);
        if (p->title && *p->title)
            draw_title(&c, P->ax.x + P->ax.w / 2, P->ax.y - th - 10, p->title);
    }
    int nodata_y = L->cb_y + L->cb_h + 1 + TICK_LEN + TICK_PAD + th + LABEL_PAD + 2;
    draw_colorbar(&c, L, lut, vmin, vmax, ps[0].cbar_label, any_below > 0,
                  any_above > 0, all.n_nodata > 0, nodata_y);

    s = mmd_cv_save_png(&c, png);
    if (s == MMD_OK && json_path) {
        mmd_json j;
        mmd_json_init(&j);
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "image", base_name(png));
        mmd_json_kv_int(&j, "width", L->W);
        mmd_json_kv_int(&j, "height", L->H);
        if (n > 1) mmd_json_kv_string(&j, "title", fig_title);
        mmd_json_kv_string(&j, "cmap", mmd_cmap_name(ps[0].cmap));
        mmd_json_kv_double(&j, "vmin", vmin);
        mmd_json_kv_double(&j, "vmax", vmax);
        mmd_json_kv_bool(&j, "vmin_auto", !isfinite(ps[0].vmin));
        mmd_json_kv_bool(&j, "vmax_auto", !isfinite(ps[0].vmax));
        mmd_json_kv_double(&j, "dynamic_range", dyn);
        mmd_json_kv_string(&j, "units", ps[0].cbar_label);
        mmd_json_kv_string(&j, "nodata", "NaN and -inf cells, drawn in nodata_rgb");
        const double grey[3] = {MMD_NODATA_R, MMD_NODATA_G, MMD_NODATA_B};
        mmd_json_kv_doubles(&j, "nodata_rgb", grey, 3);
        mmd_json_kv_string(&j, "color_quantisation", "256 levels, index = min(255, floor(256 (v - vmin) / (vmax - vmin)))");
        const double cb[4] = {L->cb_x, L->cb_y, CBAR_W, L->cb_h};
        mmd_json_kv_doubles(&j, "colorbar_px", cb, 4);
        if (n == 1) {
            json_extent_block(&j, &ps[0], &L->pl[0], st[0].n_nodata, below[0], above[0], &st[0]);
        } else {
            mmd_json_key(&j, "panels");
            mmd_json_begin_array(&j);
            for (int k = 0; k < n; k++) {
                mmd_json_begin_object(&j);
                json_extent_block(&j, &ps[k], &L->pl[k], st[k].n_nodata, below[k], above[k],
                                  &st[k]);
                mmd_json_end_object(&j);
            }
            mmd_json_end_array(&j);
        }
        mmd_json_end_object(&j);
        s = mmd_json_save(&j, json_path);
        mmd_json_free(&j);
    }
    if (out) {
        memset(out, 0, sizeof *out);
        out->width = L->W;
        out->height = L->H;
        out->n_panels = n;
        for (int k = 0; k < n; k++) {
            out->plot[k][0] = L->pl[k].ax.x;
            out->plot[k][1] = L->pl[k].ax.y;
            out->plot[k][2] = L->pl[k].ax.w;
            out->plot[k][3] = L->pl[k].ax.h;
        }
        out->colorbar[0] = L->cb_x;
        out->colorbar[1] = L->cb_y;
        out->colorbar[2] = CBAR_W;
        out->colorbar[3] = L->cb_h;
        out->vmin = vmin;
        out->vmax = vmax;
    }
    mmd_cv_free(&c);
    free(L);
    return s;
}

mmd_status mmd_plot_heatmap(const char *path_png, const char *path_json,
                            const mmd_heatmap_params *p)
{
    if (!p) return mmd_error(MMD_ERR_INVALID, "heatmap: no parameters");
    return render_heatmaps(path_png, path_json, p, 1, NULL, p->width, p->height, p->layout);
}

mmd_status mmd_plot_heatmaps(const char *path_png, const char *path_json,
                             const mmd_heatmap_figure *fig)
{
    if (!fig || !fig->panels) return mmd_error(MMD_ERR_INVALID, "heatmaps: no panels");
    return render_heatmaps(path_png, path_json, fig->panels, fig->n_panels, fig->title,
                           fig->width, fig->height, fig->layout);
}

/* ---------------------------------------------------------------------------------------
 * Line plots
 */

/* matplotlib's tab10 colour cycle */
static const unsigned tab10[10] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd,
                                   0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf};

mmd_lineplot_params mmd_lineplot_defaults(void)
{
    mmd_lineplot_params p;
    memset(&p, 0, sizeof p);
    p.xmin = p.xmax = p.ymin = p.ymax = NAN;
    p.width = 900;
    p.height = 600;
    p.grid = true;
    return p;
}

static unsigned series_colour(const mmd_lineplot_params *p, int k)
{
    int auto_idx = 0;
    for (int i = 0; i < k; i++)
        if (!p->series[i].rgb) auto_idx++;
    return p->series[k].rgb ? p->series[k].rgb : tab10[auto_idx % 10];
}

mmd_status mmd_plot_lines(const char *png, const char *json_path, const mmd_lineplot_params *p)
{
    if (!png || !p) return mmd_error(MMD_ERR_INVALID, "line plot: no output path or parameters");
    if (p->n_series < 0 || (p->n_series && !p->series) || p->n_hlines < 0 ||
        (p->n_hlines && !p->hlines))
        return mmd_error(MMD_ERR_INVALID, "%s: series/hlines counts without data", png);
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int k = 0; k < p->n_series; k++) {
        const mmd_line_series *s = &p->series[k];
        if (s->n && (!s->x || !s->y))
            return mmd_error(MMD_ERR_INVALID, "%s: series %d has no x or y array", png, k);
        for (size_t i = 0; i < s->n; i++) {
            if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
            xlo = fmin(xlo, s->x[i]);
            xhi = fmax(xhi, s->x[i]);
            ylo = fmin(ylo, s->y[i]);
            yhi = fmax(yhi, s->y[i]);
        }
    }
    for (int k = 0; k < p->n_hlines; k++)
        if (isfinite(p->hlines[k])) {
            ylo = fmin(ylo, p->hlines[k]);
            yhi = fmax(yhi, p->hlines[k]);
        }
    if (!isfinite(xlo)) { xlo = 0; xhi = 1; }
    if (!isfinite(ylo)) { ylo = 0; yhi = 1; }
    if (!(xhi > xlo)) { xlo -= 0.5; xhi += 0.5; }
    if (!(yhi > ylo)) { ylo -= 0.5; yhi += 0.5; }
    double ym = 0.05 * (yhi - ylo); /* y margins as matplotlib; x stays tight */
    ylo -= ym;
    yhi += ym;
    if (isfinite(p->xmin)) xlo = p->xmin;
    if (isfinite(p->xmax)) xhi = p->xmax;
    if (isfinite(p->ymin)) ylo = p->ymin;
    if (isfinite(p->ymax)) yhi = p->ymax;
    if (!(xhi > xlo) || !(yhi > ylo))
        return mmd_error(MMD_ERR_INVALID, "%s: axis limits x [%g, %g], y [%g, %g] are empty",
                         png, xlo, xhi, ylo, yhi);

    int W = p->width > 0 ? p->width : 900, H = p->height > 0 ? p->height : 600;
    if (W < 300) W = 300;
    if (H < 240) H = 240;
    int th = text_h();
    int top = EDGE_PAD + (p->title && *p->title ? th + 14 : 6);
    int bottom = bottom_block(p->xlabel) + EDGE_PAD;
    ticks tx, ty;
    int ytw = mmd_cv_text_width("-10.0", FS), left = 0, pw = 0, ph = H - top - bottom;
    for (int pass = 0; pass < 2; pass++) {
        left = EDGE_PAD + left_block(ytw, p->ylabel);
        pw = W - left - EDGE_PAD - 10;
        choose_ticks(ylo, yhi, ph, 0, 0, &ty);
        ytw = ty.maxw;
    }
    choose_ticks(xlo, xhi, pw, 1, p->x_angle_ticks, &tx);
    axes_px a = {left, top, pw, ph, xlo, xhi, ylo, yhi};

    mmd_canvas c;
    mmd_status st = mmd_cv_init(&c, W, H, C_BG);
    if (st) return st;
    if (p->grid) {
        for (int k = 0; k < tx.n; k++) {
            int px = (int)floor(to_px_x(&a, tx.v[k]));
            if (px > a.x && px < a.x + a.w) mmd_cv_fill(&c, px, a.y, px + 1, a.y + a.h, C_GRID);
        }
        for (int k = 0; k < ty.n; k++) {
            int py = (int)floor(to_px_y(&a, ty.v[k]));
            if (py > a.y && py < a.y + a.h) mmd_cv_fill(&c, a.x, py, a.x + a.w, py + 1, C_GRID);
        }
    }
    mmd_cv_set_clip(&c, a.x, a.y, a.x + a.w, a.y + a.h);
    for (int k = 0; k < p->n_hlines; k++) {
        double y = to_px_y(&a, p->hlines[k]), ph0 = 0;
        mmd_cv_dashed(&c, a.x, y, a.x + a.w, y, 1.3f, C_REFLINE, 7, 5, &ph0);
    }
    for (int k = 0; k < p->n_series; k++) {
        const mmd_line_series *s = &p->series[k];
        unsigned col = series_colour(p, k);
        double phase = 0;
        for (size_t i = 0; i + 1 < s->n; i++) {
            if (!isfinite(s->x[i]) || !isfinite(s->y[i]) || !isfinite(s->x[i + 1]) ||
                !isfinite(s->y[i + 1]))
                continue;
            double x0 = to_px_x(&a, s->x[i]), y0 = to_px_y(&a, s->y[i]);
            double x1 = to_px_x(&a, s->x[i + 1]), y1 = to_px_y(&a, s->y[i + 1]);
            if (s->dashed) mmd_cv_dashed(&c, x0, y0, x1, y1, 2.0f, col, 8, 5, &phase);
            else mmd_cv_line(&c, x0, y0, x1, y1, 2.0f, col);
        }
        if (s->markers)
            for (size_t i = 0; i < s->n; i++)
                if (isfinite(s->x[i]) && isfinite(s->y[i]))
                    mmd_cv_disc(&c, to_px_x(&a, s->x[i]), to_px_y(&a, s->y[i]), 3.2, col);
    }
    mmd_cv_reset_clip(&c);
    draw_axes(&c, &a, &tx, &ty, p->xlabel, p->ylabel, EDGE_PAD);
    if (p->title && *p->title) draw_title(&c, a.x + a.w / 2, EDGE_PAD, p->title);

    /* Legend in the corner that hides the fewest data points. */
    int n_leg = 0, legw = 0;
    for (int k = 0; k < p->n_series; k++)
        if (p->series[k].label && *p->series[k].label) {
            n_leg++;
            int w = mmd_cv_text_width(p->series[k].label, FS);
            if (w > legw) legw = w;
        }
    if (n_leg) {
        int row = th + 6, bw = 12 + 34 + 10 + legw + 12, bh = 10 + n_leg * row + 4;
        int best = 0;
        long best_hits = -1;
        for (int corner = 0; corner < 4; corner++) {
            int bx = corner & 1 ? a.x + 10 : a.x + a.w - 10 - bw;
            int by = corner & 2 ? a.y + a.h - 10 - bh : a.y + 10;
            long hits = 0;
            for (int k = 0; k < p->n_series; k++)
                for (size_t i = 0; i < p->series[k].n; i++) {
                    const mmd_line_series *s = &p->series[k];
                    if (!isfinite(s->x[i]) || !isfinite(s->y[i])) continue;
                    double x = to_px_x(&a, s->x[i]), y = to_px_y(&a, s->y[i]);
                    if (x >= bx - 4 && x <= bx + bw + 4 && y >= by - 4 && y <= by + bh + 4) hits++;
                }
            if (best_hits < 0 || hits < best_hits) {
                best_hits = hits;
                best = corner;
            }
        }
        int bx = best & 1 ? a.x + 10 : a.x + a.w - 10 - bw;
        int by = best & 2 ? a.y + a.h - 10 - bh : a.y + 10;
        for (int y = by; y < by + bh; y++)
            for (int x = bx; x < bx + bw; x++) mmd_cv_blend(&c, x, y, 0xffffff, 0.88f);
        mmd_cv_frame(&c, bx, by, bx + bw, by + bh, 0xcccccc);
        int r = 0;
        for (int k = 0; k < p->n_series; k++) {
            const mmd_line_series *s = &p->series[k];
            if (!s->label || !*s->label) continue;
            unsigned col = series_colour(p, k);
            int ty0 = by + 8 + r * row;
            double ly = ty0 + 7.0 * FS / 2;
            double phase = 0;
            if (s->dashed) mmd_cv_dashed(&c, bx + 12, ly, bx + 46, ly, 2.0f, col, 8, 5, &phase);
            else mmd_cv_line(&c, bx + 12, ly, bx + 46, ly, 2.0f, col);
            if (s->markers) mmd_cv_disc(&c, bx + 29, ly, 3.2, col);
            mmd_cv_text(&c, bx + 56, ty0, s->label, FS, C_INK, 0);
            r++;
        }
    }

    st = mmd_cv_save_png(&c, png);
    if (st == MMD_OK && json_path) {
        mmd_json j;
        mmd_json_init(&j);
        mmd_json_begin_object(&j);
        mmd_json_kv_string(&j, "image", base_name(png));
        mmd_json_kv_int(&j, "width", W);
        mmd_json_kv_int(&j, "height", H);
        mmd_json_kv_string(&j, "title", p->title);
        mmd_json_kv_string(&j, "x_label", p->xlabel);
        mmd_json_kv_string(&j, "y_label", p->ylabel);
        const double xl[2] = {xlo, xhi}, yl[2] = {ylo, yhi};
        mmd_json_kv_doubles(&j, "x_limits", xl, 2);
        mmd_json_kv_doubles(&j, "y_limits", yl, 2);
        const double area[4] = {a.x, a.y, a.w, a.h};
        mmd_json_kv_doubles(&j, "plot_area_px", area, 4);
        mmd_json_key(&j, "series");
        mmd_json_begin_array(&j);
        for (int k = 0; k < p->n_series; k++) {
            char hex[8];
            snprintf(hex, sizeof hex, "#%06x", series_colour(p, k));
            mmd_json_begin_object(&j);
            mmd_json_kv_string(&j, "label", p->series[k].label);
            mmd_json_kv_string(&j, "color", hex);
            mmd_json_kv_int(&j, "points", (long long)p->series[k].n);
            mmd_json_end_object(&j);
        }
        mmd_json_end_array(&j);
        mmd_json_end_object(&j);
        st = mmd_json_save(&j, json_path);
        mmd_json_free(&j);
    }
    if (p->layout) {
        memset(p->layout, 0, sizeof *p->layout);
        p->layout->width = W;
        p->layout->height = H;
        p->layout->n_panels = 1;
        p->layout->plot[0][0] = a.x;
        p->layout->plot[0][1] = a.y;
        p->layout->plot[0][2] = a.w;
        p->layout->plot[0][3] = a.h;
    }
    mmd_cv_free(&c);
    return st;
}
