/*
 * clock.h — wall-clock time in the state machine's unit (µs since the Unix
 * epoch).  Only leaders read it, to stamp the entries they propose.
 */
#ifndef ATOMIX_CLOCK_H
#define ATOMIX_CLOCK_H

#include <cstdint>
#include <ctime>

namespace atomix {

/* The Unix epoch minus Postgres' (2000-01-01), in µs: TimestampTz = unix µs - this. */
constexpr int64_t kUnixToPgEpochUs = 946684800000000LL;

inline int64_t unix_now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

} // namespace atomix

#endif
