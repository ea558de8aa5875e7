// lin.h — linearizability of one key's history (Wing & Gong's search with
// Lowe's memoization of (linearized set, state)), for two sequential
// models: a versioned register (an atomix map entry) and a counter.
//
// An indeterminate ("info") operation may take effect at any point after its
// invocation, or never: it has no deadline, and the search succeeds once
// every determinate operation is linearized.  Reads that ended indeterminate
// say nothing and are left out before the search.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace chaos {

enum class LKind {
    MapGet,      // res = value id or -1 (absent)
    MapGetEntry, // res = value id or -1; res2 = version
    MapPut,      // a = value id; res = version (-1: unknown)
    MapCas,      // a = value id; b = if_version; res = version, -2 = NULL (no match), -1 unknown
    MapRemove,   // b = if_version or -1 (none); res = 1 removed, 0 not, -1 unknown
    CounterIncr, // a = delta; res = new value
    CounterCas,  // a = expected; b = new; res = 1 set, 0 not
    CounterGet,  // res = value
};

struct LOp {
    LKind kind;
    int64_t a = 0, b = 0, res = 0, res2 = 0;
    int64_t invoke = 0, complete = 0;
    bool info = false;     // indeterminate: may or may not have taken effect
    bool observed = false; // info write whose effect some read or CAS saw (tried first)
    size_t src = 0;        // index into the caller's op list
};

struct LState {
    int64_t a = 0; // register: value id (-1 absent); counter: value
    int64_t b = 0; // register: version (0 none yet, -1 unknown)
    bool operator==(const LState &o) const { return a == o.a && b == o.b; }
};

enum class LinVerdict { Ok, Violation, Budget };

struct LinResult {
    LinVerdict verdict = LinVerdict::Ok;
    uint64_t steps = 0;
    size_t deepest = 0;       // most determinate ops linearized at once
    long stuck = -1;          // index (into ops) of the op that could not be placed at the deepest point
    LState stuck_state;       // the state there
    std::vector<long> prefix; // the last few ops linearized before it (indices into ops)
};

bool lin_step(bool counter, const LState &s, const LOp &op, LState &out);

// ops: one key's operations; counter: counter model, else register model.
LinResult check_linearizable(const std::vector<LOp> &ops, bool counter, uint64_t budget);

} // namespace chaos
