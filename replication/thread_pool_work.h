/*
 * thread_pool_work.h — how much libuv thread-pool work is in flight on a
 * loop, counted by standing in for libuv's uv_queue_work.
 *
 * Why: raft_uv 0.15 does not wait for its truncate work when it closes.  A
 * truncate waits on a barrier; once the barrier has fired, the truncate
 * runs in libuv's thread pool.  Closing raft_uv then fires the barrier a
 * second time (uvBarrierClose), and that call frees the truncate request
 * while the thread still holds it.  The work's completion then reads the
 * freed request, frees it again, and calls uvMaybeFireCloseCb on whatever
 * pointer it finds there: the raft worker's SIGSEGV under test/chaos (a
 * follower truncating its log when the disk filled; core analysed in
 * docs/architecture.md, "c-raft 0.15 facts").  Upstream fixed it in 0.17.1
 * ("uv: Never invoke barrier callback twice").
 *
 * raft_uv's request structures are private, so the only exact signal we
 * have is the thread pool: with no work of raft_uv's in flight on the
 * loop, no truncate can be running, and none can start before our next
 * call into raft_uv (a barrier fires only on the loop thread).  This file
 * defines uv_queue_work.  libraft resolves its calls to it through
 * atomix.so (loaded before libuv in the same dlopen), and the definition
 * counts each work until its after-work callback has run, then passes it
 * to libuv's own.
 */
#ifndef ATOMIX_THREAD_POOL_WORK_H
#define ATOMIX_THREAD_POOL_WORK_H

#include <cstdint>

#include <uv.h>

namespace atomix {

/* Works queued on `loop` whose after-work callback has not run yet. */
unsigned thread_pool_work_in_flight(const uv_loop_t *loop);

/* Works queued on `loop` since it was first seen; tests and the worker's
 * start-up check use it to prove the stand-in is the one libraft calls. */
uint64_t thread_pool_work_queued(const uv_loop_t *loop);

/* Forgets `loop` (before uv_loop_close: a later loop may reuse its
 * address).  Nothing may be in flight on it. */
void thread_pool_work_forget(const uv_loop_t *loop);

} // namespace atomix

#endif
