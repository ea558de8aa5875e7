/*
 * unit_helpers.h — small pieces shared by the unit tests: the cmocka include
 * (its header has no extern "C" guard), command/entry builders and a
 * canonical text dump of a PartitionStorage for state comparisons.
 */
#ifndef ATOMIX_UNIT_HELPERS_H
#define ATOMIX_UNIT_HELPERS_H

#include <cstdarg>
#include <cstddef>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

extern "C" {
#include <cmocka.h>
}

#include "codec.h"
#include "state_machine.h"

namespace unit {

using namespace atomix;

inline Command cmd_of(Op op, const std::string &name = "", const std::string &key = "",
                      const std::string &value = "")
{
    Command c;
    c.op = op;
    c.name = name;
    c.key = key;
    c.value = value;
    return c;
}

inline Command with_ttl(Command c, int64_t ttl_us)
{
    c.flags |= kFlagHasTtl;
    c.ttl_us = ttl_us;
    return c;
}

inline Command with_if_version(Command c, int64_t version)
{
    c.flags |= kFlagHasIfVersion;
    c.if_version = version;
    return c;
}

inline Command counter_cmd(Op op, const std::string &name, int64_t arg1, int64_t arg2 = 0)
{
    Command c = cmd_of(op, name);
    c.arg1 = arg1;
    c.arg2 = arg2;
    return c;
}

/* A packed entry exactly as the raft worker builds it. */
inline std::string pack(int64_t stamp_us, const std::vector<Command> &cmds)
{
    std::string out;
    EntryHeader h;
    h.stamp_us = stamp_us;
    h.count = static_cast<uint32_t>(cmds.size());
    encode_entry_header(h, out);
    for (const Command &c : cmds)
        encode_command(c, out);
    return out;
}

/* Printable, unambiguous form of a byte string (keys and values may hold NULs). */
inline std::string hex(const std::string &s)
{
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned char c : s) {
        out.push_back(digits[c >> 4]);
        out.push_back(digits[c & 15]);
    }
    return out;
}

/* Everything a replica's storage holds, in a canonical order.  The applied
 * index is left out on purpose: replicas may legitimately record different
 * ones (a restored snapshot carries the sender's). */
inline std::string dump(PartitionStorage &st)
{
    std::string out = "log_time=" + std::to_string(st.load_meta().log_time_us) + "\n";
    st.for_each_map_entry([&](const MapEntry &e) {
        out += "map " + hex(e.map) + " " + hex(e.key) + " = " + hex(e.row.value) +
               " v" + std::to_string(e.row.version);
        if (e.row.expires_at_us)
            out += " exp" + std::to_string(*e.row.expires_at_us);
        out += "\n";
    });
    st.for_each_counter([&](const CounterRow &c) {
        out += "counter " + hex(c.name) + " = " + std::to_string(c.value) + "\n";
    });
    return out;
}

} // namespace unit

#endif
