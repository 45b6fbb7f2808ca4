"""Exact nearest codes for small dimensions (``d <= 32``), many codebooks at once.

``x: (n, C, d)`` against ``codes: (C, K, d)`` -> the ``k`` nearest codes of every row in its own
codebook, ``(n, C, k)``. With a dimension this small a GEMM spends its time writing scores, not
multiplying; the direct kernel keeps a few rows in registers, streams 16 codes at a time through
fused multiply-adds and keeps the running best ``k + 1`` scores per row without ever storing a
score: a block of 16 is looked at only when one of them beats the row's current ``k + 1``-th.

Exactness: the float32 scores ``||c - o||^2 - 2 <x - o, c - o>`` carry a proven error bound
(inputs rounded to float32, ``d + 1`` rounded operations, a 1.25 safety factor)::

    |s_hat - s| <= E(x) = 1.25 u ((d + 3) Cm^2 + (2 d + 7) ||x - o|| Cm),   Cm = max_j ||c_j - o||

so a row is decided when consecutive gaps among its best ``k + 1`` exceed ``2 E``; other rows
(near ties, masked-out codes, overflow) are searched again in float64. The indices therefore
equal a float64 search's except at exact ties (lowest index first), and the returned distances
are computed in float64 from the true rows and codes.

On CPUs with AVX-512 VNNI the ``'l2'`` search (``k <= Q8_MAX_K``) first runs an int8 pre-filter: rows
and codes quantised per codebook (codes around their mean), exact int32 dot products four at a
time, every score stored; a proven bound on the quantisation error (``q8_topk`` in the C source)
gives the candidates that can still be among the ``k`` nearest, and those are scored in float64
from the true rows and codes. Same answer, about a third of the float32 kernel's arithmetic.
The bound grows with each key's distance to the row, so keys crowding around the rows (k-means
keys of real data) are told apart with a few candidates per row, as on Gaussian data. With
``backend='auto'`` a table's first search (of enough rows) measures the candidates per row and
a table where they cost more than the scan saves goes to the float32 kernel from then on
(``CodeTable.kernel``); ``backend='c'`` always runs the pre-filter, ``'c32'`` never.

Two back ends give the same results: ``'c'``, a small C kernel (GCC/Clang vector extensions,
no dependency) compiled on first use with the system C compiler and cached (with ``-fopenmp``
where that builds and loads: it then shares torch's OpenMP runtime, and the int8 jobs run on
torch's threads instead of beside them), and ``'torch'``,
chunked ``bmm`` + ``topk`` with the same certificate. Without a compiler (or with
``BOTTLENECKS_NO_COMPILE=1``) everything runs on the torch path; ``pip install`` never needs
a compiler. ``backend='c32'`` is the C kernel without the int8 pre-filter.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

#: largest dimension the direct kernel is built for (the row lives in registers / L1)
MAX_DIM = 32
#: largest k (the kernel keeps the best k + 1 per row in a small sorted list)
MAX_K = 63
#: largest k the int8 pre-filter takes (larger k: the float32 kernel)
Q8_MAX_K = 4
#: with ``backend='auto'``, a table whose first int8 search (of at least ``Q8_MIN_ROWS`` rows x
#: codebooks) scored more candidates per row than this goes to the float32 kernel from then on:
#: about where the float64 scoring of the candidates costs what the int8 scan saves
Q8_MAX_CANDIDATES = 64
Q8_MIN_ROWS = 256
_LANES = 16
_U = 2.0**-24
BACKENDS = ("auto", "c", "c32", "torch")
METRICS = ("l2", "dot")

_SOURCE = r"""
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64), aligned(64)));
typedef int32_t v16i __attribute__((vector_size(64), aligned(64)));
#define LANES 16
#define ROWS 8
#define MAXD 32
#define MAXKK 64

#if defined(__AVX512F__)
#include <immintrin.h>
static inline unsigned lt_mask(v16 a, float t) {
    return (unsigned)_mm512_cmp_ps_mask((__m512)a, _mm512_set1_ps(t), _CMP_LT_OQ);
}
static inline int any_set(v16i m) { return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0; }
#elif defined(__AVX__)
#include <immintrin.h>
static inline unsigned lt_mask(v16 a, float t) {
    __m256 lo, hi, tt = _mm256_set1_ps(t);
    memcpy(&lo, &a, 32); memcpy(&hi, (const char *)&a + 32, 32);
    return (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(lo, tt, _CMP_LT_OQ))
         | ((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(hi, tt, _CMP_LT_OQ)) << 8);
}
static inline int any_set(v16i m) {
    __m256i lo, hi;
    memcpy(&lo, &m, 32); memcpy(&hi, (const char *)&m + 32, 32);
    return !_mm256_testz_si256(lo, lo) || !_mm256_testz_si256(hi, hi);
}
#else
static inline unsigned lt_mask(v16 a, float t) {
    v16i m = a < t;
    unsigned r = 0;
    for (int l = 0; l < LANES; l++) r |= (m[l] != 0) << l;
    return r;
}
static inline int any_set(v16i m) {
    int32_t r = 0;
    for (int l = 0; l < LANES; l++) r |= m[l];
    return r != 0;
}
#endif

/* insert (v, i) in the ascending list (vals, ids) of length kk; strict: equal values keep
   the earlier (lower) index first */
static inline void insert(float *vals, int64_t *ids, int kk, float v, int64_t i) {
    if (!(v < vals[kk - 1])) return;
    int p = kk - 1;
    while (p > 0 && vals[p - 1] > v) { vals[p] = vals[p - 1]; ids[p] = ids[p - 1]; p--; }
    vals[p] = v; ids[p] = i;
}

static inline double true_score(const void *xe, int xe64, int64_t xoff, const void *ce, int ce64,
                                int64_t coff, int64_t d, int mode) {
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double xv = xe64 ? ((const double *)xe)[xoff + j] : (double)((const float *)xe)[xoff + j];
        double cv = ce64 ? ((const double *)ce)[coff + j] : (double)((const float *)ce)[coff + j];
        if (mode == 0) { double t = xv - cv; s += t * t; } else { s -= xv * cv; }
    }
    return s;
}

/* float64 scores of one row (xr, double) against n codes of dimension d, float32 or float64 */
static void row_scores(const double *xr, const void *ce, int ce64, int64_t cbase, int64_t n, int64_t d, int mode,
                       double *out) {
    if (ce64) {
        const double *c = (const double *)ce + cbase;
        for (int64_t i = 0; i < n; i++, c += d) {
            double s = 0.0;
            if (mode == 0) for (int64_t j = 0; j < d; j++) { double t = xr[j] - c[j]; s += t * t; }
            else for (int64_t j = 0; j < d; j++) s -= xr[j] * c[j];
            out[i] = s;
        }
    } else {
        const float *c = (const float *)ce + cbase;
        for (int64_t i = 0; i < n; i++, c += d) {
            double s = 0.0;
            if (mode == 0) for (int64_t j = 0; j < d; j++) { double t = xr[j] - (double)c[j]; s += t * t; }
            else for (int64_t j = 0; j < d; j++) s -= xr[j] * (double)c[j];
            out[i] = s;
        }
    }
}

/* float64 search of one row: the k best allowed codes (bias finite), lowest index at ties;
   too few allowed codes -> the masked ones fill up in index order with +inf. The scores are
   computed 256 codes at a time in a branch-free loop, then selected. */
