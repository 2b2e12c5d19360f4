/* Reading the REPL's lines. On a terminal: libedit (BSD-licensed) with history kept in
 * ~/.couchlua_history. Otherwise plain stdio, so the REPL can be driven through a pipe;
 * prompts are still printed then, as lua.c does. Either way a Ctrl-C during the read makes
 * it return CLI_READ_INTERRUPTED: libedit reads through our getc, which waits on the
 * terminal and on signals.c's wake-up pipe together, so no Ctrl-C is lost between the
 * prompt and the read; on stdio the read fails with EINTR (no SA_RESTART). */
#include "cli/cli.h"

#include <editline/readline.h>
#include <errno.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <wchar.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HISTORY_FILE ".couchlua_history"
#define HISTORY_MAX 1000

static int use_editor;      /* stdin is a terminal */
static struct {             /* work to do while waiting for a key (cli_input_set_background) */
  int fd;
  int (*timeout)(void *ud);
  void (*tick)(void *ud);
  void *ud;
} background = {.fd = -1};
static char *history_path;  /* NULL: no $HOME, history kept in memory only */
static const char *(*candidate)(void *ud, const char *word, int index); /* completion */
static void *candidate_ud;
static char *saved_ctype;   /* LC_CTYPE before the REPL, restored after */

/* One byte from fd, or -1 at end of input or when Ctrl-C arrived. Meanwhile the background
 * work runs whenever its descriptor is ready or its timeout has passed. */
static int read_byte(int fd) {
  struct pollfd p[3] = {{.fd = fd, .events = POLLIN},
                        {.fd = cli_signals_read_fd(), .events = POLLIN},
                        {.fd = background.fd, .events = POLLIN}};
  for (;;) {
    if (cli_signals_read_interrupted()) return -1;
    int wait = background.tick ? background.timeout(background.ud) : -1;
    int n = poll(p, 3, wait); /* a negative fd is ignored by poll */
    if (n < 0 && errno != EINTR) return -1;
    if (background.tick && ((n == 0 && wait >= 0) || (n > 0 && p[2].revents))) {
      background.tick(background.ud);
      continue;
    }
    if (n <= 0) continue; /* EINTR: the flag says whether it was Ctrl-C */
    if (p[1].revents) return -1;
    if (!p[0].revents) continue;
    unsigned char c;
    ssize_t r = read(fd, &c, 1);
    if (r == 1) return c;
    if (r == 0 || errno != EINTR) return -1;
  }
}

/* libedit's rl_getc_function: one character as a code point (libedit stores what this
 * returns as a wchar_t), decoded from the terminal's multibyte encoding. */
static int getc_char(FILE *in) {
  mbstate_t st;
  memset(&st, 0, sizeof st);
  for (;;) {
    int b = read_byte(fileno(in));
    if (b < 0) return EOF;
    char byte = (char)b;
    wchar_t wc;
    size_t r = mbrtowc(&wc, &byte, 1, &st);
    if (r == (size_t)-2) continue; /* more bytes to come */
    if (r == (size_t)-1) return b; /* not valid here: pass the byte on */
    return (int)wc;
  }
}

/* libedit needs LC_CTYPE to handle non-ASCII input; Lua itself never reads the locale for
 * parsing, and its string functions treat bytes >= 0x80 the same in UTF-8 locales. */
static void set_ctype(void) {
  const char *old = setlocale(LC_CTYPE, NULL);
  saved_ctype = old ? strdup(old) : NULL;
  if (!setlocale(LC_CTYPE, "") || strcmp(nl_langinfo(CODESET), "UTF-8") != 0)
    setlocale(LC_CTYPE, "C.UTF-8"); /* no locale set: assume the usual UTF-8 terminal */
}

int cli_input_is_tty(void) { return use_editor; }

/* libedit's generator: state 0 starts a new completion; each call returns one malloc'd
 * match, NULL when there are no more. */
