# atomix — PGXS build of a C++17 Postgres extension.
EXTENSION = atomix
MODULE_big = atomix
DATA = sql/atomix--0.1.sql sql/atomix--0.2.sql sql/atomix--0.3.sql sql/atomix--0.4.sql sql/atomix--0.5.sql \
       sql/atomix--0.1--0.2.sql sql/atomix--0.2--0.3.sql sql/atomix--0.3--0.4.sql sql/atomix--0.4--0.5.sql
PGFILEDESC = "atomix - Raft-replicated distributed primitives"

# src/core/: the Postgres-free core (no Postgres header, enforced below);
# src/sql/: the SQL front end and the rest of the extension's Postgres side.
CORE_SRCS = $(wildcard src/core/*.cpp)
SRCS = $(CORE_SRCS) $(wildcard src/sql/*.cpp) $(wildcard bgworker/*.cpp) \
       $(wildcard replication/*.cpp) $(wildcard fdw/*.cpp)
OBJS = $(SRCS:.cpp=.o)
# Stamps of the core headers' stand-alone compilations (below).
CORE_HDR_CHECKS = $(patsubst %.h,%.hcheck,$(filter-out src/core/core_only.h,$(wildcard src/core/*.h)))
EXTRA_CLEAN = $(CORE_HDR_CHECKS)

PG_CPPFLAGS = -I$(srcdir)/src/core -I$(srcdir)/src/sql -I$(srcdir)/bgworker -I$(srcdir)/replication
# `make PLANT=poisoned_entry` (or no_request_log, unconfirmed_read, stale_grant,
# endless_lease) builds
# with a deliberately reintroduced bug, for proving the fault suites catch it
# (src/core/planted_bugs.h).  Never for production.
ifneq ($(PLANT),)
PG_CPPFLAGS += -DATOMIX_PLANT_$(shell echo $(PLANT) | tr a-z A-Z)
endif
PG_CXXFLAGS = -std=c++17 -Wall -Wno-register -Wno-missing-field-initializers -fno-omit-frame-pointer
SHLIB_LINK = -lraft -luv -lstdc++

# pg_regress suites (sql/<name>.sql, expected/<name>.out); run by test/run-tests
# against a server started with atomix preloaded.
REGRESS = map counter errors topology coordination table_writes read_path
REGRESS_OPTS = --use-existing --dbname=postgres

# No LLVM bitcode: the JIT inlining build does not know our C++17 flags.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS links C++ objects with the C compiler; make sure headers are tracked.
$(OBJS): $(wildcard src/core/*.h src/sql/*.h bgworker/*.h replication/*.h fdw/*.h)

# The Postgres-free core.  Its objects compile with no include directory but
# src/core/ (Postgres' server headers and the front end's are not found), and
# each of its headers must compile the same way on its own, followed by
# core_only.h (which fails on any Postgres header that got in regardless):
# the headers are compiled only inside Postgres translation units otherwise.
CORE_CPPFLAGS = -I$(srcdir)/src/core $(filter-out -I%,$(CPPFLAGS))
$(CORE_SRCS:.cpp=.o): src/core/%.o: src/core/%.cpp
	$(CXX) $(CXXFLAGS) $(CORE_CPPFLAGS) -c -o $@ $<
all: $(CORE_HDR_CHECKS)
$(CORE_HDR_CHECKS): %.hcheck: %.h $(wildcard src/core/*.h)
	printf '#include "%s"\n#include "core_only.h"\n' $(notdir $<) | \
	    $(CXX) $(CXXFLAGS) $(CORE_CPPFLAGS) -fsyntax-only -x c++ - && touch $@
