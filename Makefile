# ngx_segura_module
#
#   make            build build/ngx_http_segura_module.so (Debian's nginx-dev)
#                   and the web UI's xterm.js (html/vendor/, from npm)
#   make run        install, build, start PostgreSQL + nginx on 127.0.0.1:8080
#   make test       install, build (warnings are errors), run every test
#   make test ASAN=1    the same with the module under AddressSanitizer
#   make fuzz       libFuzzer on the WebSocket frame parser (FUZZ_SECONDS)
#   make bench      the benchmark against plain ssh
#   make deb        build/libnginx-mod-http-segura_<version>_<arch>.deb
#
# NGINX_SRC=<upstream nginx source tree> builds against that tree instead.

SHELL        := /bin/bash
TOP          := $(CURDIR)
PORT         ?= 8080
ASAN         ?= 0
FUZZ_SECONDS ?= 180
DEMO         ?= 1

DEBIAN_SRC   := /usr/share/nginx/src

ifeq ($(ASAN),1)
BUILD        := $(TOP)/build/asan
SAN_CC       := -fsanitize=address -fno-omit-frame-pointer
SAN_LD       := -fsanitize=address
else
BUILD        := $(TOP)/build/release
SAN_CC       :=
SAN_LD       :=
endif

# nginx's own configure adds -W -Wall -Wpointer-arith -Wno-unused-parameter
# -Werror; say it once more so that no tree can drop it
CC_OPT       := -g -O2 -Wall -Wextra -Werror -Wno-unused-parameter \
                -fstack-protector-strong -D_FORTIFY_SOURCE=2 -fPIC $(SAN_CC)
LD_OPT       := -Wl,-z,relro -Wl,-z,now -fPIC $(SAN_LD)

