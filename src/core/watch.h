/*
 * watch.h — names of watch channels, shared by atomix.watch() (which
 * registers interest) and the raft worker (which notifies).
 */
#ifndef ATOMIX_WATCH_H
#define ATOMIX_WATCH_H

#include <cstdint>
#include <cstdio>
#include <string>

#include "routing.h"

namespace atomix {

inline uint64_t watch_hash(const std::string &name)
{
    return hash_parts(name, std::string("\x04", 1));
}

/* atomix_watch_<16 hex>: a plain lower-case identifier, so LISTEN needs no
 * quoting, and well under NAMEDATALEN. */
inline std::string watch_channel(const std::string &name)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "atomix_watch_%016llx",
             static_cast<unsigned long long>(watch_hash(name)));
    return buf;
}

} // namespace atomix

#endif
