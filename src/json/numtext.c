/* JSON number text: validation, exact decimal comparison, locale-proof strtod and the
 * shortest round-trip formatting of doubles. Pure C; no Lua state involved. */
#include "json/json.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int isdig(char c) { return c >= '0' && c <= '9'; }

int couch_json_numtext_valid(const char *s, size_t len) {
  size_t i = 0;
  if (i < len && s[i] == '-') i++;
  if (i >= len) return 0;
  if (s[i] == '0') i++;
  else if (s[i] >= '1' && s[i] <= '9') while (i < len && isdig(s[i])) i++;
  else return 0;
  if (i < len && s[i] == '.') {
    i++;
    if (i >= len || !isdig(s[i])) return 0;
    while (i < len && isdig(s[i])) i++;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= len || !isdig(s[i])) return 0;
    while (i < len && isdig(s[i])) i++;
  }
  return i == len;
}

/* A valid number text seen as sign, digits d[0..n) = integer part ++ fraction part, and
 * value = 0.d[first..last] * 10^e once leading and trailing zeros are dropped. */
typedef struct {
  int neg, zero;
  const char *ip, *fp; /* integer and fraction digits */
  size_t il, fl;
  size_t first, last; /* first and last non-zero digit indexes (when !zero) */
  long long e;
} parts;

#define EXP_CAP 1000000000000000LL /* saturate absurd exponents; values are then 0 or inf */

static char digit_at(const parts *p, size_t k) { return k < p->il ? p->ip[k] : p->fp[k - p->il]; }

static void split(const char *s, size_t len, parts *p) {
  size_t i = 0;
  long long exp = 0;
  memset(p, 0, sizeof *p);
  if (i < len && s[i] == '-') p->neg = 1, i++;
  p->ip = s + i;
  while (i < len && isdig(s[i])) i++;
  p->il = (size_t)(s + i - p->ip);
  p->fp = s + i;
  if (i < len && s[i] == '.') {
    p->fp = s + ++i;
    while (i < len && isdig(s[i])) i++;
    p->fl = (size_t)(s + i - p->fp);
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    int eneg = 0;
    i++;
    if (i < len && (s[i] == '+' || s[i] == '-')) eneg = s[i++] == '-';
    for (; i < len && isdig(s[i]); i++)
      if (exp < EXP_CAP) exp = exp * 10 + (s[i] - '0');
    if (eneg) exp = -exp;
  }
  size_t n = p->il + p->fl, f = 0;
  while (f < n && digit_at(p, f) == '0') f++;
  if (f == n) {
    p->zero = 1;
    return;
  }
  size_t l = n - 1;
  while (digit_at(p, l) == '0') l--;
  p->first = f;
  p->last = l;
  p->e = (long long)p->il - (long long)f + exp;
}

static int cmp_magnitude(const parts *a, const parts *b) {
  if (a->e != b->e) return a->e < b->e ? -1 : 1;
  size_t i = a->first, j = b->first;
  for (; i <= a->last && j <= b->last; i++, j++) {
    char x = digit_at(a, i), y = digit_at(b, j);
    if (x != y) return x < y ? -1 : 1;
  }
  if (i <= a->last) return 1; /* a has more (non-zero) digits */
  if (j <= b->last) return -1;
  return 0;
}

int couch_json_numtext_cmp(const char *a, size_t alen, const char *b, size_t blen) {
  parts pa, pb;
  split(a, alen, &pa);
  split(b, blen, &pb);
  if (pa.zero && pb.zero) return 0;
  if (pa.zero) return pb.neg ? 1 : -1;
  if (pb.zero) return pa.neg ? -1 : 1;
  if (pa.neg != pb.neg) return pa.neg ? -1 : 1;
  int m = cmp_magnitude(&pa, &pb);
  return pa.neg ? -m : m;
}

/* The C library reads and writes the locale's decimal point; JSON always has '.'. */
static char locale_point(void) {
  const char *p = localeconv()->decimal_point;
  return p && p[0] ? p[0] : '.';
}

double couch_json_numtext_tod(const char *text, size_t len) {
  char small[64], *buf = small, *end;
  if (len >= sizeof small && !(buf = malloc(len + 1))) return strtod("nan", NULL);
  memcpy(buf, text, len);
  buf[len] = '\0';
  double d = strtod(buf, &end);
  if ((size_t)(end - buf) != len) { /* stopped at '.': not the C locale */
    char *dot = memchr(buf, '.', len);
    if (dot) *dot = locale_point();
    d = strtod(buf, NULL);
  }
  if (buf != small) free(buf);
  return d;
}

size_t couch_json_fmt_double(double d, char *out) {
  int n = 0;
  /* 15 significant digits always survive decimal -> double -> decimal for normal doubles,
   * so %.15g already gives the shortest text when it has <= 15 digits. Subnormals have
   * less precision: search from 1 digit. */
  for (int prec = fpclassify(d) == FP_SUBNORMAL ? 1 : 15; prec <= 17; prec++) {
    n = snprintf(out, 32, "%.*g", prec, d);
    if (prec == 17 || strtod(out, NULL) == d) break;
  }
  int fractional = 0;
  for (int i = 0; i < n; i++) {
    char c = out[i];
    if (c == 'e' || c == 'n' || c == 'i') fractional = 1; /* exponent, nan, inf */
    else if (!isdig(c) && c != '-' && c != '+') out[i] = '.', fractional = 1;
  }
  if (!fractional) out[n++] = '.', out[n++] = '0', out[n] = '\0';
  return (size_t)n;
}

int couch_json_numtext_float(const char *text, size_t len, double *out) {
  double d = couch_json_numtext_tod(text, len);
  *out = d;
  if (!isfinite(d)) return 0;
  parts p;
  split(text, len, &p);
  /* DBL_DIG: a decimal of <= 15 significant digits comes back unchanged from a normal
   * double through %.15g, and no shorter or equal text can round-trip differently. */
  if (p.zero || (p.last - p.first < 15 && isnormal(d))) return 1;
  char buf[32];
  size_t n = couch_json_fmt_double(d, buf);
  return couch_json_numtext_cmp(buf, n, text, len) == 0;
}

size_t couch_json_fmt_integer(lua_Integer i, char *out) {
  char tmp[24];
  size_t n = 0, k = 0;
  unsigned long long u = i < 0 ? 0ULL - (unsigned long long)i : (unsigned long long)i;
  do tmp[n++] = (char)('0' + u % 10); while ((u /= 10) != 0);
  if (i < 0) out[k++] = '-';
  while (n) out[k++] = tmp[--n];
  out[k] = '\0';
  return k;
}
