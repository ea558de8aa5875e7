/*
 * module.cpp — _PG_init: settings, shared memory and the raft worker.
 *
 * Runs in the postmaster when atomix is in shared_preload_libraries.  It
 * never touches libuv or c-raft: those live only in the worker process.
 * Loaded any other way (CREATE EXTENSION without preloading) it does nothing,
 * and every atomix function refuses to run with a hint.
 */
extern "C" {
#include "postgres.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
}

#include <cstdio>

#include "cluster_config.h"
#include "guc.h"
#include "shmem.h"

extern "C" {
PG_MODULE_MAGIC;
void _PG_init(void);
}

static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void shmem_request(void)
{
    if (prev_shmem_request_hook)
        prev_shmem_request_hook();
    atomix_shmem_request();
}

static void register_worker(void)
{
    BackgroundWorker worker;
    memset(&worker, 0, sizeof(worker));
    worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
    worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
    /* restart soon after a failure; the worker recovers from its raft log */
    worker.bgw_restart_time = 1;
    snprintf(worker.bgw_library_name, BGW_MAXLEN, "atomix");
    snprintf(worker.bgw_function_name, BGW_MAXLEN, "atomix_worker_main");
    snprintf(worker.bgw_name, BGW_MAXLEN, "atomix raft worker");
    snprintf(worker.bgw_type, BGW_MAXLEN, "atomix raft worker");
    RegisterBackgroundWorker(&worker);
}

/* Refuses to start the server with cluster settings that cannot work,
 * rather than letting the worker fail over and over. */
static void validate_cluster_settings(void)
{
    char problem[512] = "";
    try {
        atomix::ClusterConfig c = atomix::ClusterConfig::parse(
            atomix_initial_cluster, (uint32_t)atomix_node_id, atomix_listen_address,
            (uint32_t)atomix_replication_factor);
        if (c.nodes().size() > 1 && (!atomix_cluster_secret || !*atomix_cluster_secret))
            snprintf(problem, sizeof(problem),
                     "atomix.cluster_secret must be set when atomix.initial_cluster has more "
                     "than one node");
    } catch (const std::exception &e) {
        snprintf(problem, sizeof(problem), "%s", e.what());
    }
    if (problem[0])
        ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
                        errmsg("invalid atomix cluster settings: %s", problem),
                        errhint("Check atomix.node_id, atomix.listen_address, "
                                "atomix.initial_cluster and atomix.cluster_secret.")));
}

void _PG_init(void)
{
    /* Loaded later (CREATE EXTENSION or LOAD without preloading): define
     * nothing — restart-only settings cannot be created after startup — and
     * let every atomix function refuse with a hint (client.cpp). */
    if (!process_shared_preload_libraries_in_progress)
        return;

    atomix_define_gucs();
    validate_cluster_settings();
    atomix_set_loaded_at_startup();
    prev_shmem_request_hook = shmem_request_hook;
    shmem_request_hook = shmem_request;
    atomix_shmem_startup();
    register_worker();
}
