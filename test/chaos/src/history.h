// history.h — the chaos suite's history: one JSON object per line.
//
//   {"type":"op", "client":3, "node":2, "conn":5, "f":"map_put", "key":"k3",
//    "value":"c3-17", "if_version":123, "delta":1, "expected":4, "new":5,
//    "permits":2, "candidate":"c3-1", "invoke":T, "complete":T,
//    "outcome":"ok"|"fail"|"info", "result":..., "sqlstate":"57P03",
//    "error":"...", "final":true}
//   {"type":"fault", "family":"crash", "kind":"crash", "node":2, "start":T,
//    "end":T, "wall_start":U, "wall_end":U, "verified":true, "detail":"..."}
//   {"type":"probe", "node":2, "invoke":T, "complete":T, "ok":true, "tries":3}
//   {"type":"phase", "name":"final-crash", "time":T}
//   {"type":"config", "nodes":3, "clients":10, "no_majority":false,
//    "families":["crash",...], "skipped":["net"]}
//   {"type":"notice", "text":"..."}
//
// T: CLOCK_MONOTONIC µs (one clock for every process on the machine);
// U: unix µs (to match server log lines).  Fields an op does not use are
// omitted.  See test/chaos/README.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "json.h"

namespace chaos {

enum class Outcome { Ok, Fail, Info };

struct Op {
    size_t line = 0; // 1-based line in the history file
    int client = -1;
    int node = 0;
    int conn = 0;
    std::string f;
    std::string key;
    std::string value;
    bool has_if_version = false;
    int64_t if_version = 0;
    int64_t delta = 1;
    int64_t expected = 0;
    int64_t newv = 0;
    int64_t permits = 1;
    std::string candidate;
    int64_t invoke = 0;
    int64_t complete = 0;
    Outcome outcome = Outcome::Info;
    Json result;
    std::string sqlstate;
    std::string error;
    bool final = false;
};

struct Fault {
    size_t line = 0;
    std::string family, kind, detail;
    int node = 0;
    int64_t start = 0, end = 0;
    int64_t wall_start = 0, wall_end = 0;
    bool verified = false;
};

struct Probe {
    size_t line = 0;
    int node = 0;
    int64_t invoke = 0, complete = 0;
    bool ok = false;
    int tries = 0;
    std::string after;
};

struct History {
    std::vector<Op> ops;
    std::vector<Fault> faults;
    std::vector<Probe> probes;
    std::vector<std::pair<std::string, int64_t>> phases;
    std::vector<std::string> notices;
    std::vector<std::string> skipped_families;
    std::vector<std::string> families;
    bool no_majority = false;
    int nodes = 0;
    int clients = 0;
    size_t bad_lines = 0;
};

// Reads a history file; throws std::runtime_error when it cannot be read.
History load_history(const std::string &path);

const char *outcome_name(Outcome o);
std::string describe(const Op &op); // one-line human description

} // namespace chaos