static char *next_match(const char *text, int state) {
  static int index;
  if (state == 0) index = 0;
  if (!candidate) return NULL;
  const char *c = candidate(candidate_ud, text, index++);
  return c ? strdup(c) : NULL;
}

void cli_input_set_completion(const char *(*fn)(void *ud, const char *word, int index), void *ud) {
  candidate = fn;
  candidate_ud = ud;
}

void cli_input_set_background(int fd, int (*timeout)(void *), void (*tick)(void *), void *ud) {
  background.fd = fd;
  background.timeout = timeout;
  background.tick = tick;
  background.ud = ud;
}

/* Output written between these two lands above the prompt: the line being edited is
 * erased first and drawn again after. */
void cli_input_hide(void) {
  if (!use_editor) return;
  fputs("\r\033[K", stdout);
  fflush(stdout);
}

void cli_input_show(void) {
  if (!use_editor) return;
  fflush(stdout);
  rl_forced_update_display();
}

void cli_input_open(void) {
  use_editor = isatty(STDIN_FILENO);
  if (!use_editor) return;
  rl_readline_name = "couchlua"; /* for $if couchlua in ~/.editrc */
  rl_catch_signals = 0;          /* SIGINT is ours (signals.c), not libedit's */
  rl_getc_function = getc_char;  /* must be set before rl_initialize */
  /* a word may hold `.` and `:` (couch.rep<Tab>, srv:<Tab>), so they do not break it */
  rl_completer_word_break_characters = (char *)" \t\n\"\\'`@$><=;|&{(,+-*/%^~[]#";
  rl_completion_entry_function = next_match;
  rl_completion_append_character = '\0';
  set_ctype();
  rl_initialize();
  stifle_history(HISTORY_MAX);
  const char *home = getenv("HOME");
  if (home && *home) {
    size_t n = strlen(home) + sizeof "/" HISTORY_FILE;
    history_path = malloc(n);
    if (history_path) {
      snprintf(history_path, n, "%s/%s", home, HISTORY_FILE);
      read_history(history_path); /* a first run has none: fine */
    }
  }
}

static int read_plain(const char *prompt, char **line) {
  fputs(prompt, stdout);
  fflush(stdout);
  char *buf = NULL;
  size_t cap = 0;
  errno = 0;
  ssize_t len = getline(&buf, &cap, stdin);
  if (len < 0) {
    free(buf);
    int eintr = errno == EINTR && cli_signals_read_interrupted();
    clearerr(stdin);
    return eintr ? CLI_READ_INTERRUPTED : CLI_READ_EOF;
  }
  if (len > 0 && buf[len - 1] == '\n') buf[--len] = '\0';
  *line = buf;
  return CLI_READ_LINE;
}

static int read_edited(const char *prompt, char **line) {
  char *l = readline(prompt);
  /* After Ctrl-C libedit hands back what was typed so far: it is dropped. */
  if (cli_signals_read_interrupted()) {
    free(l);
    return CLI_READ_INTERRUPTED;
  }
  if (l == NULL) return CLI_READ_EOF;
  *line = l;
  return CLI_READ_LINE;
}

int cli_input_read(const char *prompt, char **line) {
  *line = NULL;
  cli_signals_read_reset();
  return use_editor ? read_edited(prompt, line) : read_plain(prompt, line);
}

void cli_input_remember(const char *line) {
  if (!use_editor || line[0] == '\0') return;
  add_history(line);
  /* Saved at once, so os.exit() or a second Ctrl-C loses nothing. An unwritable file is
   * not worth a message per line: the history just is not kept. */
  if (history_path) write_history(history_path);
}

void cli_input_close(void) {
  if (!use_editor) return;
  if (history_path) write_history(history_path);
  clear_history();
  free(history_path);
  history_path = NULL;
  if (saved_ctype) setlocale(LC_CTYPE, saved_ctype);
  free(saved_ctype);
  saved_ctype = NULL;
}
