# img: plain make.  `make`, `make check`, `make demo`, `make bench`, `make install PREFIX=...`
CC	?= cc
CFLAGS	?= -O2 -g
WARN	= -std=gnu11 -Wall -Wextra -Werror -Wshadow -Wvla -Wformat=2
CPPFLAGS += -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64
LDLIBS	= -lz -lzstd -lpthread -lm
PREFIX	?= /usr/local
BIN	?= bin
OBJ	?= obj
SAN	?=
# static programs: a pipeline of four of them then costs ~4 MiB less memory
# (each maps none of libc's and zlib's pages it does not use); the sanitizer build is not
STATIC	?= -static

LIBSRC	:= $(sort $(wildcard lib/*.c formats/*.c formats/*/*.c))
TOOLSRC	:= $(sort $(wildcard tools/*.c))
LIBOBJ	:= $(LIBSRC:%.c=$(OBJ)/%.o)
PROGS	:= $(TOOLSRC:tools/%.c=$(BIN)/%)
MANS	:= $(sort $(wildcard man/*.1))
ALLFLAGS = $(WARN) $(CFLAGS) $(SAN) $(CPPFLAGS)

all: $(PROGS)

$(OBJ)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALLFLAGS) -I$(OBJ) -MMD -MP -c -o $@ $<

$(OBJ)/libformats.a: $(LIBOBJ)
	rm -f $@
	$(AR) rcs $@ $^

# img --help lists each page's .Nd line (git's generate-cmdlist.sh does likewise)
$(OBJ)/cmdlist.h: $(MANS) Makefile
	@mkdir -p $(@D)
	for f in $(MANS); do \
	    n=$$(basename $$f .1); [ "$$n" = img ] && continue; \
	    d=$$(sed -n 's/^\.Nd //p' $$f | sed 's/\\/\\\\/g; s/"/\\"/g'); \
	    printf '\t{ "%s", "%s" },\n' "$${n#img-}" "$$d"; \
	done > $@.tmp && mv $@.tmp $@

$(OBJ)/tools/img.o: $(OBJ)/cmdlist.h
# keep the objects: make would delete them as intermediates, printing "rm" after check's last line
.SECONDARY: $(TOOLSRC:tools/%.c=$(OBJ)/tools/%.o)

$(BIN)/%: $(OBJ)/tools/%.o $(OBJ)/libformats.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(SAN) $(STATIC) -o $@ $< $(OBJ)/libformats.a $(LDLIBS)

ABIN	?= bin-asan
AOBJ	?= obj-asan

asan:
	$(MAKE) BIN=$(ABIN) OBJ=$(AOBJ) CFLAGS="-O1 -g" STATIC= \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

deps:
	@tests/deps.sh

# tests/house.bats lints the pages; tests/run ends with one "check: N passed, M failed" line
check: deps all asan
	tests/run --build $(BIN) --build $(ABIN):asan

check-fast: all
	tests/run

demo: deps all
	tests/demo.sh

bench: deps all
	tests/bench/run

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	for m in $(MANS); do \
	    install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man1/ || exit 1; done
	install -m 644 completions/img \
	    $(DESTDIR)$(PREFIX)/share/bash-completion/completions/img
	for p in $(notdir $(PROGS)); do [ $$p = img ] || \
	    ln -sf img $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$p || \
	    exit 1; done

clean:
	rm -rf bin obj bin-asan obj-asan

.PHONY: all asan deps check check-fast demo bench install clean
-include $(LIBOBJ:.o=.d) $(TOOLSRC:tools/%.c=$(OBJ)/tools/%.d)
