#!/bin/bash
# ThreadSanitizer build of tests/c/test_embed_loop.c: two hosts running at once in two
# threads, and couchlua_interrupt from a second thread, with no data race. The library and
# the test are built with -fsanitize=thread into the build directory's tsan/ folder (kept
# between runs, so only changed files rebuild).
: "${COUCHLUA_BUILD_DIR:?}" "${COUCHLUA_SOURCE_DIR:?}"
dir=$COUCHLUA_BUILD_DIR/tsan
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
echo 'int main(void){return 0;}' >"$probe/t.c"
if ! cc -fsanitize=thread "$probe/t.c" -o "$probe/t" 2>/dev/null || ! "$probe/t"; then
  echo "SKIPPED: this compiler or kernel cannot build/run ThreadSanitizer programs"
  exit 77
fi
if [[ ! -f $dir/CMakeCache.txt ]]; then
  cmake -S "$COUCHLUA_SOURCE_DIR" -B "$dir" -DCOUCHLUA_TSAN=ON -DCMAKE_BUILD_TYPE=Debug >"$probe/configure.log" 2>&1 ||
    { cat "$probe/configure.log"; echo "FAIL: configuring the ThreadSanitizer build"; exit 1; }
fi
cmake --build "$dir" -j2 --target test_embed_loop >"$probe/build.log" 2>&1 ||
  { tail -n 40 "$probe/build.log"; echo "FAIL: building the ThreadSanitizer test"; exit 1; }
TSAN_OPTIONS="halt_on_error=1 exitcode=66 ${TSAN_OPTIONS:-}" "$dir/tests/test_embed_loop"
rc=$?
if ((rc != 0)); then
  echo "FAIL: test_embed_loop under ThreadSanitizer exited $rc"
  exit 1
fi
echo "1 passed, 0 failed"