static void exact_row(const void *xe, int xe64, int64_t xoff, const void *ce, int ce64, int64_t cbase,
                      const float *bias, int64_t K, int64_t d, int mode, int64_t k,
                      int64_t *oi, double *od) {
    double vals[MAXKK]; int64_t ids[MAXKK];
    double xr[MAXD], buf[256];
    for (int64_t j = 0; j < d; j++)
        xr[j] = xe64 ? ((const double *)xe)[xoff + j] : (double)((const float *)xe)[xoff + j];
    for (int64_t q = 0; q < k; q++) { vals[q] = INFINITY; ids[q] = -1; }
    for (int64_t c0 = 0; c0 < K; c0 += 256) {
        int64_t m = K - c0 < 256 ? K - c0 : 256;
        row_scores(xr, ce, ce64, cbase + c0 * d, m, d, mode, buf);
        for (int64_t i = 0; i < m; i++) {
            double v = buf[i];
            if (!(v < vals[k - 1]) || isinf(bias[c0 + i])) continue;
            int64_t p = k - 1;
            while (p > 0 && vals[p - 1] > v) { vals[p] = vals[p - 1]; ids[p] = ids[p - 1]; p--; }
            vals[p] = v; ids[p] = c0 + i;
        }
    }
    int64_t next = 0;
    for (int64_t q = 0; q < k; q++) {
        if (ids[q] < 0) {  /* a masked code, the lowest index not used yet */
            for (;; next++) {
                int used = 0;
                for (int64_t t = 0; t < q; t++) used |= ids[t] == next;
                if (!used && isinf(bias[next])) break;
            }
            ids[q] = next++;
        }
        oi[q] = ids[q]; od[q] = vals[q];
    }
}

/* rows [r0, r1) x codebook positions [p0, p1) of cbs.
   x: search rows (float32), row r of codebook c at r*sxn + c*sxc; o: (C, d) search shift;
   w: (C, KB, d, 16) = alpha * (c - o) blocked; bias: (C, KB*16), +inf for masked / padding codes;
   cmax: (C,) max ||c - o||; xe/ce: the true rows and codes (float32 or float64), ce (C, K, d);
   out_i, out_d: (n, ncb, k). Returns the number of rows searched again in float64. */
int64_t small_d_topk(const float *x, int64_t sxn, int64_t sxc, int64_t d, const float *o,
                     const int64_t *cbs, int64_t ncb, int64_t p0, int64_t p1, int64_t r0, int64_t r1,
                     const float *w, const float *bias, int64_t K, int64_t KB, const float *cmax,
                     int64_t k, const void *xe, int xe64, int64_t sen, int64_t sec,
                     const void *ce, int ce64, int mode, int64_t *out_i, double *out_d) {
    int64_t undecided = 0;
    int kk = (int)k + 1;
    const double u = 5.9604644775390625e-08;
    for (int64_t p = p0; p < p1; p++) {
        int64_t c = cbs[p];
        const v16 *wc = (const v16 *)(w + c * KB * d * LANES);
        const float *bc = bias + c * KB * LANES;
        double cm = cmax[c];
        for (int64_t rb = r0; rb < r1; rb += ROWS) {
            int nr = (int)((r1 - rb) < ROWS ? (r1 - rb) : ROWS);
            float xr[ROWS][MAXD];
            float vals[ROWS][MAXKK]; int64_t ids[ROWS][MAXKK];
            double xn[ROWS];
            for (int q = 0; q < ROWS; q++) {
                double s = 0.0;
                for (int64_t j = 0; j < d; j++) {
                    float v = q < nr ? x[(rb + q) * sxn + c * sxc + j] - o[c * d + j] : 0.0f;
                    xr[q][j] = v; s += (double)v * v;
                }
                xn[q] = sqrt(s);
                for (int t = 0; t < kk; t++) { vals[q][t] = INFINITY; ids[q][t] = -1; }
            }
            /* the rows' current (k+1)-th best, broadcast: a block is looked at only when a
               score beats it; accumulators and thresholds stay in registers */
            v16 t0 = vals[0][kk - 1] + (v16){}, t1 = vals[1][kk - 1] + (v16){}, t2 = vals[2][kk - 1] + (v16){},
                t3 = vals[3][kk - 1] + (v16){}, t4 = vals[4][kk - 1] + (v16){}, t5 = vals[5][kk - 1] + (v16){},
                t6 = vals[6][kk - 1] + (v16){}, t7 = vals[7][kk - 1] + (v16){};
            for (int64_t b = 0; b < KB; b++) {
                const v16 *wb = wc + b * d;
                v16 bb = *(const v16 *)(bc + b * LANES);
                v16 a0 = bb, a1 = bb, a2 = bb, a3 = bb, a4 = bb, a5 = bb, a6 = bb, a7 = bb;
                for (int64_t j = 0; j < d; j++) {
                    v16 wj = wb[j];
                    a0 += xr[0][j] * wj; a1 += xr[1][j] * wj; a2 += xr[2][j] * wj; a3 += xr[3][j] * wj;
                    a4 += xr[4][j] * wj; a5 += xr[5][j] * wj; a6 += xr[6][j] * wj; a7 += xr[7][j] * wj;
                }
                v16i hit = (a0 < t0) | (a1 < t1) | (a2 < t2) | (a3 < t3)
                         | (a4 < t4) | (a5 < t5) | (a6 < t6) | (a7 < t7);
                if (any_set(hit)) {
                    v16 acc[ROWS] = {a0, a1, a2, a3, a4, a5, a6, a7};
                    for (int q = 0; q < nr; q++) {
                        unsigned mq = lt_mask(acc[q], vals[q][kk - 1]);
                        for (int l = 0; mq; l++, mq >>= 1)
                            if (mq & 1) insert(vals[q], ids[q], kk, acc[q][l], b * LANES + l);
                    }
                    t0 = vals[0][kk - 1] + (v16){}; t1 = vals[1][kk - 1] + (v16){}; t2 = vals[2][kk - 1] + (v16){};
                    t3 = vals[3][kk - 1] + (v16){}; t4 = vals[4][kk - 1] + (v16){}; t5 = vals[5][kk - 1] + (v16){};
                    t6 = vals[6][kk - 1] + (v16){}; t7 = vals[7][kk - 1] + (v16){};
                }
            }
            for (int q = 0; q < nr; q++) {
                int64_t r = rb + q;
                double e = 1.25 * u * ((d + 3) * cm * cm + (2 * d + 7) * xn[q] * cm) * (1.0 + 1e-6);
                int ok = 1;
                for (int t = 0; t < kk - 1 && ok; t++) {
                    double lo = vals[q][t], hi = vals[q][t + 1];
                    ok = isfinite(lo) && ids[q][t] >= 0 && ids[q][t] < K && (hi - lo) > 2.0 * e;
                }
                int64_t *oi = out_i + (r * ncb + p) * k;
                double *od = out_d + (r * ncb + p) * k;
                int64_t xoff = r * sen + c * sec;
                if (ok) {
                    for (int64_t t = 0; t < k; t++) {
                        oi[t] = ids[q][t];
                        od[t] = true_score(xe, xe64, xoff, ce, ce64, (c * K + ids[q][t]) * d, d, mode);
                    }
                } else {
                    undecided++;
                    exact_row(xe, xe64, xoff, ce, ce64, c * K * d, bc, K, d, mode, k, oi, od);
                }
            }
        }
    }
    return undecided;
}

/* float64 per-cluster sums and weights of codebook positions [p0, p1): labels (n, ncb) are
   positions' labels, x rows as in small_d_topk, w (n, C) float64 weights or NULL;
   sums (ncb, k, d), counts (ncb, k) accumulate (zeroed by the caller). */
void cluster_sums(const float *x, int64_t sxn, int64_t sxc, int64_t d, int64_t n, const int64_t *cbs,
                  int64_t ncb, int64_t p0, int64_t p1, const int64_t *labels, int64_t k,
                  const double *w, int64_t swn, int64_t swc, double *sums, double *counts) {
    for (int64_t p = p0; p < p1; p++) {
        int64_t c = cbs[p];
        double *sp = sums + p * k * d;
        double *cp = counts + p * k;
        for (int64_t r = 0; r < n; r++) {
            int64_t l = labels[r * ncb + p];
            const float *xr = x + r * sxn + c * sxc;
            double *dst = sp + l * d;
            if (w) {
                double wr = w[r * swn + c * swc];
                for (int64_t j = 0; j < d; j++) dst[j] += (double)xr[j] * wr;
                cp[l] += wr;
            } else {
                for (int64_t j = 0; j < d; j++) dst[j] += (double)xr[j];
                cp[l] += 1.0;
            }
        }
    }
}

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
int q8_available(void) { return 1; }

