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

/* ALTER EXTENSION atomix UPDATE TO '0.5' calls this first.  It exists only
 * in builds of 0.5 on, and refuses when this backend's atomix is not the one
 * the server preloaded — the library file was replaced but the server not
 * restarted, so its raft worker still runs the older build, which would
 * keep writing the request log the update drops. */
ATOMIX_SQL_FUNCTION(atomix_require_current_build)
{
    if (!atomix_loaded_at_startup() || atomix_shared == NULL)
        throw AtomixError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                          "this server still runs an older atomix build than the one installed",
                          "Restart the server so that it loads the installed atomix, then run "
                          "ALTER EXTENSION atomix UPDATE.");
    PG_RETURN_VOID();
}
