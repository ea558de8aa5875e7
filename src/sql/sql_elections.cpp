/*
 * sql_elections.cpp — leader elections of schema atomix.
 *
 * Every change goes through the election's partition; the function then
 * returns the election's state from this node's tables, which the change
 * has reached by the time the call is answered.
 */
extern "C" {
#include "postgres.h"
#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
}

#include <vector>

#include "client.h"
#include "guc.h"
#include "objects.h"
#include "pg_bridge.h"
#include "read_path.h"
#include "routing.h"
#include "session.h"
#include "shmem.h"
#include "sql_args.h"
#include "sql_result.h"

using namespace atomix;

static int32_t partition_of(const std::string &election)
{
    return (int32_t)named_partition(election, kKindElection, (uint32_t)atomix_partitions);
}

/* (term, leader, candidates) of the election as this node's tables have it. */
static Datum term_of(FunctionCallInfo fcinfo, int32_t partition, const std::string &election)
{
    std::string blob;
    ElectionState e;
    if (read_object(partition, kKindElection, election, &blob))
        e = decode_election(blob);
    int n = (int)e.candidates.size();
    ArrayType *arr = NULL;
    Datum *ids = NULL;
    pg_guard([&] {
        ids = (Datum *)palloc(sizeof(Datum) * (n > 0 ? n : 1));
        for (int i = 0; i < n; i++)
            ids[i] = PointerGetDatum(
                cstring_to_text_with_len(e.candidates[i].id.data(), (int)e.candidates[i].id.size()));
        arr = construct_array(ids, n, TEXTOID, -1, false, TYPALIGN_INT);
    });
    Datum values[3] = {Int64GetDatum(e.term), n > 0 ? ids[0] : (Datum)0, PointerGetDatum(arr)};
    bool nulls[3] = {false, n == 0, false};
    return composite_result(fcinfo, values, nulls);
}

static Datum change(FunctionCallInfo fcinfo, Op op)
{
    check_session_usable();
    Command cmd;
    cmd.op = op;
    cmd.name = name_arg(fcinfo, 0, "election name");
    cmd.key = name_arg(fcinfo, 1, "candidate");
    int32_t p = partition_of(cmd.name);
    /* only entering needs a session of its own; withdrawing proves
     * ownership with it when there is one */
    attach_session(cmd, p, op == Op::ElectionEnter);
    Reply r = op == Op::ElectionEnter || cmd.session != 0 ? submit_in_session(p, cmd) : submit(p, cmd);
    if (r.code == REPLY_CONFLICT)
        throw AtomixError(ERRCODE_UNIQUE_VIOLATION,
                          "candidate \"" + cmd.key + "\" already stands in election \"" + cmd.name +
                              "\" for another session",
                          "Candidate ids must be unique per election; each belongs to the session "
                          "that entered it.");
    if (r.code == REPLY_NOT_OWNER)
        throw AtomixError(ERRCODE_INSUFFICIENT_PRIVILEGE,
                          "candidate \"" + cmd.key + "\" of election \"" + cmd.name +
                              "\" belongs to another session",
                          "A session can withdraw only its own candidates; use "
                          "atomix.election_evict() to remove another.");
    return term_of(fcinfo, p, cmd.name);
}

ATOMIX_SQL_FUNCTION(atomix_election_enter) { return change(fcinfo, Op::ElectionEnter); }
ATOMIX_SQL_FUNCTION(atomix_election_withdraw) { return change(fcinfo, Op::ElectionWithdraw); }
ATOMIX_SQL_FUNCTION(atomix_election_anoint) { return change(fcinfo, Op::ElectionAnoint); }
ATOMIX_SQL_FUNCTION(atomix_election_promote) { return change(fcinfo, Op::ElectionPromote); }
ATOMIX_SQL_FUNCTION(atomix_election_evict) { return change(fcinfo, Op::ElectionEvict); }

ATOMIX_SQL_FUNCTION(atomix_election_get)
{
    check_session_usable();
    std::string name = name_arg(fcinfo, 0, "election name");
    int32_t p = partition_of(name);
    read_barrier(p);
    return term_of(fcinfo, p, name);
}