SRCS         := config docs/openapi.json \
                $(wildcard ngx_segura_module/*.c ngx_segura_module/*.h)
MODULE       := $(TOP)/build/ngx_http_segura_module.so

ifeq ($(ASAN),1)
MODULE       := $(TOP)/build/ngx_http_segura_module.asan.so
endif

ifdef NGINX_SRC
NGX_TREE     := $(NGINX_SRC)
NGX_BIN      := $(NGINX_SRC)/objs/nginx
MODULE       := $(TOP)/build/upstream/ngx_http_segura_module.so
else
NGX_TREE     := $(BUILD)/nginx
NGX_BIN      := /usr/sbin/nginx
endif

UNIT_SRCS    := $(wildcard ngx_segura_module/ngx_segura_ws.c \
                           ngx_segura_module/ngx_segura_vault.c \
                           ngx_segura_module/ngx_segura_sshkey.c \
                           ngx_segura_module/ngx_segura_words.c \
                           ngx_segura_module/ngx_segura_index.c)
UNIT_TESTS   := $(patsubst t/unit/%.c,build/unit/%,$(wildcard t/unit/test_*.c))
UNIT_CFLAGS  := -std=gnu99 -Wall -Wextra -Werror -g -O1 \
                -fsanitize=address,undefined -fno-omit-frame-pointer \
                -Ingx_segura_module

.PHONY: all deps build module tools ui run test unit e2e fuzz bench deb clean distclean

all: build ui

deps:
	@tools/deps.sh build

build: module tools

module: $(MODULE)

tools: build/segura-passwd build/segura-vault

build/segura-passwd: tools/segura-passwd.c | build/.dir
	$(CC) -std=gnu99 -Wall -Wextra -Werror -O2 -g -o $@ $< -largon2 -lcrypto

build/segura-vault: tools/segura-vault.c ngx_segura_module/ngx_segura_vault.c \
                    ngx_segura_module/ngx_segura_vault.h | build/.dir
	$(CC) -std=gnu99 -Wall -Wextra -Werror -O2 -g -Ingx_segura_module -o $@ \
	    tools/segura-vault.c ngx_segura_module/ngx_segura_vault.c -lcrypto

build/.dir:
	@mkdir -p build && touch $@

# the web UI is static files; only xterm.js and asciinema-player (the
# Replay view) come from npm, at the exact versions of
# html/package-lock.json. npm installs them in build/ui/, outside what
# nginx serves, and only their browser files (and licences) are copied to
# html/vendor/xterm/ and html/vendor/asciinema-player/
UI_STAMP     := html/vendor/xterm/.installed
UI_NPM       := build/ui

ui: $(UI_STAMP)

$(UI_STAMP): html/package.json html/package-lock.json
	@tools/deps.sh ui
	mkdir -p $(UI_NPM)
	cp html/package.json html/package-lock.json $(UI_NPM)/
	cd $(UI_NPM) && npm ci --no-audit --no-fund --loglevel=error
	rm -rf html/vendor/xterm && mkdir -p html/vendor/xterm
	set -e; for d in $(UI_NPM)/node_modules/@xterm/*/; do \
	    p=$$(basename $$d); \
	    cp $$d/lib/*.js html/vendor/xterm/; \
	    if [ -f $$d/LICENSE ]; then \
	        cp $$d/LICENSE html/vendor/xterm/LICENSE-$$p; \
	    else \
	        node -p "'@xterm/$$p ' + require('./$$d/package.json').version \
	            + ': ' + require('./$$d/package.json').license \
	            + ' (its package.json; the package has no LICENSE file)'" \
	            > html/vendor/xterm/LICENSE-$$p; \
	    fi; \
	done
	cp $(UI_NPM)/node_modules/@xterm/xterm/css/xterm.css html/vendor/xterm/
	rm -rf html/vendor/asciinema-player && mkdir -p html/vendor/asciinema-player
	cp $(UI_NPM)/node_modules/asciinema-player/dist/bundle/asciinema-player.min.js \
	   $(UI_NPM)/node_modules/asciinema-player/dist/bundle/asciinema-player.css \
	   $(UI_NPM)/node_modules/asciinema-player/LICENSE html/vendor/asciinema-player/
	touch $@

# Debian's tree has no top-level Makefile: configure with the flags the
# package was built with (conf_flags), so the module is binary-compatible
# with /usr/sbin/nginx, then build the modules target only.

ifdef NGINX_SRC

$(NGX_TREE)/objs/Makefile: config
	# a release tarball has ./configure, a git checkout auto/configure
	cd $(NGX_TREE) && $$([ -x ./configure ] && echo ./configure \
	                                       || echo auto/configure) \
	    --with-compat --with-threads \
	    --with-http_ssl_module --with-cc-opt='$(CC_OPT)' \
	    --with-ld-opt='$(LD_OPT)' --add-dynamic-module=$(TOP)

else

$(NGX_TREE)/objs/Makefile: config
	@tools/deps.sh build
	rm -rf $(NGX_TREE) && mkdir -p $(dir $(NGX_TREE))
	cp -a $(DEBIAN_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && . ./conf_flags && ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt='$(CC_OPT)' --with-ld-opt='$(LD_OPT)' \
	    --add-dynamic-module=$(TOP) >$(NGX_TREE)/configure.log 2>&1 \
	    || { tail -30 $(NGX_TREE)/configure.log; exit 1; }

endif

$(MODULE): $(NGX_TREE)/objs/Makefile $(SRCS)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile modules
	@mkdir -p $(dir $@)
	# a new inode: nginx processes still running keep the old mapping
	cp $(NGX_TREE)/objs/ngx_http_segura_module.so $@.tmp && mv -f $@.tmp $@

run: deps-run build ui
	@PORT=$(PORT) DEMO=$(DEMO) NGINX_BIN=$(NGX_BIN) MODULE=$(MODULE) \
	    tools/run.sh

deps-run:
	@tools/deps.sh build run

test: deps-test build ui unit build/test/stderr-sshd build/test/stall-sshd \
      build/test/highfd.so
	@ASAN=$(ASAN) NGINX_BIN=$(NGX_BIN) MODULE=$(MODULE) t/run-tests $(TESTS)

# a device that writes to stderr under a pty, which OpenSSH never does
build/test/stderr-sshd: t/device/stderr-sshd.c
	@mkdir -p build/test
	$(CC) -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter -O1 -g -o $@ $< -lssh

# a device that goes silent at a chosen point of the SSH set-up
build/test/stall-sshd: t/device/stall-sshd.c
	@mkdir -p build/test
	$(CC) -std=gnu99 -Wall -Wextra -Werror -Wno-unused-parameter -O1 -g -o $@ $< -lssh

# LD_PRELOAD: TCP sockets above descriptor 65535 (t/session_highfd.t)
build/test/highfd.so: t/device/highfd.c
	@mkdir -p build/test
	$(CC) -std=gnu99 -Wall -Wextra -Werror -O1 -g -shared -fPIC -o $@ $< -ldl

deps-test:
	@tools/deps.sh build test

unit: $(UNIT_TESTS)
	@set -e; for t in $(UNIT_TESTS); do echo "== $$t"; ./$$t; done

build/unit/%: t/unit/%.c $(UNIT_SRCS) $(wildcard ngx_segura_module/*.h)
	@mkdir -p build/unit
	$(CC) $(UNIT_CFLAGS) -o $@ $< $(UNIT_SRCS) -lcmocka -lssh -lcrypto

fuzz: build/fuzz_ws
	@mkdir -p build/fuzz-corpus
	cp -n t/fuzz/corpus_ws/* build/fuzz-corpus/ 2>/dev/null || true
	./build/fuzz_ws -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/ build/fuzz-corpus t/fuzz/corpus_ws

build/fuzz_ws: t/fuzz/fuzz_ws.c ngx_segura_module/ngx_segura_ws.c \
               ngx_segura_module/ngx_segura_ws.h
	@tools/deps.sh fuzz
	@mkdir -p build
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Ingx_segura_module \
	    -o $@ t/fuzz/fuzz_ws.c ngx_segura_module/ngx_segura_ws.c -lcrypto

# the Debian package, for Debian's own nginx (not with NGINX_SRC)
deb: build ui
	@tools/deps.sh deb
	@tools/mkdeb.sh $(MODULE) build

bench: build ui
	@tools/deps.sh bench
	@NGINX_BIN=$(NGX_BIN) MODULE=$(MODULE) bench/run

clean:
	rm -rf build

distclean: clean
	-[ -L .run/pg ] && t/bin/pg-cluster stop "$$(readlink .run/pg)" && \
	    rm -rf "$$(readlink .run/pg)"
	rm -rf .run html/node_modules html/vendor t/e2e/node_modules bench/node_modules
