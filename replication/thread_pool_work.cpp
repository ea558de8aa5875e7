/*
 * thread_pool_work.cpp — the uv_queue_work that counts (see
 * thread_pool_work.h for why it exists).
 *
 * libuv requires uv_queue_work and every after-work callback to run on the
 * loop's own thread, so the tables here are touched by one thread per
 * loop; the worker has one loop, the unit tests one at a time.
 */
#include "thread_pool_work.h"

#include <dlfcn.h>

#include <cstdlib>
#include <unordered_map>

namespace atomix {

namespace {

struct LoopCount {
    unsigned in_flight = 0;
    uint64_t queued = 0;
};

struct Tracked {
    const uv_loop_t *loop;
    uv_after_work_cb after;
};

std::unordered_map<const uv_loop_t *, LoopCount> &loops()
{
    static std::unordered_map<const uv_loop_t *, LoopCount> table;
    return table;
}

std::unordered_map<uv_work_t *, Tracked> &works()
{
    static std::unordered_map<uv_work_t *, Tracked> table;
    return table;
}

typedef int (*QueueWorkFn)(uv_loop_t *, uv_work_t *, uv_work_cb, uv_after_work_cb);

QueueWorkFn libuv_queue_work()
{
    /* the next definition after ours in the lookup order: libuv's */
    static QueueWorkFn next = reinterpret_cast<QueueWorkFn>(dlsym(RTLD_NEXT, "uv_queue_work"));
    if (next == nullptr)
        abort(); /* libuv is linked in wherever this file is: cannot happen */
    return next;
}

/* Runs on the loop thread when the work is done (or was cancelled).  The
 * count drops before the owner's callback runs: that callback is what may
 * queue the next work (a barrier firing queues the truncate), and it may
 * free the request. */
void after_tracked_work(uv_work_t *req, int status)
{
    auto it = works().find(req);
    if (it == works().end())
        abort(); /* every request that gets here was tracked */
    Tracked t = it->second;
    works().erase(it);
    loops()[t.loop].in_flight--;
    if (t.after != nullptr)
        t.after(req, status);
}

} // namespace

unsigned thread_pool_work_in_flight(const uv_loop_t *loop)
{
    auto it = loops().find(loop);
    return it == loops().end() ? 0 : it->second.in_flight;
}

uint64_t thread_pool_work_queued(const uv_loop_t *loop)
{
    auto it = loops().find(loop);
    return it == loops().end() ? 0 : it->second.queued;
}

void thread_pool_work_forget(const uv_loop_t *loop) { loops().erase(loop); }

} // namespace atomix

/* Stands in for libuv's (see thread_pool_work.h); same contract. */
extern "C" __attribute__((visibility("default"))) int
uv_queue_work(uv_loop_t *loop, uv_work_t *req, uv_work_cb work_cb, uv_after_work_cb after_work_cb)
{
    using namespace atomix;
    int rv = libuv_queue_work()(loop, req, work_cb, after_tracked_work);
    if (rv != 0)
        return rv; /* nothing was queued: no callback will come */
    works()[req] = Tracked{loop, after_work_cb};
    LoopCount &count = loops()[loop];
    count.in_flight++;
    count.queued++;
    return 0;
}
