/*
 * clock.h — the two clocks atomix reads.
 *
 * unix_now_us(): wall-clock time in the state machine's unit (µs since the
 * Unix epoch).  Leaders stamp the entries they propose with it; the node
 * side of sessions compares it with lease deadlines.  It can step (NTP, an
 * operator): nothing that only measures a duration may use it.
 *
 * mono_now_us(): CLOCK_MONOTONIC, for every local timer (resends, request
 * deadlines, back-offs, leader balancing) — a wall-clock step must not fire
 * them all at once.
 *
 * boot_now_us(): CLOCK_BOOTTIME, for a leader's read lease: like
 * CLOCK_MONOTONIC it never steps, and unlike it keeps counting while the
 * machine is suspended, so a leader that slept cannot think its lease young.
 *
 * The test-only setting atomix.test_clock_offset shifts the wall clock of
 * one node (as an NTP step would) and leaves the monotonic clocks alone.
 */
#ifndef ATOMIX_CLOCK_H
#define ATOMIX_CLOCK_H

#include <cstdint>
#include <ctime>

namespace atomix {

/* The Unix epoch minus Postgres' (2000-01-01), in µs: TimestampTz = unix µs - this. */
constexpr int64_t kUnixToPgEpochUs = 946684800000000LL;

/* Set from atomix.test_clock_offset (0 unless a test moves this node's clock). */
inline int64_t wall_clock_offset_us = 0;

inline int64_t unix_now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 + wall_clock_offset_us;
}

inline int64_t mono_now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

inline int64_t boot_now_us()
{
    struct timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

} // namespace atomix

#endif
