# mmdiff - portable differentiable mmWave ray tracer (C11 + OpenCL 1.2)
#
#   make            build build/mmdiff
#   make test       build and run the unit tests on the default OpenCL device (PoCL in CI)
#   make test-asan  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make bench      performance figures (BENCH lines), see BENCHMARKS.md
#   make demo       install missing packages, build, run the robustness protocol at demo size
#   make paper      the robustness protocol at the paper's size (hours on a CPU; docs/protocol.md)
#   make install    PREFIX=/usr/local DESTDIR=
#   make deps       install the Debian packages (or print the command)

PREFIX ?= /usr/local
# make MPI=1: built with Open MPI's mpicc for multi-rank runs (src/par, docs/cluster.md);
# its objects live in build-mpi/ so the two builds never mix
MPI ?= 0
ifeq ($(MPI),1)
  BUILD ?= build-mpi
  CC := mpicc
  MPI_CFLAGS := -DMMD_HAVE_MPI=1
endif
BUILD ?= build
CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS := OpenCL yaml-0.1

# stb is header-only here (one .c defines the implementation), so only its cflags are used.
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) stb 2>/dev/null)
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null)
ifeq ($(PKG_LIBS),)
  PKG_LIBS := -lOpenCL -lyaml
endif

OPT ?= -O2
CFLAGS ?= $(OPT) -g
# -ffp-contract=off: host references must round exactly like the kernels (which also
# disable contraction), so hits and t compare bit-for-bit.
ALL_CFLAGS := -std=c11 -Wall -Wextra -Wno-unused-parameter -ffp-contract=off -pthread \
              -D_GNU_SOURCE -Iinclude -I$(BUILD)/gen $(PKG_CFLAGS) $(MPI_CFLAGS) $(CFLAGS)
# CLBlast runs the MLP's GEMMs (src/learn/mlp.c); Debian's libclblast-dev has a .pc file, others may not.
CLBLAST_LIBS := $(shell $(PKG_CONFIG) --libs clblast 2>/dev/null || echo -lclblast)
LDLIBS := $(PKG_LIBS) $(CLBLAST_LIBS) -lm -lpthread
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0)

# Embree 3 is used by `make bench` only, as the reference, when its headers exist.
EMBREE := $(shell test -f /usr/include/embree3/rtcore.h && echo 1)

LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
CL_SRC := $(sort $(wildcard cl/*.cl cl/*.h)) $(wildcard include/mmd_shared.h include/mmd_isect.h)
TEST_SRC := $(sort $(wildcard test/test_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/kernels.o
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN := $(TEST_SRC:test/%.c=$(BUILD)/test/%)
LIB := $(BUILD)/libmmdiff.a
BIN := $(BUILD)/mmdiff

.PHONY: all test test-mpi test-asan bench studies demo paper install clean deps check-deps fuzz fuzz-build fuzz-lib
all: check-deps $(BIN)

check-deps:
	@$(PKG_CONFIG) --exists $(PKGS) stb 2>/dev/null || { \
	  echo "mmdiff: missing build dependencies (pkg-config: $(PKGS))."; \
	  echo "  install them with:  make deps   (or: sudo apt-get install ocl-icd-opencl-dev opencl-headers pocl-opencl-icd libclblast-dev libyaml-dev libstb-dev pkg-config)"; \
	  exit 1; }

deps:
	@sh tools/install-deps.sh

$(BUILD)/tools/embed: tools/embed.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -o $@ $<

$(BUILD)/gen/kernels.c: $(CL_SRC) $(BUILD)/tools/embed
	@mkdir -p $(dir $@)
	$(BUILD)/tools/embed $@ $(CL_SRC)

$(BUILD)/obj/gen/kernels.o: $(BUILD)/gen/kernels.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# The version goes through a stamp file rewritten only when `git describe` changes, so main.o is
# rebuilt after a commit and run directories never record a stale version.
$(BUILD)/gen/version.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo "$(VERSION)" | cmp -s - $@ || echo "$(VERSION)" > $@
$(BUILD)/obj/src/cli/main.o: ALL_CFLAGS += -DMMD_VERSION=\"$(VERSION)\"
$(BUILD)/obj/src/cli/main.o: $(BUILD)/gen/version.stamp
FORCE:

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/test/%: test/%.c $(LIB) test/mmd_test.h test/mmd_test_cli.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itest -o $@ $< $(LIB) $(LDLIBS)

# Tests run on the default device ($MMDIFF_DEVICE or auto); kernel binaries are cached
# under the build folder so repeated runs skip the OpenCL compile.
test: check-deps $(BIN) $(TEST_BIN)
	@MMDIFF_CACHE_DIR=$${MMDIFF_CACHE_DIR:-$(CURDIR)/$(BUILD)/clcache} MMD_BIN=$(CURDIR)/$(BIN) \
	  MMD_SHARED=$${MMD_SHARED:-$(CURDIR)/../shared} test/run_tests.sh $(TEST_BIN)

# Multi-rank checks of the MPI build (issue 7; Open MPI: libopenmpi-dev openmpi-bin),
# two ranks on this machine (loopback).
MPIRUN := OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --oversubscribe
test-mpi:
	$(MAKE) MPI=1 all build-mpi/test/test_par build-mpi/test/test_par_sim
	$(MPIRUN) build-mpi/test/test_par
	MMDIFF_CACHE_DIR=$${MMDIFF_CACHE_DIR:-$(CURDIR)/build-mpi/clcache} MMD_SHARED=$${MMD_SHARED:-$(CURDIR)/../shared} \
	  $(MPIRUN) build-mpi/test/test_par_sim
	MMDIFF_CACHE_DIR=$${MMDIFF_CACHE_DIR:-$(CURDIR)/build-mpi/clcache} sh test/mpi_cli.sh build-mpi

test-asan:
	LSAN_OPTIONS=suppressions=$(CURDIR)/test/lsan.supp:print_suppressions=0 MMD_TEST_QUICK_BRUTE=1 \
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" test

BENCH_SRC := $(sort $(wildcard tools/bench*.c))
ifeq ($(EMBREE),1)
  BENCH_FLAGS := -DMMD_HAVE_EMBREE=1
  BENCH_LIBS := -lembree3
endif
# OpenBLAS is the yardstick for the CLBlast MLP in tools/bench_mlp.c (bench only).
OPENBLAS_CFLAGS := $(shell $(PKG_CONFIG) --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
OPENBLAS_LIBS := $(shell $(PKG_CONFIG) --libs openblas 2>/dev/null || echo -lopenblas)
$(BUILD)/bench: $(BENCH_SRC) $(wildcard tools/bench*.h) $(LIB)
	$(CC) $(ALL_CFLAGS) $(BENCH_FLAGS) $(OPENBLAS_CFLAGS) -o $@ $(BENCH_SRC) $(LIB) $(LDLIBS) $(BENCH_LIBS) $(OPENBLAS_LIBS)

# Studies: one program per tools/study_*.c (physics figures, long parameter sweeps).
STUDY_BIN := $(patsubst tools/%.c,$(BUILD)/%,$(wildcard tools/study_*.c))
$(BUILD)/study_%: tools/study_%.c $(LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB) $(LDLIBS)

studies: check-deps $(STUDY_BIN)
	@for s in $(STUDY_BIN); do echo "== $$s"; $$s $(BUILD)/studies || exit 1; done

bench: check-deps $(BUILD)/bench $(BIN) studies
	MMDIFF_CACHE_DIR=$${MMDIFF_CACHE_DIR:-$(CURDIR)/$(BUILD)/clcache} $(BUILD)/bench
	@if [ "$(MPI)" = 1 ]; then sh tools/bench_mpi.sh; fi

demo:
	@sh tools/install-deps.sh --if-missing
	$(MAKE) all
	sh tools/demo.sh

# The robustness protocol at the paper's size (2800 TRAJ / 500 RAND poses; docs/protocol.md).
# tools/protocol_large.sh without --paper is the ~1 h, 400 / 200 run.
paper: all
	sh tools/protocol_large.sh --paper

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/doc/mmdiff
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/mmdiff
	install -m 644 README.md $(DESTDIR)$(PREFIX)/share/doc/mmdiff/

# Fuzzing (test/fuzz, docs/RELIABILITY.md): one libFuzzer harness per parser, built with
# clang + ASan + UBSan against a library compiled into its own folder (coverage-
# instrumented), so build/ is untouched. `make fuzz SECONDS=N` runs each harness for N
# seconds on its seeds (made from ../shared and the library's writers) plus whatever an
# earlier run found; a crash stops the run, and the input is in build-fuzz/artifacts/.
FUZZ_CC ?= clang-15
FUZZ_BUILD ?= build-fuzz
SECONDS ?= 10
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
# glibc defines CMPLX only for GCC >= 4.7, and clang claims to be GCC 4.2.
FUZZ_DEFS := '-DCMPLX(x,y)=__builtin_complex((double)(x),(double)(y))'
FUZZ_SRC := $(sort $(wildcard test/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:test/fuzz/%.c=$(FUZZ_BUILD)/%)
# -rss_limit_mb: an input that makes a parser allocate far beyond its size is a bug.
FUZZ_ARGS ?= -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=512 -print_final_stats=1

fuzz-lib:
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) \
	  CFLAGS="-O1 -g $(FUZZ_SANITIZE) -fsanitize=fuzzer-no-link $(FUZZ_DEFS)" $(FUZZ_BUILD)/libmmdiff.a

$(FUZZ_BUILD)/fuzz_%: test/fuzz/fuzz_%.c test/fuzz/fuzz_common.h $(FUZZ_BUILD)/libmmdiff.a
	$(FUZZ_CC) $(filter-out $(CFLAGS),$(ALL_CFLAGS)) -O1 -g $(FUZZ_SANITIZE) -fsanitize=fuzzer -o $@ $< \
	  $(FUZZ_BUILD)/libmmdiff.a $(LDLIBS)

$(FUZZ_BUILD)/make_seeds: test/fuzz/make_seeds.c test/fuzz/fuzz_common.h $(FUZZ_BUILD)/libmmdiff.a
	$(FUZZ_CC) $(filter-out $(CFLAGS),$(ALL_CFLAGS)) -O1 -g $(FUZZ_SANITIZE) -o $@ $< $(FUZZ_BUILD)/libmmdiff.a $(LDLIBS)

fuzz-build: check-deps
	@command -v $(FUZZ_CC) >/dev/null || { echo "mmdiff: make fuzz needs $(FUZZ_CC) with libFuzzer (apt-get install clang-15)"; exit 1; }
	@$(MAKE) --no-print-directory fuzz-lib
	@$(MAKE) --no-print-directory $(FUZZ_BIN) $(FUZZ_BUILD)/make_seeds

fuzz: fuzz-build
	@MMD_SHARED=$${MMD_SHARED:-$(CURDIR)/../shared} sh test/fuzz/run.sh $(FUZZ_BUILD) $(SECONDS) \
	  "$(FUZZ_ARGS)" $(notdir $(FUZZ_BIN))

clean:
	rm -rf build build-asan build-mpi build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