/* The int8 pre-filter (l2 only). Per codebook c the codes are shifted by m (their mean),
   y = c - m = sc * qc + ec (qc int8, |qc| <= 127); a row's w = x - m = sz * qz + ez (qz clipped
   to +-127, ez the whole remainder), sz per codebook and job. With u = 2 sz sc,
   t_j = (||y_j||^2 - 2 <y_j, ec_j>) / u rounded and acc_j = t_j - <qz, qc_j> (exact int32
   arithmetic), the true score s_j = ||x - c_j||^2 - ||w||^2 is, exactly,
       s_j = u acc_j - 2 <ez, w> + eta_j,
       eta_j = -2 <ez - ec_j, y_j - w> + 2 <ez, ec_j> + rounding of t_j,
       |eta_j| <= 2 (a dist_j + b) + u R,  a = ||ez|| + Ec, b = ||ez|| Ec, R = 0.5 + slack
   (Ec = max ||ec_j||, dist_j = ||x - c_j||): the error shrinks with the distance, so keys near
   the row -- the only ones that matter -- are scored tightly even when the codes spread far
   (k-means keys of real data: a few outlying keys set sc). With T >= the k-th smallest acc,
   the k-th smallest true score is at most u (T + R) - 2 <ez, w> + 2 (a D + b), D = a +
   sqrt(a^2 + max(0, u (T + R) - 2 <ez, w> + ||w||^2 + 2 b)) bounding the distance of every key
   that can beat it; so every key of the true top k has acc_j <= T + 2 R + 4 (a D + b) / u.
   Those candidates are scored in float64 from the true rows and codes and the best k kept
   (lowest index at ties): the float64 search's answer. A row with more candidates than the
   buffer holds is searched in full (exact_row).
   sz: twice the median of the rows' largest |w| (at most the largest) over 127, so one outlying
   row clips (and is searched in full) instead of coarsening every row of the job.
   wq: (C, KB, G, 16, 4) int8 = -qc blocked (G = ceil(d / 4) dwords of 4 dims per key);
   ny: (C, KB * 16) float64 ||y_j||^2 - 2 <y_j, ec_j>; sq: (C, KB * 16) int32 128 * sum_i qc_ji;
   bias as in small_d_topk (+inf: padding / masked); m: (C, d) float64; sc, Ec: (C,) float64;
   rowmax: (r1 - r0) float64 scratch; ncand accumulates the candidates scored. */
#define NCAND 256

/* the candidates' window above T (see above), in whole acc units; huge (every key) if not finite */
static inline int32_t q8_width(int32_t T, double u, double R, double a, double b, double rc) {
    double Q = u * ((double)T + R) + rc + 2.0 * b;
    double D = a + sqrt(a * a + (Q > 0.0 ? Q : 0.0));
    double w = (2.0 * R + 4.0 * (a * D + b) / u) * (1.0 + 1e-9) + 1e-9;
    return w < (double)(1 << 28) ? (int32_t)floor(w) : (1 << 28);
}

/* the m-th smallest of v[0 .. n) (reordered in place): Hoare's selection, linear on average */
static double select_double(double *v, int64_t n, int64_t m) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < pivot) i++;
            while (v[j] > pivot) j--;
            if (i <= j) { double t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (m <= j) hi = j;
        else if (m >= i) lo = i;
        else return v[m];
    }
    return v[m];
}

