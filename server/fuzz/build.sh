#!/bin/sh
# build.sh [NAME...] - build the libFuzzer harnesses of server/fuzz/ into
# build-fuzz/ (all of them, or only the named ones, e.g. `build.sh sse`).
#
# Needs clang with libFuzzer (Debian: apt-get install -y clang-14
# libclang-rt-14-dev). CC overrides the compiler. Project sources are
# compiled once into build-fuzz/obj/ with coverage instrumentation and
# ASan + UBSan (UB aborts, so it counts as a crash), then linked with each
# harness. Objects are rebuilt when any source or header is newer.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
OUT=build-fuzz
OBJ=$OUT/obj

CC=${CC:-}
if [ -z "$CC" ]; then
    for c in clang-14 clang; do
        if command -v "$c" >/dev/null 2>&1; then CC=$c; break; fi
    done
fi
if [ -z "$CC" ]; then
    echo "fuzz: clang not found (apt-get install -y clang-14 libclang-rt-14-dev)" >&2
    exit 2
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
# store_pg.c includes <libpq-fe.h>, which Debian keeps in /usr/include/postgresql
PQ_CFLAGS=$(pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
CFLAGS="-g -O1 -fno-omit-frame-pointer $SAN -D_GNU_SOURCE -std=c11 -Iserver/src $PQ_CFLAGS -Wall -Wno-unused-parameter"

# Sources each harness links (paths under server/src). fuzz_json,
# fuzz_upstream and fuzz_headers #include the .c files whose static
# functions they reach, so they link every other source of the server (but
# not main.c).
LIB="lib/common.c lib/buf.c"
SRC_sse="$LIB lib/utf8.c llm/sse_parse.c llm/openai_stream.c"
SRC_path="$LIB http/route.c lib/utf8.c lib/ids.c"
SRC_keys="$LIB lib/crypto.c"
SRC_config="$LIB lib/log.c lib/redis.c config.c"
SRC_ssr="$LIB lib/ids.c lib/crypto.c http/ssr.c"
ALL=$(cd server/src && find . -name '*.c' ! -name main.c | sed 's|^\./||' | sort)
SRC_json=$(printf '%s\n' $ALL | grep -v -e '^api/messages\.c$' -e '^api/chats\.c$' \
    -e '^api/tokens\.c$' -e '^api/accounts\.c$' -e '^api/connection\.c$' -e '^api/admin\.c$')
SRC_upstream=$(printf '%s\n' $ALL | grep -v -e '^llm/turn\.c$')
SRC_headers=$(printf '%s\n' $ALL | grep -v -e '^http/security\.c$')

LIBS_sse="-ljansson"
LIBS_path="-levent"
LIBS_keys="-lcrypto -largon2"
LIBS_config="-lhiredis -levent -lcrypto"
LIBS_ssr="-ljansson -lcrypto -largon2 -ldl -lpthread"
# Everything the server links (the same dependencies as meson.build).
LIBS_all="$(pkg-config --libs libevent libevent_openssl libssl libcurl jansson sqlite3 libpq \
    libcrypto libargon2 hiredis 2>/dev/null || echo -levent_openssl -levent -lssl -lcurl -ljansson \
    -lsqlite3 -lpq -lcrypto -largon2 -lhiredis) -lpthread -lm"
LIBS_json=$LIBS_all
LIBS_upstream=$LIBS_all
LIBS_headers=$LIBS_all

NAMES="sse json path keys config upstream headers ssr"
[ $# -gt 0 ] && NAMES="$*"

mkdir -p "$OBJ"

# obj SRC -> path of its instrumented object, (re)compiled when it is missing
# or older than its source, any header, or this script.
obj() {
    o="$OBJ/$(echo "$1" | tr / _ | sed 's/\.c$/.o/')"
    if [ ! -f "$o" ] || [ "server/src/$1" -nt "$o" ] || [ server/fuzz/build.sh -nt "$o" ] ||
        [ -n "$(find server/src -name '*.h' -newer "$o" | head -n 1)" ]; then
        $CC $CFLAGS -fsanitize=fuzzer-no-link -c "server/src/$1" -o "$o" >&2
    fi
    echo "$o"
}

for n in $NAMES; do
    eval "srcs=\${SRC_$n:-}"
    eval "libs=\${LIBS_$n-}"
    if [ ! -f "server/fuzz/fuzz_$n.c" ]; then
        echo "fuzz: no harness server/fuzz/fuzz_$n.c" >&2
        exit 2
    fi
    objs=""
    for s in $srcs; do
        objs="$objs $(obj "$s")"
    done
    # shellcheck disable=SC2086
    $CC $CFLAGS -fsanitize=fuzzer "server/fuzz/fuzz_$n.c" $objs $libs -o "$OUT/fuzz_$n"
    echo "built $OUT/fuzz_$n"
done
