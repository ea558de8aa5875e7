/*
 * request_ids.cpp — the origin bits of this worker life's request ids.
 *
 * A request id is node id << 48 | 16 bits per worker life << 32 | counter,
 * and its upper 32 bits are its *origin* (src/core/request_origins.h): each
 * partition remembers, per origin, the floor below which that origin is done.
 * A new life that took the bits of an earlier life still remembered would
 * start its counter below that life's floor, and its requests would be
 * refused as finished.  So the life takes bits that no origin of this node
 * in the local partitions uses (a random start, then the next free value).
 */
extern "C" {
#include "postgres.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "utils/snapmgr.h"
}

#include <set>
#include <string>
#include <vector>

#include "clock.h"
#include "guc.h"
#include "pg_bridge.h"
#include "request_origins.h"
#include "worker.h"

namespace atomix {

void Worker::choose_incarnation()
{
    std::vector<std::string> stored;
    uint64 rows = 0;
    pg_guard([&] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        PushActiveSnapshot(GetTransactionSnapshot());
        SPI_connect();
        /* a schema from before 0.5 has no origins column (one node serves
         * it): nothing to avoid, and the column must not even be named */
        SPI_execute("SELECT 1 FROM pg_attribute WHERE attrelid = 'atomix.partition_state'::regclass "
                    "AND attname = 'origins' AND NOT attisdropped",
                    true, 1);
        if (SPI_processed == 1) {
            SPI_execute("SELECT origins FROM atomix.partition_state", true, 0);
            rows = SPI_processed;
        }
    });
    for (uint64 i = 0; i < rows; i++) {
        const char *data = nullptr;
        size_t len = 0;
        pg_guard([&] {
            bool isnull = true;
            Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull);
            if (!isnull) {
                bytea *b = DatumGetByteaPP(d);
                data = VARDATA_ANY(b);
                len = VARSIZE_ANY_EXHDR(b);
            }
        });
        if (data)
            stored.emplace_back(data, len);
    }
    pg_guard([] {
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
    });

    std::set<uint64_t> taken; /* this node's origin bits the partitions remember */
    for (const std::string &blob : stored) {
        try {
            RequestOrigins table = RequestOrigins::decode(blob);
            for (const RequestOrigin &o : table.origins())
                if (o.key >> 16 == cluster_->self().id)
                    taken.insert(o.key & 0xffff);
        } catch (const DecodeError &) {
            /* that partition will halt on it when it applies; nothing to avoid */
        }
    }
    uint64_t start = atomix_test_incarnation >= 0 ? (uint64_t)atomix_test_incarnation : (uint64_t)unix_now_us();
    for (uint64_t k = 0; k <= 0xffff; k++) {
        uint64_t candidate = (start + k) & 0xffff;
        if (!taken.count(candidate)) {
            incarnation_ = candidate;
            return;
        }
    }
    incarnation_ = start & 0xffff; /* 65536 lives in ten minutes: cannot happen */
}

} // namespace atomix