int64_t q8_topk(int64_t d, const int64_t *cbs, int64_t ncb, int64_t p0, int64_t p1, int64_t r0, int64_t r1,
                const int8_t *wq, const double *ny, const int32_t *sq, const float *bias, const double *m,
                const double *scs, const double *Ecs, int64_t K, int64_t KB, int64_t G,
                int64_t k, const void *xe, int xe64, int64_t sen, int64_t sec, const void *ce, int ce64,
                int32_t *init, int32_t *scratch, double *rowmax, int64_t *ncand, int64_t *out_i, double *out_d) {
    int64_t undecided = 0, cands = 0;
    const int32_t BIG = 1 << 30;
    for (int64_t p = p0; p < p1; p++) {
        int64_t c = cbs[p];
        const double *mc = m + c * d;
        const float *bc = bias + c * KB * LANES;
        double sc = scs[c], Ec = Ecs[c];
        /* the rows' scale: twice the median row's largest |w|, at most the largest */
        double amax = 0.0;
        for (int64_t r = r0; r < r1; r++) {
            int64_t xoff = r * sen + c * sec;
            double rm = 0.0;
            for (int64_t j = 0; j < d; j++) {
                double v = (xe64 ? ((const double *)xe)[xoff + j] : (double)((const float *)xe)[xoff + j]) - mc[j];
                v = fabs(v);
                if (v > rm) rm = v;
            }
            rowmax[r - r0] = rm;
            if (rm > amax) amax = rm;
        }
        double med = 2.0 * select_double(rowmax, r1 - r0, (r1 - r0) / 2);
        if (med < amax && isfinite(med)) amax = med;
        double sz = amax / 127.0;
        if (!(sz >= sc / 256.0)) sz = sc / 256.0;  /* keeps t_j < 2^31; also sz > 0 */
        if (!(sz > 0.0) || !isfinite(sz)) sz = 1.0;
        double uq = 2.0 * sz * sc;
        double inv = 1.0 / uq;
        const double *nyc = ny + c * KB * LANES;
        const int32_t *sqc = sq + c * KB * LANES;
        double tmax = 0.0;
        int bad = 0;  /* out of the int32 range (cannot happen with sz >= sc / 256): search in full */
        for (int64_t j = 0; j < KB * LANES; j++) {  /* branch-free: vectorised */
            double t = nyc[j] * inv;
            double ta = fabs(t);
            tmax = ta > tmax ? ta : tmax;
            double tc = ta < 1e9 ? t : 0.0;
            int32_t v = (int32_t)floor(tc + 0.5) + sqc[j];  /* rounding to nearest */
            init[j] = isinf(bc[j]) ? BIG : v;
        }
        bad = !(tmax < 1e9);
        double R = 0.5 + 1e-6 * tmax + 1e-3;  /* rounding of t_j (and its float64 product) */
        const int8_t *wc = wq + c * KB * G * 64;
        /* the candidates are scored from the true codes, a few random ones per row: bring this
           codebook's codes (first) and the next one's (spread over the row tiles) into L2, or
           every candidate is a miss to memory */
        const int64_t cbytes = K * d * (ce64 ? 8 : 4), ntiles = (r1 - r0 + ROWS - 1) / ROWS;
        const char *cnext = p + 1 < p1 ? (const char *)ce + cbs[p + 1] * cbytes : NULL;
        if (p == p0)
            for (int64_t o = 0; o < cbytes; o += 64) __builtin_prefetch((const char *)ce + c * cbytes + o, 0, 2);
        for (int64_t rb = r0; rb < r1; rb += ROWS) {
            int nr = (int)((r1 - rb) < ROWS ? (r1 - rb) : ROWS);
            if (cnext) {
                int64_t it = (rb - r0) / ROWS, lo = cbytes * it / ntiles, hi = cbytes * (it + 1) / ntiles;
                for (int64_t o = lo & ~(int64_t)63; o < hi; o += 64) __builtin_prefetch(cnext + o, 0, 2);
            }
            uint8_t qz[ROWS][32] __attribute__((aligned(64)));
            double ra[ROWS], rb2[ROWS], rc[ROWS];  /* a, b and ||w||^2 - 2 <ez, w> per row */
            double wr[ROWS][32];
            for (int q = 0; q < ROWS; q++) {
                int64_t xoff = (rb + q) * sen + c * sec;
                for (int64_t j = 0; j < 32; j++) wr[q][j] = 0.0;
                if (q < nr)
                    for (int64_t j = 0; j < d; j++)
                        wr[q][j] = (xe64 ? ((const double *)xe)[xoff + j]
                                         : (double)((const float *)xe)[xoff + j]) - mc[j];
            }
            double isz = 1.0 / sz;
            for (int q = 0; q < ROWS; q++) {
                double e2 = 0.0, ew = 0.0, w2 = 0.0;
                for (int64_t j = 0; j < G * 4; j++) {
                    double w = wr[q][j];
                    double qq = nearbyint(w * isz);
                    qq = qq > 127.0 ? 127.0 : (qq < -127.0 ? -127.0 : qq);
                    double e = w - sz * qq;
                    e2 += e * e; ew += e * w; w2 += w * w;
                    qz[q][j] = (uint8_t)(int)(qq + 128.0);
                }
                double ez = sqrt(e2);
                ra[q] = ez + Ec;
                rb2[q] = ez * Ec;
                rc[q] = w2 - 2.0 * ew;
            }
            const int32_t *qd[ROWS];
            for (int q = 0; q < ROWS; q++) qd[q] = (const int32_t *)qz[q];
            /* every score stored, the per-lane minima kept: no branch in the scan */
            __m512i big = _mm512_set1_epi32(BIG);
            __m512i m0 = big, m1 = big, m2 = big, m3 = big, m4 = big, m5 = big, m6 = big, m7 = big;
            const int64_t KL = KB * LANES;
            for (int64_t b = 0; b < KB; b++) {
                const __m512i *wb = (const __m512i *)(wc + b * G * 64);
                __m512i ii = _mm512_loadu_si512((const void *)(init + b * LANES));
                __m512i a0 = ii, a1 = ii, a2 = ii, a3 = ii, a4 = ii, a5 = ii, a6 = ii, a7 = ii;
                for (int64_t g = 0; g < G; g++) {
                    __m512i wg = _mm512_load_si512((const void *)(wb + g));
                    a0 = _mm512_dpbusd_epi32(a0, _mm512_set1_epi32(qd[0][g]), wg);
                    a1 = _mm512_dpbusd_epi32(a1, _mm512_set1_epi32(qd[1][g]), wg);
                    a2 = _mm512_dpbusd_epi32(a2, _mm512_set1_epi32(qd[2][g]), wg);
                    a3 = _mm512_dpbusd_epi32(a3, _mm512_set1_epi32(qd[3][g]), wg);
                    a4 = _mm512_dpbusd_epi32(a4, _mm512_set1_epi32(qd[4][g]), wg);
                    a5 = _mm512_dpbusd_epi32(a5, _mm512_set1_epi32(qd[5][g]), wg);
                    a6 = _mm512_dpbusd_epi32(a6, _mm512_set1_epi32(qd[6][g]), wg);
                    a7 = _mm512_dpbusd_epi32(a7, _mm512_set1_epi32(qd[7][g]), wg);
                }
                int32_t *sb = scratch + b * LANES;
                _mm512_store_si512((void *)(sb + 0 * KL), a0); _mm512_store_si512((void *)(sb + 1 * KL), a1);
                _mm512_store_si512((void *)(sb + 2 * KL), a2); _mm512_store_si512((void *)(sb + 3 * KL), a3);
                _mm512_store_si512((void *)(sb + 4 * KL), a4); _mm512_store_si512((void *)(sb + 5 * KL), a5);
                _mm512_store_si512((void *)(sb + 6 * KL), a6); _mm512_store_si512((void *)(sb + 7 * KL), a7);
                m0 = _mm512_min_epi32(m0, a0); m1 = _mm512_min_epi32(m1, a1); m2 = _mm512_min_epi32(m2, a2);
                m3 = _mm512_min_epi32(m3, a3); m4 = _mm512_min_epi32(m4, a4); m5 = _mm512_min_epi32(m5, a5);
                m6 = _mm512_min_epi32(m6, a6); m7 = _mm512_min_epi32(m7, a7);
            }
            __m512i mins[ROWS] = {m0, m1, m2, m3, m4, m5, m6, m7};
            for (int q = 0; q < nr; q++) {
                int64_t r = rb + q;
                int64_t *oi = out_i + (r * ncb + p) * k;
                double *od = out_d + (r * ncb + p) * k;
                int64_t xoff = r * sen + c * sec;
                /* T: the k-th smallest score, bounded above by the k-th smallest lane minimum
                   (16 distinct codes); the candidates: every score <= T + q8_width(T) */
                int32_t T;
                if (k == 1) {
                    T = _mm512_reduce_min_epi32(mins[q]);
                } else {
                    int32_t lm[LANES];
                    _mm512_storeu_si512((void *)lm, mins[q]);
                    for (int t = 1; t < LANES; t++) {  /* insertion sort of 16 */
                        int32_t v = lm[t]; int u = t;
                        while (u > 0 && lm[u - 1] > v) { lm[u] = lm[u - 1]; u--; }
                        lm[u] = v;
                    }
                    T = lm[k - 1];
                }
                int ok = !bad && T < BIG / 2;
                int32_t cv[NCAND]; int64_t ci[NCAND]; int nc = 0;
                if (ok) {
                    int32_t thr = T + q8_width(T, uq, R, ra[q], rb2[q], rc[q]);
                    __m512i h = _mm512_set1_epi32(thr);
                    const int32_t *sr = scratch + q * KL;
                    for (int64_t b = 0; b < KB && ok; b++) {
                        if ((b & 3) == 0 && b + 4 <= KB) {  /* four blocks per test: candidates are rare */
                            const int32_t *s4 = sr + b * LANES;
                            __mmask16 any = _mm512_cmple_epi32_mask(_mm512_load_si512((const void *)s4), h)
                                | _mm512_cmple_epi32_mask(_mm512_load_si512((const void *)(s4 + LANES)), h)
                                | _mm512_cmple_epi32_mask(_mm512_load_si512((const void *)(s4 + 2 * LANES)), h)
                                | _mm512_cmple_epi32_mask(_mm512_load_si512((const void *)(s4 + 3 * LANES)), h);
                            if (!any) { b += 3; continue; }
                        }
                        unsigned mq = _mm512_cmple_epi32_mask(_mm512_load_si512((const void *)(sr + b * LANES)), h);
                        for (; mq; mq &= mq - 1) {
                            int l = __builtin_ctz(mq);
                            if (nc == NCAND) { ok = 0; break; }
                            cv[nc] = sr[b * LANES + l]; ci[nc] = b * LANES + l; nc++;
                        }
                    }
                    if (ok && k > 1) {  /* the exact k-th smallest among the candidates */
                        int32_t tk[MAXKK];
                        for (int t = 0; t < k; t++) tk[t] = BIG;
                        for (int t = 0; t < nc; t++) {
                            int32_t v = cv[t];
                            if (v >= tk[k - 1]) continue;
                            int u = (int)k - 1;
                            while (u > 0 && tk[u - 1] > v) { tk[u] = tk[u - 1]; u--; }
                            tk[u] = v;
                        }
                        thr = tk[k - 1] + q8_width(tk[k - 1], uq, R, ra[q], rb2[q], rc[q]);
                        int w = 0;
                        for (int t = 0; t < nc; t++)
                            if (cv[t] <= thr) { cv[w] = cv[t]; ci[w] = ci[t]; w++; }
                        nc = w;
                    }
                }
                if (!ok) {  /* too many candidates, fewer than k allowed codes, or out of range */
                    undecided++;
                    exact_row(xe, xe64, xoff, ce, ce64, c * K * d, bc, K, d, 0, k, oi, od);
                    continue;
                }
                cands += nc;
                double vals[MAXKK]; int64_t ids[MAXKK];
                for (int t = 0; t < k; t++) { vals[t] = INFINITY; ids[t] = K; }
                for (int t = 0; t < nc; t++) {
                    int64_t j = ci[t];
                    double v = true_score(xe, xe64, xoff, ce, ce64, (c * K + j) * d, d, 0);
                    if (!(v < vals[k - 1] || (v == vals[k - 1] && j < ids[k - 1]))) continue;
                    int u = (int)k - 1;
                    while (u > 0 && (vals[u - 1] > v || (vals[u - 1] == v && ids[u - 1] > j))) {
                        vals[u] = vals[u - 1]; ids[u] = ids[u - 1]; u--;
                    }
                    vals[u] = v; ids[u] = j;
                }
                for (int t = 0; t < k; t++) { oi[t] = ids[t]; od[t] = vals[t]; }
            }
        }
    }
    *ncand += cands;
    return undecided;
}

