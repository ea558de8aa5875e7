/*
 * request_origins.h — at most once without a record per command: what a
 * partition remembers of each node that sends it commands (an *origin*).
 *
 * A request id is `node id << 48 | 16 random bits per worker start << 32 |
 * counter`, so its upper 32 bits name the origin (a node's worker life) and
 * its counter only grows.  Every command its origin sends carries the
 * origin's *floor*: the lowest id the origin still holds (queued, proposed or
 * forwarded and not yet applied on its own replica nor answered as failed).
 * Below its floor the origin will never send anything again.
 *
 * Per origin a partition keeps the highest floor its log carried, and the
 * outcome of every applied id at or above it.  A command whose id is
 *   - below the floor: its origin is done with it (it saw it applied, or
 *     told its caller it failed) — a late copy, refused (Finished), never run;
 *   - recorded: a copy of an applied command — answered with the outcome;
 *   - neither: new — run, and its outcome recorded.
 * Outcomes below a raised floor are dropped, so the table holds what is in
 * flight, not history: a few rows' worth, stored with the partition's
 * applied index (partition_state.origins) and in snapshots.  The floor only
 * comes from the log and only grows, so every replica decides alike.
 *
 * An origin unheard of for kOriginQuietUs of log time, whose node has been
 * heard from since under another origin (a later worker life), is *retired*: its
 * floor goes past its last recorded outcome and the outcomes go — every
 * worker restart leaves an origin behind, and their outcomes would otherwise
 * weigh on the row for minutes.  What it still had in flight here after a
 * minute of silence is refused, never run twice (its caller is told "may have
 * been applied").  Origins unheard of for kOriginIdleUs are forgotten: a copy
 * of theirs arriving later than that would be new again, the same window the
 * request log had; retries stop long before (atomix.unavailable_timeout is
 * capped at 5 minutes).  An origin that holds
 * more than kMaxOutcomesPerOrigin outcomes (one command stuck while later
 * ones apply) has its floor raised past the oldest: that command, should it
 * come, is refused — a caller told "may have been applied", never a double.
 */
#ifndef ATOMIX_REQUEST_ORIGINS_H
#define ATOMIX_REQUEST_ORIGINS_H

#include <cstdint>
#include <string>
#include <vector>

namespace atomix {

constexpr int64_t kOriginIdleUs = 10LL * 60 * 1000000;
constexpr int64_t kOriginQuietUs = 60LL * 1000000;
constexpr size_t kMaxOutcomesPerOrigin = 4096;

struct RecordedOutcome {
    uint64_t request_id = 0;
    uint8_t code = 0; /* ResultCode */
    int64_t value = 0;
};

struct RequestOrigin {
    uint64_t key = 0;       /* request id >> 32 */
    uint64_t floor = 0;     /* ids below it are finished */
    int64_t heard_us = 0;   /* log time of its latest command */
    std::vector<RecordedOutcome> outcomes; /* sorted by id, all >= floor */
};

class RequestOrigins {
  public:
    enum class Seen { New, Applied, Finished };

    /* The partition_state.origins encoding ("" is an empty table).  Throws
     * DecodeError on malformed bytes. */
    static RequestOrigins decode(const std::string &bytes);
    std::string encode() const;

    /* A command of request_id's origin arrived carrying `floor` (0: its
     * sender did not say, an entry written before floors existed). */
    void heard(uint64_t request_id, uint64_t floor, int64_t now_us);
    Seen lookup(uint64_t request_id, RecordedOutcome *out) const;
    /* Records (or overwrites: a settled wait) the outcome of request_id;
     * nothing if its origin already finished it. */
    void record(uint64_t request_id, uint8_t code, int64_t value, int64_t now_us);
    /* Forgets origins unheard of since before `forget_before_us`, and
     * retires those unheard of since before `retire_before_us` (log time)
     * whose node was heard from under another origin later. */
    void forget_idle(int64_t forget_before_us, int64_t retire_before_us);

    const std::vector<RequestOrigin> &origins() const { return origins_; }
    bool changed() const { return changed_; }

  private:
    RequestOrigin *find(uint64_t key);
    const RequestOrigin *find(uint64_t key) const;
    RequestOrigin &find_or_add(uint64_t key, int64_t now_us);
    static void raise_floor(RequestOrigin &o, uint64_t floor);

    std::vector<RequestOrigin> origins_; /* sorted by key */
    bool changed_ = false;
};

} // namespace atomix

#endif
