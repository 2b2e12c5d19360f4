/* A main() for the harnesses without libFuzzer: feeds each file named on the command line,
 * or each file in a named directory, once to LLVMFuzzerTestOneInput. ctest replays the
 * checked-in corpus this way, built with the normal compiler (build/ and build-asan/).
 * Each input gets a buffer of exactly its size, so ASan sees any read past its end. */
#include "fuzz.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return 0;
  }
  size_t cap = 4096, n = 0, got;
  char *buf = malloc(cap);
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0)
    if ((n += got) == cap) buf = realloc(buf, cap *= 2);
  fclose(f);
  if (!buf) abort();
  char *exact = malloc(n ? n : 1);
  if (!exact) abort();
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput((const uint8_t *)exact, n);
  free(exact);
  return 1;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
  long count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
      if (!replay_file(argv[i])) return 1;
      count++;
      continue;
    }
    struct dirent **names;
    int n = scandir(argv[i], &names, NULL, by_name);
    if (n < 0) {
      perror(argv[i]);
      return 1;
    }
    for (int k = 0; k < n; k++) {
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], names[k]->d_name);
      if (names[k]->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        if (!replay_file(path)) return 1;
        count++;
      }
      free(names[k]);
    }
    free(names);
  }
  printf("%s: replayed %ld inputs\n", argv[0], count);
  if (count == 0) {
    fprintf(stderr, "no input to replay: an empty corpus tests nothing\n");
    return 1;
  }
  return 0;
}