/* q8_topk over njobs pieces (p0, p1, r0, r1 each, in piece), in parallel on the OpenMP threads
   where the kernel was built with OpenMP: torch's own thread pool (the same libgomp), whose
   workers would otherwise spin beside Python threads after every parallel torch op. Scratch
   from the caller (no allocation on those threads): init (njobs, KB * 16), scratch (njobs, ROWS,
   KB * 16), rowmax (njobs, nmax), ncand (njobs,). */
int64_t q8_topk_jobs(int64_t njobs, const int64_t *piece, int64_t d, const int64_t *cbs, int64_t ncb,
                     const int8_t *wq, const double *ny, const int32_t *sq, const float *bias, const double *m,
                     const double *scs, const double *Ecs, int64_t K, int64_t KB, int64_t G,
                     int64_t k, const void *xe, int xe64, int64_t sen, int64_t sec, const void *ce, int ce64,
                     int32_t *init, int32_t *scratch, double *rowmax, int64_t nmax,
                     int64_t *ncand, int64_t *out_i, double *out_d) {
    int64_t undecided = 0;
#pragma omp parallel for schedule(static, 1) num_threads(njobs) reduction(+ : undecided)
    for (int64_t i = 0; i < njobs; i++) {
        const int64_t *pc = piece + 4 * i;
        undecided += q8_topk(d, cbs, ncb, pc[0], pc[1], pc[2], pc[3], wq, ny, sq, bias, m, scs, Ecs, K, KB, G,
                             k, xe, xe64, sen, sec, ce, ce64, init + i * KB * LANES,
                             scratch + i * ROWS * KB * LANES, rowmax + i * nmax, ncand + i, out_i, out_d);
    }
    return undecided;
}
#else
int q8_available(void) { return 0; }
int64_t q8_topk(void) { return -1; }
int64_t q8_topk_jobs(void) { return -1; }
#endif

#ifdef _OPENMP
int omp_built(void) { return 1; }
#else
int omp_built(void) { return 0; }
#endif

/* dst[idx[i]] += src[i / per] for i in [0, n): rows of width V, in index order (the gradient of
   a row gather; per = rows fetched per source row, the top-k). */
void rows_add(float *dst, int64_t V, const int64_t *idx, int64_t n, int64_t per, const float *src) {
    for (int64_t i = 0; i < n; i++) {
        float *d = dst + idx[i] * V;
        const float *s = src + (i / per) * V;
        for (int64_t j = 0; j < V; j++) d[j] += s[j];
    }
}
"""

_LOCK = threading.Lock()
_STATE: dict = {}


def _cache_dir() -> Path:
    base = os.environ.get("BOTTLENECKS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "bottlenecks")
    return Path(base) / "kernels"


def _cpu_key() -> str:
    """What the binary depends on: -march=native code must not run on another CPU."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    flags += line
    except OSError:
        flags = platform.processor()
    return hashlib.sha256((flags + platform.machine() + sys.platform).encode()).hexdigest()[:16]


