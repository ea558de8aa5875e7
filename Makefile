# atomix — PGXS build of a C++17 Postgres extension.
EXTENSION = atomix
MODULE_big = atomix
DATA = sql/atomix--0.1.sql sql/atomix--0.2.sql sql/atomix--0.3.sql sql/atomix--0.4.sql \
       sql/atomix--0.1--0.2.sql sql/atomix--0.2--0.3.sql sql/atomix--0.3--0.4.sql
PGFILEDESC = "atomix - Raft-replicated distributed primitives"

SRCS = $(wildcard src/*.cpp) $(wildcard bgworker/*.cpp) $(wildcard replication/*.cpp) \
       $(wildcard fdw/*.cpp)
OBJS = $(SRCS:.cpp=.o)

PG_CPPFLAGS = -I$(srcdir)/src -I$(srcdir)/bgworker -I$(srcdir)/replication
# `make PLANT=poisoned_entry` (or no_request_log, unconfirmed_read, stale_grant) builds
# with a deliberately reintroduced bug, for proving the fault suites catch it
# (src/planted_bugs.h).  Never for production.
ifneq ($(PLANT),)
PG_CPPFLAGS += -DATOMIX_PLANT_$(shell echo $(PLANT) | tr a-z A-Z)
endif
PG_CXXFLAGS = -std=c++17 -Wall -Wno-register -Wno-missing-field-initializers -fno-omit-frame-pointer
SHLIB_LINK = -lraft -luv -lstdc++

# pg_regress suites (sql/<name>.sql, expected/<name>.out); run by test/run-tests
# against a server started with atomix preloaded.
REGRESS = map counter errors topology coordination table_writes
REGRESS_OPTS = --use-existing --dbname=postgres

# No LLVM bitcode: the JIT inlining build does not know our C++17 flags.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS links C++ objects with the C compiler; make sure headers are tracked.
$(OBJS): $(wildcard src/*.h bgworker/*.h replication/*.h fdw/*.h)
