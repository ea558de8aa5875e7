/*
 * test_segment_repair.cpp — raft_uv 0.15 aborts loading an open segment
 * that its own writer filled to 8 bytes short of its end, and
 * replication/segment_repair.* makes such a log load, changing nothing else.
 *
 * fixtures/full_open_segment is a raft_uv log cut down from a test/chaos run
 * (seed 4177: node 2 crashed under write load and its raft worker then aborted
 * with "double free or corruption" at every start): its metadata and the open
 * segment, 8192 bytes of 52 batches (58 entries) ending at byte 8184.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

extern "C" {
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
}

#include "raft_group.h"
#include "segment_repair.h"
#include "unit_helpers.h" /* last: cmocka's macros clash with <fstream> */

using namespace atomix;

namespace {

const char *const kFixture = FIXTURE_DIR "/full_open_segment";

std::string read_all(const std::string &path)
{
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_all(const std::string &path, const std::string &data)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << data;
}

/* A fresh copy of the fixture in a temporary directory. */
std::string copy_fixture()
{
    char tmpl[] = "/tmp/atomix-segrepair.XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    for (const char *name : {"metadata1", "metadata2", "open-1"})
        write_all(std::string(dir) + "/" + name, read_all(std::string(kFixture) + "/" + name));
    return dir;
}

void remove_dir(const std::string &dir)
{
    std::string cmd = "rm -rf '" + dir + "'";
    assert_int_equal(system(cmd.c_str()), 0);
}

/* raft_uv's own load of the log in `dir`: the number of entries, or -1. */
long raft_uv_load_here(const std::string &dir)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct raft_uv_transport transport;
    struct raft_io io;
    memset(&io, 0, sizeof io);
    if (raft_uv_tcp_init(&transport, &loop) != 0)
        return -1;
    long result = -1;
    if (raft_uv_init(&io, &loop, dir.c_str(), &transport) == 0 && io.init(&io, 2, "127.0.0.1:9") == 0) {
        raft_term term;
        raft_id vote;
        struct raft_snapshot *snapshot = nullptr;
        raft_index start;
        struct raft_entry *entries = nullptr;
        size_t n = 0;
        if (io.load(&io, &term, &vote, &snapshot, &start, &entries, &n) == 0)
            result = (long)n;
    }
    return result;
}

/* raft_uv_load_here in a child process (raft_uv's loader may crash, and its
 * allocations are not worth tearing down): the number of entries loaded
 * (< 250), or -1 when the child failed or died. */
long raft_uv_load(const std::string &dir)
{
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        long n = raft_uv_load_here(dir);
        _exit(n >= 0 && n < 250 ? (int)n : 250); /* _exit: no leak check of raft_uv's loop */
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    if (!WIFEXITED(status) || WEXITSTATUS(status) == 250)
        return -1;
    return WEXITSTATUS(status);
}

/* The bug is c-raft's: an unrepaired copy still crashes its loader (in a
 * child, so that this test survives it).  Should a fixed libraft load it,
 * this test says so, and the workaround can go. */
void raft_uv_0_15_aborts_on_the_full_open_segment(void **)
{
    std::string dir = copy_fixture();
    assert_int_not_equal(raft_uv_load(dir), 58);
    remove_dir(dir);
}

void trimmed_log_loads_every_entry(void **)
{
    std::string dir = copy_fixture();
    std::vector<std::string> trimmed = trim_full_open_segments(dir);
    assert_int_equal(trimmed.size(), 1);
    assert_string_equal(trimmed[0].c_str(), "open-1");
    std::string after = read_all(dir + "/open-1");
    std::string before = read_all(std::string(kFixture) + "/open-1");
    assert_int_equal(after.size(), 8184);
    assert_true(before.compare(0, 8184, after) == 0);       /* only the tail went */
    assert_true(before.substr(8184) == std::string(8, '\0')); /* and it was zeros */
    assert_string_equal(read_all(dir + "/metadata1").c_str(), read_all(std::string(kFixture) + "/metadata1").c_str());
    assert_int_equal(raft_uv_load(dir), 58);
    /* idempotent: a trimmed segment is left alone */
    assert_int_equal(trim_full_open_segments(dir).size(), 0);
    remove_dir(dir);
}

void leaves_every_other_segment_alone(void **)
{
    std::string full = read_all(std::string(kFixture) + "/open-1");
    auto point = [](const std::string &s) {
        return open_segment_trim_point(reinterpret_cast<const unsigned char *>(s.data()), s.size());
    };
    assert_int_equal(point(full), 8184);
    /* the last batch ends at the end of the file */
    assert_int_equal(point(full.substr(0, 8184)), 8184);
    /* room for another preamble after the last batch: raft_uv copes */
    assert_int_equal(point(full + std::string(8, '\0')), 8200);
    /* a preallocated segment never written (format 0) */
    assert_int_equal(point(std::string(8192, '\0')), 8192);
    /* something not zero after the last batch */
    std::string dirty = full;
    dirty[8190] = 1;
    assert_int_equal(point(dirty), 8192);
    /* a torn last batch (its payload runs past the end) */
    assert_int_equal(point(full.substr(0, 8100)), 8100);
    /* an unknown format version */
    std::string other = full;
    other[0] = 2;
    assert_int_equal(point(other), 8192);
    /* shorter than a format header */
    assert_int_equal(point(std::string(4, '\0')), 4);
    /* a closed segment's name is not touched, nor a missing directory */
    std::string dir = copy_fixture();
    assert_int_equal(rename((dir + "/open-1").c_str(), (dir + "/0000000000000001-0000000000000058").c_str()), 0);
    assert_int_equal(trim_full_open_segments(dir).size(), 0);
    assert_int_equal(read_all(dir + "/0000000000000001-0000000000000058").size(), 8192);
    remove_dir(dir);
    assert_int_equal(trim_full_open_segments(dir).size(), 0);
}

int count_apply(struct raft_fsm *, const struct raft_buffer *, void **result)
{
    *result = nullptr;
    return 0;
}

/* The worker's path: RaftGroup::start trims before raft_uv loads, so a node
 * holding such a segment starts (in a child: without the trim it aborts). */
void raft_group_start_trims_before_loading(void **)
{
    std::string dir = copy_fixture();
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        uv_loop_t loop;
        uv_loop_init(&loop);
        struct raft_fsm fsm;
        memset(&fsm, 0, sizeof fsm);
        fsm.version = 1;
        fsm.apply = count_apply;
        RaftGroupConfig cfg;
        cfg.partition = 0;
        cfg.node_id = 2;
        cfg.address = "127.0.0.1:9002";
        for (uint32_t j = 1; j <= 3; j++)
            cfg.members.push_back(RaftMember{j, "127.0.0.1:900" + std::to_string(j), RAFT_VOTER});
        cfg.dir = dir;
        cfg.segment_size = 8192;
        cfg.send = [](uint32_t, uint32_t, const std::string &) { return true; };
        RaftGroup *group = new RaftGroup(&loop, cfg, &fsm); /* never freed: see start_group */
        try {
            group->start();
        } catch (const std::exception &) {
            /* a log cut out of another cluster may not start; loading it must not crash */
        }
        bool trimmed = group->trimmed_segments().size() == 1;
        _exit(trimmed ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    remove_dir(dir);
}

} // namespace

int main()
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(raft_uv_0_15_aborts_on_the_full_open_segment),
        cmocka_unit_test(trimmed_log_loads_every_entry),
        cmocka_unit_test(leaves_every_other_segment_alone),
        cmocka_unit_test(raft_group_start_trims_before_loading),
    };
    return cmocka_run_group_tests(tests, nullptr, nullptr);
}