def _compile(openmp: bool = True) -> ctypes.CDLL | None:
    """Build (once, cached) and load the kernel; with ``openmp`` it links the OpenMP runtime torch
    already loaded (its ``libgomp``), else it is built without and runs on Python threads."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        return None
    omp = ["-fopenmp"] if openmp else []
    tag = hashlib.sha256((_SOURCE + _cpu_key() + " ".join(omp)).encode()).hexdigest()[:16]
    out = _cache_dir() / f"small_d-{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            src = Path(tmp) / "small_d.c"
            src.write_text(_SOURCE)
            lib = Path(tmp) / "small_d.so"
            arch = ["-march=native"] if platform.machine() in ("x86_64", "AMD64") else ["-mcpu=native"]
            cmd = [cc, "-O3", *arch, *omp, "-fPIC", "-shared", "-fno-math-errno", str(src), "-o", str(lib), "-lm"]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:  # e.g. -mcpu unknown: try the portable build
                cmd = [cc, "-O3", *omp, "-fPIC", "-shared", str(src), "-o", str(lib), "-lm"]
                res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                return _compile(False) if openmp else None
            os.replace(lib, out)  # atomic: concurrent processes never load a half-written file
    try:
        lib = ctypes.CDLL(str(out))
    except OSError:
        if not openmp:
            raise
        return _compile(False)  # an OpenMP runtime that does not load here: the plain build
    f = lib.small_d_topk
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    f.argtypes = [p, i64, i64, i64, p, p, i64, i64, i64, i64, i64, p, p, i64, i64, p, i64, p, i32, i64, i64,
                  p, i32, i32, p, p]
    f.restype = i64
    g = lib.cluster_sums
    g.argtypes = [p, i64, i64, i64, i64, p, i64, i64, i64, p, i64, p, i64, i64, p, p]
    g.restype = None
    h = lib.rows_add
    h.argtypes = [p, i64, p, i64, i64, p]
    h.restype = None
    lib.q8_available.restype = i32
    lib.has_q8 = bool(lib.q8_available())
    if lib.has_q8:
        q = lib.q8_topk
        q.argtypes = [i64, p, i64, i64, i64, i64, i64, p, p, p, p, p, p, p, i64, i64, i64, i64, p, i32, i64, i64,
                      p, i32, p, p, p, p, p, p]
        q.restype = i64
        j = lib.q8_topk_jobs
        j.argtypes = [i64, p, i64, p, i64, p, p, p, p, p, p, p, i64, i64, i64, i64, p, i32, i64, i64, p, i32,
                      p, p, p, i64, p, p, p]
        j.restype = i64
    lib.omp_built.restype = i32
    lib.has_omp = bool(lib.omp_built())
    return lib


def c_kernel():
    """The compiled kernel, or ``None`` where no C compiler works (the torch path is then used)."""
    if os.environ.get("BOTTLENECKS_NO_COMPILE"):
        return None
    with _LOCK:
        if "lib" not in _STATE:
            try:
                _STATE["lib"] = _compile()
            except (OSError, subprocess.SubprocessError):
                _STATE["lib"] = None
        return _STATE["lib"]


def _executor(threads: int) -> ThreadPoolExecutor:
    pool = _STATE.get("pool")
    if pool is None or pool._max_workers < threads:
        pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="small_d")
        _STATE["pool"] = pool
    return pool


class CodeTable:
    """Codes prepared once for the search: ``codes: (C, K, d)``, the search shift ``center:
    (C, d)`` (float32), ``alpha`` (-2 for l2, -1 for dot) and ``mask: (C, K)`` bool (allowed
    codes) or ``None``. ``truth`` is what the float64 fallback and the returned distances use
    (the codes as given, float32 or float64). The blocked float32 codes (``w``) and the int8
    pre-filter's codes (:meth:`q8`) are built on first use."""

    def __init__(self, codes: torch.Tensor, metric: str, mask: torch.Tensor | None = None,
                 center: torch.Tensor | None = None):
        C, K, d = codes.shape
        self.C, self.K, self.d, self.metric = C, K, d, metric
        truth = codes.detach()
        self.truth = (truth if truth.dtype == torch.float64 else truth.float()).contiguous()
        self.center = torch.zeros(C, d) if center is None else center.detach().float().cpu().contiguous()
        self.alpha = -2.0 if metric == "l2" else -1.0
        KB = -(-K // _LANES)
        self.KB = KB
        self._w, self._q8 = None, None
        #: the kernel 'auto' searches with: None until measured, then 'q8' or 'f32' (see _search_c)
        self.kernel = None
        self.bias = torch.full((C, KB * _LANES), float("inf"))  # +inf: padding and masked codes
        self.cmax = torch.zeros(C)
        amax = 0.0
        step = max(1, 2**20 // max(1, K * d))  # a few codebooks at a time: small temporaries
        for c0 in range(0, C, step):
            cs = self._search_codes(slice(c0, c0 + step))  # (c, K, d) float32
            c = len(cs)
            sq = torch.linalg.vector_norm(cs.double(), dim=-1) ** 2  # (c, K)
            self.bias[c0:c0 + c, :K] = sq.float() if metric == "l2" else 0.0
            self.cmax[c0:c0 + c] = sq.sqrt().amax(dim=1).float() if K else 0.0
            amax = max(amax, float(cs.abs().amax()) if cs.numel() else 0.0)
        if mask is not None:
            allowed = mask.expand(C, K).cpu()
            self.bias[:, :K].masked_fill_(~allowed, float("inf"))
        self.amax = amax

    @property
    def w(self) -> torch.Tensor:
        """``(C, KB, d, 16)``: ``alpha * (c - o)`` blocked by 16 codes (the float32 kernel)."""
        if self._w is None:
            C, K, d, KB = self.C, self.K, self.d, self.KB
            w = torch.zeros(C, KB, d, _LANES)
            step = max(1, 2**20 // max(1, K * d))
            for c0 in range(0, C, step):
                cs = self._search_codes(slice(c0, c0 + step))
                c = len(cs)
                padded = torch.cat([cs, cs.new_zeros(c, KB * _LANES - K, d)], 1) * self.alpha
                w[c0:c0 + c] = padded.view(c, KB, _LANES, d).transpose(2, 3)
            self._w = w
        return self._w

    def q8(self) -> dict:
        """The int8 pre-filter's codes (``q8_topk`` in the C source): per codebook the codes'
        mean ``m``, ``y = c - m = sc * qc + ec`` with ``qc`` int8 blocked as ``(C, KB, G, 16, 4)``
        (``-qc``), ``||y||^2``, ``128 * sum(qc)``, ``sc``, ``max ||y||`` and ``max ||ec||``."""
        if self._q8 is None:
            C, K, d, KB = self.C, self.K, self.d, self.KB
            G = -(-d // 4)
            t = {"G": G, "wq": torch.zeros(C, KB, G, _LANES, 4, dtype=torch.int8),
                 "ny": torch.zeros(C, KB * _LANES, dtype=torch.float64),
                 "sq": torch.zeros(C, KB * _LANES, dtype=torch.int32),
                 "m": torch.zeros(C, d, dtype=torch.float64), "sc": torch.ones(C, dtype=torch.float64),
                 "Ec": torch.zeros(C, dtype=torch.float64)}
            allowed = torch.isfinite(self.bias[:, :K])
            step = max(1, 2**19 // max(1, K * d))
            for c0 in range(0, C, step):
                tr = self.truth[c0:c0 + step].double()  # (c, K, d)
                c = len(tr)
                ok = allowed[c0:c0 + c, :, None].double()
                m = (tr * ok).sum(1) / ok.sum(1).clamp_min(1)  # the allowed codes' mean
                y = tr - m[:, None, :]
                sc = y.abs().amax(dim=(1, 2)) / 127
                sc = torch.where(sc > 0, sc, torch.ones_like(sc))
                qc = torch.round(y / sc[:, None, None]).clamp_(-127, 127)
                ec = y - qc * sc[:, None, None]
                t["m"][c0:c0 + c], t["sc"][c0:c0 + c] = m, sc
                t["Ec"][c0:c0 + c] = ec.norm(dim=2).amax(dim=1)
                t["ny"][c0:c0 + c, :K] = (y * y).sum(2) - 2 * (y * ec).sum(2)
                t["sq"][c0:c0 + c, :K] = (128 * qc.sum(2)).to(torch.int32)
                q = torch.zeros(c, KB * _LANES, G * 4)
                q[:, :K, :d] = -qc
                t["wq"][c0:c0 + c] = q.view(c, KB, _LANES, G, 4).transpose(2, 3).to(torch.int8)
            self._q8 = t
        return self._q8

    def _search_codes(self, sel=slice(None)) -> torch.Tensor:
        """The codes the search sees, ``fl32(c - o)``, for the codebooks ``sel``."""
        t = self.truth[sel]
        if not bool(self.center[sel].any()):
            return t.float()
        return (t.double() - self.center[sel].double()[:, None, :]).float()

    @property
    def w_k(self) -> torch.Tensor:
        """``alpha * (c - o)`` as ``(C, K, d)`` (the torch path)."""
        return self._search_codes() * self.alpha

    @property
    def bias_k(self) -> torch.Tensor:
        return self.bias[:, :self.K]


def in_range(amax: float) -> bool:
    """Whether values of magnitude up to ``amax`` keep the float32 scores finite and their
    squares normal (else the caller scales by a power of two first, or searches elsewhere)."""
    return amax == 0.0 or 1e-15 <= amax <= 1e15


def _check_k(k: int, K: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k: expected a positive integer, got {k!r}")
    if k > min(K, MAX_K):
        raise ValueError(f"k={k}: expected 1 <= k <= min(K={K}, {MAX_K})")


def search(x: torch.Tensor, table: CodeTable, k: int = 1, *, codebooks: torch.Tensor | None = None,
           backend: str = "auto", threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest codes of every row of ``x: (n, C, d)`` in its codebook -> ``(distances
    (n, C', k) float64, indices (n, C', k) int64)``, nearest first; exact (see the module
    docstring). ``codebooks`` (int64, ``C'`` of them) restricts the search to some codebooks
    (default: all, ``C' = C``); ``x`` keeps all ``C``.

    Distances: squared Euclidean (``'l2'``) or minus the dot product (``'dot'``), in float64
    from the true rows and codes; masked-out codes only fill rows with too few allowed codes,
    at distance ``inf``. ``threads`` defaults to ``torch.get_num_threads()``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    n, Cx, d = x.shape
    if d != table.d:
        raise ValueError(f"x has dimension {d} but the codes have {table.d}")
    if Cx != table.C:
        raise ValueError(f"x has {Cx} codebooks but the table has {table.C}; expected x: (n, {table.C}, {table.d})")
    cbs = torch.arange(table.C) if codebooks is None else codebooks.to(torch.long).cpu().contiguous()
    _check_k(k, table.K)
    lib = c_kernel() if backend != "torch" else None
    if backend in ("c", "c32") and lib is None:
        raise RuntimeError(f"backend={backend!r}: no working C compiler (set CC, or use backend='torch')")
    if lib is None or d > MAX_DIM or x.device.type != "cpu":
        return _search_torch(x, table, k, cbs)
    return _search_c(lib, x, table, k, cbs, threads, kernel={"auto": "auto", "c": "q8", "c32": "f32"}[backend])


def _search_c(lib, x, table: CodeTable, k: int, cbs: torch.Tensor, threads: int | None, kernel: str = "auto"):
    n, _, d = x.shape
    ncb = len(cbs)
    xe = x if x.dtype in (torch.float32, torch.float64) else x.float()
    if xe.stride(2) != 1:
        xe = xe.contiguous()
    xs = xe if xe.dtype == torch.float32 else xe.float()
    out_i = torch.empty(n, ncb, k, dtype=torch.long)
    out_d = torch.empty(n, ncb, k, dtype=torch.float64)
    threads = max(1, threads or torch.get_num_threads())
    n_jobs = max(1, min(threads, ncb * max(1, n // 16)))
    if ncb >= n_jobs:  # split the codebooks (each job keeps its codes in cache), else the rows
        bounds = [round(i * ncb / n_jobs) for i in range(n_jobs + 1)]
        pieces = [(bounds[i], bounds[i + 1], 0, n) for i in range(n_jobs) if bounds[i + 1] > bounds[i]]
    else:
        bounds = [round(i * n / n_jobs) for i in range(n_jobs + 1)]
        pieces = [(0, ncb, bounds[i], bounds[i + 1]) for i in range(n_jobs) if bounds[i + 1] > bounds[i]]

    xe64, ce64 = int(xe.dtype == torch.float64), int(table.truth.dtype == torch.float64)
    # the int8 pre-filter for small k (its k-th best is bounded by the k-th of 16 lane minima: loose
    # for large k, whose rows would overflow the candidate buffer and be searched in full); 'auto'
    # leaves it for the float32 kernel on a table where it was measured to score too many candidates
    q8 = lib.has_q8 and table.metric == "l2" and k <= Q8_MAX_K and (
        kernel == "q8" or (kernel == "auto" and table.kernel != "f32"))
    ncand = torch.zeros(len(pieces), dtype=torch.long)
    if q8 and lib.has_omp and os.environ.get("BOTTLENECKS_SMALL_D_PYTHON_THREADS") is None:
        t = table.q8()
        piece = torch.tensor(pieces, dtype=torch.long).reshape(-1)
        nj, nmax = len(pieces), max(r1 - r0 for _, _, r0, r1 in pieces)
        init = torch.empty(nj, table.KB * _LANES, dtype=torch.int32)  # 64-byte aligned (torch's allocator)
        scratch = torch.empty(nj, 8, table.KB * _LANES, dtype=torch.int32)  # a tile's scores (C: ROWS = 8)
        rowmax = torch.empty(nj, nmax, dtype=torch.float64)
        undecided = lib.q8_topk_jobs(
            nj, piece.data_ptr(), d, cbs.data_ptr(), ncb, t["wq"].data_ptr(), t["ny"].data_ptr(),
            t["sq"].data_ptr(), table.bias.data_ptr(), t["m"].data_ptr(), t["sc"].data_ptr(), t["Ec"].data_ptr(),
            table.K, table.KB, t["G"], k, xe.data_ptr(), xe64, xe.stride(0), xe.stride(1), table.truth.data_ptr(),
            ce64, init.data_ptr(), scratch.data_ptr(), rowmax.data_ptr(), nmax, ncand.data_ptr(), out_i.data_ptr(),
            out_d.data_ptr())
        job = None
    elif q8:
        t = table.q8()

        def job(i):
            p0, p1, r0, r1 = pieces[i]
            init = torch.empty(table.KB * _LANES, dtype=torch.int32)
            scratch = torch.empty(8, table.KB * _LANES, dtype=torch.int32)  # a tile's scores (C: ROWS = 8)
            rowmax = torch.empty(r1 - r0, dtype=torch.float64)
            return lib.q8_topk(
                d, cbs.data_ptr(), ncb, p0, p1, r0, r1, t["wq"].data_ptr(), t["ny"].data_ptr(), t["sq"].data_ptr(),
                table.bias.data_ptr(), t["m"].data_ptr(), t["sc"].data_ptr(), t["Ec"].data_ptr(),
                table.K, table.KB, t["G"], k, xe.data_ptr(), xe64, xe.stride(0), xe.stride(1),
                table.truth.data_ptr(), ce64, init.data_ptr(), scratch.data_ptr(), rowmax.data_ptr(),
                ncand[i:].data_ptr(), out_i.data_ptr(), out_d.data_ptr())
    else:
        w = table.w

        def job(i):
            p0, p1, r0, r1 = pieces[i]
            return lib.small_d_topk(
                xs.data_ptr(), xs.stride(0), xs.stride(1), d, table.center.data_ptr(),
                cbs.data_ptr(), ncb, p0, p1, r0, r1, w.data_ptr(), table.bias.data_ptr(), table.K, table.KB,
                table.cmax.data_ptr(), k, xe.data_ptr(), xe64, xe.stride(0), xe.stride(1),
                table.truth.data_ptr(), ce64, 0 if table.metric == "l2" else 1, out_i.data_ptr(), out_d.data_ptr())

    if job is None:
        pass  # ran on the OpenMP threads above
    elif len(pieces) == 1:
        undecided = job(0)
    else:
        undecided = sum(_executor(threads).map(job, range(len(pieces))))
    _STATE["last_undecided"] = int(undecided)
    if q8:
        # float64 work per row searched: its candidates, a full search counted as K / 4 of them
        rate = (int(ncand.sum()) + undecided * table.K / 4) / max(1, n * ncb)
        _STATE["last_candidates"] = rate
        if kernel == "auto" and table.kernel is None and n * ncb >= Q8_MIN_ROWS:
            table.kernel = "q8" if rate <= Q8_MAX_CANDIDATES else "f32"
    return out_d, out_i


_CHUNK_BYTES = 32 * 2**20


def _search_torch(x: torch.Tensor, table: CodeTable, k: int, cbs: torch.Tensor):
    """The same search with torch ops: float32 ``bmm`` scores, ``topk(k + 1)``, the certificate,
    a float64 search of the undecided rows; distances in float64 from the true rows and codes."""
    n, _, d = x.shape
    ncb = len(cbs)
    dev = x.device
    every = ncb == x.shape[1] and torch.equal(cbs, torch.arange(ncb))
    cols = cbs.to(dev)
    K = table.K
    w = table.w_k[cbs].to(dev)  # (C', K, d)
    bias = table.bias_k[cbs].to(dev)  # (C', K)
    center = table.center[cbs].to(dev)
    cmax = table.cmax[cbs].to(dev).double()
    truth = table.truth[cbs].to(dev)
    xe = x if x.dtype in (torch.float32, torch.float64) else x.float()
    kk = min(k + 1, K)
    out_i = torch.empty(n, ncb, k, dtype=torch.long, device=dev)
    out_d = torch.empty(n, ncb, k, dtype=torch.float64, device=dev)
    m = max(1, min(n, _CHUNK_BYTES // max(1, ncb * K * 4)))
    undecided = 0
    for s in range(0, n, m):
        xc = xe[s:s + m] if every else xe[s:s + m, cols]  # (m, C', d)
        xs = (xc.float() - center).transpose(0, 1)  # (C', m, d)
        scores = torch.baddbmm(bias[:, None, :], xs, w.transpose(1, 2))  # (C', m, K)
        v, i = scores.topk(kk, dim=2, largest=False, sorted=True)
        # topk's order among equal values is unspecified: lowest index first, as the kernel
        order = torch.sort(i, dim=2).indices
        v, i = v.gather(2, order), i.gather(2, order)
        order = torch.sort(v, dim=2, stable=True).indices
        v, i = v.gather(2, order), i.gather(2, order)
        xn = xs.double().norm(dim=2)  # (C', m)
        e = 1.25 * _U * ((d + 3) * cmax[:, None] ** 2 + (2 * d + 7) * xn * cmax[:, None]) * (1 + 1e-6)
        vd = v.double()
        if kk > k:
            gaps = vd[..., 1:] - vd[..., :-1]
            ok = (gaps > 2 * e[..., None]).all(dim=2) & torch.isfinite(vd[..., :k]).all(dim=2)
        else:  # k == K: every code is returned, only their order needs the certificate
            gaps = vd[..., 1:] - vd[..., :-1]
            ok = (gaps > 2 * e[..., None]).all(dim=2) & torch.isfinite(vd).all(dim=2)
        idx = i[..., :k]  # (C', m, k)
        bad = (~ok).nonzero(as_tuple=False)  # (u, 2): codebook position, row in chunk
        if len(bad):
            undecided += len(bad)
            step = max(1, 2**19 // max(1, K * d))  # float64 temporaries of ~4 MiB
            for b0 in range(0, len(bad), step):
                bb = bad[b0:b0 + step]
                rows64 = xc.transpose(0, 1)[bb[:, 0], bb[:, 1]].double()  # (u, d)
                sc = _true_scores(rows64[:, None, :], truth[bb[:, 0]].double(), table.metric)  # (u, K)
                sc = sc.masked_fill(~torch.isfinite(bias[bb[:, 0]]), float("inf"))
                # lowest index at exact ties (and masked codes in index order): a stable sort
                idx[bb[:, 0], bb[:, 1]] = torch.sort(sc, dim=1, stable=True).indices[:, :k]
        rows = xc.transpose(0, 1).double()  # (C', m, d)
        chosen = torch.gather(truth, 1, idx.reshape(ncb, -1, 1).expand(-1, -1, d)).double().view(ncb, -1, k, d)
        dist = _true_scores(rows[:, :, None, :], chosen, table.metric)
        allowed = torch.gather(torch.isfinite(bias), 1, idx.reshape(ncb, -1)).view(ncb, -1, k)
        dist = dist.masked_fill(~allowed, float("inf"))
        out_i[s:s + m] = idx.transpose(0, 1)
        out_d[s:s + m] = dist.transpose(0, 1)
    _STATE["last_undecided"] = int(undecided)
    return out_d, out_i


def _true_scores(rows: torch.Tensor, codes: torch.Tensor, metric: str) -> torch.Tensor:
    """Float64 squared distances (``'l2'``, direct differences) or minus dot products, over the last axis."""
    if metric == "l2":
        diff = rows - codes
        return (diff * diff).sum(-1)
    return -(rows * codes).sum(-1)


def cluster_sums(x: torch.Tensor, labels: torch.Tensor, k: int, codebooks: torch.Tensor,
                 w: torch.Tensor | None = None, threads: int | None = None):
    """Float64 per-cluster sums ``(C', k, d)`` and weights ``(C', k)`` of the codebooks named in
    ``codebooks`` (``C'`` of them; ``labels: (n, C')``, ``x: (n, C, d)`` float32, ``w: (n, C)``
    float64 or ``None``) with the C kernel; ``None`` where it is unavailable."""
    lib = c_kernel()
    if lib is None or x.device.type != "cpu" or x.dtype != torch.float32 or x.stride(2) != 1:
        return None
    n, _, d = x.shape
    cbs = codebooks.to(torch.long).contiguous()
    ncb = len(cbs)
    labels = labels.contiguous()
    sums = torch.zeros(ncb, k, d, dtype=torch.float64)
    counts = torch.zeros(ncb, k, dtype=torch.float64)
    wp, swn, swc = (0, 0, 0) if w is None else (w.data_ptr(), w.stride(0), w.stride(1))
    if w is not None and w.dtype != torch.float64:
        raise TypeError(f"w: expected float64 weights, got {w.dtype}")
    threads = max(1, min(threads or torch.get_num_threads(), ncb))
    bounds = [round(i * ncb / threads) for i in range(threads + 1)]

    def job(i):
        lib.cluster_sums(x.data_ptr(), x.stride(0), x.stride(1), d, n, cbs.data_ptr(), ncb, bounds[i],
                         bounds[i + 1], labels.data_ptr(), k, wp, swn, swc, sums.data_ptr(), counts.data_ptr())

    if threads == 1:
        job(0)
    else:
        list(_executor(threads).map(job, range(threads)))
    return sums, counts


def rows_add_(dst: torch.Tensor, idx: torch.Tensor, src: torch.Tensor) -> torch.Tensor:
    """``dst[idx[i]] += src[i // per]`` in index order, ``per = idx.numel() // len(src)``:
    ``dst: (N, V)``, ``idx`` int64 (any shape, ``per`` consecutive entries per row of ``src:
    (n, V)``); the backward of a row gather (``index_add_`` walks the same order but costs
    ~10x more per row at ``V = 10``). The C kernel where it applies, else ``index_add_``.
    Indices are trusted (the caller produced them); returns ``dst``."""
    per = idx.numel() // max(1, len(src))
    lib = c_kernel()
    ok = (lib is not None and dst.device.type == "cpu" and dst.dtype == src.dtype == torch.float32
          and dst.dim() == 2 and dst.is_contiguous() and idx.numel() == per * len(src))
    if not ok:
        flat = idx.reshape(-1)
        return dst.index_add_(0, flat, src.repeat_interleave(per, 0) if per > 1 else src)
    src = src.contiguous()
    idx = idx.reshape(-1).contiguous()
    lib.rows_add(dst.data_ptr(), dst.shape[1], idx.data_ptr(), idx.numel(), per, src.data_ptr())
    return dst


_TABLES: dict = {}
_TINY = torch.finfo(torch.float32).tiny  # normalising eps: the default 1e-12 leaves rows of norm < 1e-12 short


def nearest(x: torch.Tensor, codes: torch.Tensor, k: int = 1, metric: str = "l2", *,
            mask: torch.Tensor | None = None, backend: str = "auto"):
    """:func:`bottlenecks.cluster.nearest` on this exact search (inputs already validated):
    ``x: (n, d)``, ``codes: (K, d)`` -> ``(n, k)`` or ``x: (n, C, d)``, ``codes: (C, K, d)`` ->
    ``(n, C, k)``; distances in the inputs' (promoted) dtype. The prepared codes are remembered
    for the last codes tensor seen (frozen codebooks are prepared once). ``None`` when the
    magnitudes are outside :func:`in_range` (the caller then rescales)."""
    if metric == "cosine" and not (in_range(float(codes.abs().amax()))
                                   and in_range(float(x.abs().amax()) if x.numel() else 0.0)):
        return None  # normalising would square values out of range: the caller rescales first
    single = codes.dim() == 2
    if single:
        x, codes = x.unsqueeze(1), codes.unsqueeze(0)
    dtype = torch.promote_types(x.dtype, codes.dtype)
    C, K, _ = codes.shape
    if mask is not None:
        mask = mask.to(torch.bool)
        if mask.shape not in ((K,), (C, K)):
            raise ValueError(f"mask: expected shape ({K},) or ({C}, {K}), got {tuple(mask.shape)}")
    entry = _TABLES.get("entry")
    # the same codes and mask objects, unchanged since: identity, never elementwise tensor equality
    state = (codes._version, metric, None if mask is None else mask._version)
    if entry is not None and entry[0] is codes and entry[1] is mask and entry[2] == state:
        table = entry[3]
    else:
        if metric == "cosine":  # 1 - cos: minus the dot product of unit vectors, plus one
            search_codes = torch.nn.functional.normalize(codes.float(), dim=-1, eps=_TINY)
        else:
            search_codes = codes if codes.dtype == torch.float64 else codes.float()
        table = CodeTable(search_codes, "l2" if metric == "l2" else "dot", mask=mask)
        _TABLES["entry"] = (codes, mask, state, table)
    if metric == "cosine":
        x = torch.nn.functional.normalize(x.float(), dim=-1, eps=_TINY)  # unit rows at any scale
    if not (in_range(table.amax) and in_range(float(x.abs().amax()) if x.numel() else 0.0)):
        return None
    dist, idx = search(x, table, k, backend=backend)
    if metric == "cosine":
        dist = dist + 1
    dist = dist.to(dtype)
    if single:
        dist, idx = dist.squeeze(1), idx.squeeze(1)
    return dist, idx


def last_undecided() -> int:
    """Rows the last search settled in float64 (a diagnostic)."""
    return _STATE.get("last_undecided", 0)


__all__ = ["CodeTable", "MAX_DIM", "MAX_K", "c_kernel", "in_range", "last_undecided", "nearest", "rows_add_",
           "search"]
