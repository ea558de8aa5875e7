/*
 * sql_admin.cpp — functions the extension script itself calls.
 */
extern "C" {
#include "postgres.h"
#include "access/xact.h"
#include "fmgr.h"
}

#include "client.h"
#include "pg_bridge.h"
#include "shmem.h"

using namespace atomix;

static bool wake_registered = false;

/* The worker waits for the extension to exist; wake it once CREATE
 * EXTENSION has committed (waking it earlier, it would not see it yet). */
static void wake_worker_at_commit(XactEvent event, void *)
{
    if (event == XACT_EVENT_COMMIT)
        atomix_wake_worker();
    if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT) {
        UnregisterXactCallback(wake_worker_at_commit, NULL);
        wake_registered = false;
    }
}

/* Refuses CREATE EXTENSION unless atomix was preloaded and this is
 * atomix.database, so a misconfigured install fails loudly at once. */
ATOMIX_SQL_FUNCTION(atomix_check_create)
{
    check_session_usable();
    if (!wake_registered) {
        pg_guard([] { RegisterXactCallback(wake_worker_at_commit, NULL); });
        wake_registered = true;
    }
    PG_RETURN_VOID();
}
